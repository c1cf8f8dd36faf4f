//! A persistent ordered map with an incremental commitment: the state both shipped
//! applications keep. The root is the checksum of a lattice hash (LtHash, as Solana's accounts
//! hash): the wrapping sum of one 2 KiB element per entry, so a block updates it in O(entries
//! it wrote) by mixing each written entry's old element out and its new one in when the block
//! ends. The map is `imbl`'s, so a working copy per block costs O(1) and a block's writes copy
//! only the paths they touch.

use std::sync::Arc;

use alloy_primitives::B256;
use imbl::OrdMap;
use solana_lattice_hash::lt_hash::LtHash;

/// What an entry contributes to the commitment; `None`: nothing (an entry at a default that
/// should count as absent).
pub trait Element<K>: Clone + PartialEq {
    fn element(&self, key: &K) -> Option<LtHash>;
}

#[derive(Clone)]
pub struct LatticeMap<K: Ord + Clone, V: Element<K>> {
    entries: OrdMap<K, V>,
    /// The commitment to `entries` as they stood before the writes recorded in `written`
    /// (`None`: nothing committed yet, the empty map).
    lattice: Option<Arc<LtHash>>,
    /// Keys written since `lattice` was brought up to date, with their values then.
    written: OrdMap<K, Option<V>>,
}

impl<K: Ord + Clone, V: Element<K>> Default for LatticeMap<K, V> {
    fn default() -> Self {
        LatticeMap {
            entries: OrdMap::new(),
            lattice: None,
            written: OrdMap::new(),
        }
    }
}

impl<K: Ord + Clone, V: Element<K>> PartialEq for LatticeMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl<K: Ord + Clone, V: Element<K>> LatticeMap<K, V> {
    /// O(entries): the one place the commitment is computed from scratch (genesis, a loaded or
    /// installed state).
    pub fn from_entries(entries: OrdMap<K, V>) -> Self {
        let mut lattice = LtHash::identity();
        for (k, v) in entries.iter() {
            if let Some(e) = v.element(k) {
                lattice.mix_in(&e);
            }
        }
        LatticeMap {
            entries,
            lattice: Some(Arc::new(lattice)),
            written: OrdMap::new(),
        }
    }

    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries.get(key)
    }

    /// Every entry, in key order.
    pub fn entries(&self) -> &OrdMap<K, V> {
        &self.entries
    }

    /// Sets `key` to `value` (`None`: removes it); returns what it held.
    pub fn set(&mut self, key: K, value: Option<V>) -> Option<V> {
        let old = match value {
            Some(v) => self.entries.insert(key.clone(), v),
            None => self.entries.remove(&key),
        };
        if !self.written.contains_key(&key) {
            self.written.insert(key, old.clone());
        }
        old
    }

    /// The commitment with every pending write folded in.
    fn folded(&self) -> LtHash {
        let mut lattice = match &self.lattice {
            Some(l) => LtHash::clone(l),
            None => LtHash::identity(),
        };
        for (key, old) in self.written.iter() {
            let new = self.entries.get(key);
            if old.as_ref() == new {
                continue;
            }
            if let Some(e) = old.as_ref().and_then(|v| v.element(key)) {
                lattice.mix_out(&e);
            }
            if let Some(e) = new.and_then(|v| v.element(key)) {
                lattice.mix_in(&e);
            }
        }
        lattice
    }

    /// The root with every pending write folded in.
    pub fn root(&self) -> B256 {
        B256::from(self.folded().checksum().0)
    }

    /// Folds the pending writes into the commitment (O(keys written since the last call)) and
    /// returns the root, with the keys whose value changed since the last call.
    pub fn commit(&mut self) -> (B256, Vec<K>) {
        let changed: Vec<K> = self
            .written
            .iter()
            .filter(|(key, old)| old.as_ref() != self.entries.get(*key))
            .map(|(key, _)| key.clone())
            .collect();
        if !self.written.is_empty() || self.lattice.is_none() {
            self.lattice = Some(Arc::new(self.folded()));
            self.written = OrdMap::new();
        }
        (self.root(), changed)
    }
}

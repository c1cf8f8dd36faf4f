//! The key-value store's state: an ordered map of byte keys to byte values, and an incremental
//! commitment to it (a lattice hash, as the ledger's: one element per pair, so a block updates
//! the root in O(pairs it wrote)).

use std::sync::Arc;

use alloy_primitives::B256;
use imbl::OrdMap;
use solana_lattice_hash::lt_hash::LtHash;

use super::super::Write;

/// blake3's key-derivation context for a pair's lattice element: the commitment's version.
const PAIR_CONTEXT: &str = "canon 2026-12 kv pair v1";

fn pair_element(key: &[u8], value: &[u8]) -> LtHash {
    let mut h = blake3::Hasher::new_derive_key(PAIR_CONTEXT);
    // The key's length first, so no two pairs hash the same bytes.
    h.update(&(key.len() as u64).to_le_bytes());
    h.update(key);
    h.update(value);
    LtHash::with(&h)
}

#[derive(Clone, Default)]
pub struct KvState {
    pairs: OrdMap<Vec<u8>, Vec<u8>>,
    /// The commitment to `pairs` as they stood before the writes in `written`.
    lattice: Option<Arc<LtHash>>,
    /// Keys written since `lattice` was brought up to date, with their values then.
    written: OrdMap<Vec<u8>, Option<Vec<u8>>>,
}

impl std::fmt::Debug for KvState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvState")
            .field("pairs", &self.pairs.len())
            .finish()
    }
}

impl KvState {
    /// O(pairs): the one place the commitment is computed from scratch.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> KvState {
        let pairs: OrdMap<Vec<u8>, Vec<u8>> = pairs.into_iter().collect();
        let mut lattice = LtHash::identity();
        for (k, v) in pairs.iter() {
            lattice.mix_in(&pair_element(k, v));
        }
        KvState {
            pairs,
            lattice: Some(Arc::new(lattice)),
            written: OrdMap::new(),
        }
    }

    pub fn get(&self, key: &[u8]) -> Option<&Vec<u8>> {
        self.pairs.get(key)
    }

    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Pairs with `start <= key < end`, in key order.
    pub fn range<'a>(
        &'a self,
        start: &[u8],
        end: Option<&'a [u8]>,
    ) -> impl Iterator<Item = (&'a Vec<u8>, &'a Vec<u8>)> + 'a {
        self.pairs
            .range(start.to_vec()..)
            .take_while(move |(k, _)| end.is_none_or(|e| k.as_slice() < e))
    }

    pub fn pairs(&self) -> impl Iterator<Item = (&Vec<u8>, &Vec<u8>)> {
        self.pairs.iter()
    }

    /// Sets `key` to `value` (`None`: removes it); returns what it held.
    pub fn set(&mut self, key: &[u8], value: Option<Vec<u8>>) -> Option<Vec<u8>> {
        let old = match value {
            Some(v) => self.pairs.insert(key.to_vec(), v),
            None => self.pairs.remove(key),
        };
        if !self.written.contains_key(key) {
            self.written.insert(key.to_vec(), old.clone());
        }
        old
    }

    fn folded(&self) -> LtHash {
        let mut lattice = match &self.lattice {
            Some(l) => LtHash::clone(l),
            None => LtHash::identity(),
        };
        for (key, old) in self.written.iter() {
            let new = self.pairs.get(key);
            if old.as_ref() == new {
                continue;
            }
            if let Some(old) = old {
                lattice.mix_out(&pair_element(key, old));
            }
            if let Some(new) = new {
                lattice.mix_in(&pair_element(key, new));
            }
        }
        lattice
    }

    /// Folds the pending writes into the commitment and returns the root, with the keys whose
    /// value changed since the last call and their values now.
    pub fn commit(&mut self) -> (B256, Vec<Write>) {
        let changed: Vec<Write> = self
            .written
            .iter()
            .filter(|(key, old)| old.as_ref() != self.pairs.get(*key))
            .map(|(key, _)| Write {
                key: key.clone(),
                value: self.pairs.get(key).cloned(),
            })
            .collect();
        if !self.written.is_empty() || self.lattice.is_none() {
            self.lattice = Some(Arc::new(self.folded()));
            self.written = OrdMap::new();
        }
        (B256::from(self.folded().checksum().0), changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The incremental root, committed at any points, is the root computed from scratch
        /// over the same pairs; it moves whenever the pairs do, and only then.
        #[test]
        fn incremental_root_is_the_from_scratch_root(
            ops in proptest::collection::vec(
                (0u8..6, proptest::option::of(0u8..3), proptest::bool::ANY), 0..60)
        ) {
            let mut s = KvState::default();
            let snapshot = |s: &KvState| -> Vec<(Vec<u8>, Vec<u8>)> {
                s.pairs().map(|(k, v)| (k.clone(), v.clone())).collect()
            };
            let mut last = (s.commit().0, snapshot(&s));
            for (key, value, commit) in ops {
                s.set(&[key], value.map(|v| vec![v]));
                if commit {
                    let (root, _) = s.commit();
                    let now = snapshot(&s);
                    let scratch = KvState::from_pairs(now.clone()).commit().0;
                    proptest::prop_assert_eq!(root, scratch);
                    proptest::prop_assert_eq!(root == last.0, now == last.1);
                    last = (root, now);
                }
            }
        }
    }

    #[test]
    fn a_commit_reports_only_keys_whose_value_changed() {
        let mut s = KvState::default();
        s.set(b"a", Some(b"1".to_vec()));
        s.set(b"b", Some(b"2".to_vec()));
        let (_, first) = s.commit();
        assert_eq!(first.len(), 2);
        s.set(b"a", Some(b"9".to_vec()));
        s.set(b"a", Some(b"1".to_vec())); // back as it was
        s.set(b"b", None);
        s.set(b"c", Some(b"3".to_vec()));
        s.set(b"c", None); // never there at a commit
        let (_, second) = s.commit();
        assert_eq!(
            second,
            vec![Write {
                key: b"b".to_vec(),
                value: None
            }]
        );
    }
}

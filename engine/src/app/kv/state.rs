//! The key-value store's state: byte keys to byte values in a [`LatticeMap`], whose root is the
//! state root.
//!
//! Keys and values are held as [`Bytes`], shared, not owned: each block works on a copy of the
//! map, and a write copies the nodes on its path, each holding dozens of pairs. With owned
//! vectors every such copy allocated and copied every pair in the node (a few thousand puts to
//! 100,000 keys copied the pairs of most of the map's leaves every block, on every node).

use alloy_primitives::B256;
use bytes::Bytes;
use solana_lattice_hash::lt_hash::LtHash;

use super::super::lattice::{Element, LatticeMap};
use super::super::Write;

/// blake3's key-derivation context for a pair's lattice element: the commitment's version.
const PAIR_CONTEXT: &str = "canon 2026-12 kv pair v1";

/// The hasher with [`PAIR_CONTEXT`] taken in: deriving it hashes the context string, a
/// compression per element that a clone saves.
static PAIR_HASHER: std::sync::LazyLock<blake3::Hasher> =
    std::sync::LazyLock::new(|| blake3::Hasher::new_derive_key(PAIR_CONTEXT));

impl Element<Bytes> for Bytes {
    fn element(&self, key: &Bytes) -> Option<LtHash> {
        let mut h = PAIR_HASHER.clone();
        // The key's length first, so no two pairs hash the same bytes.
        h.update(&(key.len() as u64).to_le_bytes());
        h.update(key);
        h.update(self);
        Some(LtHash::with(&h))
    }
}

#[derive(Clone, Default)]
pub struct KvState {
    pairs: LatticeMap<Bytes, Bytes>,
}

impl std::fmt::Debug for KvState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvState")
            .field("pairs", &self.len())
            .finish()
    }
}

impl KvState {
    /// O(pairs): the commitment computed from scratch.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>) -> KvState {
        KvState {
            pairs: LatticeMap::from_entries(
                pairs
                    .into_iter()
                    .map(|(k, v)| (Bytes::from(k), Bytes::from(v)))
                    .collect(),
            ),
        }
    }

    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.pairs.entries().get(key).map(|v| &v[..])
    }

    pub fn len(&self) -> usize {
        self.pairs.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.pairs.entries().is_empty()
    }

    /// Pairs with `start <= key < end`, in key order.
    pub fn range<'a>(
        &'a self,
        start: &[u8],
        end: Option<&'a [u8]>,
    ) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        self.pairs
            .entries()
            .range(Bytes::copy_from_slice(start)..)
            .take_while(move |(k, _)| end.is_none_or(|e| &k[..] < e))
            .map(|(k, v)| (&k[..], &v[..]))
    }

    pub fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.pairs.entries().iter().map(|(k, v)| (&k[..], &v[..]))
    }

    /// Sets `key` to `value` (`None`: removes it); returns what it held.
    pub fn set(&mut self, key: &[u8], value: Option<Vec<u8>>) -> Option<Vec<u8>> {
        self.pairs
            .set(Bytes::copy_from_slice(key), value.map(Bytes::from))
            .map(Vec::from)
    }

    /// Folds the pending writes into the commitment and returns the root, with the keys whose
    /// value changed since the last call and their values now.
    pub fn commit(&mut self) -> (B256, Vec<Write>) {
        let (root, changed) = self.pairs.commit();
        let writes = changed
            .into_iter()
            .map(|key| Write {
                value: self.get(&key).map(<[u8]>::to_vec),
                key: key.to_vec(),
            })
            .collect();
        (root, writes)
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
                s.pairs().map(|(k, v)| (k.to_vec(), v.to_vec())).collect()
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

//! Every stored record carries a checksum over its column, its key and its value, so a record
//! the disk damaged (a bit flipped at rest or on the way back, a write torn short) or put under
//! another key (a misdirected write) is refused by name when it is read: the caller gets
//! [`StorageError::Corrupt`], never the bytes.
//!
//! The record format (storage format 8): the value, then four bytes of CRC-32C (Castagnoli,
//! as RocksDB and ext4 use it; in hardware on x86 with SSE 4.2), little-endian, computed over
//! `DOMAIN || column tag || key length (u32, big-endian) || key || value`. The column and the
//! key are in the checksum but not in the record: a record read under another key or column
//! than it was written under fails its check. CRC-32C catches every error of up to 32
//! consecutive bits and all but one in 2^32 of the others; what it guards against is a disk's
//! accident, not an attacker with write access to the database.
//!
//! [`Checksummed`] wraps any [`Storage`] (RocksDB in production, `MemDisk` in the simulator):
//! it seals every value it writes and checks every value it reads, so the engine above it
//! never sees the format and the disk below it may lie.

use std::sync::{Arc, OnceLock};

use super::{Column, Durability, KeyValue, Op, Storage, StorageError, WriteBatch};

/// Keeps these checksums apart from any other CRC-32C of the same bytes.
const DOMAIN: &[u8] = b"canon/record/v1";

/// Where the last batch is journaled on a disk that may tear batches.
pub const KEY_JOURNAL: &[u8] = b"storage/journal";

/// The checksum's size at the end of every stored value.
pub const CHECKSUM_BYTES: usize = 4;

/// What is wrong with a corrupt record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    #[error("{len} bytes, shorter than its {CHECKSUM_BYTES}-byte checksum")]
    Truncated { len: usize },
    #[error(
        "checksum 0x{stored:08x} stored, 0x{computed:08x} computed over its column, key and value"
    )]
    Mismatch { stored: u32, computed: u32 },
    /// A record the node wrote and read back before is not there: its write went elsewhere
    /// (a misdirected write) or was lost after the disk said it was durable.
    #[error("written and held before, now missing")]
    Missing,
}

/// Each column's byte in the checksum. Fixed here, not the enum's order, so that reordering
/// [`Column`] never changes what a stored record's checksum is.
fn tag(column: Column) -> u8 {
    match column {
        Column::Log => 1,
        Column::Meta => 2,
        Column::Block => 3,
        Column::State => 4,
        Column::Batch => 5,
        Column::Attestation => 6,
        Column::Certificate => 7,
    }
}

fn checksum(column: Column, key: &[u8], value: &[u8]) -> u32 {
    // Keys are a few dozen bytes; a key of 4 GiB would only share its length's bytes.
    let key_len = u32::try_from(key.len()).unwrap_or(u32::MAX);
    let mut crc = crc32c::crc32c(DOMAIN);
    crc = crc32c::crc32c_append(crc, &[tag(column)]);
    crc = crc32c::crc32c_append(crc, &key_len.to_be_bytes());
    crc = crc32c::crc32c_append(crc, key);
    crc32c::crc32c_append(crc, value)
}

/// `value` as stored under `column` and `key`: with its checksum appended.
pub fn seal(column: Column, key: &[u8], mut value: Vec<u8>) -> Vec<u8> {
    let crc = checksum(column, key, &value);
    value.extend_from_slice(&crc.to_le_bytes());
    value
}

/// The value a stored record under `column` and `key` holds, or why it is corrupt.
pub fn unseal(column: Column, key: &[u8], mut stored: Vec<u8>) -> Result<Vec<u8>, StorageError> {
    let corrupt = |why| StorageError::Corrupt {
        column,
        key: key.to_vec(),
        why,
    };
    let Some(at) = stored.len().checked_sub(CHECKSUM_BYTES) else {
        return Err(corrupt(Corruption::Truncated { len: stored.len() }));
    };
    let mut tail = [0u8; CHECKSUM_BYTES];
    tail.copy_from_slice(&stored[at..]);
    let stored_crc = u32::from_le_bytes(tail);
    let computed = checksum(column, key, &stored[..at]);
    if stored_crc != computed {
        return Err(corrupt(Corruption::Mismatch {
            stored: stored_crc,
            computed,
        }));
    }
    stored.truncate(at);
    Ok(stored)
}

/// A store whose every record is sealed on the way in and checked on the way out.
#[derive(Clone, Debug, Default)]
pub struct Checksummed<S> {
    inner: S,
    /// The first corrupt record a read met (see [`Storage::corruption_seen`]).
    /// Set once; the driver reads it at every step, so reading takes no lock.
    seen: Arc<OnceLock<StorageError>>,
    /// A planted bug: reads of this column drop the checksum unchecked (the simulator's proof
    /// that its checker notices a skipped check; see `Plant::UncheckedBlockReads`).
    unchecked: Option<Column>,
    /// A planted bug: no journal on a disk that may tear (see `Plant::NoJournal`).
    unjournaled: bool,
}

impl<S: Storage> Checksummed<S> {
    pub fn new(inner: S) -> Self {
        Checksummed {
            inner,
            seen: Arc::default(),
            unchecked: None,
            unjournaled: false,
        }
    }

    /// This store with the planted bug: no journal, however the disk may tear. Only the
    /// simulator's planted-bug runs call it.
    pub fn planted_no_journal(mut self) -> Self {
        self.unjournaled = true;
        self
    }

    /// This store with the planted bug: reads of `column` skip the check. Only the
    /// simulator's planted-bug runs call it.
    pub fn planted_unchecked_reads(mut self, column: Column) -> Self {
        self.unchecked = Some(column);
        self
    }

    /// `unseal`, or, for the planted bug's column, the value with its checksum cut off
    /// unchecked.
    fn open(&self, col: Column, key: &[u8], mut stored: Vec<u8>) -> Result<Vec<u8>, StorageError> {
        if self.unchecked == Some(col) {
            stored.truncate(stored.len().saturating_sub(CHECKSUM_BYTES));
            return Ok(stored);
        }
        unseal(col, key, stored)
    }

    /// `read`, remembering the first corrupt record it met.
    fn noted<T>(&self, read: Result<T, StorageError>) -> Result<T, StorageError> {
        if let Err(e @ StorageError::Corrupt { .. }) = &read {
            let _ = self.seen.set(e.clone());
        }
        read
    }

    /// The store underneath, whose values carry their checksums (for tools that read raw
    /// records, and for a simulated disk's faults).
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: Storage> Storage for Checksummed<S> {
    fn get(&self, col: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.noted(
            self.inner
                .get(col, key)?
                .map(|stored| self.open(col, key, stored))
                .transpose(),
        )
    }

    fn scan(
        &self,
        col: Column,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>, StorageError> {
        self.noted(
            self.inner
                .scan(col, from, to, limit)?
                .into_iter()
                .map(|(k, stored)| self.open(col, &k, stored).map(|v| (k, v)))
                .collect(),
        )
    }

    fn last_before(&self, col: Column, to: &[u8]) -> Result<Option<KeyValue>, StorageError> {
        self.noted(
            self.inner
                .last_before(col, to)?
                .map(|(k, stored)| self.open(col, &k, stored).map(|v| (k, v)))
                .transpose(),
        )
    }

    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), StorageError> {
        let mut ops = batch.ops;
        if self.inner.may_tear() && !self.unjournaled {
            // On a disk that may keep a prefix of a batch, the batch goes first as one
            // record, then its operations: a torn prefix holds either nothing of it or the
            // journal, from which the next start completes it ([`Storage::complete_torn_batch`]).
            let journal =
                crate::codec::encode(&ops).map_err(|e| StorageError::Failed(e.to_string()))?;
            ops.insert(0, Op::Put(Column::Meta, KEY_JOURNAL.to_vec(), journal));
        }
        let ops = ops
            .into_iter()
            .map(|op| match op {
                Op::Put(c, k, v) => {
                    let sealed = seal(c, &k, v);
                    Op::Put(c, k, sealed)
                }
                other => other,
            })
            .collect();
        self.inner.write(WriteBatch { ops }, durability)
    }

    fn may_tear(&self) -> bool {
        self.inner.may_tear()
    }

    fn synced_write_stall(&self) -> std::time::Duration {
        self.inner.synced_write_stall()
    }

    fn read_stall(&self) -> std::time::Duration {
        self.inner.read_stall()
    }

    fn complete_torn_batch(&self) -> Result<bool, StorageError> {
        if !self.inner.may_tear() {
            return Ok(false);
        }
        let Some(stored) = self.inner.get(Column::Meta, KEY_JOURNAL)? else {
            return Ok(false);
        };
        // Corrupt: the scrub that follows reports it, and the repair forgets what it covers.
        let Ok(journal) = unseal(Column::Meta, KEY_JOURNAL, stored) else {
            return Ok(false);
        };
        let ops: Vec<Op> =
            crate::codec::decode(&journal).map_err(|e| StorageError::Failed(e.to_string()))?;
        // Every operation again: puts and deletes are idempotent, and this batch was the last.
        self.write(WriteBatch { ops }, Durability::Synced)?;
        Ok(true)
    }

    fn scrub(&self) -> Result<super::Scrub, StorageError> {
        super::scrub::scrub(&self.inner)
    }

    fn corruption_seen(&self) -> Option<StorageError> {
        self.seen.get().cloned()
    }

    fn note_damage(&self, damage: StorageError) {
        let _ = self.seen.set(damage);
    }
}

#[cfg(test)]
mod tests {
    use super::super::MemDisk;
    use super::*;

    /// The format, pinned: a change to the domain, the tags, the order of what is summed or
    /// the byte order shows here and must come with a new storage format version. The
    /// expected bytes were computed apart from this code, by a bit-at-a-time CRC-32C
    /// (reflected polynomial 0x82F63B78, which gives 0xE3069283 for "123456789") over the
    /// bytes the module comment lists.
    #[test]
    fn a_record_is_its_value_and_these_four_bytes() {
        let sealed = seal(Column::Block, &7u64.to_be_bytes(), b"canon".to_vec());
        assert_eq!(hex::encode(&sealed), "63616e6f6e41d82e6d");
        let meta = seal(Column::Meta, b"format", 8u32.to_be_bytes().to_vec());
        assert_eq!(hex::encode(&meta), "00000008acd058c0");
    }

    #[test]
    fn a_sealed_record_opens_to_its_value() {
        let v = b"some value".to_vec();
        let s = seal(Column::State, b"k", v.clone());
        assert_eq!(s.len(), v.len() + CHECKSUM_BYTES);
        assert_eq!(unseal(Column::State, b"k", s).unwrap(), v);
        assert_eq!(
            unseal(Column::State, b"k", seal(Column::State, b"k", Vec::new())).unwrap(),
            Vec::<u8>::new()
        );
    }

    #[test]
    fn a_short_record_is_truncated_not_a_value() {
        assert_eq!(
            unseal(Column::Log, &[1], vec![1, 2, 3]),
            Err(StorageError::Corrupt {
                column: Column::Log,
                key: vec![1],
                why: Corruption::Truncated { len: 3 }
            })
        );
    }

    proptest::proptest! {
        /// Any one bit flipped anywhere in a stored record (value or checksum) is caught.
        #[test]
        fn a_flipped_bit_is_caught(value in proptest::collection::vec(proptest::num::u8::ANY, 0..300), key in proptest::collection::vec(proptest::num::u8::ANY, 1..40), at in 0usize..1_000, bit in 0u8..8) {
            let mut stored = seal(Column::Block, &key, value);
            let i = at % stored.len();
            stored[i] ^= 1 << bit;
            let caught = matches!(unseal(Column::Block, &key, stored), Err(StorageError::Corrupt { .. }));
            proptest::prop_assert!(caught, "bit {} of byte {} went unnoticed", bit, i);
        }

        /// A record read under another key or in another column than it was written under
        /// (a misdirected write) is caught.
        #[test]
        fn a_misdirected_record_is_caught(value in proptest::collection::vec(proptest::num::u8::ANY, 0..300), key in proptest::collection::vec(proptest::num::u8::ANY, 1..40), other in proptest::collection::vec(proptest::num::u8::ANY, 1..40)) {
            let stored = seal(Column::Log, &key, value);
            if other != key {
                proptest::prop_assert!(unseal(Column::Log, &other, stored.clone()).is_err());
            }
            proptest::prop_assert!(unseal(Column::Certificate, &key, stored).is_err());
        }
    }

    /// On a disk that may tear, a batch cut short by a crash is completed from its journal at
    /// the next start; without the journal (the planted bug), half of it stays.
    #[test]
    fn a_torn_batch_is_completed_from_its_journal() {
        for journaled in [true, false] {
            let disk = MemDisk::new();
            disk.set_may_tear(true);
            let store = if journaled {
                Checksummed::new(disk.clone())
            } else {
                Checksummed::new(disk.clone()).planted_no_journal()
            };
            let mut b = WriteBatch::default();
            for k in 1u8..=4 {
                b.put(Column::State, vec![k], vec![k; 3]);
            }
            store.write(b, Durability::Buffered).unwrap();
            // The journal and two of the four puts reach the platter.
            disk.crash_torn(0, 3);
            let store = Checksummed::new(disk.clone());
            let held = |s: &Checksummed<MemDisk>| {
                (1u8..=4)
                    .filter(|k| s.get(Column::State, &[*k]).unwrap().is_some())
                    .count()
            };
            if journaled {
                assert_eq!(held(&store), 2);
                assert!(store.complete_torn_batch().unwrap());
                assert_eq!(held(&store), 4);
            } else {
                assert_eq!(held(&store), 3, "no journal: three of four puts stay");
            }
        }
    }

    /// Through the wrapper: the store underneath holds sealed values, a damaged one is
    /// refused by column and key on every read path, and the others still read.
    #[test]
    fn every_read_path_refuses_a_damaged_record_by_name() {
        let disk = MemDisk::new();
        let store = Checksummed::new(disk.clone());
        let mut b = WriteBatch::default();
        for k in 1u8..=3 {
            b.put(Column::Certificate, vec![k], vec![k; 10]);
        }
        store.write(b, Durability::Synced).unwrap();
        let raw = disk.get(Column::Certificate, &[2]).unwrap().unwrap();
        assert_eq!(raw.len(), 10 + CHECKSUM_BYTES);
        // The disk flips a bit of record 2 at rest.
        let mut damaged = raw;
        damaged[3] ^= 0x10;
        let mut b = WriteBatch::default();
        b.put(Column::Certificate, vec![2], damaged);
        disk.write(b, Durability::Synced).unwrap();
        let refused = |r: Result<_, StorageError>| match r {
            Err(StorageError::Corrupt { column, key, .. }) => {
                column == Column::Certificate && key == vec![2]
            }
            _ => false,
        };
        assert!(refused(store.get(Column::Certificate, &[2]).map(|_| ())));
        assert!(refused(
            store.scan(Column::Certificate, &[0], &[9], 10).map(|_| ())
        ));
        assert!(refused(
            store.last_before(Column::Certificate, &[3]).map(|_| ())
        ));
        assert_eq!(
            store.get(Column::Certificate, &[1]).unwrap(),
            Some(vec![1; 10])
        );
        assert_eq!(
            store.last_before(Column::Certificate, &[9]).unwrap(),
            Some((vec![3], vec![3; 10]))
        );
        let msg = store
            .get(Column::Certificate, &[2])
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("certificate record at key 0x02 is corrupt"),
            "{msg}"
        );
    }
}

//! The storage seam: an ordered key-value store with column families, atomic write batches and
//! an explicit sync. RocksDB implements it in production; [`MemDisk`] in the simulator.
//!
//! Durability contract: a batch written with [`Durability::Synced`] survives a crash once
//! `write` returns; a [`Durability::Buffered`] batch may be lost at a crash, together with every
//! later buffered batch, but never partially (batches are atomic and ordered, like a WAL).

pub mod checksum;
pub mod mem_disk;
pub mod scrub;

pub use checksum::{Checksummed, Corruption};
pub use mem_disk::MemDisk;
pub use scrub::{CorruptRecord, Scrub};

/// Above every key canon writes: application state keys start with a zero byte, and every
/// other key is a short name or a big-endian number of a few bytes. A scan or a range delete to
/// it covers a whole column.
pub const PAST_EVERY_KEY: [u8; 64] = [0xff; 64];

#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub enum Column {
    /// Raft log entries by index (big-endian u64).
    Log,
    /// Raft vote, committed and purged log ids, applied state, format version.
    Meta,
    /// Canonized blocks by height (big-endian u64).
    Block,
    /// The application's state: its keys, each under a one-byte prefix.
    State,
    /// Sealed L1 batch headers by number (big-endian u64).
    Batch,
    /// Batch attestations by batch number (big-endian u64) then signer id.
    Attestation,
    /// Commit certificates by block height (big-endian u64).
    Certificate,
}

impl Column {
    pub const ALL: [Column; 7] = [
        Column::Log,
        Column::Meta,
        Column::Block,
        Column::State,
        Column::Batch,
        Column::Attestation,
        Column::Certificate,
    ];

    /// The column named `name` (as [`Column::name`] spells it).
    pub fn from_name(name: &str) -> Option<Column> {
        Column::ALL.into_iter().find(|c| c.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Column::Log => "log",
            Column::Meta => "meta",
            Column::Block => "block",
            Column::State => "state",
            Column::Batch => "batch",
            Column::Attestation => "attestation",
            Column::Certificate => "certificate",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Op {
    Put(Column, Vec<u8>, Vec<u8>),
    Delete(Column, Vec<u8>),
    /// Deletes keys in `[from, to)`.
    DeleteRange(Column, Vec<u8>, Vec<u8>),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    pub ops: Vec<Op>,
}

impl WriteBatch {
    pub fn put(&mut self, col: Column, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.ops.push(Op::Put(col, key.into(), value.into()));
    }
    pub fn delete(&mut self, col: Column, key: impl Into<Vec<u8>>) {
        self.ops.push(Op::Delete(col, key.into()));
    }
    pub fn delete_range(&mut self, col: Column, from: impl Into<Vec<u8>>, to: impl Into<Vec<u8>>) {
        self.ops.push(Op::DeleteRange(col, from.into(), to.into()));
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    Synced,
    Buffered,
}

/// Why a storage call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The store itself failed (an I/O error, a missing column family, an injected fault).
    #[error("storage: {0}")]
    Failed(String),
    /// A record read back is not what was written: never a value, always this.
    #[error("storage: the {} record at key 0x{} is corrupt: {why}", .column.name(), hex::encode(.key))]
    Corrupt {
        column: Column,
        key: Vec<u8>,
        why: Corruption,
    },
}

/// A key and its value, as scans return them.
pub type KeyValue = (Vec<u8>, Vec<u8>);

pub trait Storage: Send + Sync + 'static {
    fn get(&self, col: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    /// Key-value pairs with `from <= key < to`, in key order, at most `limit`.
    fn scan(
        &self,
        col: Column,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>, StorageError>;
    /// The greatest key-value pair with `key < to`.
    fn last_before(&self, col: Column, to: &[u8]) -> Result<Option<KeyValue>, StorageError>;
    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), StorageError>;
    /// Every record read and checked (see [`scrub`]). A store that keeps no checksums finds
    /// nothing.
    fn scrub(&self) -> Result<Scrub, StorageError> {
        Ok(Scrub::default())
    }
    /// The first corrupt record a read has met since the store was opened, if any: a node
    /// that met one stops and repairs at its next start instead of going on.
    fn corruption_seen(&self) -> Option<StorageError> {
        None
    }
    /// Something above the store found it lying in a way no checksum shows (a record it held
    /// before is missing): reported like a corrupt read, so the node stops and repairs.
    fn note_damage(&self, _damage: StorageError) {}
    /// Whether a crash can leave part of a batch written (RocksDB's write-ahead log never
    /// does; a simulated disk may be made to).
    fn may_tear(&self) -> bool {
        false
    }
    /// Completes the last batch a crash may have torn, from its journal (see
    /// [`checksum::Checksummed`]); `true` if there was one to complete.
    fn complete_torn_batch(&self) -> Result<bool, StorageError> {
        Ok(false)
    }
    /// How long the device keeps the next synced write waiting before it starts: a stalled
    /// disk. A real store stalls inside `write` itself and says zero here; the simulated one
    /// says how long, and the async caller waits that long on its runtime's clock, blocking
    /// what a real stall would block.
    fn synced_write_stall(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
    /// How long the device keeps the next read waiting: a disk slow to read. As with
    /// [`Storage::synced_write_stall`], a real store stalls inside the read and says zero;
    /// the simulated one says how long, and the async readers that a slow read would hold up
    /// (Raft's log reader past its cache, the block server) wait that long first.
    fn read_stall(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

/// The storage contract every implementation must meet, as one suite: the simulator's disk
/// and RocksDB run the same checks. Test support; it panics on the first broken promise.
#[allow(clippy::unwrap_used, clippy::panic)]
pub mod conformance {
    use super::*;

    fn keys(s: &dyn Storage, col: Column, from: &[u8], to: &[u8], limit: usize) -> Vec<u8> {
        s.scan(col, from, to, limit)
            .unwrap()
            .iter()
            .map(|(k, _)| k[0])
            .collect()
    }

    /// Reads, bounded scans, `last_before`, deletes and range deletes, on an empty store.
    pub fn reads_scans_and_deletes(s: &dyn Storage) {
        for k in 1u8..=5 {
            let mut b = WriteBatch::default();
            b.put(Column::Log, vec![k], vec![k * 10]);
            s.write(b, Durability::Synced).unwrap();
        }
        assert_eq!(s.get(Column::Log, &[3]).unwrap(), Some(vec![30]));
        assert_eq!(
            s.get(Column::Block, &[3]).unwrap(),
            None,
            "columns are separate"
        );
        assert_eq!(keys(s, Column::Log, &[2], &[5], 10), vec![2, 3, 4]);
        assert_eq!(keys(s, Column::Log, &[1], &[9], 2), vec![1, 2]);
        assert!(keys(s, Column::Log, &[5], &[5], 10).is_empty());
        assert_eq!(
            s.last_before(Column::Log, &[5]).unwrap().unwrap().0,
            vec![4]
        );
        assert_eq!(
            s.last_before(Column::Log, &[9]).unwrap().unwrap().0,
            vec![5]
        );
        assert_eq!(s.last_before(Column::Log, &[1]).unwrap(), None);
        let mut b = WriteBatch::default();
        b.delete_range(Column::Log, vec![2], vec![4]);
        b.delete(Column::Log, vec![5]);
        s.write(b, Durability::Buffered).unwrap();
        assert_eq!(keys(s, Column::Log, &[0], &[9], 10), vec![1, 4]);
        assert_eq!(
            s.last_before(Column::Log, &[4]).unwrap().unwrap().0,
            vec![1]
        );
    }
}

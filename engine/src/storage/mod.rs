//! The storage seam: an ordered key-value store with column families, atomic write batches and
//! an explicit sync. RocksDB implements it in production; [`MemDisk`] in the simulator.
//!
//! Durability contract: a batch written with [`Durability::Synced`] survives a crash once
//! `write` returns; a [`Durability::Buffered`] batch may be lost at a crash, together with every
//! later buffered batch, but never partially (batches are atomic and ordered, like a WAL).

pub mod checksum;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

pub use checksum::{Checksummed, Corruption};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
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

#[derive(Clone, Debug, PartialEq, Eq)]
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
}

type Table = BTreeMap<(Column, Vec<u8>), Vec<u8>>;

fn apply_batch(table: &mut Table, batch: &WriteBatch) {
    for op in &batch.ops {
        match op {
            Op::Put(c, k, v) => {
                table.insert((*c, k.clone()), v.clone());
            }
            Op::Delete(c, k) => {
                table.remove(&(*c, k.clone()));
            }
            Op::DeleteRange(c, from, to) => {
                let doomed: Vec<_> = table
                    .range((*c, from.clone())..(*c, to.clone()))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in doomed {
                    table.remove(&k);
                }
            }
        }
    }
}

#[derive(Default)]
struct DiskState {
    /// What survives a crash.
    durable: Table,
    /// Buffered batches not yet durable, oldest first.
    pending: Vec<WriteBatch>,
    /// `durable` with `pending` applied: what reads see while the node runs.
    view: Table,
    /// When set, every write fails with this message (an injected disk fault).
    fail_writes: Option<String>,
    /// With `fail_writes`: writes that still succeed before the fault begins.
    writes_before_fault: usize,
}

/// An in-memory disk with real durability semantics: buffered writes can be lost at a crash.
/// Clones share one disk, so a restarted node re-opens what the crashed one left.
#[derive(Clone, Default)]
pub struct MemDisk {
    state: Arc<Mutex<DiskState>>,
}

impl MemDisk {
    pub fn new() -> MemDisk {
        MemDisk::default()
    }

    fn lock(&self) -> MutexGuard<'_, DiskState> {
        crate::sync::lock(&self.state)
    }

    /// Simulates power loss: the oldest `keep` buffered batches reach the platter, the rest are
    /// lost. Returns how many were lost.
    pub fn crash(&self, keep: usize) -> usize {
        let mut s = self.lock();
        let pending = std::mem::take(&mut s.pending);
        let lost = pending.len().saturating_sub(keep);
        for batch in pending.iter().take(keep) {
            apply_batch(&mut s.durable, batch);
        }
        s.view = s.durable.clone();
        lost
    }

    /// A disk that lied about fsync: everything, synced or not, is gone. Only sabotage
    /// scenarios use it, to prove the checker notices.
    pub fn lose_everything(&self) {
        let mut s = self.lock();
        s.durable.clear();
        s.pending.clear();
        s.view.clear();
    }

    /// Number of buffered batches a crash could lose now.
    pub fn pending_batches(&self) -> usize {
        self.lock().pending.len()
    }

    /// Makes every later write fail (or succeed again with `None`).
    pub fn set_write_fault(&self, fault: Option<String>) {
        self.set_write_fault_after(0, fault);
    }

    /// Lets `writes` more writes succeed, then fails every later one with `fault` (a disk
    /// that dies between two writes of one operation).
    pub fn set_write_fault_after(&self, writes: usize, fault: Option<String>) {
        let mut s = self.lock();
        s.fail_writes = fault;
        s.writes_before_fault = writes;
    }
}

impl Storage for MemDisk {
    fn get(&self, col: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.lock().view.get(&(col, key.to_vec())).cloned())
    }

    fn scan(
        &self,
        col: Column,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StorageError> {
        if from >= to {
            return Ok(Vec::new());
        }
        Ok(self
            .lock()
            .view
            .range((col, from.to_vec())..(col, to.to_vec()))
            .take(limit)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }

    fn last_before(
        &self,
        col: Column,
        to: &[u8],
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>, StorageError> {
        Ok(self
            .lock()
            .view
            .range((col, Vec::new())..(col, to.to_vec()))
            .next_back()
            .map(|((_, k), v)| (k.clone(), v.clone())))
    }

    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), StorageError> {
        let mut s = self.lock();
        if let Some(msg) = &s.fail_writes {
            if s.writes_before_fault == 0 {
                return Err(StorageError::Failed(msg.clone()));
            }
            s.writes_before_fault -= 1;
        }
        apply_batch(&mut s.view, &batch);
        match durability {
            Durability::Buffered => s.pending.push(batch),
            Durability::Synced => {
                // A sync flushes everything before it too, as fsync does.
                let pending = std::mem::take(&mut s.pending);
                for b in &pending {
                    apply_batch(&mut s.durable, b);
                }
                apply_batch(&mut s.durable, &batch);
            }
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn put(disk: &MemDisk, k: u8, d: Durability) {
        let mut b = WriteBatch::default();
        b.put(Column::Meta, vec![k], vec![k]);
        disk.write(b, d).unwrap();
    }

    #[test]
    fn crash_keeps_synced_and_a_prefix_of_buffered() {
        let disk = MemDisk::new();
        put(&disk, 1, Durability::Buffered);
        put(&disk, 2, Durability::Synced);
        put(&disk, 3, Durability::Buffered);
        put(&disk, 4, Durability::Buffered);
        assert_eq!(disk.crash(1), 1);
        let keys: Vec<u8> = disk
            .scan(Column::Meta, &[0], &[255], 10)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k[0])
            .collect();
        assert_eq!(keys, vec![1, 2, 3]);
    }

    #[test]
    fn meets_the_storage_contract() {
        conformance::reads_scans_and_deletes(&MemDisk::new());
        conformance::reads_scans_and_deletes(&Checksummed::new(MemDisk::new()));
    }

    #[test]
    fn write_fault_fails_writes() {
        let disk = MemDisk::new();
        disk.set_write_fault(Some("disk full".into()));
        let mut b = WriteBatch::default();
        b.put(Column::Meta, vec![1], vec![1]);
        assert_eq!(
            disk.write(b, Durability::Synced).unwrap_err(),
            StorageError::Failed("disk full".into())
        );
    }
}

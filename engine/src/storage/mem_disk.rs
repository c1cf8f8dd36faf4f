//! The simulator's disk: an in-memory store with real durability semantics (buffered writes
//! can be lost at a crash, never partially), and the faults a scenario injects into it: failing
//! writes, and the lies real disks tell: a bit flipped at rest or on the way back, a record
//! written under another key, a batch torn by a crash. Every choice a lie makes is an argument
//! (which record, which bit), so a fault schedule can name it and shrinking can drop it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Column, Durability, Op, Storage, StorageError, WriteBatch};

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
    /// The next read of a record of this column comes back with this bit flipped.
    flip_next_read: Option<(Column, u32)>,
    /// The next put to this column lands under its key with the last byte xor-ed by this.
    misdirect_next_put: Option<(Column, u8)>,
    /// Crashes may tear batches ([`MemDisk::crash_torn`]): the store above journals.
    may_tear: bool,
    /// A stalled device: the next this many synced writes each wait this long.
    stall: Option<(u32, std::time::Duration)>,
    /// A device slow to read: the next this many stallable reads each wait this long.
    read_stall: Option<(u32, std::time::Duration)>,
    /// Reads that waited out a stall, for reports: a fault that never bites tests nothing.
    reads_stalled: u64,
}

/// One wait of a stall with `(left, each)` waits left, counting it off.
fn take_one(stall: &mut Option<(u32, std::time::Duration)>) -> std::time::Duration {
    match *stall {
        Some((left, each)) if left > 0 => {
            *stall = (left > 1).then_some((left - 1, each));
            each
        }
        _ => std::time::Duration::ZERO,
    }
}

/// Flips bit `bit` (modulo the record's bits) of `bytes`; nothing for an empty record.
fn flip(bytes: &mut [u8], bit: u32) {
    let bits = bytes.len().saturating_mul(8);
    if bits == 0 {
        return;
    }
    let at = usize::try_from(bit).unwrap_or(usize::MAX) % bits;
    bytes[at / 8] ^= 1 << (at % 8);
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

    /// A crash that tears a write: the oldest `keep` buffered batches reach the platter, then
    /// the first `torn_ops` operations of the next one, and the rest are lost. Returns how
    /// many batches were lost whole or in part. (RocksDB's write-ahead log never tears a
    /// batch; a disk under another store might.)
    pub fn crash_torn(&self, keep: usize, torn_ops: usize) -> usize {
        let mut s = self.lock();
        let pending = std::mem::take(&mut s.pending);
        let lost = pending.len().saturating_sub(keep);
        for batch in pending.iter().take(keep) {
            apply_batch(&mut s.durable, batch);
        }
        if let Some(torn) = pending.get(keep) {
            let prefix = WriteBatch {
                ops: torn.ops.iter().take(torn_ops).cloned().collect(),
            };
            apply_batch(&mut s.durable, &prefix);
        }
        s.view = s.durable.clone();
        lost
    }

    /// Bit rot: flips bit `bit` of the `nth` record (modulo how many there are, in key order)
    /// of column `col`, as stored and as read. Returns the record's key (`None`: the column is
    /// empty).
    pub fn flip_at_rest(&self, col: Column, nth: usize, bit: u32) -> Option<Vec<u8>> {
        let mut s = self.lock();
        let keys: Vec<Vec<u8>> = s
            .view
            .range((col, Vec::new())..)
            .take_while(|((c, _), _)| *c == col)
            .map(|((_, k), _)| k.clone())
            .collect();
        let key = keys.get(nth % keys.len().max(1))?.clone();
        let state = &mut *s;
        for table in [&mut state.durable, &mut state.view] {
            if let Some(v) = table.get_mut(&(col, key.clone())) {
                flip(v, bit);
            }
        }
        Some(key)
    }

    /// The next record of column `col` read back (by get, scan or last_before) has bit `bit`
    /// flipped on the way; what is stored stays sound.
    pub fn flip_next_read(&self, col: Column, bit: u32) {
        self.lock().flip_next_read = Some((col, bit));
    }

    /// Stalls the device: each of the next `writes` synced writes waits `each` first (the
    /// writer's runtime does the waiting; see [`Storage::synced_write_stall`]).
    pub fn stall_synced_writes(&self, writes: u32, each: std::time::Duration) {
        self.lock().stall = (writes > 0).then_some((writes, each));
    }

    /// Slows the device's reads: each of the next `reads` reads that can wait (Raft's log
    /// read past its cache, a block download served) waits `each` first (the reader's
    /// runtime does the waiting; see [`Storage::read_stall`]).
    pub fn stall_reads(&self, reads: u32, each: std::time::Duration) {
        self.lock().read_stall = (reads > 0).then_some((reads, each));
    }

    /// How many reads have waited out a stall so far.
    pub fn reads_stalled(&self) -> u64 {
        self.lock().reads_stalled
    }

    /// The next put to column `col` lands under its key with the last byte xor-ed by `xor`
    /// (another key, `xor` being nonzero); the key it was meant for keeps what it had.
    pub fn misdirect_next_put(&self, col: Column, xor: u8) {
        self.lock().misdirect_next_put = Some((col, xor.max(1)));
    }

    /// Applies a pending read flip to `value`, read from column `col`.
    fn lie_on_read(s: &mut DiskState, col: Column, value: &mut [u8]) {
        if let Some((c, bit)) = s.flip_next_read {
            if c == col {
                flip(value, bit);
                s.flip_next_read = None;
            }
        }
    }

    /// Says whether crashes may tear this disk's batches, so the store above it journals
    /// each batch (see `Checksummed`).
    pub fn set_may_tear(&self, may: bool) {
        self.lock().may_tear = may;
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
    fn may_tear(&self) -> bool {
        self.lock().may_tear
    }

    fn synced_write_stall(&self) -> std::time::Duration {
        take_one(&mut self.lock().stall)
    }

    fn read_stall(&self) -> std::time::Duration {
        let mut s = self.lock();
        let wait = take_one(&mut s.read_stall);
        s.reads_stalled += u64::from(!wait.is_zero());
        wait
    }

    fn get(&self, col: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let mut s = self.lock();
        let mut value = s.view.get(&(col, key.to_vec())).cloned();
        if let Some(v) = value.as_mut() {
            MemDisk::lie_on_read(&mut s, col, v);
        }
        Ok(value)
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
        let mut s = self.lock();
        let mut rows: Vec<(Vec<u8>, Vec<u8>)> = s
            .view
            .range((col, from.to_vec())..(col, to.to_vec()))
            .take(limit)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect();
        if let Some((_, v)) = rows.first_mut() {
            MemDisk::lie_on_read(&mut s, col, v);
        }
        Ok(rows)
    }

    fn last_before(
        &self,
        col: Column,
        to: &[u8],
    ) -> Result<Option<(Vec<u8>, Vec<u8>)>, StorageError> {
        let mut s = self.lock();
        let mut row = s
            .view
            .range((col, Vec::new())..(col, to.to_vec()))
            .next_back()
            .map(|((_, k), v)| (k.clone(), v.clone()));
        if let Some((_, v)) = row.as_mut() {
            MemDisk::lie_on_read(&mut s, col, v);
        }
        Ok(row)
    }

    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), StorageError> {
        let mut s = self.lock();
        if let Some(msg) = &s.fail_writes {
            if s.writes_before_fault == 0 {
                return Err(StorageError::Failed(msg.clone()));
            }
            s.writes_before_fault -= 1;
        }
        let mut batch = batch;
        if let Some((col, xor)) = s.misdirect_next_put {
            let hit = batch.ops.iter_mut().find_map(|op| match op {
                Op::Put(c, k, _) if *c == col && !k.is_empty() => Some(k),
                _ => None,
            });
            if let Some(key) = hit {
                if let Some(last) = key.last_mut() {
                    *last ^= xor;
                }
                s.misdirect_next_put = None;
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn put(disk: &MemDisk, k: u8, d: Durability) {
        let mut b = WriteBatch::default();
        b.put(Column::Meta, vec![k], vec![k]);
        disk.write(b, d).unwrap();
    }

    /// A stall counts off its waits one per ask and then says zero; reads and synced
    /// writes stall apart, and healing (zero waits) ends a stall early.
    #[test]
    fn stalls_count_off_their_waits() {
        use std::time::Duration;
        let disk = MemDisk::new();
        disk.stall_reads(2, Duration::from_millis(40));
        disk.stall_synced_writes(1, Duration::from_millis(700));
        let reads: Vec<u64> = (0..3)
            .map(|_| disk.read_stall().as_millis() as u64)
            .collect();
        assert_eq!(reads, vec![40, 40, 0]);
        assert_eq!(disk.reads_stalled(), 2);
        assert_eq!(disk.synced_write_stall(), Duration::from_millis(700));
        assert_eq!(disk.synced_write_stall(), Duration::ZERO);
        disk.stall_reads(5, Duration::from_millis(9));
        disk.stall_reads(0, Duration::ZERO);
        assert_eq!(disk.read_stall(), Duration::ZERO);
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
        use super::super::{conformance, Checksummed};
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

    fn sealed_store() -> (MemDisk, super::super::Checksummed<MemDisk>) {
        let disk = MemDisk::new();
        let store = super::super::Checksummed::new(disk.clone());
        let mut b = WriteBatch::default();
        for k in 1u8..=4 {
            b.put(Column::Block, vec![k], vec![k; 16]);
        }
        store.write(b, Durability::Synced).unwrap();
        (disk, store)
    }

    fn corrupt(r: Result<Option<Vec<u8>>, StorageError>, key: u8) -> bool {
        matches!(r, Err(StorageError::Corrupt { column: Column::Block, key: k, .. }) if k == vec![key])
    }

    /// Bit rot survives a crash and is refused on every read until rewritten.
    #[test]
    fn a_bit_flipped_at_rest_is_refused_after_a_crash_too() {
        let (disk, store) = sealed_store();
        assert_eq!(disk.flip_at_rest(Column::Block, 5, 77), Some(vec![2]));
        assert!(corrupt(store.get(Column::Block, &[2]), 2));
        disk.crash(0);
        assert!(corrupt(store.get(Column::Block, &[2]), 2));
        assert_eq!(store.get(Column::Block, &[1]).unwrap(), Some(vec![1; 16]));
        assert_eq!(disk.flip_at_rest(Column::Certificate, 0, 1), None);
    }

    /// A flip on the way back fails one read; the stored record is sound.
    #[test]
    fn a_bit_flipped_on_read_fails_that_read_only() {
        let (disk, store) = sealed_store();
        disk.flip_next_read(Column::Block, 3);
        assert!(store.scan(Column::Block, &[3], &[9], 10).is_err());
        assert_eq!(store.get(Column::Block, &[3]).unwrap(), Some(vec![3; 16]));
        disk.flip_next_read(Column::Block, 3);
        assert!(corrupt(store.get(Column::Block, &[4]), 4));
        assert_eq!(store.get(Column::Block, &[4]).unwrap(), Some(vec![4; 16]));
    }

    /// A misdirected write: the record lands under another key, where its checksum (bound
    /// to the key it was meant for) refuses it; the intended key keeps its old value.
    #[test]
    fn a_misdirected_write_is_refused_where_it_landed() {
        let (disk, store) = sealed_store();
        disk.misdirect_next_put(Column::Block, 0x10);
        let mut b = WriteBatch::default();
        b.put(Column::Block, vec![2], vec![0xee; 16]);
        store.write(b, Durability::Synced).unwrap();
        assert_eq!(store.get(Column::Block, &[2]).unwrap(), Some(vec![2; 16]));
        assert!(corrupt(store.get(Column::Block, &[0x12]), 0x12));
    }

    /// A torn write: a crash keeps a prefix of a batch's operations.
    #[test]
    fn a_torn_write_keeps_a_prefix_of_the_batch() {
        let disk = MemDisk::new();
        let mut b = WriteBatch::default();
        for k in 1u8..=3 {
            b.put(Column::Log, vec![k], vec![k]);
        }
        disk.write(b, Durability::Buffered).unwrap();
        assert_eq!(disk.crash_torn(0, 2), 1);
        let keys: Vec<u8> = disk
            .scan(Column::Log, &[0], &[9], 10)
            .unwrap()
            .iter()
            .map(|(k, _)| k[0])
            .collect();
        assert_eq!(keys, vec![1, 2]);
    }
}

//! RocksDB behind the engine's storage seam: one column family per [`Column`], atomic write
//! batches, and a real fsync for [`Durability::Synced`]. A database remembers the node id and
//! format version it was written with; opening it as another node or another format is refused.
//! Every record in it carries its checksum ([`Checksummed`]): [`RocksStorage::open`] hands out
//! the checked store, never the raw one.

use std::path::{Path, PathBuf};

use canon_engine::storage::{
    Checksummed, Column, Durability, KeyValue, Op, Storage, StorageError, WriteBatch,
};
use canon_engine::NodeId;
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, Direction, IteratorMode, Options,
    WriteBufferManager, WriteOptions, DB,
};

/// What RocksDB may hold in memory, whatever the chain's length. With its defaults every
/// column keeps up to two 64 MiB memtables (six columns: 768 MiB) and index blocks outside any
/// cache, so resident memory climbed with the data for a long while (the soak bench: +70%
/// between 20,000 and 200,000 blocks). Here memtables of every column share one budget (the
/// largest is flushed when it is reached) and reads share one cache, index and filter blocks
/// included; both are small, since blocks are written once in height order and the ledger is
/// read from memory, so they fill early and resident memory levels off.
const MEMTABLE_BUDGET_BYTES: usize = 32 << 20;
const MEMTABLE_BYTES: usize = 8 << 20;
const BLOCK_CACHE_BYTES: usize = 16 << 20;
/// The most write-ahead log kept (see `RocksStorage::open`).
const MAX_WAL_BYTES: u64 = 64 << 20;
/// How much written data RocksDB lets pile up before it asks the kernel to write it out.
const SYNC_EVERY_BYTES: u64 = 1 << 20;

/// Bumped whenever the on-disk layout changes incompatibly (5: state roots are the ledger's
/// lattice-hash checksum, so a chain stored by 4 would not verify; 6: blocks are served only
/// with commit certificates, which a chain stored by 5 has none of; 7: blocks carry an
/// application's opaque transactions, each length-prefixed, and the application's state lives
/// in the `state` column, not `account`; 8: every record ends in its checksum, so a database
/// of 7 would read as corrupt throughout; 9: block headers may declare new members and the
/// applied state records the chain's signer sets, so headers and state of 8 do not decode; 10:
/// sealed batches name their next L1 attesters and commit to them, so batches of 9 neither
/// decode nor match what L1 now computes).
pub const FORMAT_VERSION: u32 = 10;
pub(crate) const KEY_FORMAT: &[u8] = b"canon/format";
const KEY_NODE_ID: &[u8] = b"canon/node_id";

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("general_rocks_db_path {path}: cannot open RocksDB: {source}")]
    Rocks {
        path: PathBuf,
        source: rocksdb::Error,
    },
    #[error("general_rocks_db_path {path}: written by format version {found}, this build reads {expected}; use a fresh path or a matching build")]
    Format {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("general_rocks_db_path {path}: belongs to node {found}, but network_secret_key gives {expected}; each node needs its own database")]
    OtherNode {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("general_rocks_db_path {path}: {what}")]
    Corrupt { path: PathBuf, what: String },
}

pub struct RocksStorage {
    db: DB,
}

/// Runs blocking RocksDB work (an fsync, a long scan) so it never stalls an async worker: on a
/// worker of tokio's multi-threaded runtime, the worker's other tasks move to another thread
/// for the duration (`block_in_place`); anywhere else (a blocking thread, a plain thread) it
/// simply runs. The engine's storage seam is synchronous, and openraft calls it from tasks.
fn off_the_workers<T>(f: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn rocks_err(e: rocksdb::Error) -> StorageError {
    StorageError::Failed(format!("rocksdb: {e}"))
}

impl RocksStorage {
    /// Opens (creating if missing) the database at `path` for node `node_id`: the store that
    /// seals and checks every record.
    pub fn open(path: &Path, node_id: NodeId) -> Result<Checksummed<RocksStorage>, OpenError> {
        let p = path.to_path_buf();
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_write_buffer_manager(&WriteBufferManager::new_write_buffer_manager(
            MEMTABLE_BUDGET_BYTES,
            false,
        ));
        // A write-ahead log file is deleted only when every column's memtable holding writes
        // from it has been flushed. The small columns (Raft's marks, attestations) seldom fill
        // theirs, so without a bound every log file since the start stayed: 446 MB of them
        // after 750,000 key-value puts, all replayed at the next start. Past this size the
        // columns holding the oldest file are flushed and it goes.
        opts.set_max_total_wal_size(MAX_WAL_BYTES);
        // Compactions run at the lowest CPU priority. Every node of a cluster is handed the
        // same writes, so on a shared machine their compactions start together; at normal
        // priority three of them (half a second of a core each, rewriting the state) took
        // both cores of the loopback bench's machine from Raft and the sequencer, and the
        // blocks proposed then took 300 ms to commit instead of 40.
        let mut env = rocksdb::Env::new().map_err(|source| OpenError::Rocks {
            path: p.clone(),
            source,
        })?;
        env.lower_thread_pool_cpu_priority();
        env.lower_high_priority_thread_pool_cpu_priority();
        opts.set_env(&env);
        // Written data reaches the disk a megabyte at a time in the background, rather than in
        // bursts the kernel's writeback then makes every writer wait behind.
        opts.set_bytes_per_sync(SYNC_EVERY_BYTES);
        opts.set_wal_bytes_per_sync(SYNC_EVERY_BYTES);
        let cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let cfs = Column::ALL.iter().map(|c| {
            let mut table = BlockBasedOptions::default();
            table.set_block_cache(&cache);
            table.set_cache_index_and_filter_blocks(true);
            let mut cf = Options::default();
            cf.set_write_buffer_size(MEMTABLE_BYTES);
            cf.set_block_based_table_factory(&table);
            ColumnFamilyDescriptor::new(c.name(), cf)
        });
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(|source| OpenError::Rocks {
            path: p.clone(),
            source,
        })?;
        let storage = Checksummed::new(RocksStorage { db });
        let corrupt = |what: String| OpenError::Corrupt {
            path: p.clone(),
            what,
        };
        // A marker of four bare bytes is a database from before checksums (format 7 or
        // older): say which format it is rather than that its marker is corrupt.
        let raw_format = storage
            .inner()
            .get(Column::Meta, KEY_FORMAT)
            .map_err(|e| corrupt(e.to_string()))?;
        if let Some(bare) = raw_format.filter(|f| f.len() == 4) {
            let mut b = [0u8; 4];
            b.copy_from_slice(&bare);
            return Err(OpenError::Format {
                path: p,
                found: u32::from_be_bytes(b),
                expected: FORMAT_VERSION,
            });
        }
        let format = storage
            .get(Column::Meta, KEY_FORMAT)
            .map_err(|e| corrupt(e.to_string()))?;
        let id = storage
            .get(Column::Meta, KEY_NODE_ID)
            .map_err(|e| corrupt(e.to_string()))?;
        match (format, id) {
            (None, None) => {
                let mut b = WriteBatch::default();
                b.put(
                    Column::Meta,
                    KEY_FORMAT,
                    FORMAT_VERSION.to_be_bytes().to_vec(),
                );
                b.put(Column::Meta, KEY_NODE_ID, node_id.0.to_vec());
                storage
                    .write(b, Durability::Synced)
                    .map_err(|e| corrupt(e.to_string()))?;
            }
            (Some(f), Some(found_id)) => {
                let found = u32::from_be_bytes(
                    f.as_slice()
                        .try_into()
                        .map_err(|_| corrupt("format marker is not 4 bytes".into()))?,
                );
                if found != FORMAT_VERSION {
                    return Err(OpenError::Format {
                        path: p,
                        found,
                        expected: FORMAT_VERSION,
                    });
                }
                if found_id.as_slice() != node_id.0.as_slice() {
                    return Err(OpenError::OtherNode {
                        path: p,
                        found: format!("0x{}", hex::encode(&found_id)),
                        expected: node_id.to_string(),
                    });
                }
            }
            _ => return Err(corrupt("format marker or node id missing".into())),
        }
        Ok(storage)
    }

    fn cf(&self, col: Column) -> Result<&rocksdb::ColumnFamily, StorageError> {
        self.db
            .cf_handle(col.name())
            .ok_or_else(|| StorageError::Failed(format!("column family {} missing", col.name())))
    }
}

impl Storage for RocksStorage {
    fn get(&self, col: Column, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        self.db.get_cf(self.cf(col)?, key).map_err(rocks_err)
    }

    fn scan(
        &self,
        col: Column,
        from: &[u8],
        to: &[u8],
        limit: usize,
    ) -> Result<Vec<KeyValue>, StorageError> {
        if from >= to {
            return Ok(Vec::new());
        }
        let cf = self.cf(col)?;
        off_the_workers(|| {
            let mut out = Vec::new();
            for item in self
                .db
                .iterator_cf(cf, IteratorMode::From(from, Direction::Forward))
            {
                let (k, v) = item.map_err(rocks_err)?;
                if &*k >= to || out.len() >= limit {
                    break;
                }
                out.push((k.to_vec(), v.to_vec()));
            }
            Ok(out)
        })
    }

    fn last_before(&self, col: Column, to: &[u8]) -> Result<Option<KeyValue>, StorageError> {
        // A reverse iterator from `to` starts at the last key <= to.
        for item in self
            .db
            .iterator_cf(self.cf(col)?, IteratorMode::From(to, Direction::Reverse))
        {
            let (k, v) = item.map_err(rocks_err)?;
            if &*k < to {
                return Ok(Some((k.to_vec(), v.to_vec())));
            }
        }
        Ok(None)
    }

    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), StorageError> {
        let mut b = rocksdb::WriteBatch::default();
        for op in &batch.ops {
            match op {
                Op::Put(c, k, v) => b.put_cf(self.cf(*c)?, k, v),
                Op::Delete(c, k) => b.delete_cf(self.cf(*c)?, k),
                Op::DeleteRange(c, from, to) => b.delete_range_cf(self.cf(*c)?, from, to),
            }
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(durability == Durability::Synced);
        off_the_workers(|| self.db.write_opt(b, &opts)).map_err(rocks_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use canon_engine::keys::SecretKey;

    fn id(n: u8) -> NodeId {
        SecretKey::from_bytes([n; 32]).unwrap().node_id()
    }

    fn put(s: &(impl Storage + ?Sized), k: &[u8], v: &[u8]) {
        let mut b = WriteBatch::default();
        b.put(Column::Log, k.to_vec(), v.to_vec());
        s.write(b, Durability::Synced).unwrap();
    }

    /// A task doing synced writes must not stall the other tasks of its worker: with one
    /// worker, a ticker still ticks while the writes run (it could not without the handoff,
    /// since the writing task never yields).
    #[test]
    fn synced_writes_leave_the_async_worker_free() {
        use std::sync::atomic::{AtomicU64, Ordering};
        use std::sync::Arc;
        use std::time::{Duration, Instant};

        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(RocksStorage::open(dir.path(), id(1)).unwrap());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let ticks = Arc::new(AtomicU64::new(0));
        let during = rt.block_on(async {
            let t = ticks.clone();
            let ticker = tokio::spawn(async move {
                loop {
                    t.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            });
            tokio::time::sleep(Duration::from_millis(5)).await;
            let (s, t) = (s.clone(), ticks.clone());
            let writer = tokio::spawn(async move {
                let before = t.load(Ordering::SeqCst);
                let started = Instant::now();
                let mut i = 0u32;
                // No await in here: only the handoff lets the ticker run meanwhile.
                while started.elapsed() < Duration::from_millis(300) {
                    put(s.as_ref(), &i.to_be_bytes(), b"x");
                    i += 1;
                }
                t.load(Ordering::SeqCst) - before
            });
            let during = writer.await.unwrap();
            ticker.abort();
            during
        });
        assert!(
            during > 10,
            "the worker was blocked by the writes: {during} ticks in 300 ms"
        );
    }

    #[test]
    fn meets_the_storage_contract() {
        let dir = tempfile::tempdir().unwrap();
        let s = RocksStorage::open(dir.path(), id(1)).unwrap();
        canon_engine::storage::conformance::reads_scans_and_deletes(&s);
    }

    #[test]
    fn synced_writes_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = RocksStorage::open(dir.path(), id(1)).unwrap();
            put(&s, b"k", b"v");
        }
        let s = RocksStorage::open(dir.path(), id(1)).unwrap();
        assert_eq!(s.get(Column::Log, b"k").unwrap(), Some(b"v".to_vec()));
    }

    #[test]
    fn refuses_another_nodes_database() {
        let dir = tempfile::tempdir().unwrap();
        drop(RocksStorage::open(dir.path(), id(1)).unwrap());
        let e = RocksStorage::open(dir.path(), id(2))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("general_rocks_db_path") && e.contains("belongs to node"),
            "{e}"
        );
    }

    #[test]
    fn refuses_an_incompatible_format() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = RocksStorage::open(dir.path(), id(1)).unwrap();
            let mut b = WriteBatch::default();
            b.put(
                Column::Meta,
                KEY_FORMAT,
                (FORMAT_VERSION + 1).to_be_bytes().to_vec(),
            );
            s.write(b, Durability::Synced).unwrap();
        }
        let e = RocksStorage::open(dir.path(), id(1))
            .err()
            .unwrap()
            .to_string();
        let expected = format!(
            "written by format version {}, this build reads {FORMAT_VERSION}",
            FORMAT_VERSION + 1
        );
        assert!(e.contains(&expected), "{e}");
    }

    /// A database written before records carried checksums (format 7: a bare 4-byte marker)
    /// is refused by its format, not reported corrupt.
    #[test]
    fn refuses_a_database_from_before_checksums_by_its_format() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = RocksStorage::open(dir.path(), id(1)).unwrap();
            let mut b = WriteBatch::default();
            b.put(Column::Meta, KEY_FORMAT, 7u32.to_be_bytes().to_vec());
            s.inner().write(b, Durability::Synced).unwrap();
        }
        let e = RocksStorage::open(dir.path(), id(1))
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains(&format!(
                "written by format version 7, this build reads {FORMAT_VERSION}"
            )),
            "{e}"
        );
    }

    /// What RocksDB holds is sealed: the raw value is the written one and its checksum.
    #[test]
    fn records_are_stored_with_their_checksums() {
        let dir = tempfile::tempdir().unwrap();
        let s = RocksStorage::open(dir.path(), id(1)).unwrap();
        put(&s, b"k", b"value");
        let raw = s.inner().get(Column::Log, b"k").unwrap().unwrap();
        assert_eq!(&raw[..5], b"value");
        assert_eq!(
            raw.len(),
            5 + canon_engine::storage::checksum::CHECKSUM_BYTES
        );
        assert_eq!(s.get(Column::Log, b"k").unwrap(), Some(b"value".to_vec()));
    }
}

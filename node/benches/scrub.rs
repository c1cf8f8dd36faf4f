//! The start-up scrub on a large database: how long a node's start takes to read every record
//! once and check its checksum (`canon_engine::storage::scrub`, run before anything else
//! reads the store), and how long `canon-node check-db` takes on the same database.
//!
//! It fills a RocksDB database through the node's own store (`RocksStorage`, every record
//! sealed) with a chain's worth of records: SCRUB_BLOCKS blocks of SCRUB_BLOCK_BYTES each,
//! one certificate per block, and SCRUB_STATE_RECORDS application records. The values are
//! pseudo-random bytes of those sizes: the scrub's cost is per record and per byte, whatever
//! they hold. It then reopens the database (what a restart does) and times the scrub, then
//! `check-db`, each twice. The page cache is warm (the bench just wrote the files): a cold
//! start also waits for the disk, at its own read speed.
//!
//! `cargo bench -p canon-node --features production --bench scrub`
//! Knobs (env): SCRUB_BLOCKS (200000), SCRUB_BLOCK_BYTES (1200), SCRUB_STATE_RECORDS (200000).

use std::path::Path;
use std::time::Instant;

use canon_engine::storage::{Column, Durability, Storage, WriteBatch};
use canon_node::storage::RocksStorage;
use rand::{RngCore, SeedableRng};

fn env_or<T: std::str::FromStr>(k: &str, default: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Bytes under `dir`, recursively.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    })
}

fn main() {
    let blocks: u64 = env_or("SCRUB_BLOCKS", 200_000);
    let block_bytes: usize = env_or("SCRUB_BLOCK_BYTES", 1_200);
    let state_records: u64 = env_or("SCRUB_STATE_RECORDS", 200_000);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("db");
    let node = canon_engine::keys::derived_key("canon-bench/scrub", 0).node_id();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut bytes = |n: usize| {
        let mut v = vec![0u8; n];
        rng.fill_bytes(&mut v);
        v
    };

    let filled = Instant::now();
    {
        let store = RocksStorage::open(&path, node).expect("open the database");
        const PER_BATCH: u64 = 1_000;
        for first in (1..=blocks).step_by(PER_BATCH as usize) {
            let mut batch = WriteBatch::default();
            for height in first..(first + PER_BATCH).min(blocks + 1) {
                let key = height.to_be_bytes().to_vec();
                batch.put(Column::Block, key.clone(), bytes(block_bytes));
                batch.put(Column::Certificate, key, bytes(180));
            }
            store
                .write(batch, Durability::Buffered)
                .expect("write blocks");
        }
        for first in (0..state_records).step_by(PER_BATCH as usize) {
            let mut batch = WriteBatch::default();
            for _ in first..(first + PER_BATCH).min(state_records) {
                batch.put(Column::State, bytes(32), bytes(72));
            }
            store
                .write(batch, Durability::Buffered)
                .expect("write state");
        }
        store
            .write(WriteBatch::default(), Durability::Synced)
            .expect("sync");
    }
    let on_disk = dir_bytes(&path);
    let records = blocks * 2 + state_records;
    println!(
        "filled: {blocks} blocks of {block_bytes} B, {blocks} certificates, {state_records} state records: {records} records, {:.0} MB on disk, in {:.1} s",
        on_disk as f64 / 1e6,
        filled.elapsed().as_secs_f64()
    );

    let store = RocksStorage::open(&path, node).expect("reopen the database");
    for run in 1..=2 {
        let started = Instant::now();
        let scrub = store.scrub().expect("scrub");
        let secs = started.elapsed().as_secs_f64();
        assert!(scrub.corrupt.is_empty(), "a fresh database reads sound");
        println!(
            "scrub (start-up) run {run}: {secs:.2} s, {:.0} records/s, {:.0} MB/s of database",
            records as f64 / secs,
            on_disk as f64 / 1e6 / secs
        );
    }
    drop(store);
    for run in 1..=2 {
        let started = Instant::now();
        let report = canon_node::check_db::check(&path).expect("check-db");
        let secs = started.elapsed().as_secs_f64();
        assert!(report.findings.is_empty(), "check-db finds nothing");
        println!(
            "check-db run {run}: {secs:.2} s, {:.0} records/s",
            records as f64 / secs
        );
    }
}

//! L1 benchmark: a real 3-node cluster (release `canon-node` processes, RocksDB) whose node 0
//! commits batches to a real anvil at the seed's `--block-time 0.25`. Prints blocks committed
//! to L1 per second beside the chain's own rate, and the latency from a block's canonization
//! (first seen canonized by node 0's status) to L1 holding it (first seen in the contract's
//! head), p50/p99/max. Polls every 20 ms, so figures carry up to that much error.
//!
//! `cargo bench -p canon-node --features production --bench l1`
//! Knobs (env): L1_BENCH_SECS (60), L1_BENCH_BLOCK_TIME_MS (100), L1_BENCH_BLOCKS_PER_BATCH (10).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use canon_engine::keys::SecretKey;
use canon_engine::settlement::batch::address_of;
use canon_node::devnet::{node_key, Devnet};
use canon_node::l1::{AnvilProcess, ANVIL_DEV_KEY, L1};

const PORT_OFFSET: u16 = 23_000;

fn env_or<T: std::str::FromStr>(k: &str, default: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() {
    let secs: u64 = env_or("L1_BENCH_SECS", 60);
    let block_time_ms: u64 = env_or("L1_BENCH_BLOCK_TIME_MS", 100);
    let per_batch: u64 = env_or("L1_BENCH_BLOCKS_PER_BATCH", 10);
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    let anvil = AnvilProcess::start(0, Some(0.25), None)
        .expect("anvil: npm install -g @foundry-rs/anvil@1.7.1");
    let key = SecretKey::from_hex(ANVIL_DEV_KEY).expect("key");
    let l1 = L1::connect(&anvil.url, &key).expect("connect");
    rt.block_on(l1.wait_ready(Duration::from_secs(20)))
        .expect("anvil answers");
    let validators = (0..3).map(|i| address_of(&node_key(i).node_id())).collect();
    let address = rt.block_on(l1.deploy(validators)).expect("deploy");
    let dir = tempfile::tempdir().expect("tempdir");
    let env = vec![
        ("GENERAL_L1_RPC_URL".to_string(), anvil.url.clone()),
        ("L1_SETTLEMENT_ADDRESS".to_string(), address.to_string()),
        (
            "BATCHER_BLOCKS_PER_BATCH".to_string(),
            per_batch.to_string(),
        ),
        (
            "SEQUENCER_BLOCK_TIME".to_string(),
            block_time_ms.to_string(),
        ),
        ("RUST_LOG".to_string(), "warn".to_string()),
    ];
    let exe = std::path::PathBuf::from(env!("CARGO_BIN_EXE_canon-node"));
    let mut net = Devnet::start_with(&exe, 3, 0, dir.path(), PORT_OFFSET, env).expect("devnet");
    eprintln!(
        "l1 bench: 3 nodes, {block_time_ms} ms blocks, {per_batch} blocks per batch, anvil at 0.25 s blocks, {secs} s"
    );

    // Warm-up: the first batch on L1.
    let warm = Instant::now();
    while rt
        .block_on(l1.head(address))
        .map(|h| h.batch_number)
        .unwrap_or(0)
        == 0
    {
        assert!(
            warm.elapsed() < Duration::from_secs(60),
            "no batch on L1 within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut canonized_at: BTreeMap<u64, Instant> = BTreeMap::new();
    let mut on_l1_at: BTreeMap<u64, Instant> = BTreeMap::new();
    let (mut canon_height, mut l1_height) = (0u64, 0u64);
    let first_l1 = rt.block_on(l1.head(address)).map(|h| h.height).unwrap_or(0);
    let first_canon = net.clients[0]
        .status()
        .map(|s| s.last_canonized_height)
        .unwrap_or(0);
    let mut last_progress = Instant::now();
    let mut printed = 0u64;
    while Instant::now() < deadline {
        let now = Instant::now();
        if let Ok(s) = net.clients[0].status() {
            for h in canon_height + 1..=s.last_canonized_height {
                canonized_at.entry(h).or_insert(now);
            }
            canon_height = canon_height.max(s.last_canonized_height);
        }
        if let Ok(h) = rt.block_on(l1.head(address)) {
            for x in l1_height + 1..=h.height {
                on_l1_at.entry(x).or_insert(now);
            }
            if h.height > l1_height {
                last_progress = now;
            }
            l1_height = l1_height.max(h.height);
        }
        if last_progress.elapsed() > Duration::from_secs(30) {
            eprintln!("l1 bench: L1 made no progress for 30 s; stopping early");
            break;
        }
        let second = start.elapsed().as_secs();
        if second >= printed + 10 {
            printed = second;
            eprintln!("  {second:>3} s: canonized {canon_height}, on L1 {l1_height}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = start.elapsed().as_secs_f64();
    // Blocks canonized inside the window and later on L1 inside it.
    let mut lat: Vec<f64> = on_l1_at
        .iter()
        .filter(|(h, _)| **h > first_canon.max(first_l1))
        .filter_map(|(h, at)| {
            canonized_at
                .get(h)
                .map(|c| at.saturating_duration_since(*c).as_secs_f64() * 1e3)
        })
        .collect();
    lat.sort_by(f64::total_cmp);
    let chain_rate = canon_height.saturating_sub(first_canon) as f64 / elapsed;
    let l1_rate = l1_height.saturating_sub(first_l1) as f64 / elapsed;
    println!(
        "l1: chain canonized {chain_rate:.1} blocks/s; L1 committed {l1_rate:.1} blocks/s ({:.2} batches/s); lag at end {} blocks",
        l1_rate / per_batch as f64,
        canon_height.saturating_sub(l1_height)
    );
    println!(
        "l1: canonization-to-L1 latency over {} blocks: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN)
    );
    net.stop_all();
    drop(anvil);
}

//! Soak: a real 3-node cluster (`canon-node` processes, RocksDB with fsync on) runs a short
//! block time under a light, steady load until it has canonized `SOAK_BLOCKS` blocks, and
//! prints each node's resident memory, database size and Raft log length at 10%, 50% and 100%.
//! The targets, printed as ratios measured in the same run:
//! - after warm-up (10%) resident memory grows by less than 10% up to 100%;
//! - disk grows only with the chain: bytes per block from 50% to 100% are about those from 10%
//!   to 50% (a log that kept every block would show here), and every Raft log stays bounded by
//!   its snapshot interval plus the entries it keeps.
//!
//! `cargo bench -p canon-node --features production --bench soak`
//! Knobs (env): SOAK_BLOCKS (200000), SOAK_BLOCK_TIME_MS (5), SOAK_RATE (200 tx/s),
//! SOAK_SNAPSHOT_INTERVAL (1024) and SOAK_LOG_KEEP (256), the nodes'
//! `consensus_snapshot_interval_entries` and `consensus_log_keep_entries`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use canon_node::devnet::Devnet;
use canon_node::genesis::Application;
use canon_node::load::{self, LoadConfig, Pace};

const PORT_OFFSET: u16 = 22_300;

fn env_or<T: std::str::FromStr>(k: &str, default: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident memory of process `pid`, in bytes (Linux `VmRSS`).
fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Bytes of every file under `dir`.
fn disk_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

#[derive(Clone, Debug)]
struct Sample {
    height: u64,
    rss: Vec<u64>,
    disk: Vec<u64>,
    log_entries: Vec<u64>,
}

fn sample(net: &Devnet, height: u64) -> Sample {
    let n = net.consensus;
    let rss = (0..n)
        .map(|i| {
            net.children[i]
                .as_ref()
                .and_then(|c| rss_bytes(c.id()))
                .unwrap_or(0)
        })
        .collect();
    let disk = (0..n)
        .map(|i| disk_bytes(&net.dir.join(format!("node-{i}"))))
        .collect();
    let log_entries = (0..n)
        .map(|i| {
            net.clients[i]
                .status()
                .ok()
                .and_then(|s| s.log)
                .map_or(0, |l| l.entries)
        })
        .collect();
    Sample {
        height,
        rss,
        disk,
        log_entries,
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn print_sample(label: &str, s: &Sample, elapsed: Duration) {
    let rss: Vec<String> = s.rss.iter().map(|b| format!("{:.1}", mib(*b))).collect();
    let disk: Vec<String> = s.disk.iter().map(|b| format!("{:.1}", mib(*b))).collect();
    println!(
        "  {label:>4} height={} after {:.0}s: rss_mib=[{}] disk_mib=[{}] raft_log_entries={:?}",
        s.height,
        elapsed.as_secs_f64(),
        rss.join(", "),
        disk.join(", "),
        s.log_entries
    );
}

/// Runs the light load in rounds until `stop`, each round bounded in time and count.
fn steady_load(rpc: Vec<String>, rate: u64, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut canonized = 0;
        for _ in 0..100_000 {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let round_secs = 20;
            let cfg = LoadConfig {
                batch: 100,
                max_txs: (rate * round_secs) as usize + 100,
                senders: 2,
                ..LoadConfig::new(
                    Application::Ledger,
                    rpc.clone(),
                    Pace::Rate(rate),
                    round_secs,
                )
            };
            match load::run(&cfg) {
                Ok(r) => canonized += r.canonized_in_run,
                Err(e) => {
                    eprintln!("load round failed: {e}");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
        canonized
    })
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run a short smoke.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let blocks: u64 = if smoke {
        1_000
    } else {
        env_or("SOAK_BLOCKS", 200_000)
    };
    let block_time_ms: u64 = env_or("SOAK_BLOCK_TIME_MS", 5);
    let rate: u64 = env_or("SOAK_RATE", 200);
    let interval: u64 = env_or("SOAK_SNAPSHOT_INTERVAL", 1_024);
    let keep: u64 = env_or("SOAK_LOG_KEEP", 256);
    let dir = tempfile::tempdir().expect("temp dir");
    let exe = Path::new(env!("CARGO_BIN_EXE_canon-node"));
    let mut net = Devnet::start_with(
        exe,
        3,
        0,
        dir.path(),
        PORT_OFFSET,
        vec![
            ("SEQUENCER_BLOCK_TIME".into(), block_time_ms.to_string()),
            (
                "CONSENSUS_SNAPSHOT_INTERVAL_ENTRIES".into(),
                interval.to_string(),
            ),
            ("CONSENSUS_LOG_KEEP_ENTRIES".into(), keep.to_string()),
            ("RUST_LOG".into(), "warn".into()),
        ],
    )
    .expect("devnet");
    println!(
        "soak: 3 nodes on 127.0.0.1, RocksDB (fsync on), {} build; {blocks} blocks of {block_time_ms} ms, {rate} transfers/s among 64 accounts; snapshot every {interval} entries, {keep} kept",
        if cfg!(debug_assertions) { "debug" } else { "release" }
    );
    let start = Instant::now();
    let leader_deadline = start + Duration::from_secs(30);
    while net
        .clients
        .first()
        .and_then(|c| c.status().ok())
        .and_then(|s| s.current_leader)
        .is_none()
    {
        assert!(Instant::now() < leader_deadline, "no leader within 30 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    let rpc: Vec<String> = net
        .clients
        .iter()
        .map(|c| c.rpc_url.trim_start_matches("http://").to_string())
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let loader = steady_load(rpc, rate, stop.clone());
    let checkpoints = [(10u64, "10%"), (50, "50%"), (100, "100%")];
    let mut samples: Vec<Sample> = Vec::new();
    let mut next = 0;
    let mut last_progress = Instant::now();
    // Bounded: at most 4 x the nominal time (plus a minute) before it gives up.
    let deadline =
        start + Duration::from_millis(blocks * block_time_ms * 4) + Duration::from_secs(60);
    while next < checkpoints.len() {
        let height = (0..net.consensus)
            .filter_map(|i| net.clients[i].status().ok())
            .map(|s| s.last_canonized_height)
            .max()
            .unwrap_or(0);
        let (pct, label) = checkpoints[next];
        if height >= blocks * pct / 100 {
            let s = sample(&net, height);
            print_sample(label, &s, start.elapsed());
            samples.push(s);
            next += 1;
            continue;
        }
        if last_progress.elapsed() > Duration::from_secs(30) {
            println!(
                "  ... height {height} of {blocks} after {:.0}s",
                start.elapsed().as_secs_f64()
            );
            last_progress = Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "height {height} of {blocks} by the deadline"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::SeqCst);
    let canonized = loader.join().unwrap_or(0);
    let (warm, mid, end) = (&samples[0], &samples[1], &samples[2]);
    let rss_growth = (0..net.consensus)
        .map(|i| end.rss[i] as f64 / warm.rss[i].max(1) as f64 - 1.0)
        .fold(f64::MIN, f64::max);
    let per_block = |a: &Sample, b: &Sample, i: usize| {
        (b.disk[i] as f64 - a.disk[i] as f64) / (b.height.saturating_sub(a.height)).max(1) as f64
    };
    let growth_ratio = (0..net.consensus)
        .map(|i| per_block(mid, end, i) / per_block(warm, mid, i).max(1.0))
        .fold(f64::MIN, f64::max);
    let log_max = samples
        .iter()
        .flat_map(|s| s.log_entries.iter().copied())
        .max()
        .unwrap_or(0);
    println!(
        "  transfers canonized under load: {canonized}; disk bytes per block, 10-50%: {:.0}, 50-100%: {:.0} (node 0)",
        per_block(warm, mid, 0),
        per_block(mid, end, 0)
    );
    println!(
        "  ratio: rss growth 10% -> 100% = {:.3} (target < 0.10); disk per block 50-100% / 10-50% = {:.2} (target about 1, not growing); largest raft log {log_max} entries / (interval + keep + 64) = {:.2} (target <= 1)",
        rss_growth,
        growth_ratio,
        log_max as f64 / (interval + keep + 64) as f64,
    );
    net.stop_all();
}

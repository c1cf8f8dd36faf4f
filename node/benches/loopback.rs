//! Loopback benchmark: a real 3-node cluster (release `canon-node` processes, RocksDB, the TCP
//! transport) under a bounded closed-loop load, at two block times. Prints canonized
//! transactions per second and the latency from submission to canonization (p50/p99).
//!
//! `cargo bench -p canon-node --features production --bench loopback`
//! Knobs (env): LOAD_CLIENTS (32), LOAD_WINDOW (32 in flight per client), LOAD_SECS (15),
//! LOAD_BLOCK_TIMES_MS ("100,500").

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use canon_engine::tx::{Payload, Transaction};
use canon_node::client::NodeClient;
use canon_node::devnet::Devnet;
use canon_node::genesis::{dev_account_key, DEV_ACCOUNTS};

const PORT_OFFSET: u16 = 22_000;

fn env_or<T: std::str::FromStr>(k: &str, default: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn wait_for<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

struct ClientRun {
    latencies_ms: Vec<f64>,
    resubmits: u64,
}

/// One client: keeps `window` transfers of its account in flight at `client`, records each
/// one's latency when the account nonce passes it, until `deadline`.
fn client_loop(
    account: usize,
    client: NodeClient,
    window: u64,
    deadline: Instant,
    max_txs: u64,
) -> ClientRun {
    let key = dev_account_key(account);
    let to = dev_account_key(account + DEV_ACCOUNTS).address();
    let mut run = ClientRun {
        latencies_ms: Vec::new(),
        resubmits: 0,
    };
    let Ok((_, mut canon_nonce, _)) = client.account(&key.address()) else {
        return run;
    };
    let mut next = canon_nonce;
    let mut in_flight: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut last_progress = Instant::now();
    while Instant::now() < deadline && (run.latencies_ms.len() as u64) < max_txs {
        while next < canon_nonce + window {
            let tx = Transaction {
                sender: key.address(),
                nonce: next,
                payload: Payload::Transfer { to, amount: 1 },
            }
            .sign(&key)
            .expect("sign");
            if client.send_transaction(&tx).is_err() {
                break;
            }
            in_flight.push_back((next, Instant::now()));
            next += 1;
        }
        std::thread::sleep(Duration::from_millis(5));
        let Ok((_, n, _)) = client.account(&key.address()) else {
            continue;
        };
        let now = Instant::now();
        while in_flight.front().is_some_and(|(nonce, _)| *nonce < n) {
            if let Some((_, sent)) = in_flight.pop_front() {
                run.latencies_ms
                    .push(now.duration_since(sent).as_secs_f64() * 1e3);
            }
        }
        if n > canon_nonce {
            canon_nonce = n;
            last_progress = now;
        } else if now.duration_since(last_progress) > Duration::from_secs(3) {
            // A transaction was lost with a mempool (leader change): resend from the chain.
            run.resubmits += 1;
            in_flight.clear();
            next = canon_nonce;
            last_progress = now;
        }
    }
    run
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn run_at(block_time_ms: u64, clients: usize, window: u64, secs: u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_canon-node"));
    let mut net = Devnet::start_with(
        exe,
        3,
        0,
        dir.path(),
        PORT_OFFSET,
        vec![
            ("SEQUENCER_BLOCK_TIME".into(), block_time_ms.to_string()),
            ("RUST_LOG".into(), "warn".into()),
        ],
    )
    .expect("devnet");
    let leader = wait_for(Duration::from_secs(30), || {
        let s = net.clients[0].status().ok()?;
        let l = s.current_leader?;
        net.index_of(&l)
    })
    .expect("a leader within 30 s");
    let start_height = net.clients[leader].block_number().unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    // Clients talk to every node: followers forward to the leader, as clients would.
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let client = net.clients[c % net.size()].clone();
            std::thread::spawn(move || client_loop(c, client, window, deadline, 1_000_000))
        })
        .collect();
    let runs: Vec<ClientRun> = handles
        .into_iter()
        .map(|h| h.join().expect("client"))
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    let end_height = net.clients[leader].block_number().unwrap_or(0);
    let mut lat: Vec<f64> = runs.iter().flat_map(|r| r.latencies_ms.clone()).collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    let resubmits: u64 = runs.iter().map(|r| r.resubmits).sum();
    println!(
        "block_time_ms={block_time_ms} clients={clients} window={window} secs={elapsed:.1} \
canonized_txs={} tps={:.0} p50_ms={:.1} p99_ms={:.1} max_ms={:.1} blocks={} resubmits={resubmits}",
        lat.len(),
        lat.len() as f64 / elapsed,
        percentile(&lat, 0.50),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(f64::NAN),
        end_height.saturating_sub(start_height),
    );
    net.stop_all();
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run a short smoke.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let clients: usize = env_or("LOAD_CLIENTS", 32).min(DEV_ACCOUNTS);
    let window: u64 = env_or("LOAD_WINDOW", 32);
    let secs: u64 = if smoke { 3 } else { env_or("LOAD_SECS", 15) };
    let times: String = env_or("LOAD_BLOCK_TIMES_MS", "100,500".to_string());
    println!(
        "machine: {} cores, {}; 3 nodes on 127.0.0.1, RocksDB, {} build",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        std::env::consts::ARCH,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    for t in times
        .split(',')
        .filter_map(|t| t.trim().parse::<u64>().ok())
    {
        run_at(t, clients, window, secs);
        if smoke {
            break;
        }
    }
}

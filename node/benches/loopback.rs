//! Loopback benchmark: a real 3-node cluster (`canon-node` processes, RocksDB with fsync on,
//! the TCP transport) under `canon-node load`'s generator, as a user would run it.
//!
//! The ledger, for each block time: the peak (closed loop, a window of transactions in
//! flight), then latency at half that rate (open loop), each target printed as a ratio
//! measured in the same run:
//! - canonized transfers/s against this machine's signature-verification ceiling (cores x one
//!   core's recoveries/s with libsecp256k1, measured first), target >= 0.80;
//! - p99 at half the peak, from when a batch was due until the node it went to answers it
//!   applied it (`canon-node load`, load/waited.rs), against 1.1 x block_time + 10 ms: held
//!   (a fresh cluster loaded at that rate for LOAD_SECS, then measured for LOAD_SECS more),
//!   the figure the target judges, and straight after the peak, printed beside it;
//! - an external node's catch-up on the chain the two runs left (a process started afterwards,
//!   downloading over p2p, checking certificates, re-executing into RocksDB) against the peak.
//!
//! The key-value application on a fresh cluster: puts/s at the peak and p99 from submission
//! until the node answers the put applied, at half of it (held and straight after the peak,
//! as for the ledger), against block_time + 50 ms. Then,
//! when `etcd` and `etcdctl` are on PATH (Debian's `etcd-server` and `etcd-client`; the bench
//! installs nothing), a 3-member etcd on loopback under `etcdctl check perf --load=xl`, and the
//! ratio of canon's puts/s to etcd's writes/s (target >= 10).
//!
//! `cargo bench -p canon-node --features production --bench loopback`
//! Knobs (env): LOAD_SECS (10), LOAD_WINDOW (20000), LOAD_BATCH (500), LOAD_ACCOUNTS (64),
//! LOAD_BLOCK_TIMES_MS ("100"), LOAD_MAX_BLOCK_TXS (5000), LOAD_MAX_TXS (600000, signed up front;
//! a closed loop that runs out is measured over the span it had work), LOAD_BLOCKS_IN_FLIGHT (4,
//! the node's `sequencer_max_blocks_in_flight`; 1 for no pipelining), LOAD_APPS ("ledger,kv"),
//! KV_WINDOW (40000), KV_BATCH (1000), KV_MAX_BLOCK_TXS (20000), KV_MAX_PUTS (3000000),
//! ETCD_LOAD ("xl").

use std::time::{Duration, Instant};

use canon_engine::app::ledger::{Payload, Transaction};
use canon_node::devnet::{kv_env, Devnet};
use canon_node::genesis::{dev_account_key, Application};
use canon_node::load::{self, LoadConfig, LoadReport, Pace};

const PORT_OFFSET: u16 = 22_000;
const KV_PORT_OFFSET: u16 = 22_100;
/// etcd's client ports are this and the next two; its peer ports the three after 20.
const ETCD_PORT: u16 = 22_370;

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

/// One core's signature recoveries per second, timed over `n` recoveries.
fn recoveries_per_sec_one_core(n: usize) -> f64 {
    let key = dev_account_key(0);
    let tx = Transaction {
        sender: key.address(),
        nonce: 0,
        payload: Payload::Transfer {
            to: dev_account_key(1).address(),
            amount: 1,
        },
    }
    .sign(&key)
    .expect("sign");
    let started = Instant::now();
    let valid = (0..n).filter(|_| tx.signature_valid()).count();
    assert_eq!(valid, n);
    n as f64 / started.elapsed().as_secs_f64()
}

fn load_cfg(rpc: Vec<String>, pace: Pace, secs: u64) -> LoadConfig {
    LoadConfig {
        accounts: env_or("LOAD_ACCOUNTS", 64),
        batch: env_or("LOAD_BATCH", 500),
        max_txs: env_or("LOAD_MAX_TXS", 600_000),
        ..LoadConfig::new(Application::Ledger, rpc, pace, secs)
    }
}

fn line(what: &str, r: &LoadReport) {
    println!(
        "  {what}: tx_per_sec={:.0} canonized={} p50_ms={:.0} p99_ms={:.0} max_ms={:.0} unconfirmed={} rejections={:?}",
        r.tx_per_sec,
        r.canonized_in_run,
        r.latency_ms_p50,
        r.latency_ms_p99,
        r.latency_ms_max,
        r.unconfirmed,
        r.rejections
    );
    if let Some(secs) = r.ran_out_after_secs {
        println!(
            "    (all {} prepared transactions applied after {secs:.1} s: the rate is over that span; raise LOAD_MAX_TXS or KV_MAX_PUTS to load all of LOAD_SECS)",
            r.prepared
        );
    }
}

fn blocks_in_flight() -> u64 {
    env_or("LOAD_BLOCKS_IN_FLIGHT", 4)
}

/// A fresh ledger devnet of 3 consensus nodes and `externals` external nodes at
/// `block_time_ms`, once it has a leader.
fn ledger_devnet(dir: &std::path::Path, block_time_ms: u64, externals: usize) -> Devnet {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_canon-node"));
    let net = Devnet::start_with(
        exe,
        3,
        externals,
        dir,
        PORT_OFFSET,
        vec![
            ("SEQUENCER_BLOCK_TIME".into(), block_time_ms.to_string()),
            (
                "SEQUENCER_MAX_BLOCK_TRANSACTIONS".into(),
                env_or("LOAD_MAX_BLOCK_TXS", 5_000u64).to_string(),
            ),
            ("SEQUENCER_MEMPOOL_CAPACITY".into(), "200000".into()),
            (
                "SEQUENCER_MAX_BLOCKS_IN_FLIGHT".into(),
                blocks_in_flight().to_string(),
            ),
            ("RUST_LOG".into(), "warn".into()),
        ],
    )
    .expect("devnet");
    wait_for(Duration::from_secs(30), || {
        let s = net.clients[0].status().ok()?;
        net.index_of(&s.current_leader?)
    })
    .expect("a leader within 30 s");
    net
}

/// The RPC addresses of the consensus nodes (the first three) of `net`.
fn consensus_rpc(net: &Devnet) -> Vec<String> {
    net.clients[..3]
        .iter()
        .map(|c| c.rpc_url.trim_start_matches("http://").to_string())
        .collect()
}

/// Latency at a rate in the steady state: on a fresh cluster, `warm` (the load at that rate
/// for the duration measured) and then `measured`, the same again. Straight after the
/// closed loop's peak a cluster pays off what the peak wrote (RocksDB flushes and compacts
/// several times the data a run at half the rate writes), so that run mixes two loads; this
/// one is what a cluster kept at the rate gives.
fn steady(
    what: &str,
    warm: impl FnOnce() -> LoadReport,
    measured: impl FnOnce() -> LoadReport,
) -> LoadReport {
    let warmed = warm();
    line(&format!("{what}, warming a fresh cluster"), &warmed);
    let r = measured();
    line(&format!("{what}, then measured"), &r);
    r
}

fn run_at(block_time_ms: u64, secs: u64, ceiling: f64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut net = ledger_devnet(dir.path(), block_time_ms, 1);
    // The external node (x0) waits: it catches up on the chain the load leaves.
    let external = 3;
    net.kill(external);
    let rpc = consensus_rpc(&net);
    println!(
        "block_time_ms={block_time_ms} max_blocks_in_flight={}",
        blocks_in_flight()
    );
    let window: u64 = env_or("LOAD_WINDOW", 20_000);
    let peak = load::run(&load_cfg(rpc.clone(), Pace::Window(window), secs)).expect("peak load");
    line(&format!("peak (closed loop, window {window})"), &peak);
    let half = (peak.tx_per_sec / 2.0).max(1.0) as u64;
    let after_peak =
        load::run(&load_cfg(rpc.clone(), Pace::Rate(half), secs)).expect("half-rate load");
    line(
        &format!("half the peak straight after it (open loop, {half} tx/s)"),
        &after_peak,
    );
    let replay = catch_up(&mut net, external);
    println!(
        "  replay: the external node caught up {} blocks ({} transfers) in {:.1} s from its start: {:.0} tx/s",
        replay.blocks, replay.txs, replay.secs, replay.tx_per_sec
    );
    // Again from an empty database, recovering every transaction's signature as well (what
    // an external node did before certificates, and does with the setting on).
    net.kill(external);
    std::fs::remove_dir_all(dir.path().join("external-0")).expect("wipe the external node");
    net.extra_env
        .push(("EXTERNAL_VERIFY_EVERY_SIGNATURE".into(), "true".into()));
    let every = catch_up(&mut net, external);
    println!(
        "  replay, every signature recovered: {} blocks in {:.1} s: {:.0} tx/s",
        every.blocks, every.secs, every.tx_per_sec
    );
    println!(
        "  ratio: replay / peak = {:.2} (target >= 5.00); with every signature = {:.2}",
        replay.tx_per_sec / peak.tx_per_sec,
        every.tx_per_sec / peak.tx_per_sec
    );
    net.stop_all();
    let fresh = tempfile::tempdir().expect("temp dir");
    let mut net = ledger_devnet(fresh.path(), block_time_ms, 0);
    let rpc = consensus_rpc(&net);
    let at_half =
        || load::run(&load_cfg(rpc.clone(), Pace::Rate(half), secs)).expect("half-rate load");
    let held = steady(
        &format!("half the peak held (open loop, {half} tx/s)"),
        at_half,
        at_half,
    );
    net.stop_all();
    let bound_ms = 1.1 * block_time_ms as f64 + 10.0;
    println!(
        "  ratio: peak / signature ceiling = {:.2} (target >= 0.80); p99 at half the peak / (1.1 x block_time + 10 ms) = {:.2} held, {:.2} straight after the peak (target <= 1.00)",
        peak.tx_per_sec / ceiling,
        held.latency_ms_p99 / bound_ms,
        after_peak.latency_ms_p99 / bound_ms
    );
}

/// A fresh key-value devnet of 3 nodes at `block_time_ms`, once it has a leader.
fn kv_devnet(dir: &std::path::Path, block_time_ms: u64) -> Devnet {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_canon-node"));
    let mut env = kv_env(dir).expect("client token");
    env.extend([
        ("SEQUENCER_BLOCK_TIME".into(), block_time_ms.to_string()),
        (
            "SEQUENCER_MAX_BLOCK_TRANSACTIONS".into(),
            env_or("KV_MAX_BLOCK_TXS", 20_000u64).to_string(),
        ),
        ("SEQUENCER_MEMPOOL_CAPACITY".into(), "400000".into()),
        (
            "SEQUENCER_MAX_BLOCKS_IN_FLIGHT".into(),
            blocks_in_flight().to_string(),
        ),
        ("BATCHER_ENABLED".into(), "false".into()),
        ("RUST_LOG".into(), "warn".into()),
    ]);
    let net = Devnet::start_with(exe, 3, 0, dir, KV_PORT_OFFSET, env).expect("devnet");
    wait_for(Duration::from_secs(30), || {
        let s = net.clients[0].status().ok()?;
        net.index_of(&s.current_leader?)
    })
    .expect("a leader within 30 s");
    net
}

fn kv_cfg(net: &Devnet, pace: Pace, secs: u64) -> LoadConfig {
    LoadConfig {
        batch: env_or("KV_BATCH", 1_000),
        max_txs: env_or("KV_MAX_PUTS", 3_000_000),
        token: net.token.clone(),
        ..LoadConfig::new(Application::Kv, consensus_rpc(net), pace, secs)
    }
}

/// The key-value application on a fresh 3-node cluster: the peak in puts/s (closed loop) and
/// p99 at half of it (open loop), straight after the peak and held on a fresh cluster
/// ([`steady`]); returns the peak.
fn kv_run_at(block_time_ms: u64, secs: u64) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut net = kv_devnet(dir.path(), block_time_ms);
    let probe = kv_cfg(&net, Pace::Rate(1), secs);
    println!(
        "kv: block_time_ms={block_time_ms} max_block_txs={} puts of {} bytes to {} keys of 8 bytes",
        env_or("KV_MAX_BLOCK_TXS", 20_000u64),
        probe.kv_value_bytes,
        probe.kv_keys
    );
    let window: u64 = env_or("KV_WINDOW", 40_000);
    let peak = load::run(&kv_cfg(&net, Pace::Window(window), secs)).expect("kv peak load");
    line(&format!("peak (closed loop, window {window})"), &peak);
    let half = (peak.tx_per_sec / 2.0).max(1.0) as u64;
    let after_peak = load::run(&kv_cfg(&net, Pace::Rate(half), secs)).expect("kv half-rate load");
    line(
        &format!("half the peak straight after it (open loop, {half} puts/s)"),
        &after_peak,
    );
    net.stop_all();
    let fresh = tempfile::tempdir().expect("temp dir");
    let mut net = kv_devnet(fresh.path(), block_time_ms);
    let at_half = || load::run(&kv_cfg(&net, Pace::Rate(half), secs)).expect("kv half-rate load");
    let held = steady(
        &format!("half the peak held (open loop, {half} puts/s)"),
        at_half,
        at_half,
    );
    net.stop_all();
    let bound_ms = block_time_ms as f64 + 50.0;
    println!(
        "  ratio: p99 at half the peak / (block_time + 50 ms) = {:.2} held, {:.2} straight after the peak (target <= 1.00)",
        held.latency_ms_p99 / bound_ms,
        after_peak.latency_ms_p99 / bound_ms
    );
    peak.tx_per_sec
}

/// A 3-member etcd on loopback (fsync on, as it always is), one process per member.
struct Etcd {
    children: Vec<std::process::Child>,
    endpoints: String,
    _dir: tempfile::TempDir,
}

impl Etcd {
    /// `None` (and why) when etcd or etcdctl is not on PATH.
    fn start() -> Result<Etcd, String> {
        for (tool, ask) in [("etcd", "--version"), ("etcdctl", "version")] {
            let found = std::process::Command::new(tool)
                .arg(ask)
                .output()
                .is_ok_and(|o| o.status.success());
            if !found {
                return Err(format!(
                    "{tool} is not on PATH (Debian: apt-get install etcd-server etcd-client)"
                ));
            }
        }
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let peer = |i: u16| format!("http://127.0.0.1:{}", ETCD_PORT + 20 + i);
        let client = |i: u16| format!("http://127.0.0.1:{}", ETCD_PORT + i);
        let cluster: Vec<String> = (0..3).map(|i| format!("m{i}={}", peer(i))).collect();
        let mut children = Vec::new();
        for i in 0..3u16 {
            let log = std::fs::File::create(dir.path().join(format!("m{i}.log")))
                .map_err(|e| e.to_string())?;
            let child = std::process::Command::new("etcd")
                .args(["--name", &format!("m{i}")])
                .arg("--data-dir")
                .arg(dir.path().join(format!("m{i}")))
                .args(["--listen-client-urls", &client(i)])
                .args(["--advertise-client-urls", &client(i)])
                .args(["--listen-peer-urls", &peer(i)])
                .args(["--initial-advertise-peer-urls", &peer(i)])
                .args(["--initial-cluster", &cluster.join(",")])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", "canon-loopback-bench"])
                .stdout(log.try_clone().map_err(|e| e.to_string())?)
                .stderr(log)
                .spawn()
                .map_err(|e| format!("cannot start etcd: {e}"))?;
            children.push(child);
        }
        let endpoints: Vec<String> = (0..3)
            .map(|i| format!("127.0.0.1:{}", ETCD_PORT + i))
            .collect();
        let etcd = Etcd {
            children,
            endpoints: endpoints.join(","),
            _dir: dir,
        };
        wait_for(Duration::from_secs(30), || {
            let out = etcd.ctl(&["endpoint", "health"]).ok()?;
            (out.matches("is healthy").count() == 3).then_some(())
        })
        .ok_or("etcd did not become healthy within 30 s")?;
        Ok(etcd)
    }

    fn ctl(&self, args: &[&str]) -> Result<String, String> {
        let out = std::process::Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoints))
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        Ok(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }

    /// `etcdctl check perf --load=<load>`: the writes/s it reports, and its verdict lines.
    fn check_perf(&self, load: &str) -> Result<(f64, Vec<String>), String> {
        let out = self.ctl(&["check", "perf", &format!("--load={load}")])?;
        let verdicts: Vec<String> = out
            .lines()
            .flat_map(|l| l.split('\r'))
            .filter(|l| l.starts_with("PASS") || l.starts_with("FAIL") || l.contains("took"))
            .map(|l| l.trim().to_string())
            .collect();
        let writes = verdicts
            .iter()
            .find_map(|l| {
                let before = l.strip_suffix(" writes/s")?;
                before.rsplit(' ').next()?.parse::<f64>().ok()
            })
            .ok_or_else(|| format!("no writes/s in etcdctl's output: {out}"))?;
        Ok((writes, verdicts))
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct CatchUp {
    blocks: u64,
    txs: u64,
    secs: f64,
    tx_per_sec: f64,
}

/// Starts the stopped external node `x` and times it from process start until it has
/// verified and applied the cluster's whole chain (certificates checked, transactions
/// re-executed, nothing but the proposer's and the certificate's signatures recovered). The
/// chain's transfers are counted from the dev accounts' nonces, which count every one.
fn catch_up(net: &mut Devnet, x: usize) -> CatchUp {
    let target = net.clients[0].block_number().expect("cluster height");
    let txs: u64 = (0..env_or("LOAD_ACCOUNTS", 64usize))
        .map(|i| {
            let (_, nonce, _) = net.clients[0]
                .account(&dev_account_key(i).address())
                .expect("account");
            nonce
        })
        .sum();
    let started = Instant::now();
    net.start_node(x).expect("start the external node");
    wait_for(Duration::from_secs(600), || {
        let h = net.clients[x].status().ok()?.last_applied_height;
        (h >= target).then_some(())
    })
    .expect("the external node catches up within 600 s");
    let secs = started.elapsed().as_secs_f64();
    CatchUp {
        blocks: target,
        txs,
        secs,
        tx_per_sec: txs as f64 / secs,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run a short smoke.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let secs: u64 = if smoke { 3 } else { env_or("LOAD_SECS", 10) };
    let apps: String = env_or("LOAD_APPS", "ledger,kv".to_string());
    let times: String = env_or("LOAD_BLOCK_TIMES_MS", "100".to_string());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let one_core = recoveries_per_sec_one_core(if smoke { 200 } else { 5_000 });
    let ceiling = one_core * cores as f64;
    println!(
        "machine: {cores} cores, {}; 3 nodes on 127.0.0.1, RocksDB (fsync on), {} build",
        std::env::consts::ARCH,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!(
        "signature ceiling: {one_core:.0} recoveries/s on one core (libsecp256k1) x {cores} cores = {ceiling:.0}/s"
    );
    let times: Vec<u64> = times
        .split(',')
        .filter_map(|t| t.trim().parse::<u64>().ok())
        .collect();
    let first = times.first().copied().unwrap_or(100);
    if apps.contains("ledger") {
        for t in &times {
            run_at(*t, secs, ceiling);
            if smoke {
                break;
            }
        }
    }
    if !apps.contains("kv") {
        return;
    }
    let kv_peak = kv_run_at(first, secs);
    if smoke {
        println!("etcd: skipped in the smoke run (its check takes 60 s)");
        return;
    }
    let load: String = env_or("ETCD_LOAD", "xl".to_string());
    match Etcd::start().and_then(|etcd| etcd.check_perf(&load)) {
        Ok((writes, verdicts)) => {
            println!(
                "etcd {}: 3 members on 127.0.0.1, `etcdctl check perf --load={load}`: {writes:.0} writes/s ({})",
                std::process::Command::new("etcd")
                    .arg("--version")
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").to_string())
                    .unwrap_or_default(),
                verdicts.join("; ")
            );
            println!(
                "  ratio: canon kv puts/s / etcd writes/s = {:.1} (target >= 10.0)",
                kv_peak / writes
            );
        }
        Err(e) => println!("etcd: skipped: {e}"),
    }
}

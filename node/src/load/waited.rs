//! The loop both loads run: batches sent with `canon_sendTransactionsAndWait`, which answers
//! once the node it went to applied every transaction in it, so a transaction's latency is
//! its batch's round trip: from submission until a node says it applied it, the wait a client
//! of a replicated store sees. Nothing polls, so the figure has no polling interval in it.
//!
//! Open loop: a batch is due when its first transaction is (the rate's schedule), holds at
//! most [`OPEN_LOOP_BATCH_MS`] of the schedule, and its latency runs from when it was due,
//! not from when a free thread sent it: a cluster that falls behind cannot hide the delay by
//! slowing the sender (no coordinated omission). Closed loop: batches of `--batch`, at most
//! the window in flight.
//!
//! Each sending thread waits for its batch's answer, so the load runs as many threads as the
//! window (or the open loop's share of a second) needs. A refused transaction is counted by
//! reason and sent again (unless the source says its reason means it was applied before);
//! one not seen applied within the wait is counted unconfirmed, not resent (it may yet apply).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use canon_engine::sync::lock;
use serde_json::json;

use super::{
    client, entry_errors, percentile, progress_bar, reason_of, show_progress, LoadConfig,
    LoadReport, Pace,
};
use crate::client::ClientError;

/// How long a batch's call asks the node to wait for its transactions, in milliseconds.
const WAIT_MS: u64 = 10_000;
/// Most sending threads: each keeps a connection to every node, and a node's JSON-RPC server
/// takes 128 from one address by default (`rpc_max_connections_per_ip`).
const MAX_THREADS: usize = 96;
/// The open loop's batches hold at most this much of the schedule, so a transaction is sent
/// at most this early and the node starts on it at once.
pub const OPEN_LOOP_BATCH_MS: u64 = 5;
/// How long the open loop's threads can keep a batch in flight, all together, before the
/// schedule waits for one: the share of a second of the rate they cover.
const OPEN_LOOP_IN_FLIGHT_MS: u64 = 800;

/// What a load sends.
pub(super) trait Source: Send + Sync + 'static {
    /// Transactions it can make.
    fn total(&self) -> u64;
    /// Transaction `n` (below `total`), as the call carries it (`0x` hex).
    fn raw(&self, n: u64) -> Result<String, String>;
    /// Whether a transaction the node refused for `reason` (numbers taken out) is sent again:
    /// not when the reason says an earlier send of it was applied.
    fn resend(&self, reason: &str) -> bool {
        let _ = reason;
        true
    }
    /// What one is called in progress lines ("puts", "tx").
    fn unit(&self) -> &'static str;
}

struct Shared {
    source: Arc<dyn Source>,
    next: AtomicU64,
    retry: Mutex<VecDeque<u64>>,
    submitted: AtomicU64,
    /// Sent and not yet answered.
    in_flight: Mutex<u64>,
    /// Signalled whenever `in_flight` falls, so a closed loop's threads wait for room without
    /// polling.
    room: std::sync::Condvar,
    applied: AtomicU64,
    applied_in_run: AtomicU64,
    latencies_ms: Mutex<Vec<f64>>,
    rejections: Mutex<BTreeMap<String, u64>>,
    stop: AtomicBool,
}

impl Shared {
    fn new(source: Arc<dyn Source>) -> Shared {
        Shared {
            source,
            next: AtomicU64::new(0),
            retry: Mutex::new(VecDeque::new()),
            submitted: AtomicU64::new(0),
            in_flight: Mutex::new(0),
            room: std::sync::Condvar::new(),
            applied: AtomicU64::new(0),
            applied_in_run: AtomicU64::new(0),
            latencies_ms: Mutex::new(Vec::new()),
            rejections: Mutex::new(BTreeMap::new()),
            stop: AtomicBool::new(false),
        }
    }
}

/// Transactions a batch holds: `--batch`, and in the open loop at most
/// [`OPEN_LOOP_BATCH_MS`] of the rate.
pub(super) fn batch_size(cfg: &LoadConfig) -> usize {
    match cfg.pace {
        Pace::Window(_) => cfg.batch,
        Pace::Rate(r) => {
            let per_slice = (r.saturating_mul(OPEN_LOOP_BATCH_MS) / 1_000).max(1);
            cfg.batch
                .min(usize::try_from(per_slice).unwrap_or(usize::MAX))
        }
    }
}

/// Threads enough that waiting for answers does not hold the load back.
fn threads(cfg: &LoadConfig, batch: usize) -> usize {
    let needed = match cfg.pace {
        Pace::Window(w) => usize::try_from(w).unwrap_or(usize::MAX).div_ceil(batch),
        Pace::Rate(r) => {
            let in_flight = r.saturating_mul(OPEN_LOOP_IN_FLIGHT_MS) / 1_000;
            usize::try_from(in_flight)
                .unwrap_or(usize::MAX)
                .div_ceil(batch)
                + 1
        }
    };
    needed.max(cfg.senders).min(MAX_THREADS)
}

/// Runs `source` as `cfg` says and returns what it measured.
pub(super) fn run(cfg: &LoadConfig, source: Arc<dyn Source>) -> Result<LoadReport, String> {
    let total = source.total();
    let unit = source.unit();
    let shared = Arc::new(Shared::new(source));
    let batch = batch_size(cfg);
    let started = Instant::now();
    let run_for = Duration::from_secs(cfg.duration_secs);
    let bar = progress_bar(cfg);
    let workers: Vec<_> = (0..threads(cfg, batch))
        .map(|t| {
            let shared = shared.clone();
            let cfg = cfg.clone();
            std::thread::spawn(move || send_loop(t, &cfg, batch, &shared, started, run_for))
        })
        .collect();
    let mut ran_out = None;
    let mut last_report = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let elapsed = started.elapsed();
        let applied = shared.applied.load(Ordering::Relaxed);
        if applied >= total && elapsed < run_for {
            // Nothing left to send: the rest of the duration would only dilute the rate.
            ran_out = Some(elapsed);
            break;
        }
        if elapsed >= run_for {
            break;
        }
        if last_report.elapsed() >= Duration::from_millis(500) {
            last_report = Instant::now();
            let msg = format!(
                "submitted {}, applied {applied} ({:.0} {unit}/s)",
                shared.submitted.load(Ordering::Relaxed),
                applied as f64 / elapsed.as_secs_f64().max(0.001)
            );
            show_progress(&bar, cfg, elapsed, msg);
        }
    }
    // Senders finish the calls they have out (each bounded by the node's wait).
    shared.stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let run_secs = ran_out.unwrap_or(run_for).as_secs_f64();
    let mut latencies = lock(&shared.latencies_ms).clone();
    latencies.sort_by(|a, b| a.total_cmp(b));
    let submitted = shared.submitted.load(Ordering::Relaxed);
    let applied = shared.applied.load(Ordering::Relaxed);
    let in_run = shared.applied_in_run.load(Ordering::Relaxed);
    let rejections = lock(&shared.rejections).clone();
    Ok(LoadReport {
        prepared: shared.next.load(Ordering::Relaxed).min(total),
        submitted,
        canonized_in_run: in_run,
        canonized: applied,
        run_secs,
        tx_per_sec: in_run as f64 / run_secs,
        latency_ms_p50: percentile(&latencies, 0.50),
        latency_ms_p99: percentile(&latencies, 0.99),
        latency_ms_max: latencies.last().copied().unwrap_or(f64::NAN),
        rejections,
        unconfirmed: submitted.saturating_sub(applied),
        ran_out_after_secs: ran_out.map(|d| d.as_secs_f64()),
    })
}

/// The next batch: transactions to send again first, then fresh ones; and how many are fresh.
fn next_batch(shared: &Shared, size: usize) -> (Vec<u64>, u64) {
    let mut batch: Vec<u64> = {
        let mut retry = lock(&shared.retry);
        let k = retry.len().min(size);
        retry.drain(..k).collect()
    };
    let resent = batch.len();
    if batch.len() < size {
        let want = (size - batch.len()) as u64;
        let from = shared.next.fetch_add(want, Ordering::Relaxed);
        let total = shared.source.total();
        batch.extend(from..(from + want).min(total).max(from));
    }
    let fresh = (batch.len() - resent) as u64;
    (batch, fresh)
}

/// Waits for the batch's turn; returns when it was due (the open loop's schedule, or now),
/// or `None` if the run stopped meanwhile.
fn wait_turn(
    shared: &Shared,
    pace: Pace,
    first: u64,
    size: u64,
    started: Instant,
) -> Option<Instant> {
    // Waits are cut at STOP_CHECK so a stopped run ends soon. Neither loop polls: a thread
    // per batch in flight polling every millisecond took the client a fifth of both cores at
    // half the KV peak, out of the nodes' share (docs/benchmarks.md).
    const STOP_CHECK: Duration = Duration::from_millis(50);
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return None;
        }
        let now = Instant::now();
        match pace {
            Pace::Rate(rate) => {
                let due = started + Duration::from_secs_f64(first as f64 / rate as f64);
                if due <= now {
                    return Some(due);
                }
                std::thread::sleep((due - now).min(STOP_CHECK));
            }
            Pace::Window(w) => {
                let in_flight = lock(&shared.in_flight);
                if *in_flight + size <= w {
                    return Some(now);
                }
                // Woken when an answer frees room (see `Shared::room`).
                let _ = shared.room.wait_timeout(in_flight, STOP_CHECK);
            }
        }
    }
}

/// One sending thread: takes the next batch (resends first), waits for its turn, sends it to
/// the next node, and files each entry's outcome.
fn send_loop(
    t: usize,
    cfg: &LoadConfig,
    batch_size: usize,
    shared: &Shared,
    started: Instant,
    run_for: Duration,
) {
    let clients: Vec<_> = cfg.rpc.iter().map(|a| client(cfg, a)).collect();
    let mut turn = t;
    while !shared.stop.load(Ordering::Relaxed) && started.elapsed() < run_for {
        let (batch, fresh) = next_batch(shared, batch_size);
        if batch.is_empty() {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let size = batch.len() as u64;
        // A resent transaction's turn is now; a fresh one's is its place in the schedule.
        let first_fresh = batch[batch.len() - fresh as usize..].first().copied();
        let Some(due) = wait_turn(shared, cfg.pace, first_fresh.unwrap_or(0), size, started) else {
            return;
        };
        let raws: Result<Vec<String>, String> =
            batch.iter().map(|n| shared.source.raw(*n)).collect();
        let raws = match raws {
            Ok(r) => r,
            Err(e) => {
                *lock(&shared.rejections).entry(e).or_insert(0) += size;
                return;
            }
        };
        shared.submitted.fetch_add(fresh, Ordering::Relaxed);
        *lock(&shared.in_flight) += size;
        let c = &clients[turn % clients.len()];
        turn += 1;
        let answer = c.call("canon_sendTransactionsAndWait", json!([raws, WAIT_MS]));
        let now = Instant::now();
        let in_run = now.duration_since(started) <= run_for;
        let entries = entry_errors(answer, batch.len());
        let latency_ms = now.duration_since(due).as_secs_f64() * 1e3;
        let mut applied = 0u64;
        let mut resend = Vec::new();
        {
            let mut rejections = lock(&shared.rejections);
            for (n, err) in batch.iter().zip(entries) {
                match err {
                    None => applied += 1,
                    Some(ClientError::Rpc { code, .. })
                        if code == i64::from(crate::rpc::TIMED_OUT) =>
                    {
                        // Not seen applied within the wait: it may yet apply, so it is not
                        // resent; the report counts it as unconfirmed.
                    }
                    Some(err) => {
                        let reason = reason_of(&err);
                        if shared.source.resend(&reason) {
                            resend.push(*n);
                        }
                        *rejections.entry(reason).or_insert(0) += 1;
                    }
                }
            }
        }
        lock(&shared.latencies_ms).extend(std::iter::repeat_n(latency_ms, applied as usize));
        shared.applied.fetch_add(applied, Ordering::Relaxed);
        if in_run {
            shared.applied_in_run.fetch_add(applied, Ordering::Relaxed);
        }
        // Lowered under the lock the waiters check under, so none misses the signal.
        *lock(&shared.in_flight) -= size;
        shared.room.notify_all();
        if !resend.is_empty() {
            std::thread::sleep(Duration::from_millis(50));
            lock(&shared.retry).extend(resend);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genesis::Application;

    struct Numbers(u64);

    impl Source for Numbers {
        fn total(&self) -> u64 {
            self.0
        }
        fn raw(&self, n: u64) -> Result<String, String> {
            Ok(format!("0x{n:02x}"))
        }
        fn unit(&self) -> &'static str {
            "tx"
        }
    }

    fn shared(total: u64) -> Shared {
        Shared::new(Arc::new(Numbers(total)))
    }

    #[test]
    fn batches_resend_first_and_stop_at_the_bound() {
        let s = shared(5);
        lock(&s.retry).push_back(42);
        assert_eq!(next_batch(&s, 3), (vec![42, 0, 1], 2));
        assert_eq!(next_batch(&s, 3), (vec![2, 3, 4], 3));
        assert_eq!(next_batch(&s, 3), (vec![], 0));
    }

    #[test]
    fn the_open_loop_sends_a_few_milliseconds_of_its_rate_at_once() {
        let cfg = |pace| LoadConfig {
            batch: 500,
            ..LoadConfig::new(Application::Ledger, vec!["x".into()], pace, 10)
        };
        // (pace, batch, threads): 5 ms of 20,000/s is 100; 0.8 s of it in flight is 16,000,
        // 160 batches, more than the cap.
        for (pace, batch, threads_wanted) in [
            (Pace::Rate(20_000), 100, MAX_THREADS),
            (Pace::Rate(1_000), 5, 161.min(MAX_THREADS)),
            (Pace::Rate(100), 1, 81),
            (Pace::Rate(1_000_000), 500, MAX_THREADS),
            (Pace::Window(20_000), 500, 40),
            (Pace::Window(100), 500, 4),
        ] {
            let c = cfg(pace);
            assert_eq!(batch_size(&c), batch, "{pace:?}");
            assert_eq!(threads(&c, batch), threads_wanted, "{pace:?}");
        }
    }

    #[test]
    fn the_open_loop_measures_from_the_schedule_not_from_the_send() {
        let s = shared(100);
        let started = Instant::now() - Duration::from_secs(2);
        // Transaction 50 at 100/s was due 1.5 s before now: that is when its latency starts.
        let due = wait_turn(&s, Pace::Rate(100), 50, 5, started).unwrap();
        assert_eq!(due, started + Duration::from_millis(500));
        s.stop.store(true, Ordering::Relaxed);
        assert_eq!(wait_turn(&s, Pace::Rate(100), 10_000, 5, started), None);
    }
}

//! The key-value load: puts of `kv_value_bytes`-byte values to `kv_keys` keys of 8 bytes in
//! turn, made as they are sent (they carry no signature, so nothing is prepared up front) and
//! sent in `canon_sendTransactionsAndWait` batches. A call answers once the node it went to
//! applied every put in it, so a put's latency is its batch's round trip: from submission
//! until a node says it applied it, the wait a client of a replicated store sees.
//!
//! Each sending thread waits for its batch's answer, so the load runs as many threads as its
//! window (or a second of its rate) needs in batches. A refused put is counted by reason and
//! sent again; one not seen applied within the wait is counted unconfirmed, not resent (it
//! may yet apply).

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use canon_engine::app::kv::{KvOp, KvTx};
use canon_engine::sync::lock;
use serde_json::{json, Value};

use super::{
    client, entry_errors, percentile, progress_bar, reason_of, show_progress, LoadConfig,
    LoadReport, Pace,
};
use crate::client::ClientError;

/// How long a batch's call asks the node to wait for its puts, in milliseconds.
const WAIT_MS: u64 = 10_000;
/// Most sending threads.
const MAX_THREADS: usize = 512;

struct Shared {
    client: u64,
    keys: u64,
    value_bytes: usize,
    max: u64,
    next: AtomicU64,
    retry: Mutex<VecDeque<u64>>,
    submitted: AtomicU64,
    /// Sent and not yet answered.
    in_flight: AtomicU64,
    applied: AtomicU64,
    applied_in_run: AtomicU64,
    timed_out: AtomicU64,
    latencies_ms: Mutex<Vec<f64>>,
    rejections: Mutex<BTreeMap<String, u64>>,
    stop: AtomicBool,
}

impl Shared {
    fn new(client: u64, keys: u64, value_bytes: usize, max: u64) -> Shared {
        Shared {
            client,
            keys,
            value_bytes,
            max,
            next: AtomicU64::new(0),
            retry: Mutex::new(VecDeque::new()),
            submitted: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            applied_in_run: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            latencies_ms: Mutex::new(Vec::new()),
            rejections: Mutex::new(BTreeMap::new()),
            stop: AtomicBool::new(false),
        }
    }

    /// Put number `n`: its key cycles through the key space; its value says which put it is.
    fn raw(&self, n: u64) -> Result<String, String> {
        let key = (n % self.keys).to_be_bytes().to_vec();
        let value = n
            .to_be_bytes()
            .iter()
            .copied()
            .cycle()
            .take(self.value_bytes)
            .collect();
        let tx = KvTx {
            client: self.client,
            request: n,
            op: KvOp::Put { key, value },
        }
        .to_tx()
        .map_err(|e| e.to_string())?;
        Ok(format!("0x{}", hex::encode(tx.as_bytes())))
    }
}

/// Threads enough that waiting for answers does not hold the load back.
fn threads(cfg: &LoadConfig) -> usize {
    let needed = match cfg.pace {
        Pace::Window(w) => (w as usize).div_ceil(cfg.batch),
        // About a second of the rate in flight.
        Pace::Rate(r) => (r as usize).div_ceil(cfg.batch) + 1,
    };
    needed.max(cfg.senders).min(MAX_THREADS)
}

pub(super) fn run(cfg: &LoadConfig) -> Result<LoadReport, String> {
    let total = match cfg.pace {
        Pace::Rate(r) => r.saturating_mul(cfg.duration_secs).min(cfg.max_txs as u64),
        Pace::Window(_) => cfg.max_txs as u64,
    };
    let shared = Arc::new(Shared::new(
        rand::random(),
        cfg.kv_keys,
        cfg.kv_value_bytes,
        total,
    ));
    shared.raw(0)?;
    // A chain that is not key-value, or a token missing or wrong, fails here once and clearly.
    for addr in &cfg.rpc {
        let status = client(cfg, addr)
            .call("canon_status", json!([]))
            .map_err(|e| format!("{addr}: {e}"))?;
        let app = status.get("application").and_then(Value::as_str);
        if app != Some("kv") {
            return Err(format!(
                "{addr} runs application {}, not kv: use --app {0}",
                app.unwrap_or("unknown")
            ));
        }
    }
    let started = Instant::now();
    let run_for = Duration::from_secs(cfg.duration_secs);
    let bar = progress_bar(cfg);
    let workers: Vec<_> = (0..threads(cfg))
        .map(|t| {
            let shared = shared.clone();
            let cfg = cfg.clone();
            std::thread::spawn(move || send_loop(t, &cfg, &shared, started, run_for))
        })
        .collect();
    let mut ran_out = None;
    let mut last_report = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let elapsed = started.elapsed();
        let applied = shared.applied.load(Ordering::Relaxed);
        if applied >= total && elapsed < run_for {
            ran_out = Some(elapsed);
            break;
        }
        if elapsed >= run_for {
            break;
        }
        if last_report.elapsed() >= Duration::from_millis(500) {
            last_report = Instant::now();
            let msg = format!(
                "submitted {}, applied {applied} ({:.0} puts/s)",
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

/// The next batch: puts to send again first, then fresh ones; and how many are fresh.
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
        batch.extend(from..(from + want).min(shared.max).max(from));
    }
    let fresh = (batch.len() - resent) as u64;
    (batch, fresh)
}

/// Waits for the batch's turn; false if the run stopped meanwhile.
fn wait_turn(shared: &Shared, pace: Pace, first: u64, size: u64, started: Instant) -> bool {
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return false;
        }
        let ready = match pace {
            Pace::Rate(rate) => {
                started + Duration::from_secs_f64(first as f64 / rate as f64) <= Instant::now()
            }
            Pace::Window(w) => shared.in_flight.load(Ordering::Relaxed) + size <= w,
        };
        if ready {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn send_loop(t: usize, cfg: &LoadConfig, shared: &Shared, started: Instant, run_for: Duration) {
    let clients: Vec<_> = cfg.rpc.iter().map(|a| client(cfg, a)).collect();
    let mut turn = t;
    while !shared.stop.load(Ordering::Relaxed) && started.elapsed() < run_for {
        let (batch, fresh) = next_batch(shared, cfg.batch);
        if batch.is_empty() {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let size = batch.len() as u64;
        if !wait_turn(shared, cfg.pace, batch[0], size, started) {
            return;
        }
        let raws: Result<Vec<String>, String> = batch.iter().map(|n| shared.raw(*n)).collect();
        let raws = match raws {
            Ok(r) => r,
            Err(e) => {
                *lock(&shared.rejections).entry(e).or_insert(0) += size;
                return;
            }
        };
        shared.submitted.fetch_add(fresh, Ordering::Relaxed);
        shared.in_flight.fetch_add(size, Ordering::Relaxed);
        let sent_at = Instant::now();
        let c = &clients[turn % clients.len()];
        turn += 1;
        let answer = c.call("canon_sendTransactionsAndWait", json!([raws, WAIT_MS]));
        let now = Instant::now();
        let in_run = now.duration_since(started) <= run_for;
        let entries = entry_errors(answer, batch.len());
        let latency_ms = now.duration_since(sent_at).as_secs_f64() * 1e3;
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
                        shared.timed_out.fetch_add(1, Ordering::Relaxed);
                    }
                    Some(err) => {
                        *rejections.entry(reason_of(&err)).or_insert(0) += 1;
                        resend.push(*n);
                    }
                }
            }
        }
        lock(&shared.latencies_ms).extend(std::iter::repeat_n(latency_ms, applied as usize));
        shared.applied.fetch_add(applied, Ordering::Relaxed);
        if in_run {
            shared.applied_in_run.fetch_add(applied, Ordering::Relaxed);
        }
        shared.in_flight.fetch_sub(size, Ordering::Relaxed);
        if !resend.is_empty() {
            std::thread::sleep(Duration::from_millis(50));
            lock(&shared.retry).extend(resend);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(keys: u64, value_bytes: usize, max: u64) -> Shared {
        Shared::new(7, keys, value_bytes, max)
    }

    #[test]
    fn puts_cycle_keys_and_are_distinct_transactions() {
        let s = shared(3, 256, 100);
        let decode = |raw: String| {
            let bytes = hex::decode(raw.trim_start_matches("0x")).unwrap();
            KvTx::from_tx(&canon_engine::app::Tx::new(bytes)).unwrap()
        };
        let a = decode(s.raw(1).unwrap());
        let b = decode(s.raw(4).unwrap());
        assert_eq!(a.op.key(), b.op.key(), "put 4 reuses put 1's key of 3");
        assert_eq!(a.op.key().len(), 8);
        assert_ne!(a, b);
        match a.op {
            KvOp::Put { value, .. } => assert_eq!(value.len(), 256),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn batches_resend_first_and_stop_at_the_bound() {
        let s = shared(10, 8, 5);
        lock(&s.retry).push_back(42);
        assert_eq!(next_batch(&s, 3), (vec![42, 0, 1], 2));
        assert_eq!(next_batch(&s, 3), (vec![2, 3, 4], 3));
        assert_eq!(next_batch(&s, 3), (vec![], 0));
    }
}

//! The ledger's load: transfers between the public dev accounts, signed before the clock
//! starts (signing is the client's cost, not the cluster's), sent in `canon_sendTransactions`
//! batches. One tracker asks for every sender's account nonce in one JSON-RPC batch request
//! every [`POLL_MS`]; a transaction counts as canonized when its sender's nonce passes it, and
//! its latency runs from its first submission to that poll. A rejected transaction is counted
//! by reason and sent again, since every later nonce of its sender waits for it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy_primitives::Address;
use canon_engine::app::ledger::{Payload, Transaction};
use canon_engine::codec;
use canon_engine::sync::lock;
use rayon::prelude::*;
use serde_json::{json, Value};

use super::{
    client, entry_errors, percentile, progress_bar, reason_of, show_progress, LoadConfig,
    LoadReport, Pace, DRAIN_SECS,
};
use crate::client::{ClientError, NodeClient};
use crate::genesis::dev_account_key;

/// How often the tracker reads the senders' nonces: the latency figures' resolution.
pub const POLL_MS: u64 = 20;

/// One pre-signed transaction, ready to send.
struct Prepared {
    account: usize,
    /// Position in its sender's sequence (nonce minus the starting nonce).
    seq: usize,
    raw: String,
}

/// Per sender: when each of its transactions was first submitted, and how many are canonized.
struct Ledger {
    first_sent: Vec<Vec<Option<Instant>>>,
    canonized: Vec<usize>,
    latencies_ms: Vec<f64>,
    canonized_in_run: u64,
}

struct Shared {
    prepared: Vec<Prepared>,
    next: AtomicUsize,
    retry: Mutex<VecDeque<usize>>,
    submitted: AtomicU64,
    canonized: AtomicU64,
    stop: AtomicBool,
    ledger: Mutex<Ledger>,
    rejections: Mutex<BTreeMap<String, u64>>,
}

/// Every sender's account nonce in one JSON-RPC batch request.
fn nonces(c: &NodeClient, senders: &[Address]) -> Result<Vec<u64>, ClientError> {
    let calls: Vec<(&str, Value)> = senders
        .iter()
        .map(|a| ("canon_getAccount", json!([a])))
        .collect();
    c.call_batch(&calls)?
        .into_iter()
        .map(|r| {
            let v = r?;
            v.get("nonce")
                .and_then(Value::as_u64)
                .ok_or_else(|| ClientError::Decode(format!("account without nonce: {v}")))
        })
        .collect()
}

/// Runs the load and returns what it measured.
pub(super) fn run(cfg: &LoadConfig) -> Result<LoadReport, String> {
    let keys: Vec<_> = (0..cfg.accounts).map(dev_account_key).collect();
    let senders: Vec<Address> = keys.iter().map(|k| k.address()).collect();
    let tracker = client(cfg, &cfg.rpc[0]);
    let start_nonces = nonces(&tracker, &senders)
        .map_err(|e| format!("reading the senders' nonces from {}: {e}", cfg.rpc[0]))?;

    let total = match cfg.pace {
        Pace::Rate(r) => (r.saturating_mul(cfg.duration_secs) as usize).min(cfg.max_txs),
        Pace::Window(_) => cfg.max_txs,
    };
    let per_account = total.div_ceil(cfg.accounts).max(1);
    let signing = Instant::now();
    // Round-robin over senders, each in nonce order, so every batch spreads over them.
    let prepared: Vec<Prepared> = (0..per_account * cfg.accounts)
        .into_par_iter()
        .map(|i| {
            let (seq, account) = (i / cfg.accounts, i % cfg.accounts);
            let tx = Transaction {
                sender: senders[account],
                nonce: start_nonces[account] + seq as u64,
                payload: Payload::Transfer {
                    to: senders[(account + 1) % cfg.accounts],
                    amount: 1,
                },
            }
            .sign(&keys[account])
            .and_then(|t| codec::encode(&t))
            .map_err(|e| e.to_string())?;
            Ok(Prepared {
                account,
                seq,
                raw: format!("0x{}", hex::encode(tx)),
            })
        })
        .collect::<Result<_, String>>()?;
    if cfg.progress {
        eprintln!(
            "signed {} transfers from {} accounts in {:.1} s",
            prepared.len(),
            cfg.accounts,
            signing.elapsed().as_secs_f64()
        );
    }
    let signed = prepared.len() as u64;
    let shared = Arc::new(Shared {
        prepared,
        next: AtomicUsize::new(0),
        retry: Mutex::new(VecDeque::new()),
        submitted: AtomicU64::new(0),
        canonized: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        ledger: Mutex::new(Ledger {
            first_sent: vec![vec![None; per_account]; cfg.accounts],
            canonized: vec![0; cfg.accounts],
            latencies_ms: Vec::new(),
            canonized_in_run: 0,
        }),
        rejections: Mutex::new(BTreeMap::new()),
    });

    let started = Instant::now();
    let run_for = Duration::from_secs(cfg.duration_secs);
    let bar = progress_bar(cfg);
    let sender_threads: Vec<_> = (0..cfg.senders)
        .map(|t| {
            let shared = shared.clone();
            let cfg = cfg.clone();
            std::thread::spawn(move || send_loop(t, &cfg, &shared, started, run_for))
        })
        .collect();

    // The tracker runs on this thread: through the run, then a drain for what is in flight.
    let mut last_report = Instant::now();
    let mut poll_errors = 0u64;
    let mut ran_out: Option<Duration> = None;
    loop {
        std::thread::sleep(Duration::from_millis(POLL_MS));
        let now = Instant::now();
        let in_run = now.duration_since(started) <= run_for;
        match nonces(&tracker, &senders) {
            Ok(n) => track(&shared, &start_nonces, &n, now, in_run),
            Err(e) => {
                poll_errors += 1;
                if poll_errors % 50 == 1 {
                    eprintln!("warning: reading nonces from {}: {e}", cfg.rpc[0]);
                }
            }
        }
        let elapsed = now.duration_since(started);
        if elapsed >= run_for {
            shared.stop.store(true, Ordering::Relaxed);
        }
        let submitted = shared.submitted.load(Ordering::Relaxed);
        let canonized = shared.canonized.load(Ordering::Relaxed);
        if canonized >= signed && ran_out.is_none() && elapsed < run_for {
            // Nothing left to send: the rest of the duration would only dilute the rate.
            ran_out = Some(elapsed);
            break;
        }
        if now.duration_since(last_report) >= Duration::from_millis(500) {
            last_report = now;
            let msg = format!(
                "submitted {submitted}, canonized {canonized} ({:.0} tx/s)",
                canonized as f64 / elapsed.as_secs_f64().max(0.001)
            );
            show_progress(&bar, cfg, elapsed, msg);
        }
        let drained =
            canonized >= submitted && lock(&shared.retry).is_empty() && elapsed >= run_for;
        if drained || elapsed >= run_for + Duration::from_secs(DRAIN_SECS) {
            break;
        }
    }
    shared.stop.store(true, Ordering::Relaxed);
    for t in sender_threads {
        let _ = t.join();
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let run_secs = ran_out.unwrap_or(run_for).as_secs_f64();
    let mut ledger = lock(&shared.ledger);
    ledger.latencies_ms.sort_by(|a, b| a.total_cmp(b));
    let submitted = shared.submitted.load(Ordering::Relaxed);
    let canonized = shared.canonized.load(Ordering::Relaxed);
    let rejections = lock(&shared.rejections).clone();
    Ok(LoadReport {
        prepared: signed,
        submitted,
        canonized_in_run: ledger.canonized_in_run,
        canonized,
        run_secs,
        tx_per_sec: ledger.canonized_in_run as f64 / run_secs,
        latency_ms_p50: percentile(&ledger.latencies_ms, 0.50),
        latency_ms_p99: percentile(&ledger.latencies_ms, 0.99),
        latency_ms_max: ledger.latencies_ms.last().copied().unwrap_or(f64::NAN),
        rejections,
        unconfirmed: submitted.saturating_sub(canonized),
        ran_out_after_secs: ran_out.map(|d| d.as_secs_f64()),
    })
}

/// Records what the nonces read at `now` show canonized.
fn track(shared: &Shared, start: &[u64], read: &[u64], now: Instant, in_run: bool) {
    let mut l = lock(&shared.ledger);
    let mut newly = 0u64;
    for (a, n) in read.iter().enumerate() {
        let upto = (n.saturating_sub(start[a]) as usize).min(l.first_sent[a].len());
        while l.canonized[a] < upto {
            let seq = l.canonized[a];
            if let Some(sent) = l.first_sent[a][seq] {
                l.latencies_ms
                    .push(now.duration_since(sent).as_secs_f64() * 1e3);
            }
            l.canonized[a] += 1;
            newly += 1;
        }
    }
    if in_run {
        l.canonized_in_run += newly;
    }
    shared.canonized.fetch_add(newly, Ordering::Relaxed);
}

/// One sender thread: takes the next batch (resends first), waits for its turn, sends it to
/// the next node, and files each entry's outcome.
fn send_loop(t: usize, cfg: &LoadConfig, shared: &Shared, started: Instant, run_for: Duration) {
    let clients: Vec<NodeClient> = cfg.rpc.iter().map(|a| client(cfg, a)).collect();
    let mut turn = t;
    while !shared.stop.load(Ordering::Relaxed) && started.elapsed() < run_for {
        let mut batch: Vec<usize> = {
            let mut retry = lock(&shared.retry);
            let k = retry.len().min(cfg.batch);
            retry.drain(..k).collect()
        };
        let fresh_from = batch.len();
        if batch.len() < cfg.batch {
            let want = cfg.batch - batch.len();
            let from = shared.next.fetch_add(want, Ordering::Relaxed);
            let to = (from + want).min(shared.prepared.len());
            batch.extend(from..to.max(from));
        }
        if batch.is_empty() {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        // Wait for this batch's turn.
        let fresh = (batch.len() - fresh_from) as u64;
        loop {
            if shared.stop.load(Ordering::Relaxed) {
                return;
            }
            let ready = match cfg.pace {
                Pace::Rate(rate) => {
                    let first = batch.get(fresh_from).copied().unwrap_or(0) as f64;
                    started + Duration::from_secs_f64(first / rate as f64) <= Instant::now()
                }
                Pace::Window(w) => {
                    let in_flight = shared
                        .submitted
                        .load(Ordering::Relaxed)
                        .saturating_sub(shared.canonized.load(Ordering::Relaxed));
                    in_flight + fresh <= w || fresh == 0
                }
            };
            if ready {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let raws: Vec<&str> = batch
            .iter()
            .map(|i| shared.prepared[*i].raw.as_str())
            .collect();
        let sent_at = Instant::now();
        {
            let mut l = lock(&shared.ledger);
            for i in &batch[fresh_from..] {
                let p = &shared.prepared[*i];
                l.first_sent[p.account][p.seq].get_or_insert(sent_at);
            }
        }
        shared.submitted.fetch_add(fresh, Ordering::Relaxed);
        let c = &clients[turn % clients.len()];
        turn += 1;
        let answer = c.call("canon_sendTransactions", json!([raws]));
        let entries = entry_errors(answer, batch.len());
        let mut resend = Vec::new();
        {
            let mut rejections = lock(&shared.rejections);
            for (i, err) in batch.iter().zip(entries) {
                let Some(err) = err else { continue };
                let reason = reason_of(&err);
                // A nonce the chain already used was canonized by an earlier send.
                if !reason.contains("already used") {
                    resend.push(*i);
                }
                *rejections.entry(reason).or_insert(0) += 1;
            }
        }
        if !resend.is_empty() {
            std::thread::sleep(Duration::from_millis(50));
            lock(&shared.retry).extend(resend);
        }
    }
}

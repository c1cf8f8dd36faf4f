//! `canon-node load`: a load generator a user points at any cluster's JSON-RPC.
//!
//! It sends batches to the given nodes in turn, at a fixed rate (open loop) or keeping a
//! window of transactions in flight (closed loop), each call waiting until the node applied
//! its batch ([`waited`]), and reports what was applied while it ran, latency percentiles
//! and refusals by reason. What it sends depends on the chain's application: signed
//! transfers for the ledger ([`ledger`]), puts for the key-value store ([`kv`]).

use std::collections::BTreeMap;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::client::{ClientError, NodeClient};
use crate::client_auth::ClientToken;
use crate::genesis::{Application, DEV_ACCOUNTS};

pub mod kv;
pub mod ledger;
pub mod waited;

#[derive(Clone, Copy, Debug)]
pub enum Pace {
    /// Transactions per second, sent on schedule whatever the cluster does.
    Rate(u64),
    /// At most this many transactions submitted and not yet answered applied.
    Window(u64),
}

#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// JSON-RPC addresses (`host:port`), sent to in turn.
    pub rpc: Vec<String>,
    /// Dev accounts that send (1..=64); each receives from the next.
    pub accounts: usize,
    pub duration_secs: u64,
    pub pace: Pace,
    /// Transactions per call (the open loop sends at most
    /// [`waited::OPEN_LOOP_BATCH_MS`] of its rate in one).
    pub batch: usize,
    /// Most transactions signed up front (bounds memory and the signing time).
    pub max_txs: usize,
    /// Fewest threads sending batches (more are added to fill the window: each waits for
    /// its batch to apply).
    pub senders: usize,
    pub progress: bool,
    /// What the chain runs, and so what is sent.
    pub app: Application,
    /// Presented to nodes that ask for a client token (`rpc_auth_token_file`).
    pub token: Option<ClientToken>,
    /// Key-value load: puts go to this many distinct keys, in turn.
    pub kv_keys: u64,
    /// Key-value load: bytes in each value.
    pub kv_value_bytes: usize,
}

impl LoadConfig {
    /// `canon-node load`'s defaults for `app`, sending to `rpc` at `pace` for `duration_secs`.
    pub fn new(app: Application, rpc: Vec<String>, pace: Pace, duration_secs: u64) -> LoadConfig {
        LoadConfig {
            rpc,
            accounts: DEV_ACCOUNTS,
            duration_secs,
            pace,
            batch: 500,
            max_txs: 200_000,
            senders: 4,
            progress: false,
            app,
            token: None,
            kv_keys: 100_000,
            kv_value_bytes: 256,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.rpc.is_empty() {
            return Err("--rpc: name at least one node's JSON-RPC address".into());
        }
        if self.app == Application::Ledger && (self.accounts == 0 || self.accounts > DEV_ACCOUNTS) {
            return Err(format!(
                "--accounts {}: between 1 and {DEV_ACCOUNTS} (the funded dev accounts)",
                self.accounts
            ));
        }
        if self.batch == 0 || self.batch > canon_engine::net::wire::MAX_SUBMIT_BATCH {
            return Err(format!(
                "--batch {}: between 1 and {}",
                self.batch,
                canon_engine::net::wire::MAX_SUBMIT_BATCH
            ));
        }
        if self.duration_secs == 0 {
            return Err("--duration-secs: above 0".into());
        }
        if self.senders == 0 {
            return Err("--senders: above 0".into());
        }
        if self.app == Application::Kv {
            if self.kv_keys == 0 {
                return Err("--keys: above 0".into());
            }
            let most = canon_engine::app::kv::MAX_VALUE_BYTES;
            if self.kv_value_bytes > most {
                return Err(format!(
                    "--value-bytes {}: at most {most}",
                    self.kv_value_bytes
                ));
            }
        }
        match self.pace {
            Pace::Rate(0) => Err("--rate: above 0".into()),
            Pace::Window(0) => Err("--window: above 0".into()),
            _ => Ok(()),
        }
    }
}

/// What a run measured.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    /// Transactions made ready to send (signed up front, for the ledger).
    pub prepared: u64,
    pub submitted: u64,
    /// Canonized while the load ran (what `tx_per_sec` counts).
    pub canonized_in_run: u64,
    /// Canonized in all, the drain after the run included.
    pub canonized: u64,
    pub run_secs: f64,
    pub tx_per_sec: f64,
    pub latency_ms_p50: f64,
    pub latency_ms_p99: f64,
    pub latency_ms_max: f64,
    /// Submissions refused, by the node's reason (each was sent again).
    pub rejections: BTreeMap<String, u64>,
    /// Submitted but not canonized by the end of the drain.
    pub unconfirmed: u64,
    /// A closed loop whose prepared transactions were all canonized before the duration
    /// ended: when, in seconds from the start. The rate is measured over that span, not over
    /// a duration in which nothing was left to send.
    pub ran_out_after_secs: Option<f64>,
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "load: secs={:.1} submitted={} canonized={} tx_per_sec={:.0} latency_ms p50={:.0} p99={:.0} max={:.0} unconfirmed={}",
            self.run_secs,
            self.submitted,
            self.canonized_in_run,
            self.tx_per_sec,
            self.latency_ms_p50,
            self.latency_ms_p99,
            self.latency_ms_max,
            self.unconfirmed
        )?;
        if let Some(secs) = self.ran_out_after_secs {
            writeln!(
                f,
                "all {} prepared transactions were canonized after {secs:.1} s: measured over that (raise --max-txs to load the whole duration)",
                self.prepared
            )?;
        }
        if self.rejections.is_empty() {
            write!(f, "rejections: none")
        } else {
            write!(f, "rejections:")?;
            for (reason, n) in &self.rejections {
                write!(f, "\n  {n:>8}  {reason}")?;
            }
            Ok(())
        }
    }
}

/// Runs the load and returns what it measured.
pub fn run(cfg: &LoadConfig) -> Result<LoadReport, String> {
    cfg.validate()?;
    match cfg.app {
        Application::Ledger => ledger::run(cfg),
        Application::Kv => kv::run(cfg),
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A node's reason with the numbers taken out, so like refusals count together.
fn reason_of(e: &ClientError) -> String {
    let text = match e {
        ClientError::Rpc { message, .. } => message.clone(),
        other => other.to_string(),
    };
    let mut out = String::new();
    let mut in_number = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                out.push('N');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out.chars().take(120).collect()
}

fn client(cfg: &LoadConfig, addr: &str) -> NodeClient {
    NodeClient::new(addr, addr, Duration::from_secs(40)).with_token(cfg.token.clone())
}

/// Each entry's error in a batch call's answer (`None`: it went through), or the call's own
/// error for every entry when the call failed or answered something else.
fn entry_errors(
    answer: Result<serde_json::Value, ClientError>,
    n: usize,
) -> Vec<Option<ClientError>> {
    match answer {
        Ok(serde_json::Value::Array(entries)) if entries.len() == n => entries
            .iter()
            .map(|e| e.get("error").map(ClientError::from_rpc))
            .collect(),
        Ok(other) => vec![Some(ClientError::Decode(format!("unexpected answer: {other}"))); n],
        Err(e) => vec![Some(e); n],
    }
}

/// Shows `msg` on the bar, or on a terminal-less run prints it every 5 s.
fn show_progress(bar: &Option<ProgressBar>, cfg: &LoadConfig, elapsed: Duration, msg: String) {
    match bar {
        Some(b) => {
            b.set_position(elapsed.as_secs().min(cfg.duration_secs));
            b.set_message(msg);
        }
        None if cfg.progress && elapsed.as_millis() % 5_000 < 500 => {
            eprintln!("progress: {:.0} s, {msg}", elapsed.as_secs_f64())
        }
        None => {}
    }
}

fn progress_bar(cfg: &LoadConfig) -> Option<ProgressBar> {
    if !cfg.progress || !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return None;
    }
    let bar = ProgressBar::new(cfg.duration_secs);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} s {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    Some(bar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_group_refusals_whatever_their_numbers() {
        let e = |m: &str| ClientError::Rpc {
            code: -32000,
            message: m.into(),
        };
        assert_eq!(
            reason_of(&e(
                "transaction rejected: mempool is full (100000 transactions)"
            )),
            reason_of(&e("transaction rejected: mempool is full (5 transactions)"))
        );
        assert_eq!(
            reason_of(&e("nonce 7 already used (account nonce is 9)")),
            "nonce N already used (account nonce is N)"
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let good = LoadConfig {
            rpc: vec!["127.0.0.1:3050".into()],
            accounts: 8,
            duration_secs: 10,
            pace: Pace::Rate(100),
            batch: 100,
            max_txs: 1000,
            senders: 2,
            progress: false,
            app: Application::Ledger,
            token: None,
            kv_keys: 1000,
            kv_value_bytes: 256,
        };
        assert!(good.validate().is_ok());
        for (bad, named) in [
            (
                LoadConfig {
                    accounts: 65,
                    ..good.clone()
                },
                "--accounts",
            ),
            (
                LoadConfig {
                    batch: 0,
                    ..good.clone()
                },
                "--batch",
            ),
            (
                LoadConfig {
                    rpc: vec![],
                    ..good.clone()
                },
                "--rpc",
            ),
            (
                LoadConfig {
                    pace: Pace::Window(0),
                    ..good.clone()
                },
                "--window",
            ),
            (
                LoadConfig {
                    duration_secs: 0,
                    ..good.clone()
                },
                "--duration-secs",
            ),
            (
                LoadConfig {
                    app: Application::Kv,
                    kv_value_bytes: 1 << 20,
                    ..good.clone()
                },
                "--value-bytes",
            ),
        ] {
            let e = bad.validate().unwrap_err();
            assert!(e.contains(named), "{e}");
        }
    }
}

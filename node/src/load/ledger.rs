//! The ledger's load: transfers between the public dev accounts, signed before the clock
//! starts (signing is the client's cost, not the cluster's), in nonce order round-robin over
//! the senders so every batch spreads over them, and sent by [`waited`](super::waited)'s loop.
//! A transaction refused because its nonce was already used was applied by an earlier send
//! (one that timed out, say), so it is not sent again; every other refusal is, since every
//! later nonce of its sender waits for it.

use std::sync::Arc;
use std::time::Instant;

use alloy_primitives::Address;
use canon_engine::app::ledger::{Payload, Transaction};
use canon_engine::codec;
use rayon::prelude::*;
use serde_json::{json, Value};

use super::waited::{self, Source};
use super::{client, LoadConfig, LoadReport, Pace};
use crate::client::{ClientError, NodeClient};
use crate::genesis::dev_account_key;

/// Transfers signed up front, in the order they are sent.
struct Signed(Vec<String>);

impl Source for Signed {
    fn total(&self) -> u64 {
        self.0.len() as u64
    }

    fn raw(&self, n: u64) -> Result<String, String> {
        usize::try_from(n)
            .ok()
            .and_then(|i| self.0.get(i))
            .cloned()
            .ok_or_else(|| format!("transfer {n} of {} asked for", self.0.len()))
    }

    fn resend(&self, reason: &str) -> bool {
        !reason.contains("already used")
    }

    fn unit(&self) -> &'static str {
        "tx"
    }
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
    let start_nonces = nonces(&client(cfg, &cfg.rpc[0]), &senders)
        .map_err(|e| format!("reading the senders' nonces from {}: {e}", cfg.rpc[0]))?;
    let total = match cfg.pace {
        Pace::Rate(r) => (r.saturating_mul(cfg.duration_secs) as usize).min(cfg.max_txs),
        Pace::Window(_) => cfg.max_txs,
    };
    let per_account = total.div_ceil(cfg.accounts).max(1);
    let signing = Instant::now();
    let signed: Vec<String> = (0..per_account * cfg.accounts)
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
            Ok(format!("0x{}", hex::encode(tx)))
        })
        .collect::<Result<_, String>>()?;
    if cfg.progress {
        eprintln!(
            "signed {} transfers from {} accounts in {:.1} s",
            signed.len(),
            cfg.accounts,
            signing.elapsed().as_secs_f64()
        );
    }
    waited::run(cfg, Arc::new(Signed(signed)))
}

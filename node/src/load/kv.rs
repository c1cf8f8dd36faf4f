//! The key-value load: puts of `kv_value_bytes`-byte values to `kv_keys` keys of 8 bytes in
//! turn, made as they are sent (they carry no signature, so nothing is prepared up front), and
//! sent by [`waited`](super::waited)'s loop.

use std::sync::Arc;

use canon_engine::app::kv::{KvOp, KvTx};
use serde_json::{json, Value};

use super::waited::{self, Source};
use super::{client, LoadConfig, LoadReport, Pace};

/// Puts made on demand: put `n` goes to key `n % keys`.
struct Puts {
    client: u64,
    keys: u64,
    value_bytes: usize,
    total: u64,
}

impl Source for Puts {
    fn total(&self) -> u64 {
        self.total
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

    fn unit(&self) -> &'static str {
        "puts"
    }
}

pub(super) fn run(cfg: &LoadConfig) -> Result<LoadReport, String> {
    let total = match cfg.pace {
        Pace::Rate(r) => r.saturating_mul(cfg.duration_secs).min(cfg.max_txs as u64),
        Pace::Window(_) => cfg.max_txs as u64,
    };
    let puts = Puts {
        client: rand::random(),
        keys: cfg.kv_keys,
        value_bytes: cfg.kv_value_bytes,
        total,
    };
    puts.raw(0)?;
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
    waited::run(cfg, Arc::new(puts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn puts_cycle_keys_and_are_distinct_transactions() {
        let s = Puts {
            client: 7,
            keys: 3,
            value_bytes: 256,
            total: 100,
        };
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
}

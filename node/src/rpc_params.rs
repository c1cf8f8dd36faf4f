//! What each JSON-RPC call's parameters say, read before the node does anything with them.
//! Pure functions of the call's raw parameter text (no server, no node, no RocksDB), so the
//! production build and the fuzzer (`fuzz/`, target `rpc_params`) run the very same code on
//! whatever a client sends. Every bad parameter is an `Invalid params` error (-32602) naming
//! what was expected.
//!
//! Transactions, keys, values and queries travel as `0x` hex. Heights are JSON numbers,
//! `"latest"` or a `0x` hex quantity.

use std::time::Duration;

use alloy_primitives::{Address, B256};
use canon_engine::app::kv::{KvOp, KvQuery, MAX_RANGE_PAIRS};
use canon_engine::app::Tx;
use canon_engine::net::wire::{ReadConsistency, MAX_SUBMIT_BATCH, MAX_SUBMIT_WAIT_MS};
use jsonrpsee_types::params::ParamsSequence;
use jsonrpsee_types::{ErrorObjectOwned, Params};
use serde_json::Value;

/// Invalid method parameters (JSON-RPC 2.0).
pub const INVALID_PARAMS: i32 = -32602;
/// How long a call that waits for its transaction waits when it does not say.
pub const DEFAULT_WAIT_MS: u64 = 5_000;

pub fn invalid(msg: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(INVALID_PARAMS, msg.into(), None::<()>)
}

/// A submitted transaction's bytes and its id, or why it was not read.
pub type DecodedTx = Result<(Tx, B256), ErrorObjectOwned>;

/// The next positional parameter; a missing or malformed one is named with the call's `usage`.
pub fn param<T: serde::de::DeserializeOwned>(
    seq: &mut ParamsSequence<'_>,
    usage: &str,
) -> Result<T, ErrorObjectOwned> {
    seq.next()
        .map_err(|e| invalid(format!("expected {usage}: {e}")))
}

/// The next positional parameter if there is one (`null` counts as none).
pub fn optional_param<T: serde::de::DeserializeOwned>(
    seq: &mut ParamsSequence<'_>,
    usage: &str,
) -> Result<Option<T>, ErrorObjectOwned> {
    seq.optional_next()
        .map_err(|e| invalid(format!("expected {usage}: {e}")))
}

/// `0x` hex (the prefix is optional) as bytes; the message names `what`.
pub fn hex_bytes(what: &str, raw: &str) -> Result<Vec<u8>, ErrorObjectOwned> {
    hex::decode(raw.strip_prefix("0x").unwrap_or(raw))
        .map_err(|e| invalid(format!("{what} {raw:?} is not hex: {e}")))
}

fn optional_hex(what: &str, raw: Option<String>) -> Result<Option<Vec<u8>>, ErrorObjectOwned> {
    raw.map(|r| hex_bytes(what, &r)).transpose()
}

/// A wait in milliseconds (default [`DEFAULT_WAIT_MS`], at most [`MAX_SUBMIT_WAIT_MS`]).
pub fn parse_wait(ms: Option<u64>) -> Result<Duration, ErrorObjectOwned> {
    let ms = ms.unwrap_or(DEFAULT_WAIT_MS);
    if ms == 0 || ms > u64::from(MAX_SUBMIT_WAIT_MS) {
        return Err(invalid(format!(
            "wait of {ms} ms: between 1 and {MAX_SUBMIT_WAIT_MS}"
        )));
    }
    Ok(Duration::from_millis(ms))
}

/// `"linearizable"` (the default) or `"local"`.
pub fn parse_consistency(raw: Option<String>) -> Result<ReadConsistency, ErrorObjectOwned> {
    match raw.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("linearizable") => Ok(ReadConsistency::Linearizable),
        Some("local") => Ok(ReadConsistency::Local),
        Some(other) => Err(invalid(format!(
            "consistency {other:?}: \"linearizable\" (sees every write that finished before the \
             read) or \"local\" (this node's applied state, maybe stale)"
        ))),
    }
}

/// Parses `"latest"`, a JSON number, or a `0x` hex quantity.
pub fn parse_height(v: &Value, latest: u64) -> Result<u64, String> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| format!("height {n} is not a non-negative integer")),
        Value::String(s) if s == "latest" => Ok(latest),
        Value::String(s) => {
            let digits = s
                .strip_prefix("0x")
                .ok_or_else(|| format!("height {s:?} is not a number, \"latest\" or 0x hex"))?;
            u64::from_str_radix(digits, 16).map_err(|e| format!("height {s:?}: {e}"))
        }
        other => Err(format!("height must be a number or string, got {other}")),
    }
}

/// A submitted transaction's bytes (what they mean is the application's to check) and its id.
pub fn decode_transaction(raw: &str) -> DecodedTx {
    let bytes = hex::decode(raw.trim_start_matches("0x"))
        .map_err(|e| invalid(format!("transaction is not hex: {e}")))?;
    let tx = Tx::new(bytes);
    let hash = tx.hash();
    Ok((tx, hash))
}

/// A batch's transactions each as its bytes and id, or the error of the one that did not
/// decode. More than `max` (`rpc_max_transactions_per_call`, at most [`MAX_SUBMIT_BATCH`]) is
/// refused whole.
pub fn decode_batch(raws: &[String], max: usize) -> Result<Vec<DecodedTx>, ErrorObjectOwned> {
    let max = max.min(MAX_SUBMIT_BATCH);
    if raws.len() > max {
        return Err(invalid(format!(
            "{} transactions in one call; at most {max} (rpc_max_transactions_per_call)",
            raws.len()
        )));
    }
    Ok(raws.iter().map(|r| decode_transaction(r)).collect())
}

/// `canon_sendTransaction(["0x<tx>"])`.
pub fn send_transaction(params: &Params<'_>) -> DecodedTx {
    let (raw,): (String,) = params.parse().map_err(|e| {
        invalid(format!(
            "expected [\"0x<encoded signed transaction>\"]: {e}"
        ))
    })?;
    decode_transaction(&raw)
}

/// `canon_sendTransactions([["0x<tx>", ...]])`.
pub fn send_transactions(
    params: &Params<'_>,
    max: usize,
) -> Result<Vec<DecodedTx>, ErrorObjectOwned> {
    let (raws,): (Vec<String>,) = params.parse().map_err(|e| {
        invalid(format!(
            "expected [[\"0x<encoded signed transaction>\", ...]]: {e}"
        ))
    })?;
    decode_batch(&raws, max)
}

/// `canon_sendTransactionAndWait(["0x<tx>", wait_ms?])`.
pub fn send_transaction_and_wait(
    params: &Params<'_>,
) -> Result<((Tx, B256), Duration), ErrorObjectOwned> {
    let usage = "[\"0x<transaction>\", wait_ms?]";
    let mut seq = params.sequence();
    let raw: String = param(&mut seq, usage)?;
    let wait = parse_wait(optional_param(&mut seq, usage)?)?;
    Ok((decode_transaction(&raw)?, wait))
}

/// `canon_sendTransactionsAndWait([["0x<tx>", ...], wait_ms?])`.
pub fn send_transactions_and_wait(
    params: &Params<'_>,
    max: usize,
) -> Result<(Vec<DecodedTx>, Duration), ErrorObjectOwned> {
    let usage = "[[\"0x<transaction>\", ...], wait_ms?]";
    let mut seq = params.sequence();
    let raws: Vec<String> = param(&mut seq, usage)?;
    let wait = parse_wait(optional_param(&mut seq, usage)?)?;
    Ok((decode_batch(&raws, max)?, wait))
}

/// `canon_query(["0x<query>", "linearizable" | "local"])`: the application's query bytes.
pub fn query(params: &Params<'_>) -> Result<(Vec<u8>, ReadConsistency), ErrorObjectOwned> {
    let usage = "[\"0x<query>\", consistency?]";
    let mut seq = params.sequence();
    let raw: String = param(&mut seq, usage)?;
    let consistency = parse_consistency(optional_param(&mut seq, usage)?)?;
    Ok((hex_bytes("query", &raw)?, consistency))
}

/// `canon_getBlockByNumber([height])`, with `latest` the head's height.
pub fn get_block(params: &Params<'_>, latest: u64) -> Result<u64, ErrorObjectOwned> {
    let mut seq = params.sequence();
    let raw: Value = seq
        .next()
        .map_err(|e| invalid(format!("expected [height]: {e}")))?;
    parse_height(&raw, latest).map_err(invalid)
}

/// `canon_getAccount(["0x<address>"])`.
pub fn get_account(params: &Params<'_>) -> Result<Address, ErrorObjectOwned> {
    let (addr,): (String,) = params
        .parse()
        .map_err(|e| invalid(format!("expected [\"0x<address>\"]: {e}")))?;
    addr.parse()
        .map_err(|e| invalid(format!("address {addr:?}: {e}")))
}

/// `kv_put(["0x<key>", "0x<value>", wait_ms?])`.
pub fn kv_put(params: &Params<'_>) -> Result<(KvOp, Duration), ErrorObjectOwned> {
    let usage = "[\"0x<key>\", \"0x<value>\", wait_ms?]";
    let mut seq = params.sequence();
    let key: String = param(&mut seq, usage)?;
    let value: String = param(&mut seq, usage)?;
    let wait = parse_wait(optional_param(&mut seq, usage)?)?;
    let op = KvOp::Put {
        key: hex_bytes("key", &key)?,
        value: hex_bytes("value", &value)?,
    };
    Ok((op, wait))
}

/// `kv_delete(["0x<key>", wait_ms?])`.
pub fn kv_delete(params: &Params<'_>) -> Result<(KvOp, Duration), ErrorObjectOwned> {
    let usage = "[\"0x<key>\", wait_ms?]";
    let mut seq = params.sequence();
    let key: String = param(&mut seq, usage)?;
    let wait = parse_wait(optional_param(&mut seq, usage)?)?;
    let op = KvOp::Delete {
        key: hex_bytes("key", &key)?,
    };
    Ok((op, wait))
}

/// `kv_compareAndSet(["0x<key>", "0x<expected>" | null, "0x<new>" | null, wait_ms?])`.
pub fn kv_compare_and_set(params: &Params<'_>) -> Result<(KvOp, Duration), ErrorObjectOwned> {
    let usage = "[\"0x<key>\", \"0x<expected>\" or null, \"0x<new>\" or null, wait_ms?]";
    let mut seq = params.sequence();
    let key: String = param(&mut seq, usage)?;
    let expected: Option<String> = param(&mut seq, usage)?;
    let new: Option<String> = param(&mut seq, usage)?;
    let wait = parse_wait(optional_param(&mut seq, usage)?)?;
    let op = KvOp::CompareAndSet {
        key: hex_bytes("key", &key)?,
        expected: optional_hex("expected", expected)?,
        new: optional_hex("new", new)?,
    };
    Ok((op, wait))
}

/// `kv_get(["0x<key>", "linearizable" | "local"])`.
pub fn kv_get(params: &Params<'_>) -> Result<(KvQuery, ReadConsistency), ErrorObjectOwned> {
    let usage = "[\"0x<key>\", consistency?]";
    let mut seq = params.sequence();
    let key: String = param(&mut seq, usage)?;
    let consistency = parse_consistency(optional_param(&mut seq, usage)?)?;
    let query = KvQuery::Get {
        key: hex_bytes("key", &key)?,
    };
    Ok((query, consistency))
}

/// `kv_range(["0x<start>", "0x<end>" | null, limit, "linearizable" | "local"])`: at most
/// `limit` pairs, between 1 and [`MAX_RANGE_PAIRS`].
pub fn kv_range(params: &Params<'_>) -> Result<(KvQuery, ReadConsistency), ErrorObjectOwned> {
    let usage = "[\"0x<start>\", \"0x<end>\" or null, limit, consistency?]";
    let mut seq = params.sequence();
    let start: String = param(&mut seq, usage)?;
    let end: Option<String> = param(&mut seq, usage)?;
    let limit: u32 = param(&mut seq, usage)?;
    if limit == 0 || limit > MAX_RANGE_PAIRS {
        return Err(invalid(format!(
            "limit {limit}: between 1 and {MAX_RANGE_PAIRS}"
        )));
    }
    let consistency = parse_consistency(optional_param(&mut seq, usage)?)?;
    let query = KvQuery::Range {
        start: hex_bytes("start", &start)?,
        end: optional_hex("end", end)?,
        limit,
    };
    Ok((query, consistency))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(json: &str) -> Params<'_> {
        Params::new(Some(json))
    }

    #[test]
    fn waits_and_consistencies_are_checked_and_named() {
        assert_eq!(
            parse_wait(None).unwrap(),
            Duration::from_millis(DEFAULT_WAIT_MS)
        );
        assert!(parse_wait(Some(0))
            .unwrap_err()
            .message()
            .contains("wait of 0 ms"));
        assert!(parse_wait(Some(u64::from(MAX_SUBMIT_WAIT_MS) + 1)).is_err());
        assert_eq!(
            parse_consistency(None).unwrap(),
            ReadConsistency::Linearizable
        );
        assert_eq!(
            parse_consistency(Some("Local".into())).unwrap(),
            ReadConsistency::Local
        );
        let e = parse_consistency(Some("eventual".into())).unwrap_err();
        assert!(e.message().contains("\"eventual\""), "{}", e.message());
    }

    #[test]
    fn each_call_reads_its_parameters_or_names_what_it_expected() {
        // (call, params) -> the message names this, or it parsed.
        let bad: [(&str, &str, &str); 8] = [
            ("send", r#"[]"#, "0x<encoded signed transaction>"),
            ("send", r#"["0xzz"]"#, "not hex"),
            ("wait", r#"["0x01", 0]"#, "wait of 0 ms"),
            ("range", r#"["0x01", null, 0]"#, "limit 0"),
            ("range", r#"["0x01", null]"#, "limit, consistency?"),
            ("cas", r#"["0x01"]"#, "\"0x<expected>\" or null"),
            ("block", r#"[-1]"#, "not a non-negative integer"),
            ("account", r#"["0x12"]"#, "address \"0x12\""),
        ];
        for (call, json, names) in bad {
            let p = params(json);
            let e = match call {
                "send" => send_transaction(&p).err(),
                "wait" => send_transaction_and_wait(&p).err(),
                "range" => kv_range(&p).err(),
                "cas" => kv_compare_and_set(&p).err(),
                "block" => get_block(&p, 9).err(),
                _ => get_account(&p).err(),
            }
            .unwrap_or_else(|| panic!("{call} {json} parsed"));
            assert_eq!(e.code(), INVALID_PARAMS);
            assert!(
                e.message().contains(names),
                "{call} {json}: {}",
                e.message()
            );
        }
        assert_eq!(get_block(&params(r#"["latest"]"#), 9).unwrap(), 9);
        assert_eq!(get_block(&params(r#"["0x10"]"#), 9).unwrap(), 16);
        let (op, wait) = kv_compare_and_set(&params(r#"["0x01", null, "0x02", 7]"#)).unwrap();
        assert_eq!(
            op,
            KvOp::CompareAndSet {
                key: vec![1],
                expected: None,
                new: Some(vec![2]),
            }
        );
        assert_eq!(wait, Duration::from_millis(7));
        let many = format!("[[{}]]", ["\"0x01\""; 4].join(","));
        assert_eq!(send_transactions(&params(&many), 4).unwrap().len(), 4);
        let e = send_transactions(&params(&many), 3).unwrap_err();
        assert!(e
            .message()
            .contains("4 transactions in one call; at most 3"));
    }
}

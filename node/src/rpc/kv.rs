//! The key-value application's JSON-RPC: writes that answer once this node applied them, and
//! reads that are linearizable unless the client asks for a local one. Keys and values are
//! `0x` hex; the node numbers each write for its client (see [`crate::context::RequestIds`]).

use std::sync::Arc;
use std::time::Duration;

use canon_engine::app::kv::{KvAnswer, KvOp, KvOutcome, KvQuery, KvTx, MAX_RANGE_PAIRS};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use serde_json::{json, Value};

use super::applied::{
    hex_bytes, hex_string, optional_param, param, parse_consistency, parse_wait, read_result,
    submit_and_wait,
};
use super::{internal, invalid};
use crate::context::NodeContext;

fn require_kv(ctx: &NodeContext) -> Result<(), ErrorObjectOwned> {
    match ctx.spec.app.kind() {
        "kv" => Ok(()),
        other => Err(invalid(format!(
            "kv_ methods need a chain with application kv; this one runs {other}"
        ))),
    }
}

fn optional_hex(what: &str, raw: Option<String>) -> Result<Option<Vec<u8>>, ErrorObjectOwned> {
    raw.map(|r| hex_bytes(what, &r)).transpose()
}

/// Applies one operation and returns the height and what it answered.
async fn write(
    ctx: &NodeContext,
    op: KvOp,
    wait: Duration,
) -> Result<(u64, KvOutcome), ErrorObjectOwned> {
    require_kv(ctx)?;
    let kv = KvTx {
        client: ctx.kv_requests.client,
        request: ctx.kv_requests.next(),
        op,
    };
    kv.check_sizes().map_err(|why| invalid(why.to_string()))?;
    let tx = kv.to_tx().map_err(|e| internal(e.to_string()))?;
    let result = submit_and_wait(ctx, vec![tx], wait).await.pop();
    let (height, output) = result.unwrap_or_else(|| Err(internal("no answer came back")))?;
    let outcome = KvOutcome::decode(&output)
        .map_err(|e| internal(format!("the application answered {output:?}: {e}")))?;
    Ok((height, outcome))
}

/// `kv_put(["0x<key>", "0x<value>", wait_ms?])`: `{height}`.
pub async fn put(
    params: Params<'static>,
    ctx: Arc<NodeContext>,
) -> Result<Value, ErrorObjectOwned> {
    let usage = "[\"0x<key>\", \"0x<value>\", wait_ms?]";
    let mut seq = params.sequence();
    let key: String = param(&mut seq, usage)?;
    let value: String = param(&mut seq, usage)?;
    let wait = parse_wait(optional_param(&mut seq, usage)?)?;
    let op = KvOp::Put {
        key: hex_bytes("key", &key)?,
        value: hex_bytes("value", &value)?,
    };
    let (height, _) = write(&ctx, op, wait).await?;
    Ok(json!({ "height": height }))
}

/// `kv_delete(["0x<key>", wait_ms?])`: `{height, existed}`.
pub async fn delete(
    params: Params<'static>,
    ctx: Arc<NodeContext>,
) -> Result<Value, ErrorObjectOwned> {
    let usage = "[\"0x<key>\", wait_ms?]";
    let mut seq = params.sequence();
    let key: String = param(&mut seq, usage)?;
    let wait = parse_wait(optional_param(&mut seq, usage)?)?;
    let op = KvOp::Delete {
        key: hex_bytes("key", &key)?,
    };
    match write(&ctx, op, wait).await? {
        (height, KvOutcome::Deleted(existed)) => {
            Ok(json!({ "height": height, "existed": existed }))
        }
        (_, other) => Err(internal(format!("a delete answered {other:?}"))),
    }
}

/// `kv_compareAndSet(["0x<key>", "0x<expected>" | null, "0x<new>" | null, wait_ms?])`: sets
/// the key to `new` (null: deletes it) only if it holds `expected` (null: absent); answers
/// `{height, swapped}`.
pub async fn compare_and_set(
    params: Params<'static>,
    ctx: Arc<NodeContext>,
) -> Result<Value, ErrorObjectOwned> {
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
    match write(&ctx, op, wait).await? {
        (height, KvOutcome::Swapped(swapped)) => {
            Ok(json!({ "height": height, "swapped": swapped }))
        }
        (_, other) => Err(internal(format!("a compare-and-set answered {other:?}"))),
    }
}

async fn read(
    ctx: &NodeContext,
    query: KvQuery,
    consistency: Option<String>,
) -> Result<(KvAnswer, u64), ErrorObjectOwned> {
    require_kv(ctx)?;
    let consistency = parse_consistency(consistency)?;
    let query = query.encode().map_err(|e| internal(e.to_string()))?;
    let read = read_result(ctx.read(query, consistency).await)?;
    let answer = KvAnswer::decode(&read.answer).map_err(|e| internal(e.to_string()))?;
    Ok((answer, read.height))
}

/// `kv_get(["0x<key>", "linearizable" | "local"])`: `{value, height}`, `value` null when absent.
pub async fn get(
    params: Params<'static>,
    ctx: Arc<NodeContext>,
) -> Result<Value, ErrorObjectOwned> {
    let usage = "[\"0x<key>\", consistency?]";
    let mut seq = params.sequence();
    let key: String = param(&mut seq, usage)?;
    let consistency = optional_param(&mut seq, usage)?;
    let query = KvQuery::Get {
        key: hex_bytes("key", &key)?,
    };
    match read(&ctx, query, consistency).await? {
        (KvAnswer::Value(v), height) => {
            Ok(json!({ "value": v.as_deref().map(hex_string), "height": height }))
        }
        (other, _) => Err(internal(format!("a get answered {other:?}"))),
    }
}

/// `kv_range(["0x<start>", "0x<end>" | null, limit, "linearizable" | "local"])`: the pairs with
/// `start <= key < end` in key order, at most `limit` (and [`MAX_RANGE_PAIRS`]):
/// `{pairs: [{key, value}], more, height}`.
pub async fn range(
    params: Params<'static>,
    ctx: Arc<NodeContext>,
) -> Result<Value, ErrorObjectOwned> {
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
    let consistency = optional_param(&mut seq, usage)?;
    let query = KvQuery::Range {
        start: hex_bytes("start", &start)?,
        end: optional_hex("end", end)?,
        limit,
    };
    match read(&ctx, query, consistency).await? {
        (KvAnswer::Pairs { pairs, more }, height) => Ok(json!({
            "pairs": pairs
                .iter()
                .map(|(k, v)| json!({ "key": hex_string(k), "value": hex_string(v) }))
                .collect::<Vec<_>>(),
            "more": more,
            "height": height,
        })),
        (other, _) => Err(internal(format!("a range answered {other:?}"))),
    }
}

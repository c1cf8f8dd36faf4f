//! The key-value application's JSON-RPC: writes that answer once this node applied them, and
//! reads that are linearizable unless the client asks for a local one. Keys and values are
//! `0x` hex; the node numbers each write for its client (see [`crate::context::RequestIds`]).

use std::sync::Arc;
use std::time::Duration;

use canon_engine::app::kv::{KvAnswer, KvOp, KvOutcome, KvQuery, KvTx};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use serde_json::{json, Value};

use canon_engine::net::wire::ReadConsistency;

use super::applied::{hex_string, read_result, submit_and_wait};
use super::internal;
use crate::context::NodeContext;
use crate::rpc_params::{self, invalid};

fn require_kv(ctx: &NodeContext) -> Result<(), ErrorObjectOwned> {
    match ctx.spec.app.kind() {
        "kv" => Ok(()),
        other => Err(invalid(format!(
            "kv_ methods need a chain with application kv; this one runs {other}"
        ))),
    }
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
    let (op, wait) = rpc_params::kv_put(&params)?;
    let (height, _) = write(&ctx, op, wait).await?;
    Ok(json!({ "height": height }))
}

/// `kv_delete(["0x<key>", wait_ms?])`: `{height, existed}`.
pub async fn delete(
    params: Params<'static>,
    ctx: Arc<NodeContext>,
) -> Result<Value, ErrorObjectOwned> {
    let (op, wait) = rpc_params::kv_delete(&params)?;
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
    let (op, wait) = rpc_params::kv_compare_and_set(&params)?;
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
    consistency: ReadConsistency,
) -> Result<(KvAnswer, u64), ErrorObjectOwned> {
    require_kv(ctx)?;
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
    let (query, consistency) = rpc_params::kv_get(&params)?;
    match read(&ctx, query, consistency).await? {
        (KvAnswer::Value(v), height) => {
            Ok(json!({ "value": v.as_deref().map(hex_string), "height": height }))
        }
        (other, _) => Err(internal(format!("a get answered {other:?}"))),
    }
}

/// `kv_range(["0x<start>", "0x<end>" | null, limit, "linearizable" | "local"])`: the pairs with
/// `start <= key < end` in key order, at most `limit` (and
/// [`MAX_RANGE_PAIRS`](canon_engine::app::kv::MAX_RANGE_PAIRS)): `{pairs: [{key, value}], more,
/// height}`.
pub async fn range(
    params: Params<'static>,
    ctx: Arc<NodeContext>,
) -> Result<Value, ErrorObjectOwned> {
    let (query, consistency) = rpc_params::kv_range(&params)?;
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

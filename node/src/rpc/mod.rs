//! JSON-RPC 2.0 over HTTP: submit transactions (and wait for what they answered), read blocks,
//! accounts, application state and status; the key-value application's own calls.
//!
//! Transactions travel as `0x` hex of their canonical encoding (like `eth_sendRawTransaction`).
//! Heights are plain JSON numbers; a height parameter also accepts `"latest"` or `"0x…"`.
//! With a client token configured, every call must present it (see [`crate::client_auth`]).

mod applied;
mod kv;
mod serve;

pub use serve::{start, Limits};

pub use applied::{DEFAULT_WAIT_MS, TIMED_OUT};

use std::sync::Arc;

use alloy_primitives::{Address, B256};
use canon_engine::app::ledger::{account_query, decode_account, Payload, SignedTransaction};
use canon_engine::app::{Tx, RULE_ENCODING};
use canon_engine::chain::block::{Block, BlockHeader};
use canon_engine::chain::certificate::Certificate;
use canon_engine::codec;
use canon_engine::net::wire::{SubmitOutcome, SubmitRejection, MAX_SUBMIT_BATCH};
use jsonrpsee::server::RpcModule;
use jsonrpsee::types::{ErrorObjectOwned, Extensions, Params};
use serde::Serialize;
use serde_json::{json, Value};

use crate::context::NodeContext;

/// Invalid method parameters (JSON-RPC 2.0).
pub const INVALID_PARAMS: i32 = -32602;
/// The node refused the transaction (bad signature, nonce, funds, full mempool).
pub const TX_REJECTED: i32 = -32000;
/// No leader is known right now; retry shortly.
pub const NO_LEADER: i32 = -32001;
/// The call did not present the client token this node asks for.
pub const UNAUTHORIZED: i32 = -32003;
/// Storage could not be read.
pub const INTERNAL: i32 = -32603;

fn invalid(msg: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(INVALID_PARAMS, msg.into(), None::<()>)
}

fn internal(msg: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(INTERNAL, msg.into(), None::<()>)
}

/// Set on a call whose HTTP request presented the client token, or came to a node that asks
/// for none.
#[derive(Clone, Copy, Debug)]
pub(super) struct ClientAuthorized;

fn authorized(ext: &Extensions) -> Result<(), ErrorObjectOwned> {
    match ext.get::<ClientAuthorized>() {
        Some(_) => Ok(()),
        None => Err(ErrorObjectOwned::owned(
            UNAUTHORIZED,
            "this node serves only clients with its token: send `Authorization: Bearer <token>` \
             (the token in the node's rpc_auth_token_file)",
            None::<()>,
        )),
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

/// A transaction as JSON: its id and bytes, and, for a ledger transaction, what it says.
fn tx_json(raw: &Tx) -> Value {
    let mut v = json!({
        "hash": raw.hash(),
        "raw": format!("0x{}", hex::encode(raw.as_bytes())),
    });
    let Ok(tx) = SignedTransaction::from_tx(raw) else {
        return v;
    };
    v["from"] = json!(tx.tx.sender);
    v["nonce"] = json!(tx.tx.nonce);
    match &tx.tx.payload {
        Payload::Transfer { to, amount } => {
            v["to"] = json!(to);
            v["amount"] = json!(amount);
        }
        Payload::Data(d) => v["data"] = json!(format!("0x{}", hex::encode(d))),
    }
    v
}

fn header_json(h: &BlockHeader) -> Value {
    json!({
        "number": h.height,
        "hash": h.hash().map(|x| x.to_string()).unwrap_or_default(),
        "parentHash": h.parent_hash,
        "stateRoot": h.state_root,
        "transactionsRoot": h.transactions_root,
        "timestamp": h.timestamp_ms,
        "proposer": h.proposer,
        "term": h.term,
        // Single-sequencer blocks: the round it was signed for and the signer's level.
        "round": h.slot.map(|s| s.round),
        "level": h.slot.map(|s| s.level),
    })
}

pub fn block_json(b: &Block) -> Value {
    let mut v = header_json(&b.header);
    v["signature"] = json!(b.signature);
    v["transactions"] = Value::Array(b.transactions.iter().map(tx_json).collect());
    v
}

/// A commit certificate as JSON: the height and block hash a majority of consensus peers
/// signed, and each signature with its signer's node id (see the README's light proof).
pub fn certificate_json(c: &Certificate) -> Value {
    json!({
        "height": c.height,
        "blockHash": c.block_hash,
        "votes": c.votes.iter().map(|v| json!({
            "signer": v.signer.to_string(),
            "signature": format!("0x{}", hex::encode(v.signature.0)),
        })).collect::<Vec<_>>(),
    })
}

/// A submitted transaction's bytes (what they mean is the application's to check) and its id.
fn decode_transaction(raw: &str) -> Result<(Tx, B256), ErrorObjectOwned> {
    let bytes = hex::decode(raw.trim_start_matches("0x"))
        .map_err(|e| invalid(format!("transaction is not hex: {e}")))?;
    let tx = Tx::new(bytes);
    let hash = tx.hash();
    Ok((tx, hash))
}

/// The answer to one submitted transaction: its hash, or why it was not taken.
fn outcome_result(outcome: SubmitOutcome, hash: B256) -> Result<Value, ErrorObjectOwned> {
    match outcome {
        SubmitOutcome::Accepted { .. } => Ok(json!(hash)),
        SubmitOutcome::NotLeader { .. } => Err(ErrorObjectOwned::owned(
            NO_LEADER,
            "no leader is known right now; retry shortly",
            None::<()>,
        )),
        SubmitOutcome::Rejected(r) => {
            let code = match &r {
                SubmitRejection::Forward(_) => NO_LEADER,
                // Bytes the application cannot read are a malformed parameter, as before the
                // application seam, not a transaction it weighed and refused.
                SubmitRejection::Invalid(why) if why.rule == RULE_ENCODING => INVALID_PARAMS,
                _ => TX_REJECTED,
            };
            Err(ErrorObjectOwned::owned(
                code,
                format!("transaction rejected: {r}"),
                None::<()>,
            ))
        }
    }
}

async fn send_transaction(
    params: Params<'static>,
    ctx: Arc<NodeContext>,
) -> Result<Value, ErrorObjectOwned> {
    let (raw,): (String,) = params.parse().map_err(|e| {
        invalid(format!(
            "expected [\"0x<encoded signed transaction>\"]: {e}"
        ))
    })?;
    let (tx, hash) = decode_transaction(&raw)?;
    outcome_result(ctx.submit(tx).await, hash)
}

/// `canon_sendTransactions([["0x<tx>", ...]])`: up to [`MAX_SUBMIT_BATCH`] transactions in one
/// call, checked together and passed to the leader in one request. The answer has one entry
/// per transaction, in order: `{"hash": "0x.."}` or `{"error": {"code", "message"}}`. A
/// transaction that does not decode fails only its own entry.
async fn send_transactions(
    params: Params<'static>,
    ctx: Arc<NodeContext>,
) -> Result<Vec<BatchEntry<Admitted>>, ErrorObjectOwned> {
    let (raws,): (Vec<String>,) = params.parse().map_err(|e| {
        invalid(format!(
            "expected [[\"0x<encoded signed transaction>\", ...]]: {e}"
        ))
    })?;
    let (decoded, txs) = decode_batch(&raws, ctx.max_transactions_per_call)?;
    let mut outcomes = ctx.submit_many(txs).await.into_iter();
    Ok(batch_answer(decoded, |hash| {
        let outcome = outcomes
            .next()
            .unwrap_or(SubmitOutcome::Rejected(SubmitRejection::Forward(
                "no outcome came back".into(),
            )));
        outcome_result(outcome, hash).map(|_| Admitted { hash })
    }))
}

/// A batch's transactions each as its bytes and id, or the error of the one that did not
/// decode; and the ones that did, in order. More than `max` (`rpc_max_transactions_per_call`,
/// at most [`MAX_SUBMIT_BATCH`]) is refused whole.
#[allow(clippy::type_complexity)]
fn decode_batch(
    raws: &[String],
    max: usize,
) -> Result<(Vec<Result<(Tx, B256), ErrorObjectOwned>>, Vec<Tx>), ErrorObjectOwned> {
    let max = max.min(MAX_SUBMIT_BATCH);
    if raws.len() > max {
        return Err(invalid(format!(
            "{} transactions in one call; at most {max} (rpc_max_transactions_per_call)",
            raws.len()
        )));
    }
    let decoded: Vec<Result<(Tx, B256), ErrorObjectOwned>> =
        raws.iter().map(|r| decode_transaction(r)).collect();
    let txs = decoded
        .iter()
        .filter_map(|d| d.as_ref().ok().map(|(tx, _)| tx.clone()))
        .collect();
    Ok((decoded, txs))
}

/// One entry of a batch's answer: what the transaction came to, or `{"error": {code,
/// message}}`. Serialized as it is built, with no JSON tree in between: a batch's answer is
/// thousands of entries.
#[derive(Clone, Serialize)]
#[serde(untagged)]
pub enum BatchEntry<T> {
    Answered(T),
    Failed { error: EntryError },
}

#[derive(Clone, Serialize)]
pub struct EntryError {
    code: i32,
    message: String,
}

/// `{"hash"}`: a transaction admitted.
#[derive(Clone, Serialize)]
pub struct Admitted {
    hash: B256,
}

/// One entry per transaction of a batch, in order: what `answer` makes of a decoded one
/// (called in order), or the error.
fn batch_answer<T>(
    decoded: Vec<Result<(Tx, B256), ErrorObjectOwned>>,
    mut answer: impl FnMut(B256) -> Result<T, ErrorObjectOwned>,
) -> Vec<BatchEntry<T>> {
    decoded
        .into_iter()
        .map(|d| match d.and_then(|(_, hash)| answer(hash)) {
            Ok(t) => BatchEntry::Answered(t),
            Err(e) => BatchEntry::Failed {
                error: EntryError {
                    code: e.code(),
                    message: e.message().to_string(),
                },
            },
        })
        .collect()
}

fn get_block(params: Params<'_>, ctx: &NodeContext) -> Result<Value, ErrorObjectOwned> {
    let mut seq = params.sequence();
    let raw: Value = seq
        .next()
        .map_err(|e| invalid(format!("expected [height]: {e}")))?;
    let head = ctx.head().height;
    let height = parse_height(&raw, head).map_err(invalid)?;
    if height == 0 {
        let genesis = ctx
            .spec
            .genesis_header()
            .map_err(|e| ErrorObjectOwned::owned(INTERNAL, e.to_string(), None::<()>))?;
        let mut v = header_json(&genesis);
        v["transactions"] = json!([]);
        return Ok(v);
    }
    let internal = |e: String| ErrorObjectOwned::owned(INTERNAL, e, None::<()>);
    let Some(block) = ctx.block(height).map_err(internal)? else {
        return Ok(Value::Null);
    };
    let certificate = ctx
        .chain()
        .certificate(height)
        .map_err(|e| internal(e.to_string()))?;
    let raw = codec::encode(&block).map_err(|e| internal(e.to_string()))?;
    let mut v = block_json(&block);
    // The certificate (null until a majority signed, and always on a redundancy group's
    // chain) and the block's canonical bytes: with the consensus peer ids, enough to check
    // the block without running a node (`canon-node verify-block`).
    v["certificate"] = certificate.as_ref().map_or(Value::Null, certificate_json);
    v["raw"] = json!(format!("0x{}", hex::encode(raw)));
    Ok(v)
}

fn get_account(params: Params<'_>, ctx: &NodeContext) -> Result<Value, ErrorObjectOwned> {
    let (addr,): (String,) = params
        .parse()
        .map_err(|e| invalid(format!("expected [\"0x<address>\"]: {e}")))?;
    let addr: Address = addr
        .parse()
        .map_err(|e| invalid(format!("address {addr:?}: {e}")))?;
    let (answer, height) = ctx.query(&account_query(&addr));
    let acc = answer.and_then(|a| decode_account(&a)).map_err(|e| {
        invalid(format!(
            "canon_getAccount reads the ledger application; this chain runs {}: {e}",
            ctx.spec.app.kind()
        ))
    })?;
    Ok(json!({ "balance": acc.balance, "nonce": acc.nonce, "height": height }))
}

/// Registers a call answered at once; it first checks the client token.
fn sync_method<R>(
    m: &mut RpcModule<NodeContext>,
    name: &'static str,
    f: fn(Params<'_>, &NodeContext) -> Result<R, ErrorObjectOwned>,
) -> Result<(), String>
where
    R: serde::Serialize + Clone + Send + 'static,
{
    m.register_method(name, move |p, ctx, ext| {
        authorized(ext)?;
        f(p, ctx)
    })
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// Registers a call that waits (on the leader, or for its transaction); it first checks the
/// client token.
fn async_method<Fut, T>(
    m: &mut RpcModule<NodeContext>,
    name: &'static str,
    f: fn(Params<'static>, Arc<NodeContext>) -> Fut,
) -> Result<(), String>
where
    Fut: std::future::Future<Output = Result<T, ErrorObjectOwned>> + Send + 'static,
    T: Serialize + Clone + Send + 'static,
{
    m.register_async_method(name, move |p, ctx, ext| async move {
        authorized(&ext)?;
        f(p, ctx).await
    })
    .map(|_| ())
    .map_err(|e| e.to_string())
}

pub fn module(ctx: Arc<NodeContext>) -> Result<RpcModule<NodeContext>, String> {
    let mut m = RpcModule::from_arc(ctx);
    async_method(&mut m, "canon_sendTransaction", send_transaction)?;
    async_method(&mut m, "canon_sendTransactions", send_transactions)?;
    async_method(
        &mut m,
        "canon_sendTransactionAndWait",
        applied::send_transaction_and_wait,
    )?;
    async_method(
        &mut m,
        "canon_sendTransactionsAndWait",
        applied::send_transactions_and_wait,
    )?;
    async_method(&mut m, "canon_query", applied::query)?;
    sync_method(&mut m, "canon_blockNumber", |_, ctx| {
        Ok(json!(ctx.head().height))
    })?;
    sync_method(&mut m, "canon_getBlockByNumber", get_block)?;
    sync_method(&mut m, "canon_getAccount", get_account)?;
    sync_method(&mut m, "canon_status", |_, ctx| {
        serde_json::to_value(ctx.status_view()).map_err(|e| internal(e.to_string()))
    })?;
    async_method(&mut m, "kv_put", kv::put)?;
    async_method(&mut m, "kv_delete", kv::delete)?;
    async_method(&mut m, "kv_compareAndSet", kv::compare_and_set)?;
    async_method(&mut m, "kv_get", kv::get)?;
    async_method(&mut m, "kv_range", kv::range)?;
    Ok(m)
}

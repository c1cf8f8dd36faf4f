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

pub use crate::rpc_params::DEFAULT_WAIT_MS;
pub use applied::TIMED_OUT;

use std::sync::Arc;

use alloy_primitives::B256;
use canon_engine::app::ledger::{account_query, decode_account, Payload, SignedTransaction};
use canon_engine::app::{Tx, RULE_ENCODING};
use canon_engine::chain::block::{Block, BlockHeader};
use canon_engine::chain::certificate::Certificate;
use canon_engine::codec;
use canon_engine::net::wire::{SubmitOutcome, SubmitRejection};
use jsonrpsee::server::RpcModule;
use jsonrpsee::types::{ErrorObjectOwned, Extensions, Params};
use serde::Serialize;
use serde_json::{json, Value};

use crate::context::NodeContext;
use crate::rpc_params::{self, invalid, DecodedTx};
pub use crate::rpc_params::{parse_height, INVALID_PARAMS};

/// The node refused the transaction (bad signature, nonce, funds, full mempool).
pub const TX_REJECTED: i32 = -32000;
/// No leader is known right now; retry shortly.
pub const NO_LEADER: i32 = -32001;
/// The call did not present the client token this node asks for.
pub const UNAUTHORIZED: i32 = -32003;
/// Storage could not be read.
pub const INTERNAL: i32 = -32603;

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
    let (tx, hash) = rpc_params::send_transaction(&params)?;
    outcome_result(ctx.submit(tx).await, hash)
}

/// `canon_sendTransactions([["0x<tx>", ...]])`: up to
/// [`MAX_SUBMIT_BATCH`](canon_engine::net::wire::MAX_SUBMIT_BATCH) transactions in one call,
/// checked together and passed to the leader in one request. The answer has one entry per
/// transaction, in order: `{"hash": "0x.."}` or `{"error": {"code", "message"}}`. A
/// transaction that does not decode fails only its own entry.
async fn send_transactions(
    params: Params<'static>,
    ctx: Arc<NodeContext>,
) -> Result<Vec<BatchEntry<Admitted>>, ErrorObjectOwned> {
    let decoded = rpc_params::send_transactions(&params, ctx.max_transactions_per_call)?;
    let txs = admitted(&decoded);
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

/// The transactions of a batch that decoded, in order.
fn admitted(decoded: &[DecodedTx]) -> Vec<Tx> {
    decoded
        .iter()
        .filter_map(|d| d.as_ref().ok().map(|(tx, _)| tx.clone()))
        .collect()
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
    decoded: Vec<DecodedTx>,
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
    let height = rpc_params::get_block(&params, ctx.head().height)?;
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
    let addr = rpc_params::get_account(&params)?;
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

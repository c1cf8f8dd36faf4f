//! Calls any application's clients make beyond submitting: wait for what a transaction
//! answered, and read committed state linearizably or locally. Queries, answers and outputs
//! travel as `0x` hex of the application's own encoding.

use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::B256;
use canon_engine::app::{Tx, RULE_ENCODING};
use canon_engine::net::wire::{Awaited, ReadAnswer, ReadError};
use jsonrpsee::types::{ErrorObjectOwned, Params};
use serde_json::{json, Value};

use super::{admitted, batch_answer, outcome_result, BatchEntry, NO_LEADER};
use crate::context::NodeContext;
use crate::rpc_params::{self, invalid};

/// Admitted, but not seen applied within the wait: it may still apply.
pub const TIMED_OUT: i32 = -32002;

pub fn hex_string(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

/// What came of a transaction waited on: the height that applied it and its output, or the
/// error a client acts on.
pub fn awaited_result(
    awaited: Awaited,
    hash: B256,
    wait: Duration,
) -> Result<(u64, Vec<u8>), ErrorObjectOwned> {
    match awaited {
        Awaited::Applied { height, output } => Ok((height, output)),
        Awaited::NotAdmitted(outcome) => match outcome_result(outcome, hash) {
            Err(e) => Err(e),
            Ok(_) => Err(ErrorObjectOwned::owned(
                NO_LEADER,
                "admitted, then not waited on; retry shortly",
                None::<()>,
            )),
        },
        Awaited::TimedOut => Err(ErrorObjectOwned::owned(
            TIMED_OUT,
            format!(
                "transaction {hash} was admitted but not seen applied within {} ms: it may \
                 still apply; read before you retry",
                wait.as_millis()
            ),
            None::<()>,
        )),
    }
}

/// A read's answer, or the error a client acts on.
pub fn read_result(read: Result<ReadAnswer, ReadError>) -> Result<ReadAnswer, ErrorObjectOwned> {
    read.map_err(|e| match &e {
        ReadError::Refused(why) if why.rule == RULE_ENCODING => invalid(e.to_string()),
        ReadError::Refused(_) => invalid(e.to_string()),
        ReadError::NotLeader { .. } | ReadError::Unconfirmed(_) => {
            ErrorObjectOwned::owned(NO_LEADER, format!("{e}; retry shortly"), None::<()>)
        }
    })
}

/// Submits `txs` and waits; one result per transaction.
pub async fn submit_and_wait(
    ctx: &NodeContext,
    txs: Vec<Tx>,
    wait: Duration,
) -> Vec<Result<(u64, Vec<u8>), ErrorObjectOwned>> {
    let hashes: Vec<B256> = txs.iter().map(Tx::hash).collect();
    ctx.submit_and_wait(txs, wait)
        .await
        .into_iter()
        .zip(hashes)
        .map(|(a, hash)| awaited_result(a, hash, wait))
        .collect()
}

/// `{hash, height, output}`: a transaction applied, and what it answered.
#[derive(Clone, serde::Serialize)]
pub struct AppliedAnswer {
    hash: B256,
    height: u64,
    output: String,
}

impl AppliedAnswer {
    fn new(hash: B256, height: u64, output: &[u8]) -> AppliedAnswer {
        AppliedAnswer {
            hash,
            height,
            output: hex_string(output),
        }
    }
}

/// `canon_sendTransactionAndWait(["0x<tx>", wait_ms?])`: `{hash, height, output}` once this
/// node applied it.
pub async fn send_transaction_and_wait(
    params: Params<'static>,
    ctx: Arc<NodeContext>,
) -> Result<AppliedAnswer, ErrorObjectOwned> {
    let ((tx, hash), wait) = rpc_params::send_transaction_and_wait(&params)?;
    let result = submit_and_wait(&ctx, vec![tx], wait).await.pop();
    let (height, output) = result.unwrap_or_else(|| Err(invalid("no answer came back")))?;
    Ok(AppliedAnswer::new(hash, height, &output))
}

/// `canon_sendTransactionsAndWait([["0x<tx>", ...], wait_ms?])`: one entry per transaction,
/// `{hash, height, output}` or `{error}`, once every admitted one applied or the wait ended.
pub async fn send_transactions_and_wait(
    params: Params<'static>,
    ctx: Arc<NodeContext>,
) -> Result<Vec<BatchEntry<AppliedAnswer>>, ErrorObjectOwned> {
    let (decoded, wait) =
        rpc_params::send_transactions_and_wait(&params, ctx.max_transactions_per_call)?;
    let txs = admitted(&decoded);
    let mut results = submit_and_wait(&ctx, txs, wait).await.into_iter();
    Ok(batch_answer(decoded, |hash| {
        let (height, output) = results
            .next()
            .unwrap_or_else(|| Err(invalid("no answer came back")))?;
        Ok(AppliedAnswer::new(hash, height, &output))
    }))
}

/// `canon_query(["0x<query>", "linearizable" | "local"])`: `{answer, height}`.
pub async fn query(
    params: Params<'static>,
    ctx: Arc<NodeContext>,
) -> Result<Value, ErrorObjectOwned> {
    let (query, consistency) = rpc_params::query(&params)?;
    let read = read_result(ctx.read(query, consistency).await)?;
    Ok(json!({ "answer": hex_string(&read.answer), "height": read.height }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timed_out_write_says_it_may_still_apply() {
        let e =
            awaited_result(Awaited::TimedOut, B256::ZERO, Duration::from_millis(300)).unwrap_err();
        assert_eq!(e.code(), TIMED_OUT);
        assert!(e.message().contains("300 ms") && e.message().contains("may still apply"));
    }
}

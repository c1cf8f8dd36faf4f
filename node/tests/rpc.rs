//! JSON-RPC, status and metrics of a running node: what a client sees, including the errors
//! that say what is wrong with a request.
#![cfg(feature = "production")]

mod common;

use std::time::Duration;

use canon_engine::app::ledger::{Payload, Transaction};
use canon_node::client::ClientError;
use canon_node::devnet::{Devnet, Ports};
use canon_node::genesis::dev_account_key;
use canon_node::rpc::{INVALID_PARAMS, TX_REJECTED};
use common::*;
use serde_json::json;

const PORT_OFFSET: u16 = 21_300;

fn rpc_code(e: ClientError) -> (i64, String) {
    match e {
        ClientError::Rpc { code, message } => (code, message),
        other => panic!("expected a JSON-RPC error, got {other}"),
    }
}

#[test]
fn rpc_status_and_metrics_of_a_single_node_chain() {
    let dir = scratch("rpc");
    let net = Devnet::start(exe(), 1, dir.path(), PORT_OFFSET).expect("devnet starts");
    wait_for("the dev chain to lead", Duration::from_secs(20), || {
        agreed_leader(&net)
    });
    let c = &net.clients[0];

    // A transfer goes in, is canonized, and shows up in a block with its hash.
    let key = dev_account_key(0);
    let to = dev_account_key(1).address();
    let tx = Transaction {
        sender: key.address(),
        nonce: 0,
        payload: Payload::Transfer { to, amount: 5 },
    }
    .sign(&key)
    .expect("sign");
    let hash = c.send_transaction(&tx).expect("accepted");
    let (_, nonce, height) = wait_for("canonization", Duration::from_secs(10), || {
        c.account(&key.address()).ok().filter(|(_, n, _)| *n == 1)
    });
    assert_eq!(nonce, 1);
    let found = (1..=height).find_map(|h| {
        let b = c.block(h).ok()??;
        b["transactions"]
            .as_array()?
            .iter()
            .any(|t| t["hash"] == json!(hash))
            .then_some(b)
    });
    let block = found.expect("the transaction is in a block");
    for field in [
        "number",
        "hash",
        "parentHash",
        "stateRoot",
        "proposer",
        "term",
        "transactions",
    ] {
        assert!(
            block.get(field).is_some(),
            "block JSON lacks {field}: {block}"
        );
    }
    let n = block["number"].as_u64().expect("number");
    let parent = c.block(n - 1).expect("rpc");
    if n > 1 {
        assert_eq!(parent.expect("parent")["hash"], block["parentHash"]);
    }
    assert!(c.block_number().expect("blockNumber") >= n);
    assert!(
        c.block(10_000_000).expect("rpc").is_none(),
        "above the head is null"
    );
    let latest = c
        .call("canon_getBlockByNumber", json!(["latest"]))
        .expect("latest");
    assert!(latest["number"].as_u64().is_some());
    let genesis = c.block(0).expect("rpc").expect("genesis");
    assert_eq!(genesis["number"], json!(0));

    // Bad requests say what is wrong.
    let (code, msg) = rpc_code(
        c.call("canon_sendTransaction", json!(["0xzz"]))
            .unwrap_err(),
    );
    assert_eq!(code, INVALID_PARAMS as i64);
    assert!(msg.contains("hex"), "{msg}");
    let (code, msg) = rpc_code(
        c.call("canon_sendTransaction", json!(["0x0102"]))
            .unwrap_err(),
    );
    assert_eq!(code, INVALID_PARAMS as i64);
    assert!(msg.contains("decode"), "{msg}");
    let mut forged = tx.clone();
    forged.tx.nonce = 1;
    let (code, msg) = rpc_code(c.send_transaction(&forged).unwrap_err());
    assert_eq!(code, TX_REJECTED as i64);
    assert!(msg.contains("signature"), "{msg}");
    let (code, msg) = rpc_code(c.send_transaction(&tx).unwrap_err());
    assert_eq!(code, TX_REJECTED as i64);
    assert!(msg.contains("nonce"), "{msg}");
    let (code, msg) = rpc_code(
        c.call("canon_getBlockByNumber", json!([{"x": 1}]))
            .unwrap_err(),
    );
    assert_eq!(code, INVALID_PARAMS as i64);
    assert!(msg.contains("height"), "{msg}");
    let (code, _) = rpc_code(c.call("canon_noSuchMethod", json!([])).unwrap_err());
    assert_eq!(code, -32601);

    // Many transactions in one call: each entry answers for its own transaction, in order.
    let next = |nonce| {
        Transaction {
            sender: key.address(),
            nonce,
            payload: Payload::Transfer { to, amount: 1 },
        }
        .sign(&key)
        .expect("sign")
    };
    let mut forged_in_batch = next(3);
    forged_in_batch.tx.payload = Payload::Transfer { to, amount: 2 };
    let batch = [next(1), next(2), forged_in_batch, next(1)];
    let entries = c.send_transactions(&batch).expect("canon_sendTransactions");
    assert!(entries[0].is_ok() && entries[1].is_ok(), "{entries:?}");
    let signature = |i: usize| match &entries[i] {
        Err(ClientError::Rpc { code, message }) => (*code, message.clone()),
        other => panic!("entry {i}: {other:?}"),
    };
    let (code, msg) = signature(2);
    assert!(
        code == TX_REJECTED as i64 && msg.contains("signature"),
        "{msg}"
    );
    let (code, msg) = signature(3);
    assert!(
        code == TX_REJECTED as i64 && msg.contains("pending"),
        "{msg}"
    );
    wait_for("the batch's canonization", Duration::from_secs(10), || {
        c.account(&key.address()).ok().filter(|(_, n, _)| *n == 3)
    });
    let mixed = c
        .call("canon_sendTransactions", json!([["0xzz", "0x0102"]]))
        .expect("undecodable entries fail alone");
    assert!(
        mixed[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("hex"),
        "{mixed}"
    );
    assert!(
        mixed[1]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("decode"),
        "{mixed}"
    );
    let (code, msg) = rpc_code(
        c.call("canon_sendTransactions", json!(["0x00"]))
            .unwrap_err(),
    );
    assert_eq!(code, INVALID_PARAMS as i64);
    assert!(msg.contains("expected"), "{msg}");

    // A JSON-RPC batch: several calls in one request, answered by id.
    let answers = c
        .call_batch(&[
            ("canon_blockNumber", json!([])),
            ("canon_getAccount", json!([key.address()])),
            ("canon_noSuchMethod", json!([])),
        ])
        .expect("batch");
    assert!(answers[0].as_ref().unwrap().as_u64().unwrap() >= n);
    assert_eq!(answers[1].as_ref().unwrap()["nonce"], json!(3));
    assert!(matches!(
        answers[2],
        Err(ClientError::Rpc { code: -32601, .. })
    ));

    // Status and metrics.
    let s = c.status().expect("status");
    assert!(s.is_leader && s.role == canon_node::http::NodeKind::Main && s.batcher_enabled);
    assert!(s.last_canonized_height >= s.last_applied_height.min(n));
    let status_rpc = c.call("canon_status", json!([])).expect("canon_status");
    assert_eq!(status_rpc["node_id"], json!(s.node_id));
    let metrics_url = format!(
        "http://127.0.0.1:{}/metrics",
        Ports::of(0, PORT_OFFSET).prometheus
    );
    let text = ureq::get(&metrics_url)
        .call()
        .expect("metrics")
        .body_mut()
        .read_to_string()
        .expect("body");
    for name in [
        "canon_canonized_height",
        "canon_term",
        "canon_leader_changes_total",
        "canon_blocks_proposed_total",
        "canon_proposals_dropped_total",
        "canon_block_apply_latency_seconds_bucket",
        "canon_connected_peers",
        "canon_raft_voters",
        "canon_raft_learners",
        "canon_mempool_size",
        "canon_batch_submit_failures_total",
        "canon_batch_reverts_total",
        "canon_l1_errors_total",
        "canon_batcher_active",
        "canon_batcher_epoch",
        "canon_batcher_claims_total",
        "canon_batcher_superseded_total",
    ] {
        assert!(text.contains(name), "/metrics lacks {name}");
    }
}

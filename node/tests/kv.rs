//! The key-value application on a real 3-node cluster: writes through any node answer once
//! applied, linearizable reads from any node see them, compare-and-set and range reads say
//! what they did, clients without the token are refused, and `canon-node load --app kv`'s
//! generator gets every put applied.
#![cfg(feature = "production")]

mod common;

use std::time::Duration;

use canon_node::client::{ClientError, NodeClient};
use canon_node::client_auth::ClientToken;
use canon_node::devnet::{kv_env, Devnet};
use canon_node::genesis::Application;
use canon_node::load::{self, LoadConfig, Pace};
use canon_node::rpc::{INVALID_PARAMS, UNAUTHORIZED};
use common::*;
use serde_json::{json, Value};

const PORT_OFFSET: u16 = 24_000;

fn rpc_code(r: Result<Value, ClientError>) -> (i64, String) {
    match r {
        Err(ClientError::Rpc { code, message }) => (code, message),
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
}

fn hex(s: &str) -> String {
    format!("0x{}", ::hex::encode(s))
}

#[test]
fn a_key_value_cluster_serves_authenticated_linearizable_clients() {
    let dir = scratch("kv");
    let env = kv_env(dir.path()).expect("client token");
    let mut net = Devnet::start_with(exe(), 3, 0, dir.path(), PORT_OFFSET, env).expect("devnet");
    let leader = wait_for("a leader", Duration::from_secs(30), || agreed_leader(&net));
    let (f1, f2) = match leader {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    };
    let c = |i: usize| &net.clients[i];
    assert_eq!(c(0).status().unwrap().application, "kv");

    // Strangers are refused, with the fix in the message.
    let stranger = NodeClient::new(
        c(0).rpc_url.trim_start_matches("http://"),
        "127.0.0.1:1",
        Duration::from_secs(5),
    );
    let (code, msg) = rpc_code(stranger.call("kv_get", json!([hex("a")])));
    assert_eq!(code, i64::from(UNAUTHORIZED));
    assert!(msg.contains("Authorization: Bearer"), "{msg}");
    let wrong = stranger.with_token(Some(ClientToken::new("0123456789abcdef0123").unwrap()));
    let (code, _) = rpc_code(wrong.call("kv_put", json!([hex("a"), hex("1")])));
    assert_eq!(code, i64::from(UNAUTHORIZED));

    // A write through a follower answers once applied there; a linearizable read at the other
    // follower sees it at once.
    let put = c(f1)
        .call("kv_put", json!([hex("greeting"), hex("hello")]))
        .expect("put");
    assert!(put["height"].as_u64().unwrap() >= 1, "{put}");
    let got = c(f2).call("kv_get", json!([hex("greeting")])).expect("get");
    assert_eq!(got["value"], json!(hex("hello")), "{got}");
    assert!(
        got["height"].as_u64() >= put["height"].as_u64(),
        "{got} {put}"
    );

    // Compare-and-set says whether it swapped; a local read catches up.
    let miss = c(leader)
        .call(
            "kv_compareAndSet",
            json!([hex("greeting"), hex("bye"), hex("x")]),
        )
        .expect("cas");
    assert_eq!(miss["swapped"], json!(false), "{miss}");
    let hit = c(f2)
        .call(
            "kv_compareAndSet",
            json!([hex("greeting"), hex("hello"), hex("bye")]),
        )
        .expect("cas");
    assert_eq!(hit["swapped"], json!(true), "{hit}");
    wait_for("a local read to catch up", Duration::from_secs(10), || {
        let v = c(f1)
            .call("kv_get", json!([hex("greeting"), "local"]))
            .ok()?;
        (v["value"] == json!(hex("bye"))).then_some(())
    });

    // Range reads in key order, with a limit and a "more" flag; delete says if it existed.
    for (k, v) in [("r/b", "2"), ("r/a", "1"), ("r/c", "3")] {
        c(f1).call("kv_put", json!([hex(k), hex(v)])).expect("put");
    }
    let page = c(f2)
        .call("kv_range", json!([hex("r/"), hex("r0"), 2]))
        .expect("range");
    assert_eq!(
        page["pairs"],
        json!([{"key": hex("r/a"), "value": hex("1")}, {"key": hex("r/b"), "value": hex("2")}])
    );
    assert_eq!(page["more"], json!(true));
    let gone = c(leader)
        .call("kv_delete", json!([hex("r/a")]))
        .expect("delete");
    assert_eq!(gone["existed"], json!(true));
    let again = c(leader)
        .call("kv_delete", json!([hex("r/a")]))
        .expect("delete");
    assert_eq!(again["existed"], json!(false));

    // Bad input is named; the ledger's calls say what this chain runs.
    let (code, msg) = rpc_code(c(0).call("kv_get", json!(["0xzz"])));
    assert_eq!(code, i64::from(INVALID_PARAMS));
    assert!(msg.contains("key"), "{msg}");
    let (code, msg) = rpc_code(c(0).call("kv_range", json!([hex("a"), null, 0])));
    assert_eq!(code, i64::from(INVALID_PARAMS));
    assert!(msg.contains("limit"), "{msg}");
    let (code, msg) = rpc_code(c(0).call(
        "canon_getAccount",
        json!(["0x0000000000000000000000000000000000000001"]),
    ));
    assert_eq!(code, i64::from(INVALID_PARAMS));
    assert!(msg.contains("runs kv"), "{msg}");

    // The load generator's puts all apply, each key holding its last put.
    let rpc: Vec<String> = net
        .clients
        .iter()
        .map(|c| c.rpc_url.trim_start_matches("http://").to_string())
        .collect();
    let cfg = LoadConfig {
        rpc,
        accounts: 1,
        duration_secs: 60,
        pace: Pace::Window(600),
        batch: 100,
        max_txs: 2_000,
        senders: 2,
        progress: false,
        app: Application::Kv,
        token: net.token.clone(),
        kv_keys: 50,
        kv_value_bytes: 16,
    };
    let r = load::run(&cfg).expect("kv load runs");
    assert_eq!(r.canonized_in_run, 2_000, "{r}");
    assert!(r.ran_out_after_secs.is_some(), "{r}");
    assert!(r.rejections.is_empty(), "{r}");
    let all = c(leader)
        .call("kv_range", json!(["0x", null, 10_000]))
        .expect("range");
    let load_keys = all["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["key"].as_str().unwrap().starts_with("0x00000000000000"))
        .count();
    assert_eq!(load_keys, 50, "{all}");
    // Key 7 holds one of its own puts (numbers 7, 57, ..., 1,957; batches race, so which one
    // came last is the cluster's order): its value repeats that number.
    let last = c(f1)
        .call(
            "kv_get",
            json!([format!("0x{}", ::hex::encode(7u64.to_be_bytes()))]),
        )
        .expect("get");
    let value = ::hex::decode(last["value"].as_str().unwrap().trim_start_matches("0x")).unwrap();
    let n = u64::from_be_bytes(value[..8].try_into().unwrap());
    assert_eq!(value[8..], value[..8], "{last}");
    assert!(n % 50 == 7 && n < 2_000, "key 7 holds put {n}");
    net.stop_all();
}

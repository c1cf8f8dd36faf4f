//! A node started with a bad config exits non-zero with a message naming the key, before it
//! touches a database or a port.
#![cfg(feature = "production")]

mod common;

use std::process::Command;

use common::*;

const SEED_KEY_1: &str = "0af6153646bbf600f55ce455e1995283542b1ae25ce2622ce1fda443927c5308";
const SEED_PEER_2: &str = "0xd2db8005d59694a5b79b7c58d4d375c60c9323837e852bbbfd05819621c48a4218cefa37baf39a164e2a6f6c1b34c379c4a72c7480b5fbcc379d1befb881e8fc";

fn run_with(env: &[(&str, &str)]) -> (i32, String) {
    let dir = scratch("bad-config");
    let out = Command::new(exe())
        .current_dir(dir.path())
        .env("GENERAL_ROCKS_DB_PATH", dir.path().join("db"))
        .envs(env.iter().copied())
        .output()
        .expect("run canon-node");
    assert!(
        !dir.path().join("db").exists(),
        "a bad config must not create the database"
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn missing_secret_key() {
    let (code, err) = run_with(&[("NETWORK_SECRET_KEY", "")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("network_secret_key"), "{err}");
}

#[test]
fn bad_hex_in_peer_ids() {
    let (code, err) = run_with(&[
        ("NETWORK_SECRET_KEY", SEED_KEY_1),
        ("CONSENSUS_PEER_IDS__JSON", r#"["0xnothex"]"#),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("consensus_peer_ids"), "{err}");
}

#[test]
fn no_block_in_flight() {
    let (code, err) = run_with(&[
        ("NETWORK_SECRET_KEY", SEED_KEY_1),
        ("SEQUENCER_MAX_BLOCKS_IN_FLIGHT", "0"),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("sequencer_max_blocks_in_flight") && err.contains("at least 1"),
        "{err}"
    );
}

#[test]
fn no_snapshot_interval() {
    let (code, err) = run_with(&[
        ("NETWORK_SECRET_KEY", SEED_KEY_1),
        ("CONSENSUS_SNAPSHOT_INTERVAL_ENTRIES", "0"),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("consensus_snapshot_interval_entries") && err.contains("at least 1"),
        "{err}"
    );
}

#[test]
fn local_id_not_in_peers() {
    let peers = format!(r#"["{SEED_PEER_2}"]"#);
    let (code, err) = run_with(&[
        ("NETWORK_SECRET_KEY", SEED_KEY_1),
        ("CONSENSUS_PEER_IDS__JSON", &peers),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("consensus_peer_ids") && err.contains("derived from network_secret_key"),
        "{err}"
    );
}

#[test]
fn bad_timeouts_and_addresses() {
    let (code, err) = run_with(&[
        ("CONSENSUS_ELECTION_TIMEOUT_MIN", "900"),
        ("CONSENSUS_ELECTION_TIMEOUT_MAX", "800"),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("consensus_election_timeout_min"), "{err}");
    let (code, err) = run_with(&[("RPC_ADDRESS", "localhost")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("rpc_address"), "{err}");
}

#[test]
fn port_in_use_names_the_setting() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let (code, err) = run_with(&[("NETWORK_ADDRESS", "127.0.0.1"), ("NETWORK_PORT", &port)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("network_port"), "{err}");
}

const VALIDATOR_KEY: &str = "7e5bb4b5d9e2c2a0d3ff7b8a47fa8e8b8f0b3e1b1c1d1e1f2021222324252627";

#[test]
fn single_sequencer_mode_names_its_keys() {
    // A level that does not parse.
    let (code, err) = run_with(&[
        ("CONSENSUS_ENABLED", "false"),
        ("VALIDATOR_SECRET_KEY", VALIDATOR_KEY),
        ("REDUNDANCY_LEVEL", "one"),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("REDUNDANCY_LEVEL") && err.contains("\"one\""),
        "{err}"
    );
    // No signing identity.
    let (code, err) = run_with(&[("CONSENSUS_ENABLED", "false"), ("REDUNDANCY_LEVEL", "1")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("validator_secret_key"), "{err}");
    // A key that is not one.
    let (code, err) = run_with(&[
        ("CONSENSUS_ENABLED", "false"),
        ("VALIDATOR_SECRET_KEY", "0x1234"),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("validator_secret_key"), "{err}");
    // A level on a Raft node.
    let (code, err) = run_with(&[("REDUNDANCY_LEVEL", "2")]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("redundancy_level") && err.contains("consensus_enabled"),
        "{err}"
    );
    // A prefs.toml whose level is no number.
    let dir = scratch("bad-prefs");
    let prefs = dir.path().join("prefs.toml");
    std::fs::write(&prefs, "[Preferences]\nRedundancyLevel = \"high\"\n").expect("write");
    let out = Command::new(exe())
        .current_dir(dir.path())
        .env("GENERAL_ROCKS_DB_PATH", dir.path().join("db"))
        .env("CONSENSUS_ENABLED", "false")
        .env("VALIDATOR_SECRET_KEY", VALIDATOR_KEY)
        .arg("--prefs")
        .arg(&prefs)
        .output()
        .expect("run canon-node");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("RedundancyLevel"), "{err}");
    assert!(!dir.path().join("db").exists());
}

#[test]
fn a_key_value_chain_without_a_client_token() {
    let (code, err) = run_with(&[("NETWORK_SECRET_KEY", SEED_KEY_1), ("APPLICATION", "kv")]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("rpc_auth_token_file") && err.contains("chmod 600"),
        "{err}"
    );
}

#[test]
fn an_unknown_application() {
    let (code, err) = run_with(&[("NETWORK_SECRET_KEY", SEED_KEY_1), ("APPLICATION", "etcd")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("application") && err.contains("etcd"), "{err}");
}

//! An external node (general_node_role=external) follows a real 3-node cluster through a
//! `kill -9` of the leader, serves the same chain, forwards transactions, and reports its
//! sources and lag in /status.
#![cfg(feature = "production")]

mod common;

use std::time::Duration;

use canon_engine::app::ledger::{Payload, Transaction};
use canon_node::devnet::Devnet;
use canon_node::genesis::dev_account_key;
use common::*;

const PORT_OFFSET: u16 = 21_500;

#[test]
fn external_node_follows_the_cluster_through_a_leader_kill() {
    let dir = scratch("external");
    let mut net =
        Devnet::start_with(exe(), 3, 1, dir.path(), PORT_OFFSET, Vec::new()).expect("devnet");
    let x = 3;
    let leader = wait_for("a leader", Duration::from_secs(30), || agreed_leader(&net));
    wait_for(
        "the external node to replay",
        Duration::from_secs(30),
        || height(&net, x).filter(|h| *h >= 5),
    );

    // A transaction sent to the external node reaches the chain through a consensus node.
    let key = dev_account_key(7);
    let tx = Transaction {
        sender: key.address(),
        nonce: 0,
        payload: Payload::Transfer {
            to: dev_account_key(8).address(),
            amount: 3,
        },
    }
    .sign(&key)
    .expect("sign");
    let hash = net.clients[x].send_transaction(&tx).expect("forwarded");
    wait_for(
        "the forwarded transaction on the external chain",
        Duration::from_secs(20),
        || {
            net.clients[x]
                .account(&key.address())
                .ok()
                .filter(|(_, nonce, _)| *nonce == 1)
        },
    );
    assert!(hash.starts_with("0x"));

    net.kill(leader);
    let new_leader = wait_for("a new leader", Duration::from_secs(20), || {
        agreed_leader(&net).filter(|l| *l != leader)
    });
    let target = wait_for("the new leader's blocks", Duration::from_secs(20), || {
        let h = height(&net, new_leader)?;
        (h >= 3).then_some(h + 5)
    });
    wait_for(
        "the external node past the failover",
        Duration::from_secs(30),
        || height(&net, x).filter(|h| *h >= target),
    );
    let s = status(&net, x).expect("external status");
    assert_eq!(s.role, canon_node::http::NodeKind::External);
    assert!(!s.is_leader);
    let sources = s.sources.expect("an external node lists its sources");
    assert_eq!(sources.len(), 3);
    assert!(sources.iter().all(|src| src.rejected.is_none()));
    assert!(s.lag.is_some());

    net.start_node(leader).expect("restart");
    let top = wait_for("all four at one height", Duration::from_secs(30), || {
        let h = height(&net, new_leader)?;
        (0..net.size())
            .all(|i| height(&net, i).is_some_and(|x| x >= h))
            .then_some(h)
    });
    let checked = assert_same_chain(&net);
    assert!(checked >= top);
    light_proofs(&net, x, top);
    net.stop_all();
}

/// Every block up to `top` checks out by its certificate from the external node's RPC (it
/// passes on the certificates it applied with) and from a consensus node's, trusting only the
/// peer ids and the chain id; with another chain id or a minority's ids it does not. And the
/// command a user runs says so.
fn light_proofs(net: &Devnet, x: usize, top: u64) {
    use canon_node::verify_block::{verify_block, VerifyError};
    let peers: Vec<canon_engine::NodeId> = (0..3)
        .map(|i| canon_node::devnet::node_key(i).node_id())
        .collect();
    let chain = canon_node::genesis::DEV_CHAIN_ID;
    for height in 1..=top {
        for node in [x, 0] {
            let v = verify_block(&net.clients[node], height, chain, &peers)
                .unwrap_or_else(|e| panic!("block {height} from node {node}: {e}"));
            assert!(v.signers.len() >= 2, "block {height}: {v:?}");
        }
    }
    assert!(matches!(
        verify_block(&net.clients[x], top, chain + 1, &peers),
        Err(VerifyError::Certificate { .. })
    ));
    assert!(matches!(
        verify_block(&net.clients[x], top, chain, &peers[..1]),
        Err(VerifyError::Certificate { .. })
    ));
    let rpc = net.clients[x]
        .rpc_url
        .trim_start_matches("http://")
        .to_string();
    let mut cmd = std::process::Command::new(exe());
    cmd.args([
        "verify-block",
        &top.to_string(),
        "--rpc",
        &rpc,
        "--chain-id",
        &chain.to_string(),
    ]);
    for p in &peers {
        cmd.args(["--peer-id", &p.to_string()]);
    }
    let out = cmd.output().expect("run verify-block");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&format!("block {top} ")), "{stdout}");
    assert!(
        stdout.contains("consensus peers (a majority is 2)"),
        "{stdout}"
    );
}

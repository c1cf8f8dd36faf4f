//! Replacing a machine on real processes, as the README's operator section says: a follower
//! dies for good; a fresh node starts with `consensus_bootstrap: false`; through the leader's
//! admin interface (`canon-node admin`) it is added as a learner, promoted once caught up, and
//! the dead one removed, while blocks flow and node 0's batcher commits to a real anvil. L1's
//! attester set must follow: the batch ending at the block that declares the new voters hands
//! it over, and the new set attests the batches after it. Then one of the old nodes stops too,
//! and the two left (the new one among them) must still canonize: the new node votes.
#![cfg(feature = "production")]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use canon_engine::settlement::batch::attester_addresses;
use canon_node::client::NodeClient;
use canon_node::devnet::{node_env, node_key, Devnet, Ports};
use canon_node::http::StatusView;
use common::*;

/// Ports of this test: the seed's moved up by this much (the others use 22_000-22_330).
const PORT_OFFSET: u16 = 22_600;

fn admin_url(i: usize) -> String {
    format!("http://127.0.0.1:{}", Ports::of(i, PORT_OFFSET).admin)
}

/// Runs `canon-node admin <args>` against node `i`; its standard output, or its error.
fn admin(i: usize, token: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(exe())
        .arg("admin")
        .args(args)
        .args(["--url", &admin_url(i), "--token-file"])
        .arg(token)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Asks every node in `nodes` in turn until one (the leader) makes the change.
fn change(nodes: &[usize], token: &Path, args: &[&str], what: &str) -> String {
    let mut last = String::new();
    wait_for(what, Duration::from_secs(60), || {
        for &i in nodes {
            match admin(i, token, args) {
                Ok(out) => return Some(out),
                Err(e) => last = e,
            }
        }
        eprintln!("{what}: not yet: {last}");
        std::thread::sleep(Duration::from_millis(400));
        None
    })
}

fn client(i: usize) -> NodeClient {
    let p = Ports::of(i, PORT_OFFSET);
    NodeClient::new(
        &format!("127.0.0.1:{}", p.rpc),
        &format!("127.0.0.1:{}", p.status),
        Duration::from_millis(800),
    )
}

fn status_of(i: usize) -> Option<StatusView> {
    client(i).status().ok()
}

/// The fresh node: node 3's key and ports, the genesis members' ids and addresses, and no
/// bootstrap: it waits to be added.
fn start_fresh(dir: &Path, token: &Path) -> Child {
    let mut env = node_env(3, 3, PORT_OFFSET, dir, 0);
    for (k, v) in env.iter_mut() {
        if k == "CONSENSUS_BOOTSTRAP" || k == "BATCHER_ENABLED" || k == "PROVER_API_ENABLED" {
            *v = "false".into();
        }
    }
    let log = std::fs::File::create(dir.join("node-3.log")).expect("log");
    Command::new(exe())
        .envs(env)
        .env("ADMIN_TOKEN_FILE", token)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("node 3 starts")
}

#[test]
fn a_dead_node_is_replaced_while_blocks_flow() {
    let dir = scratch("membership");
    let token = dir.path().join("admin-token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").expect("token");
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let rt = tokio::runtime::Runtime::new().expect("tokio");
    let (anvil, l1, settlement) = anvil_with_settlement(&rt);
    let env = vec![
        ("ADMIN_TOKEN_FILE".to_string(), token.display().to_string()),
        ("GENERAL_L1_RPC_URL".to_string(), anvil.url.clone()),
        ("L1_SETTLEMENT_ADDRESS".to_string(), settlement.to_string()),
    ];
    let mut net =
        Devnet::start_with(exe(), 3, 0, dir.path(), PORT_OFFSET, env).expect("devnet starts");
    let leader = wait_for("a leader", Duration::from_secs(30), || agreed_leader(&net));
    wait_for("blocks", Duration::from_secs(20), || {
        height(&net, leader).filter(|h| *h >= 5)
    });
    // A wrong token is refused, naming what to present.
    let wrong = dir.path().join("wrong-token");
    std::fs::write(&wrong, "fedcba9876543210fedcba9876543210").expect("token");
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let refused = admin(leader, &wrong, &["members"]).expect_err("a wrong token is refused");
    assert!(refused.contains("Bearer"), "{refused}");

    // A follower that is not node 0 (the batcher) dies for good.
    let dead = (1..3).find(|i| *i != leader).expect("a follower");
    net.kill(dead);
    let mut fresh = start_fresh(dir.path(), &token);
    let fresh_id = node_key(3).node_id();
    let dead_id = node_key(dead).node_id();
    let enode = format!(
        "enode://{}@127.0.0.1:{}",
        fresh_id.to_string().trim_start_matches("0x"),
        Ports::of(3, PORT_OFFSET).p2p
    );
    let alive: Vec<usize> = (0..3).filter(|i| *i != dead).collect();
    change(&alive, &token, &["add-learner", &enode], "add-learner");
    // Refused until it has caught up; asked again until then.
    change(
        &alive,
        &token,
        &["promote", &fresh_id.to_string()],
        "promote",
    );
    let after = change(&alive, &token, &["remove", &dead_id.to_string()], "remove");
    eprintln!("membership after the replacement:\n{after}");
    let members: canon_engine::consensus::status::MembershipStatus =
        serde_json::from_str(&after).expect("members as JSON");
    let mut want: Vec<_> = [0, 1, 2, 3]
        .into_iter()
        .filter(|i| *i != dead)
        .map(|i| node_key(i).node_id())
        .collect();
    want.sort();
    let mut voters = members.voters.clone();
    voters.sort();
    assert_eq!(voters, want, "{members:?}");
    assert!(members.learners.is_empty() && members.changing_to.is_none());

    // The new node follows: it holds the leader's chain, and its /status shows the membership.
    let target = wait_for("the chain grows", Duration::from_secs(20), || {
        height(&net, leader).filter(|h| *h >= 20)
    });
    let s3 = wait_for("node 3 catches up", Duration::from_secs(30), || {
        status_of(3).filter(|s| s.last_applied_height >= target)
    });
    let m3 = s3.membership.expect("node 3's membership");
    assert_eq!(m3.voters.len(), 3, "{m3:?}");
    for h in [1, target / 2, target] {
        let a = net.clients[leader].block(h).expect("block").expect("held");
        let b = client(3).block(h).expect("block").expect("held");
        assert_eq!(a["hash"], b["hash"], "height {h}");
    }

    // L1 follows: it holds the new voters as its attesters, and they attest what comes next.
    let l1_set = |rt: &tokio::runtime::Runtime| {
        let mut set = rt.block_on(l1.validator_set(settlement)).ok()?;
        set.sort();
        Some(set)
    };
    wait_for(
        "L1's attesters follow the voters",
        Duration::from_secs(60),
        || l1_set(&rt).filter(|set| *set == attester_addresses(&want)),
    );
    let handed_over = rt
        .block_on(l1.head(settlement))
        .expect("L1 head")
        .batch_number;
    wait_for(
        "batches attested by the new set",
        Duration::from_secs(60),
        || {
            rt.block_on(l1.head(settlement))
                .ok()
                .filter(|h| h.batch_number >= handed_over + 2)
        },
    );
    eprintln!("L1 handed over to the new voters by batch {handed_over}");

    // One of the two old nodes stops: the other and the new one are a majority, and only if
    // the new one votes and acknowledges do blocks go on.
    let stop = alive[0];
    net.kill(stop);
    let other = alive[1];
    let before = wait_for("a height", Duration::from_secs(5), || {
        status_of(other).map(|s| s.last_applied_height)
    });
    wait_for(
        "blocks with the new node in the majority",
        Duration::from_secs(30),
        || status_of(3).filter(|s| s.last_applied_height >= before + 10),
    );
    let _ = fresh.kill();
    let _ = fresh.wait();
    net.stop_all();
    drop(anvil);
}

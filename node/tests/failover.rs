//! The seed's failover check on real processes: three nodes with the seed's keys and env names,
//! `kill -9` the leader, another leads within the bound and the head advances; the killed node
//! restarts, rejoins as follower and catches up; every node has the same hash at every height.
#![cfg(feature = "production")]

mod common;

use std::time::{Duration, Instant};

use canon_node::devnet::{node_env, Devnet};
use common::*;

/// Ports of this test: the seed's (3050/3060/3071/3312 + i) moved up by this much.
const PORT_OFFSET: u16 = 21_000;
/// The seed leaves the election timeout at the default (500-1000 ms); the sim's bound is the
/// same eight maximum timeouts.
const FAILOVER_BOUND: Duration = Duration::from_millis(8 * 1_000);

#[test]
fn devnet_env_is_the_seed_example() {
    let dir = std::path::Path::new("/x");
    let env: Vec<_> = node_env(1, 3, 0, dir, 0);
    let get = |k: &str| {
        env.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{k} not set"))
    };
    assert_eq!(
        get("NETWORK_SECRET_KEY"),
        "c2c8042b03801e2e14b395ed24f970ead7646a9ff315b54f747bcefdb99afda7"
    );
    assert_eq!(get("NETWORK_PORT"), "3061");
    assert_eq!(
        get("NETWORK_BOOT_NODES"),
        "enode://246e07030b4c48b8f28ab1fdf797a02308b0ca724696b695aabee48ea48298ff221144a0c0f14ebf030aea6d5fb6b31bd3a02676204bb13e78336bb824e32f1d@127.0.0.1:3060,\
enode://d2db8005d59694a5b79b7c58d4d375c60c9323837e852bbbfd05819621c48a4218cefa37baf39a164e2a6f6c1b34c379c4a72c7480b5fbcc379d1befb881e8fc@127.0.0.1:3061,\
enode://2991880ae3ff81b881c86f54d2af0ee85a325231bb75f903f06f432020101614dbfbc75ddec885f5e101fed272bee661f492fb6dd80147b656da990635a7e581@127.0.0.1:3062"
    );
    let peers: Vec<String> =
        serde_json::from_str(&get("CONSENSUS_PEER_IDS__JSON")).expect("peer ids are JSON");
    assert_eq!(peers.len(), 3);
    assert!(peers[2].starts_with("0x2991880ae3ff81b8"));
    assert_eq!(get("CONSENSUS_BOOTSTRAP"), "true");
    assert_eq!(get("BATCHER_ENABLED"), "false");
    assert_eq!(get("STATUS_SERVER_ADDRESS"), "127.0.0.1:3072");
    assert_eq!(get("RPC_ADDRESS"), "127.0.0.1:3051");
    assert_eq!(get("OBSERVABILITY_PROMETHEUS_PORT"), "3313");
}

#[test]
fn seed_failover_with_kill_9() {
    let dir = scratch("failover");
    let mut net = Devnet::start(exe(), 3, dir.path(), PORT_OFFSET).expect("devnet starts");
    let leader = wait_for(
        "a leader all nodes agree on",
        Duration::from_secs(30),
        || agreed_leader(&net),
    );
    wait_for("blocks", Duration::from_secs(20), || {
        height(&net, leader).filter(|h| *h >= 3)
    });
    let before = height(&net, leader).unwrap_or(0);

    net.kill(leader);
    let killed_at = Instant::now();
    let new_leader = wait_for(
        "a new leader",
        FAILOVER_BOUND + Duration::from_secs(5),
        || agreed_leader(&net).filter(|l| *l != leader),
    );
    wait_for("the head to advance", FAILOVER_BOUND, || {
        height(&net, new_leader).filter(|h| *h > before)
    });
    let failover = killed_at.elapsed();
    eprintln!(
        "failover: leader n{leader} killed, n{new_leader} leads and advanced in {failover:?}"
    );
    assert!(
        failover <= FAILOVER_BOUND,
        "failover took {failover:?}, bound {FAILOVER_BOUND:?}"
    );

    net.start_node(leader).expect("restart");
    let target = height(&net, new_leader).unwrap_or(0);
    wait_for(
        "the restarted node to follow and catch up",
        Duration::from_secs(30),
        || {
            let s = status(&net, leader)?;
            let ok = !s.is_leader
                && s.raft_state == canon_engine::consensus::status::RaftState::Follower
                && s.current_leader.and_then(|l| net.index_of(&l)) == Some(new_leader)
                && s.last_applied_height >= target;
            ok.then_some(())
        },
    );
    let checked = assert_same_chain(&net);
    assert!(checked > before, "only {checked} heights compared");
    net.stop_all();
}

//! Log compaction on real processes with RocksDB: the leader snapshots and purges its log
//! while a follower is down; back, the follower installs the snapshot over the real p2p
//! transport, downloads the blocks below it, and serves the same chain as the others, while
//! every log stays bounded.
#![cfg(feature = "production")]

mod common;

use std::time::Duration;

use canon_node::devnet::Devnet;
use common::*;

const PORT_OFFSET: u16 = 21_400;
const SNAPSHOT_INTERVAL: u64 = 20;
const LOG_KEEP: u64 = 5;

fn log_entries(net: &Devnet, i: usize) -> Option<(u64, u64)> {
    let s = status(net, i)?;
    let log = s.log?;
    Some((log.entries, log.blocks_missing))
}

#[test]
fn a_follower_behind_the_purge_point_installs_a_snapshot_and_downloads_the_blocks() {
    let dir = scratch("compaction");
    let env = vec![
        ("SEQUENCER_BLOCK_TIME".to_string(), "50".to_string()),
        (
            "CONSENSUS_SNAPSHOT_INTERVAL_ENTRIES".to_string(),
            SNAPSHOT_INTERVAL.to_string(),
        ),
        (
            "CONSENSUS_LOG_KEEP_ENTRIES".to_string(),
            LOG_KEEP.to_string(),
        ),
    ];
    let mut net =
        Devnet::start_with(exe(), 3, 0, dir.path(), PORT_OFFSET, env).expect("devnet starts");
    let leader = wait_for("a leader", Duration::from_secs(30), || agreed_leader(&net));
    let follower = (leader + 1) % 3;
    wait_for("10 blocks", Duration::from_secs(30), || {
        (height(&net, follower)? >= 10).then_some(())
    });
    net.kill(follower);
    let down_at = height(&net, leader).expect("leader status");
    // Far more entries than the log keeps: the leader's log no longer reaches the follower's.
    wait_for(
        "the leader 8 snapshot intervals on",
        Duration::from_secs(60),
        || (height(&net, leader)? >= down_at + 8 * SNAPSHOT_INTERVAL).then_some(()),
    );
    let bound = SNAPSHOT_INTERVAL + LOG_KEEP + 32;
    let (entries, _) = log_entries(&net, leader).expect("leader log");
    assert!(
        entries <= bound,
        "the leader's log holds {entries} entries with a snapshot every {SNAPSHOT_INTERVAL}"
    );
    net.start_node(follower).expect("restart");
    let target = height(&net, leader).expect("leader status");
    wait_for(
        "the follower at the head, nothing missing",
        Duration::from_secs(60),
        || {
            let (_, missing) = log_entries(&net, follower)?;
            (height(&net, follower)? >= target && missing == 0).then_some(())
        },
    );
    // Every block, the downloaded ones included, as the others serve it.
    let to = assert_same_chain(&net);
    assert!(to >= target, "compared up to {to}, below {target}");
    let log = std::fs::read_to_string(net.log_path(follower)).expect("follower log");
    assert!(
        log.contains("installed the leader's snapshot") && log.contains("backfill done"),
        "the follower did not install a snapshot and backfill:\n{}",
        log.lines().rev().take(40).collect::<Vec<_>>().join("\n")
    );
    for i in 0..3 {
        let (entries, missing) = log_entries(&net, i).expect("log status");
        assert!(entries <= bound, "n{i}'s log holds {entries} entries");
        assert_eq!(missing, 0, "n{i}");
    }
}

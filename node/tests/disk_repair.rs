//! A byte flipped in a stored block on a real database file: `canon-node check-db` names the
//! record, the node's start-up scrub finds it and repairs from its peers (the block is below
//! its head, so it fetches that block's batch again, checked against the hash chain, and
//! keeps its Raft log and state), and afterwards the database checks clean and the node holds
//! the same chain as the others.
#![cfg(feature = "production")]

mod common;

use std::process::Command;
use std::time::Duration;

use canon_node::devnet::Devnet;
use common::*;

const PORT_OFFSET: u16 = 21_400;

/// `canon-node check-db <db>`: its exit code and what it printed.
fn check_db(db: &std::path::Path) -> (i32, String) {
    let out = Command::new(exe())
        .arg("check-db")
        .arg(db)
        .output()
        .expect("check-db runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Flips one byte inside the value of block `height` (not its checksum), writing it back
/// through RocksDB so RocksDB's own file checksums stay sound: only canon's catches it.
fn flip_a_byte_of_block(db: &std::path::Path, height: u64) {
    let names = [
        "log",
        "meta",
        "block",
        "state",
        "batch",
        "attestation",
        "certificate",
    ];
    let rocks = rocksdb::DB::open_cf(&rocksdb::Options::default(), db, names).expect("open");
    let cf = rocks.cf_handle("block").expect("block column");
    let key = height.to_be_bytes();
    let mut value = rocks.get_cf(cf, key).expect("read").expect("block stored");
    assert!(value.len() > 20, "a block record has a body");
    value[10] ^= 0x40;
    rocks.put_cf(cf, key, value).expect("write");
    rocks.flush_cf(cf).expect("flush");
}

#[test]
fn a_flipped_byte_in_a_stored_block_is_found_and_repaired_from_peers() {
    let dir = scratch("disk-repair");
    let mut net = Devnet::start(exe(), 3, dir.path(), PORT_OFFSET).expect("devnet starts");
    let leader = wait_for("a leader", Duration::from_secs(30), || agreed_leader(&net));
    wait_for("20 blocks", Duration::from_secs(60), || {
        height(&net, leader).filter(|h| *h >= 20)
    });
    let victim = (leader + 1) % net.size();
    let db = dir.path().join(format!("node-{victim}"));
    net.stop(victim, Duration::from_secs(10));
    assert_eq!(check_db(&db).0, 0, "a sound database checks clean");

    flip_a_byte_of_block(&db, 5);
    let (code, report) = check_db(&db);
    assert_eq!(code, 1, "check-db reports the damage: {report}");
    assert!(
        report.contains("block record at key 0x0000000000000005"),
        "{report}"
    );

    // The node starts, its scrub finds the block, and it fetches it again from its peers.
    net.start_node(victim).expect("restart");
    let log = dir.path().join(format!("node-{victim}.log"));
    wait_for("the repair in its log", Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&log).ok()?;
        text.contains("rotten blocks below the head: fetching them")
            .then_some(())
    });
    let target = height(&net, leader).expect("leader status") + 5;
    wait_for(
        "the repaired node at the head",
        Duration::from_secs(60),
        || height(&net, victim).filter(|h| *h >= target),
    );
    wait_for("its backfill done", Duration::from_secs(60), || {
        status(&net, victim).filter(|s| s.log.as_ref().is_some_and(|l| l.blocks_missing == 0))
    });
    assert_same_chain(&net);
    net.stop(victim, Duration::from_secs(10));
    let (code, report) = check_db(&db);
    assert_eq!(code, 0, "repaired, the database checks clean: {report}");
    net.stop_all();
}

//! The batcher on real processes against a real anvil: three consensus nodes registered in the
//! settlement contract. With the seed's single batcher (node 0), batches are sealed on every
//! node, attested, gathered and committed; L1's chain is contiguous and ends on the cluster's
//! state roots; `kill -9` of the batcher stops nothing but L1 progress, and on restart it
//! resumes from the contract's head with no gap and nothing twice. With a level-1 standby on
//! node 1: takeover after `kill -9`, the main taking the role back, and a frozen zombie.
#![cfg(feature = "production")]

mod common;

use std::time::Duration;

use canon_engine::consensus::status::BatchDuty;
use canon_engine::settlement::l1::L1Head;
use canon_node::devnet::{node_key, Devnet};
use canon_node::l1::{AnvilProcess, L1};
use common::*;

const PORT_OFFSET: u16 = 25_000;

/// A real anvil (0.25 s blocks) with the settlement contract registering three consensus
/// nodes, and a devnet of them pointed at it: node 0 the main batcher, nodes 1..=`standbys`
/// standby batchers. Fields drop in order: the nodes stop before anvil does.
struct WithL1 {
    net: Devnet,
    l1: L1,
    address: alloy_primitives::Address,
    rt: tokio::runtime::Runtime,
    _anvil: AnvilProcess,
    _dir: tempfile::TempDir,
}

impl WithL1 {
    fn start(tag: &str, offset: u16, standbys: usize, env: &[(&str, &str)]) -> WithL1 {
        let rt = tokio::runtime::Runtime::new().expect("tokio");
        let (anvil, l1, address) = anvil_with_settlement(&rt);
        let dir = scratch(tag);
        let mut all = vec![
            ("GENERAL_L1_RPC_URL".to_string(), anvil.url.clone()),
            ("L1_SETTLEMENT_ADDRESS".to_string(), address.to_string()),
        ];
        all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let net = Devnet::start_with_batchers(exe(), 3, standbys, 0, dir.path(), offset, all)
            .expect("devnet starts");
        WithL1 {
            net,
            l1,
            address,
            rt,
            _anvil: anvil,
            _dir: dir,
        }
    }

    fn head(&self) -> Option<L1Head> {
        self.rt.block_on(self.l1.head(self.address)).ok()
    }

    fn batcher(&self, i: usize) -> Option<canon_engine::consensus::status::BatchStatus> {
        status(&self.net, i).and_then(|s| s.batcher)
    }

    /// Once every node is past `head`, L1's state root is the chain's at its height.
    fn assert_root_is_the_chains(&self, head: &L1Head) {
        wait_for("every node past L1's head", Duration::from_secs(30), || {
            (0..3)
                .all(|i| height(&self.net, i).is_some_and(|h| h >= head.height))
                .then_some(())
        });
        let block = self.net.clients[1]
            .block(head.height)
            .expect("block")
            .expect("block at L1's height");
        assert_eq!(
            block["stateRoot"].as_str(),
            Some(head.state_root.to_string().as_str()),
            "L1's state root is the chain's at height {}",
            head.height
        );
    }
}

#[test]
fn a_cluster_commits_its_batches_to_anvil_and_the_batcher_resumes_after_kill_9() {
    // The seed's setup: one batcher, no standby.
    let mut c = WithL1::start(
        "batcher",
        PORT_OFFSET,
        0,
        &[("BATCHER_BLOCKS_PER_BATCH", "5")],
    );
    let first = wait_for("three batches on L1", Duration::from_secs(60), || {
        c.head().filter(|h| h.batch_number >= 3)
    });
    // 5 blocks per batch, contiguous from height 1.
    assert_eq!(first.height, first.batch_number * 5, "{first:?}");
    // The receipt reaches the batcher a moment after the block holds its batch.
    let b0 = wait_for(
        "n0's status to show batch 3",
        Duration::from_secs(10),
        || {
            c.batcher(0)
                .filter(|b| b.last_committed_l1.is_some_and(|n| n >= 3))
        },
    );
    assert_eq!(b0.role, BatchDuty::Batcher);
    assert_eq!(b0.epoch, 1);
    assert_eq!(b0.level, Some(0));
    assert!(b0.last_committed_l1.is_some_and(|b| b >= 3), "{b0:?}");
    assert!(
        b0.last_sealed >= 3 && b0.last_attested == b0.last_sealed,
        "{b0:?}"
    );
    let b1 = c.batcher(1).expect("n1 batcher status");
    assert_eq!(b1.role, BatchDuty::Attester);
    assert_eq!(b1.last_committed_l1, None);

    c.net.kill(0);
    let stalled = c.head().expect("head");
    std::thread::sleep(Duration::from_secs(3));
    let still = c.head().expect("head");
    assert_eq!(
        still.batch_number, stalled.batch_number,
        "nothing reaches L1 while the only batcher is down (the seed)"
    );
    wait_for(
        "blocks go on without the batcher",
        Duration::from_secs(30),
        || height(&c.net, 1).filter(|h| *h > still.height + 10),
    );
    c.net.start_node(0).expect("restart the batcher");
    let after = wait_for("L1 moves again", Duration::from_secs(60), || {
        c.head()
            .filter(|h| h.batch_number >= still.batch_number + 3)
    });
    assert_eq!(after.height, after.batch_number * 5, "{after:?}");
    c.assert_root_is_the_chains(&after);
    let log = std::fs::read_to_string(c.net.log_path(0)).unwrap_or_default();
    assert!(
        !log.contains("NotNextBatch"),
        "the batcher sent a batch L1 already held:\n{log}"
    );
    assert_same_chain(&c.net);
}

/// High availability: node 1 is a level-1 standby batcher paying from its own L1 account.
/// `kill -9` of the batcher node: after 1 x 5 batch rounds of L1 standing still the standby
/// claims the role through Raft (epoch 2) and L1 moves on, contiguous; when the main returns it
/// takes the role back at epoch 3, and L1 ends on the cluster's state root.
#[test]
fn the_standby_batcher_takes_over_after_kill_9_and_the_main_takes_it_back() {
    // One batch round a second: the standby waits 5 s of L1 standing still.
    let mut c = WithL1::start("batcher-takeover", 27_000, 1, HA_ENV);
    wait_for("two batches on L1", Duration::from_secs(60), || {
        c.head().filter(|h| h.batch_number >= 2 && h.epoch == 1)
    });
    let b1 = wait_for("n1 standing by", Duration::from_secs(10), || {
        c.batcher(1).filter(|b| b.role == BatchDuty::Standby)
    });
    assert_eq!((b1.level, b1.epoch, b1.holder_level), (Some(1), 1, Some(0)));
    assert_eq!(b1.holder, Some(node_key(0).node_id()));

    c.net.kill(0);
    let stalled = c.head().expect("head");
    let b1 = wait_for("n1 takes the role", Duration::from_secs(40), || {
        c.batcher(1).filter(|b| b.role == BatchDuty::Batcher)
    });
    assert_eq!((b1.epoch, b1.holder_level), (2, Some(1)));
    let moved = wait_for("L1 moves at epoch 2", Duration::from_secs(60), || {
        c.head()
            .filter(|h| h.batch_number >= stalled.batch_number + 3 && h.epoch == 2)
    });
    // The standby waited its rounds: L1 stood still at least 5 of them (5 s) first.
    let n1_log = std::fs::read_to_string(c.net.log_path(1)).unwrap_or_default();
    assert!(
        n1_log.contains("claiming the batcher role") && n1_log.contains("missed_rounds=5"),
        "n1's log:\n{n1_log}"
    );

    c.net.start_node(0).expect("restart the main batcher");
    wait_for("n0 takes the role back", Duration::from_secs(60), || {
        c.batcher(0)
            .filter(|b| b.role == BatchDuty::Batcher && b.epoch == 3)
    });
    let back = wait_for("L1 moves at epoch 3", Duration::from_secs(60), || {
        c.head()
            .filter(|h| h.batch_number >= moved.batch_number + 2 && h.epoch == 3)
    });
    wait_for("n1 stands by again", Duration::from_secs(10), || {
        c.batcher(1)
            .filter(|b| b.role == BatchDuty::Standby && b.epoch == 3)
    });
    c.assert_root_is_the_chains(&back);
    // A handover may leave the deposed batcher's last transaction to revert on L1 (that is
    // the fence); the contract's chain itself never breaks: it is the cluster's.
    assert_same_chain(&c.net);
}

/// 5 blocks per batch, one batch round a second (a standby waits 5 s of L1 standing still).
const HA_ENV: &[(&str, &str)] = &[
    ("BATCHER_BLOCKS_PER_BATCH", "5"),
    ("BATCHER_BATCH_TIMEOUT_MS", "1000"),
];

/// A zombie: the batcher freezes (SIGSTOP, as in a long pause) and the standby takes the role
/// at epoch 2. Woken (SIGCONT), the old batcher acts on its stale view until Raft and L1 tell
/// it otherwise; whatever it sends then is refused, because L1 already saw epoch 2. L1's
/// events show every batch number once, in order, contiguous, and no epoch-1 commit after the
/// first epoch-2 one; the old batcher, deposed while it ran, stands by.
#[test]
fn a_frozen_batcher_wakes_as_a_zombie_and_l1_never_takes_its_old_epoch_again() {
    use nix::sys::signal::Signal;
    let c = WithL1::start("batcher-zombie", 28_000, 1, HA_ENV);
    wait_for("two batches on L1", Duration::from_secs(60), || {
        c.head().filter(|h| h.batch_number >= 2 && h.epoch == 1)
    });
    c.net.signal(0, Signal::SIGSTOP);
    wait_for("n1 takes the role", Duration::from_secs(40), || {
        c.batcher(1)
            .filter(|b| b.role == BatchDuty::Batcher && b.epoch == 2)
    });
    let moved = wait_for("L1 at epoch 2", Duration::from_secs(30), || {
        c.head().filter(|h| h.epoch == 2)
    });
    c.net.signal(0, Signal::SIGCONT);
    // It learns of epoch 2 through Raft and stands by: deposed while it ran, it does not take
    // the role straight back (only a restarted main does).
    wait_for("the old batcher stands by", Duration::from_secs(30), || {
        c.batcher(0)
            .filter(|b| b.role == BatchDuty::Standby && b.epoch == 2)
    });
    let last = wait_for("L1 moves on", Duration::from_secs(30), || {
        c.head()
            .filter(|h| h.batch_number >= moved.batch_number + 3)
    });
    let commits = c.rt.block_on(c.l1.committed(c.address)).expect("L1 events");
    let mut highest_epoch = 0;
    for (i, (number, first, last_height, epoch)) in commits.iter().enumerate() {
        assert_eq!(*number, i as u64 + 1, "{commits:?}");
        if i > 0 {
            assert_eq!(*first, commits[i - 1].2 + 1, "{commits:?}");
        }
        assert!(last_height >= first, "{commits:?}");
        assert!(
            *epoch >= highest_epoch,
            "L1 took epoch {epoch} after {highest_epoch}: {commits:?}"
        );
        highest_epoch = *epoch;
    }
    assert!(commits.len() as u64 >= last.batch_number, "{commits:?}");
    assert_eq!(highest_epoch, 2, "{commits:?}");
    let b0 = c.batcher(0).expect("n0 status");
    assert_eq!((b0.role, b0.epoch), (BatchDuty::Standby, 2), "{b0:?}");
    assert_same_chain(&c.net);
}

/// The README's main command: `canon-node devnet` starts anvil, deploys the contract, and node
/// 0's batcher commits to it; Ctrl-C (SIGTERM here) stops the nodes and anvil.
#[test]
fn devnet_starts_its_l1_and_commits_batches() {
    const OFFSET: u16 = 26_000;
    let dir = scratch("devnet-l1");
    let mut child = std::process::Command::new(exe())
        .args([
            "devnet",
            "--nodes",
            "3",
            "--port-offset",
            &OFFSET.to_string(),
            "--dir",
        ])
        .arg(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("canon-node devnet");
    let client = canon_node::client::NodeClient::new(
        &format!("127.0.0.1:{}", 3050 + OFFSET),
        &format!("127.0.0.1:{}", 3071 + OFFSET),
        Duration::from_millis(800),
    );
    let committed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for(
            "a batch on the devnet's L1",
            Duration::from_secs(90),
            || {
                client
                    .status()
                    .ok()
                    .and_then(|s| s.batcher)
                    .and_then(|b| b.last_committed_l1)
                    .filter(|n| *n >= 1)
            },
        )
    }));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let status = child.wait().expect("devnet exits");
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read as _;
        let _ = e.read_to_string(&mut err);
    }
    assert!(
        committed.is_ok(),
        "no batch reached L1; devnet said:\n{err}"
    );
    assert!(status.success(), "{status:?}\n{err}");
    assert!(err.contains("settlement contract 0x"), "{err}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", 8545 + OFFSET)).is_err(),
        "anvil outlived the devnet"
    );
}

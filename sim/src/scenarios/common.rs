//! What the scenarios share: the liveness bounds, a running cluster to start from, and the final
//! heal that ends every fault and checks the converged state.

use std::time::Duration;

use rand::seq::SliceRandom;
use rand::Rng;

use crate::client::spawn_client;
use crate::cluster::{ClusterConfig, SimCluster};
use crate::scenario::Ctx;

/// Blocks that must follow a recovery before it counts as live.
pub(crate) const PROGRESS_BLOCKS: u64 = 3;
/// Liveness bound once faults stop: election, catch-up and three blocks.
pub(crate) const HEAL_BOUND: Duration = Duration::from_secs(20);
pub(crate) const CLIENT_INTERVAL: Duration = Duration::from_millis(25);
/// How long an external node may take to reach a height once it can: download, verify and
/// replay, plus a long-poll round.
pub(crate) const EXTERNAL_BOUND: Duration = Duration::from_secs(30);

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_millis() as f64
}

pub(crate) fn at(c: &SimCluster, msg: String) -> String {
    format!("{msg} (sim {:.3}s)", c.observer.lock().now().as_secs_f64())
}

pub(crate) async fn sleep_ms(ms: u64) {
    madsim::time::sleep(Duration::from_millis(ms)).await;
}

/// A default cluster with client traffic, a leader, and a few canonized blocks.
pub(crate) async fn running_cluster(ctx: &Ctx) -> Result<(SimCluster, usize), String> {
    running_cluster_with(ctx, ClusterConfig::default()).await
}

/// [`running_cluster`] with `cfg`.
pub(crate) async fn running_cluster_with(
    ctx: &Ctx,
    cfg: ClusterConfig,
) -> Result<(SimCluster, usize), String> {
    let c = ctx.cluster(cfg);
    spawn_client(&c, ctx.seed, CLIENT_INTERVAL);
    let all = c.up_nodes();
    let (leader, _) = c
        .wait_for_leader(&all, Duration::from_secs(10))
        .await
        .map_err(|e| at(&c, e))?;
    c.wait_for_progress(PROGRESS_BLOCKS, HEAL_BOUND)
        .await
        .map_err(|e| at(&c, e))?;
    Ok((c, leader))
}

/// Heals the network, restarts every crashed node, and requires progress on all of them and
/// a converged, canonical final state.
pub(crate) async fn heal_and_check(c: &mut SimCluster) -> Result<(), String> {
    c.net.heal();
    c.note("fault: heal network");
    c.l1.heal();
    c.heal_disks();
    for i in c.down_nodes() {
        c.restart(i);
    }
    let took = c
        .wait_for_progress(PROGRESS_BLOCKS, HEAL_BOUND)
        .await
        .map_err(|e| at(c, e))?;
    c.record("recovery_ms", ms(took));
    let target = c.canonical_height();
    c.wait_for_height(&c.up_nodes(), target, HEAL_BOUND)
        .await
        .map_err(|e| at(c, e))?;
    // Gaps closed first: the final checks read every block.
    c.wait_for_backfill(&c.up_nodes(), HEAL_BOUND)
        .await
        .map_err(|e| at(c, e))?;
    // External nodes reach the head too before every node is compared with its past (one
    // that crashed lost what it had not synced and downloads it again).
    for e in 0..c.externals_len() {
        c.restart_external(e);
    }
    let target = c.canonical_height();
    for e in 0..c.externals_len() {
        c.wait_for_external(e, target, EXTERNAL_BOUND)
            .await
            .map_err(|m| at(c, m))?;
    }
    c.check_final_state().map_err(|e| at(c, e))?;
    c.check_complete_chains().map_err(|e| at(c, e))?;
    if !c.cfg.batchers.is_empty() {
        let took = c.wait_for_l1(L1_BOUND).await.map_err(|e| at(c, e))?;
        c.record("l1_catchup_ms", ms(took));
        let epochs = c.observer.lock().checker.claim_winners().len();
        c.record("batcher_epochs", epochs as f64);
    }
    Ok(())
}

/// Once L1 and the batcher's node are up, every sealed batch is on L1 within this: a
/// backoff of at most 2 s, then a batch per L1 block (250 ms) for what queued up.
pub(crate) const L1_BOUND: Duration = Duration::from_secs(30);

/// One of chaos's cluster faults (everything but L1's), by `draw` out of 0..16: crash a node
/// (0, 1; half are power losses), restart one (2, 3), isolate one (4), drop one direction of a
/// link (5), lose (6) or delay (7) messages, heal the network (8), fail or heal disk writes
/// (9), jump a clock by up to 30 s (10), a stream fault (14, 15), and crash the leader
/// otherwise. The draws it makes are chaos's own, so a seed's fault plan stays what it was.
pub(crate) fn cluster_fault(c: &mut SimCluster, draw: u32) {
    let n = c.size();
    match draw {
        0 | 1 => {
            let up = c.up_nodes();
            if let Some(&i) = up.choose(&mut c.rng) {
                c.crash(i);
            }
        }
        2 | 3 => {
            let down = c.down_nodes();
            if let Some(&i) = down.choose(&mut c.rng) {
                c.restart(i);
            }
        }
        4 => {
            let i = c.rng.gen_range(0..n);
            c.net.isolate(i);
            c.note(format!("fault: isolate n{i}"));
        }
        5 => {
            let from = c.rng.gen_range(0..n);
            let to = (from + c.rng.gen_range(1..n)) % n;
            c.net.block(from, to);
            c.note(format!("fault: drop n{from} -> n{to}"));
        }
        6 => {
            let loss = c.rng.gen_range(0..300);
            c.net.set_loss_permille(loss);
            c.note(format!("fault: lose {loss}/1000 messages"));
        }
        7 => {
            let max = c.rng.gen_range(0..150);
            c.net.set_extra_delay_ms(0, max);
            c.note(format!("fault: delay messages up to {max} ms"));
        }
        8 => {
            c.net.heal();
            c.note("fault: heal network");
        }
        10 => {
            let i = c.rng.gen_range(0..n);
            let delta = c.rng.gen_range(-30_000..=30_000);
            c.jump_clock(i, delta);
        }
        9 => {
            if c.rng.gen_bool(0.5) {
                let i = c.rng.gen_range(0..n);
                c.fail_disk_writes(i);
            } else {
                c.heal_disks();
            }
        }
        14 | 15 => super::network::stream_fault(c),
        _ => {
            if let Some(l) = c.leader() {
                c.crash(l);
            }
        }
    }
}

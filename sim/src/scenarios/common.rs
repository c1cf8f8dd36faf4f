//! What the scenarios share: the liveness bounds, a running cluster to start from, and the final
//! heal that ends every fault and checks the converged state.

use std::time::Duration;

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

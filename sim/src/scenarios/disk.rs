//! Storage scenarios (issue 33): the disk lies as real disks do, and every node either
//! repairs itself from its peers or stops saying why, while the checker watches that nothing
//! corrupt was served, applied or signed.

use super::common::{at, heal_and_check, running_cluster_with, sleep_ms, HEAL_BOUND};
use crate::cluster::{ClusterConfig, SimCluster};
use crate::scenario::{Ctx, ScenarioFuture};
use crate::schedule::exec::check_fits;
use crate::schedule::{
    draw_disk_corruption, draw_misdirected_write, draw_slow_disk, draw_torn_write, execute,
    Schedule,
};

pub(crate) fn disk_corruption(ctx: Ctx) -> ScenarioFuture {
    lying_disks(ctx, draw_disk_corruption, false)
}

pub(crate) fn misdirected_write(ctx: Ctx) -> ScenarioFuture {
    lying_disks(ctx, draw_misdirected_write, false)
}

pub(crate) fn torn_write(ctx: Ctx) -> ScenarioFuture {
    lying_disks(ctx, draw_torn_write, true)
}

/// Disks that stall their synced writes or their reads: a leader stalled on writes blocks
/// inside Raft's log append (as a slow fsync does), so it stops answering and its followers
/// elect another; one slow to read holds up a lagging follower's entries and the external
/// node's downloads. While the stalls last, a majority with working disks must keep
/// canonizing: at least one block per simulated second of the schedule, a tenth of the usual
/// rate.
pub(crate) fn slow_disk(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        let cfg = ClusterConfig {
            batchers: vec![(0, 0), (1, 1)],
            ..ClusterConfig::default()
        };
        let (mut c, _) = running_cluster_with(&ctx, cfg).await?;
        let x = c.add_external(c.peers().to_vec());
        let schedule = ctx.schedule(|| draw_slow_disk(ctx.seed, c.size()));
        check_fits(&schedule, c.size(), x + 1, true).map_err(|e| e.to_string())?;
        let before = c.canonical_height();
        let started = madsim::time::Instant::now();
        execute(&mut c, &schedule).await;
        let canonized = c.canonical_height().saturating_sub(before);
        let secs = started.elapsed().as_secs();
        c.record("canonized_while_stalled", canonized as f64);
        let reads_stalled: u64 = (0..c.size()).map(|i| c.disk(i).reads_stalled()).sum();
        c.record("reads_stalled", reads_stalled as f64);
        // Only a schedule that stalls every node at once may pause the cluster, and briefly.
        if canonized < secs {
            return Err(at(
                &c,
                format!(
                    "liveness: {canonized} blocks canonized in the {secs} s of stalled disks, \
                     fewer than one a second"
                ),
            ));
        }
        heal_and_check(&mut c).await?;
        c.check_externals().map_err(|e| at(&c, e))
    })
}

/// A cluster with the batcher, its standby and an external node downloading throughout,
/// under the disk faults `draw` gives for the seed; then a rolling restart and the heal.
fn lying_disks(ctx: Ctx, draw: fn(u64, usize) -> Schedule, disks_may_tear: bool) -> ScenarioFuture {
    Box::pin(async move {
        // The batcher and its standby too: batches and attestations are on every disk.
        let cfg = ClusterConfig {
            batchers: vec![(0, 0), (1, 1)],
            disks_may_tear,
            ..ClusterConfig::default()
        };
        let (mut c, _) = running_cluster_with(&ctx, cfg).await?;
        // An external node downloads throughout: what a node serves must check out.
        let x = c.add_external(c.peers().to_vec());
        let schedule = ctx.schedule(|| draw(ctx.seed, c.size()));
        check_fits(&schedule, c.size(), x + 1, true).map_err(|e| e.to_string())?;
        execute(&mut c, &schedule).await;
        if no_healthy_majority(&c) {
            record_disk_facts(&c);
            return Ok(());
        }
        // Rot nobody read yet is still on some disks. An operator's rolling restart finds it:
        // each node in turn stops (nothing lost) and starts, its scrub repairs what rotted,
        // and it catches up before the next one goes.
        c.heal_disks();
        for i in c.up_nodes() {
            c.crash_as(i, false, 1_000);
            c.restart(i);
            let waited = repaired_or_halted(&c, i).await;
            if no_healthy_majority(&c) {
                record_disk_facts(&c);
                return Ok(());
            }
            waited?;
        }
        record_disk_facts(&c);
        // Every node not halted repaired itself: it catches up and holds the canonical chain.
        heal_and_check(&mut c).await?;
        c.check_externals().map_err(|e| at(&c, e))
    })
}

/// Waits until node `i` has caught up with the canonical height and holds every block below
/// it again (so the next node's restart finds a full copy to repair from), or has halted.
async fn repaired_or_halted(c: &SimCluster, i: usize) -> Result<(), String> {
    let start = madsim::time::Instant::now();
    loop {
        let caught_up = c.is_up(i)
            && c.height_of(i) >= c.canonical_height()
            && c.node(i).is_some_and(|n| n.chain().blocks_missing() == 0);
        if c.is_halted(i) || caught_up {
            return Ok(());
        }
        if start.elapsed() > HEAL_BOUND {
            return Err(at(
                c,
                format!(
                    "n{i} neither repaired nor halted within {HEAL_BOUND:?} of its restart (height {}, canonical {})",
                    c.height_of(i),
                    c.canonical_height()
                ),
            ));
        }
        sleep_ms(50).await;
    }
}

/// How the disks fared: nodes halted, repairs that made a node forget what it replicated,
/// repairs that fetched rotten blocks again, and the most nodes unhealthy (halted or
/// repairing) at once.
fn record_disk_facts(c: &SimCluster) {
    let halted = (0..c.size()).filter(|i| c.is_halted(*i)).count();
    let (rejoins, refetches, unhealthy) = {
        let obs = c.observer.lock();
        let k = &obs.checker;
        (k.rejoins(), k.refetches(), k.most_unhealthy_at_once())
    };
    c.record("halted_nodes", halted as f64);
    c.record("rejoins", rejoins as f64);
    c.record("refetches", refetches as f64);
    c.record("most_unhealthy_at_once", unhealthy as f64);
}

/// Whether a majority of nodes was ever unhealthy at once (halted, or repairing): then
/// nothing may be lost or forked (the checker watched throughout), but the cluster may stall
/// for good and nothing more is owed.
fn no_healthy_majority(c: &SimCluster) -> bool {
    let unhealthy = c.observer.lock().checker.most_unhealthy_at_once();
    if unhealthy * 2 >= c.size() {
        let halted: Vec<usize> = (0..c.size()).filter(|i| c.is_halted(*i)).collect();
        c.note(format!(
            "no healthy majority: {unhealthy} of {} nodes unhealthy at once ({halted:?} halted)",
            c.size()
        ));
        return true;
    }
    false
}

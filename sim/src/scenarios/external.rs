//! External node scenarios (seed 000): nodes outside Raft download, verify and replay the
//! canonized chain through catch-up, crashes, partitions, failover and lying sources.

use std::time::Duration;

use canon_engine::chain::block::Block;
use canon_engine::external::node::Trust;
use rand::Rng;

use super::common::{
    at, heal_and_check, ms, running_cluster, sleep_ms, CLIENT_INTERVAL, EXTERNAL_BOUND, HEAL_BOUND,
    PROGRESS_BLOCKS,
};
use crate::client::spawn_client;
use crate::cluster::{ClusterConfig, SimCluster};
use crate::liar::Lie;
use crate::scenario::{Ctx, ScenarioFuture};

/// Ends an external-node scenario: the cluster heals and converges, every external node
/// reaches the canonical head (the heal waits for them), with a canonical chain.
async fn externals_converge(c: &mut SimCluster) -> Result<(), String> {
    heal_and_check(c).await?;
    c.check_externals().map_err(|m| at(c, m))
}

/// A cluster with client traffic and fast blocks that has canonized `height` blocks: a chain
/// long enough that an external node is still replaying while faults hit it.
async fn long_chain(ctx: &Ctx, height: u64) -> Result<SimCluster, String> {
    let cfg = ClusterConfig {
        block_time_ms: 50,
        ..ClusterConfig::default()
    };
    let c = ctx.cluster(cfg);
    spawn_client(&c, ctx.seed, CLIENT_INTERVAL);
    let all = c.up_nodes();
    c.wait_for_leader(&all, Duration::from_secs(10))
        .await
        .map_err(|e| at(&c, e))?;
    // Blocks every 50 ms at best; the bound leaves room for elections and slow seeds.
    c.wait_for_height(&all, height, Duration::from_millis(height * 120))
        .await
        .map_err(|e| at(&c, e))?;
    Ok(c)
}

pub(crate) fn external_catchup(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        let mut c = long_chain(&ctx, 1_000).await?;
        let sources = c.peers().to_vec();
        let x = c.add_external(sources);
        let target = c.canonical_height();
        let took = c
            .wait_for_external(x, target, EXTERNAL_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        c.note(format!(
            "external caught up {target} blocks in {:.3}s",
            took.as_secs_f64()
        ));
        c.record("catchup_ms", ms(took));
        // Following: it keeps up with new blocks.
        let next = c.canonical_height() + 10;
        c.wait_for_external(x, next, EXTERNAL_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        externals_converge(&mut c).await
    })
}

pub(crate) fn external_restart(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        let mut c = long_chain(&ctx, 400).await?;
        let sources = c.peers().to_vec();
        let x = c.add_external(sources);
        // Crash while replaying: somewhere in the first few hundred blocks.
        let crash_at = c.rng.gen_range(20..300);
        c.wait_for_external(x, crash_at, EXTERNAL_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        c.crash_external(x);
        sleep_ms(c.rng.gen_range(100..3_000)).await;
        c.restart_external(x);
        // A second crash, this time while it follows the head.
        let target = c.canonical_height();
        c.wait_for_external(x, target, EXTERNAL_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        c.crash_external(x);
        sleep_ms(c.rng.gen_range(100..2_000)).await;
        c.restart_external(x);
        externals_converge(&mut c).await
    })
}

/// An external node's disk rots while it is down, three times: each time one bit of what it
/// replayed flips (a block, the state or a certificate). Its start-up scrub finds the damage;
/// it forgets what it replayed and downloads the chain again, checked as any download is. It
/// must reach the canonical head after each restart, and never hold a block off the canonical
/// chain (the checker watches every block it replays).
pub(crate) fn external_disk_rot(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        let mut c = long_chain(&ctx, 100).await?;
        let sources = c.peers().to_vec();
        let x = c.add_external(sources);
        let mut rotted = 0usize;
        for _ in 0..3 {
            let target = c.canonical_height();
            c.wait_for_external(x, target, EXTERNAL_BOUND)
                .await
                .map_err(|e| at(&c, e))?;
            c.crash_external(x);
            if c.rot_external_disk(x) {
                rotted += 1;
            }
            sleep_ms(c.rng.gen_range(100..2_000)).await;
            c.restart_external(x);
        }
        let target = c.canonical_height();
        c.wait_for_external(x, target, EXTERNAL_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        // Every rotten record was found at the next start: one repair each.
        let repairs = c.observer.lock().checker.rejoins();
        c.record("repairs", repairs as f64);
        if repairs != rotted {
            return Err(at(
                &c,
                format!("x{x}'s disk rotted {rotted} times and it repaired {repairs} times"),
            ));
        }
        externals_converge(&mut c).await
    })
}

pub(crate) fn external_partition(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        let (mut c, _) = running_cluster(&ctx).await?;
        let sources = c.peers().to_vec();
        let x = c.add_external(sources);
        let target = c.canonical_height();
        c.wait_for_external(x, target, EXTERNAL_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        let member = c.external_member(x);
        c.net.isolate(member);
        c.note(format!("fault: isolate external x{x}"));
        sleep_ms(c.rng.gen_range(2_000..10_000)).await;
        c.net.heal();
        c.note("fault: heal network");
        let target = c.canonical_height();
        let took = c
            .wait_for_external(x, target, EXTERNAL_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        c.note(format!(
            "external caught up after the partition in {:.3}s",
            took.as_secs_f64()
        ));
        c.record("catchup_ms", ms(took));
        externals_converge(&mut c).await
    })
}

pub(crate) fn external_failover(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        let (mut c, leader) = running_cluster(&ctx).await?;
        let sources = c.peers().to_vec();
        let x = c.add_external(sources);
        let target = c.canonical_height();
        c.wait_for_external(x, target, EXTERNAL_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        c.crash(leader);
        let rest = c.up_nodes();
        let bound = c.cfg.election_bound();
        c.wait_for_leader(&rest, bound)
            .await
            .map_err(|e| at(&c, e))?;
        c.wait_for_progress(PROGRESS_BLOCKS, HEAL_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        let target = c.canonical_height();
        c.wait_for_external(x, target, EXTERNAL_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        externals_converge(&mut c).await
    })
}

pub(crate) fn lying_source(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        let (mut c, _) = running_cluster(&ctx).await?;
        // Consecutive seeds cover every lie.
        let lie = Lie::ALL[(ctx.seed % Lie::ALL.len() as u64) as usize];
        let liar = c.add_liar(lie);
        let deposed = lie == Lie::DeposedProposal;
        if deposed {
            let lost = deposed_proposals(&mut c).await?;
            liar.serve_deposed(lost);
        }
        let mut sources = c.peers().to_vec();
        sources.push(liar.id);
        let trust = Trust::Certificates {
            verify_every_signature: lie == Lie::ByzantineMajority,
        };
        let x = c.add_external_trusting(sources, trust);
        if deposed {
            // The liar is its only reachable source until it lies: a deposed proposal lies at
            // one height, which an honest source could otherwise serve first.
            let member = c.external_member(x);
            for i in 0..c.size() {
                c.net.block(member, i);
                c.net.block(i, member);
            }
            c.note(format!("fault: x{x} reaches only the liar"));
        }
        c.wait_for_progress(20, HEAL_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        // The liar is caught as soon as it serves a lie the node gets to (bounded: it is asked
        // at least once every few rounds).
        let index = c.size() + x;
        let liar_id = liar.id;
        let caught = |c: &SimCluster| -> Vec<String> {
            c.observer
                .lock()
                .checker
                .rejected_sources()
                .iter()
                .filter(|(n, source, _)| *n == index && *source == liar_id)
                .map(|(_, _, kind)| kind.clone())
                .collect()
        };
        let start = std::time::Instant::now();
        while caught(&c).is_empty() {
            if start.elapsed() > EXTERNAL_BOUND {
                return Err(at(
                    &c,
                    format!("the lying source ({lie:?}) was never rejected"),
                ));
            }
            sleep_ms(50).await;
        }
        let kinds = caught(&c);
        if kinds.iter().any(|k| k != lie.rule()) {
            return Err(at(
                &c,
                format!(
                    "the lying source ({lie:?}) must be caught by the {} rule, was by {kinds:?}",
                    lie.rule()
                ),
            ));
        }
        c.record("liar_rejected", 1.0);
        externals_converge(&mut c).await
    })
}

/// A deposed leader's real proposals that were never committed. The leader is cut off (it
/// can receive, not send) while its leadership is still proven, so it goes on proposing into
/// its own log what no one else gets; the others elect a new leader and canonize other blocks
/// at those heights. Read from its disk before the heal truncates them.
async fn deposed_proposals(c: &mut SimCluster) -> Result<Vec<Block>, String> {
    const ATTEMPTS: usize = 5;
    for _ in 0..ATTEMPTS {
        let all = c.up_nodes();
        let (leader, _) = c
            .wait_for_leader(&all, HEAL_BOUND)
            .await
            .map_err(|e| at(c, e))?;
        c.wait_for_progress(PROGRESS_BLOCKS, HEAL_BOUND)
            .await
            .map_err(|e| at(c, e))?;
        let rest: Vec<usize> = all.iter().copied().filter(|o| *o != leader).collect();
        for other in &rest {
            c.net.block(leader, *other);
        }
        c.note(format!(
            "fault: n{leader} cut off mid-proposal (it can receive only)"
        ));
        let bound =
            c.cfg.election_bound() + Duration::from_millis(c.cfg.election_timeout_ms_max * 2);
        c.wait_for_leader(&rest, bound)
            .await
            .map_err(|e| at(c, e))?;
        // The others canonize past what the cut-off leader proposed.
        let target = c.canonical_height() + PROGRESS_BLOCKS;
        c.wait_for_height(&rest, target, HEAL_BOUND)
            .await
            .map_err(|e| at(c, e))?;
        let lost: Vec<Block> = {
            let obs = c.observer.lock();
            c.logged_blocks(leader)
                .into_iter()
                .filter(|b| {
                    let canonical = obs.checker.canonical_hash(b.header.height);
                    canonical.is_some() && canonical != b.hash().ok()
                })
                .collect()
        };
        c.net.heal();
        c.note("fault: heal");
        if let Some(first) = lost.first() {
            c.note(format!(
                "n{leader} holds {} proposals that lost, from height {}",
                lost.len(),
                first.header.height
            ));
            return Ok(lost);
        }
    }
    Err(at(
        c,
        format!("no leader proposal was left uncommitted in {ATTEMPTS} cut-offs"),
    ))
}

pub(crate) fn external_chain(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        let (mut c, _) = running_cluster(&ctx).await?;
        let sources = c.peers().to_vec();
        let first = c.add_external(sources);
        let via = vec![c.external_id(first)];
        let second = c.add_external(via);
        c.wait_for_progress(20, HEAL_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        let target = c.canonical_height();
        c.wait_for_external(second, target, EXTERNAL_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        externals_converge(&mut c).await
    })
}

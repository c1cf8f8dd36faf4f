//! External node scenarios (seed 000): nodes outside Raft download, verify and replay the
//! canonized chain through catch-up, crashes, partitions, failover and lying sources.

use std::time::Duration;

use rand::Rng;

use super::common::{
    at, heal_and_check, ms, running_cluster, sleep_ms, CLIENT_INTERVAL, HEAL_BOUND, PROGRESS_BLOCKS,
};
use crate::client::spawn_client;
use crate::cluster::{ClusterConfig, SimCluster};
use crate::external::Tamper;
use crate::scenario::{Ctx, ScenarioFuture};

/// How long an external node may take to reach a height once it can: download, verify and
/// replay, plus a long-poll round.
const EXTERNAL_BOUND: Duration = Duration::from_secs(30);

/// Ends an external-node scenario: the cluster heals and converges, and every external node
/// reaches the canonical head with a canonical chain.
async fn externals_converge(c: &mut SimCluster) -> Result<(), String> {
    heal_and_check(c).await?;
    for e in 0..c.externals_len() {
        c.restart_external(e);
    }
    let target = c.canonical_height();
    for e in 0..c.externals_len() {
        c.wait_for_external(e, target, EXTERNAL_BOUND)
            .await
            .map_err(|m| at(c, m))?;
    }
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
        // Consecutive seeds cover every kind of lie.
        let tamper = [
            Tamper::Signature,
            Tamper::StateRoot,
            Tamper::Parent,
            Tamper::Transaction,
        ][(ctx.seed % 4) as usize];
        // The rule each lie must be caught by.
        let rule = match tamper {
            Tamper::Signature => "signature",
            Tamper::StateRoot => "state_root",
            Tamper::Parent => "parent",
            Tamper::Transaction => "transaction",
        };
        let liar = c.add_liar(tamper);
        let mut sources = c.peers().to_vec();
        sources.push(liar);
        let x = c.add_external(sources);
        c.wait_for_progress(20, HEAL_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        let target = c.canonical_height();
        c.wait_for_external(x, target, EXTERNAL_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        // The liar is caught as soon as it is asked for the next block; keep following until
        // it has been (bounded: it is asked at least once every few rounds).
        let index = c.size() + x;
        let caught = |c: &SimCluster| {
            c.observer
                .lock()
                .checker
                .rejected_sources()
                .iter()
                .any(|(n, source, _)| *n == index && *source == liar)
        };
        let start = std::time::Instant::now();
        while !caught(&c) {
            if start.elapsed() > EXTERNAL_BOUND {
                return Err(at(
                    &c,
                    format!("the lying source ({tamper:?}) was never rejected"),
                ));
            }
            sleep_ms(50).await;
        }
        let kinds: Vec<String> = c
            .observer
            .lock()
            .checker
            .rejected_sources()
            .iter()
            .filter(|(n, source, _)| *n == index && *source == liar)
            .map(|(_, _, kind)| kind.clone())
            .collect();
        if kinds.iter().any(|k| k != rule) {
            return Err(at(
                &c,
                format!("the lying source ({tamper:?}) must be caught by the {rule} rule, was by {kinds:?}"),
            ));
        }
        c.record("liar_rejected", 1.0);
        externals_converge(&mut c).await
    })
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

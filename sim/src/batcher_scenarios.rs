//! L1 batcher scenarios (seed 000): batches sealed on the apply path, attested by every
//! consensus node, committed by the batcher in strict order through L1 weather. The checker
//! restates the contract's chain (numbers up by one, contiguous ranges, canonical state
//! roots) on every L1 commit; these scenarios add the batcher's liveness and its no-repeat rule.

use std::time::Duration;

use rand::Rng;

use crate::cluster::{ClusterConfig, SimCluster};
use crate::scenario::{Ctx, ScenarioFuture};
use crate::scenarios::{at, heal_and_check, running_cluster, sleep_ms, L1_BOUND};

/// Waits until L1 holds at least `n` batches.
async fn wait_for_l1_batches(c: &SimCluster, n: u64, bound: Duration) -> Result<(), String> {
    let start = madsim::time::Instant::now();
    while c.batch_progress().1 < n {
        if start.elapsed() > bound {
            return Err(at(
                c,
                format!("L1 holds {} batches, expected {n}", c.batch_progress().1),
            ));
        }
        sleep_ms(50).await;
    }
    Ok(())
}

/// The batcher never sent a batch L1 already held, nor one out of order: no refusal at all.
fn nothing_sent_twice(c: &SimCluster) -> Result<(), String> {
    let refusals = c.l1.refusals();
    if refusals.is_empty() {
        Ok(())
    } else {
        Err(at(
            c,
            format!("L1 refused the batcher's transactions: {refusals:?}"),
        ))
    }
}

pub fn l1_outage(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        let (mut c, _) = running_cluster(&ctx).await?;
        wait_for_l1_batches(&c, 2, L1_BOUND).await?;
        c.l1.set_up(false);
        let before = c.batch_progress();
        sleep_ms(30_000).await;
        let during = c.batch_progress();
        if during.1 != before.1 {
            return Err(at(
                &c,
                format!(
                    "L1 moved from batch {} to {} while down",
                    before.1, during.1
                ),
            ));
        }
        // 30 s of 100 ms blocks: dozens of batches queued behind the outage.
        if during.0 < before.0 + 10 {
            return Err(at(
                &c,
                format!(
                    "only {} batches sealed during the outage",
                    during.0 - before.0
                ),
            ));
        }
        c.record("queued_batches", (during.0 - during.1) as f64);
        c.l1.set_up(true);
        let took = c.wait_for_l1(L1_BOUND).await.map_err(|e| at(&c, e))?;
        c.record("drain_ms", took.as_millis() as f64);
        nothing_sent_twice(&c)?;
        heal_and_check(&mut c).await
    })
}

pub fn batcher_restart(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        let (mut c, _) = running_cluster(&ctx).await?;
        let batcher = c.cfg.batchers[0];
        for round in 0..3 {
            wait_for_l1_batches(&c, c.batch_progress().1 + 1, L1_BOUND).await?;
            // Killed mid-submit: sometimes its last commit landed but the receipt did not
            // reach it; sometimes the transaction was still waiting for an L1 block.
            if c.rng.gen_bool(0.5) {
                c.l1.lose_receipts(1);
            }
            let wait = c.rng.gen_range(0..1_500);
            sleep_ms(wait).await;
            c.crash(batcher);
            c.note(format!(
                "batcher-restart: round {round}, crashed after {wait} ms"
            ));
            sleep_ms(c.rng.gen_range(100..3_000)).await;
            c.restart(batcher);
        }
        let took = c.wait_for_l1(L1_BOUND).await.map_err(|e| at(&c, e))?;
        c.record("resume_ms", took.as_millis() as f64);
        nothing_sent_twice(&c)?;
        heal_and_check(&mut c).await
    })
}

pub fn two_batchers(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        // Misconfigured: batcher_enabled on two nodes.
        let cfg = ClusterConfig {
            batchers: vec![0, 1],
            ..ClusterConfig::default()
        };
        let mut c = ctx.cluster(cfg);
        crate::client::spawn_client(&c, ctx.seed, Duration::from_millis(25));
        wait_for_l1_batches(&c, 10, L1_BOUND * 2).await?;
        // The contract admits one commit per number (the checker saw each land once, in
        // order); the loser of each race hears a refusal, re-reads the head, and reports it.
        let conflicts = c.observer.lock().batch_conflicts.clone();
        if conflicts.is_empty() {
            return Err(at(
                &c,
                "two batchers raced and neither reported a conflict".into(),
            ));
        }
        for (_, reason) in c.l1.refusals() {
            if !reason.starts_with("NotNextBatch") && !reason.starts_with("PreviousCommitment") {
                return Err(at(&c, format!("a racing batcher was refused for {reason}")));
            }
        }
        c.record("conflicts_reported", conflicts.len() as f64);
        heal_and_check(&mut c).await
    })
}

pub fn l1_weather(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        let mut c = ctx.cluster(ClusterConfig::default());
        crate::client::spawn_client(&c, ctx.seed, Duration::from_millis(25));
        for _ in 0..8 {
            match c.rng.gen_range(0..3) {
                0 => c.l1.drop_next(c.rng.gen_range(1..4)),
                1 => c.l1.lose_receipts(c.rng.gen_range(1..3)),
                _ => {
                    c.l1.set_up(false);
                    let down = c.rng.gen_range(200..5_000);
                    sleep_ms(down).await;
                    c.l1.set_up(true);
                }
            }
            let gap = c.rng.gen_range(500..4_000);
            sleep_ms(gap).await;
        }
        let took = c.wait_for_l1(L1_BOUND).await.map_err(|e| at(&c, e))?;
        c.record("l1_catchup_ms", took.as_millis() as f64);
        nothing_sent_twice(&c)?;
        heal_and_check(&mut c).await
    })
}

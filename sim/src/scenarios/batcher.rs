//! L1 batcher scenarios (seed 000): batches sealed on the apply path, attested by every
//! consensus node, committed by the batcher in strict order through L1 weather. The checker
//! restates the contract's chain (numbers up by one, contiguous ranges, canonical state
//! roots) on every L1 commit; these scenarios add the batcher's liveness and its no-repeat rule.

use std::time::Duration;

use rand::Rng;

use super::common::{at, heal_and_check, running_cluster, sleep_ms, HEAL_BOUND, L1_BOUND};
use crate::cluster::{ClusterConfig, SimCluster};
use crate::scenario::{Ctx, ScenarioFuture};
use crate::schedule::exec::check_fits;
use crate::schedule::{draw_l1_weather, execute};

/// Polls `f` every 50 ms until it yields, or fails after `bound` with what `failed` says.
async fn poll_until<T>(
    c: &SimCluster,
    bound: Duration,
    mut f: impl FnMut() -> Option<T>,
    failed: impl FnOnce() -> String,
) -> Result<T, String> {
    let start = madsim::time::Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if start.elapsed() > bound {
            return Err(at(c, failed()));
        }
        sleep_ms(50).await;
    }
}

/// Waits until L1 holds at least `n` batches.
async fn wait_for_l1_batches(c: &SimCluster, n: u64, bound: Duration) -> Result<(), String> {
    poll_until(
        c,
        bound,
        || (c.batch_progress().1 >= n).then_some(()),
        || format!("L1 holds {} batches, expected {n}", c.batch_progress().1),
    )
    .await
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
        let batcher = c.cfg.batchers[0].0;
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
        // Misconfigured: batcher_enabled on two nodes, both at level 0.
        let cfg = ClusterConfig {
            batchers: vec![(0, 0), (1, 0)],
            ..ClusterConfig::default()
        };
        let mut c = ctx.cluster(cfg);
        crate::client::spawn_client(&c, ctx.seed, Duration::from_millis(25));
        wait_for_l1_batches(&c, 10, L1_BOUND * 2).await?;
        // Both claim epoch 1 at start; Raft's compare-and-set makes one winner, and the
        // other reports that it shares its level with the holder instead of racing it on L1.
        let winners = c.observer.lock().checker.claim_winners().clone();
        if winners.len() != 1 {
            return Err(at(&c, format!("batcher epochs claimed: {winners:?}")));
        }
        let reported = c.observer.lock().batcher_same_level.clone();
        if reported.is_empty() {
            return Err(at(
                &c,
                "two level-0 batchers and neither reported the other".into(),
            ));
        }
        nothing_sent_twice(&c)?;
        c.record("conflicts_reported", reported.len() as f64);
        heal_and_check(&mut c).await
    })
}

/// The main batcher (n0, level 0) and a standby (n1, level 1).
fn main_and_standby() -> ClusterConfig {
    ClusterConfig {
        batchers: vec![(0, 0), (1, 1)],
        ..ClusterConfig::default()
    }
}

/// Waits for node `i`'s claim of epoch `epoch`; returns (when, missed rounds). The bound: L x N
/// rounds for a level-1 standby, plus a round of slack, an election if the batcher led, and a
/// Raft commit.
async fn wait_for_claim(c: &SimCluster, i: usize, epoch: u64) -> Result<(Duration, u32), String> {
    let rounds = u64::from(c.cfg.batcher_max_missed_rounds) + 3;
    let bound = Duration::from_millis(c.cfg.batch_timeout_ms * rounds) + c.cfg.election_bound();
    poll_until(
        c,
        bound,
        || {
            c.observer
                .lock()
                .batcher_claims
                .iter()
                .find(|(n, _, e, _)| *n == i && *e == epoch)
                .map(|(_, at, _, missed)| (*at, *missed))
        },
        || format!("n{i} did not claim epoch {epoch}"),
    )
    .await
}

/// Waits until a claim of `epoch` was applied, and requires node `i` to have won it (the
/// checker requires every node to apply it alike).
async fn won(c: &SimCluster, i: usize, epoch: u64) -> Result<(), String> {
    let winner = poll_until(
        c,
        HEAL_BOUND,
        || {
            c.observer
                .lock()
                .checker
                .claim_winners()
                .get(&epoch)
                .copied()
        },
        || format!("no claim of epoch {epoch} was applied"),
    )
    .await?;
    if winner == c.node_id(i) {
        Ok(())
    } else {
        Err(at(
            c,
            format!("epoch {epoch} was won by {winner}, not n{i}"),
        ))
    }
}

/// The standby's claim came after exactly L x N missed rounds, and no sooner than that many
/// rounds after L1 last moved before it.
fn claimed_on_time(
    c: &SimCluster,
    claim_at: Duration,
    missed: u32,
    level: u32,
) -> Result<(), String> {
    let want = level * c.cfg.batcher_max_missed_rounds;
    if missed != want {
        return Err(at(
            c,
            format!("the level-{level} standby claimed after {missed} missed rounds, not {want}"),
        ));
    }
    let last_move =
        c.l1.batches()
            .iter()
            .filter(|b| b.at < claim_at)
            .map(|b| b.at)
            .max()
            .unwrap_or_default();
    let rounds = Duration::from_millis(c.cfg.batch_timeout_ms * u64::from(want));
    if claim_at < last_move + rounds {
        return Err(at(
            c,
            format!(
                "claimed {:.3}s after L1 last moved, before {want} rounds ({:.3}s)",
                (claim_at - last_move).as_secs_f64(),
                rounds.as_secs_f64()
            ),
        ));
    }
    c.record(
        "claim_after_l1_stalled_ms",
        (claim_at - last_move).as_millis() as f64,
    );
    Ok(())
}

pub fn batcher_crash(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        let mut c = ctx.cluster(main_and_standby());
        crate::client::spawn_client(&c, ctx.seed, Duration::from_millis(25));
        wait_for_l1_batches(&c, 2, L1_BOUND).await?;
        won(&c, 0, 1).await?;
        sleep_ms(c.rng.gen_range(0..1_500)).await;
        c.crash(0);
        let crashed_at = c.observer.lock().now();
        let (claim_at, missed) = wait_for_claim(&c, 1, 2).await?;
        claimed_on_time(&c, claim_at, missed, 1)?;
        c.record("takeover_ms", (claim_at - crashed_at).as_millis() as f64);
        // The standby commits what queued up, and L1 stays contiguous (the checker).
        let took = c.wait_for_l1(L1_BOUND).await.map_err(|e| at(&c, e))?;
        c.record("l1_catchup_after_claim_ms", took.as_millis() as f64);
        won(&c, 1, 2).await?;
        // The main returns and takes the role back at once, fenced by epoch 3.
        c.restart(0);
        wait_for_claim(&c, 0, 3).await?;
        c.wait_for_l1(L1_BOUND).await.map_err(|e| at(&c, e))?;
        won(&c, 0, 3).await?;
        heal_and_check(&mut c).await
    })
}

pub fn batcher_zombie(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        let mut c = ctx.cluster(main_and_standby());
        crate::client::spawn_client(&c, ctx.seed, Duration::from_millis(25));
        wait_for_l1_batches(&c, 2, L1_BOUND).await?;
        // n0's path to L1 turns slow: what it sends now lands 20 s later. Once it has a
        // transaction held, the consensus cuts it off; it still believes it is the batcher.
        let hold_ms = c.rng.gen_range(15_000..25_000);
        c.l1.hold_sender(0, hold_ms);
        poll_until(
            &c,
            L1_BOUND,
            || (c.l1.held(0) > 0).then_some(()),
            || "n0 sent nothing to L1".into(),
        )
        .await?;
        c.net.isolate(0);
        c.note("fault: isolate n0 (the batcher)");
        let (claim_at, missed) = wait_for_claim(&c, 1, 2).await?;
        claimed_on_time(&c, claim_at, missed, 1)?;
        won(&c, 1, 2).await?;
        c.wait_for_l1(L1_BOUND).await.map_err(|e| at(&c, e))?;
        // The zombie's held transactions land now, after epoch 2 reached L1: every one
        // reverts (and the checker saw no L1 commit of n0's after n1's first).
        sleep_ms(hold_ms + 1_000).await;
        let zombie: Vec<_> =
            c.l1.refusals()
                .into_iter()
                .filter(|(sender, _, _)| *sender == 0)
                .collect();
        if zombie.is_empty() {
            return Err(at(
                &c,
                "the zombie's held transaction did not revert".into(),
            ));
        }
        let first_epoch2 = c.l1.batches().iter().find(|b| b.epoch >= 2).map(|b| b.at);
        if first_epoch2.is_none() {
            return Err(at(&c, "nothing was committed at epoch 2".into()));
        }
        c.record("zombie_reverts", zombie.len() as f64);
        c.l1.hold_sender(0, 0);
        heal_and_check(&mut c).await?;
        // Healed, the old batcher stands by: it was deposed while it ran, so it does not take
        // the role back at once (a sick main would flap with a healthy standby)...
        sleep_ms(c.cfg.batch_timeout_ms * 3).await;
        let epochs = c.observer.lock().checker.claim_winners().len();
        if epochs != 2 {
            return Err(at(
                &c,
                format!("after the heal the role changed hands again ({epochs} epochs)"),
            ));
        }
        // ...until it restarts, when the main takes it back (epoch 3).
        c.crash(0);
        c.restart(0);
        won(&c, 0, 3).await?;
        c.wait_for_l1(L1_BOUND).await.map_err(|e| at(&c, e))?;
        Ok(())
    })
}

pub fn l1_weather(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        let mut c = ctx.cluster(ClusterConfig::default());
        crate::client::spawn_client(&c, ctx.seed, Duration::from_millis(25));
        let schedule = ctx.schedule(|| draw_l1_weather(ctx.seed));
        check_fits(&schedule, c.size(), 0, true).map_err(|e| e.to_string())?;
        execute(&mut c, &schedule).await;
        // The weather ends with the schedule: losses drawn and not yet spent are forgotten, as
        // a real L1 owes none (seed 3948089 drew 16 in 10 s; spent one per attempt, they
        // outlasted the 30 s the catch-up is allowed, which measures the weather, not it).
        c.l1.heal();
        let took = c.wait_for_l1(L1_BOUND).await.map_err(|e| at(&c, e))?;
        c.record("l1_catchup_ms", took.as_millis() as f64);
        nothing_sent_twice(&c)?;
        heal_and_check(&mut c).await
    })
}

/// A standby's count of missed rounds, as its status shows it (None: not a standby, or down).
fn standby_missed_rounds(c: &SimCluster, i: usize) -> Option<u32> {
    c.node(i).and_then(|n| n.status().batches.missed_rounds)
}

/// Fails if node `i` claimed the batcher role at or after `since`.
fn no_claim_since(c: &SimCluster, i: usize, since: Duration, during: &str) -> Result<(), String> {
    let claims: Vec<_> = c
        .observer
        .lock()
        .batcher_claims
        .iter()
        .filter(|(n, at, _, _)| *n == i && *at >= since)
        .map(|(_, at, epoch, missed)| (*at, *epoch, *missed))
        .collect();
    if claims.is_empty() {
        Ok(())
    } else {
        Err(at(
            c,
            format!(
                "n{i} claimed the batcher role {during}: (at, epoch, missed rounds) {claims:?}"
            ),
        ))
    }
}

/// The standby's own path to L1 is cut while the holder and L1 are fine. It must not count
/// rounds it cannot see: while cut it never claims, however long the holder's work takes it
/// out of view; and when the holder dies during a cut, the standby claims only after it reaches
/// L1 again and L x N rounds counted from there, even if it had counted rounds before the cut.
pub fn batcher_l1_partition(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        let mut c = ctx.cluster(main_and_standby());
        crate::client::spawn_client(&c, ctx.seed, Duration::from_millis(25));
        wait_for_l1_batches(&c, 2, L1_BOUND).await?;
        let round_ms = c.cfg.batch_timeout_ms;
        let threshold = u64::from(c.cfg.batcher_max_missed_rounds);
        let standby = 1;

        // 1. Cut, holder alive: L1 keeps moving and the standby never claims.
        let rounds = c.rng.gen_range(2 * threshold..4 * threshold);
        let cut_at = c.observer.lock().now();
        let before = c.batch_progress().1;
        c.l1.set_cut(standby, true);
        sleep_ms(rounds * round_ms).await;
        let after = c.batch_progress().1;
        no_claim_since(&c, standby, cut_at, "while cut off from a live holder")?;
        if after < before + rounds / 2 {
            return Err(at(
                &c,
                format!(
                    "the holder committed {} batches in {rounds} rounds while the standby was cut off",
                    after - before
                ),
            ));
        }
        c.record("holder_batches_while_standby_cut", (after - before) as f64);
        c.l1.set_cut(standby, false);
        wait_for_l1_batches(&c, after + 2, L1_BOUND).await?;

        // 2. The holder dies: the standby counts a few missed rounds, then is cut off.
        c.crash(0);
        let counted = c.rng.gen_range(2..threshold as u32);
        poll_until(
            &c,
            Duration::from_millis(round_ms * (u64::from(counted) + 3)) + c.cfg.election_bound(),
            || (standby_missed_rounds(&c, standby)? >= counted).then_some(()),
            || format!("the standby never counted {counted} missed rounds"),
        )
        .await?;
        let counted = standby_missed_rounds(&c, standby).unwrap_or(counted);
        c.record("missed_rounds_before_cut", f64::from(counted));
        let cut_at = c.observer.lock().now();
        c.l1.set_cut(standby, true);
        // Longer than the whole threshold: a standby that counted unseen rounds claims here.
        sleep_ms((threshold + 3) * round_ms).await;
        no_claim_since(&c, standby, cut_at, "while it could not reach L1")?;

        // 3. Its path back: a baseline round, then L x N missed rounds.
        let restored_at = c.observer.lock().now();
        c.l1.set_cut(standby, false);
        let (claim_at, missed) = wait_for_claim(&c, standby, 2).await?;
        claimed_on_time(&c, claim_at, missed, 1)?;
        let counted_from_restore = Duration::from_millis(round_ms * threshold);
        if claim_at < restored_at + counted_from_restore {
            return Err(at(
                &c,
                format!(
                    "the standby claimed {:.3}s after reaching L1 again, before {threshold} rounds ({:.3}s) seen from there",
                    (claim_at - restored_at).as_secs_f64(),
                    counted_from_restore.as_secs_f64()
                ),
            ));
        }
        c.record(
            "claim_after_l1_restored_ms",
            (claim_at - restored_at).as_millis() as f64,
        );
        won(&c, standby, 2).await?;
        let took = c.wait_for_l1(L1_BOUND).await.map_err(|e| at(&c, e))?;
        c.record("l1_catchup_after_claim_ms", took.as_millis() as f64);
        nothing_sent_twice(&c)?;
        heal_and_check(&mut c).await
    })
}

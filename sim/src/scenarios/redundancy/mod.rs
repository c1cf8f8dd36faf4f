//! Hot-standby redundancy scenarios (seed 002): one signing identity, members at levels, the
//! takeover arithmetic to the round, and handovers that never sign a height or round twice
//! (the checker's per-identity invariant watches every signature).

use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::B256;
use canon_engine::policy::redundancy::MemberMode;

use rand::Rng;

use super::common::{at, sleep_ms};
use crate::cluster::ClusterConfig;
use crate::group::{GroupRun, GroupSetup};
use crate::scenario::{Ctx, ScenarioFuture};

mod faults;
pub(crate) use faults::{
    redundancy_chaos, redundancy_chaos_fenced, redundancy_crash_while_signing,
    redundancy_partition, redundancy_partition_fenced,
};

/// A member that just started needs its patience plus a sync; everything here is rounds of
/// 200 ms, so 30 s covers any level used.
const GROUP_BOUND: Duration = Duration::from_secs(30);

/// A group of `levels` with every member started, the first blocks signed, and every member
/// holding them.
async fn running_group(ctx: &Ctx, levels: &[i64]) -> Result<GroupRun, String> {
    running_group_with(ctx, levels, GroupSetup::default(), levels.len()).await
}

/// [`running_group`] with members `started..` set up but not started.
async fn running_group_with(
    ctx: &Ctx,
    levels: &[i64],
    setup: GroupSetup,
    started: usize,
) -> Result<GroupRun, String> {
    let cluster = ctx.cluster(ClusterConfig {
        nodes: 0,
        ..ClusterConfig::default()
    });
    let mut c = GroupRun::new(cluster, levels, setup);
    for m in 0..started {
        c.start_member(m);
    }
    c.wait_for_step_in(0, 0, GROUP_BOUND)
        .await
        .map_err(|e| at(&c, e))?;
    let warmup: u64 = c.rng.gen_range(5..30);
    c.wait_for_members(warmup, GROUP_BOUND)
        .await
        .map_err(|e| at(&c, e))?;
    Ok(c)
}

/// Waits until every live member holds the identity's newest block, then returns at once: a
/// crash now takes nothing unseen with it. (A crash with a signed block in flight is
/// `redundancy-crash-while-signing`'s subject.)
async fn quiet_moment(c: &GroupRun) -> Result<(), String> {
    let start = madsim::time::Instant::now();
    loop {
        let h = c.signed_height();
        let all = c
            .member_ids()
            .iter()
            .enumerate()
            .filter_map(|(m, _)| c.member(m))
            .all(|x| x.head().height == h);
        if all {
            return Ok(());
        }
        if start.elapsed() > GROUP_BOUND {
            return Err(format!("members never all held height {h}"));
        }
        madsim::time::sleep(Duration::from_millis(1)).await;
    }
}

/// The round the main last signed, as the surviving members' chains show it.
fn main_last_round(c: &GroupRun) -> Result<u64, String> {
    c.last_round_of_level(0)
        .ok_or_else(|| at(c, "no block of the main on any live member".into()))
}

fn expect_step_in(c: &GroupRun, m: usize, got: u64, want: u64, what: &str) -> Result<(), String> {
    if got != want {
        return Err(at(
            c,
            format!("m{m} signed first in round {got}; {what} says round {want}"),
        ));
    }
    Ok(())
}

pub(crate) fn redundancy_main_crash(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        let mut c = running_group(&ctx, &[0, 1, 2]).await?;
        sleep_ms(c.rng.gen_range(0..2_000)).await;
        quiet_moment(&c).await.map_err(|e| at(&c, e))?;
        let before_1 = c.step_ins(1).len();
        let before_2 = c.step_ins(2).len();
        c.crash_member(0);
        let r = main_last_round(&c)?;
        let got = c
            .wait_for_step_in(1, before_1, GROUP_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        expect_step_in(&c, 1, got, r + 6, "the main's last round + 1 x 5 + 1")?;
        c.record("takeover_rounds", (got - r) as f64);
        // Level 1 keeps signing; level 2 never steps in while it does.
        let h = c.signed_height();
        c.wait_for_members(h + 15, GROUP_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        if c.step_ins(2).len() > before_2 {
            return Err(at(&c, format!("level 2 stepped in at {:?}", c.step_ins(2))));
        }
        Ok(())
    })
}

pub(crate) fn redundancy_cascade(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        // The seed's example: levels 0, 1 and 3; 0 and 1 down; level 3 signs r + 16.
        let mut c = running_group(&ctx, &[0, 1, 3]).await?;
        sleep_ms(c.rng.gen_range(0..2_000)).await;
        quiet_moment(&c).await.map_err(|e| at(&c, e))?;
        let before_2 = c.step_ins(2).len();
        c.crash_member(1);
        c.crash_member(0);
        let r = main_last_round(&c)?;
        let got = c
            .wait_for_step_in(2, before_2, GROUP_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        expect_step_in(&c, 2, got, r + 16, "the main's last round + 3 x 5 + 1")?;
        c.record("takeover_rounds", (got - r) as f64);
        let h = c.signed_height();
        c.wait_for_members(h + 5, GROUP_BOUND)
            .await
            .map_err(|e| at(&c, e))
    })
}

pub(crate) fn redundancy_never_sign(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        let mut c = running_group(&ctx, &[0, -1, 1_000_000]).await?;
        quiet_moment(&c).await.map_err(|e| at(&c, e))?;
        c.crash_member(0);
        let h = c.signed_height();
        // Alone, for a hundred rounds: they follow, and never sign.
        sleep_ms(100 * c.block_time().as_millis() as u64).await;
        for m in [1, 2] {
            if !c.step_ins(m).is_empty() {
                return Err(at(&c, format!("m{m} signed at {:?}", c.step_ins(m))));
            }
            let status = c
                .member_status(m)
                .ok_or_else(|| at(&c, format!("m{m} is down")))?;
            if status.mode != MemberMode::Observer || status.head.height != h {
                return Err(at(&c, format!("m{m}: {status:?}")));
            }
        }
        if c.signed_height() != h {
            return Err(at(&c, format!("the chain grew past {h} with no signer")));
        }
        // The main comes back: they follow it again.
        c.start_member(0);
        c.wait_for_members(h + 5, GROUP_BOUND)
            .await
            .map_err(|e| at(&c, e))
    })
}

pub(crate) fn redundancy_main_returns(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        let mut c = running_group(&ctx, &[0, 1]).await?;
        // An external node follows the identity's chain through both handovers.
        let members = c.member_ids();
        let x = c.add_external(members);
        quiet_moment(&c).await.map_err(|e| at(&c, e))?;
        let before_1 = c.step_ins(1).len();
        c.crash_member(0);
        c.wait_for_step_in(1, before_1, GROUP_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        sleep_ms(c.rng.gen_range(0..5_000)).await;
        let before = c.observer.lock().reverts.len();
        let main_before = c.step_ins(0).len();
        c.start_member(0);
        let back = c.group_round();
        // The main syncs, announces, waits for the standby's last height, then signs; the
        // standby reverts. The checker holds both to one block per height and round.
        let start = madsim::time::Instant::now();
        loop {
            let reverted = c.observer.lock().reverts.len() > before;
            let main_signs = c.step_ins(0).len() > main_before;
            if reverted && main_signs {
                break;
            }
            if start.elapsed() > GROUP_BOUND {
                return Err(at(
                    &c,
                    format!(
                        "handover incomplete: reverted={reverted} main signs={main_signs} ({:?} / {:?})",
                        c.member_status(0),
                        c.member_status(1)
                    ),
                ));
            }
            sleep_ms(10).await;
        }
        let resumed = c.step_ins(0).last().copied().unwrap_or(back);
        c.record("handover_rounds", resumed.saturating_sub(back) as f64);
        let h = c.signed_height();
        c.wait_for_members(h + 10, GROUP_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        let s1 = c
            .member_status(1)
            .ok_or_else(|| at(&c, "m1 is down".into()))?;
        if s1.mode != MemberMode::StandingBy {
            return Err(at(&c, format!("m1 did not revert: {s1:?}")));
        }
        c.wait_for_external(x, h + 10, GROUP_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        c.check_externals().map_err(|e| at(&c, e))
    })
}

pub(crate) fn redundancy_same_level(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        // m1 and m2 both at level 1; m2 starts later and must yield.
        let mut c = running_group_with(&ctx, &[0, 1, 1], GroupSetup::default(), 2).await?;
        sleep_ms(c.rng.gen_range(0..1_000)).await;
        c.start_member(2);
        // Two announcement periods: each has heard the other.
        sleep_ms(12 * c.block_time().as_millis() as u64).await;
        let seen: Vec<(usize, bool)> = c.observer.lock().same_levels.clone();
        let base = crate::group::MEMBER_INDEX_BASE;
        if !seen.contains(&(base + 2, true)) || !seen.contains(&(base + 1, false)) {
            return Err(at(
                &c,
                format!("same level not detected both ways: {seen:?}"),
            ));
        }
        let status = c
            .member_status(2)
            .ok_or_else(|| at(&c, "m2 is down".into()))?;
        if status.mode != MemberMode::Yielding || status.same_level.is_none() {
            return Err(at(&c, format!("m2 does not show the conflict: {status:?}")));
        }
        quiet_moment(&c).await.map_err(|e| at(&c, e))?;
        let before_1 = c.step_ins(1).len();
        c.crash_member(0);
        let r = main_last_round(&c)?;
        let got = c
            .wait_for_step_in(1, before_1, GROUP_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        expect_step_in(&c, 1, got, r + 6, "the earlier-started level 1")?;
        let h = c.signed_height();
        c.wait_for_members(h + 15, GROUP_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        // m2 started after the group's cold start: it never signed at all.
        if !c.step_ins(2).is_empty() {
            return Err(at(
                &c,
                format!("the later level 1 signed at {:?}", c.step_ins(2)),
            ));
        }
        c.record("same_level_detected", 1.0);
        Ok(())
    })
}

pub(crate) fn redundancy_spoofed_main(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        let mut c = running_group(&ctx, &[0, 1]).await?;
        c.add_forger();
        sleep_ms(c.rng.gen_range(0..2_000)).await;
        quiet_moment(&c).await.map_err(|e| at(&c, e))?;
        let before_1 = c.step_ins(1).len();
        let reverts_before = c.observer.lock().reverts.len();
        c.crash_member(0);
        let r = main_last_round(&c)?;
        // The forger keeps claiming to be the main: the failover happens to the round anyway.
        let got = c
            .wait_for_step_in(1, before_1, GROUP_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        expect_step_in(
            &c,
            1,
            got,
            r + 6,
            "forged claims must not reset the counter",
        )?;
        c.record("takeover_rounds", (got - r) as f64);
        let h = c.signed_height();
        c.wait_for_members(h + 10, GROUP_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        if c.observer.lock().reverts.len() > reverts_before {
            return Err(at(&c, "a forged claim made the standby revert".into()));
        }
        Ok(())
    })
}

pub(crate) fn redundancy_clock_skew(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        // Every member's clock off by up to a third of a round, either way.
        let setup = GroupSetup::default();
        let setup = GroupSetup {
            clock_skew_ms_max: setup.block_time_ms / 3,
            ..setup
        };
        let mut c = running_group_with(&ctx, &[0, 1, 2], setup, 3).await?;
        sleep_ms(c.rng.gen_range(0..2_000)).await;
        quiet_moment(&c).await.map_err(|e| at(&c, e))?;
        let before_1 = c.step_ins(1).len();
        let before_2 = c.step_ins(2).len();
        c.crash_member(0);
        let r = main_last_round(&c)?;
        let got = c
            .wait_for_step_in(1, before_1, GROUP_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        expect_step_in(&c, 1, got, r + 6, "the arithmetic, whatever the skew")?;
        c.record("takeover_rounds", (got - r) as f64);
        // The main returns on its skewed clock: the handover still signs nothing twice.
        sleep_ms(c.rng.gen_range(0..3_000)).await;
        let before = c.observer.lock().reverts.len();
        let main_before = c.step_ins(0).len();
        c.start_member(0);
        let start = madsim::time::Instant::now();
        while !(c.observer.lock().reverts.len() > before && c.step_ins(0).len() > main_before) {
            if start.elapsed() > GROUP_BOUND {
                return Err(at(
                    &c,
                    format!("handover incomplete: {:?}", c.member_status(1)),
                ));
            }
            sleep_ms(10).await;
        }
        let h = c.signed_height();
        c.wait_for_members(h + 10, GROUP_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        if c.step_ins(2).len() > before_2 {
            return Err(at(&c, format!("level 2 stepped in at {:?}", c.step_ins(2))));
        }
        Ok(())
    })
}

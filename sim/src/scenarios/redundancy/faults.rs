//! Redundancy under faults: a member crashing at each point of signing, partitions with and
//! without epoch fencing, and chaos over the group; what every live node holds must converge
//! on one chain.

use super::*;
/// Every live node's block hash at each height up to the lowest head among them, by name.
fn held_chains(c: &GroupRun) -> Vec<(String, Vec<B256>)> {
    let mut chains: Vec<(String, Arc<canon_engine::chain::store::ChainStore>)> = Vec::new();
    for m in 0..c.member_ids().len() {
        if let Some(x) = c.member(m) {
            chains.push((format!("m{m}"), x.sync().replica().chain().clone()));
        }
    }
    for e in 0..c.externals_len() {
        if let Some(x) = c.external(e) {
            chains.push((format!("x{e}"), x.replica().chain().clone()));
        }
    }
    let to = chains
        .iter()
        .map(|(_, ch)| ch.head().height)
        .min()
        .unwrap_or(0);
    chains
        .into_iter()
        .map(|(name, ch)| {
            let hashes = ch
                .blocks(1, to as usize, usize::MAX)
                .unwrap_or_default()
                .iter()
                .filter_map(|b| b.header.hash().ok())
                .collect();
            (name, hashes)
        })
        .collect()
}

/// Waits until every live node holds one chain at least `min_height` long.
async fn converged(c: &GroupRun, nodes: usize, min_height: u64) -> Result<u128, String> {
    let start = madsim::time::Instant::now();
    loop {
        let chains = held_chains(c);
        let low = chains
            .iter()
            .map(|(_, h)| h.len() as u64)
            .min()
            .unwrap_or(0);
        let agree = chains.windows(2).all(|w| w[0].1 == w[1].1);
        if agree && chains.len() == nodes && low >= min_height {
            return Ok(start.elapsed().as_millis());
        }
        if start.elapsed() > GROUP_BOUND {
            let heads: Vec<String> = chains
                .iter()
                .map(|(n, h)| format!("{n}: {} blocks, tip {:?}", h.len(), h.last()))
                .collect();
            return Err(format!("nodes did not converge: {heads:?}"));
        }
        sleep_ms(20).await;
    }
}

fn expect_modes(c: &GroupRun, modes: &[MemberMode]) -> Result<(), String> {
    for (m, want) in modes.iter().enumerate() {
        let mode = c.member_status(m).map(|s| s.mode);
        if mode != Some(*want) {
            let all: Vec<String> = (0..modes.len())
                .map(|i| format!("m{i}: {:?}", c.member_status(i)))
                .collect();
            return Err(format!(
                "m{m} is {mode:?}, not {want:?}; {}",
                all.join("; ")
            ));
        }
    }
    Ok(())
}

/// Waits for the members to settle in `modes` (a member barred by its guard until the chain
/// passes its last signed height, or a main still handing over, gets there in rounds).
async fn settle_modes(c: &GroupRun, modes: &[MemberMode]) -> Result<(), String> {
    let start = madsim::time::Instant::now();
    loop {
        match expect_modes(c, modes) {
            Ok(()) => return Ok(()),
            Err(e) if start.elapsed() > GROUP_BOUND => return Err(e),
            Err(_) => sleep_ms(20).await,
        }
    }
}

/// Levels 0, 1 and 2 running unfenced, where the identity may sign two branches (the checker in
/// fork mode), plus an external node following them; returns the cluster and the external's
/// index.
async fn unfenced_group(ctx: &Ctx) -> Result<(GroupRun, usize), String> {
    group_with_external(ctx, false).await
}

/// Levels 0, 1 and 2 and an external node following them; fenced, the checker allows no double
/// signature at all, unfenced it runs in fork mode.
async fn group_with_external(ctx: &Ctx, fencing: bool) -> Result<(GroupRun, usize), String> {
    let setup = GroupSetup {
        expect_equivocation: !fencing,
        fencing,
        ..GroupSetup::default()
    };
    let mut c = running_group_with(ctx, &GROUP_LEVELS, setup, GROUP_LEVELS.len()).await?;
    let members = c.member_ids();
    let x = c.add_external(members);
    Ok((c, x))
}

const GROUP_LEVELS: [i64; 3] = [0, 1, 2];

pub(crate) fn redundancy_crash_while_signing(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        // The main crashes somewhere on its sign / persist / send path and stays down for a
        // random number of rounds. Heights may then be signed twice (a block nobody saw, and
        // the standby's at that height): the checker runs in fork mode, but no round is ever
        // signed twice, and everyone ends on one chain with the main signing.
        let (mut c, x) = unfenced_group(&ctx).await?;
        quiet_moment(&c).await.map_err(|e| at(&c, e))?;
        let point = c.rng.gen_range(0..3u32);
        let bound = Duration::from_secs(5);
        match point {
            0 => {
                // The guard's synced record reaches the disk; the block's write does not.
                let before = c.observer.lock().sign_refusals.len();
                c.fail_member_disk_after(0, 1);
                let start = madsim::time::Instant::now();
                while c.observer.lock().sign_refusals.len() == before {
                    if start.elapsed() > bound {
                        return Err(at(&c, "the main never hit the disk fault".into()));
                    }
                    sleep_ms(1).await;
                }
                c.crash_member(0);
                c.heal_member_disk(0);
            }
            1 => {
                // Signed and stored, never sent: nothing leaves the main, then it dies.
                let main = c.member_net_index(0);
                let mut others: Vec<usize> = (1..3).map(|m| c.member_net_index(m)).collect();
                others.push(c.external_member(x));
                for o in &others {
                    c.net.block(main, *o);
                }
                let h = c.signed_height();
                let start = madsim::time::Instant::now();
                while c.signed_height() == h {
                    if start.elapsed() > bound {
                        return Err(at(&c, "the main signed nothing".into()));
                    }
                    sleep_ms(1).await;
                }
                c.crash_member(0);
                c.net.heal();
            }
            _ => {
                // Anywhere in a round.
                let round_ms = c.block_time().as_millis() as u64;
                sleep_ms(c.rng.gen_range(0..round_ms)).await;
                c.crash_member(0);
            }
        }
        c.record("crash_point", f64::from(point));
        let down_rounds: u64 = c.rng.gen_range(1..20);
        c.record("down_rounds", down_rounds as f64);
        sleep_ms(down_rounds * c.block_time().as_millis() as u64).await;
        let main_before = c.step_ins(0).len();
        c.start_member(0);
        let start = madsim::time::Instant::now();
        while c.step_ins(0).len() == main_before {
            if start.elapsed() > GROUP_BOUND {
                return Err(at(
                    &c,
                    format!(
                        "the main never signed again: {:?} / {:?}",
                        c.member_status(0),
                        c.member_status(1)
                    ),
                ));
            }
            sleep_ms(10).await;
        }
        let now_height = c.member(0).map(|m| m.head().height).unwrap_or(0);
        let ms = converged(&c, 4, now_height + 5)
            .await
            .map_err(|e| at(&c, e))?;
        c.record("converged_ms", ms as f64);
        settle_modes(
            &c,
            &[
                MemberMode::Active,
                MemberMode::StandingBy,
                MemberMode::StandingBy,
            ],
        )
        .await
        .map_err(|e| at(&c, e))?;
        let (rounds, heights) = {
            let obs = c.observer.lock();
            let heights: std::collections::BTreeSet<u64> =
                obs.checker.double_signed().iter().map(|d| d.0).collect();
            (obs.checker.double_signed_rounds().to_vec(), heights)
        };
        if let Some((round, a, b)) = rounds.first() {
            return Err(at(&c, format!("round {round} signed twice: {a} and {b}")));
        }
        c.record("double_signed_heights", heights.len() as f64);
        Ok(())
    })
}

pub(crate) fn redundancy_partition(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        // Unfenced, the seed's semantics: a partition between the main and its standbys makes
        // both sign. The checker expects it (fork mode) and the run must see it happen, every
        // follower report it, and every node end on the main's branch by the fork rule.
        let (mut c, x) = unfenced_group(&ctx).await?;
        quiet_moment(&c).await.map_err(|e| at(&c, e))?;
        sleep_ms(c.rng.gen_range(0..1_000)).await;
        let main = c.member_net_index(0);
        let mut others: Vec<usize> = (1..3).map(|m| c.member_net_index(m)).collect();
        others.push(c.external_member(x));
        for o in &others {
            c.net.block(main, *o);
            c.net.block(*o, main);
        }
        c.note("fault: partition {m0} | {m1, m2, x0}");
        let before_1 = c.step_ins(1).len();
        c.wait_for_step_in(1, before_1, GROUP_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        let both_sign_rounds: u64 = c.rng.gen_range(3..30);
        sleep_ms(both_sign_rounds * c.block_time().as_millis() as u64).await;
        let double_signed: Vec<(u64, B256, B256)> =
            c.observer.lock().checker.double_signed().to_vec();
        if double_signed.is_empty() {
            return Err(at(
                &c,
                "both sides signed, yet no double signature was seen".into(),
            ));
        }
        let fork_height = double_signed.iter().map(|d| d.0).min().unwrap_or(0);
        let heights: std::collections::BTreeSet<u64> = double_signed.iter().map(|d| d.0).collect();
        c.record("double_signed_heights", heights.len() as f64);
        let reverts_before = c.observer.lock().reverts.len();
        c.net.heal();
        c.note("fault: heal");
        let healed_height = c.member(0).map(|m| m.head().height).unwrap_or(0);
        let ms = converged(&c, 4, healed_height + 5)
            .await
            .map_err(|e| at(&c, format!("after the heal: {e}")))?;
        c.record("converged_ms", ms as f64);
        // The main's branch won at the first double-signed height.
        let kept = c
            .member(0)
            .and_then(|m| m.sync().replica().chain().block(fork_height).ok().flatten())
            .and_then(|b| b.header.slot);
        if kept.map(|s| s.level) != Some(0) {
            return Err(at(
                &c,
                format!("height {fork_height} kept {kept:?}; the fork rule keeps the main's block"),
            ));
        }
        let reported = c.observer.lock().checker.reported_equivocations().len();
        if reported == 0 {
            return Err(at(&c, "no follower reported the equivocation".into()));
        }
        c.record("followers_reporting", reported as f64);
        // Level 1 stops signing: it reverts on the main's return, or its guard bars it once its
        // branch is rolled back (then it stands by when the chain passes what it signed).
        let barred_or_reverted = c.observer.lock().reverts.len() > reverts_before
            || c.member_status(1)
                .is_some_and(|s| s.mode != MemberMode::Active);
        if !barred_or_reverted {
            return Err(at(&c, "level 1 still signs after the heal".into()));
        }
        settle_modes(
            &c,
            &[
                MemberMode::Active,
                MemberMode::StandingBy,
                MemberMode::StandingBy,
            ],
        )
        .await
        .map_err(|e| at(&c, e))
    })
}

/// Waits for a block of `level` with a round after `round` in member 1's or 0's chain; returns
/// the first such round.
async fn first_round_of_level_after(c: &GroupRun, level: i64, round: u64) -> Result<u64, String> {
    let start = madsim::time::Instant::now();
    loop {
        let found = [1, 0]
            .into_iter()
            .filter_map(|m| c.member(m))
            .filter_map(|x| {
                let chain = x.sync().replica().chain().clone();
                (1..=chain.head().height)
                    .filter_map(|h| chain.block(h).ok().flatten())
                    .filter_map(|b| b.header.slot)
                    .find(|s| s.level == level && s.round > round)
                    .map(|s| s.round)
            })
            .min();
        match found {
            Some(r) => return Ok(r),
            None if start.elapsed() > GROUP_BOUND => {
                return Err(format!("no block of level {level} after round {round}"))
            }
            None => sleep_ms(20).await,
        }
    }
}

/// How long `redundancy-chaos` injects faults, in simulated seconds.
pub const REDUNDANCY_CHAOS_SECS: u64 = 30;

pub(crate) fn redundancy_chaos(ctx: Ctx) -> ScenarioFuture {
    Box::pin(group_chaos(ctx, false))
}

pub(crate) fn redundancy_chaos_fenced(ctx: Ctx) -> ScenarioFuture {
    Box::pin(group_chaos(ctx, true))
}

/// chaos's mix on a group: crashes and restarts of any member, isolations, one-way drops, loss,
/// delay, clock jumps and disk faults, for 30 s. Unfenced partitions may make two members sign
/// one round (fork mode); fenced, the identity never signs two blocks for one height or round.
/// Either way no machine ever does, every follower chain is a chain of the identity's blocks,
/// and once everything heals all end on one chain with the main signing.
async fn group_chaos(ctx: Ctx, fencing: bool) -> Result<(), String> {
    {
        let levels = GROUP_LEVELS;
        let (mut c, x) = group_with_external(&ctx, fencing).await?;
        let mut nodes: Vec<usize> = (0..levels.len()).map(|m| c.member_net_index(m)).collect();
        nodes.push(c.external_member(x));
        let mut up = vec![true; levels.len()];
        let start = madsim::time::Instant::now();
        while start.elapsed() < Duration::from_secs(REDUNDANCY_CHAOS_SECS) {
            sleep_ms(c.rng.gen_range(200..2_000)).await;
            let m = c.rng.gen_range(0..levels.len());
            match c.rng.gen_range(0..11) {
                0 | 1 if up[m] => {
                    c.crash_member(m);
                    up[m] = false;
                }
                2 | 3 if !up[m] => {
                    c.start_member(m);
                    up[m] = true;
                }
                4 => {
                    let i = nodes[c.rng.gen_range(0..nodes.len())];
                    c.net.isolate(i);
                    c.note(format!("fault: isolate net node {i}"));
                }
                5 => {
                    let from = c.rng.gen_range(0..nodes.len());
                    let to = (from + c.rng.gen_range(1..nodes.len())) % nodes.len();
                    c.net.block(nodes[from], nodes[to]);
                    c.note(format!(
                        "fault: drop net node {} -> {}",
                        nodes[from], nodes[to]
                    ));
                }
                6 => {
                    let loss = c.rng.gen_range(0..300);
                    c.net.set_loss_permille(loss);
                    c.note(format!("fault: lose {loss}/1000 messages"));
                }
                7 => {
                    let max = c.rng.gen_range(0..100);
                    c.net.set_extra_delay_ms(0, max);
                    c.note(format!("fault: delay messages up to {max} ms"));
                }
                8 => {
                    // Within a third of a round either way, as redundancy-clock-skew allows.
                    let third = c.block_time().as_millis() as i64 / 3;
                    let jump = c.rng.gen_range(-third..=third) / 2;
                    c.jump_member_clock(m, jump);
                }
                9 if up[m] => {
                    let writes = c.rng.gen_range(0..3);
                    c.fail_member_disk_after(m, writes);
                    sleep_ms(c.rng.gen_range(0..600)).await;
                    c.heal_member_disk(m);
                }
                _ => {
                    c.net.heal();
                    c.note("fault: heal network");
                }
            }
        }
        c.net.heal();
        c.note("fault: heal everything");
        for (m, is_up) in up.iter().enumerate() {
            c.heal_member_disk(m);
            if !is_up {
                c.start_member(m);
            }
        }
        let top = held_chains(&c)
            .iter()
            .map(|(_, h)| h.len() as u64)
            .max()
            .unwrap_or(0);
        let ms = converged(&c, levels.len() + 1, top + 5)
            .await
            .map_err(|e| at(&c, format!("after chaos: {e}")))?;
        c.record("converged_ms", ms as f64);
        settle_modes(
            &c,
            &[
                MemberMode::Active,
                MemberMode::StandingBy,
                MemberMode::StandingBy,
            ],
        )
        .await
        .map_err(|e| at(&c, format!("after chaos: {e}")))?;
        let (heights, rounds, reported) = {
            let obs = c.observer.lock();
            let heights: std::collections::BTreeSet<u64> =
                obs.checker.double_signed().iter().map(|d| d.0).collect();
            (
                heights.len(),
                obs.checker.double_signed_rounds().len(),
                obs.checker.reported_equivocations().len(),
            )
        };
        c.record("double_signed_heights", heights as f64);
        c.record("double_signed_rounds", rounds as f64);
        c.record("equivocations_reported", reported as f64);
        Ok(())
    }
}

pub(crate) fn redundancy_partition_fenced(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        // Fenced: the same partition as redundancy-partition, main | {levels 1, 2, external}.
        // The main cannot gather a majority and signs nothing; level 1 takes over with the
        // majority's agreement; after the heal the main catches up and signs again. The checker
        // allows no double signature: no height or round is ever signed twice.
        let (mut c, x) = group_with_external(&ctx, true).await?;
        quiet_moment(&c).await.map_err(|e| at(&c, e))?;
        sleep_ms(c.rng.gen_range(0..1_000)).await;
        let main = c.member_net_index(0);
        let mut others: Vec<usize> = (1..3).map(|m| c.member_net_index(m)).collect();
        others.push(c.external_member(x));
        for o in &others {
            c.net.block(main, *o);
            c.net.block(*o, main);
        }
        c.note("fault: partition {m0} | {m1, m2, x0}");
        let cut_height = c.member(0).map(|m| m.head().height).unwrap_or(0);
        let before_1 = c.step_ins(1).len();
        c.wait_for_step_in(1, before_1, GROUP_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        // Level 1's first block after the main's last one (its step-in may first re-sign a
        // block the main had gotten accepted but not chosen: the main's, not level 1's).
        let cut_round = c.last_round_of_level(0).unwrap_or(0);
        let takeover = first_round_of_level_after(&c, 1, cut_round)
            .await
            .map_err(|e| at(&c, e))?;
        c.record("takeover_rounds_after_main", (takeover - cut_round) as f64);
        let partitioned_rounds: u64 = c.rng.gen_range(3..30);
        sleep_ms(partitioned_rounds * c.block_time().as_millis() as u64).await;
        // A block the majority chose just before the cut may still reach the main's chain.
        let main_height = c.member(0).map(|m| m.head().height).unwrap_or(0);
        if main_height > cut_height + 1 {
            return Err(at(
                &c,
                format!("the cut-off main went from height {cut_height} to {main_height}"),
            ));
        }
        c.net.heal();
        c.note("fault: heal");
        let healed_height = c.member(1).map(|m| m.head().height).unwrap_or(0);
        let healed_round = c.group_round();
        let ms = converged(&c, 4, healed_height + 5)
            .await
            .map_err(|e| at(&c, format!("after the heal: {e}")))?;
        c.record("converged_ms", ms as f64);
        settle_modes(
            &c,
            &[
                MemberMode::Active,
                MemberMode::StandingBy,
                MemberMode::StandingBy,
            ],
        )
        .await
        .map_err(|e| at(&c, e))?;
        let back = first_round_of_level_after(&c, 0, healed_round)
            .await
            .map_err(|e| at(&c, format!("after the heal: {e}")))?;
        c.record("main_back_rounds_after_heal", (back - healed_round) as f64);
        let (heights, rounds, reported) = {
            let obs = c.observer.lock();
            (
                obs.checker.double_signed().len(),
                obs.checker.double_signed_rounds().len(),
                obs.checker.reported_equivocations().len(),
            )
        };
        if heights + rounds + reported > 0 {
            return Err(at(
                &c,
                format!(
                    "fenced, yet {heights} heights and {rounds} rounds were signed twice \
                     ({reported} reports)"
                ),
            ));
        }
        Ok(())
    })
}

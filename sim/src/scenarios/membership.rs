//! Membership changes (issue 34): a node that died for good is replaced by a fresh machine
//! while blocks flow, L1 batches land (attested by the set L1 holds, which follows the chain's
//! declarations) and an external node follows the chain's new signers.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use canon_engine::consensus::node::membership::MembershipError;
use canon_engine::consensus::status::MembershipStatus;
use canon_engine::policy::membership::{Change, Refusal};
use canon_engine::NodeId;
use rand::Rng;

use super::common::{
    at, heal_and_check, ms, running_cluster_with, EXTERNAL_BOUND, HEAL_BOUND, L1_BOUND,
};
use crate::cluster::{ClusterConfig, SimCluster};
use crate::scenario::{Ctx, ScenarioFuture};
use crate::schedule::exec::check_fits;
use crate::schedule::{draw_chaos, execute, ChaosMix, SpareDraw, Weights};

/// How long an operator keeps asking for one change: a learner catching up by snapshot and
/// download, an election or two in between.
const CHANGE_BOUND: Duration = Duration::from_secs(30);

/// Asks whichever node leads for `change` until it is done, as an operator would: a node
/// that does not lead, a change still being committed or a learner still catching up is
/// asked again a little later, and so is a removal while L1 still needs the member's
/// attestations (fact `removal_held_ms`: from the first such refusal to the removal, 0 when
/// there was none). A removal asked again after a crash may find the node gone already:
/// done. Returns the membership after it and how long it took.
async fn change(c: &SimCluster, change: Change) -> Result<(MembershipStatus, Duration), String> {
    let start = Instant::now();
    let mut last = String::from("no leader");
    let mut held_since: Option<Instant> = None;
    let done = |held_since: Option<Instant>| {
        if matches!(change, Change::Remove(_)) {
            c.record(
                "removal_held_ms",
                held_since.map_or(0.0, |t| ms(t.elapsed())),
            );
        }
    };
    while start.elapsed() < CHANGE_BOUND {
        if let Some(node) = c.leader().and_then(|l| c.node(l)) {
            match node.change_members(change, "").await {
                Ok(status) => {
                    done(held_since);
                    return Ok((status, start.elapsed()));
                }
                Err(MembershipError::Refused(r @ Refusal::AttestationOwed { .. })) => {
                    if held_since.is_none() {
                        held_since = Some(Instant::now());
                        c.note(format!("{change:?} held: {r}"));
                    }
                    last = r.to_string();
                }
                Err(MembershipError::Refused(Refusal::NotMember { .. }))
                    if matches!(change, Change::Remove(_)) =>
                {
                    done(held_since);
                    return Ok((node.members(), start.elapsed()));
                }
                Err(
                    e @ (MembershipError::Refused(
                        Refusal::NotLeader { .. } | Refusal::Changing | Refusal::NotCaughtUp { .. },
                    )
                    | MembershipError::L1Unread { .. }
                    | MembershipError::Raft(_)
                    | MembershipError::TimedOut(_)),
                ) => last = e.to_string(),
                Err(e) => return Err(format!("{change:?} refused: {e}")),
            }
        }
        madsim::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!(
        "liveness: {change:?} not done within {:.0}s (last: {last})",
        CHANGE_BOUND.as_secs_f64()
    ))
}

/// The membership's voters must be nodes `want`, with no learner left, and every live node's
/// chain must name them as its signers once a few more blocks are canonized.
async fn check_members(
    c: &SimCluster,
    status: &MembershipStatus,
    want: &BTreeSet<usize>,
) -> Result<(), String> {
    let want: BTreeSet<NodeId> = want.iter().map(|i| c.node_id(*i)).collect();
    let voters: BTreeSet<NodeId> = status.voters.iter().copied().collect();
    if voters != want || !status.learners.is_empty() || status.changing_to.is_some() {
        return Err(at(
            c,
            format!(
                "after the replacement Raft has voters {voters:?}, learners {:?}, changing to {:?}",
                status.learners, status.changing_to
            ),
        ));
    }
    // Blocks flow with the new member: it applies them and its votes certify them.
    c.wait_for_progress(10, HEAL_BOUND)
        .await
        .map_err(|e| at(c, e))?;
    for i in c.up_nodes() {
        let signers: BTreeSet<NodeId> = c
            .node(i)
            .map(|n| n.signers().current().iter().copied().collect())
            .unwrap_or_default();
        if signers != want {
            return Err(at(
                c,
                format!("n{i}'s chain names signers {signers:?}, not the new voters"),
            ));
        }
    }
    Ok(())
}

/// L1 lands every batch sealed by now, the ones naming new members included, and then holds
/// nodes `want` as its attesters.
async fn l1_follows(c: &SimCluster, want: &BTreeSet<usize>) -> Result<(), String> {
    c.wait_for_l1(L1_BOUND).await.map_err(|e| at(c, e))?;
    c.check_l1_attesters(want).map_err(|e| at(c, e))
}

/// Replaces `dead` (down for good, or still up and shut down once removed) by spare `fresh`,
/// in the order the seed draws, as an operator would; the membership after it.
async fn replace(
    c: &mut SimCluster,
    dead: usize,
    fresh: usize,
) -> Result<MembershipStatus, String> {
    let (dead_id, fresh_id) = (c.node_id(dead), c.node_id(fresh));
    // Operators do it in either order: the dead one out first (two voters, both needed
    // meanwhile), or the fresh one in first (four voters, three needed).
    let remove_first = c.rng.gen_bool(0.5);
    let order = if remove_first {
        "removing first"
    } else {
        "adding first"
    };
    c.note(format!("replace n{dead} by n{fresh}, {order}"));
    if remove_first {
        change(c, Change::Remove(dead_id))
            .await
            .map_err(|e| at(c, e))?;
    }
    c.join(fresh);
    change(c, Change::AddLearner(fresh_id))
        .await
        .map_err(|e| at(c, e))?;
    let (mut status, waited) = change(c, Change::Promote(fresh_id))
        .await
        .map_err(|e| at(c, e))?;
    c.note(format!(
        "n{fresh} promoted {:.3}s after it was added",
        waited.as_secs_f64()
    ));
    if !remove_first {
        status = change(c, Change::Remove(dead_id))
            .await
            .map_err(|e| at(c, e))?
            .0;
    }
    Ok(status)
}

/// The end of a replacement: external node `x` reaches the canonical head before anything is
/// healed (it followed the new signers on its own), then the heal and the final checks.
async fn external_follows_then_heal(c: &mut SimCluster, x: usize) -> Result<(), String> {
    let target = c.canonical_height();
    c.wait_for_external(x, target, EXTERNAL_BOUND)
        .await
        .map_err(|e| at(c, e))?;
    heal_and_check(c).await?;
    c.check_externals().map_err(|m| at(c, m))
}

pub(crate) fn replace_node(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        let cfg = ClusterConfig {
            spares: 1,
            ..ClusterConfig::default()
        };
        let (mut c, _) = running_cluster_with(&ctx, cfg).await?;
        let fresh = c.cfg.nodes;
        // An external node that downloads from the genesis members: it must follow the new
        // signer set from the certified block that declares it.
        let x = c.add_external(c.peers().to_vec());
        // Node 0 runs the batcher: one of the others dies, the leader or not, and the chain
        // goes on without it for a while, past a few snapshots, so the fresh node installs
        // one and downloads the blocks below it.
        let dead = c.rng.gen_range(1..c.cfg.nodes);
        c.retire(dead);
        let alone_blocks = c.rng.gen_range(20..120);
        c.wait_for_progress(alone_blocks, HEAL_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        let started = Instant::now();
        let status = replace(&mut c, dead, fresh).await?;
        c.record("replace_ms", ms(started.elapsed()));
        let want: BTreeSet<usize> = (0..=fresh).filter(|i| *i != dead).collect();
        check_members(&c, &status, &want).await?;
        l1_follows(&c, &want).await?;
        external_follows_then_heal(&mut c, x).await
    })
}

pub(crate) fn replace_twice(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        // Two of the three genesis members are gone by the end, so L1 lands batches only if
        // its attester set followed the chain's.
        let cfg = ClusterConfig {
            spares: 2,
            ..ClusterConfig::default()
        };
        let (mut c, _) = running_cluster_with(&ctx, cfg).await?;
        let (first, second) = (c.cfg.nodes, c.cfg.nodes + 1);
        let x = c.add_external(c.peers().to_vec());
        let dead = c.rng.gen_range(1..c.cfg.nodes);
        let other = 3 - dead;
        c.retire(dead);
        let status = replace(&mut c, dead, first).await?;
        check_members(&c, &status, &[0, other, first].into()).await?;
        // The first newcomer is made to lead (its predecessors crash in turn until it does),
        // so the second replacement is made by a leader no genesis member knows of: the
        // second newcomer takes its Raft traffic only because its operator listed the current
        // members as its boot peers.
        let trying = Instant::now();
        while trying.elapsed() < Duration::from_secs(30) {
            let Some(l) = c.leader() else {
                madsim::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            if l == first {
                break;
            }
            c.crash(l);
            let up = c.up_nodes();
            c.wait_for_leader(&up, c.cfg.election_bound())
                .await
                .map_err(|e| at(&c, e))?;
            // Back as a follower of whoever won, before the next look.
            c.restart(l);
            madsim::time::sleep(Duration::from_millis(1_000)).await;
        }
        let led_by_newcomer = c.leader() == Some(first);
        c.note(format!(
            "second replacement led by n{}",
            c.leader().map_or("?".into(), |l| l.to_string())
        ));
        c.record("led_by_newcomer", if led_by_newcomer { 1.0 } else { 0.0 });
        // The other genesis follower is replaced while it still runs; once removed it is
        // shut down.
        let status = replace(&mut c, other, second).await?;
        c.retire(other);
        let want: BTreeSet<usize> = [0, first, second].into();
        check_members(&c, &status, &want).await?;
        l1_follows(&c, &want).await?;
        external_follows_then_heal(&mut c, x).await
    })
}

/// Seconds of chaos's faults before each membership change.
const CHAOS_CHUNK_SECS: u64 = 5;

/// Undoes what a chunk of faults left: the network, L1 and disks healed, crashed nodes back
/// (a retired one stays gone).
fn heal(c: &mut SimCluster) {
    c.net.heal();
    c.l1.heal();
    c.heal_disks();
    for i in c.down_nodes() {
        c.restart(i);
    }
    c.note("fault: heal network, disks and crashed nodes");
}

pub(crate) fn membership_chaos(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        let cfg = ClusterConfig {
            spares: 1,
            batchers: vec![(0, 0), (1, 1)],
            ..ClusterConfig::default()
        };
        let (mut c, _) = running_cluster_with(&ctx, cfg).await?;
        let fresh = c.cfg.nodes;
        let x = c.add_external(c.peers().to_vec());
        // Any genesis node is replaced, the batcher's included (its standby takes over).
        let old = c.rng.gen_range(0..c.cfg.nodes);
        let (old_id, fresh_id) = (c.node_id(old), c.node_id(fresh));
        c.note(format!("replace n{old} by n{fresh} under chaos"));
        let steps = [
            Change::AddLearner(fresh_id),
            Change::Promote(fresh_id),
            Change::Remove(old_id),
        ];
        let mut status = None;
        for (step, what) in steps.into_iter().enumerate() {
            let schedule = draw_chaos(
                ctx.seed ^ (step as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                &ChaosMix {
                    nodes: c.size(),
                    externals: x + 1,
                    spare: SpareDraw::L1,
                    secs: CHAOS_CHUNK_SECS,
                    weights: Weights::CHAOS,
                },
            );
            check_fits(&schedule, c.size(), x + 1, true).map_err(|e| e.to_string())?;
            execute(&mut c, &schedule).await;
            if step == 0 {
                c.join(fresh);
            }
            // The change goes to the leader under whatever the faults left; half the time the
            // leader then crashes in the middle of it.
            if let Some(leader) = c.leader() {
                if let Some(node) = c.node(leader) {
                    madsim::task::spawn(async move {
                        let _ = node.change_members(what, "").await;
                    });
                }
                if c.rng.gen_bool(0.5) {
                    let after_ms = c.rng.gen_range(0..60);
                    madsim::time::sleep(Duration::from_millis(after_ms)).await;
                    c.note(format!(
                        "leader n{leader} crashes {after_ms} ms into {what:?}"
                    ));
                    c.crash(leader);
                }
            }
            madsim::time::sleep(Duration::from_millis(c.rng.gen_range(0..2_000))).await;
            heal(&mut c);
            status = Some(change(&c, what).await.map_err(|e| at(&c, e))?.0);
        }
        // Removed, the old node is shut down for good: it no longer follows the chain.
        c.retire(old);
        let want: BTreeSet<usize> = (0..=fresh).filter(|i| *i != old).collect();
        let status = status.ok_or("no membership change was made")?;
        check_members(&c, &status, &want).await?;
        l1_follows(&c, &want).await?;
        heal_and_check(&mut c).await?;
        c.check_externals().map_err(|m| at(&c, m))
    })
}

//! Raft consensus scenarios (seed 000): failover, elections, restarts, snapshots, partitions,
//! slow links and chaos.

use std::time::Duration;

use rand::seq::SliceRandom;
use rand::Rng;

use super::common::{
    at, heal_and_check, ms, running_cluster, running_cluster_with, sleep_ms, CLIENT_INTERVAL,
    HEAL_BOUND, PROGRESS_BLOCKS,
};
use crate::client::spawn_client;
use crate::cluster::ClusterConfig;
use crate::lying_peer::ServingLie;
use crate::scenario::{Ctx, ScenarioFuture};
use crate::schedule::exec::check_fits;
use crate::schedule::{draw_chaos, execute, ChaosMix, SpareDraw, Swarm, Swarming, Weights};

pub(crate) fn leader_failover(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        let (mut c, old) = running_cluster(&ctx).await?;
        let bound = c.cfg.election_bound();
        c.crash(old);
        let rest = c.up_nodes();
        let (new, took) = c
            .wait_for_leader(&rest, bound)
            .await
            .map_err(|e| at(&c, e))?;
        c.note(format!(
            "n{new} leads {:.3}s after n{old} stopped",
            took.as_secs_f64()
        ));
        c.record("failover_ms", ms(took));
        c.wait_for_progress(PROGRESS_BLOCKS, HEAL_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        sleep_ms(1_000).await;
        c.restart(old);
        let target = c.canonical_height();
        c.wait_for_height(&[old], target, HEAL_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        let status = c
            .node(old)
            .map(|n| n.status())
            .ok_or("restarted node is not running")?;
        if status.is_leader {
            return Err(at(
                &c,
                format!("n{old} came back as leader instead of follower"),
            ));
        }
        c.record("rejoined_as_follower", 1.0);
        heal_and_check(&mut c).await
    })
}

pub(crate) fn slow_links(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        // A 25 ms block time: a commit takes longer than a block time, so a block per block
        // time needs several in flight. openraft 0.9 keeps one AppendEntries out per follower,
        // so an entry may wait a round trip for the one before it, then its own, then a tick
        // for the sequencer to learn of it: up to about 100 ms, four block times; eight in
        // flight leave room for a slow fsync.
        let cfg = ClusterConfig {
            block_time_ms: 25,
            max_blocks_in_flight: 8,
            ..ClusterConfig::default()
        };
        let (mut c, _) = running_cluster_with(&ctx, cfg).await?;
        // openraft 0.9 gives an AppendEntries (and a leadership confirmation) one heartbeat
        // interval to come back (50 ms here); at 18-20 ms each way the leader's requests began
        // to time out and it lost its quorum every two seconds. 10-15 ms each way stays clear.
        let one_way_ms = c.rng.gen_range(10..=13);
        c.net.set_extra_delay_ms(one_way_ms, one_way_ms + 2);
        c.note(format!(
            "fault: every link delays {one_way_ms}-{} ms",
            one_way_ms + 2
        ));
        // Let the cluster settle into the new round trip before measuring.
        sleep_ms(2_000).await;
        let window_ms: u64 = 10_000;
        let start = c.canonical_height();
        let mut max_in_flight = 0;
        for _ in 0..window_ms / 20 {
            sleep_ms(20).await;
            let most = c
                .up_nodes()
                .into_iter()
                .filter_map(|i| c.node(i).map(|n| n.status().proposals_in_flight))
                .max()
                .unwrap_or(0);
            max_in_flight = max_in_flight.max(most);
        }
        let blocks = c.canonical_height() - start;
        let per_block_time = blocks as f64 * c.cfg.block_time_ms as f64 / window_ms as f64;
        c.record("blocks_per_block_time", per_block_time);
        c.record("max_proposals_in_flight", max_in_flight as f64);
        // One proposal at a time waits for its commit (over 30 ms) before the next tick
        // proposes again: at most one block per two block times.
        if per_block_time < 0.85 {
            return Err(at(
                &c,
                format!(
                    "{blocks} blocks in {window_ms} ms with a {one_way_ms} ms one-way delay: \
                     {per_block_time:.2} per block time, expected at least 0.85"
                ),
            ));
        }
        if max_in_flight < 2 {
            return Err(at(
                &c,
                format!("the leader never had two proposals in flight ({max_in_flight})"),
            ));
        }
        // The leader dies with proposals in flight: whatever of them was canonized stays, the
        // rest are gone with it, and the next leader goes on from the canonical head.
        let leader = c.leader().ok_or("no leader to crash")?;
        c.crash(leader);
        let rest = c.up_nodes();
        c.wait_for_leader(&rest, c.cfg.election_bound() * 2)
            .await
            .map_err(|e| at(&c, e))?;
        c.wait_for_progress(PROGRESS_BLOCKS, HEAL_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        heal_and_check(&mut c).await
    })
}

pub(crate) fn bootstrap_race(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        let mut c = ctx.cluster(ClusterConfig::default());
        spawn_client(&c, ctx.seed, CLIENT_INTERVAL);
        let all = c.up_nodes();
        let (_, took) = c
            .wait_for_leader(&all, Duration::from_secs(10))
            .await
            .map_err(|e| at(&c, e))?;
        c.record("first_leader_ms", ms(took));
        c.wait_for_progress(10, HEAL_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        // One membership: every node reports the same voter set.
        let mut memberships = Vec::new();
        for i in c.up_nodes() {
            if let Some(n) = c.node(i) {
                let m = n.raft().metrics().borrow().membership_config.clone();
                memberships.push(m.membership().voter_ids().collect::<Vec<_>>());
            }
        }
        if memberships.windows(2).any(|w| w[0] != w[1])
            || memberships.first().map(|m| m.len()) != Some(c.size())
        {
            return Err(at(
                &c,
                format!("nodes disagree on membership: {memberships:?}"),
            ));
        }
        c.record("voters", memberships.first().map_or(0, Vec::len) as f64);
        heal_and_check(&mut c).await
    })
}

pub(crate) fn quorum_loss(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        let (mut c, _) = running_cluster(&ctx).await?;
        let all = c.up_nodes();
        let mut victims = all.clone();
        victims.shuffle(&mut c.rng);
        let (a, b) = (victims[0], victims[1]);
        c.crash(a);
        c.crash(b);
        // Whatever was committed before the crash may still be applied by the survivor.
        sleep_ms(2_000).await;
        let frozen = c.canonical_height();
        sleep_ms(5_000).await;
        c.record(
            "advanced_without_quorum",
            (c.canonical_height() - frozen) as f64,
        );
        if c.canonical_height() != frozen {
            return Err(at(
                &c,
                format!(
                    "head advanced from {frozen} to {} with 2 of 3 nodes down",
                    c.canonical_height()
                ),
            ));
        }
        c.restart(a);
        c.restart(b);
        heal_and_check(&mut c).await
    })
}

pub(crate) fn follower_restart(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        let (mut c, leader) = running_cluster(&ctx).await?;
        let all = c.up_nodes();
        let followers: Vec<usize> = all.iter().copied().filter(|i| *i != leader).collect();
        let f = followers[c.rng.gen_range(0..followers.len())];
        c.crash(f);
        c.wait_for_progress(20, HEAL_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        c.restart(f);
        let target = c.canonical_height();
        let took = c
            .wait_for_height(&[f], target, HEAL_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        c.record("catchup_ms", ms(took));
        heal_and_check(&mut c).await
    })
}

pub(crate) fn snapshot_catchup(ctx: Ctx) -> ScenarioFuture {
    snapshot_catchup_with(ctx, false)
}

/// `snapshot-catchup` with the node's peers lying in every block range they serve (how, by
/// seed) until it refuses one of them, then only that one: each lie is refused by its rule,
/// and the node fills its gap from the honest peer.
pub(crate) fn lying_backfill(ctx: Ctx) -> ScenarioFuture {
    snapshot_catchup_with(ctx, true)
}

fn snapshot_catchup_with(ctx: Ctx, lying: bool) -> ScenarioFuture {
    Box::pin(async move {
        let (mut c, leader) = running_cluster(&ctx).await?;
        let followers: Vec<usize> = c.up_nodes().into_iter().filter(|i| *i != leader).collect();
        let f = followers[c.rng.gen_range(0..followers.len())];
        let crash_mid_download = c.rng.gen_bool(0.5);
        let lie = ServingLie::ALL[(ctx.seed % ServingLie::ALL.len() as u64) as usize];
        // Every peer lies until the node has refused one of them: which it asks first depends
        // on whether it knows the leader yet. Then all but the refused one turn honest.
        let peers: Vec<usize> = c.up_nodes().into_iter().filter(|i| *i != f).collect();
        if lying {
            for p in &peers {
                c.lie_when_serving(*p, Some(lie));
            }
        }
        c.crash(f);
        // Several snapshots' worth of entries: the leader's log no longer reaches n{f}'s.
        let behind = c.cfg.snapshot_interval_entries * c.rng.gen_range(2..6);
        let bound = Duration::from_millis(behind * c.cfg.block_time_ms * 2) + HEAL_BOUND;
        c.wait_for_progress(behind, bound)
            .await
            .map_err(|e| at(&c, e))?;
        c.restart(f);
        let start = madsim::time::Instant::now();
        while !c.observer.lock().installed_on.contains(&f) {
            if start.elapsed() > HEAL_BOUND {
                return Err(at(
                    &c,
                    format!("n{f} never installed a snapshot, {behind} blocks behind"),
                ));
            }
            sleep_ms(10).await;
        }
        c.record("install_ms", ms(start.elapsed()));
        if lying {
            let refused = loop {
                let first = c
                    .observer
                    .lock()
                    .checker
                    .refused_backfills()
                    .iter()
                    .find(|(n, _, _)| *n == f)
                    .map(|(_, source, _)| *source);
                if let Some(source) = first {
                    break source;
                }
                if start.elapsed() > HEAL_BOUND {
                    return Err(at(&c, format!("n{f} never refused a lying peer's blocks")));
                }
                sleep_ms(10).await;
            };
            let honest: Vec<usize> = peers
                .iter()
                .copied()
                .filter(|p| c.node_id(*p) != refused)
                .collect();
            for p in honest {
                c.lie_when_serving(p, None);
            }
        }
        if crash_mid_download {
            sleep_ms(c.rng.gen_range(0..300)).await;
            c.crash(f);
            sleep_ms(500).await;
            c.restart(f);
        }
        c.wait_for_backfill(&[f], HEAL_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        c.record("backfill_ms", ms(start.elapsed()));
        if lying {
            let kinds: Vec<String> = c
                .observer
                .lock()
                .checker
                .refused_backfills()
                .iter()
                .filter(|(n, _, _)| *n == f)
                .map(|(_, _, kind)| kind.clone())
                .collect();
            if kinds.iter().any(|k| k != lie.rule()) {
                return Err(at(
                    &c,
                    format!(
                        "n{f} must refuse the {lie:?} lie by the {} rule, refused {kinds:?}",
                        lie.rule()
                    ),
                ));
            }
            c.record("lies_refused", kinds.len() as f64);
            for p in &peers {
                c.lie_when_serving(*p, None);
            }
        }
        let target = c.canonical_height();
        c.wait_for_height(&c.up_nodes(), target, HEAL_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        // Catching up to the head may have taken a second snapshot (the first one sent can be
        // an older one than the leader's latest), which leaves a gap of its own to fill.
        c.wait_for_backfill(&[f], HEAL_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        c.check_complete_chains().map_err(|e| at(&c, e))?;
        // It serves what it backfilled with the certificates that came with it: an external
        // node whose only source it is replays the whole chain.
        let x = c.add_external(vec![c.node_id(f)]);
        c.wait_for_external(x, target, HEAL_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        // A snapshot every interval, `keep` entries behind it, and what is in flight.
        let bound = c.cfg.snapshot_interval_entries + c.cfg.log_keep_entries + 32;
        c.check_log_bounded(bound).map_err(|e| at(&c, e))?;
        heal_and_check(&mut c).await
    })
}

pub(crate) fn asymmetric_partition(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        let mut c = ctx.cluster(ClusterConfig::default());
        spawn_client(&c, ctx.seed, CLIENT_INTERVAL);
        // Stepping down takes twice the max election timeout; then an election.
        let bound =
            c.cfg.election_bound() + Duration::from_millis(c.cfg.election_timeout_ms_max * 2);
        let all = c.up_nodes();
        for send_only in [true, false] {
            let (leader, _) = c
                .wait_for_leader(&all, HEAL_BOUND)
                .await
                .map_err(|e| at(&c, e))?;
            c.wait_for_progress(PROGRESS_BLOCKS, HEAL_BOUND)
                .await
                .map_err(|e| at(&c, e))?;
            for other in all.iter().copied().filter(|o| *o != leader) {
                if send_only {
                    c.net.block(other, leader);
                } else {
                    c.net.block(leader, other);
                }
            }
            c.note(format!(
                "fault: n{leader} can {} only",
                if send_only { "send" } else { "receive" }
            ));
            let cut_at = c.observer.lock().now();
            let rest: Vec<usize> = all.iter().copied().filter(|o| *o != leader).collect();
            let (new, took) = c
                .wait_for_leader(&rest, bound)
                .await
                .map_err(|e| at(&c, e))?;
            c.note(format!(
                "n{new} leads {:.3}s after the partition",
                took.as_secs_f64()
            ));
            c.record("failover_ms", ms(took));
            // Check-quorum: a leader that cannot reach a quorum stops leading within
            // 2 x election_timeout_max (or sooner, when a new leader's term reaches it).
            let limit = Duration::from_millis(c.cfg.election_timeout_ms_max * 2);
            let ended = c
                .wait_for_leadership_end(leader, cut_at, limit)
                .await
                .map_err(|e| at(&c, e))?;
            c.record("old_leader_stopped_ms", ms(ended));
            // The partitioned node may not hear the new leader; the majority must progress.
            let target = c.canonical_height() + PROGRESS_BLOCKS;
            c.wait_for_height(&rest, target, HEAL_BOUND)
                .await
                .map_err(|e| at(&c, e))?;
            c.net.heal();
            c.note("fault: heal network");
            let target = c.canonical_height();
            c.wait_for_height(&all, target, HEAL_BOUND)
                .await
                .map_err(|e| at(&c, e))?;
        }
        heal_and_check(&mut c).await
    })
}

const CHAOS_SECS: u64 = 60;

pub(crate) fn chaos(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        // The main batcher and a level-1 standby, both hit by crashes like every node.
        let mut cfg = ClusterConfig {
            batchers: vec![(0, 0), (1, 1)],
            ..ClusterConfig::default()
        };
        // Swarm testing: the seed shapes the cluster and weighs the fault mix.
        let (said, weights) = match ctx.swarm {
            Swarming::On => {
                let swarm = Swarm::draw(ctx.seed);
                swarm.apply(&mut cfg);
                (format!("swarm: {swarm}"), swarm.weights)
            }
            Swarming::Off => (
                format!("swarm: off, the fixed shape, mix={}", Weights::CHAOS),
                Weights::CHAOS,
            ),
        };
        ctx.describe(said.clone());
        let mut c = ctx.cluster(cfg);
        c.note(said);
        spawn_client(&c, ctx.seed, CLIENT_INTERVAL);
        // An external node follows throughout, checking every block's certificate while its
        // sources crash, lose power, split and lose their disks, and crashes itself now and
        // then.
        let x = c.add_external(c.peers().to_vec());
        let schedule = ctx.schedule(|| {
            draw_chaos(
                ctx.seed,
                &ChaosMix {
                    nodes: c.size(),
                    externals: x + 1,
                    spare: SpareDraw::L1,
                    secs: CHAOS_SECS,
                    weights,
                },
            )
        });
        check_fits(&schedule, c.size(), x + 1, true).map_err(|e| e.to_string())?;
        execute(&mut c, &schedule).await;
        // The external node is restarted and waited for by the heal.
        heal_and_check(&mut c).await?;
        c.check_externals().map_err(|e| at(&c, e))
    })
}

pub(crate) fn sabotage_lying_disk(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        let mut c = ctx.cluster(ClusterConfig::default());
        let all = c.up_nodes();
        let (leader, _) = c
            .wait_for_leader(&all, Duration::from_secs(10))
            .await
            .map_err(|e| at(&c, e))?;
        c.wait_for_progress(5, HEAL_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        let victim = (leader + 1) % c.size();
        c.crash(victim);
        c.wipe_disk(victim);
        c.restart(victim);
        heal_and_check(&mut c).await
    })
}

//! The named scenarios. Each states its own liveness bound; the checker watches safety in all.

use std::time::Duration;

use rand::seq::SliceRandom;
use rand::Rng;

use crate::batcher_scenarios::{
    batcher_crash, batcher_l1_partition, batcher_restart, batcher_zombie, l1_outage, l1_weather,
    two_batchers,
};
use crate::client::spawn_client;
use crate::cluster::{ClusterConfig, SimCluster};
use crate::external::Tamper;
use crate::redundancy_scenarios::{
    redundancy_cascade, redundancy_chaos, redundancy_chaos_fenced, redundancy_clock_skew,
    redundancy_crash_while_signing, redundancy_main_crash, redundancy_main_returns,
    redundancy_never_sign, redundancy_partition, redundancy_partition_fenced,
    redundancy_same_level, redundancy_spoofed_main,
};
use crate::scenario::{Ctx, Scenario, ScenarioFuture};

pub static SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "leader-failover",
        description: "3 nodes: stop the leader, another leads within the bound and blocks continue; the old leader restarts, rejoins as follower and catches up",
        body: leader_failover,
        sim_time_limit: Duration::from_secs(120),
    },
    Scenario {
        name: "bootstrap-race",
        description: "every node bootstraps at the same instant: one membership, one leader, blocks flow",
        body: bootstrap_race,
        sim_time_limit: Duration::from_secs(60),
    },
    Scenario {
        name: "quorum-loss",
        description: "2 of 3 nodes down: the head does not advance; both back: it does",
        body: quorum_loss,
        sim_time_limit: Duration::from_secs(120),
    },
    Scenario {
        name: "follower-restart",
        description: "a follower crashes (losing unsynced writes), misses blocks, restarts and catches up",
        body: follower_restart,
        sim_time_limit: Duration::from_secs(120),
    },
    Scenario {
        name: "snapshot-catchup",
        description: "a follower is down while the leader compacts its log far past it: back, it installs a snapshot, downloads the blocks it lacks (sometimes crashing mid-download), cuts their batches again, and ends with every block and batch; every log stays bounded",
        body: snapshot_catchup,
        sim_time_limit: Duration::from_secs(180),
    },
    Scenario {
        name: "asymmetric-partition",
        description: "the leader can send but not receive, then receive but not send: a leader again within the bound each time",
        body: asymmetric_partition,
        sim_time_limit: Duration::from_secs(180),
    },
    Scenario {
        name: "slow-links",
        description: "every link delays each message by 10-15 ms, so a commit takes longer than the 25 ms block time: the leader pipelines its proposals and still canonizes a block per block time; then it crashes with its pipeline full, another leads, and nothing canonized is lost",
        body: slow_links,
        sim_time_limit: Duration::from_secs(120),
    },
    Scenario {
        name: "chaos",
        description: "60 simulated seconds of seeded crashes, restarts, partitions, loss, delay and failing disks; then heal and check liveness",
        body: chaos,
        sim_time_limit: Duration::from_secs(300),
    },
    Scenario {
        name: "external-catchup",
        description: "an external node starts after 1,000 canonized blocks, downloads and replays them, then follows the head",
        body: external_catchup,
        sim_time_limit: Duration::from_secs(300),
    },
    Scenario {
        name: "external-restart",
        description: "an external node crashes mid-replay (only synced data survives), restarts and catches up with no gap and no duplicate",
        body: external_restart,
        sim_time_limit: Duration::from_secs(300),
    },
    Scenario {
        name: "external-partition",
        description: "an external node is cut off from every source for a while, then catches up",
        body: external_partition,
        sim_time_limit: Duration::from_secs(180),
    },
    Scenario {
        name: "external-failover",
        description: "the cluster loses its leader while an external node follows; it keeps following the new leader's blocks",
        body: external_failover,
        sim_time_limit: Duration::from_secs(180),
    },
    Scenario {
        name: "lying-source",
        description: "one source serves tampered blocks (bad signature, bad state root, wrong parent, or a transaction not signed by its sender, each re-signed with the proposer's key): rejected by that rule, never applied; the node still reaches the head",
        body: lying_source,
        sim_time_limit: Duration::from_secs(180),
    },
    Scenario {
        name: "external-chain",
        description: "an external node whose only source is another external node follows the head",
        body: external_chain,
        sim_time_limit: Duration::from_secs(180),
    },
    Scenario {
        name: "redundancy-main-crash",
        description: "single-sequencer mode, levels 0, 1, 2: the main crashes after round r; level 1 signs exactly round r+6, level 2 never",
        body: redundancy_main_crash,
        sim_time_limit: Duration::from_secs(120),
    },
    Scenario {
        name: "redundancy-cascade",
        description: "levels 0, 1, 3 with 0 and 1 down: level 3 signs exactly round r+16",
        body: redundancy_cascade,
        sim_time_limit: Duration::from_secs(120),
    },
    Scenario {
        name: "redundancy-never-sign",
        description: "levels -1 and 1,000,000 never sign, even alone for a hundred rounds; they follow the main when it returns",
        body: redundancy_never_sign,
        sim_time_limit: Duration::from_secs(120),
    },
    Scenario {
        name: "redundancy-main-returns",
        description: "the main returns after level 1 took over: it syncs, announces, waits for the standby's last height; the standby reverts; no height or round signed twice; an external node follows throughout",
        body: redundancy_main_returns,
        sim_time_limit: Duration::from_secs(120),
    },
    Scenario {
        name: "redundancy-same-level",
        description: "two members at level 1: both report it, the later-started one yields and never signs; the earlier one takes over at r+6",
        body: redundancy_same_level,
        sim_time_limit: Duration::from_secs(120),
    },
    Scenario {
        name: "redundancy-spoofed-main",
        description: "a host claims the main's key with forged, missing and altered signatures: the standby still takes over at exactly r+6 and never reverts",
        body: redundancy_spoofed_main,
        sim_time_limit: Duration::from_secs(120),
    },
    Scenario {
        name: "redundancy-clock-skew",
        description: "members' clocks off by up to a third of a round: level 1 still signs exactly r+6, and the main's return signs no round twice",
        body: redundancy_clock_skew,
        sim_time_limit: Duration::from_secs(120),
    },
    Scenario {
        name: "redundancy-crash-while-signing",
        description: "the main crashes on its sign path (guard written but block not; block stored but never sent; anywhere in a round) and stays down 1-19 rounds: no round is ever signed twice, a height signed twice is resolved by the fork rule, and all end on one chain with the main signing",
        body: redundancy_crash_while_signing,
        sim_time_limit: Duration::from_secs(120),
    },
    Scenario {
        name: "redundancy-chaos",
        description: "chaos's mix on a group of levels 0, 1, 2 and an external node for 30 s (crashes, restarts, isolation, one-way drops, loss, delay, clock jumps, disk faults): no machine signs two blocks for one height or round, every chain is the identity's, and after healing all end on one chain with the main signing",
        body: redundancy_chaos,
        sim_time_limit: Duration::from_secs(180),
    },
    Scenario {
        name: "redundancy-partition",
        description: "unfenced: a partition cuts the main off from levels 1, 2 and an external node; both sides sign (the run sees the double signature), followers report it, and after the heal all end on the main's branch by the fork rule, rolled back without a wipe",
        body: redundancy_partition,
        sim_time_limit: Duration::from_secs(120),
    },
    Scenario {
        name: "redundancy-partition-fenced",
        description: "fenced: the same partition; the cut-off main cannot gather a majority and signs nothing, level 1 takes over with the majority's agreement, and after the heal the main catches up and signs again; no height or round is ever signed twice",
        body: redundancy_partition_fenced,
        sim_time_limit: Duration::from_secs(120),
    },
    Scenario {
        name: "redundancy-chaos-fenced",
        description: "redundancy-chaos on a fenced group: the identity never signs two blocks for one height or round, whatever crashes, partitions, clock jumps and disk faults hit it",
        body: redundancy_chaos_fenced,
        sim_time_limit: Duration::from_secs(180),
    },
    Scenario {
        name: "l1-outage",
        description: "L1 is down for 30 s: batches go on being sealed and attested and queue; when L1 returns they commit in order, nothing skipped or sent twice",
        body: l1_outage,
        sim_time_limit: Duration::from_secs(180),
    },
    Scenario {
        name: "batcher-restart",
        description: "the batcher's node is killed mid-submit three times (sometimes after its batch landed but before the receipt): each time it resumes from L1's head with no gap and nothing sent twice",
        body: batcher_restart,
        sim_time_limit: Duration::from_secs(180),
    },
    Scenario {
        name: "two-batchers",
        description: "misconfigured with batcher_enabled on two nodes at level 0: both claim the role, Raft's compare-and-set makes one winner, the other reports the conflict, and L1 gets one commit per batch number",
        body: two_batchers,
        sim_time_limit: Duration::from_secs(180),
    },
    Scenario {
        name: "l1-weather",
        description: "L1 outages, lost transactions and lost receipts, seeded: the batcher backs off, re-reads the head, and L1 ends holding every sealed batch once, in order",
        body: l1_weather,
        sim_time_limit: Duration::from_secs(180),
    },
    Scenario {
        name: "batcher-crash",
        description: "the main batcher (level 0) crashes; the level-1 standby claims the role through Raft after exactly 1 x N batch rounds of L1 standing still, commits what queued up with L1 contiguous, and the main takes the role back when it returns",
        body: batcher_crash,
        sim_time_limit: Duration::from_secs(180),
    },
    Scenario {
        name: "batcher-zombie",
        description: "the main batcher's L1 transactions are held and it is cut off from the consensus while it still believes it is the batcher; the standby takes over at epoch 2, and every transaction of the old batcher that lands afterwards reverts; healed, the old batcher stands by until it restarts, then takes the role back",
        body: batcher_zombie,
        sim_time_limit: Duration::from_secs(180),
    },
    Scenario {
        name: "batcher-l1-partition",
        description: "the level-1 standby's own path to L1 is cut while the main and L1 are fine: it never claims while cut, the main keeps committing; the main then dies during a second cut, and the standby claims only after it reaches L1 again and 1 x N rounds counted from there",
        body: batcher_l1_partition,
        sim_time_limit: Duration::from_secs(240),
    },
];

/// Scenarios that break the model on purpose (a disk that loses synced data) to prove the
/// checker catches it and the failure path reports it. They must fail; `list` hides them.
pub static SABOTAGE: &[Scenario] = &[Scenario {
    name: "sabotage-lying-disk",
    description:
        "a follower's disk loses synced data; the checker must report lost canonized blocks",
    body: sabotage_lying_disk,
    sim_time_limit: Duration::from_secs(60),
}];

pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().chain(SABOTAGE).find(|s| s.name == name)
}

fn sabotage_lying_disk(ctx: Ctx) -> ScenarioFuture {
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

/// Blocks that must follow a recovery before it counts as live.
const PROGRESS_BLOCKS: u64 = 3;
/// Liveness bound once faults stop: election, catch-up and three blocks.
pub(crate) const HEAL_BOUND: Duration = Duration::from_secs(20);
const CLIENT_INTERVAL: Duration = Duration::from_millis(25);

fn ms(d: Duration) -> f64 {
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

fn leader_failover(ctx: Ctx) -> ScenarioFuture {
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

fn slow_links(ctx: Ctx) -> ScenarioFuture {
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

fn bootstrap_race(ctx: Ctx) -> ScenarioFuture {
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

fn quorum_loss(ctx: Ctx) -> ScenarioFuture {
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

fn follower_restart(ctx: Ctx) -> ScenarioFuture {
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

fn snapshot_catchup(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        let (mut c, leader) = running_cluster(&ctx).await?;
        let followers: Vec<usize> = c.up_nodes().into_iter().filter(|i| *i != leader).collect();
        let f = followers[c.rng.gen_range(0..followers.len())];
        let crash_mid_download = c.rng.gen_bool(0.5);
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
        let target = c.canonical_height();
        c.wait_for_height(&c.up_nodes(), target, HEAL_BOUND)
            .await
            .map_err(|e| at(&c, e))?;
        c.check_complete_chains().map_err(|e| at(&c, e))?;
        // A snapshot every interval, `keep` entries behind it, and what is in flight.
        let bound = c.cfg.snapshot_interval_entries + c.cfg.log_keep_entries + 32;
        c.check_log_bounded(bound).map_err(|e| at(&c, e))?;
        heal_and_check(&mut c).await
    })
}

fn asymmetric_partition(ctx: Ctx) -> ScenarioFuture {
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

pub const CHAOS_SECS: u64 = 60;

fn chaos(ctx: Ctx) -> ScenarioFuture {
    Box::pin(async move {
        // The main batcher and a level-1 standby, both hit by crashes like every node.
        let cfg = ClusterConfig {
            batchers: vec![(0, 0), (1, 1)],
            ..ClusterConfig::default()
        };
        let mut c = ctx.cluster(cfg);
        spawn_client(&c, ctx.seed, CLIENT_INTERVAL);
        let n = c.size();
        let start = std::time::Instant::now();
        while start.elapsed() < Duration::from_secs(CHAOS_SECS) {
            let pause = c.rng.gen_range(200..2_000);
            sleep_ms(pause).await;
            match c.rng.gen_range(0..14) {
                0 | 1 => {
                    let up = c.up_nodes();
                    if let Some(&i) = up.choose(&mut c.rng) {
                        c.crash(i);
                    }
                }
                2 | 3 => {
                    let down = c.down_nodes();
                    if let Some(&i) = down.choose(&mut c.rng) {
                        c.restart(i);
                    }
                }
                4 => {
                    let i = c.rng.gen_range(0..n);
                    c.net.isolate(i);
                    c.note(format!("fault: isolate n{i}"));
                }
                5 => {
                    let from = c.rng.gen_range(0..n);
                    let to = (from + c.rng.gen_range(1..n)) % n;
                    c.net.block(from, to);
                    c.note(format!("fault: drop n{from} -> n{to}"));
                }
                6 => {
                    let loss = c.rng.gen_range(0..300);
                    c.net.set_loss_permille(loss);
                    c.note(format!("fault: lose {loss}/1000 messages"));
                }
                7 => {
                    let max = c.rng.gen_range(0..150);
                    c.net.set_extra_delay_ms(0, max);
                    c.note(format!("fault: delay messages up to {max} ms"));
                }
                8 => {
                    c.net.heal();
                    c.note("fault: heal network");
                }
                10 => {
                    let i = c.rng.gen_range(0..n);
                    let delta = c.rng.gen_range(-30_000..=30_000);
                    c.jump_clock(i, delta);
                }
                9 => {
                    if c.rng.gen_bool(0.5) {
                        let i = c.rng.gen_range(0..n);
                        c.fail_disk_writes(i);
                    } else {
                        c.heal_disks();
                    }
                }
                12 => match c.rng.gen_range(0..4) {
                    0 => c.l1.set_up(false),
                    1 => c.l1.set_up(true),
                    2 => c.l1.drop_next(c.rng.gen_range(1..4)),
                    _ => c.l1.lose_receipts(c.rng.gen_range(1..3)),
                },
                _ => {
                    if let Some(l) = c.leader() {
                        c.crash(l);
                    }
                }
            }
        }
        heal_and_check(&mut c).await
    })
}

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

fn external_catchup(ctx: Ctx) -> ScenarioFuture {
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

fn external_restart(ctx: Ctx) -> ScenarioFuture {
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

fn external_partition(ctx: Ctx) -> ScenarioFuture {
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

fn external_failover(ctx: Ctx) -> ScenarioFuture {
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

fn lying_source(ctx: Ctx) -> ScenarioFuture {
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

fn external_chain(ctx: Ctx) -> ScenarioFuture {
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

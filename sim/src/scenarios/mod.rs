//! The named scenarios, by part: Raft consensus (`raft`), external nodes (`external`), the L1
//! batcher (`batcher`), single-sequencer redundancy (`redundancy`); `common` holds what they
//! share (bounds, the running cluster, the final heal and checks). Each scenario states its own
//! liveness bound; the checker watches safety in all.

mod batcher;
mod common;
mod disk;
mod external;
mod kv;
mod membership;
mod network;
mod raft;
mod redundancy;

use std::time::Duration;

use crate::scenario::Scenario;
use batcher::{
    batcher_crash, batcher_l1_partition, batcher_restart, batcher_zombie, l1_outage, l1_weather,
    two_batchers,
};
use disk::{disk_corruption, misdirected_write, slow_disk, torn_write};
use external::{
    external_catchup, external_chain, external_disk_rot, external_failover, external_partition,
    external_restart, lying_source,
};
use kv::{kv_chaos, kv_linearizable};
use membership::{membership_chaos, replace_node, replace_twice};
use network::hostile_network;
use raft::{
    asymmetric_partition, bootstrap_race, chaos, follower_restart, leader_failover, lying_backfill,
    quorum_loss, sabotage_lying_disk, slow_links, snapshot_catchup,
};
use redundancy::{
    redundancy_cascade, redundancy_chaos, redundancy_chaos_fenced, redundancy_clock_skew,
    redundancy_crash_while_signing, redundancy_main_crash, redundancy_main_returns,
    redundancy_never_sign, redundancy_partition, redundancy_partition_fenced,
    redundancy_same_level, redundancy_spoofed_main,
};

pub static SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "replace-node",
        description: "3 nodes: one (the leader or not) dies for good; a fresh machine starts in no membership, the leader adds it as a learner, promotes it once it has caught up and removes the dead one, while clients submit, blocks flow, L1 batches land and an external node follows the chain's new signers",
        body: replace_node,
        sim_time_limit: Duration::from_secs(180),
    },
    Scenario {
        name: "replace-twice",
        description: "replace-node, then the newcomer is made to lead (its predecessors crash in turn until it does) and replaces the other genesis follower with a second fresh machine, which knows the current members only as its boot peers; the old node is shut down once removed",
        body: replace_twice,
        sim_time_limit: Duration::from_secs(240),
    },
    Scenario {
        name: "membership-chaos",
        description: "a genesis node (the batcher's, the leader or any) is replaced by a fresh one, each step (add learner, promote, remove) after 5 s of chaos's faults and handed to the leader under what they left, half the time with the leader crashing in the middle of it; then the old node is shut down, and voters, signers, L1 and an external node must follow",
        body: membership_chaos,
        sim_time_limit: Duration::from_secs(300),
    },
    Scenario {
        name: "kv-linearizable",
        description: "the key-value application: 5 clients put, delete, compare-and-set and read 3 keys through random nodes while leaders crash, a node is cut off from its peers but not its clients, and clocks jump; every operation's invocation and completion (timeouts included) is recorded and the history must be linearizable",
        body: kv_linearizable,
        sim_time_limit: Duration::from_secs(120),
    },
    Scenario {
        name: "kv-chaos",
        description: "kv-linearizable's clients and check under 40 simulated seconds of chaos's faults but L1's: crashes and power losses, partitions, loss, delay, failing disk writes, clock jumps of up to 30 s, stream faults",
        body: kv_chaos,
        sim_time_limit: Duration::from_secs(180),
    },
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
        name: "lying-backfill",
        description: "snapshot-catchup with the node's peers lying in every block range they serve until it refuses one, then only that one, by seed: a tampered transaction, two blocks swapped, another chain's block, another height's certificate; each refused by its rule, the gap filled from the honest peer",
        body: lying_backfill,
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
        name: "disk-corruption",
        description: "each node in turn has bits rot at rest, bits flipped on the way back and writes misdirected under other keys, mostly followed by a crash and restart; then four more spells on one node each. A node that reads a corrupt record stops and restarts; its start-up scrub repairs what it can from its peers (forgetting what Raft replicated and abstaining from elections until it has applied past it) and halts, saying why, on a damaged vote. Never a fork, a lost block or a double signature; every node not halted catches up",
        body: disk_corruption,
        sim_time_limit: Duration::from_secs(300),
    },
    Scenario {
        name: "misdirected-write",
        description: "disk-corruption's shape with every lie a write that lands under another key: the stray record fails its check (the key is in the checksum) and the write it was meant for leaves a hole the start-up scrub sees; the node repairs from peers, or halts when the stray may have been its vote",
        body: misdirected_write,
        sim_time_limit: Duration::from_secs(300),
    },
    Scenario {
        name: "torn-write",
        description: "ten power losses in the middle of a write on disks that keep a prefix of a batch: the store journals each batch first and the next start completes a torn one, so no block, vote or state is left half-written; then a rolling restart and the heal",
        body: torn_write,
        sim_time_limit: Duration::from_secs(300),
    },
    Scenario {
        name: "slow-disk",
        description: "each node's disk in turn stalls its synced writes (Raft's log appends and votes wait 50-1,500 ms each, as behind a slow fsync) or its reads (Raft's log reads past the cache and the blocks it serves wait as long), then a minority's at once, then every disk briefly: a stalled leader stops answering and is replaced; the cluster keeps canonizing at least a block a simulated second throughout, and then heals",
        body: slow_disk,
        sim_time_limit: Duration::from_secs(300),
    },
    Scenario {
        name: "chaos",
        description: "60 simulated seconds of seeded crashes (process exits and power losses), restarts, partitions, loss, delay, failing disks, clock jumps, stream faults (resets, half-open connections, stalled readers, an attacker on the path) and L1 faults, with an external node following (and crashing) throughout; then heal and check liveness. Swarm-tested: the seed draws 3 or 5 nodes, timeouts, block time, batch size and the fault mix's weights",
        body: chaos,
        sim_time_limit: Duration::from_secs(300),
    },
    Scenario {
        name: "hostile-network",
        description: "an attacker on the path flips a bit, replays, drops and splices segments of live connections between consensus nodes; an attacker host replays a recorded handshake, sends garbage and opens silent connections: each connection is closed and reported by the node, nothing it carried reaches an engine, and the cluster keeps canonizing",
        body: hostile_network,
        sim_time_limit: Duration::from_secs(180),
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
        name: "external-disk-rot",
        description: "an external node's disk rots while it is down, three times (a bit of a block, the state or a certificate it replayed): its start-up scrub finds each, it forgets what it replayed and downloads the chain again, checked as any download; it reaches the canonical head after every restart and never holds a block off the canonical chain",
        body: external_disk_rot,
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
        description: "one source lies (by seed): a tampered block with its real certificate (bad signature; bad state root, wrong parent or a forged transaction, re-signed with the proposer's key), no certificate, a minority's, one with a stranger's signature, another height's, a deposed leader's real proposal that was never committed, or a Byzantine majority's (refused by verifying every signature): refused by that rule, never applied; the node still reaches the head",
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
        description: "eight spells of L1 weather drawn up front as a schedule (outages, lost transactions, lost receipts): the batcher backs off, re-reads the head, and L1 ends holding every sealed batch once, in order",
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

/// The scenarios that carry out a fault schedule (`run --schedule`, `--print-schedule`,
/// `shrink`); the others script their faults.
pub static SCHEDULED: &[&str] = &[
    "chaos",
    "disk-corruption",
    "kv-chaos",
    "kv-linearizable",
    "l1-weather",
    "misdirected-write",
    "slow-disk",
    "torn-write",
];

pub fn find(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().chain(SABOTAGE).find(|s| s.name == name)
}

//! The invariant checker. It watches every event of every node as it happens and restates each
//! invariant with its own bookkeeping (it never calls the engine's predicates), so a bug in the
//! engine's rules cannot hide the violation.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use alloy_primitives::{keccak256, B256};
use canon_engine::events::Event;
use canon_engine::policy::election::LogPos;
use canon_engine::policy::fork_choice::Keep;
use canon_engine::NodeId;

mod certified;
mod chain;
mod members;
mod raft;
mod repair;
mod settlement;
mod signing;
use certified::Holders;

/// The rule commit certificates keep (see [`certified`]).
const MAJORITY_HOLDS: &str =
    "an external node replays only blocks a majority of consensus nodes hold";

#[derive(Clone, Debug)]
pub struct Violation {
    pub invariant: &'static str,
    pub node: usize,
    pub height: Option<u64>,
    pub at: Duration,
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invariant violated: {} on n{}{} at sim {:.3}s: {}",
            self.invariant,
            self.node,
            self.height
                .map(|h| format!(" height {h}"))
                .unwrap_or_default(),
            self.at.as_secs_f64(),
            self.detail
        )
    }
}

#[derive(Clone, Copy)]
struct Canonical {
    timestamp_ms: u64,
    hash: B256,
    parent: B256,
    state_root: B256,
}

#[derive(Default, Clone)]
struct NodeTrack {
    /// Fork mode: this node's chain, height to hash, as its events built it.
    chain: BTreeMap<u64, B256>,
    /// Fork mode: it reported an equivocation and kept the other branch (a rollback may follow).
    may_roll_back: bool,
    /// What this machine signed, by height and by round (its signing guard's business).
    signed_heights: BTreeMap<u64, B256>,
    signed_rounds: BTreeMap<u64, B256>,
    head: u64,
    /// The highest height this node ever applied, across restarts.
    max_head: u64,
    term: u64,
    committed: Option<u64>,
    applied_index: Option<u64>,
    /// A repair made it forget its log: it must not stand for election until it has
    /// applied this far.
    abstain_until: Option<LogPos>,
    /// The highest term of a block it applied.
    applied_term: u64,
    /// Its start-up scrub refused to let it start (a damaged vote, say): it stays down.
    halted: bool,
}

pub struct Checker {
    genesis_hash: B256,
    /// Start-up repairs that made a node forget what it replicated.
    rejoins: usize,
    refetches: usize,
    /// See [`Checker::most_unhealthy_at_once`].
    most_unhealthy: usize,
    canonical: BTreeMap<u64, Canonical>,
    nodes: Vec<NodeTrack>,
    /// The leader each term's committed votes name.
    leader_of_term: BTreeMap<u64, String>,
    /// What each committed log index did on the first node that applied it: the block hash,
    /// or `None` for a rejected or non-block entry.
    outcome_of_index: BTreeMap<u64, Option<B256>>,
    /// (external node, the source it dropped).
    /// (node, source, the rule the source's block broke), as the node reported it.
    rejected_sources: Vec<(usize, NodeId, String)>,
    /// Which consensus nodes hold which block: what a commit certificate attests.
    holders: Holders,
    /// Consensus nodes a scenario made lie when they serve blocks: a refusal of their answer
    /// is the node doing its job, recorded, not a violation.
    serving_liars: Vec<NodeId>,
    /// (node, source, the rule its answer broke) of every backfill answer refused from them.
    refused_backfills: Vec<(usize, NodeId, String)>,
    /// Single-sequencer mode: the block the identity signed at each height and each round.
    signed_heights: BTreeMap<u64, B256>,
    signed_rounds: BTreeMap<u64, B256>,
    /// Fork mode (`redundancy-partition`, unfenced): the identity is expected to sign two
    /// branches. Double signatures are recorded, not violations; every block a node holds must
    /// still be one the identity signed, on that node's own parent; rollbacks follow a reported
    /// equivocation.
    fork_mode: bool,
    /// Every block the identity signed: hash to (height, parent).
    signed_blocks: BTreeMap<B256, (u64, B256)>,
    /// (height, first block, second block) of every height signed twice, seen in fork mode.
    double_signed: Vec<(u64, B256, B256)>,
    /// (round, first block, second block) of every round signed twice, seen in fork mode.
    double_signed_rounds: Vec<(u64, B256, B256)>,
    /// (node, height) of every equivocation a follower reported.
    reported_equivocations: Vec<(usize, u64)>,
    /// The L1 batches every node sealed, by number, as the first node to seal each did.
    batches: BTreeMap<u64, SealedBatch>,
    /// The chain's batch size bound (0: unchecked).
    blocks_per_batch: u64,
    /// What L1 committed, in order: (number, last height).
    l1: Vec<(u64, u64)>,
    /// The epoch of L1's last commit.
    l1_epoch: u64,
    /// The winner of each batcher epoch's claim, as the first node applied it.
    claim_winners: BTreeMap<u64, NodeId>,
    /// Each node's id, by index (to name the batcher behind an L1 commit).
    node_ids: Vec<NodeId>,
    violations: Vec<Violation>,
}

/// A sealed batch as the checker restates it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealedBatch {
    pub first_height: u64,
    pub last_height: u64,
    pub state_root: B256,
    pub commitment: B256,
}

impl Checker {
    pub fn new(nodes: usize, genesis_hash: B256) -> Checker {
        Checker {
            genesis_hash,
            canonical: BTreeMap::new(),
            rejoins: 0,
            refetches: 0,
            most_unhealthy: 0,
            nodes: vec![NodeTrack::default(); nodes],
            leader_of_term: BTreeMap::new(),
            outcome_of_index: BTreeMap::new(),
            rejected_sources: Vec::new(),
            holders: Holders::new(nodes),
            serving_liars: Vec::new(),
            refused_backfills: Vec::new(),
            signed_heights: BTreeMap::new(),
            signed_rounds: BTreeMap::new(),
            fork_mode: false,
            signed_blocks: BTreeMap::new(),
            double_signed: Vec::new(),
            double_signed_rounds: Vec::new(),
            reported_equivocations: Vec::new(),
            batches: BTreeMap::new(),
            blocks_per_batch: 0,
            l1: Vec::new(),
            l1_epoch: 0,
            claim_winners: BTreeMap::new(),
            node_ids: Vec::new(),
            violations: Vec::new(),
        }
    }

    /// Batches must hold at most `n` blocks.
    pub fn set_blocks_per_batch(&mut self, n: u64) {
        self.blocks_per_batch = n;
    }

    /// The nodes' ids, by index.
    pub fn set_node_ids(&mut self, ids: Vec<NodeId>) {
        self.node_ids = ids;
    }

    /// The batcher epochs and the node that won each, so far.
    pub fn claim_winners(&self) -> &BTreeMap<u64, NodeId> {
        &self.claim_winners
    }

    /// Sources each external node dropped for serving a bad block.
    /// `id` was made to lie when it serves blocks: refusals of its answers are expected.
    pub fn expect_serving_lies_from(&mut self, id: NodeId) {
        if !self.serving_liars.contains(&id) {
            self.serving_liars.push(id);
        }
    }

    /// (node, lying source, the rule its backfill answer broke), as the node reported it.
    pub fn refused_backfills(&self) -> &[(usize, NodeId, String)] {
        &self.refused_backfills
    }

    pub fn rejected_sources(&self) -> &[(usize, NodeId, String)] {
        &self.rejected_sources
    }

    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// The highest height any node has applied.
    pub fn canonical_height(&self) -> u64 {
        self.canonical.keys().next_back().copied().unwrap_or(0)
    }

    pub fn canonical_hash(&self, height: u64) -> Option<B256> {
        if height == 0 {
            return Some(self.genesis_hash);
        }
        self.canonical.get(&height).map(|c| c.hash)
    }

    pub fn node_head(&self, node: usize) -> u64 {
        self.nodes.get(node).map(|n| n.head).unwrap_or(0)
    }

    /// Nodes whose head is below a height they applied before: blocks not (yet) re-applied.
    pub fn nodes_behind_their_past(&self) -> Vec<(usize, u64, u64)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, t)| t.head < t.max_head && !t.halted)
            .map(|(i, t)| (i, t.head, t.max_head))
            .collect()
    }

    pub fn fail(
        &mut self,
        invariant: &'static str,
        node: usize,
        height: Option<u64>,
        at: Duration,
        detail: String,
    ) {
        self.violations.push(Violation {
            invariant,
            node,
            height,
            at,
            detail,
        });
    }

    /// Node `node` reached `height`: its head now, and the highest it ever held.
    fn set_head(&mut self, node: usize, height: u64) {
        let track = &mut self.nodes[node];
        track.head = height;
        track.max_head = track.max_head.max(height);
    }

    /// Node `node` `did` (applied, replayed, signed) a block at `height`, which must sit right
    /// on its head: `rule` fails otherwise.
    fn expect_next_height(
        &mut self,
        node: usize,
        at: Duration,
        height: u64,
        rule: &'static str,
        did: &str,
    ) {
        let head = self.nodes[node].head;
        if height != head + 1 {
            self.fail(
                rule,
                node,
                Some(height),
                at,
                format!("{did} height {height} on top of head {head}"),
            );
        }
    }

    pub fn observe(&mut self, node: usize, at: Duration, event: &Event) {
        if node >= self.nodes.len() {
            self.nodes.resize(node + 1, NodeTrack::default());
        }
        match event {
            Event::Started {
                head_height,
                head_hash,
                applied_index,
                term,
                committed_index,
            } => self.started(
                node,
                at,
                (*head_height, *head_hash),
                *applied_index,
                *term,
                *committed_index,
            ),
            Event::VoteSaved {
                term,
                voted_for: Some(leader),
                committed: true,
            } => self.leader_chosen(node, at, *term, leader),
            Event::VoteSaved {
                term,
                voted_for: Some(whom),
                committed: false,
            } if self.node_ids.get(node) == Some(whom) => self.stood(node, at, *term),
            Event::VoteSaved { term, .. } => self.saw_term(node, *term, at),
            Event::Scrubbed { repair, .. } => self.scrubbed(node, repair),
            Event::Committed { index } => self.committed(node, at, *index),
            Event::BatchSealed {
                number,
                first_height,
                last_height,
                state_root,
                commitment,
            } => self.batch_sealed(
                node,
                at,
                *number,
                SealedBatch {
                    first_height: *first_height,
                    last_height: *last_height,
                    state_root: *state_root,
                    commitment: *commitment,
                },
            ),
            Event::BatcherClaimApplied {
                index,
                epoch,
                claimant,
                level,
                won,
            } => {
                self.monotonic_index(node, *index, at);
                let outcome = keccak256(format!("claim {epoch} {claimant} {level} {won}"));
                self.same_outcome(node, *index, Some(outcome), at);
                if *won {
                    let first = *self.claim_winners.entry(*epoch).or_insert(*claimant);
                    if first != *claimant {
                        self.fail(
                            "one claim wins each batcher epoch, on every node",
                            node,
                            None,
                            at,
                            format!("epoch {epoch}: {claimant} here, {first} elsewhere"),
                        );
                    }
                }
            }
            Event::BatcherStopped { reason } => self.fail(
                "the batcher never finds L1's chain different from the one it sealed",
                node,
                None,
                at,
                reason.clone(),
            ),
            Event::L1HeadRead { .. }
            | Event::L1Unavailable { .. }
            | Event::BatchCommitted { .. }
            | Event::BatchNotCommitted { .. }
            | Event::BatchCommittedElsewhere { .. }
            | Event::BatcherSuperseded { .. }
            | Event::BatcherClaiming { .. }
            | Event::BatcherActive { .. }
            | Event::BatcherStandingBy { .. }
            | Event::BatcherSameLevel { .. }
            | Event::Certified { .. }
            | Event::CorruptRead { .. } => {}
            Event::MembersDeclared { height, members } => {
                self.members_declared(node, at, *height, members)
            }
            Event::EntryApplied { index, term } | Event::EntryRejected { index, term, .. } => {
                // A leader's first entry (a no-op) moves the applied position into its term
                // as much as a block does: seed 3946582 of disk-corruption stood legitimately
                // at (10, 134) past a bound of (4, 174) while the checker still read term 4.
                let t = &mut self.nodes[node];
                t.applied_term = t.applied_term.max(*term);
                self.monotonic_index(node, *index, at);
                self.same_outcome(node, *index, None, at);
            }
            Event::BlockApplied {
                index,
                height,
                hash,
                parent_hash,
                state_root,
                timestamp_ms,
                term,
                ..
            } => {
                let t = &mut self.nodes[node];
                t.applied_term = t.applied_term.max(*term);
                self.block_applied(
                    node,
                    at,
                    *index,
                    *height,
                    *hash,
                    *parent_hash,
                    *state_root,
                    *timestamp_ms,
                );
            }
            Event::Replayed {
                height,
                hash,
                parent_hash,
                state_root,
                source,
                ..
            } => self.replayed(node, at, *height, *hash, *parent_hash, *state_root, *source),
            Event::SourceRejected {
                source,
                kind,
                height,
                reason,
            } => {
                self.rejected_sources.push((node, *source, kind.clone()));
                // Only a node made to lie (or one of a forked identity) serves a block that
                // does not check out: a sound node never serves what its disk corrupted.
                if !self.fork_mode && !self.serving_liars.contains(source) {
                    self.fail(
                        "a node never serves a corrupt record",
                        node,
                        Some(*height),
                        at,
                        format!("source {source} served a block rejected as {kind}: {reason}"),
                    );
                }
            }
            Event::Signed {
                height,
                round,
                hash,
                parent_hash,
                state_root,
                ..
            } => self.signed(node, at, *height, *round, *hash, *parent_hash, *state_root),
            Event::Equivocation {
                height,
                ours,
                theirs,
                kept,
                ..
            } => {
                self.reported_equivocations.push((node, *height));
                if !self.fork_mode {
                    self.fail(
                        "no identity signs two different blocks for one height or round",
                        node,
                        Some(*height),
                        at,
                        format!("a follower found {ours} and {theirs} signed at this height"),
                    );
                }
                if *kept == Keep::Theirs {
                    self.nodes[node].may_roll_back = true;
                }
            }
            Event::RolledBack {
                from_height,
                to_height,
            } => {
                if !self.nodes[node].may_roll_back {
                    self.fail(
                        "a node rolls back only to leave the losing branch of an equivocation",
                        node,
                        Some(*to_height),
                        at,
                        format!("rolled back from {from_height} to {to_height}"),
                    );
                }
                self.nodes[node].may_roll_back = false;
                self.nodes[node].chain.split_off(&(*to_height + 1));
                self.nodes[node].head = *to_height;
            }
            Event::SteppedIn { .. }
            | Event::Reverted { .. }
            | Event::SameLevel { .. }
            | Event::SignRefused { .. }
            | Event::ConnectionRefused { .. } => {}
            Event::BecameLeader { .. }
            | Event::LostLeadership { .. }
            | Event::Proposed { .. }
            | Event::ProposalDropped { .. }
            | Event::SteppedDown { .. }
            | Event::StorageFailed { .. }
            | Event::RaftReopened { .. }
            | Event::SnapshotBuilt { .. }
            | Event::BackfillDone { .. } => {}
            Event::SnapshotInstalled {
                index,
                term,
                height,
                hash,
                state_root,
                ..
            } => {
                let t = &mut self.nodes[node];
                t.applied_term = t.applied_term.max(*term);
                self.snapshot_installed(node, at, *index, *height, *hash, *state_root)
            }
            Event::BlockBackfilled {
                height,
                hash,
                parent_hash,
            } => {
                self.holders.hold(node, *height, *hash);
                // A backfilled block was applied by the node that served it, so it is known;
                // it must be the canonical one, on the canonical parent.
                let ok = self
                    .canonical
                    .get(height)
                    .is_some_and(|c| c.hash == *hash && c.parent == *parent_hash);
                if !ok {
                    let canonical = self.canonical_hash(*height);
                    self.fail(
                        "every node's chain is a prefix of the canonical chain",
                        node,
                        Some(*height),
                        at,
                        format!(
                            "backfilled {hash} on parent {parent_hash}, canonical is {canonical:?}"
                        ),
                    );
                }
            }
            Event::BackfillRefused {
                source,
                kind,
                reason,
            } => {
                if self.serving_liars.contains(source) {
                    self.refused_backfills.push((node, *source, kind.clone()));
                } else {
                    self.fail(
                        "a consensus node serves only canonical blocks",
                        node,
                        None,
                        at,
                        format!("from {source}: {kind}: {reason}"),
                    )
                }
            }
            Event::BackfillRecutFailed {
                from_height,
                to_height,
                reason,
            } => self.fail(
                "a filled gap cuts again to the snapshot's batches and closes",
                node,
                Some(*to_height),
                at,
                format!("gap {from_height}..={to_height}: {reason}"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(index: u64, height: u64, hash: u8, parent: B256) -> Event {
        Event::BlockApplied {
            index,
            height,
            hash: B256::repeat_byte(hash),
            parent_hash: parent,
            state_root: B256::repeat_byte(0xee),
            timestamp_ms: index,
            term: 1,
            proposer: NodeId::default(),
            transactions: 0,
        }
    }

    fn at() -> Duration {
        Duration::from_millis(5)
    }

    #[test]
    fn accepts_an_agreeing_history() {
        let g = B256::repeat_byte(0);
        let mut c = Checker::new(2, g);
        for n in 0..2 {
            c.observe(n, at(), &applied(2, 1, 1, g));
            c.observe(n, at(), &applied(3, 2, 2, B256::repeat_byte(1)));
        }
        assert!(c.violations().is_empty(), "{:?}", c.violations());
        assert_eq!(c.canonical_height(), 2);
    }

    #[test]
    fn flags_two_blocks_at_one_height() {
        let g = B256::repeat_byte(0);
        let mut c = Checker::new(2, g);
        c.observe(0, at(), &applied(2, 1, 1, g));
        c.observe(1, at(), &applied(2, 1, 9, g));
        let v = &c.violations()[0];
        assert_eq!(
            v.invariant,
            "replicas apply each committed entry identically"
        );
        assert!(c
            .violations()
            .iter()
            .any(|v| v.invariant == "no two different blocks at one height"));
    }

    #[test]
    fn flags_gaps_wrong_parents_and_backwards_terms() {
        let g = B256::repeat_byte(0);
        let mut c = Checker::new(1, g);
        c.observe(0, at(), &applied(2, 2, 1, g));
        assert_eq!(
            c.violations()[0].invariant,
            "every node's chain is a prefix of the canonical chain"
        );
        let mut c = Checker::new(1, g);
        c.observe(0, at(), &applied(2, 1, 1, B256::repeat_byte(5)));
        assert!(c.violations()[0].detail.contains("parent"));
        let mut c = Checker::new(1, g);
        let vote = |term| Event::VoteSaved {
            term,
            voted_for: None,
            committed: false,
        };
        c.observe(0, at(), &vote(3));
        c.observe(0, at(), &vote(2));
        assert_eq!(c.violations()[0].invariant, "term never goes backwards");
    }

    #[test]
    fn flags_two_leaders_in_one_term() {
        let mut c = Checker::new(2, B256::ZERO);
        let lead = |who: u8| Event::VoteSaved {
            term: 4,
            voted_for: Some(NodeId([who; 64])),
            committed: true,
        };
        c.observe(0, at(), &lead(1));
        c.observe(1, at(), &lead(1));
        assert!(c.violations().is_empty());
        c.observe(1, at(), &lead(2));
        assert_eq!(c.violations()[0].invariant, "at most one leader per term");
    }

    #[test]
    fn flags_a_lost_commit_across_restart() {
        let mut c = Checker::new(1, B256::ZERO);
        c.observe(0, at(), &Event::Committed { index: 9 });
        c.observe(
            0,
            at(),
            &Event::Started {
                head_height: 0,
                head_hash: B256::ZERO,
                applied_index: None,
                term: 0,
                committed_index: Some(3),
            },
        );
        assert_eq!(
            c.violations()[0].invariant,
            "a canonized block is never lost across restarts"
        );
    }

    fn replayed(height: u64, hash: u8, parent: B256, root: u8) -> Event {
        Event::Replayed {
            height,
            hash: B256::repeat_byte(hash),
            parent_hash: parent,
            state_root: B256::repeat_byte(root),
            source: NodeId::default(),
            certified_by: 2,
        }
    }

    #[test]
    fn external_chains_must_be_canonical_prefixes() {
        let g = B256::repeat_byte(0);
        let mut c = Checker::new(1, g);
        c.observe(0, at(), &applied(1, 1, 1, g));
        c.observe(0, at(), &applied(2, 2, 2, B256::repeat_byte(1)));
        // External node 1 replays the canonical blocks: fine.
        c.observe(1, at(), &replayed(1, 1, g, 0xee));
        assert!(c.violations().is_empty(), "{:?}", c.violations());
        // A different block at height 2.
        let mut bad = Checker::new(1, g);
        bad.observe(0, at(), &applied(1, 1, 1, g));
        bad.observe(0, at(), &applied(2, 2, 2, B256::repeat_byte(1)));
        bad.observe(1, at(), &replayed(1, 1, g, 0xee));
        bad.observe(1, at(), &replayed(2, 9, B256::repeat_byte(1), 0xee));
        let broke = |c: &Checker, rule: &str| c.violations().iter().any(|v| v.invariant == rule);
        assert!(broke(
            &bad,
            "every external chain is a prefix of the canonical chain"
        ));
        assert!(broke(&bad, MAJORITY_HOLDS));
        // The right block with a different state root.
        let mut root = Checker::new(1, g);
        root.observe(0, at(), &applied(1, 1, 1, g));
        root.observe(1, at(), &replayed(1, 1, g, 0x01));
        assert_eq!(
            root.violations()[0].invariant,
            "state roots agree at every height"
        );
        // A gap, and a duplicate.
        let mut gap = Checker::new(1, g);
        gap.observe(0, at(), &applied(1, 1, 1, g));
        gap.observe(0, at(), &applied(2, 2, 2, B256::repeat_byte(1)));
        gap.observe(1, at(), &replayed(2, 2, B256::repeat_byte(1), 0xee));
        assert_eq!(
            gap.violations()[0].invariant,
            "an external node replays without gap or duplicate"
        );
        let mut dup = Checker::new(1, g);
        dup.observe(0, at(), &applied(1, 1, 1, g));
        dup.observe(1, at(), &replayed(1, 1, g, 0xee));
        dup.observe(1, at(), &replayed(1, 1, g, 0xee));
        assert_eq!(
            dup.violations()[0].invariant,
            "an external node replays without gap or duplicate"
        );
        // A block no consensus node applied.
        let mut unknown = Checker::new(1, g);
        unknown.observe(1, at(), &replayed(1, 1, g, 0xee));
        assert!(broke(
            &unknown,
            "every external chain is a prefix of the canonical chain"
        ));
        // The canonical block, but replayed while only one of three consensus nodes held it:
        // no certificate could have existed yet.
        let mut early = Checker::new(3, g);
        early.observe(0, at(), &applied(1, 1, 1, g));
        early.observe(3, at(), &replayed(1, 1, g, 0xee));
        let rules: Vec<&str> = early.violations().iter().map(|v| v.invariant).collect();
        assert_eq!(rules, vec![MAJORITY_HOLDS]);
        let mut late = Checker::new(3, g);
        late.observe(0, at(), &applied(1, 1, 1, g));
        late.observe(2, at(), &applied(1, 1, 1, g));
        late.observe(3, at(), &replayed(1, 1, g, 0xee));
        assert!(late.violations().is_empty(), "{:?}", late.violations());
    }

    #[test]
    fn checks_sealed_batches_against_its_own_arithmetic() {
        use canon_engine::settlement::batch::BatchHeader;
        let g = B256::repeat_byte(0);
        // Blocks 1..=4 with hashes 1..=4, every state root 0xee.
        let chain = |c: &mut Checker| {
            let mut parent = g;
            for h in 1..=4u64 {
                c.observe(0, at(), &applied(h, h, h as u8, parent));
                parent = B256::repeat_byte(h as u8);
            }
        };
        let header = |number, previous, first: u64, last: u64| {
            super::settlement::test_batch(number, previous, first, last, Vec::new())
        };
        let sealed = |h: &BatchHeader| Event::BatchSealed {
            number: h.number,
            first_height: h.first_height,
            last_height: h.last_height,
            state_root: h.state_root,
            commitment: h.commitment(),
        };
        let b1 = header(1, B256::ZERO, 1, 2);
        let b2 = header(2, b1.commitment(), 3, 4);
        let mut ok = Checker::new(2, g);
        ok.set_blocks_per_batch(2);
        chain(&mut ok);
        for n in 0..2 {
            ok.observe(n, at(), &sealed(&b1));
            ok.observe(n, at(), &sealed(&b2));
        }
        assert!(ok.violations().is_empty(), "{:?}", ok.violations());
        assert_eq!(ok.sealed_batches().len(), 2);

        let bad = [
            // a gap in the range, an overlap, a wrong link, a skipped number, too many blocks
            vec![b1.clone(), header(2, b1.commitment(), 4, 4)],
            vec![b1.clone(), header(2, b1.commitment(), 2, 4)],
            vec![b1.clone(), header(2, B256::repeat_byte(7), 3, 4)],
            vec![header(2, B256::ZERO, 1, 2)],
            vec![header(1, B256::ZERO, 1, 3)],
        ];
        for (i, batches) in bad.iter().enumerate() {
            let mut c = Checker::new(1, g);
            c.set_blocks_per_batch(2);
            chain(&mut c);
            for b in batches {
                c.observe(0, at(), &sealed(b));
            }
            assert_eq!(c.violations().len(), 1, "case {i}: {:?}", c.violations());
        }
        // Two nodes sealing different batches under one number.
        let mut split = Checker::new(2, g);
        chain(&mut split);
        split.observe(0, at(), &sealed(&b1));
        split.observe(1, at(), &sealed(&header(1, B256::ZERO, 1, 1)));
        assert_eq!(
            split.violations()[0].invariant,
            "every node seals the same contiguous L1 batches of the canonical chain"
        );
    }

    #[test]
    fn l1_commits_come_only_from_the_winner_of_their_epoch() {
        use canon_engine::settlement::batch::{block_hashes_hash, BatchHeader};
        const FENCE: &str = "only the batcher that won an epoch's claim commits at that epoch, and L1's epoch never falls";
        let g = B256::repeat_byte(0);
        let ids = vec![NodeId([1; 64]), NodeId([2; 64])];
        let claim = |index, epoch, who: usize, won| Event::BatcherClaimApplied {
            index,
            epoch,
            claimant: NodeId([who as u8 + 1; 64]),
            level: who as u32,
            won,
        };
        let header = |number, previous, h: u64| BatchHeader {
            number,
            previous,
            first_height: h,
            last_height: h,
            state_root: B256::repeat_byte(0xee),
            block_hashes_hash: block_hashes_hash(&[B256::repeat_byte(h as u8)]),
            next_attesters: Vec::new(),
        };
        let b1 = header(1, B256::ZERO, 1);
        let b2 = header(2, b1.commitment(), 2);
        let setup = || {
            let mut c = Checker::new(2, g);
            c.set_node_ids(ids.clone());
            c.observe(0, at(), &applied(1, 1, 1, g));
            c.observe(0, at(), &applied(2, 2, 2, B256::repeat_byte(1)));
            for b in [&b1, &b2] {
                c.observe(
                    0,
                    at(),
                    &Event::BatchSealed {
                        number: b.number,
                        first_height: b.first_height,
                        last_height: b.last_height,
                        state_root: b.state_root,
                        commitment: b.commitment(),
                    },
                );
            }
            c.observe(0, at(), &claim(3, 1, 0, true));
            c.observe(1, at(), &claim(3, 1, 0, true));
            c
        };
        let commit = |c: &mut Checker, sender, epoch, b: &BatchHeader| {
            c.l1_committed(
                at(),
                sender,
                epoch,
                b.number,
                b.first_height,
                b.last_height,
                b.state_root,
                b.commitment(),
            )
        };
        // The winner of epoch 1 commits; n1 wins epoch 2 and commits the next.
        let mut ok = setup();
        commit(&mut ok, 0, 1, &b1);
        ok.observe(0, at(), &claim(4, 2, 1, true));
        ok.observe(1, at(), &claim(5, 2, 0, false));
        commit(&mut ok, 1, 2, &b2);
        assert!(ok.violations().is_empty(), "{:?}", ok.violations());
        // n1 commits at an epoch n0 won.
        let mut usurper = setup();
        commit(&mut usurper, 1, 1, &b1);
        assert_eq!(usurper.violations()[0].invariant, FENCE);
        // The zombie's commit lands after epoch 2 reached L1.
        let mut zombie = setup();
        zombie.observe(0, at(), &claim(4, 2, 1, true));
        commit(&mut zombie, 1, 2, &b1);
        commit(&mut zombie, 0, 1, &b2);
        assert_eq!(zombie.violations()[0].invariant, FENCE);
        // Two winners of one epoch, and one entry applied two ways.
        let mut two = setup();
        two.observe(1, at(), &claim(4, 1, 1, true));
        assert!(two
            .violations()
            .iter()
            .any(|v| v.invariant == "one claim wins each batcher epoch, on every node"));
        let mut split = setup();
        split.observe(0, at(), &claim(4, 2, 1, true));
        split.observe(1, at(), &claim(4, 2, 1, false));
        assert_eq!(
            split.violations()[0].invariant,
            "replicas apply each committed entry identically"
        );
    }
}

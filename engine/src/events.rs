//! Everything observable a node does leaves through [`EventSink`]: the simulator's invariant
//! checker and trace recorder consume it; production turns it into logs and metrics.

use alloy_primitives::B256;

use crate::ids::NodeId;
use crate::policy::fork_choice::Keep;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The node opened its storage: what survived since its last life. The head may be
    /// behind what it applied before a crash; the log re-applies the rest.
    Started {
        head_height: u64,
        head_hash: B256,
        applied_index: Option<u64>,
        term: u64,
        committed_index: Option<u64>,
    },
    /// The start-up scrub found damaged records (or a hole) and the repair policy decided
    /// `repair` (never emitted for a clean store).
    Scrubbed {
        corrupt_records: usize,
        repair: crate::policy::repair::Repair,
    },
    /// A read met a corrupt record: the node stops, and its next start repairs.
    CorruptRead { error: crate::storage::StorageError },
    /// A vote was made durable: for `voted_for` in `term`; `committed` once a quorum granted
    /// it, i.e. `voted_for` leads `term`.
    VoteSaved {
        term: u64,
        voted_for: Option<NodeId>,
        committed: bool,
    },
    /// The commit index was made durable.
    Committed { index: u64 },
    /// A canonized block was verified, executed and stored.
    BlockApplied {
        index: u64,
        height: u64,
        hash: B256,
        parent_hash: B256,
        state_root: B256,
        timestamp_ms: u64,
        term: u64,
        proposer: NodeId,
        transactions: usize,
    },
    /// The block applied at `height` declared a new signer set: the Raft voters in effect,
    /// who certify the blocks after it (see [`crate::chain::members`]).
    MembersDeclared { height: u64, members: Vec<NodeId> },
    /// A Raft snapshot of the applied state was made durable; the log before it may be purged.
    SnapshotBuilt { index: Option<u64>, height: u64 },
    /// The node installed a leader's snapshot: its applied state jumped to the head at
    /// `height`, and `missing_blocks` below it are to be backfilled.
    SnapshotInstalled {
        index: Option<u64>,
        /// The term of the last entry the snapshot stands for (0 for none).
        term: u64,
        height: u64,
        hash: B256,
        state_root: B256,
        missing_blocks: u64,
    },
    /// A block of a snapshot's gap was fetched, checked against the hash chain down from the
    /// snapshot's head, and stored.
    BlockBackfilled {
        height: u64,
        hash: B256,
        parent_hash: B256,
    },
    /// A snapshot's gap is closed: blocks `from_height..=to_height` are stored and the batches
    /// they hold were sealed and attested again.
    BackfillDone {
        from_height: u64,
        to_height: u64,
        batches_sealed: u64,
    },
    /// A p2p connection failed authentication, broke the protocol or went over a limit, and
    /// was closed: nothing it carried from then on reached the engine. `peer` is the proven (or
    /// dialed) id where one is known; `remote` the address.
    ConnectionRefused {
        peer: Option<NodeId>,
        remote: String,
        fault: crate::net::p2p::ConnectionFault,
        detail: String,
    },
    /// A peer's answer to a backfill request failed the checks; `kind` names the rule.
    BackfillRefused {
        source: NodeId,
        kind: String,
        reason: String,
    },
    /// The gap's blocks are stored but do not cut again to the snapshot's batches (or one is
    /// missing): the gap cannot close. Never a disk fault (that is `StorageFailed`).
    BackfillRecutFailed {
        from_height: u64,
        to_height: u64,
        reason: String,
    },
    /// A committed entry whose block no longer extends the chain (a deposed leader's proposal)
    /// or fails verification; every node rejects it identically.
    EntryRejected {
        index: u64,
        /// The entry's Raft term.
        term: u64,
        height: u64,
        reason: String,
    },
    /// Applying block `last_height` closed L1 batch `number`; this node attested it.
    BatchSealed {
        number: u64,
        first_height: u64,
        last_height: u64,
        state_root: B256,
        commitment: B256,
    },
    /// The batcher read L1's head.
    L1HeadRead { batch_number: u64, epoch: u64 },
    /// The batcher could not reach L1 (it backs off and tries again).
    L1Unavailable { reason: String },
    /// The batcher's transaction committed batch `number` at `epoch` (its receipt says so).
    BatchCommitted { number: u64, epoch: u64 },
    /// The batcher's submission of batch `number` did not go through, or its fate is unknown;
    /// it re-reads L1's head before sending anything again. `reverted`: the contract refused
    /// it (before or after mining); else L1 was unreachable or gave no receipt.
    BatchNotCommitted {
        number: u64,
        reason: String,
        reverted: bool,
    },
    /// The batch the batcher was sending is on L1 already, committed by another batcher or by
    /// its own earlier transaction: reported, never sent again.
    BatchCommittedElsewhere { number: u64 },
    /// L1 saw a higher epoch than this batcher's: another batcher took over.
    BatcherSuperseded { l1_epoch: u64, ours: u64 },
    /// L1's chain of commitments is not this node's: the batcher sends nothing more.
    BatcherStopped { reason: String },
    /// A `ClaimBatcher` entry was applied: `won` if it took the role at `epoch`.
    BatcherClaimApplied {
        index: u64,
        epoch: u64,
        claimant: NodeId,
        level: u32,
        won: bool,
    },
    /// This node claims the batcher role at `epoch`, after `missed_rounds` batch rounds in
    /// which L1 did not advance while sealed batches waited (0: the role was vacant or held
    /// by a less preferred level).
    BatcherClaiming { epoch: u64, missed_rounds: u32 },
    /// This node holds the batcher role at `epoch` and submits.
    BatcherActive { epoch: u64 },
    /// This node stands by: `holder` holds the role at `epoch`.
    BatcherStandingBy { epoch: u64, holder: Option<NodeId> },
    /// Misconfiguration: `holder` holds the role at this node's own level; only one node per
    /// level should have the batcher enabled.
    BatcherSameLevel { holder: NodeId, level: u32 },
    /// A committed entry without a block (leader no-op, membership), of Raft term `term`.
    EntryApplied { index: u64, term: u64 },
    /// The node observed itself as leader of `term`.
    BecameLeader { term: u64 },
    /// The node stopped being leader.
    LostLeadership { term: u64 },
    /// The leader proposed a block.
    Proposed { height: u64, transactions: usize },
    /// A proposal did not become canonical; the sequencer follows the chain instead.
    ProposalDropped { height: u64, reason: String },
    /// The leader could not hear a quorum and gave up leadership.
    SteppedDown { millis_since_quorum_ack: u64 },
    /// A follower saw the single-sequencer identity sign two different blocks at `height`
    /// (its own, and the one `source` serves) and kept one branch by the fork rule
    /// (`policy::fork_choice`).
    Equivocation {
        height: u64,
        ours: B256,
        theirs: B256,
        our_level: i64,
        their_level: i64,
        source: NodeId,
        kept: Keep,
    },
    /// The follower left a losing branch: its chain now ends at `to_height` (the last block both
    /// branches share), `from_height` was its head.
    RolledBack { from_height: u64, to_height: u64 },
    /// A storage write failed; Raft stops on this node until it is reopened.
    StorageFailed { reason: String },
    /// Raft stopped on a fatal error; the node reopens it from storage after a pause.
    RaftReopened { after: String },
    /// An external node verified, executed and stored a downloaded block.
    Replayed {
        height: u64,
        hash: B256,
        parent_hash: B256,
        state_root: B256,
        source: NodeId,
        /// Signatures in the commit certificate it was applied with (0 on a redundancy
        /// group's chain, which has none).
        certified_by: usize,
    },
    /// A consensus node stored commit certificates: every block it holds up to `through`
    /// (outside a snapshot's gap) now has one.
    Certified { through: u64 },
    /// An external node dropped a source that served a block failing verification; nothing
    /// it served was applied.
    SourceRejected {
        source: NodeId,
        height: u64,
        /// Which rule the block broke (`BlockError::kind`).
        kind: String,
        reason: String,
    },
    /// A group member signed the block of `round` (single-sequencer mode), stored it and serves
    /// it: the identity's chain grew by this block.
    Signed {
        height: u64,
        round: u64,
        level: i64,
        hash: B256,
        parent_hash: B256,
        state_root: B256,
        transactions: usize,
    },
    /// A group member started signing, from `round`.
    SteppedIn {
        round: u64,
        level: i64,
        reason: String,
    },
    /// A group member stopped signing: a lower level signed `round`.
    Reverted { by_level: i64, round: u64 },
    /// Another member announced this member's level; `yields` if this one stands down.
    SameLevel { other: NodeId, yields: bool },
    /// A group member decided to sign `round` but did not (the guard or storage refused).
    SignRefused { round: u64, reason: String },
}

pub trait EventSink: Send + Sync + 'static {
    fn emit(&self, node: &NodeId, event: Event);
}

/// Discards events; for tools that only need the engine's results.
pub struct NoEvents;

impl EventSink for NoEvents {
    fn emit(&self, _node: &NodeId, _event: Event) {}
}

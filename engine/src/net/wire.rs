//! Messages between nodes. Raft RPCs carry openraft's messages in runtime-free mirrors (the same
//! fields in the same order, so the bytes are openraft's own: a test pins it); the payload of
//! an append is a list of entries, each a whole block or a batcher claim.

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AsyncRuntime, EntryPayload, SnapshotMeta};
use serde::{Deserialize, Serialize};

use crate::app::{Rejection, Tx};
use crate::chain::block::Block;
use crate::chain::certificate::{ServedBlock, VoteAnswer};
use crate::chain::rules::Head;
use crate::consensus::mempool::AdmitError;
use crate::consensus::raft::types::{ApplyOutcome, Canon, Command, LogId, PeerNode, Vote};
use crate::ids::NodeId;
use crate::policy::election::LogPos;
use crate::policy::fence::Promise;
use crate::redundancy::announcement::SignedAnnouncement;
use crate::redundancy::fenced::SignedBallot;
use crate::settlement::batch::Attestation;
use crate::settlement::role::BatcherClaim;

/// openraft's `AppendEntriesRequest` without its runtime parameter.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AppendEntries {
    pub vote: Vote,
    pub prev_log_id: Option<LogId>,
    pub entries: Vec<LogEntry>,
    pub leader_commit: Option<LogId>,
}

/// openraft's `Entry` without its runtime parameter.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LogEntry {
    pub log_id: LogId,
    pub payload: LogPayload,
}

// Mirrors openraft's `EntryPayload`; entries are moved along, never copied around.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum LogPayload {
    Blank,
    Normal(Command),
    Membership(openraft::Membership<NodeId, PeerNode>),
}

/// openraft's `InstallSnapshotRequest` without its runtime parameter.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InstallSnapshot {
    pub vote: Vote,
    pub meta: SnapshotMeta<NodeId, PeerNode>,
    pub offset: u64,
    pub data: Vec<u8>,
    pub done: bool,
}

impl<RT: AsyncRuntime> From<openraft::Entry<Canon<RT>>> for LogEntry {
    fn from(e: openraft::Entry<Canon<RT>>) -> Self {
        LogEntry {
            log_id: e.log_id,
            payload: match e.payload {
                EntryPayload::Blank => LogPayload::Blank,
                EntryPayload::Normal(b) => LogPayload::Normal(b),
                EntryPayload::Membership(m) => LogPayload::Membership(m),
            },
        }
    }
}

impl<RT: AsyncRuntime> From<LogEntry> for openraft::Entry<Canon<RT>> {
    fn from(e: LogEntry) -> Self {
        openraft::Entry {
            log_id: e.log_id,
            payload: match e.payload {
                LogPayload::Blank => EntryPayload::Blank,
                LogPayload::Normal(b) => EntryPayload::Normal(b),
                LogPayload::Membership(m) => EntryPayload::Membership(m),
            },
        }
    }
}

impl<RT: AsyncRuntime> From<AppendEntriesRequest<Canon<RT>>> for AppendEntries {
    fn from(r: AppendEntriesRequest<Canon<RT>>) -> Self {
        AppendEntries {
            vote: r.vote,
            prev_log_id: r.prev_log_id,
            entries: r.entries.into_iter().map(LogEntry::from).collect(),
            leader_commit: r.leader_commit,
        }
    }
}

impl<RT: AsyncRuntime> From<AppendEntries> for AppendEntriesRequest<Canon<RT>> {
    fn from(r: AppendEntries) -> Self {
        AppendEntriesRequest {
            vote: r.vote,
            prev_log_id: r.prev_log_id,
            entries: r.entries.into_iter().map(Into::into).collect(),
            leader_commit: r.leader_commit,
        }
    }
}

impl<RT: AsyncRuntime> From<InstallSnapshotRequest<Canon<RT>>> for InstallSnapshot {
    fn from(r: InstallSnapshotRequest<Canon<RT>>) -> Self {
        InstallSnapshot {
            vote: r.vote,
            meta: r.meta,
            offset: r.offset,
            data: r.data,
            done: r.done,
        }
    }
}

impl<RT: AsyncRuntime> From<InstallSnapshot> for InstallSnapshotRequest<Canon<RT>> {
    fn from(r: InstallSnapshot) -> Self {
        InstallSnapshotRequest {
            vote: r.vote,
            meta: r.meta,
            offset: r.offset,
            data: r.data,
            done: r.done,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Request {
    AppendEntries(AppendEntries),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshot),
    /// A client's transaction: the receiver forwards it to the leader if it is not the leader.
    ClientSubmit(Tx),
    /// A transaction a replica forwarded for the leader's mempool; never forwarded again.
    Forwarded(Tx),
    /// Are you there? Answered by consensus peers only; see `contact`.
    Ping,
    /// A read of this node's applied state, in the application's own query format.
    Query(Vec<u8>),
    /// A read of committed state with the consistency asked (see
    /// [`crate::consensus::node::client`]); `forwarded` by a follower to its leader.
    Read {
        query: Vec<u8>,
        consistency: ReadConsistency,
        forwarded: bool,
    },
    /// A client's transaction, answered once this node applied it (or after `wait_ms`, at most
    /// [`MAX_SUBMIT_WAIT_MS`]).
    SubmitAndWait {
        tx: Tx,
        wait_ms: u32,
    },
    /// The sender's canonized head. Answered to anyone (external nodes download blocks).
    GetHead,
    /// Canonized blocks from height `from`, at most `max`. When the sender has none yet and
    /// `wait_ms` is above zero, it holds the request up to that long for the next block
    /// (a long-poll: how a caught-up external node follows the head without spinning).
    GetBlocks {
        from: u64,
        max: u32,
        wait_ms: u32,
    },
    /// Would you vote for me, whose last log entry is at `last_log`? Asked before a real
    /// election and changes nothing at the receiver (see `policy::election`). Peers only.
    PreVote {
        last_log: Option<LogPos>,
    },
    /// A redundancy group member's signed self-description (single-sequencer mode); answered
    /// by members only, with what they last signed.
    Announce(SignedAnnouncement),
    /// Fenced group: promise the ballot's round for its height (see `policy::fence`). Members
    /// only; answered with what was accepted at that height and above.
    FencePrepare(SignedBallot),
    /// Fenced group: accept this block (unsigned) for the ballot's round.
    FenceAccept(SignedBallot, Box<Block>),
    /// The attestations of L1 batch `number` the receiver holds (its own among them once it
    /// sealed the batch). Consensus peers only: the batcher gathers a majority.
    GetAttestations {
        number: u64,
    },
    /// A standby batcher's claim of the role, for the leader to put through Raft. The claim
    /// must name the sender. Consensus peers only.
    ClaimBatcher(BatcherClaim),
    /// Many client transactions at once (at most [`MAX_SUBMIT_BATCH`]), each treated as
    /// `ClientSubmit`; answered with `SubmitTransactions`, one outcome each, in order.
    ClientSubmitBatch(Vec<Tx>),
    /// Many transactions a replica forwarded at once, each treated as `Forwarded`.
    ForwardedBatch(Vec<Tx>),
    /// The receiver's commit votes (or certificates) for the blocks it applied at heights
    /// `from..=to` (at most [`crate::chain::store::MAX_BLOCKS_PER_RESPONSE`]). Consensus
    /// peers only: each gathers a majority to certify what it holds.
    GetCommitVotes {
        from: u64,
        to: u64,
        /// Sign every height held, not only those the receiver is designated to sign
        /// ([`crate::chain::certificate::designated`]): the asker's cursor is stuck.
        everyone: bool,
    },
}

/// Most transactions one batched submission carries.
pub const MAX_SUBMIT_BATCH: usize = 10_000;
/// Longest a [`Request::SubmitAndWait`] is held.
pub const MAX_SUBMIT_WAIT_MS: u32 = 30_000;

/// A batched submission of `n` transactions over [`MAX_SUBMIT_BATCH`] is refused whole, with
/// the reason, one outcome per transaction; `None` when it is within the limit.
pub fn refuse_over_limit(n: usize) -> Option<Vec<SubmitOutcome>> {
    (n > MAX_SUBMIT_BATCH).then(|| {
        let why = format!("a batch of {n} transactions is over the limit of {MAX_SUBMIT_BATCH}");
        vec![SubmitOutcome::Rejected(SubmitRejection::TooMany(why)); n]
    })
}

// What a client of a replicated store asks beyond submitting, and what it is answered
// (served by `crate::consensus::node::client`).

/// How fresh a read must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReadConsistency {
    /// Sees every write that completed before the read began (a read index on the leader).
    Linearizable,
    /// This node's applied state, however far behind the leader it is.
    Local,
}

/// A read's answer and the height of the state it read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadAnswer {
    pub answer: Vec<u8>,
    pub height: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ReadError {
    /// No node that leads could confirm it: retry (at `leader` if known).
    #[error("no confirmed leader to read from (leader known: {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    /// The leader could not confirm its leadership with a quorum in time, or the forward failed.
    #[error("read not confirmed: {0}")]
    Unconfirmed(String),
    /// The application refused the query.
    #[error("query refused: {0}")]
    Refused(Rejection),
}

/// What came of a transaction submitted to be waited on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Awaited {
    /// Applied in the block at `height`, answering `output`.
    Applied { height: u64, output: Vec<u8> },
    /// Not admitted: it was refused or no leader took it. It will not be applied.
    NotAdmitted(SubmitOutcome),
    /// Admitted, but not seen applied in time: it may still be applied, or not.
    TimedOut,
}

/// One outcome per transaction: the application's refusal where its check failed, and the
/// next of `outcome` (called once per valid transaction, in order) everywhere else.
pub fn fill_checked(
    valid: &[Result<(), Rejection>],
    mut outcome: impl FnMut() -> SubmitOutcome,
) -> Vec<SubmitOutcome> {
    valid
        .iter()
        .map(|ok| match ok {
            Ok(()) => outcome(),
            Err(why) => SubmitOutcome::Rejected(SubmitRejection::Invalid(why.clone())),
        })
        .collect()
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    SubmitTransaction(SubmitOutcome),
    Read(Result<ReadAnswer, ReadError>),
    Awaited(Awaited),
    /// The application's answer to a query, and the height of the state it read.
    Query {
        answer: Result<Vec<u8>, Rejection>,
        height: u64,
    },
    Pong,
    Head(Head),
    /// Blocks from the height asked, each with its commit certificate.
    Blocks(Vec<ServedBlock>),
    /// The request was refused before reaching Raft (undecodable, or from a non-peer).
    Refused(String),
    PreVote {
        granted: bool,
    },
    /// The (height, round) the answering member last signed, after taking the announcement in.
    Announced {
        last_signed: Option<(u64, u64)>,
    },
    /// The round is promised; the blocks accepted at the ballot's height and above.
    FencePromised(Promise<Block>),
    FenceAccepted,
    Attestations(Vec<Attestation>),
    /// What became of a claim: applied (won or lost), or why it did not reach the log.
    Claim(Result<ApplyOutcome, String>),
    /// What became of each transaction of a batched submission, in order.
    SubmitTransactions(Vec<SubmitOutcome>),
    /// One answer per height asked that the peer applied, lowest first.
    CommitVotes(Vec<VoteAnswer>),
}

/// What became of a submitted transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubmitOutcome {
    /// In the leader's mempool.
    Accepted {
        leader: NodeId,
    },
    /// This node is not the leader and did not forward; retry at `leader` if known.
    NotLeader {
        leader: Option<NodeId>,
    },
    Rejected(SubmitRejection),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum SubmitRejection {
    /// The application's own check of the transaction refused it (encoding, signature).
    #[error("{0}")]
    Invalid(Rejection),
    #[error("{0}")]
    Mempool(AdmitError),
    #[error("forwarding to the leader failed: {0}")]
    Forward(String),
    #[error("{0}")]
    TooMany(String),
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::chain::block::ChainSpec;
    use crate::chain::rules::{build_block, Proposal};
    use crate::codec;
    use crate::keys::derived_key;

    type Rt = openraft::TokioRuntime;

    /// The runtime-free mirrors put the same bytes on the wire as openraft's own messages, so
    /// dropping the runtime parameter changed no encoding.
    #[test]
    fn mirrors_encode_as_openraft_does() {
        let key = derived_key("wire-test", 0);
        let id = key.node_id();
        let spec = ChainSpec {
            chain_id: 7,
            app: crate::app::App::new(crate::app::ledger::LedgerApp::default()),
            blocks_per_batch: crate::chain::block::DEFAULT_BLOCKS_PER_BATCH,
        };
        let head = Head::of(&spec.genesis_header().unwrap()).unwrap();
        let block = build_block(
            Proposal {
                head: &head,
                state: &spec.genesis_state(),
                key: &key,
                term: 3,
                slot: None,
                seals_batch: false,
                members: None,
                timestamp_ms: 9,
                max_transactions: 0,
            },
            Vec::new(),
        )
        .unwrap()
        .block;
        let log_id = |i| openraft::LogId::new(openraft::CommittedLeaderId::new(3, id), i);
        let members = openraft::Membership::new(vec![BTreeSet::from([id])], None);
        let entries: Vec<openraft::Entry<Canon<Rt>>> = vec![
            openraft::Entry {
                log_id: log_id(1),
                payload: EntryPayload::Membership(members.clone()),
            },
            openraft::Entry {
                log_id: log_id(2),
                payload: EntryPayload::Blank,
            },
            openraft::Entry {
                log_id: log_id(3),
                payload: EntryPayload::Normal(Command::Block(block)),
            },
        ];
        let ours = AppendEntriesRequest::<Canon<Rt>> {
            vote: Vote::new_committed(3, id),
            prev_log_id: Some(log_id(0)),
            entries,
            leader_commit: Some(log_id(2)),
        };
        let theirs = codec::encode(&ours).unwrap();
        let mirror = AppendEntries::from(ours);
        assert_eq!(codec::encode(&mirror).unwrap(), theirs);
        let back: AppendEntriesRequest<Canon<Rt>> = mirror.into();
        assert_eq!(codec::encode(&back).unwrap(), theirs);

        let snap = InstallSnapshotRequest::<Canon<Rt>> {
            vote: Vote::new_committed(3, id),
            meta: SnapshotMeta {
                last_log_id: Some(log_id(3)),
                last_membership: openraft::StoredMembership::new(Some(log_id(1)), members),
                snapshot_id: "s".into(),
            },
            offset: 5,
            data: vec![1, 2, 3],
            done: true,
        };
        let theirs = codec::encode(&snap).unwrap();
        let mirror = InstallSnapshot::from(snap);
        assert_eq!(codec::encode(&mirror).unwrap(), theirs);
    }
}

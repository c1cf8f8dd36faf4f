//! Messages between nodes. Raft RPCs carry openraft's own types; the payload of an append is a
//! list of entries, each a whole block.

use alloy_primitives::Address;
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::AsyncRuntime;
use serde::{Deserialize, Serialize};

use crate::block::Block;
use crate::chain::Head;
use crate::ids::NodeId;
use crate::mempool::AdmitError;
use crate::policy::election::LogPos;
use crate::raft::Canon;
use crate::tx::SignedTransaction;

#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub enum Request<RT: AsyncRuntime> {
    AppendEntries(AppendEntriesRequest<Canon<RT>>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<Canon<RT>>),
    /// A client's transaction: the receiver forwards it to the leader if it is not the leader.
    ClientSubmit(SignedTransaction),
    /// A transaction a replica forwarded for the leader's mempool; never forwarded again.
    Forwarded(SignedTransaction),
    /// Are you there? Answered by consensus peers only; see `contact`.
    Ping,
    /// An account's balance and next nonce in this node's applied state.
    Account(Address),
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
}

#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub enum Response {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    SubmitTransaction(SubmitOutcome),
    Account {
        balance: u64,
        nonce: u64,
        height: u64,
    },
    Pong,
    Head(Head),
    Blocks(Vec<Block>),
    /// The request was refused before reaching Raft (undecodable, or from a non-peer).
    Refused(String),
    PreVote {
        granted: bool,
    },
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
    #[error("signature does not recover to the sender")]
    BadSignature,
    #[error("{0}")]
    Mempool(AdmitError),
    #[error("forwarding to the leader failed: {0}")]
    Forward(String),
}

//! The openraft type config and the types every part of the Raft glue and the wire share: what
//! an entry carries, what applying it produced, and openraft's id types for canon's node ids.
//! Kept apart from the glue so that the wire and the chain store name them without depending
//! on the log store, state machine or network.

use std::cmp::Ordering;
use std::fmt;
use std::io::Cursor;
use std::marker::PhantomData;

use alloy_primitives::B256;
use openraft::AsyncRuntime;
use serde::{Deserialize, Serialize};

use crate::chain::block::Block;
use crate::chain::rules::BlockError;
use crate::ids::NodeId;
use crate::settlement::role::{BatcherClaim, ClaimLost};

/// What applying one committed entry produced; returned to the proposer by `client_write`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApplyOutcome {
    Applied {
        height: u64,
        hash: B256,
    },
    /// The block did not extend the chain when its turn came (a deposed leader's proposal) or
    /// failed verification: a no-op on every node.
    Rejected(BlockError),
    /// A leader no-op or membership entry: nothing to execute.
    Control,
    /// A `ClaimBatcher` entry took the batcher role at `epoch`.
    Claimed {
        epoch: u64,
    },
    /// A `ClaimBatcher` entry lost the compare-and-set: a no-op on every node.
    ClaimLost(ClaimLost),
}

/// What a normal Raft entry carries.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A block the leader proposes for canonization.
    Block(Block),
    /// A node's claim of the batcher role (see [`crate::settlement::role`]).
    ClaimBatcher(BatcherClaim),
}

/// openraft's type config, generic over the async runtime: madsim in the simulator, tokio in
/// production. Everything else is fixed so both speak one wire and storage format.
pub struct Canon<RT>(PhantomData<fn() -> RT>);

impl<RT> Clone for Canon<RT> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<RT> Copy for Canon<RT> {}
impl<RT> Default for Canon<RT> {
    fn default() -> Self {
        Canon(PhantomData)
    }
}
impl<RT> fmt::Debug for Canon<RT> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Canon")
    }
}
impl<RT> PartialEq for Canon<RT> {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl<RT> Eq for Canon<RT> {}
impl<RT> PartialOrd for Canon<RT> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<RT> Ord for Canon<RT> {
    fn cmp(&self, _: &Self) -> Ordering {
        Ordering::Equal
    }
}

impl<RT: AsyncRuntime> openraft::RaftTypeConfig for Canon<RT> {
    type D = Command;
    type R = ApplyOutcome;
    type NodeId = NodeId;
    type Node = PeerNode;
    type Entry = openraft::Entry<Canon<RT>>;
    type SnapshotData = Cursor<Vec<u8>>;
    type AsyncRuntime = RT;
    type Responder = openraft::impls::OneshotResponder<Canon<RT>>;
}

pub type LogId = openraft::LogId<NodeId>;

/// A log id as the election policy compares logs: its term, then its index.
pub fn log_pos(id: &LogId) -> crate::policy::election::LogPos {
    crate::policy::election::LogPos {
        term: id.leader_id.term,
        index: id.index,
    }
}
pub type Vote = openraft::Vote<NodeId>;
pub type Membership = openraft::StoredMembership<NodeId, PeerNode>;

/// What Raft's membership says of a member besides its id: where it listens for p2p
/// (`host:port`), so every node that comes to lead can reach a member added later. Empty for
/// the genesis members, whom `network_boot_nodes` locate, and in the simulator.
pub type PeerNode = openraft::BasicNode;

/// Storage error for a given subject, the way openraft wants it reported.
pub(crate) fn io_err(
    subject: openraft::ErrorSubject<NodeId>,
    verb: openraft::ErrorVerb,
    e: impl fmt::Display,
) -> openraft::StorageError<NodeId> {
    openraft::StorageError::from(openraft::StorageIOError::new(
        subject,
        verb,
        openraft::AnyError::error(e.to_string()),
    ))
}

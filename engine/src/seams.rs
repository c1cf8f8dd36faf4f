//! What the host hands a node at start: the seams through which storage, the network, the
//! wall clock and observers reach the engine, and the errors a node reports to its host.
//! Consensus and external nodes share both.

use std::sync::Arc;

use crate::chain::replica::ReplayError;
use crate::chain::signatures::TxVerifier;
use crate::chain::store::StoreError;
use crate::clock::Clock;
use crate::events::EventSink;
use crate::ids::NodeId;
use crate::net::transport::Transport;
use crate::redundancy::signing_guard::GuardError;
use crate::storage::Storage;

/// The host's side of the seam, handed to the engine at start.
#[derive(Clone)]
pub struct Seams {
    pub storage: Arc<dyn Storage>,
    pub transport: Arc<dyn Transport>,
    pub clock: Arc<dyn Clock>,
    pub events: Arc<dyn EventSink>,
    /// Checks downloaded blocks' transaction signatures (on every core the host gives it).
    pub verifier: Arc<dyn TxVerifier>,
}

/// Why a node could not start (or restart Raft).
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A setting is invalid; the message names it.
    #[error("config: {0}")]
    Config(String),
    /// The chain store could not be opened or read.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// The chain store could not read block `height` at start.
    #[error("storage: block {height}: {source}")]
    Block { height: u64, source: StoreError },
    /// The Raft log or vote could not be read or written.
    #[error("storage: {0}")]
    RaftLog(Box<openraft::StorageError<NodeId>>),
    /// The signing guard's record could not be opened or reconciled with the chain.
    #[error("storage: {0}")]
    Guard(#[from] GuardError),
    /// The replica (an external node's chain) could not be opened.
    #[error("{0}")]
    Replica(#[from] ReplayError),
    /// Its store is damaged in a way it must not start with (see [`crate::policy::repair`]).
    #[error("this node must not start: {0}")]
    Halted(crate::policy::repair::Halt),
    /// A stopped Raft instance's state machine went on applying for this long, and a fresh
    /// one must not start beside it.
    #[error("raft: the stopped instance's state machine was still applying after {0:?}")]
    StillApplying(std::time::Duration),
    /// openraft could not start.
    #[error("raft: {0}")]
    Raft(Box<openraft::error::Fatal<NodeId>>),
}

// Boxed: openraft's errors are hundreds of bytes, and every `Result` carrying a `NodeError`
// would be that big.
impl From<openraft::StorageError<NodeId>> for NodeError {
    fn from(e: openraft::StorageError<NodeId>) -> Self {
        NodeError::RaftLog(Box::new(e))
    }
}

impl From<openraft::error::Fatal<NodeId>> for NodeError {
    fn from(e: openraft::error::Fatal<NodeId>) -> Self {
        NodeError::Raft(Box::new(e))
    }
}

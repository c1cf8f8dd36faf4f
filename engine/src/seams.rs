//! What the host hands a node at start: the seams through which storage, the network, the
//! wall clock and observers reach the engine, and the errors a node reports to its host.
//! Consensus and external nodes share both.

use std::sync::Arc;

use crate::chain::signatures::SignatureVerifier;
use crate::clock::Clock;
use crate::events::EventSink;
use crate::net::transport::Transport;
use crate::storage::Storage;

/// The host's side of the seam, handed to the engine at start.
#[derive(Clone)]
pub struct Seams {
    pub storage: Arc<dyn Storage>,
    pub transport: Arc<dyn Transport>,
    pub clock: Arc<dyn Clock>,
    pub events: Arc<dyn EventSink>,
    /// Checks downloaded blocks' transaction signatures (on every core the host gives it).
    pub verifier: Arc<dyn SignatureVerifier>,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("config: {0}")]
    Config(String),
    #[error("storage: {0}")]
    Storage(String),
    #[error("raft: {0}")]
    Raft(String),
}

//! canon-engine: the pure consensus, replay and execution core.
//!
//! Nothing in this crate touches sockets, files, the wall clock or OS randomness. Time and
//! task spawning come from openraft's `AsyncRuntime` (supplied by the host), storage through
//! [`storage::Storage`], the network through [`net::transport::Transport`] (whose production and
//! simulated implementation is the p2p layer in [`net::p2p`], generic over the byte stream the
//! host dials and accepts), block timestamps through
//! [`clock::Clock`], and everything observable leaves through [`events::EventSink`].
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::panic))]

// The parts, each a folder: the application seam (and the ledger and key-value applications),
// the chain and its rules, Raft consensus, hot-standby redundancy,
// L1 settlement, external nodes, and the network's messages. `policy` holds every decision as a
// pure state machine, beside the seams through which the host supplies storage, time and events.
pub mod app;
pub mod chain;
pub mod consensus;
pub mod external;
pub mod net;
pub mod policy;
pub mod redundancy;
pub mod settlement;

pub mod clock;
pub mod codec;
pub mod events;
pub mod ids;
pub mod keys;
pub mod seams;
pub mod storage;
pub mod sync;

pub use alloy_primitives::{Address, B256};
pub use ids::NodeId;

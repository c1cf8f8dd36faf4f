//! canon-engine: the pure consensus, replay and execution core.
//!
//! Nothing in this crate touches sockets, files, the wall clock or OS randomness. Time and
//! task spawning come from openraft's `AsyncRuntime` (supplied by the host), storage through
//! [`storage::Storage`], the network through [`transport::Transport`], block timestamps through
//! [`clock::Clock`], and everything observable leaves through [`events::EventSink`].
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::panic))]

pub mod announcement;
pub mod backfill;
mod backfill_task;
pub mod batch;
pub mod batcher;
pub mod batcher_role;
pub mod block;
pub mod chain;
pub mod chain_store;
pub mod clock;
pub mod codec;
pub mod events;
pub mod external;
pub mod fenced;
pub mod group;
pub mod ids;
pub mod keys;
pub mod l1;
pub mod ledger;
pub mod mempool;
pub mod node;
pub mod peer;
pub mod policy;
pub mod raft;
pub mod replay;
pub mod seams;
pub mod shared_elector;
pub mod signatures;
pub mod signing_guard;
pub mod storage;
pub mod sync;
pub mod transport;
pub mod tx;
pub mod wire;

pub use alloy_primitives::{Address, B256};
pub use ids::NodeId;

//! Raft consensus among the consensus nodes: the node, its mempool and election state, the
//! openraft storage and network adapters, the backfill of blocks a snapshot jumped over, and
//! the commit certificates gathered for what it applied.
pub mod backfill;
mod certify;
pub mod config;
pub mod core;
mod driver;
pub mod mempool;
pub mod node;
pub mod raft;
pub mod repair;
pub mod shared_core;
pub mod status;

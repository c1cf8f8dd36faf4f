//! The chain: blocks of an application's transactions, the rules every node checks
//! (continuity, proposer signature, roots), the store a consensus node applies into, the
//! replica an external node replays into, and the certificates that prove a majority applied a
//! block.
pub mod backfill;
pub mod block;
pub mod certificate;
pub mod members;
pub mod replica;
pub mod rules;
pub mod signatures;
pub mod store;

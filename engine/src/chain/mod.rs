//! The chain: blocks and transactions, the ledger they execute on, the rules every node checks
//! (continuity, proposer signature, roots), the store a consensus node applies into, the
//! replica an external node replays into, and the certificates that prove a majority applied a
//! block.
pub mod backfill;
pub mod block;
pub mod certificate;
pub mod ledger;
pub mod replica;
pub mod rules;
pub mod signatures;
pub mod store;
pub mod tx;

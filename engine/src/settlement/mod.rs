//! L1 settlement: sealed batches and attestations, the batcher role claimed through Raft, the
//! batcher that submits them, and the L1 seam it submits through.
pub mod batch;
pub mod batcher;
pub mod batcher_core;
pub mod l1;
pub mod role;

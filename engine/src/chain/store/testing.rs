//! Growing a chain store in tests: the next block built and applied as a Raft member applies
//! it (its signatures trusted), through the store's own staging.

use super::{stage_applied, stage_block, ChainStore};
use crate::chain::block::Block;
use crate::chain::rules::{build_block, verify_block, Proposal};
use crate::chain::signatures::Signatures;
use crate::keys::SecretKey;
use crate::storage::{Durability, WriteBatch};

/// Applies `block`, proposed by `proposer`, on top of `store`'s head.
pub(crate) fn apply_trusted(store: &ChainStore, block: &Block, proposer: &SecretKey) {
    let mut next = store.state().clone();
    let executed = verify_block(
        &next.head,
        &next.state,
        &[proposer.node_id()],
        block,
        Signatures::Trusted,
    )
    .expect("verify");
    let mut batch = WriteBatch::default();
    next.head = stage_block(&mut batch, block, &executed).expect("stage");
    next.state = executed.state;
    stage_applied(&mut batch, &next).expect("stage");
    store
        .commit(batch, next, Durability::Buffered)
        .expect("commit");
}

/// Builds the next (empty) block on `store`'s head with `key`, applies it and returns it.
pub(crate) fn grow(store: &ChainStore, key: &SecretKey) -> Block {
    let s = store.state().clone();
    let proposal = Proposal {
        head: &s.head,
        state: &s.state,
        key,
        term: 1,
        slot: None,
        seals_batch: false,
        members: None,
        timestamp_ms: s.head.timestamp_ms + 1,
        max_transactions: 0,
    };
    let block = build_block(proposal, Vec::new()).expect("build").block;
    apply_trusted(store, &block, key);
    block
}

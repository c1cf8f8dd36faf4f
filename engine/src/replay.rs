//! Canonized blocks outside Raft. A [`Replica`] is an external node's chain: each downloaded
//! block is verified with the same chain rules and executor consensus nodes apply (continuity,
//! proposer signature by a consensus peer, transactions root, re-executed state root), then
//! block, touched accounts and head are stored in one atomic batch. Serving blocks to others
//! ([`answer_get_blocks`]) is shared by consensus and external nodes.

use std::sync::Arc;

use openraft::AsyncRuntime;

use crate::block::{Block, ChainSpec};
use crate::chain::{self, BlockError, Head};
use crate::chain_store::{stage_applied, stage_block, ChainStore};
use crate::ids::NodeId;
use crate::storage::{Durability, WriteBatch};
use crate::wire::Response;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The block fails a chain rule: whoever served it is not to be trusted.
    #[error("rejected: {0}")]
    Rejected(#[from] BlockError),
    #[error("storage: {0}")]
    Storage(String),
}

pub struct Replica {
    validators: Vec<NodeId>,
    chain: Arc<ChainStore>,
}

impl Replica {
    /// Opens the chain stored in `storage` (genesis when empty). `validators` are the ids
    /// allowed to propose: `consensus_peer_ids`.
    pub fn open(
        storage: Arc<dyn crate::storage::Storage>,
        spec: &ChainSpec,
        validators: Vec<NodeId>,
    ) -> Result<Replica, ReplayError> {
        let chain =
            ChainStore::open(storage, spec).map_err(|e| ReplayError::Storage(e.to_string()))?;
        Ok(Replica {
            validators,
            chain: Arc::new(chain),
        })
    }

    pub fn head(&self) -> Head {
        self.chain.head()
    }

    pub fn chain(&self) -> &Arc<ChainStore> {
        &self.chain
    }

    /// Verifies `block` on top of the head and stores it; nothing changes if it fails.
    /// Buffered: a crash may lose the newest blocks, never part of one; they are downloaded
    /// again from the head that survived.
    pub fn apply(&self, block: &Block) -> Result<Head, ReplayError> {
        self.apply_with(block, Durability::Buffered)
    }

    /// [`Replica::apply`] with the write's durability chosen by the caller (a signer syncs
    /// its own blocks).
    pub fn apply_with(&self, block: &Block, durability: Durability) -> Result<Head, ReplayError> {
        let mut next = self.chain.state().clone();
        let executed = chain::verify_block(&next.head, &next.ledger, &self.validators, block)?;
        let mut batch = WriteBatch::default();
        let head = stage_block(&mut batch, block, &executed)
            .map_err(|e| ReplayError::Storage(e.to_string()))?;
        next.head = head;
        next.ledger = executed.ledger;
        stage_applied(&mut batch, &next).map_err(|e| ReplayError::Storage(e.to_string()))?;
        self.chain
            .commit(batch, next, durability)
            .map_err(|e| ReplayError::Storage(e.to_string()))?;
        Ok(head)
    }
}

/// Answers `GetBlocks` from a chain: blocks from `from` up to the head, or, if there are none
/// yet, waits up to `wait_ms` for one.
pub async fn answer_get_blocks<RT: AsyncRuntime>(
    chain: &ChainStore,
    from: u64,
    max: u32,
    wait_ms: u32,
) -> Response {
    match chain.wait_for_blocks::<RT>(from, max, wait_ms).await {
        Ok(blocks) => Response::Blocks(blocks),
        Err(e) => Response::Refused(format!("cannot read blocks: {e}")),
    }
}

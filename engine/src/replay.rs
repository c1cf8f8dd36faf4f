//! Canonized blocks outside Raft. A [`Replica`] is an external node's chain: each downloaded
//! block is verified with the same chain rules and executor consensus nodes apply (continuity,
//! proposer signature by a consensus peer, transactions root, re-executed state root), then
//! block, touched accounts and head are stored in one atomic batch. Serving blocks to others
//! ([`answer_get_blocks`]) is shared by consensus and external nodes.

use std::sync::Arc;
use std::time::Duration;

use openraft::{AsyncRuntime, Instant as _};
use tokio::sync::Notify;

use crate::block::{Block, ChainSpec};
use crate::chain::{self, BlockError, Head};
use crate::ids::NodeId;
use crate::raft::state_machine::{
    load_chain_state, read_blocks, read_chain, stage_applied, stage_block, SharedChain,
};
use crate::storage::{Durability, Storage, WriteBatch};
use crate::wire::Response;

/// Most blocks one `GetBlocks` answer carries, and about how many bytes.
pub const MAX_BLOCKS_PER_RESPONSE: u32 = 256;
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// Longest a long-poll is held.
pub const MAX_WAIT_MS: u32 = 5_000;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The block fails a chain rule: whoever served it is not to be trusted.
    #[error("rejected: {0}")]
    Rejected(#[from] BlockError),
    #[error("storage: {0}")]
    Storage(String),
}

pub struct Replica {
    storage: Arc<dyn Storage>,
    validators: Vec<NodeId>,
    chain: SharedChain,
    applied: Arc<Notify>,
}

impl Replica {
    /// Opens the chain stored in `storage` (genesis when empty). `validators` are the ids
    /// allowed to propose: `consensus_peer_ids`.
    pub fn open(
        storage: Arc<dyn Storage>,
        spec: &ChainSpec,
        validators: Vec<NodeId>,
    ) -> Result<Replica, ReplayError> {
        let state =
            load_chain_state(&*storage, spec).map_err(|e| ReplayError::Storage(e.to_string()))?;
        Ok(Replica {
            storage,
            validators,
            chain: Arc::new(std::sync::RwLock::new(state)),
            applied: Arc::new(Notify::new()),
        })
    }

    pub fn head(&self) -> Head {
        read_chain(&self.chain).head
    }

    pub fn chain(&self) -> &SharedChain {
        &self.chain
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    pub fn applied_notify(&self) -> &Arc<Notify> {
        &self.applied
    }

    /// Verifies `block` on top of the head and stores it; nothing changes if it fails.
    pub fn apply(&self, block: &Block) -> Result<Head, ReplayError> {
        let mut next = read_chain(&self.chain).clone();
        let executed = chain::verify_block(&next.head, &next.ledger, &self.validators, block)?;
        let mut batch = WriteBatch::default();
        let head = stage_block(&mut batch, block, &executed)
            .map_err(|e| ReplayError::Storage(e.to_string()))?;
        next.head = head;
        next.ledger = executed.ledger;
        stage_applied(&mut batch, &next).map_err(|e| ReplayError::Storage(e.to_string()))?;
        // Buffered: a crash may lose the newest blocks, never part of one; they are
        // downloaded again from the head that survived.
        self.storage
            .write(batch, Durability::Buffered)
            .map_err(|e| ReplayError::Storage(e.to_string()))?;
        let mut guard = self.chain.write().unwrap_or_else(|p| p.into_inner());
        *guard = next;
        drop(guard);
        self.applied.notify_waiters();
        Ok(head)
    }
}

/// Answers `GetBlocks` from a chain: blocks from `from` up to the head, or, if there are none
/// yet, waits up to `wait_ms` for one.
pub async fn answer_get_blocks<RT: AsyncRuntime>(
    storage: &dyn Storage,
    chain: &SharedChain,
    applied: &Notify,
    from: u64,
    max: u32,
    wait_ms: u32,
) -> Response {
    let max = max.clamp(1, MAX_BLOCKS_PER_RESPONSE) as usize;
    let wait = Duration::from_millis(u64::from(wait_ms.min(MAX_WAIT_MS)));
    let deadline = RT::Instant::now() + wait;
    loop {
        // Registered before the head is read, so an apply in between is not missed.
        let notified = applied.notified();
        let head = read_chain(chain).head.height;
        if from <= head || wait_ms == 0 {
            let from = from.max(1);
            return match read_blocks(storage, from, head, max, MAX_RESPONSE_BYTES) {
                Ok(blocks) => Response::Blocks(blocks),
                Err(e) => Response::Refused(format!("cannot read blocks: {e}")),
            };
        }
        let now = RT::Instant::now();
        if now >= deadline {
            return Response::Blocks(Vec::new());
        }
        let _ = RT::timeout(deadline - now, notified).await;
    }
}

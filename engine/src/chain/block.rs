//! Blocks: a signed header plus the transactions it orders. A Raft log entry carries a whole block.

use alloy_primitives::{keccak256, B256};
use serde::{Deserialize, Serialize};

use crate::app::{App, AppState, Tx};
use crate::codec::{self, CodecError};
use crate::ids::{NodeId, Sig65};
use crate::keys::SecretKey;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockHeader {
    pub height: u64,
    pub parent_hash: B256,
    pub timestamp_ms: u64,
    pub transactions_root: B256,
    /// The application's state root after executing this block: the output hash replayers check.
    pub state_root: B256,
    pub proposer: NodeId,
    /// The Raft term of the leader that proposed the block (0 in single-sequencer mode).
    pub term: u64,
    /// Single-sequencer mode: the round it was signed for and the signer's redundancy level,
    /// covered by the signature. `None` in Raft mode.
    pub slot: Option<Slot>,
    /// The leader closes the open L1 batch with this block because the batch waited
    /// `batcher_batch_timeout_ms` (batches also close every `blocks_per_batch` blocks). In the
    /// block, so every node cuts the same batches.
    pub seals_batch: bool,
    /// The Raft voters in effect from the next block on, when they differ from the set that
    /// certifies this block (see [`crate::chain::members`]); `None` while they agree.
    pub members: Option<Vec<NodeId>>,
}

/// Where a single-sequencer block sits in time, and which member of the group signed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    pub round: u64,
    pub level: i64,
}

impl BlockHeader {
    pub fn hash(&self) -> Result<B256, CodecError> {
        Ok(keccak256(codec::encode(self)?))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub header: BlockHeader,
    /// The proposer's signature over the header hash.
    pub signature: Sig65,
    pub transactions: Vec<Tx>,
}

impl Block {
    pub fn hash(&self) -> Result<B256, CodecError> {
        self.header.hash()
    }

    /// Signs `header` with the proposer's node key.
    pub fn seal(
        header: BlockHeader,
        transactions: Vec<Tx>,
        key: &SecretKey,
    ) -> Result<Block, CodecError> {
        let signature = key.sign_hash(&header.hash()?);
        Ok(Block {
            header,
            signature,
            transactions,
        })
    }
}

/// Commits to the ordered list of transactions: keccak over their hashes, in order.
pub fn transactions_root(txs: &[Tx]) -> B256 {
    let mut buf = Vec::with_capacity(32 * txs.len());
    for tx in txs {
        buf.extend_from_slice(tx.hash().as_slice());
    }
    keccak256(&buf)
}

/// What every node of one chain agrees on before the first block.
#[derive(Clone, Debug)]
pub struct ChainSpec {
    pub chain_id: u64,
    /// What the transactions mean, and the state at height 0.
    pub app: App,
    /// An L1 batch closes after this many blocks (or earlier, at a block marked sealing).
    pub blocks_per_batch: u64,
}

/// `batcher_blocks_per_batch`'s default.
pub const DEFAULT_BLOCKS_PER_BATCH: u64 = 10;

impl ChainSpec {
    pub fn genesis_state(&self) -> AppState {
        self.app.genesis()
    }

    /// The height-0 header: no proposer, no transactions, the allocation's state root.
    pub fn genesis_header(&self) -> Result<BlockHeader, CodecError> {
        Ok(BlockHeader {
            height: 0,
            parent_hash: B256::from(alloy_primitives::U256::from(self.chain_id)),
            timestamp_ms: 0,
            transactions_root: transactions_root(&[]),
            state_root: self.app.genesis_root(),
            proposer: NodeId::default(),
            term: 0,
            slot: None,
            seals_batch: false,
            members: None,
        })
    }
}

//! What the HTTP and JSON-RPC handlers share: the node this process runs and the one read
//! API over its chain.

use std::sync::Arc;

use canon_engine::app::{Rejection, Tx};
use canon_engine::chain::block::{Block, ChainSpec};
use canon_engine::chain::rules::Head;
use canon_engine::chain::store::ChainStore;
use canon_engine::consensus::node::ConsensusNode;
use canon_engine::external::node::ExternalNode;
use canon_engine::net::wire::SubmitOutcome;
use canon_engine::redundancy::group::GroupMember;
use openraft::TokioRuntime;

use crate::metrics::Metrics;
use crate::p2p::TcpTransport;

pub type ProductionNode = ConsensusNode<TokioRuntime>;
pub type ProductionExternal = ExternalNode<TokioRuntime>;
pub type ProductionMember = GroupMember<TokioRuntime>;

/// What this process runs: a consensus node, an external node, or a member of a
/// single-sequencer group.
#[derive(Clone)]
pub enum Role {
    Consensus(Arc<ProductionNode>),
    External(Arc<ProductionExternal>),
    Group(Arc<ProductionMember>),
}

/// What the HTTP and RPC handlers share.
pub struct NodeContext {
    pub role: Role,
    pub spec: ChainSpec,
    pub transport: Arc<TcpTransport>,
    pub metrics: Arc<Metrics>,
    pub batcher_enabled: bool,
}

impl NodeContext {
    /// The chain this process serves: canonized (consensus) or verified (external).
    pub fn chain(&self) -> &Arc<ChainStore> {
        match &self.role {
            Role::Consensus(n) => n.chain(),
            Role::External(x) => x.replica().chain(),
            Role::Group(m) => m.sync().replica().chain(),
        }
    }

    pub fn head(&self) -> Head {
        self.chain().head()
    }

    /// The block at `height` (≥ 1) in this node's canonized (or verified) chain.
    pub fn block(&self, height: u64) -> Result<Option<Block>, String> {
        self.chain().block(height).map_err(|e| e.to_string())
    }

    /// The application's answer to `query` from the applied state, with the height read.
    pub fn query(&self, query: &[u8]) -> (Result<Vec<u8>, Rejection>, u64) {
        self.chain().query(query)
    }

    /// A client's transaction: consensus nodes admit or forward it to the leader; external
    /// nodes pass it to a consensus node; a group member admits it and passes it to the group.
    pub async fn submit(&self, tx: Tx) -> SubmitOutcome {
        match &self.role {
            Role::Consensus(n) => n.submit_transaction(tx).await,
            Role::External(x) => x.submit_transaction(tx).await,
            Role::Group(m) => m.submit_transaction(tx),
        }
    }

    /// Many client transactions in one call (`canon_sendTransactions`), one outcome each.
    pub async fn submit_many(&self, txs: Vec<Tx>) -> Vec<SubmitOutcome> {
        match &self.role {
            Role::Consensus(n) => n.submit_transactions(txs).await,
            Role::External(x) => x.submit_transactions(txs).await,
            Role::Group(m) => txs.into_iter().map(|tx| m.submit_transaction(tx)).collect(),
        }
    }
}

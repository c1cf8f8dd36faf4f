//! What the HTTP and JSON-RPC handlers share: the node this process runs and the one read
//! API over its chain.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use canon_engine::app::{Rejection, Tx};
use canon_engine::chain::block::{Block, ChainSpec};
use canon_engine::chain::rules::Head;
use canon_engine::chain::store::ChainStore;
use canon_engine::consensus::node::ConsensusNode;
use canon_engine::external::node::ExternalNode;
use canon_engine::net::wire::{Awaited, ReadAnswer, ReadConsistency, ReadError, SubmitOutcome};
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
    /// What JSON-RPC clients must present; `None`: any client is served.
    pub client_token: Option<crate::client_auth::ClientToken>,
    /// The numbering of the key-value writes this node makes for its RPC clients.
    pub kv_requests: RequestIds,
    /// The most transactions one submitting call may carry (`rpc_max_transactions_per_call`).
    pub max_transactions_per_call: usize,
}

/// A client number drawn at start and a request counter: every key-value write this process
/// makes for a client is a distinct transaction, across restarts too.
pub struct RequestIds {
    pub client: u64,
    next: AtomicU64,
}

impl RequestIds {
    pub fn new(client: u64) -> RequestIds {
        RequestIds {
            client,
            next: AtomicU64::new(0),
        }
    }

    pub fn next(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }
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

    /// Submits `txs` and waits up to `wait` for this node to apply each admitted one: one
    /// answer per transaction, in order. Waiting on this node's own chain makes a write seen
    /// here before the answer, whatever this node's role.
    pub async fn submit_and_wait(&self, txs: Vec<Tx>, wait: Duration) -> Vec<Awaited> {
        let deadline = tokio::time::Instant::now() + wait;
        let chain = self.chain().clone();
        let ids: Vec<_> = txs.iter().map(Tx::hash).collect();
        // Registered before submitting, so no answer can come before its wait.
        let waits: Vec<_> = ids.iter().map(|id| chain.await_applied(*id)).collect();
        let outcomes = self.submit_many(txs).await;
        let answers = outcomes
            .into_iter()
            .zip(waits)
            .map(|(outcome, applied)| async move {
                if !matches!(outcome, SubmitOutcome::Accepted { .. }) {
                    return Awaited::NotAdmitted(outcome);
                }
                match tokio::time::timeout_at(deadline, applied).await {
                    Ok(Ok(a)) => Awaited::Applied {
                        height: a.height,
                        output: a.output,
                    },
                    _ => Awaited::TimedOut,
                }
            });
        let answers = futures::future::join_all(answers).await;
        for (id, answer) in ids.iter().zip(&answers) {
            if !matches!(answer, Awaited::Applied { .. }) {
                chain.stop_awaiting(id);
            }
        }
        answers
    }

    /// Reads `query` from committed state. A linearizable read needs a consensus node (it
    /// asks the leader for a read index); any node serves a local read of what it applied.
    pub async fn read(
        &self,
        query: Vec<u8>,
        consistency: ReadConsistency,
    ) -> Result<ReadAnswer, ReadError> {
        match (&self.role, consistency) {
            (Role::Consensus(n), _) => n.read(query, consistency, false).await,
            (_, ReadConsistency::Local) => {
                let (answer, height) = self.query(&query);
                answer
                    .map(|answer| ReadAnswer { answer, height })
                    .map_err(ReadError::Refused)
            }
            (_, ReadConsistency::Linearizable) => Err(ReadError::Unconfirmed(
                "this node is not a consensus node: read linearizably from one, or ask this \
                 one for a local read"
                    .into(),
            )),
        }
    }
}

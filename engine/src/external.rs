//! An external node: never in Raft, never proposes, never signs. It downloads canonized blocks
//! from its sources (consensus nodes, or external nodes that serve what they verified), in
//! ranges pipelined across sources, verifies and replays each one into its [`Replica`], and
//! serves its verified chain on. A source that serves a block failing verification is dropped
//! and reported; once caught up, the node follows the head with long-polls.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::join_all;
use openraft::AsyncRuntime;
use serde::{Deserialize, Serialize};

use crate::block::{Block, ChainSpec};
use crate::chain::Head;
use crate::codec;
use crate::events::Event;
use crate::ids::NodeId;
use crate::keys::SecretKey;
use crate::peer;
use crate::policy::download::{DownloadConfig, Downloader, Plan, RoundResult};
use crate::replay::{answer_get_blocks, ReplayError, Replica};
use crate::seams::{NodeError, Seams};
use crate::tx::SignedTransaction;
use crate::wire::{Request, Response, SubmitOutcome, SubmitRejection};

#[derive(Clone, Debug)]
pub struct ExternalConfig {
    /// The p2p identity only: an external node signs nothing else.
    pub key: SecretKey,
    /// Where blocks come from: consensus nodes and/or other external nodes.
    pub sources: Vec<NodeId>,
    /// Who may propose (`consensus_peer_ids`): a block signed by anyone else is rejected.
    pub validators: Vec<NodeId>,
    pub chain: ChainSpec,
    /// Blocks asked for per request.
    pub batch_blocks: u32,
    /// Ranges in flight at once while catching up, spread over the sources.
    pub pipeline_depth: usize,
    pub request_timeout_ms: u64,
    /// How long a caught-up node's long-poll may be held by its source.
    pub follow_wait_ms: u32,
}

impl ExternalConfig {
    pub fn new(
        key: SecretKey,
        sources: Vec<NodeId>,
        validators: Vec<NodeId>,
        chain: ChainSpec,
    ) -> Self {
        ExternalConfig {
            key,
            sources,
            validators,
            chain,
            batch_blocks: 128,
            pipeline_depth: 4,
            request_timeout_ms: 2_000,
            follow_wait_ms: 1_000,
        }
    }
}

/// What the node knows of one source.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceState {
    pub id: NodeId,
    /// Its head height when last asked.
    pub head_height: Option<u64>,
    /// Why it was dropped; `None` while trusted.
    pub rejected: Option<String>,
    /// Requests that failed in a row (unreachable, timed out).
    pub failures: u32,
    pub blocks_applied: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExternalStatus {
    pub id: NodeId,
    pub head: Head,
    /// The highest head any trusted source reported.
    pub best_source_height: u64,
    /// Blocks behind the best source.
    pub lag: u64,
    pub sources: Vec<SourceState>,
}

pub struct ExternalNode<RT: AsyncRuntime> {
    cfg: ExternalConfig,
    id: NodeId,
    seams: Seams,
    replica: Replica,
    sources: Mutex<BTreeMap<NodeId, SourceState>>,
    stopped: AtomicBool,
    /// Whether the last download round found the sources at their head.
    caught_up: AtomicBool,
    _rt: std::marker::PhantomData<fn() -> RT>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One range request's result.
struct Fetched {
    source: NodeId,
    blocks: Result<Vec<Block>, String>,
}

impl<RT: AsyncRuntime> ExternalNode<RT> {
    pub async fn start(cfg: ExternalConfig, seams: Seams) -> Result<Arc<Self>, NodeError> {
        Self::start_with(cfg, seams, true).await
    }

    /// [`ExternalNode::start`]; a node that need not have sources (the only member of a
    /// redundancy group) counts as caught up while it has none.
    pub async fn start_with(
        cfg: ExternalConfig,
        seams: Seams,
        require_sources: bool,
    ) -> Result<Arc<Self>, NodeError> {
        let id = cfg.key.node_id();
        if cfg.validators.is_empty() {
            return Err(NodeError::Config(
                "consensus_peer_ids must name the nodes allowed to propose".into(),
            ));
        }
        if cfg.sources.is_empty() && require_sources {
            return Err(NodeError::Config(
                "network_boot_nodes must name at least one source of blocks".into(),
            ));
        }
        let replica = Replica::open(seams.storage.clone(), &cfg.chain, cfg.validators.clone())
            .map_err(|e| NodeError::Storage(e.to_string()))?;
        let head = replica.head();
        seams.events.emit(
            &id,
            Event::Started {
                head_height: head.height,
                head_hash: head.hash,
                applied_index: None,
                term: 0,
                committed_index: None,
            },
        );
        let sources = cfg
            .sources
            .iter()
            .filter(|s| **s != id)
            .map(|s| {
                (
                    *s,
                    SourceState {
                        id: *s,
                        ..Default::default()
                    },
                )
            })
            .collect();
        let no_sources = cfg.sources.iter().all(|s| *s == id);
        let node = Arc::new(ExternalNode {
            cfg,
            id,
            seams,
            replica,
            caught_up: AtomicBool::new(no_sources),
            sources: Mutex::new(sources),
            stopped: AtomicBool::new(false),
            _rt: std::marker::PhantomData,
        });
        let _detached = RT::spawn(node.clone().follow());
        Ok(node)
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn head(&self) -> Head {
        self.replica.head()
    }

    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    pub fn shutdown(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    /// Whether its last download round found every answering source at its head.
    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::SeqCst)
    }

    pub fn status(&self) -> ExternalStatus {
        let head = self.head();
        let sources: Vec<SourceState> = lock(&self.sources).values().cloned().collect();
        let best = sources
            .iter()
            .filter(|s| s.rejected.is_none())
            .filter_map(|s| s.head_height)
            .max()
            .unwrap_or(0)
            .max(head.height);
        ExternalStatus {
            id: self.id,
            head,
            best_source_height: best,
            lag: best - head.height,
            sources,
        }
    }

    /// Answers a request from anyone: the verified chain, accounts, and transactions (which go
    /// on to a consensus source). Raft requests are refused: this node is not in Raft.
    pub async fn handle_request(&self, from: NodeId, bytes: &[u8]) -> Vec<u8> {
        let resp = match codec::decode::<Request>(bytes) {
            Err(e) => Response::Refused(format!("undecodable request: {e}")),
            Ok(Request::GetHead) => Response::Head(self.head()),
            Ok(Request::GetBlocks { from, max, wait_ms }) => {
                answer_get_blocks::<RT>(self.replica.chain(), from, max, wait_ms).await
            }
            Ok(Request::Account(addr)) => {
                let (acc, height) = self.replica.chain().account(&addr);
                Response::Account {
                    balance: acc.balance,
                    nonce: acc.nonce,
                    height,
                }
            }
            Ok(Request::ClientSubmit(tx)) => {
                Response::SubmitTransaction(self.submit_transaction(tx).await)
            }
            Ok(_) => Response::Refused(format!(
                "{} is an external node and takes no part in Raft (asked by {from})",
                self.id
            )),
        };
        codec::encode(&resp).unwrap_or_default()
    }

    /// Passes a client's transaction to a consensus node (which forwards it to the leader).
    pub async fn submit_transaction(&self, tx: SignedTransaction) -> SubmitOutcome {
        if !tx.signature_valid() {
            return SubmitOutcome::Rejected(SubmitRejection::BadSignature);
        }
        let req = Request::ClientSubmit(tx);
        let timeout = Duration::from_millis(self.cfg.request_timeout_ms);
        let mut last = String::from("no consensus node among the sources");
        for peer in self
            .cfg
            .sources
            .iter()
            .filter(|s| self.cfg.validators.contains(s))
        {
            match peer::call(&*self.seams.transport, *peer, &req, timeout).await {
                Ok(Response::SubmitTransaction(SubmitOutcome::NotLeader { .. })) => {
                    last = format!("{peer} knows no leader");
                }
                Ok(Response::SubmitTransaction(outcome)) => return outcome,
                Ok(_) => last = peer::CallError::Unexpected { peer: *peer }.to_string(),
                Err(e) => last = e.to_string(),
            }
        }
        SubmitOutcome::Rejected(SubmitRejection::Forward(last))
    }

    fn trusted_sources(&self) -> Vec<NodeId> {
        lock(&self.sources)
            .values()
            .filter(|s| s.rejected.is_none())
            .map(|s| s.id)
            .collect()
    }

    async fn fetch(&self, source: NodeId, from: u64, wait_ms: u32) -> Fetched {
        let req = Request::GetBlocks {
            from,
            max: self.cfg.batch_blocks,
            wait_ms,
        };
        let timeout = Duration::from_millis(self.cfg.request_timeout_ms + u64::from(wait_ms));
        let blocks = match peer::call(&*self.seams.transport, source, &req, timeout).await {
            Ok(Response::Blocks(b)) => Ok(b),
            Ok(_) => Err(peer::CallError::Unexpected { peer: source }.to_string()),
            Err(e) => Err(e.to_string()),
        };
        Fetched { source, blocks }
    }

    fn reject(&self, source: NodeId, height: u64, error: &crate::chain::BlockError) {
        let reason = error.to_string();
        if let Some(s) = lock(&self.sources).get_mut(&source) {
            s.rejected = Some(format!("height {height}: {reason}"));
        }
        self.seams.events.emit(
            &self.id,
            Event::SourceRejected {
                source,
                height,
                kind: error.kind().to_string(),
                reason,
            },
        );
    }

    /// Applies what `fetched` holds that extends the head, in order. Returns how many blocks
    /// were applied, or `None` when a storage failure stopped it.
    fn apply_fetched(&self, fetched: Fetched) -> Option<u64> {
        let source = fetched.source;
        let blocks = match fetched.blocks {
            Ok(b) => {
                if let Some(s) = lock(&self.sources).get_mut(&source) {
                    s.failures = 0;
                    if let Some(last) = b.last() {
                        let h = last.header.height;
                        s.head_height = Some(s.head_height.map_or(h, |x| x.max(h)));
                    }
                }
                b
            }
            Err(_) => {
                if let Some(s) = lock(&self.sources).get_mut(&source) {
                    s.failures = s.failures.saturating_add(1);
                }
                return Some(0);
            }
        };
        let mut applied = 0;
        for block in &blocks {
            let head = self.replica.head();
            let h = &block.header;
            if h.height <= head.height {
                continue;
            }
            if h.height != head.height + 1 {
                // An earlier range came back short; this one is fetched again next round.
                break;
            }
            match self.replica.apply(block) {
                Ok(new_head) => {
                    applied += 1;
                    if let Some(s) = lock(&self.sources).get_mut(&source) {
                        s.blocks_applied += 1;
                    }
                    self.seams.events.emit(
                        &self.id,
                        Event::Replayed {
                            height: new_head.height,
                            hash: new_head.hash,
                            parent_hash: h.parent_hash,
                            state_root: h.state_root,
                            source,
                        },
                    );
                }
                Err(ReplayError::Rejected(e)) => {
                    self.reject(source, h.height, &e);
                    return Some(applied);
                }
                Err(ReplayError::Storage(e)) => {
                    self.seams
                        .events
                        .emit(&self.id, Event::StorageFailed { reason: e });
                    return None;
                }
            }
        }
        Some(applied)
    }

    /// The download loop: plans each round with `policy::download`, fetches, applies.
    async fn follow(self: Arc<Self>) {
        let mut downloader = Downloader::new(DownloadConfig {
            batch_blocks: self.cfg.batch_blocks,
            pipeline_depth: self.cfg.pipeline_depth,
            follow_wait_ms: self.cfg.follow_wait_ms,
        });
        while !self.stopped.load(Ordering::SeqCst) {
            let planned = match downloader.plan(self.replica.head().height, &self.trusted_sources())
            {
                Plan::Fetch(f) => f,
                Plan::Pause { ms } => {
                    RT::sleep(Duration::from_millis(ms)).await;
                    continue;
                }
            };
            let results = join_all(
                planned
                    .iter()
                    .map(|f| self.fetch(f.source, f.from, f.wait_ms)),
            )
            .await;
            let mut round = RoundResult {
                any_answered: results.iter().any(|f| f.blocks.is_ok()),
                received: results
                    .iter()
                    .map(|f| f.blocks.as_ref().map_or(0, Vec::len) as u64)
                    .sum(),
                ..RoundResult::default()
            };
            for fetched in results {
                match self.apply_fetched(fetched) {
                    Some(n) => round.applied += n,
                    None => {
                        round.storage_failed = true;
                        break;
                    }
                }
            }
            let pause_ms = downloader.after(&planned, round);
            self.caught_up
                .store(downloader.caught_up(), Ordering::SeqCst);
            if pause_ms > 0 {
                RT::sleep(Duration::from_millis(pause_ms)).await;
            }
        }
    }
}

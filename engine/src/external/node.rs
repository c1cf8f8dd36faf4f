//! An external node: never in Raft, never proposes, never signs. It downloads canonized blocks
//! from its sources (consensus nodes, or external nodes that serve what they verified), in
//! ranges pipelined across sources, verifies and replays each one into its [`Replica`], and
//! serves its verified chain on. A source that serves a block failing verification is dropped
//! and reported; once caught up, the node follows the head with long-polls.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use openraft::{AsyncRuntime, Instant as _};
use serde::{Deserialize, Serialize};

use crate::app::Tx;
use crate::chain::block::ChainSpec;
use crate::chain::certificate::ServedBlock;
use crate::chain::replica::{answer_get_blocks, ReplayError, Replica};
use crate::chain::rules::{BlockError, Head};
use crate::chain::store::Serve;
use crate::events::Event;
use crate::external::core::{EquivocationSeen, ExternalCore, SourceState};
use crate::ids::NodeId;
use crate::keys::SecretKey;
use crate::net::peer;
use crate::net::wire::{
    fill_checked, refuse_over_limit, Request, Response, SubmitOutcome, SubmitRejection,
};
use crate::policy::download::{DownloadConfig, Fetch, Plan, RoundResult};
use crate::seams::{NodeError, Seams};
use crate::sync::lock;

mod fork;
use fork::ForkCheck;
mod range;

use range::{contiguous_head, RangeChecks, Verdict};

/// What makes a downloaded block canonical to this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// A chain committed through Raft: a block is applied only with a commit certificate of
    /// a majority of `validators`. Its transactions' signatures are recovered only with
    /// `verify_every_signature` (an operator who trusts no majority); otherwise the majority
    /// that applied it vouches for its leader's admission check, as members trust each other.
    Certificates { verify_every_signature: bool },
    /// A redundancy group's chain: its identity's signature on each block, and every
    /// transaction's signature checked (a group has no majority to vouch).
    Signer,
}

#[derive(Clone, Debug)]
pub struct ExternalConfig {
    /// The p2p identity only: an external node signs nothing else.
    pub key: SecretKey,
    /// Where blocks come from: consensus nodes and/or other external nodes.
    pub sources: Vec<NodeId>,
    /// Who may propose and certify (`consensus_peer_ids`): a block signed or certified by
    /// anyone else is rejected.
    pub validators: Vec<NodeId>,
    pub trust: Trust,
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
            trust: Trust::Certificates {
                verify_every_signature: false,
            },
            chain,
            batch_blocks: 128,
            pipeline_depth: 4,
            request_timeout_ms: 2_000,
            follow_wait_ms: 1_000,
        }
    }
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
    /// Two blocks signed by one identity at one height, as this node found them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub equivocations: Vec<EquivocationSeen>,
}

/// Heights compared per request while looking for where two branches part.
const FORK_WINDOW: u64 = 64;
/// The deepest fork a follower resolves; a deeper one is reported and left alone.
const MAX_FORK_DEPTH: u64 = 100_000;

/// What applying a fetched range did.
enum Applied {
    Blocks(u64),
    /// The source serves a validly signed block that does not extend the head: another branch.
    Fork {
        source: NodeId,
        applied: u64,
    },
    StorageFailed,
}

pub struct ExternalNode<RT: AsyncRuntime> {
    cfg: ExternalConfig,
    id: NodeId,
    seams: Seams,
    replica: Replica,
    /// Sources, forks and download rounds: what the node decides with.
    core: Mutex<ExternalCore>,
    stopped: AtomicBool,
    /// Start of the monotonic clock the fork probe and the losing-branch recheck are timed
    /// on. The wall clock (`seams.clock`) can jump back (chaos draws jumps), and timed on it
    /// they waited until it caught up again.
    started: RT::Instant,
}

/// The next download round, planned and fetching in its own task while one is applied.
type Ahead<RT> = (Vec<Fetch>, <RT as AsyncRuntime>::JoinHandle<Vec<Fetched>>);

/// One range request's result.
struct Fetched {
    source: NodeId,
    blocks: Result<Vec<ServedBlock>, String>,
    /// The range checked at once, where the fetch did it (a download round's ranges are
    /// checked as they arrive, while the round before is applied).
    checks: Option<RangeChecks>,
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
        // Before anything reads the store: every record checked. What is damaged it drops
        // and downloads again, checked as any download is; damage it cannot repair that way
        // (its signing guard, its identity) it refuses to start with.
        crate::consensus::repair::repair_at_start(&seams, &id, None)?;
        let replica = Replica::open(
            seams.storage.clone(),
            &cfg.chain,
            cfg.validators.clone(),
            seams.verifier.clone(),
        )?;
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
        let download = DownloadConfig {
            batch_blocks: cfg.batch_blocks,
            pipeline_depth: cfg.pipeline_depth,
            follow_wait_ms: cfg.follow_wait_ms,
        };
        let core = ExternalCore::new(id, &cfg.sources, download);
        let node = Arc::new(ExternalNode {
            cfg,
            id,
            seams,
            replica,
            core: Mutex::new(core),
            stopped: AtomicBool::new(false),
            started: RT::Instant::now(),
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

    /// The equivocations this node found (the newest few).
    pub fn equivocations(&self) -> Vec<EquivocationSeen> {
        lock(&self.core).equivocations().to_vec()
    }

    pub fn shutdown(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    /// Whether its last download round found every answering source at its head.
    pub fn caught_up(&self) -> bool {
        lock(&self.core).caught_up()
    }

    pub fn status(&self) -> ExternalStatus {
        let head = self.head();
        let (sources, equivocations) = {
            let core = lock(&self.core);
            (core.sources(), core.equivocations().to_vec())
        };
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
            equivocations,
        }
    }

    /// Answers a request from anyone: the verified chain, accounts, and transactions (which go
    /// on to a consensus source). Raft requests are refused: this node is not in Raft.
    pub async fn handle_request(&self, from: NodeId, bytes: &[u8]) -> Vec<u8> {
        peer::serve(bytes, |req| self.answer(from, req)).await
    }

    /// This node's answer to `req` from `from`.
    pub async fn answer(&self, from: NodeId, req: Request) -> Response {
        match req {
            Request::GetHead => Response::Head(self.head()),
            Request::GetBlocks { from, max, wait_ms } => {
                answer_get_blocks::<RT>(self.replica.chain(), from, max, wait_ms, self.serves())
                    .await
            }
            Request::Query(query) => {
                let (answer, height) = self.replica.chain().query(&query);
                Response::Query { answer, height }
            }
            Request::ClientSubmit(tx) => {
                Response::SubmitTransaction(self.submit_transaction(tx).await)
            }
            Request::ClientSubmitBatch(txs) => {
                Response::SubmitTransactions(self.submit_transactions(txs).await)
            }
            _ => Response::Refused(format!(
                "{} is an external node and takes no part in Raft (asked by {from})",
                self.id
            )),
        }
    }

    /// Passes a client's transaction to a consensus node (which forwards it to the leader):
    /// a batch of one.
    pub async fn submit_transaction(&self, tx: Tx) -> SubmitOutcome {
        self.submit_transactions(vec![tx])
            .await
            .pop()
            .unwrap_or(SubmitOutcome::Rejected(SubmitRejection::Forward(
                "no outcome came back".into(),
            )))
    }

    /// Passes many client transactions to a consensus node in one request; a bad signature is
    /// refused here. One outcome per transaction, in order.
    pub async fn submit_transactions(&self, txs: Vec<Tx>) -> Vec<SubmitOutcome> {
        if let Some(refused) = refuse_over_limit(txs.len()) {
            return refused;
        }
        let valid = self.seams.verifier.each_valid(self.replica.app(), &txs);
        let checked: Vec<Tx> = txs
            .into_iter()
            .zip(&valid)
            .filter_map(|(tx, ok)| ok.is_ok().then_some(tx))
            .collect();
        let k = checked.len();
        let mut answers = if k == 0 {
            Vec::new()
        } else {
            self.forward_batch(checked).await
        }
        .into_iter();
        fill_checked(&valid, || {
            answers
                .next()
                .unwrap_or(SubmitOutcome::Rejected(SubmitRejection::Forward(format!(
                    "fewer than {k} outcomes came back"
                ))))
        })
    }

    async fn forward_batch(&self, txs: Vec<Tx>) -> Vec<SubmitOutcome> {
        let n = txs.len();
        let req = Request::ClientSubmitBatch(txs);
        let timeout = Duration::from_millis(self.cfg.request_timeout_ms);
        let mut last = String::from("no consensus node among the sources");
        for peer in self
            .cfg
            .sources
            .iter()
            .filter(|s| self.cfg.validators.contains(s))
        {
            let answer = peer::ask(&*self.seams.transport, *peer, &req, timeout, |r| match r {
                Response::SubmitTransactions(o) if o.len() == n => Some(o),
                _ => None,
            });
            match answer.await {
                Ok(o)
                    if o.iter()
                        .all(|x| matches!(x, SubmitOutcome::NotLeader { .. })) =>
                {
                    last = format!("{peer} knows no leader");
                }
                Ok(o) => return o,
                Err(e) => last = e.to_string(),
            }
        }
        vec![SubmitOutcome::Rejected(SubmitRejection::Forward(last)); n]
    }

    /// What this node serves: on a certified chain only what it stored with a certificate
    /// (which is all it applies).
    fn serves(&self) -> Serve {
        match self.cfg.trust {
            Trust::Certificates { .. } => Serve::Certified,
            Trust::Signer => Serve::All,
        }
    }

    /// Milliseconds since this node started, on the runtime's monotonic clock.
    fn monotonic_ms(&self) -> u64 {
        u64::try_from((RT::Instant::now() - self.started).as_millis()).unwrap_or(u64::MAX)
    }

    fn trusted_sources(&self) -> Vec<NodeId> {
        lock(&self.core).trusted(self.monotonic_ms())
    }

    async fn fetch(&self, source: NodeId, from: u64, wait_ms: u32) -> Fetched {
        self.fetch_max(source, from, self.cfg.batch_blocks, wait_ms)
            .await
    }

    async fn fetch_max(&self, source: NodeId, from: u64, max: u32, wait_ms: u32) -> Fetched {
        let req = Request::GetBlocks { from, max, wait_ms };
        let timeout = Duration::from_millis(self.cfg.request_timeout_ms + u64::from(wait_ms));
        let blocks = peer::ask(&*self.seams.transport, source, &req, timeout, |r| match r {
            Response::Blocks(b) => Some(b),
            _ => None,
        })
        .await
        .map_err(|e| e.to_string());
        Fetched {
            source,
            blocks,
            checks: None,
        }
    }

    /// Fetches a range and checks it (certificates, signatures as the trust says).
    async fn fetch_checked(&self, source: NodeId, from: u64, wait_ms: u32) -> Fetched {
        let mut fetched = self.fetch(source, from, wait_ms).await;
        if let Ok(served) = &fetched.blocks {
            fetched.checks = Some(self.check_range(served));
        }
        fetched
    }

    /// One download round: every planned range at once, each checked as it arrives.
    async fn fetch_round(&self, planned: &[Fetch]) -> Vec<Fetched> {
        join_all(
            planned
                .iter()
                .map(|f| self.fetch_checked(f.source, f.from, f.wait_ms)),
        )
        .await
    }

    fn reject(&self, source: NodeId, height: u64, error: &BlockError) {
        let event = lock(&self.core).reject(source, height, error);
        self.seams.events.emit(&self.id, event);
    }

    /// Applies what `fetched` holds that extends the head, in order.
    fn apply_fetched(&self, fetched: Fetched) -> Applied {
        let source = fetched.source;
        lock(&self.core).on_answer(source, &fetched.blocks);
        let Ok(served) = fetched.blocks else {
            return Applied::Blocks(0);
        };
        let checks = match fetched.checks {
            Some(c) if c.holds_with(&self.replica.members()) => c,
            _ => self.check_range(&served),
        };
        let mut applied = 0;
        for (i, s) in served.iter().enumerate() {
            let block = &s.block;
            let head = self.replica.head();
            let h = &block.header;
            if h.height <= head.height {
                continue;
            }
            if h.height != head.height + 1 {
                // An earlier range came back short; this one is fetched again next round.
                break;
            }
            if self.cfg.trust == Trust::Signer {
                if let Some(stop) = self.fork_or_loser(source, block, &head) {
                    return match stop {
                        ForkCheck::Loser => Applied::Blocks(applied),
                        ForkCheck::Fork => Applied::Fork { source, applied },
                    };
                }
            }
            let result = match checks.verdict(i) {
                Verdict::Refused(e) => Err(ReplayError::Rejected(e)),
                Verdict::Certified { signatures_checked } => match &s.certificate {
                    Some(c) => self.replica.apply_certified(block, c, signatures_checked),
                    None => Err(ReplayError::Rejected(BlockError::Uncertified)),
                },
                Verdict::SignaturesChecked => self.replica.apply_signatures_checked(block),
                Verdict::CheckAlone => self.replica.apply(block),
            };
            match result {
                Ok(new_head) => {
                    applied += 1;
                    lock(&self.core).on_applied(source);
                    self.seams.events.emit(
                        &self.id,
                        Event::Replayed {
                            height: new_head.height,
                            hash: new_head.hash,
                            parent_hash: h.parent_hash,
                            state_root: h.state_root,
                            source,
                            certified_by: s.certificate.as_ref().map_or(0, |c| c.votes.len()),
                        },
                    );
                }
                Err(ReplayError::Rejected(e)) => {
                    self.reject(source, h.height, &e);
                    return Applied::Blocks(applied);
                }
                Err(e @ (ReplayError::Storage(_) | ReplayError::Missing { .. })) => {
                    let reason = match e {
                        ReplayError::Storage(e) => e.to_string(),
                        other => other.to_string(),
                    };
                    self.seams
                        .events
                        .emit(&self.id, Event::StorageFailed { reason });
                    return Applied::StorageFailed;
                }
            }
        }
        Applied::Blocks(applied)
    }

    /// The download loop: the core plans each round, the node fetches and applies. While
    /// catching up it is a pipeline: as soon as a round's ranges are in, the next round
    /// (planned from where they lead) is downloaded and checked in its own task while this one
    /// is applied, so the network, the certificate checks (on every core the verifier uses)
    /// and re-execution overlap.
    async fn follow(self: Arc<Self>) {
        let mut ahead: Option<Ahead<RT>> = None;
        while !self.stopped.load(Ordering::SeqCst) {
            let (planned, results) = match ahead.take() {
                Some((planned, next)) => match next.await {
                    Ok(results) => (planned, results),
                    Err(_) => continue,
                },
                None => {
                    let plan =
                        lock(&self.core).plan(self.monotonic_ms(), self.replica.head().height);
                    let planned = match plan {
                        Plan::Fetch(f) => f,
                        Plan::Pause { ms } => {
                            RT::sleep(Duration::from_millis(ms)).await;
                            continue;
                        }
                    };
                    let results = self.fetch_round(&planned).await;
                    (planned, results)
                }
            };
            let head = self.replica.head().height;
            let leads_to = contiguous_head(head, &results);
            if leads_to > head {
                let next = lock(&self.core).plan_ahead(self.monotonic_ms(), leads_to);
                if let Some(next) = next {
                    let node = self.clone();
                    let fetches = next.clone();
                    let task = RT::spawn(async move { node.fetch_round(&fetches).await });
                    ahead = Some((next, task));
                }
            }
            let mut round = RoundResult {
                any_answered: results.iter().any(|f| f.blocks.is_ok()),
                received: results
                    .iter()
                    .map(|f| f.blocks.as_ref().map_or(0, Vec::len) as u64)
                    .sum(),
                ..RoundResult::default()
            };
            let mut forks = Vec::new();
            for fetched in results {
                match self.apply_fetched(fetched) {
                    Applied::Blocks(n) => round.applied += n,
                    Applied::Fork { source, applied } => {
                        round.applied += applied;
                        forks.push(source);
                    }
                    Applied::StorageFailed => {
                        round.storage_failed = true;
                        break;
                    }
                }
            }
            for source in forks {
                self.resolve_fork(source, u64::MAX).await;
            }
            let probe = lock(&self.core).probe_due(self.monotonic_ms());
            if probe {
                self.probe_shorter_branches().await;
            }
            let pause_ms = lock(&self.core).after_round(&planned, round);
            if pause_ms > 0 {
                RT::sleep(Duration::from_millis(pause_ms)).await;
            }
        }
    }
}

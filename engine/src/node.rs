//! A consensus node: Raft over the seams, the sequencer that proposes blocks while this node is
//! a confirmed leader, transaction admission and forwarding, and the election driver that
//! carries out what `policy::election` decides (pre-vote, check-quorum).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use openraft::storage::RaftLogStorage;
use openraft::{AsyncRuntime, Raft, ServerState, SnapshotPolicy};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::block::{Block, ChainSpec};
use crate::chain::{build_block, Head, Proposal};
use crate::clock::Clock;
use crate::codec;
use crate::events::{Event, EventSink};
use crate::ids::NodeId;
use crate::keys::SecretKey;
use crate::ledger::Account;
use crate::ledger::TxError;
use crate::mempool::Mempool;
use crate::policy::election::{ElectionAction, ElectionConfig, Elector, LogPos, RaftView, Role};
use crate::raft::log_store::LogStore;
use crate::raft::network::NetworkFactory;
use crate::raft::state_machine::block_key;
use crate::raft::state_machine::{load_chain_state, read_chain, SharedChain, StateMachine};
use crate::raft::{ApplyOutcome, Canon, LogId};
use crate::shared_elector::SharedElector;
use crate::storage::Column;
use crate::storage::Storage;
use crate::transport::Transport;
use crate::tx::SignedTransaction;
use crate::wire::{Request, Response, SubmitOutcome, SubmitRejection};
use alloy_primitives::Address;

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub key: SecretKey,
    /// Every consensus node's id, this one's included.
    pub peers: Vec<NodeId>,
    /// May initialize the cluster's membership; safe on every node (the first one wins).
    pub bootstrap: bool,
    pub election_timeout_ms_min: u64,
    pub election_timeout_ms_max: u64,
    pub heartbeat_interval_ms: u64,
    pub block_time_ms: u64,
    pub max_block_transactions: usize,
    pub mempool_capacity: usize,
    /// Deadline for a forwarded transaction.
    pub rpc_timeout_ms: u64,
    pub chain: ChainSpec,
}

impl NodeConfig {
    pub fn id(&self) -> NodeId {
        self.key.node_id()
    }

    /// The checks a config must pass before a node starts; messages name the setting.
    pub fn validate(&self) -> Result<(), NodeError> {
        let id = self.id();
        if !self.peers.contains(&id) {
            return Err(NodeError::Config(format!(
                "consensus_peer_ids must contain this node's id {id} (derived from network_secret_key)"
            )));
        }
        if self.election_timeout_ms_min >= self.election_timeout_ms_max {
            return Err(NodeError::Config(format!(
                "consensus_election_timeout_min ({} ms) must be below consensus_election_timeout_max ({} ms)",
                self.election_timeout_ms_min, self.election_timeout_ms_max
            )));
        }
        if self.heartbeat_interval_ms >= self.election_timeout_ms_min {
            return Err(NodeError::Config(format!(
                "consensus_heartbeat_interval ({} ms) must be below consensus_election_timeout_min ({} ms)",
                self.heartbeat_interval_ms, self.election_timeout_ms_min
            )));
        }
        if self.block_time_ms == 0 {
            return Err(NodeError::Config(
                "sequencer_block_time must be above 0 ms".into(),
            ));
        }
        Ok(())
    }

    pub fn election_config(&self) -> ElectionConfig {
        ElectionConfig {
            id: self.id(),
            voters: self.peers.clone(),
            election_timeout_ms_min: self.election_timeout_ms_min,
            election_timeout_ms_max: self.election_timeout_ms_max,
            heartbeat_interval_ms: self.heartbeat_interval_ms,
        }
    }

    fn raft_config(&self) -> Result<openraft::Config, NodeError> {
        openraft::Config {
            cluster_name: "canon".into(),
            // With `enable_elect` off, openraft reads its election timeouts only for its leader
            // lease: it refuses votes for `election_timeout_max` after hearing a leader. The
            // pre-vote refuses for `election_timeout_ms_min` (policy::election); the lease is
            // set to the same window, so a pre-vote that passes is a vote openraft grants.
            election_timeout_min: self.heartbeat_interval_ms + 1,
            election_timeout_max: self
                .election_timeout_ms_min
                .max(self.heartbeat_interval_ms + 2),
            heartbeat_interval: self.heartbeat_interval_ms,
            max_payload_entries: 64,
            // Blocks are the chain: the log is kept whole, so followers catch up by replication
            // and a restarted node re-applies from its own log.
            snapshot_policy: SnapshotPolicy::Never,
            // Elections are decided by `policy::election` and started by the node's driver.
            enable_elect: false,
            ..Default::default()
        }
        .validate()
        .map_err(|e| NodeError::Config(e.to_string()))
    }
}

/// The host's side of the seam, handed to the engine at start.
#[derive(Clone)]
pub struct Seams {
    pub storage: Arc<dyn Storage>,
    pub transport: Arc<dyn Transport>,
    pub clock: Arc<dyn Clock>,
    pub events: Arc<dyn EventSink>,
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("config: {0}")]
    Config(String),
    #[error("storage: {0}")]
    Storage(String),
    #[error("raft: {0}")]
    Raft(String),
}

/// A point-in-time view for status endpoints and tables.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: NodeId,
    pub state: String,
    pub is_leader: bool,
    pub current_leader: Option<NodeId>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub last_applied_index: Option<u64>,
    pub head: Head,
    pub mempool_len: usize,
}

pub struct ConsensusNode<RT: AsyncRuntime> {
    cfg: NodeConfig,
    id: NodeId,
    seams: Seams,
    raft: Mutex<Raft<Canon<RT>>>,
    chain: SharedChain,
    mempool: Mutex<Mempool>,
    elector: Arc<SharedElector<RT::Instant>>,
    /// Woken after each applied entry; long-polling block downloads wait on it.
    applied: Arc<tokio::sync::Notify>,
    stopped: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<RT: AsyncRuntime> ConsensusNode<RT> {
    /// Opens storage, starts Raft and the node's background tasks on the runtime.
    pub async fn start(cfg: NodeConfig, seams: Seams) -> Result<Arc<Self>, NodeError> {
        cfg.validate()?;
        let id = cfg.id();
        let state = load_chain_state(&*seams.storage, &cfg.chain)
            .map_err(|e| NodeError::Storage(e.to_string()))?;
        let log: LogStore<RT> = LogStore::new(seams.storage.clone(), id, seams.events.clone());
        let vote = log
            .stored_vote()
            .map_err(|e| NodeError::Storage(e.to_string()))?;
        let committed = log
            .stored_committed()
            .map_err(|e| NodeError::Storage(e.to_string()))?;
        seams.events.emit(
            &id,
            Event::Started {
                head_height: state.head.height,
                head_hash: state.head.hash,
                applied_index: state.last_applied.map(|l| l.index),
                term: vote.map(|v| v.leader_id().term).unwrap_or(0),
                committed_index: committed.map(|c| c.index),
            },
        );
        let chain: SharedChain = Arc::new(RwLock::new(state));
        let elector = Arc::new(SharedElector::new(Elector::new(
            cfg.election_config(),
            RT::thread_rng().gen(),
        )));
        let applied = Arc::new(tokio::sync::Notify::new());
        let raft = Self::open_raft(&cfg, &seams, &chain, &elector, &applied).await?;
        let node = Arc::new(ConsensusNode {
            elector,
            applied,
            mempool: Mutex::new(Mempool::new(cfg.mempool_capacity)),
            cfg,
            id,
            seams,
            raft: Mutex::new(raft),
            chain,
            stopped: AtomicBool::new(false),
        });
        if node.cfg.bootstrap {
            let _detached = RT::spawn(node.clone().bootstrap());
        }
        let _detached = RT::spawn(node.clone().sequencer());
        let _detached = RT::spawn(node.clone().elections());
        Ok(node)
    }

    async fn open_raft(
        cfg: &NodeConfig,
        seams: &Seams,
        chain: &SharedChain,
        elector: &Arc<SharedElector<RT::Instant>>,
        applied: &Arc<tokio::sync::Notify>,
    ) -> Result<Raft<Canon<RT>>, NodeError> {
        let id = cfg.id();
        let log = LogStore::new(seams.storage.clone(), id, seams.events.clone());
        let sm = StateMachine::new(
            seams.storage.clone(),
            id,
            cfg.peers.clone(),
            seams.events.clone(),
            chain.clone(),
            applied.clone(),
        );
        Raft::new(
            id,
            Arc::new(cfg.raft_config()?),
            NetworkFactory::new(seams.transport.clone(), elector.clone()),
            log,
            sm,
        )
        .await
        .map_err(|e| NodeError::Raft(e.to_string()))
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn raft(&self) -> Raft<Canon<RT>> {
        lock(&self.raft).clone()
    }

    pub fn head(&self) -> Head {
        read_chain(&self.chain).head
    }

    /// The applied chain state (head, ledger), shared with the state machine.
    pub fn chain(&self) -> &SharedChain {
        &self.chain
    }

    pub fn status(&self) -> NodeStatus {
        let m = self.raft().metrics().borrow().clone();
        let chain = read_chain(&self.chain);
        NodeStatus {
            id: self.id,
            state: format!("{:?}", m.state),
            is_leader: m.state == ServerState::Leader,
            current_leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            last_applied_index: m.last_applied.map(|l| l.index),
            head: chain.head,
            mempool_len: lock(&self.mempool).len(),
        }
    }

    /// The canonized block at `height` as this node stored it; `None` above its head. Height 0
    /// is genesis, which has a header but no stored block: see [`ChainSpec::genesis_header`].
    pub fn block(&self, height: u64) -> Result<Option<Block>, NodeError> {
        if height == 0 || height > self.head().height {
            return Ok(None);
        }
        let bytes = self
            .seams
            .storage
            .get(Column::Block, &block_key(height))
            .map_err(|e| NodeError::Storage(e.to_string()))?;
        bytes
            .map(|b| codec::decode::<Block>(&b))
            .transpose()
            .map_err(|e| NodeError::Storage(format!("block {height}: {e}")))
    }

    pub fn chain_spec(&self) -> &ChainSpec {
        &self.cfg.chain
    }

    /// An account in this node's applied state, with the height it was read at.
    pub fn account(&self, address: &Address) -> (Account, u64) {
        let chain = read_chain(&self.chain);
        (chain.ledger.account(address), chain.head.height)
    }

    /// Consensus peers (not this node) heard from within `window`.
    pub fn peers_heard_within(&self, window: Duration) -> usize {
        let now = self.elector.now_ms();
        self.elector
            .lock()
            .peers_heard_within(now, window.as_millis() as u64)
    }

    /// The highest height Raft has canonized as far as this node knows: its applied head plus
    /// the committed entries not yet applied that extend it block by block. A committed
    /// entry that does not extend the head (a deposed leader's proposal) is not counted, the
    /// same way apply rejects it.
    pub fn canonized_height(&self) -> u64 {
        let (mut head, applied) = {
            let chain = read_chain(&self.chain);
            (chain.head, chain.last_applied.map(|l| l.index))
        };
        let log: LogStore<RT> = LogStore::new(
            self.seams.storage.clone(),
            self.id,
            self.seams.events.clone(),
        );
        let Ok(Some(committed)) = log.stored_committed() else {
            return head.height;
        };
        let from = applied.map_or(0, |a| a + 1);
        // The unapplied tail is a handful of entries; the bound keeps a status call cheap.
        let to = committed.index.min(from.saturating_add(256));
        for entry in log.read_range(from, to).unwrap_or_default() {
            if let openraft::EntryPayload::Normal(block) = &entry.payload {
                let h = &block.header;
                if h.height != head.height + 1 || h.parent_hash != head.hash {
                    break;
                }
                match Head::of(h) {
                    Ok(next) => head = next,
                    Err(_) => break,
                }
            }
        }
        head.height
    }

    /// Stops background tasks and Raft. The node's storage stays as it is.
    pub async fn shutdown(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        let _ = self.raft().shutdown().await;
    }

    fn stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Answers one request from peer `from` (already authenticated by the transport).
    /// Undecodable bytes get a refusal, never a panic.
    pub async fn handle_request(&self, from: NodeId, bytes: &[u8]) -> Vec<u8> {
        let resp = match codec::decode::<Request<RT>>(bytes) {
            Err(e) => Response::Refused(format!("undecodable request: {e}")),
            Ok(req) => self.dispatch(from, req).await,
        };
        codec::encode(&resp).unwrap_or_default()
    }

    async fn dispatch(&self, from: NodeId, req: Request<RT>) -> Response {
        let is_peer = self.cfg.peers.contains(&from);
        if is_peer {
            self.elector.heard(from);
        }
        match req {
            Request::Ping if is_peer => Response::Pong,
            Request::AppendEntries(r) if is_peer => {
                self.elector.appended_by(from);
                Response::AppendEntries(self.raft().append_entries(r).await)
            }
            Request::Vote(r) if is_peer => Response::Vote(self.raft().vote(r).await),
            Request::PreVote { last_log } if is_peer => Response::PreVote {
                granted: self.answer_pre_vote(from, last_log),
            },
            Request::InstallSnapshot(r) if is_peer => {
                Response::InstallSnapshot(self.raft().install_snapshot(r).await)
            }
            Request::ClientSubmit(tx) => {
                Response::SubmitTransaction(self.submit_transaction(tx).await)
            }
            Request::Forwarded(tx) => Response::SubmitTransaction(self.admit_local(tx)),
            Request::Account(addr) => {
                let chain = read_chain(&self.chain);
                let acc = chain.ledger.account(&addr);
                Response::Account {
                    balance: acc.balance,
                    nonce: acc.nonce,
                    height: chain.head.height,
                }
            }
            Request::GetHead => Response::Head(read_chain(&self.chain).head),
            Request::GetBlocks { from, max, wait_ms } => {
                crate::replay::answer_get_blocks::<RT>(
                    &*self.seams.storage,
                    &self.chain,
                    &self.applied,
                    from,
                    max,
                    wait_ms,
                )
                .await
            }
            _ => Response::Refused(format!("{from} is not in consensus_peer_ids")),
        }
    }

    /// A client's transaction: admitted here when leader, else forwarded once to the leader.
    pub async fn submit_transaction(&self, tx: SignedTransaction) -> SubmitOutcome {
        if !tx.signature_valid() {
            return SubmitOutcome::Rejected(SubmitRejection::BadSignature);
        }
        let (state, leader) = {
            let m = self.raft().metrics().borrow().clone();
            (m.state, m.current_leader)
        };
        match leader {
            Some(l) if l == self.id && state == ServerState::Leader => self.admit_local(tx),
            Some(l) if l != self.id => self.forward(l, tx).await,
            _ => SubmitOutcome::NotLeader { leader: None },
        }
    }

    async fn forward(&self, leader: NodeId, tx: SignedTransaction) -> SubmitOutcome {
        let req: Request<RT> = Request::Forwarded(tx);
        let bytes = match codec::encode(&req) {
            Ok(b) => b,
            Err(e) => return SubmitOutcome::Rejected(SubmitRejection::Forward(e.to_string())),
        };
        let timeout = Duration::from_millis(self.cfg.rpc_timeout_ms);
        match self.seams.transport.request(leader, bytes, timeout).await {
            Err(e) => SubmitOutcome::Rejected(SubmitRejection::Forward(e.to_string())),
            Ok(resp) => match codec::decode::<Response>(&resp) {
                Ok(Response::SubmitTransaction(o)) => o,
                Ok(Response::Refused(why)) => {
                    SubmitOutcome::Rejected(SubmitRejection::Forward(why))
                }
                Ok(_) => {
                    SubmitOutcome::Rejected(SubmitRejection::Forward("unexpected response".into()))
                }
                Err(e) => SubmitOutcome::Rejected(SubmitRejection::Forward(e.to_string())),
            },
        }
    }

    fn admit_local(&self, tx: SignedTransaction) -> SubmitOutcome {
        let (state, leader) = {
            let m = self.raft().metrics().borrow().clone();
            (m.state, m.current_leader)
        };
        if state != ServerState::Leader {
            return SubmitOutcome::NotLeader { leader };
        }
        if !tx.signature_valid() {
            return SubmitOutcome::Rejected(SubmitRejection::BadSignature);
        }
        let chain = read_chain(&self.chain);
        match lock(&self.mempool).admit(tx, &chain.ledger) {
            Ok(()) => SubmitOutcome::Accepted { leader: self.id },
            Err(e) => SubmitOutcome::Rejected(SubmitRejection::Mempool(e)),
        }
    }

    async fn bootstrap(self: Arc<Self>) {
        let raft = self.raft();
        if !matches!(raft.is_initialized().await, Ok(false)) {
            return;
        }
        let members: BTreeSet<NodeId> = self.cfg.peers.iter().copied().collect();
        if let Err(e) = raft.initialize(members).await {
            // Another node initialized first; this one joins as a member.
            tracing::info!(node = ?self.id, "bootstrap not needed: {e}");
        }
    }

    /// Builds and proposes one block per `block_time` while this node is a confirmed leader.
    async fn sequencer(self: Arc<Self>) {
        let block_time = Duration::from_millis(self.cfg.block_time_ms);
        loop {
            RT::sleep(block_time).await;
            if self.stopped() {
                return;
            }
            self.propose_once().await;
        }
    }

    async fn propose_once(&self) {
        {
            let chain = read_chain(&self.chain);
            lock(&self.mempool).prune(&chain.ledger);
        }
        let raft = self.raft();
        if raft.metrics().borrow().state != ServerState::Leader {
            return;
        }
        // Confirms leadership with a quorum and waits until everything committed before it is
        // applied here, so the block builds on the canonical head.
        let confirm_ms = self.cfg.election_timeout_ms_max;
        match RT::timeout(
            Duration::from_millis(confirm_ms),
            raft.ensure_linearizable(),
        )
        .await
        {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let term = raft.metrics().borrow().current_term;
        let (head, ledger) = {
            let c = read_chain(&self.chain);
            (c.head, c.ledger.clone())
        };
        let candidates = lock(&self.mempool).candidates(&ledger, self.cfg.max_block_transactions);
        let proposal = Proposal {
            head: &head,
            ledger: &ledger,
            key: &self.cfg.key,
            term,
            timestamp_ms: self.seams.clock.now_ms(),
            max_transactions: self.cfg.max_block_transactions,
        };
        let built = match build_block(proposal, candidates) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!("cannot encode a block: {e}");
                return;
            }
        };
        {
            let mut mp = lock(&self.mempool);
            for (tx, err) in &built.excluded {
                // A nonce gap may close later; anything else never becomes valid.
                if !matches!(err, TxError::NonceGap { .. }) {
                    mp.remove(tx);
                }
            }
        }
        let height = built.block.header.height;
        self.seams.events.emit(
            &self.id,
            Event::Proposed {
                height,
                transactions: built.block.transactions.len(),
            },
        );
        let deadline = Duration::from_millis(self.cfg.election_timeout_ms_max * 4);
        let reason = match RT::timeout(deadline, raft.client_write(built.block)).await {
            Ok(Ok(resp)) => match resp.data {
                ApplyOutcome::Applied { .. } | ApplyOutcome::Control => return,
                ApplyOutcome::Rejected(e) => e.to_string(),
            },
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("not canonized within {} ms", deadline.as_millis()),
        };
        // The proposal lost (to another leader's block, or leadership itself): follow the
        // canonized chain; its transactions stay in the mempool for the next block.
        self.seams
            .events
            .emit(&self.id, Event::ProposalDropped { height, reason });
    }

    /// What the election policy reads of Raft.
    fn raft_view(&self) -> RaftView {
        let m = self.raft().metrics().borrow().clone();
        RaftView {
            role: match m.state {
                ServerState::Leader => Role::Leader,
                ServerState::Candidate => Role::Candidate,
                ServerState::Follower => Role::Follower,
                _ => Role::Other,
            },
            term: m.current_term,
            voted_for: m.vote.leader_id().voted_for(),
            leader: m.current_leader,
            millis_since_quorum_ack: m.millis_since_quorum_ack,
            failed: m.running_state.as_ref().err().map(|e| e.to_string()),
        }
    }

    /// This node's last log position, as a pre-vote compares it.
    fn last_log_pos(&self) -> Result<Option<LogPos>, NodeError> {
        let log: LogStore<RT> = LogStore::new(
            self.seams.storage.clone(),
            self.id,
            self.seams.events.clone(),
        );
        let last: Option<LogId> = log
            .last_log_id()
            .map_err(|e| NodeError::Storage(e.to_string()))?;
        Ok(last.map(|l| LogPos {
            term: l.leader_id.term,
            index: l.index,
        }))
    }

    fn answer_pre_vote(&self, from: NodeId, candidate_last: Option<LogPos>) -> bool {
        // A log we cannot read is no ground to help anyone unseat a leader.
        let Ok(own_last) = self.last_log_pos() else {
            return false;
        };
        let view = self.raft_view();
        let now = self.elector.now_ms();
        self.elector
            .lock()
            .answer_pre_vote(now, from, candidate_last, own_last, &view)
    }

    /// The election driver: feeds the policy Raft's state at every deadline it names (at
    /// least every heartbeat) and carries out what it decides.
    async fn elections(self: Arc<Self>) {
        loop {
            let wait_ms = {
                let view = self.raft_view();
                let now = self.elector.now_ms();
                self.elector.lock().next_tick(&view).saturating_sub(now)
            };
            RT::sleep(Duration::from_millis(wait_ms.max(1))).await;
            if self.stopped() {
                return;
            }
            let view = self.raft_view();
            let now = self.elector.now_ms();
            let actions = self.elector.lock().tick(now, &view);
            for action in actions {
                self.carry_out(action).await;
            }
        }
    }

    async fn carry_out(self: &Arc<Self>, action: ElectionAction) {
        let emit = |e: Event| self.seams.events.emit(&self.id, e);
        match action {
            ElectionAction::RequestPreVotes { round } => self.request_pre_votes(round),
            ElectionAction::Campaign { .. } => {
                let _ = self.raft().trigger().elect().await;
            }
            ElectionAction::StepDown { silent_ms } => {
                emit(Event::SteppedDown {
                    millis_since_quorum_ack: silent_ms,
                });
                if let Err(e) = self.reopen_raft(true).await {
                    tracing::error!(node = ?self.id, "could not restart raft after stepping down: {e}");
                }
            }
            ElectionAction::Reopen { after } => {
                if self.reopen_raft(false).await.is_ok() {
                    emit(Event::RaftReopened { after });
                }
            }
            ElectionAction::Probe => self.probe_peers(),
            ElectionAction::BecameLeader { term } => emit(Event::BecameLeader { term }),
            ElectionAction::LostLeadership { term } => emit(Event::LostLeadership { term }),
        }
    }

    /// Asks every other voter for its pre-vote; each answer goes to the policy, and the first
    /// that completes a quorum starts the election.
    fn request_pre_votes(self: &Arc<Self>, round: u64) {
        let last_log = match self.last_log_pos() {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(node = ?self.id, "no pre-vote: cannot read the log: {e}");
                return;
            }
        };
        let Ok(bytes) = codec::encode(&Request::<RT>::PreVote { last_log }) else {
            return;
        };
        let timeout = Duration::from_millis(self.cfg.election_timeout_ms_min);
        for peer in self.cfg.peers.iter().copied().filter(|p| *p != self.id) {
            let node = self.clone();
            let bytes = bytes.clone();
            let _detached = RT::spawn(async move {
                let Ok(resp) = node.seams.transport.request(peer, bytes, timeout).await else {
                    return;
                };
                let Ok(Response::PreVote { granted }) = codec::decode::<Response>(&resp) else {
                    return;
                };
                let view = node.raft_view();
                let now = node.elector.now_ms();
                let campaign = node
                    .elector
                    .lock()
                    .on_pre_vote_answer(now, round, peer, granted, &view);
                if let Some(ElectionAction::Campaign { .. }) = campaign {
                    let _ = node.raft().trigger().elect().await;
                }
            });
        }
    }

    /// Pings every other peer; answers count as contact.
    fn probe_peers(self: &Arc<Self>) {
        let Ok(bytes) = codec::encode(&Request::<RT>::Ping) else {
            return;
        };
        let timeout = Duration::from_millis(self.cfg.heartbeat_interval_ms * 2);
        for peer in self.cfg.peers.iter().copied().filter(|p| *p != self.id) {
            let node = self.clone();
            let bytes = bytes.clone();
            let _detached = RT::spawn(async move {
                if let Ok(resp) = node.seams.transport.request(peer, bytes, timeout).await {
                    if matches!(codec::decode::<Response>(&resp), Ok(Response::Pong)) {
                        node.elector.heard(peer);
                    }
                }
            });
        }
    }

    /// Replaces the Raft instance with a fresh one over the same storage. Everything durable
    /// is kept. With `step_down` the fresh instance comes back a follower: the only way to
    /// leave leadership in openraft 0.9.
    async fn reopen_raft(&self, step_down: bool) -> Result<(), NodeError> {
        let _ = self.raft().shutdown().await;
        if step_down {
            // openraft restores leadership from a committed vote of its own at startup. Moving
            // to the next term with an uncommitted vote for itself is what a candidate does, so
            // it is safe, and it makes the fresh instance start as a follower.
            let mut log: LogStore<RT> = LogStore::new(
                self.seams.storage.clone(),
                self.id,
                self.seams.events.clone(),
            );
            let term = log
                .stored_vote()
                .map_err(|e| NodeError::Storage(e.to_string()))?
                .map(|v| v.leader_id().term)
                .unwrap_or(0);
            log.save_vote(&openraft::Vote::new(term + 1, self.id))
                .await
                .map_err(|e| NodeError::Storage(e.to_string()))?;
        }
        let fresh = Self::open_raft(
            &self.cfg,
            &self.seams,
            &self.chain,
            &self.elector,
            &self.applied,
        )
        .await?;
        *lock(&self.raft) = fresh;
        Ok(())
    }
}

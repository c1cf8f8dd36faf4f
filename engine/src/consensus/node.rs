//! A consensus node: Raft over the seams, the sequencer that proposes blocks while this node is
//! a confirmed leader, transaction admission and forwarding, and the election driver that
//! carries out what `policy::election` decides (pre-vote, check-quorum). Its submodules answer
//! clients (`client`), admit transactions (`admission`), change the membership (`membership`),
//! gate votes after a repair (`abstention`) and hold its side of settlement (`settlement`).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use futures::channel::mpsc::{unbounded, UnboundedReceiver, UnboundedSender};
use std::time::Duration;

use openraft::storage::RaftLogStorage;
use openraft::{AsyncRuntime, Instant as _, Raft, ServerState};
use rand::Rng;

use crate::app::Rejection;
use crate::chain::block::{Block, ChainSpec};
use crate::chain::rules::Head;
use crate::chain::store::{ChainStore, StoreError};
use crate::consensus::config::NodeConfig;
use crate::consensus::core::{Input, NodeCore};
use crate::consensus::raft::log_store::LogStore;
use crate::consensus::raft::network::NetworkFactory;
use crate::consensus::raft::state_machine::StateMachine;
use crate::consensus::raft::types::{log_pos, Canon, Command, LogId};
use crate::consensus::shared_core::SharedCore;
use crate::consensus::status::{log_entries, BatchDuty, BatchStatus, NodeStatus};
use crate::events::Event;
use crate::ids::NodeId;
use crate::net::peer;
use crate::net::wire::{Request, Response, MAX_SUBMIT_WAIT_MS};
use crate::policy::election::{LogPos, RaftView, Role};
pub use crate::seams::{NodeError, Seams};

mod abstention;
mod admission;
pub mod client;
pub mod membership;
mod settlement;
use crate::settlement::l1::L1;
use crate::sync::lock;

pub struct ConsensusNode<RT: AsyncRuntime> {
    cfg: NodeConfig,
    id: NodeId,
    seams: Seams,
    raft: Mutex<Raft<Canon<RT>>>,
    /// The state machine of the Raft instance in `raft`, alive while any part of it is.
    state_machine: Mutex<std::sync::Weak<()>>,
    /// The one handle through which this node reads its Raft log outside openraft (its last
    /// position for pre-votes, the committed tail for status); openraft gets clones of it.
    log: LogStore<RT>,
    chain: Arc<ChainStore>,
    /// What the node decides (sequencer, elections, mempool), shared with dispatch and the
    /// Raft network; run by [`crate::consensus::driver`].
    core: Arc<SharedCore<RT::Instant>>,
    stopped: AtomicBool,
    /// The L1 this node's batcher submits to, once it runs one.
    l1: OnceLock<Arc<dyn L1>>,
    /// Wakes the driver (work finished, a batcher started).
    wake: UnboundedSender<Input>,
    /// Its commit votes, signed once each (see [`crate::consensus::certify`]).
    own_votes: crate::consensus::certify::OwnVotes,
    /// A repair made it forget log entries it may have acknowledged: it never stands for
    /// election and votes only for candidates whose log reaches this position, until it has
    /// applied that far (see [`crate::policy::repair`]).
    abstain_until: Option<LogPos>,
    /// Set when it stopped itself on a corrupt read; hosts wait on [`Self::stopped_by_damage`].
    damage: Mutex<Option<crate::storage::StorageError>>,
    damage_seen: tokio::sync::Notify,
}

/// How long a reopen waits for the stopped instance's state machine to drain its queue (a
/// few blocks to apply, or a snapshot to finish building).
const STATE_MACHINE_DRAIN: Duration = Duration::from_secs(30);

impl<RT: AsyncRuntime> ConsensusNode<RT> {
    pub(crate) fn own_votes(&self) -> &crate::consensus::certify::OwnVotes {
        &self.own_votes
    }

    /// Opens storage and starts Raft. The driver is started by `ConsensusNode::start`
    /// (`consensus::driver`), which gets the receiving end of [`Self::wake`].
    pub(crate) async fn open(
        cfg: NodeConfig,
        seams: Seams,
    ) -> Result<(Arc<Self>, UnboundedReceiver<Input>), NodeError> {
        cfg.validate()?;
        let id = cfg.id();
        // Before anything reads the store: every record checked, and what is damaged
        // repaired or refused (`policy::repair`).
        let genesis_hash = cfg
            .chain
            .genesis_header()
            .and_then(|h| h.hash())
            .map_err(StoreError::from)?;
        let member = crate::consensus::repair::Member {
            key: &cfg.key,
            genesis_hash,
        };
        crate::consensus::repair::repair_at_start(&seams, &id, Some(member))?;
        let abstain_until = crate::consensus::repair::abstain_until(&*seams.storage);
        let chain = Arc::new(ChainStore::open(seams.storage.clone(), &cfg.chain)?);
        let (head, last_applied) = {
            let s = chain.state();
            (s.head, s.last_applied)
        };
        let log: LogStore<RT> = LogStore::new(seams.storage.clone(), id, seams.events.clone());
        let vote = log.stored_vote()?;
        let committed = log.stored_committed()?;
        seams.events.emit(
            &id,
            Event::Started {
                head_height: head.height,
                head_hash: head.hash,
                applied_index: last_applied.map(|l| l.index),
                term: vote.map(|v| v.leader_id().term).unwrap_or(0),
                committed_index: committed.map(|c| c.index),
            },
        );
        let core = NodeCore::new(
            cfg.clone(),
            chain.clone(),
            seams.clock.clone(),
            RT::thread_rng().gen(),
            0,
        );
        let core = Arc::new(SharedCore::new(RT::Instant::now(), core));
        let (raft, state_machine) = Self::open_raft(&cfg, &seams, &log, &chain, &core).await?;
        let (wake, finished) = unbounded();
        let node = Arc::new(ConsensusNode {
            core,
            cfg,
            id,
            seams,
            raft: Mutex::new(raft),
            state_machine: Mutex::new(state_machine),
            log,
            chain,
            stopped: AtomicBool::new(false),
            l1: OnceLock::new(),
            wake,
            own_votes: Default::default(),
            abstain_until,
            damage: Mutex::new(None),
            damage_seen: tokio::sync::Notify::new(),
        });
        Ok((node, finished))
    }

    async fn open_raft(
        cfg: &NodeConfig,
        seams: &Seams,
        log: &LogStore<RT>,
        chain: &Arc<ChainStore>,
        core: &Arc<SharedCore<RT::Instant>>,
    ) -> Result<(Raft<Canon<RT>>, std::sync::Weak<()>), NodeError> {
        let id = cfg.id();
        let sm = StateMachine::new(
            chain.clone(),
            cfg.key.clone(),
            cfg.peers.clone(),
            seams.events.clone(),
        );
        let instance = sm.instance();
        let raft = Raft::new(
            id,
            Arc::new(cfg.raft_config()?),
            NetworkFactory::new(seams.transport.clone(), core.clone()),
            log.clone(),
            sm,
        )
        .await
        .map_err(NodeError::from)?;
        Ok((raft, instance))
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn raft(&self) -> Raft<Canon<RT>> {
        lock(&self.raft).clone()
    }

    pub fn head(&self) -> Head {
        self.chain.head()
    }

    /// The chain this node applied: the one read API for blocks, head and state.
    pub fn chain(&self) -> &Arc<ChainStore> {
        &self.chain
    }

    pub fn status(&self) -> NodeStatus {
        let m = self.raft().metrics().borrow().clone();
        let (head, cursor, role) = {
            let c = self.chain.state();
            (c.head, c.batches.clone(), c.batcher_role)
        };
        let core = self.core.lock();
        let run = core.batcher().map(|b| b.published().clone());
        // The role as Raft applied it decides what this node's batcher does.
        let holds = role.is_held_by(&self.id);
        let standby = run.as_ref().filter(|_| !holds);
        let batches = BatchStatus {
            role: match (&run, holds) {
                (Some(_), true) => BatchDuty::Batcher,
                (Some(_), false) => BatchDuty::Standby,
                (None, _) => BatchDuty::Attester,
            },
            level: run.as_ref().map(|r| r.level),
            epoch: role.epoch,
            holder: role.holder,
            holder_level: role.holder.map(|_| role.level),
            missed_rounds: standby.map(|r| r.missed_rounds),
            same_level_conflict: standby.filter(|r| r.level == role.level).and(role.holder),
            last_sealed: cursor.sealed_number,
            last_sealed_height: cursor.sealed_height,
            last_attested: cursor.sealed_number,
            last_committed_l1: run.as_ref().and_then(|r| r.l1_batch),
            last_committed_l1_height: run.as_ref().and_then(|r| r.l1_height),
            l1_lag_batches: run
                .as_ref()
                .and_then(|r| r.l1_batch)
                .map(|b| cursor.sealed_number.saturating_sub(b)),
            last_l1_error: run.and_then(|r| r.last_error),
        };
        NodeStatus {
            id: self.id,
            state: m.state.into(),
            is_leader: m.state == ServerState::Leader,
            current_leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index,
            last_applied_index: m.last_applied.map(|l| l.index),
            head,
            mempool_len: core.mempool().len(),
            proposals_in_flight: core.proposals_in_flight(),
            blocks_missing: self.chain.blocks_missing(),
            log_entries: log_entries(m.last_log_index, m.purged.map(|p| p.index)),
            last_snapshot_index: m.snapshot.map(|s| s.index),
            batches,
            membership: crate::consensus::status::MembershipStatus {
                voters: m.membership_config.voter_ids().collect(),
                learners: m.membership_config.membership().learner_ids().collect(),
                log_index: m.membership_config.log_id().map(|l| l.index),
                changing_to: {
                    let configs = m.membership_config.membership().get_joint_config();
                    (configs.len() > 1)
                        .then(|| configs.last().map(|c| c.iter().copied().collect()))
                        .flatten()
                },
            },
        }
    }

    /// The sender through which finished work reaches the driver.
    pub(crate) fn wake(&self) -> &UnboundedSender<Input> {
        &self.wake
    }

    /// The canonized block at `height` as this node stored it; `None` above its head and for
    /// genesis.
    pub fn block(&self, height: u64) -> Result<Option<Block>, NodeError> {
        self.chain
            .block(height)
            .map_err(|source| NodeError::Block { height, source })
    }

    pub fn chain_spec(&self) -> &ChainSpec {
        &self.cfg.chain
    }

    /// The application's answer to `query` from this node's applied state, with the height
    /// it was read at.
    pub fn query(&self, query: &[u8]) -> (Result<Vec<u8>, Rejection>, u64) {
        self.chain.query(query)
    }

    /// Consensus peers (not this node) heard from within `window`.
    pub fn peers_heard_within(&self, window: Duration) -> usize {
        let now = self.core.now_ms();
        self.core
            .lock()
            .peers_heard_within(now, window.as_millis() as u64)
    }

    /// The highest height Raft has canonized as far as this node knows: its applied head plus
    /// the committed entries not yet applied that extend it block by block. A committed
    /// entry that does not extend the head (a deposed leader's proposal) is not counted, the
    /// same way apply rejects it.
    pub fn canonized_height(&self) -> u64 {
        let (mut head, applied) = {
            let chain = self.chain.state();
            (chain.head, chain.last_applied.map(|l| l.index))
        };
        let log = &self.log;
        let Ok(Some(committed)) = log.stored_committed() else {
            return head.height;
        };
        let from = applied.map_or(0, |a| a + 1);
        // The unapplied tail is a handful of entries; the bound keeps a status call cheap.
        let to = committed.index.min(from.saturating_add(256));
        for entry in log.read_range(from, to).unwrap_or_default() {
            if let openraft::EntryPayload::Normal(Command::Block(block)) = &entry.payload {
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

    /// A read met a corrupt record: stop at once, so nothing goes on from a store that lies,
    /// and tell the host, which starts the node again; its start-up scrub and repair then
    /// deal with what is damaged at rest (a bit flipped on the way back reads right again).
    pub(crate) async fn stop_for_damage(&self, error: crate::storage::StorageError) {
        self.emit(Event::CorruptRead {
            error: error.clone(),
        });
        self.shutdown().await;
        *lock(&self.damage) = Some(error);
        self.damage_seen.notify_one();
    }

    /// Resolves once the node stopped itself on a corrupt read, with what it read.
    pub async fn stopped_by_damage(&self) -> crate::storage::StorageError {
        loop {
            if let Some(e) = lock(&self.damage).clone() {
                return e;
            }
            self.damage_seen.notified().await;
        }
    }

    pub(crate) fn storage(&self) -> &dyn crate::storage::Storage {
        &*self.seams.storage
    }

    fn stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped()
    }

    pub(crate) fn core(&self) -> &SharedCore<RT::Instant> {
        &self.core
    }

    pub(crate) fn config(&self) -> &NodeConfig {
        &self.cfg
    }

    pub(crate) fn transport(&self) -> &Arc<dyn crate::net::transport::Transport> {
        &self.seams.transport
    }

    pub(crate) fn emit(&self, event: Event) {
        self.seams.events.emit(&self.id, event);
    }

    /// Answers one request from peer `from` (already authenticated by the transport).
    /// Undecodable bytes get a refusal, never a panic.
    pub async fn handle_request(&self, from: NodeId, bytes: &[u8]) -> Vec<u8> {
        peer::serve(bytes, |req| self.answer(from, req)).await
    }

    /// This node's answer to `req` from `from`.
    pub async fn answer(&self, from: NodeId, req: Request) -> Response {
        let is_peer = self.is_member(&from);
        if is_peer {
            self.core.heard(from);
        }
        match req {
            Request::Ping if is_peer => Response::Pong,
            Request::AppendEntries(r) if is_peer => {
                self.core.appended_by(from);
                Response::AppendEntries(self.raft().append_entries(r.into()).await)
            }
            Request::Vote(r) if is_peer => Response::Vote(self.answer_vote(r).await),
            Request::PreVote { last_log } if is_peer => Response::PreVote {
                granted: self.answer_pre_vote(from, last_log),
            },
            Request::InstallSnapshot(r) if is_peer => {
                Response::InstallSnapshot(self.raft().install_snapshot(r.into()).await)
            }
            Request::ClientSubmit(tx) => {
                Response::SubmitTransaction(self.submit_transaction(tx).await)
            }
            Request::Forwarded(tx) => {
                Response::SubmitTransaction(self.admit_forwarded(tx, is_peer))
            }
            Request::ClientSubmitBatch(txs) => {
                Response::SubmitTransactions(self.submit_transactions(txs).await)
            }
            Request::ForwardedBatch(txs) => {
                Response::SubmitTransactions(self.admit_forwarded_batch(txs, is_peer))
            }
            Request::Query(query) => {
                let (answer, height) = self.chain.query(&query);
                Response::Query { answer, height }
            }
            Request::Read {
                query,
                consistency,
                forwarded,
            } => Response::Read(self.read(query, consistency, forwarded).await),
            Request::SubmitAndWait { tx, wait_ms } => {
                let wait = Duration::from_millis(u64::from(wait_ms.min(MAX_SUBMIT_WAIT_MS)));
                Response::Awaited(self.submit_and_wait(tx, wait).await)
            }
            Request::GetHead => Response::Head(self.chain.head()),
            Request::GetAttestations { number } if is_peer => {
                Response::Attestations(self.chain.attestations(number).unwrap_or_default())
            }
            Request::ClaimBatcher(claim) if is_peer && claim.node == from => {
                Response::Claim(self.write_claim(claim).await)
            }
            Request::ClaimBatcher(claim) if is_peer => Response::Refused(format!(
                "a batcher claim must name its sender {from}, not {}",
                claim.node
            )),
            Request::GetBlocks { from, max, wait_ms } => {
                // To anyone else only blocks with their certificates: without one, a downloader
                // cannot tell a committed block from a deposed leader's proposal that lost. A
                // peer filling a snapshot's gap gets every block held, a certificate where
                // there is one: it checks them against the hash chain down from its Raft
                // snapshot, and it must be able to hold blocks no majority can certify until
                // it does (a majority of nodes may have jumped over them with snapshots).
                let serve = if is_peer {
                    crate::chain::store::Serve::All
                } else {
                    crate::chain::store::Serve::Certified
                };
                crate::chain::replica::answer_get_blocks::<RT>(
                    &self.chain,
                    from,
                    max,
                    wait_ms,
                    serve,
                )
                .await
            }
            Request::GetCommitVotes { from, to, everyone } if is_peer => {
                crate::consensus::certify::answer(self, from, to, everyone)
            }
            _ => Response::Refused(format!("{from} is not a member")),
        }
    }

    /// Initializes the cluster's membership unless Raft is initialized already.
    pub(crate) async fn bootstrap(self: Arc<Self>) {
        let raft = self.raft();
        if !matches!(raft.is_initialized().await, Ok(false)) {
            return;
        }
        if !self.cfg.peers.contains(&self.id) {
            // Not in the genesis membership: a node joining a running chain, which a leader
            // adds (`canon-node admin add-learner`) and replicates to.
            tracing::info!(node = ?self.id, "not in consensus_peer_ids: waiting to be added as a learner");
            return;
        }
        let members: BTreeSet<NodeId> = self.cfg.peers.iter().copied().collect();
        if let Err(e) = raft.initialize(members).await {
            // Another node initialized first; this one joins as a member.
            tracing::info!(node = ?self.id, "bootstrap not needed: {e}");
        }
    }

    /// What the election policy reads of Raft.
    pub(crate) fn raft_view(&self) -> RaftView {
        let m = self.raft().metrics().borrow().clone();
        RaftView {
            abstain_until: self.abstaining(),
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
            voters: {
                let mut v: Vec<NodeId> = m.membership_config.voter_ids().collect();
                v.sort();
                v
            },
        }
    }

    /// This node's last log position, as a pre-vote compares it.
    pub(crate) fn last_log_pos(&self) -> Result<Option<LogPos>, NodeError> {
        let last: Option<LogId> = self.log.last_log_id()?;
        Ok(last.as_ref().map(log_pos))
    }

    fn answer_pre_vote(&self, from: NodeId, candidate_last: Option<LogPos>) -> bool {
        // A log we cannot read is no ground to help anyone unseat a leader.
        let Ok(own_last) = self.last_log_pos() else {
            return false;
        };
        let view = self.raft_view();
        let now = self.core.now_ms();
        self.core
            .lock()
            .answer_pre_vote(now, from, candidate_last, own_last, &view)
    }

    /// Replaces the Raft instance with a fresh one over the same storage. Everything durable
    /// is kept. With `step_down` the fresh instance comes back a follower: the only way to
    /// leave leadership in openraft 0.9.
    pub(crate) async fn reopen_raft(&self, step_down: bool) -> Result<(), NodeError> {
        let _ = self.raft().shutdown().await;
        // The old state machine applies what it had queued after the core stops (seed
        // 3300477 of slow-disk: the fresh instance read applied index 155 while the old one
        // applied 156-159, then applied them again). It ends once that queue is drained.
        let old = lock(&self.state_machine).clone();
        let waited = RT::Instant::now();
        while old.strong_count() > 0 {
            if waited.elapsed() > STATE_MACHINE_DRAIN {
                return Err(NodeError::StillApplying(STATE_MACHINE_DRAIN));
            }
            RT::sleep(Duration::from_millis(1)).await;
        }
        if step_down {
            // openraft restores leadership from a committed vote of its own at startup. Moving
            // to the next term with an uncommitted vote for itself is what a candidate does, so
            // it is safe, and it makes the fresh instance start as a follower.
            let mut log = self.log.clone();
            let term = log.stored_vote()?.map(|v| v.leader_id().term).unwrap_or(0);
            log.save_vote(&openraft::Vote::new(term + 1, self.id))
                .await?;
        }
        let (fresh, state_machine) =
            Self::open_raft(&self.cfg, &self.seams, &self.log, &self.chain, &self.core).await?;
        *lock(&self.raft) = fresh;
        *lock(&self.state_machine) = state_machine;
        Ok(())
    }
}

//! Single-sequencer mode with hot standbys (seed 002): machines sharing one signing identity form
//! a group. Every member syncs the identity's chain by download and replay (it runs an
//! [`ExternalNode`] whose only allowed proposer is the identity), and one of them signs a block
//! every round. Which one is [`policy::redundancy`]'s decision; this module carries it out:
//! the round clock, the signed announcements between members, and the sign path, which goes
//! through the [`SigningGuard`] before any signature leaves the machine.
//!
//! A member's network identity is its own key; the identity's key shows only in what it signs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use openraft::AsyncRuntime;
use serde::{Deserialize, Serialize};

use crate::app::Tx;
use crate::chain::block::ChainSpec;
use crate::chain::rules::Head;
use crate::chain::store::StoreError;
use crate::consensus::mempool::Mempool;
use crate::events::Event;
use crate::external::node::{ExternalConfig, ExternalNode, Trust};
use crate::ids::NodeId;
use crate::keys::SecretKey;
use crate::net::peer;
use crate::net::wire::{refuse_over_limit, Request, Response, SubmitOutcome, SubmitRejection};
use crate::policy::fence::MIN_FENCED_GROUP;
use crate::policy::fork_choice::Keep;
use crate::policy::redundancy::{
    round_at, Ack, Announcement, Failover, MemberMode, RedundancyConfig, Signed,
};
use crate::policy::round_clock::RoundClock;
use crate::redundancy::announcement::SignedAnnouncement;
use crate::redundancy::fenced::FencedAcceptor;
use crate::redundancy::member_core::{MemberCore, MemberEffect, RoundView};
use crate::redundancy::signing_guard::{SigningGuard, Watermark};
use crate::seams::{NodeError, Seams};
use crate::sync::lock;

mod fencing;
mod signing;

#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// The signing identity the whole group shares (`validator_secret_key`).
    pub identity: SecretKey,
    /// This machine's network key: what it advertises instead of the identity.
    pub network_key: SecretKey,
    pub redundancy: RedundancyConfig,
    /// The other members' network ids: where it syncs from and whom it announces itself to.
    pub members: Vec<NodeId>,
    pub chain: ChainSpec,
    /// Wall-clock milliseconds of round 0.
    pub genesis_ms: u64,
    pub block_time_ms: u64,
    pub max_block_transactions: usize,
    pub mempool: crate::consensus::mempool::MempoolBounds,
    pub request_timeout_ms: u64,
    /// `redundancy_fencing`: a block is signed only once a majority of the group chose it
    /// ([`policy::fence`]). Needs [`MIN_FENCED_GROUP`] machines or more.
    pub fencing: bool,
}

/// What `/status` and the metrics show of a member.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct GroupStatus {
    pub id: NodeId,
    pub identity: NodeId,
    pub level: i64,
    /// `syncing`, `handing-over`, `standing-by`, `active`, `yielding`, `observer`, `barred`
    /// in JSON.
    pub mode: MemberMode,
    pub head: Head,
    /// The level that signed the head block.
    pub active_signer_level: Option<i64>,
    /// Consecutive rounds, up to the current one, with no lower level signing.
    pub missed_rounds: u64,
    pub round: Option<u64>,
    /// Why it last stepped in, if it did.
    pub step_in: Option<String>,
    pub watermark: Option<Watermark>,
    /// Another member announcing the same level.
    pub same_level: Option<NodeId>,
    pub mempool_len: usize,
    /// `redundancy_fencing`: blocks are signed only once a majority chose them.
    pub fenced: bool,
}

/// What the member's lock guards: its core and its mempool, so signing and answering an
/// announcement never interleave.
struct MemberState {
    core: MemberCore,
    mempool: Mempool,
}

pub struct GroupMember<RT: AsyncRuntime> {
    cfg: GroupConfig,
    id: NodeId,
    identity: NodeId,
    started_at_ms: u64,
    seams: Seams,
    sync: Arc<ExternalNode<RT>>,
    guard: SigningGuard,
    /// Fenced mode: this member's acceptor.
    fence: Option<FencedAcceptor>,
    state: Mutex<MemberState>,
    stopped: AtomicBool,
    /// Itself, for the tasks a request spawns.
    me: std::sync::Weak<GroupMember<RT>>,
}

impl<RT: AsyncRuntime> GroupMember<RT> {
    pub async fn start(cfg: GroupConfig, seams: Seams) -> Result<Arc<Self>, NodeError> {
        if cfg.block_time_ms == 0 {
            return Err(NodeError::Config("block_time must be above zero".into()));
        }
        let id = cfg.network_key.node_id();
        let identity = cfg.identity.node_id();
        if id == identity {
            return Err(NodeError::Config(
                "the network key must differ from the validator key, which the group shares".into(),
            ));
        }
        let group_size = cfg.members.len() + 1;
        if cfg.fencing && group_size < MIN_FENCED_GROUP {
            return Err(NodeError::Config(format!(
                "redundancy_fencing needs {MIN_FENCED_GROUP} or more machines in the group; it \
                 has {group_size} (this one and {} other members)",
                cfg.members.len()
            )));
        }
        let guard = SigningGuard::open(seams.storage.clone(), identity)?;
        let fence = if cfg.fencing {
            Some(FencedAcceptor::open(
                seams.storage.clone(),
                identity,
                cfg.redundancy.max_missed_rounds,
            )?)
        } else {
            None
        };
        let mut sync_cfg = ExternalConfig::new(
            cfg.network_key.clone(),
            cfg.members.clone(),
            vec![identity],
            cfg.chain.clone(),
        );
        sync_cfg.request_timeout_ms = cfg.request_timeout_ms;
        sync_cfg.trust = Trust::Signer;
        // A follower's long-poll returns within a round, so the policy sees blocks in time.
        sync_cfg.follow_wait_ms = cfg.block_time_ms.min(u64::from(u32::MAX)) as u32;
        let sync = ExternalNode::<RT>::start_with(sync_cfg, seams.clone(), !cfg.members.is_empty())
            .await?;
        if let Some(mark) = guard.watermark() {
            let stored = sync
                .replica()
                .chain()
                .block(mark.height)
                .map_err(|source| NodeError::Block {
                    height: mark.height,
                    source,
                })?
                .map(|b| b.hash())
                .transpose()
                .map_err(StoreError::from)?;
            guard.reconcile(stored)?;
        }
        let started_at_ms = seams.clock.now_ms();
        let last_signed = guard.watermark().map(|w| Signed {
            height: w.height,
            round: w.round,
        });
        let failover = Failover::new(cfg.redundancy, id, started_at_ms, last_signed);
        let member = Arc::new_cyclic(|me| GroupMember {
            me: me.clone(),
            id,
            identity,
            started_at_ms,
            guard,
            fence,
            state: Mutex::new(MemberState {
                core: MemberCore::new(failover, cfg.fencing),
                mempool: Mempool::new(cfg.mempool),
            }),
            cfg,
            seams,
            sync,
            stopped: AtomicBool::new(false),
        });
        let _detached = RT::spawn(member.clone().rounds());
        Ok(member)
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn head(&self) -> Head {
        self.sync.head()
    }

    pub fn sync(&self) -> &Arc<ExternalNode<RT>> {
        &self.sync
    }

    pub fn shutdown(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.sync.shutdown();
    }

    pub fn status(&self) -> GroupStatus {
        let st = lock(&self.state);
        let core = &st.core;
        GroupStatus {
            id: self.id,
            identity: self.identity,
            level: core.level(),
            mode: core.mode(),
            head: self.sync.head(),
            active_signer_level: core.head_level(),
            missed_rounds: core.missed_rounds(),
            round: core.round(),
            step_in: core.step_in().map(str::to_string),
            watermark: self.guard.watermark(),
            same_level: core.same_level(),
            mempool_len: st.mempool.len(),
            fenced: self.fence.is_some(),
        }
    }

    fn emit(&self, event: Event) {
        self.seams.events.emit(&self.id, event);
    }

    /// Answers the group's announcements and transactions; everything else is the sync node's.
    pub async fn handle_request(&self, from: NodeId, bytes: &[u8]) -> Vec<u8> {
        peer::serve(bytes, |req| self.answer(from, req)).await
    }

    /// This member's answer to `req` from `from`: the group's announcements, ballots and
    /// transactions; everything else is the sync node's.
    pub async fn answer(&self, from: NodeId, req: Request) -> Response {
        match req {
            Request::Announce(signed) => self.on_announcement(&signed),
            Request::ClientSubmit(tx) => Response::SubmitTransaction(self.submit_transaction(tx)),
            Request::ClientSubmitBatch(txs) => {
                Response::SubmitTransactions(refuse_over_limit(txs.len()).unwrap_or_else(|| {
                    txs.into_iter()
                        .map(|tx| self.submit_transaction(tx))
                        .collect()
                }))
            }
            Request::Forwarded(tx) => Response::SubmitTransaction(self.admit(tx)),
            Request::FencePrepare(b) => self.on_fence_prepare(&b),
            Request::FenceAccept(b, block) => self.on_fence_accept(&b, *block),
            other => self.sync.answer(from, other).await,
        }
    }

    /// A client's transaction: admitted here and passed to every other member, since whichever
    /// signs next needs it.
    pub fn submit_transaction(&self, tx: Tx) -> SubmitOutcome {
        let outcome = self.admit(tx.clone());
        if let (SubmitOutcome::Accepted { .. }, Some(me)) = (&outcome, self.me.upgrade()) {
            let _detached = RT::spawn(me.forward(tx));
        }
        outcome
    }

    fn admit(&self, tx: Tx) -> SubmitOutcome {
        if let Err(why) = self.sync.replica().app().verify(&tx) {
            return SubmitOutcome::Rejected(SubmitRejection::Invalid(why));
        }
        let state = self.sync.replica().chain().state().state.clone();
        match lock(&self.state).mempool.admit(tx, &state) {
            Ok(()) => SubmitOutcome::Accepted {
                leader: self.identity,
            },
            Err(e) => SubmitOutcome::Rejected(SubmitRejection::Mempool(e)),
        }
    }

    async fn forward(self: Arc<Self>, tx: Tx) {
        let req = Request::Forwarded(tx);
        let timeout = Duration::from_millis(self.cfg.request_timeout_ms);
        let transport = &*self.seams.transport;
        join_all(
            self.cfg
                .members
                .iter()
                .map(|m| peer::call(transport, *m, &req, timeout)),
        )
        .await;
    }

    fn on_announcement(&self, signed: &SignedAnnouncement) -> Response {
        let a = match signed.verify(&self.identity) {
            Ok(a) => a,
            Err(why) => return Response::Refused(why),
        };
        if let Some(f) = &self.fence {
            f.observe(a.level, a.round);
        }
        let mut st = lock(&self.state);
        let (effects, last_signed) = st.core.on_announcement(&a, self.sync.head().height);
        self.carry_out(&mut st, effects);
        Response::Announced {
            last_signed: last_signed.map(|s| (s.height, s.round)),
        }
    }

    /// Carries out what the core decided, under the state lock.
    fn carry_out(&self, st: &mut MemberState, effects: Vec<MemberEffect>) {
        for effect in effects {
            match effect {
                MemberEffect::Emit(event) => self.emit(event),
                MemberEffect::FenceRound { round, head_height } => {
                    if let Some(f) = &self.fence {
                        f.on_round(round);
                        f.prune(head_height);
                    }
                }
                MemberEffect::Sign { round, reason } => self.sign(st, round, reason),
                MemberEffect::Announce { round } => {
                    if let Some(me) = self.me.upgrade() {
                        let _detached = RT::spawn(me.announce(round));
                    }
                }
                MemberEffect::Propose { round, reason } => {
                    if let Some(me) = self.me.upgrade() {
                        let _detached = RT::spawn(me.propose(round, reason));
                    }
                }
            }
        }
    }

    /// Feeds the blocks that reached the chain since last time to the core (and their slots
    /// to the fenced acceptor).
    fn feed_blocks(&self, st: &mut MemberState) {
        let head = self.sync.head().height;
        let mut fed = st.core.feed_from(head);
        while fed < head {
            let blocks = match self.sync.replica().chain().blocks(fed + 1, 256, usize::MAX) {
                Ok(b) if !b.is_empty() => b,
                _ => return,
            };
            for b in blocks {
                fed = b.header.height;
                if let (Some(slot), Some(f)) = (b.header.slot, &self.fence) {
                    f.observe(slot.level, slot.round);
                }
                let effects = st.core.on_block(fed, b.header.slot);
                self.carry_out(st, effects);
            }
        }
    }

    /// One task: a decision at the start of every round by the local clock
    /// ([`RoundClock`] says which round, and when to look again).
    async fn rounds(self: Arc<Self>) {
        let mut clock = RoundClock::new(self.cfg.genesis_ms, self.cfg.block_time_ms);
        while !self.stopped.load(Ordering::SeqCst) {
            let tick = clock.tick(self.seams.clock.now_ms());
            if let Some(round) = tick.decide {
                self.on_round(round);
            }
            let wait = tick
                .next_ms
                .saturating_sub(self.seams.clock.now_ms())
                .max(1);
            RT::sleep(Duration::from_millis(wait)).await;
        }
    }

    fn on_round(&self, round: u64) {
        let mut st = lock(&self.state);
        self.feed_blocks(&mut st);
        let head = self.sync.head();
        let view = RoundView {
            head_height: head.height,
            caught_up: self.sync.caught_up(),
            kept_ours: self
                .sync
                .equivocations()
                .iter()
                .filter(|e| e.kept == Keep::Ours)
                .map(|e| e.height)
                .collect(),
            barred_until: self.barred_until(&head),
        };
        let effects = st.core.on_round(round, &view);
        self.carry_out(&mut st, effects);
    }

    /// The guard's height, if it is above the chain and no block a crash left unpublished
    /// extends the head (publishing that one is no new signature): this machine signed on a
    /// branch that lost and may not sign until the chain passes it.
    fn barred_until(&self, head: &Head) -> Option<u64> {
        let mark = self.guard.watermark()?;
        if mark.height <= head.height {
            return None;
        }
        let publishable = mark.height == head.height + 1
            && self
                .guard
                .pending(head.height)
                .is_some_and(|b| b.header.parent_hash == head.hash);
        (!publishable).then_some(mark.height)
    }

    async fn announce(self: Arc<Self>, round: u64) {
        let a = Announcement {
            member: self.id,
            level: self.cfg.redundancy.level.value(),
            started_at_ms: self.started_at_ms,
            round,
        };
        let Ok(signed) = SignedAnnouncement::sign(&a, &self.cfg.identity) else {
            return;
        };
        let req = Request::Announce(signed);
        // Answers that take longer than a round are as good as absent.
        let timeout =
            Duration::from_millis(self.cfg.block_time_ms.min(self.cfg.request_timeout_ms));
        let transport = &*self.seams.transport;
        let answers = join_all(self.cfg.members.iter().map(|m| {
            let req = &req;
            async move { (*m, peer::call(transport, *m, req, timeout).await) }
        }))
        .await;
        let acks: Vec<Ack> = answers
            .into_iter()
            .filter_map(|(member, r)| match r {
                Ok(Response::Announced { last_signed }) => Some(Ack {
                    member,
                    last_signed: last_signed.map(|(height, round)| Signed { height, round }),
                }),
                _ => None,
            })
            .collect();
        lock(&self.state).core.on_acks(&acks);
    }

    /// The round this member's clock is in now.
    fn clock_round(&self) -> u64 {
        round_at(
            self.seams.clock.now_ms(),
            self.cfg.genesis_ms,
            self.cfg.block_time_ms,
        )
        .unwrap_or(0)
    }
}

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

use crate::chain::block::{Block, ChainSpec, Slot};
use crate::chain::rules::{build_block, Head, Proposal};
use crate::chain::tx::SignedTransaction;
use crate::codec;
use crate::consensus::mempool::Mempool;
use crate::events::Event;
use crate::external::node::{ExternalConfig, ExternalNode};
use crate::ids::NodeId;
use crate::keys::SecretKey;
use crate::net::peer;
use crate::net::wire::{refuse_over_limit, Request, Response, SubmitOutcome, SubmitRejection};
use crate::policy::fence::{self, Ballot, MIN_FENCED_GROUP};
use crate::policy::fork_choice::Keep;
use crate::policy::redundancy::{
    round_at, round_start_ms, Ack, Announcement, Failover, MemberMode, RedundancyAction,
    RedundancyConfig, Signed, StepIn,
};
use crate::redundancy::announcement::SignedAnnouncement;
use crate::redundancy::fenced::{unsigned, FencedAcceptor, SignedBallot};
use crate::redundancy::signing_guard::{SigningGuard, Watermark};
use crate::seams::{NodeError, Seams};
use crate::sync::lock;

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
    pub mempool_capacity: usize,
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

struct MemberState {
    failover: Failover,
    mempool: Mempool,
    /// The height up to which the chain's blocks were fed to the policy.
    fed_height: u64,
    round: Option<u64>,
    step_in: Option<String>,
    same_level: Option<NodeId>,
    head_level: Option<i64>,
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
    /// Fenced mode: a proposal is under way (one at a time).
    proposing: AtomicBool,
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
        let guard = SigningGuard::open(seams.storage.clone(), identity)
            .map_err(|e| NodeError::Storage(e.to_string()))?;
        let fence = if cfg.fencing {
            Some(
                FencedAcceptor::open(
                    seams.storage.clone(),
                    identity,
                    cfg.redundancy.max_missed_rounds,
                )
                .map_err(NodeError::Storage)?,
            )
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
        // A follower's long-poll returns within a round, so the policy sees blocks in time.
        sync_cfg.follow_wait_ms = cfg.block_time_ms.min(u64::from(u32::MAX)) as u32;
        let sync = ExternalNode::<RT>::start_with(sync_cfg, seams.clone(), !cfg.members.is_empty())
            .await?;
        if let Some(mark) = guard.watermark() {
            let stored = sync
                .replica()
                .chain()
                .block(mark.height)
                .map_err(|e| NodeError::Storage(e.to_string()))?
                .map(|b| b.hash())
                .transpose()
                .map_err(|e| NodeError::Storage(e.to_string()))?;
            guard
                .reconcile(stored)
                .map_err(|e| NodeError::Storage(e.to_string()))?;
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
            proposing: AtomicBool::new(false),
            state: Mutex::new(MemberState {
                failover,
                mempool: Mempool::new(cfg.mempool_capacity),
                fed_height: 0,
                round: None,
                step_in: None,
                same_level: None,
                head_level: None,
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
        GroupStatus {
            id: self.id,
            identity: self.identity,
            level: st.failover.level().value(),
            mode: st.failover.mode().kind(),
            head: self.sync.head(),
            active_signer_level: st.head_level,
            missed_rounds: st.round.map_or(0, |r| st.failover.missed_rounds(r)),
            round: st.round,
            step_in: st.step_in.clone(),
            watermark: self.guard.watermark(),
            same_level: st.same_level,
            mempool_len: st.mempool.len(),
            fenced: self.fence.is_some(),
        }
    }

    fn emit(&self, event: Event) {
        self.seams.events.emit(&self.id, event);
    }

    /// Answers the group's announcements and transactions; everything else is the sync node's.
    pub async fn handle_request(&self, from: NodeId, bytes: &[u8]) -> Vec<u8> {
        let resp = match codec::decode::<Request>(bytes) {
            Ok(Request::Announce(signed)) => self.on_announcement(&signed),
            Ok(Request::ClientSubmit(tx)) => {
                Response::SubmitTransaction(self.submit_transaction(tx))
            }
            Ok(Request::ClientSubmitBatch(txs)) => {
                Response::SubmitTransactions(refuse_over_limit(txs.len()).unwrap_or_else(|| {
                    txs.into_iter()
                        .map(|tx| self.submit_transaction(tx))
                        .collect()
                }))
            }
            Ok(Request::Forwarded(tx)) => Response::SubmitTransaction(self.admit(tx)),
            Ok(Request::FencePrepare(b)) => self.on_fence_prepare(&b),
            Ok(Request::FenceAccept(b, block)) => self.on_fence_accept(&b, *block),
            _ => return self.sync.handle_request(from, bytes).await,
        };
        codec::encode(&resp).unwrap_or_default()
    }

    /// A client's transaction: admitted here and passed to every other member, since whichever
    /// signs next needs it.
    pub fn submit_transaction(&self, tx: SignedTransaction) -> SubmitOutcome {
        let outcome = self.admit(tx.clone());
        if let (SubmitOutcome::Accepted { .. }, Some(me)) = (&outcome, self.me.upgrade()) {
            let _detached = RT::spawn(me.forward(tx));
        }
        outcome
    }

    fn admit(&self, tx: SignedTransaction) -> SubmitOutcome {
        if !tx.signature_valid() {
            return SubmitOutcome::Rejected(SubmitRejection::BadSignature);
        }
        let ledger = self.sync.replica().chain().state().ledger.clone();
        match lock(&self.state).mempool.admit(tx, &ledger) {
            Ok(()) => SubmitOutcome::Accepted {
                leader: self.identity,
            },
            Err(e) => SubmitOutcome::Rejected(SubmitRejection::Mempool(e)),
        }
    }

    async fn forward(self: Arc<Self>, tx: SignedTransaction) {
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
        let actions = st.failover.on_announcement(&a);
        self.carry_out_reports(&mut st, actions);
        Response::Announced {
            last_signed: st
                .failover
                .ack(self.sync.head().height)
                .map(|s| (s.height, s.round)),
        }
    }

    /// Revert and same-level reports; signing only ever happens in `on_round`.
    fn carry_out_reports(&self, st: &mut MemberState, actions: Vec<RedundancyAction>) {
        for action in actions {
            match action {
                RedundancyAction::Revert { by_level, round } => {
                    st.step_in = None;
                    self.emit(Event::Reverted { by_level, round });
                }
                RedundancyAction::SameLevel { other, yields } => {
                    st.same_level = Some(other);
                    self.emit(Event::SameLevel { other, yields });
                }
                RedundancyAction::Announce | RedundancyAction::Sign { .. } => {}
            }
        }
    }

    /// Feeds the blocks that reached the chain since last time to the policy.
    fn feed_blocks(&self, st: &mut MemberState) {
        let head = self.sync.head().height;
        if head < st.fed_height {
            // The replica lost buffered blocks in a crash: they are fetched and fed again.
            st.fed_height = head;
        }
        while st.fed_height < head {
            let from = st.fed_height + 1;
            let blocks = match self.sync.replica().chain().blocks(from, 256, usize::MAX) {
                Ok(b) if !b.is_empty() => b,
                _ => return,
            };
            for b in blocks {
                st.fed_height = b.header.height;
                if let Some(slot) = b.header.slot {
                    if let Some(f) = &self.fence {
                        f.observe(slot.level, slot.round);
                    }
                    st.head_level = Some(slot.level);
                    let actions = st.failover.on_block(slot.level, slot.round);
                    self.carry_out_reports(st, actions);
                }
            }
        }
    }

    /// One task: a decision at the start of every round by the local clock.
    async fn rounds(self: Arc<Self>) {
        let bt = self.cfg.block_time_ms;
        let mut last: Option<u64> = None;
        while !self.stopped.load(Ordering::SeqCst) {
            let now = self.seams.clock.now_ms();
            let next_start = match round_at(now, self.cfg.genesis_ms, bt) {
                None => self.cfg.genesis_ms,
                // A clock that stepped back re-enters rounds already decided: skip them.
                Some(round) if last.is_some_and(|l| round <= l) => {
                    round_start_ms(round + 1, self.cfg.genesis_ms, bt)
                }
                Some(round) => {
                    last = Some(round);
                    self.on_round(round);
                    round_start_ms(round + 1, self.cfg.genesis_ms, bt)
                }
            };
            let wait = next_start.saturating_sub(self.seams.clock.now_ms()).max(1);
            RT::sleep(Duration::from_millis(wait)).await;
        }
    }

    fn on_round(self: &Arc<Self>, round: u64) {
        let mut st = lock(&self.state);
        st.round = Some(round);
        self.feed_blocks(&mut st);
        for e in self.sync.equivocations() {
            if e.kept == Keep::Ours {
                st.failover.on_fork_kept(e.height);
            }
        }
        let head = self.sync.head();
        if let Some(f) = &self.fence {
            f.on_round(round);
            f.prune(head.height);
        }
        st.failover.set_barred(self.barred_until(&head));
        let actions = st
            .failover
            .on_round(round, head.height, self.sync.caught_up());
        for action in actions {
            match action {
                RedundancyAction::Announce => {
                    let _detached = RT::spawn(self.clone().announce(round));
                }
                RedundancyAction::Sign { round, reason } if self.fence.is_some() => {
                    if !self.proposing.swap(true, Ordering::SeqCst) {
                        let _detached = RT::spawn(self.clone().propose(round, reason));
                    }
                }
                RedundancyAction::Sign { round, reason } => self.sign(&mut st, round, reason),
                other => self.carry_out_reports(&mut st, vec![other]),
            }
        }
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
        lock(&self.state).failover.on_acks(&acks);
    }

    /// The sign path, under the state lock (so an announcement's answer always covers what was
    /// signed): publish a guarded block a crash left unsent, build the round's block, record it
    /// in the guard (synced), then store and serve it.
    fn sign(&self, st: &mut MemberState, round: u64, reason: StepIn) {
        if self.publish_pending(st).is_err() {
            return;
        }
        if let Some(block) = self.build(st, round) {
            self.record_and_publish(st, &block, reason);
        }
    }

    /// Publishes the block the guard recorded, if a crash left it unsent (that is no new
    /// signature); an error when it does not extend the head.
    fn publish_pending(&self, st: &mut MemberState) -> Result<(), ()> {
        let pending = self.guard.pending(self.sync.head().height);
        match pending.as_ref().and_then(|b| Some((b, b.header.slot?))) {
            Some((block, slot)) => self.publish(st, block, slot),
            None => Ok(()),
        }
    }

    /// The block of `round` on top of the head, sealed with the identity's key in memory only;
    /// `None` when the head is already of this round or later, or the block cannot be built.
    fn build(&self, st: &mut MemberState, round: u64) -> Option<Block> {
        let level = self.cfg.redundancy.level.value();
        let (head, ledger) = {
            let c = self.sync.replica().chain().state();
            (c.head, c.ledger.clone())
        };
        if head.round.is_some_and(|r| r >= round) {
            return None;
        }
        let candidates = st
            .mempool
            .candidates(&ledger, self.cfg.max_block_transactions);
        let built = build_block(
            Proposal {
                head: &head,
                ledger: &ledger,
                key: &self.cfg.identity,
                term: 0,
                slot: Some(Slot { round, level }),
                seals_batch: false,
                timestamp_ms: self.seams.clock.now_ms(),
                max_transactions: self.cfg.max_block_transactions,
            },
            candidates,
        );
        match built {
            Ok(b) => Some(b.block),
            Err(e) => {
                self.emit(Event::SignRefused {
                    round,
                    reason: e.to_string(),
                });
                None
            }
        }
    }

    /// Records `block` in the guard (synced) before anything of it leaves, then publishes it.
    fn record_and_publish(&self, st: &mut MemberState, block: &Block, reason: StepIn) {
        let Some(slot) = block.header.slot else {
            return;
        };
        if let Err(e) = self.guard.record(slot.round, block) {
            self.emit(Event::SignRefused {
                round: slot.round,
                reason: e.to_string(),
            });
            return;
        }
        if st.step_in.is_none() {
            let why = match reason {
                StepIn::Main => "main".to_string(),
                StepIn::LowerLevelsSilent { missed, last_seen } => format!(
                    "{missed} rounds without a lower level (last seen in round {})",
                    last_seen.map_or("none".into(), |r| r.to_string())
                ),
            };
            self.emit(Event::SteppedIn {
                round: slot.round,
                level: self.cfg.redundancy.level.value(),
                reason: why.clone(),
            });
            st.step_in = Some(why);
        }
        let _ = self.publish(st, block, slot);
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

    fn on_fence_prepare(&self, signed: &SignedBallot) -> Response {
        let Some(fence) = &self.fence else {
            return Response::Refused("this member is not fenced".into());
        };
        let ballot = match signed.verify(&self.identity) {
            Ok(b) => b,
            Err(why) => return Response::Refused(why),
        };
        match fence.prepare(&ballot, self.clock_round(), self.sync.replica().chain()) {
            Ok(accepted) => Response::FencePromised(accepted),
            Err(why) => Response::Refused(why),
        }
    }

    fn on_fence_accept(&self, signed: &SignedBallot, block: Block) -> Response {
        let Some(fence) = &self.fence else {
            return Response::Refused("this member is not fenced".into());
        };
        let ballot = match signed.verify(&self.identity) {
            Ok(b) => b,
            Err(why) => return Response::Refused(why),
        };
        let chain = self.sync.replica().chain();
        match fence.accept(&ballot, signed.block_hash, block, self.clock_round(), chain) {
            Ok(()) => Response::FenceAccepted,
            Err(why) => Response::Refused(why),
        }
    }

    /// Fenced mode's sign path for `round` (see [`policy::fence`]): a majority promises the
    /// round, a majority accepts the block (another's already accepted one if any promise
    /// carried it), and only then is it signed, guarded and published.
    async fn propose(self: Arc<Self>, round: u64, reason: StepIn) {
        let outcome = self.run_proposal(round, reason).await;
        self.proposing.store(false, Ordering::SeqCst);
        if let Err(why) = outcome {
            self.emit(Event::SignRefused {
                round,
                reason: format!("fenced: {why}"),
            });
        }
    }

    async fn run_proposal(&self, round: u64, reason: StepIn) -> Result<(), String> {
        let Some(fence) = &self.fence else {
            return Ok(());
        };
        let head = {
            let mut st = lock(&self.state);
            // A block chosen and guarded before a crash goes out first: no new signature.
            self.publish_pending(&mut st)
                .map_err(|()| "the guarded block does not extend the head".to_string())?;
            self.sync.head()
        };
        if head.round.is_some_and(|r| r >= round) {
            return Ok(());
        }
        let ballot = Ballot {
            round,
            level: self.cfg.redundancy.level.value(),
            height: head.height + 1,
        };
        let need = fence::majority(self.cfg.members.len() + 1);
        // Each step gets a third of the round: a later answer is as good as absent.
        let timeout =
            Duration::from_millis((self.cfg.block_time_ms / 3).min(self.cfg.request_timeout_ms));
        let signed = SignedBallot::sign(self.id, &ballot, None, &self.cfg.identity)
            .map_err(|e| e.to_string())?;
        let mut promises = Vec::new();
        let mut refusals = Vec::new();
        match fence.prepare(&ballot, self.clock_round(), self.sync.replica().chain()) {
            Ok(p) => promises.push(p),
            Err(why) => refusals.push(why),
        }
        for r in self
            .ask_members(Request::FencePrepare(signed), timeout)
            .await
        {
            match r {
                Ok(Response::FencePromised(p)) => promises.push(p),
                Ok(Response::Refused(why)) => refusals.push(why),
                Ok(_) => refusals.push("an unexpected answer".into()),
                Err(e) => refusals.push(e),
            }
        }
        if promises.len() < need {
            return Err(format!(
                "{} of {} members promised round {round}, {need} needed ({})",
                promises.len(),
                self.cfg.members.len() + 1,
                refusals.join("; ")
            ));
        }
        // The promises cover every height from the ballot's on (multi-Paxos): blocks others
        // got accepted are finished first, then this member's own block of the round follows.
        let mut height = ballot.height;
        loop {
            let head = self.sync.head();
            if head.height + 1 != height {
                return Err(format!("the head moved to {} meanwhile", head.height));
            }
            let adopted = fence::choose(height, &promises);
            let own = adopted.is_none();
            let block = match adopted {
                Some(a) if a.value.header.parent_hash != head.hash => {
                    return Err(format!(
                        "the block accepted at height {height} does not extend this member's head"
                    ))
                }
                // Another member's block, perhaps already chosen: the only one to sign here.
                Some(a) => a.value,
                None => {
                    let mut st = lock(&self.state);
                    match self.build(&mut st, round) {
                        Some(b) => unsigned(&b),
                        None => return Ok(()),
                    }
                }
            };
            let step = Ballot { height, ..ballot };
            self.accept_everywhere(fence, &step, &block, need, timeout)
                .await?;
            // Chosen: sign it (deterministic, so whoever signs this block makes the same one).
            let sealed = Block::seal(block.header, block.transactions, &self.cfg.identity)
                .map_err(|e| e.to_string())?;
            {
                let mut st = lock(&self.state);
                if self.sync.head().height >= height {
                    // Downloaded meanwhile: the chosen block is the only one it can be.
                    return Ok(());
                }
                self.record_and_publish(&mut st, &sealed, reason);
            }
            if own {
                return Ok(());
            }
            height += 1;
        }
    }

    /// Step 2 at this member and every other: `Ok` once a majority (`need`) accepted `block`.
    async fn accept_everywhere(
        &self,
        fence: &FencedAcceptor,
        ballot: &Ballot,
        block: &Block,
        need: usize,
        timeout: Duration,
    ) -> Result<(), String> {
        let hash = block.hash().map_err(|e| e.to_string())?;
        let signed = SignedBallot::sign(self.id, ballot, Some(hash), &self.cfg.identity)
            .map_err(|e| e.to_string())?;
        let mut accepted = 0;
        let mut refusals = Vec::new();
        match fence.accept(
            ballot,
            Some(hash),
            block.clone(),
            self.clock_round(),
            self.sync.replica().chain(),
        ) {
            Ok(()) => accepted += 1,
            Err(why) => refusals.push(why),
        }
        let req = Request::FenceAccept(signed, Box::new(block.clone()));
        for r in self.ask_members(req, timeout).await {
            match r {
                Ok(Response::FenceAccepted) => accepted += 1,
                Ok(Response::Refused(why)) => refusals.push(why),
                Ok(_) => refusals.push("an unexpected answer".into()),
                Err(e) => refusals.push(e),
            }
        }
        if accepted < need {
            return Err(format!(
                "{accepted} of {} members accepted height {} in round {}, {need} needed ({})",
                self.cfg.members.len() + 1,
                ballot.height,
                ballot.round,
                refusals.join("; ")
            ));
        }
        Ok(())
    }

    /// Sends `req` to every other member; their answers, in member order.
    async fn ask_members(&self, req: Request, timeout: Duration) -> Vec<Result<Response, String>> {
        let transport = &*self.seams.transport;
        join_all(self.cfg.members.iter().map(|m| {
            let req = &req;
            async move {
                peer::call(transport, *m, req, timeout)
                    .await
                    .map_err(|e| e.to_string())
            }
        }))
        .await
    }

    /// Stores a block this machine signed (synced: a signer never forgets what it signed) and
    /// reports it; downloaders get it from the chain store.
    fn publish(&self, st: &mut MemberState, block: &Block, slot: Slot) -> Result<(), ()> {
        match self.sync.replica().apply_own(block) {
            Ok(head) => {
                if let Err(e) = self.guard.published(head.height) {
                    self.emit(Event::StorageFailed {
                        reason: e.to_string(),
                    });
                }
                st.failover.on_signed(Signed {
                    height: head.height,
                    round: slot.round,
                });
                st.fed_height = st.fed_height.max(head.height);
                st.head_level = Some(slot.level);
                st.mempool
                    .prune(&self.sync.replica().chain().state().ledger);
                self.emit(Event::Signed {
                    height: head.height,
                    round: slot.round,
                    level: slot.level,
                    hash: head.hash,
                    parent_hash: block.header.parent_hash,
                    state_root: head.state_root,
                    transactions: block.transactions.len(),
                });
                Ok(())
            }
            Err(e) => {
                self.emit(Event::SignRefused {
                    round: slot.round,
                    reason: e.to_string(),
                });
                Err(())
            }
        }
    }
}

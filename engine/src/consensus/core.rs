//! A consensus node's synchronous core: everything the node decides between Raft's own tasks
//! (when to propose, what on, when to confirm leadership, when to ask for pre-votes, campaign,
//! step down or reopen Raft), and the state those decisions keep (the sequencer's pipeline and
//! tip, the elector, the mempool).
//!
//! In the manner of quinn-proto's `Connection`: no runtime, no awaiting. The node's driver
//! (`consensus::driver`) feeds [`NodeCore::handle`] the monotonic `now`, Raft's current
//! [`RaftView`] and what finished ([`Input`]), carries out the [`Effect`]s it returns, and
//! sleeps until [`NodeCore::next_deadline`]. Request handlers reach the same core under the
//! node's lock for what they observe (contact, pre-vote questions, admission).

use std::sync::Arc;

use crate::app::Tx;
use crate::chain::backfill::Backfill;
use crate::chain::block::Block;
use crate::chain::rules::{build_block, BuildBase, Proposal};
use crate::chain::store::{ChainStore, MAX_BLOCKS_PER_RESPONSE};
use crate::clock::Clock;
use crate::consensus::config::NodeConfig;
use crate::consensus::mempool::{AdmitError, Mempool};
use crate::events::Event;
use crate::ids::NodeId;
use crate::policy::backfill_cursor::{BackfillAction, BackfillCursor, Gap, Step};
use crate::policy::certifier::{Certifier, Round};
use crate::policy::election::{ElectionAction, Elector, LogPos, RaftView};
use crate::policy::sequencer::{
    BuildOn, ProposalOutcome, Sequencer, SequencerAction, SequencerConfig,
};
use crate::policy::Millis;
use crate::settlement::batcher_core::{BatcherCore, BatcherEffect, BatcherInput, BatcherOut};

/// What finished, or arrived, since the core last ran.
#[derive(Debug)]
pub enum Input {
    /// Nothing finished: the driver woke at the deadline.
    Tick,
    /// Confirming leadership (asked by [`Effect::ConfirmLeadership`]) came back.
    Confirmed(bool),
    /// What became of the proposal at `height`.
    Resolved {
        height: u64,
        outcome: ProposalOutcome,
    },
    /// `peer` answered pre-vote round `round`.
    PreVoteAnswer {
        round: u64,
        peer: NodeId,
        granted: bool,
    },
    /// The batcher's work (asked by [`Effect::Batcher`]) came back.
    Batcher(BatcherInput),
    /// A fetch of missing blocks (asked by [`Effect::FetchBlocks`]) came to this.
    Backfilled(Step),
    /// The recut (asked by [`Effect::Recut`]) closed the gap (or a snapshot moved it), or not.
    Recut { closed: bool },
    /// A snapshot may have left a gap: the backfill looks at once.
    GapMayExist,
    /// The certifying round (asked by [`Effect::Certify`]) came back; `progressed` if it
    /// moved the certified cursor.
    Certified { progressed: bool },
}

/// What the driver carries out, in order.
#[derive(Debug, PartialEq)]
pub enum Effect {
    /// Confirm leadership with a quorum within `within_ms`; answer with [`Input::Confirmed`].
    ConfirmLeadership {
        within_ms: u64,
    },
    /// Hand `block` to Raft; answer with [`Input::Resolved`] once it is canonized, rejected,
    /// failed, or `within_ms` passed.
    Propose {
        block: Box<Block>,
        within_ms: u64,
    },
    /// Ask every other voter for a pre-vote in `round`; answers come as
    /// [`Input::PreVoteAnswer`].
    RequestPreVotes {
        round: u64,
    },
    /// Start a Raft election now.
    Campaign,
    /// Leave leadership: restart Raft as a follower in the next term.
    StepDown,
    /// Raft failed: restart it over the same storage.
    Reopen {
        after: String,
    },
    /// Ping every other voter; answers count as contact.
    Probe,
    /// The batcher's work: L1, attestations, a claim of the role.
    Batcher(BatcherEffect),
    /// Ask `source` for `count` missing blocks from `from` up, verify them against `gap` and
    /// store them; answer with [`Input::Backfilled`].
    FetchBlocks {
        gap: Box<Backfill>,
        source: NodeId,
        from: u64,
        count: u64,
    },
    /// Every block of `gap` is stored: cut its batches again and close it; answer with
    /// [`Input::Recut`].
    Recut {
        gap: Box<Backfill>,
    },
    /// Gather the peers' commit votes on the blocks at `round`'s heights, store the
    /// certificates a majority completes; answer with [`Input::Certified`].
    Certify(Round),
    Emit(Event),
}

impl From<BatcherOut> for Effect {
    fn from(out: BatcherOut) -> Effect {
        match out {
            BatcherOut::Do(work) => Effect::Batcher(work),
            BatcherOut::Emit(event) => Effect::Emit(event),
        }
    }
}

pub struct NodeCore {
    id: NodeId,
    cfg: NodeConfig,
    chain: Arc<ChainStore>,
    clock: Arc<dyn Clock>,
    mempool: Mempool,
    elector: Elector,
    /// When the elector is due next (it names its own deadline after each run; `None` until
    /// the first run has seen Raft).
    elector_due_ms: Option<Millis>,
    sequencer: Sequencer,
    /// When the next block time begins.
    block_due_ms: Millis,
    /// Leadership is being confirmed: the block time that asked waits for the answer.
    confirming: bool,
    /// What the last proposal in flight leads to; a pipelined block builds on it.
    tip: Option<BuildBase>,
    /// The Raft voters in effect as last seen: a block declares them once they differ from
    /// the chain's signer set (see [`crate::chain::members`]).
    voters: Vec<NodeId>,
    /// The batcher, on a node that runs one.
    batcher: Option<BatcherCore>,
    /// Where the backfill of a snapshot's gap asks next.
    backfill: BackfillCursor,
    /// When to gather commit votes.
    certifier: Certifier,
}

impl NodeCore {
    /// A core starting at `now`; `seed` drives the elector's timeouts.
    pub fn new(
        cfg: NodeConfig,
        chain: Arc<ChainStore>,
        clock: Arc<dyn Clock>,
        seed: u64,
        now: Millis,
    ) -> NodeCore {
        let sequencer = Sequencer::new(SequencerConfig {
            confirm_within_ms: cfg.election_timeout_ms_max,
            commit_within_ms: cfg.election_timeout_ms_max * 4,
            max_in_flight: cfg.max_blocks_in_flight,
        });
        NodeCore {
            id: cfg.id(),
            mempool: Mempool::new(cfg.mempool),
            elector: Elector::new(cfg.election_config(), seed),
            elector_due_ms: None,
            sequencer,
            block_due_ms: now + cfg.block_time_ms,
            confirming: false,
            tip: None,
            voters: Vec::new(),
            batcher: None,
            backfill: BackfillCursor::new(u64::from(MAX_BLOCKS_PER_RESPONSE)),
            certifier: Certifier::new(now),
            cfg,
            chain,
            clock,
        }
    }

    /// Runs what is due at `now` and what `input` brings; `view` is Raft now.
    pub fn handle(&mut self, now: Millis, view: &RaftView, input: Input) -> Vec<Effect> {
        let mut out = Vec::new();
        if self.voters != view.voters {
            self.voters.clone_from(&view.voters);
        }
        match input {
            Input::Tick => {}
            Input::Confirmed(confirmed) => {
                self.confirming = false;
                let action = self.sequencer.on_confirmed(confirmed, now, view);
                self.carry_sequencer(action, &mut out);
            }
            Input::Resolved { height, outcome } => {
                if let Some(SequencerAction::Dropped { height, reason }) =
                    self.sequencer.on_outcome(height, outcome, now)
                {
                    out.push(Effect::Emit(Event::ProposalDropped { height, reason }));
                }
            }
            Input::PreVoteAnswer {
                round,
                peer,
                granted,
            } => {
                if let Some(ElectionAction::Campaign { .. }) = self
                    .elector
                    .on_pre_vote_answer(now, round, peer, granted, view)
                {
                    out.push(Effect::Campaign);
                }
            }
            Input::Backfilled(step) => {
                let sources = self.cfg.peers.len().saturating_sub(1);
                self.backfill.on_step(now, step, sources);
            }
            Input::Recut { closed } => self.backfill.on_recut(now, closed),
            Input::GapMayExist => self.backfill.wake(now),
            Input::Certified { progressed } => self.certifier.on_round(now, progressed),
            Input::Batcher(answer) => {
                if let Some(b) = self.batcher.as_mut() {
                    let mut said = Vec::new();
                    b.on_input(now, &self.chain, answer, &mut said);
                    out.extend(said.into_iter().map(Effect::from));
                }
            }
        }
        match self.elector_due_ms {
            Some(due) if now >= due => {
                for action in self.elector.tick(now, view) {
                    self.carry_election(action, &mut out);
                }
                self.elector_due_ms = Some(self.elector.next_tick(view).max(now + 1));
            }
            Some(_) => {}
            None => self.elector_due_ms = Some(self.elector.next_tick(view).max(now + 1)),
        }
        if now >= self.block_due_ms && !self.confirming {
            // A block time that came late (a slow build, a long confirmation) is not made up
            // for in a burst: the cadence restarts from now.
            self.block_due_ms = (self.block_due_ms + self.cfg.block_time_ms).max(now);
            self.mempool.prune(&self.chain.state().state);
            let action = self.sequencer.on_tick(now, view);
            self.carry_sequencer(action, &mut out);
        }
        if let Some(b) = self.batcher.as_mut() {
            let mut said = Vec::new();
            b.step(now, &self.chain, &mut said);
            out.extend(said.into_iter().map(Effect::from));
        }
        if self.backfill.next_deadline().is_some_and(|due| now >= due) {
            self.poll_backfill(now, view, &mut out);
        }
        let (certified, head) = (self.chain.certified_through(), self.chain.head().height);
        if let Some(round) = self.certifier.poll(now, certified, head) {
            out.push(Effect::Certify(round));
        }
        out
    }

    fn poll_backfill(&mut self, now: Millis, view: &RaftView, out: &mut Vec<Effect>) {
        // The planted bug: the gap a snapshot left is not seen.
        let gap = match self.cfg.plant {
            crate::consensus::config::Plant::ForgetGap => None,
            _ => self.chain.backfill(),
        };
        let (state, next) = match &gap {
            None => (Gap::None, None),
            Some(g) => match g.next_request(self.backfill.ask_for()) {
                Some(range) => (Gap::Missing, Some(range)),
                None => (Gap::Filled, None),
            },
        };
        // The leader first: it built the snapshot, so it holds its blocks.
        let leader = view.leader.filter(|l| *l != self.id);
        let mut sources: Vec<NodeId> = leader.into_iter().collect();
        sources.extend(
            self.cfg
                .peers
                .iter()
                .filter(|p| **p != self.id && Some(**p) != leader),
        );
        let (Some(action), Some(gap)) = (self.backfill.poll(now, state, next, &sources), gap)
        else {
            return;
        };
        out.push(match action {
            BackfillAction::Fetch {
                source,
                from,
                count,
            } => Effect::FetchBlocks {
                gap: Box::new(gap),
                source,
                from,
                count,
            },
            BackfillAction::Recut => Effect::Recut { gap: Box::new(gap) },
        });
    }

    /// When the core next has something to do with no input.
    pub fn next_deadline(&self) -> Millis {
        // Before the first run the elector's deadline is unknown: run now.
        let elector = self.elector_due_ms.unwrap_or(0);
        let own = if self.confirming {
            elector
        } else {
            elector.min(self.block_due_ms)
        };
        [
            self.batcher.as_ref().and_then(BatcherCore::next_deadline),
            self.backfill.next_deadline(),
            self.certifier.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .fold(own, Millis::min)
    }

    /// This node runs a batcher from now on.
    pub fn start_batcher(&mut self, batcher: BatcherCore) {
        self.batcher = Some(batcher);
    }

    pub fn batcher(&self) -> Option<&BatcherCore> {
        self.batcher.as_ref()
    }

    fn carry_sequencer(&mut self, action: Option<SequencerAction>, out: &mut Vec<Effect>) {
        match action {
            Some(SequencerAction::ConfirmLeadership { within_ms }) => {
                self.confirming = true;
                out.push(Effect::ConfirmLeadership { within_ms });
            }
            Some(SequencerAction::Propose {
                term,
                on,
                within_ms,
            }) => {
                let base = match (on, self.tip.take()) {
                    (BuildOn::Tip, Some(tip)) => tip,
                    _ => self.chain.state().build_base(&self.cfg.peers),
                };
                if let Some((block, next)) = self.build_next(term, base, out) {
                    self.sequencer.on_proposed(block.header.height);
                    self.tip = Some(next);
                    out.push(Effect::Propose {
                        block: Box::new(block),
                        within_ms,
                    });
                }
            }
            Some(SequencerAction::Dropped { height, reason }) => {
                out.push(Effect::Emit(Event::ProposalDropped { height, reason }));
            }
            None => {}
        }
    }

    fn carry_election(&mut self, action: ElectionAction, out: &mut Vec<Effect>) {
        let effect = match action {
            ElectionAction::RequestPreVotes { round } => Effect::RequestPreVotes { round },
            ElectionAction::Campaign { .. } => Effect::Campaign,
            ElectionAction::StepDown { silent_ms } => {
                out.push(Effect::Emit(Event::SteppedDown {
                    millis_since_quorum_ack: silent_ms,
                }));
                Effect::StepDown
            }
            ElectionAction::Reopen { after } => Effect::Reopen { after },
            ElectionAction::Probe => Effect::Probe,
            ElectionAction::BecameLeader { term } => Effect::Emit(Event::BecameLeader { term }),
            ElectionAction::LostLeadership { term } => Effect::Emit(Event::LostLeadership { term }),
        };
        out.push(effect);
    }

    /// Builds and signs the next block in `term` on `base` from the mempool, and drops from
    /// the mempool what can never be included. Returns the block and what it leads to.
    fn build_next(
        &mut self,
        term: u64,
        base: BuildBase,
        out: &mut Vec<Effect>,
    ) -> Option<(Block, BuildBase)> {
        // A leader's clock may run behind its predecessor's: time never goes backwards on chain.
        let timestamp_ms = self.clock.now_ms().max(base.head.timestamp_ms);
        let seals_batch = base
            .batches
            .seal_due(timestamp_ms, self.cfg.batch_timeout_ms);
        let candidates = self
            .mempool
            .candidates(&base.state, self.cfg.max_block_transactions);
        let proposal = Proposal {
            head: &base.head,
            state: &base.state,
            key: &self.cfg.key,
            term,
            slot: None,
            seals_batch,
            members: crate::chain::members::declaration(&base.members, &self.voters),
            timestamp_ms,
            max_transactions: self.cfg.max_block_transactions,
        };
        let built = build_block(proposal, candidates).and_then(|built| {
            let next = base.after(&built, self.chain.blocks_per_batch())?;
            Ok((built, next))
        });
        let (built, next) = match built {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(node = ?self.id, "cannot encode a block: {e}");
                return None;
            }
        };
        for (tx, err) in &built.excluded {
            if !Sequencer::keeps_excluded(err) {
                self.mempool.remove(tx);
            }
        }
        self.mempool.proposed(&built.block.transactions);
        // A memo, not a decision: applying this block, if canonized, reuses the execution.
        if let Ok(hash) = built.block.header.hash() {
            self.chain.remember_built(hash, built.executed);
        }
        out.push(Effect::Emit(Event::Proposed {
            height: built.block.header.height,
            transactions: built.block.transactions.len(),
        }));
        Some((built.block, next))
    }

    /// Contact: a request from, or a response by, `peer` arrived at `now`.
    pub fn heard(&mut self, now: Millis, peer: NodeId) {
        self.elector.heard(now, peer);
    }

    /// `peer` sent AppendEntries at `now`.
    pub fn appended_by(&mut self, now: Millis, peer: NodeId) {
        self.elector.appended_by(now, peer);
    }

    /// Whether to grant `from` a pre-vote; `own_last` is this node's last log position.
    pub fn answer_pre_vote(
        &mut self,
        now: Millis,
        from: NodeId,
        candidate_last: Option<LogPos>,
        own_last: Option<LogPos>,
        view: &RaftView,
    ) -> bool {
        self.elector
            .answer_pre_vote(now, from, candidate_last, own_last, view)
    }

    /// Consensus peers (not this node) heard within `window_ms` of `now`.
    pub fn peers_heard_within(&self, now: Millis, window_ms: u64) -> usize {
        self.elector.peers_heard_within(now, window_ms)
    }

    /// Proposals waiting for canonization.
    pub fn proposals_in_flight(&self) -> usize {
        self.sequencer.in_flight()
    }

    pub fn mempool(&self) -> &Mempool {
        &self.mempool
    }

    /// Admits `tx` to the mempool against the applied state. (The core's lock is taken
    /// before the chain's, here as in [`NodeCore::handle`].)
    pub fn admit(&mut self, tx: Tx) -> Result<(), AdmitError> {
        let chain = self.chain.state();
        self.mempool.admit(tx, &chain.state)
    }
}

#[cfg(test)]
mod tests {
    //! The node's decisions at the level of the node, no runtime: what a consensus node does
    //! at each deadline and each finished piece of work.
    use super::*;
    use crate::chain::block::{ChainSpec, DEFAULT_BLOCKS_PER_BATCH};
    use crate::keys::derived_key;
    use crate::policy::election::Role;
    use crate::storage::MemDisk;

    const BLOCK_MS: u64 = 25;
    const TIMEOUT_MIN_MS: u64 = 150;
    const TIMEOUT_MAX_MS: u64 = 300;
    const HEARTBEAT_MS: u64 = 50;

    struct FixedClock(u64);
    impl Clock for FixedClock {
        fn now_ms(&self) -> u64 {
            self.0
        }
    }

    fn peers() -> Vec<NodeId> {
        (0..3)
            .map(|i| derived_key("core-test", i).node_id())
            .collect()
    }

    fn core(max_in_flight: usize) -> NodeCore {
        let cfg = NodeConfig {
            boot_peers: Vec::new(),
            key: derived_key("core-test", 0),
            peers: peers(),
            bootstrap: true,
            election_timeout_ms_min: TIMEOUT_MIN_MS,
            election_timeout_ms_max: TIMEOUT_MAX_MS,
            heartbeat_interval_ms: HEARTBEAT_MS,
            block_time_ms: BLOCK_MS,
            max_block_transactions: 100,
            max_blocks_in_flight: max_in_flight,
            mempool: crate::consensus::mempool::MempoolBounds::total(1_000),
            snapshot_interval_entries: 1_000,
            log_keep_entries: 100,
            rpc_timeout_ms: 1_000,
            batch_timeout_ms: 0,
            chain: ChainSpec {
                chain_id: 7,
                app: crate::app::App::new(crate::app::ledger::LedgerApp::default()),
                blocks_per_batch: DEFAULT_BLOCKS_PER_BATCH,
            },
            plant: crate::consensus::config::Plant::None,
        };
        let chain = Arc::new(ChainStore::open(Arc::new(MemDisk::new()), &cfg.chain).unwrap());
        NodeCore::new(cfg, chain, Arc::new(FixedClock(1_000)), 42, 0)
    }

    fn view(role: Role, term: u64) -> RaftView {
        let me = peers()[0];
        RaftView {
            role,
            term,
            voted_for: (role == Role::Leader).then_some(me),
            leader: (role == Role::Leader).then_some(me),
            millis_since_quorum_ack: (role == Role::Leader).then_some(0),
            failed: None,
            voters: Vec::new(),
            abstain_until: None,
        }
    }

    /// The heights of the blocks proposed among `effects`, each checked to extend the one
    /// before in this list (pipelined on the tip).
    fn proposed(effects: &[Effect]) -> Vec<u64> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Propose { block, .. } => Some(block.header.height),
                _ => None,
            })
            .collect()
    }

    fn confirms(effects: &[Effect]) -> bool {
        effects
            .iter()
            .any(|e| matches!(e, Effect::ConfirmLeadership { .. }))
    }

    /// Runs the core at every deadline up to `until`, feeding `view`; all effects in order.
    fn run_until(
        core: &mut NodeCore,
        now: &mut Millis,
        until: Millis,
        v: &RaftView,
    ) -> Vec<Effect> {
        let mut out = Vec::new();
        while core.next_deadline() <= until {
            *now = core.next_deadline().max(*now);
            out.extend(core.handle(*now, v, Input::Tick));
        }
        *now = until;
        out
    }

    #[test]
    fn a_new_leader_confirms_then_pipelines_up_to_its_limit() {
        let mut c = core(3);
        let leader = view(Role::Leader, 2);
        let mut now = 0;
        let effects = run_until(&mut c, &mut now, BLOCK_MS, &leader);
        assert!(confirms(&effects), "{effects:?}");
        assert!(proposed(&effects).is_empty());
        // While confirming, the block cadence waits: nothing else is asked for.
        let during = run_until(&mut c, &mut now, BLOCK_MS * 4, &leader);
        assert!(
            !confirms(&during) && proposed(&during).is_empty(),
            "{during:?}"
        );
        // Confirmed: block 1 on the applied head, and the block time that waited for the
        // answer is taken at once (block 2, on 1).
        let answered = c.handle(now, &leader, Input::Confirmed(true));
        assert_eq!(proposed(&answered), vec![1, 2]);
        // Three in flight at most, each on the one before; then the ticks propose nothing.
        let more = run_until(&mut c, &mut now, BLOCK_MS * 10, &leader);
        assert_eq!(proposed(&more), vec![3]);
        assert_eq!(c.proposals_in_flight(), 3);
    }

    #[test]
    fn a_proposal_lost_to_another_leader_drains_the_pipeline() {
        let mut c = core(3);
        let leader = view(Role::Leader, 2);
        let mut now = 0;
        run_until(&mut c, &mut now, BLOCK_MS, &leader);
        c.handle(now, &leader, Input::Confirmed(true));
        run_until(&mut c, &mut now, BLOCK_MS * 3, &leader);
        assert_eq!(c.proposals_in_flight(), 3);
        // Block 1 lost: it is reported, and the run built on it is broken.
        let lost = c.handle(
            now,
            &leader,
            Input::Resolved {
                height: 1,
                outcome: ProposalOutcome::Rejected("height 1 taken".into()),
            },
        );
        assert!(
            lost.iter()
                .any(|e| matches!(e, Effect::Emit(Event::ProposalDropped { height: 1, .. }))),
            "{lost:?}"
        );
        // Nothing new while 2 and 3 are unresolved, however many block times pass.
        let waiting = run_until(&mut c, &mut now, BLOCK_MS * 20, &leader);
        assert!(
            proposed(&waiting).is_empty() && !confirms(&waiting),
            "{waiting:?}"
        );
        for height in [2, 3] {
            let outcome = ProposalOutcome::Failed("built on a lost block".into());
            c.handle(now, &leader, Input::Resolved { height, outcome });
        }
        assert_eq!(c.proposals_in_flight(), 0);
        // Drained: the next run confirms leadership first and starts from the applied head.
        let next = run_until(&mut c, &mut now, BLOCK_MS * 22, &leader);
        assert!(confirms(&next), "{next:?}");
        let answered = c.handle(now, &leader, Input::Confirmed(true));
        assert_eq!(proposed(&answered).first(), Some(&1), "{answered:?}");
    }

    #[test]
    fn the_leader_steps_down_on_a_lost_quorum_once() {
        let mut c = core(1);
        let mut leader = view(Role::Leader, 2);
        let mut now = 0;
        let became = run_until(&mut c, &mut now, HEARTBEAT_MS * 2, &leader);
        assert!(became.contains(&Effect::Emit(Event::BecameLeader { term: 2 })));
        // One election timeout plus a heartbeat without a quorum's acknowledgement.
        let silent_ms = TIMEOUT_MAX_MS + HEARTBEAT_MS;
        leader.millis_since_quorum_ack = Some(silent_ms - 1);
        let still = run_until(&mut c, &mut now, HEARTBEAT_MS * 4, &leader);
        assert!(!still.contains(&Effect::StepDown), "{still:?}");
        leader.millis_since_quorum_ack = Some(silent_ms);
        let down = run_until(&mut c, &mut now, HEARTBEAT_MS * 6, &leader);
        let at = down.iter().position(|e| *e == Effect::StepDown);
        let at = at.unwrap_or_else(|| panic!("no step-down in {down:?}"));
        assert_eq!(
            down[at - 1],
            Effect::Emit(Event::SteppedDown {
                millis_since_quorum_ack: silent_ms
            })
        );
        let again = run_until(&mut c, &mut now, HEARTBEAT_MS * 20, &leader);
        assert!(!again.contains(&Effect::StepDown), "asked twice: {again:?}");
    }

    #[test]
    fn a_follower_without_a_leader_asks_for_pre_votes_then_campaigns_on_a_quorum() {
        let mut c = core(1);
        let follower = view(Role::Follower, 1);
        let mut now = 0;
        let effects = run_until(&mut c, &mut now, TIMEOUT_MAX_MS + 1, &follower);
        let round = effects.iter().find_map(|e| match e {
            Effect::RequestPreVotes { round } => Some(*round),
            _ => None,
        });
        let round = round.unwrap_or_else(|| panic!("no pre-vote round in {effects:?}"));
        assert!(!effects.contains(&Effect::Campaign));
        let refused = c.handle(
            now,
            &follower,
            Input::PreVoteAnswer {
                round,
                peer: peers()[1],
                granted: false,
            },
        );
        assert!(!refused.contains(&Effect::Campaign), "{refused:?}");
        // This node and one more of three: a quorum.
        let granted = c.handle(
            now,
            &follower,
            Input::PreVoteAnswer {
                round,
                peer: peers()[2],
                granted: true,
            },
        );
        assert!(granted.contains(&Effect::Campaign), "{granted:?}");
    }

    #[test]
    fn a_failed_raft_is_reopened_after_an_election_timeout() {
        let mut c = core(1);
        let mut failed = view(Role::Follower, 1);
        failed.failed = Some("storage: disk gone".into());
        let mut now = 0;
        let early = run_until(&mut c, &mut now, TIMEOUT_MAX_MS - 1, &failed);
        assert!(!early.iter().any(|e| matches!(e, Effect::Reopen { .. })));
        let late = run_until(&mut c, &mut now, TIMEOUT_MAX_MS + HEARTBEAT_MS * 2, &failed);
        assert!(
            late.contains(&Effect::Reopen {
                after: "storage: disk gone".into()
            }),
            "{late:?}"
        );
    }

    #[test]
    fn a_late_block_time_is_not_made_up_for_in_a_burst() {
        let mut c = core(100);
        let leader = view(Role::Leader, 2);
        let mut now = 0;
        run_until(&mut c, &mut now, BLOCK_MS, &leader);
        c.handle(now, &leader, Input::Confirmed(true));
        // The driver was held up for ten block times: one catch-up block, not ten, and then
        // the cadence runs from the late tick.
        now += BLOCK_MS * 10;
        let late_at = now;
        let mut late = c.handle(now, &leader, Input::Tick);
        late.extend(run_until(&mut c, &mut now, late_at + BLOCK_MS - 1, &leader));
        assert_eq!(proposed(&late), vec![2, 3], "{late:?}");
        let on = run_until(&mut c, &mut now, late_at + BLOCK_MS, &leader);
        assert_eq!(proposed(&on), vec![4], "{on:?}");
    }
}

//! The batcher's part of a consensus node's core: while the role Raft applied names this node,
//! it feeds [`policy::batcher`](crate::policy::batcher) with what this node sealed and attested
//! and asks for what it decides (read L1's head, gather attestations, submit the next batch);
//! otherwise it stands by, feeding
//! [`policy::batcher_failover`](crate::policy::batcher_failover) one L1 reading per batch round
//! and asking for its claim to be put through Raft when that policy says so.
//!
//! Synchronous, like the rest of the core: [`BatcherCore::step`] runs when due and names one
//! piece of work ([`BatcherEffect`]); its answer ([`BatcherInput`]) comes back through
//! [`BatcherCore::on_input`], and until then the batcher waits. The node's driver does the L1
//! calls and the peer requests (`settlement::batcher`).

use std::sync::Arc;

use alloy_primitives::B256;

use crate::chain::store::ChainStore;
use crate::consensus::status::BatcherState;
use crate::events::Event;
use crate::ids::{NodeId, Sig65};
use crate::policy::batcher::{
    Batcher, BatcherAction, BatcherConfig, BatcherReport, BatcherView, HeadSeen, SubmitOutcome,
};
use crate::policy::batcher_failover::{Failover, FailoverConfig, RoundView};
use crate::policy::Millis;
use crate::settlement::batch::{ordered_signatures, Attestation, BatchHeader};
use crate::settlement::l1::{L1Head, L1};
use crate::settlement::role::{BatcherClaim, BatcherRole};

/// How a node runs its batcher.
#[derive(Clone)]
pub struct BatcherSetup {
    pub l1: Arc<dyn L1>,
    /// `batcher_redundancy_level`: 0 for the main batcher, L > 0 for a standby that steps in
    /// after L x `max_missed_rounds` batch rounds of L1 standing still.
    pub level: u32,
    pub max_missed_rounds: u32,
    /// One batch round, as a standby counts them.
    pub round_ms: u64,
    /// How often it looks for work when idle.
    pub poll_interval_ms: u64,
    pub retry_ms_min: u64,
    pub retry_ms_max: u64,
}

/// One batch round, as a standby batcher counts them: the longest a batch stays open
/// (`batch_timeout_ms`), or, when batches close only by count, the time their blocks take.
pub fn batch_round_ms(batch_timeout_ms: u64, blocks_per_batch: u64, block_time_ms: u64) -> u64 {
    if batch_timeout_ms > 0 {
        batch_timeout_ms
    } else {
        blocks_per_batch.saturating_mul(block_time_ms).max(1)
    }
}

/// Work the batcher asks the driver for; each is answered by one [`BatcherInput`].
#[derive(Clone, Debug, PartialEq)]
pub enum BatcherEffect {
    /// The active batcher reads L1's head: answer [`BatcherInput::HeadRead`].
    ReadHead,
    /// Ask the other consensus nodes for their attestations of batch `number` and store the
    /// valid ones: answer [`BatcherInput::Collected`].
    Collect { number: u64 },
    /// Send the batch with its signatures at `epoch`: answer [`BatcherInput::Submitted`].
    Submit {
        header: BatchHeader,
        signatures: Vec<Sig65>,
        epoch: u64,
    },
    /// A standby's batch round reads L1's head: answer [`BatcherInput::RoundRead`].
    ReadRound,
    /// Put the claim through Raft: answer [`BatcherInput::Claimed`].
    Claim(BatcherClaim),
}

#[derive(Clone, Debug)]
pub enum BatcherInput {
    HeadRead(Result<L1Head, String>),
    Collected,
    Submitted(SubmitOutcome),
    RoundRead(Result<L1Head, String>),
    /// `Err`: the claim was not written (the role as applied judges a written one).
    Claimed(Result<(), String>),
}

/// What the batcher hands the core: work for the driver, or an event.
#[derive(Clone, Debug, PartialEq)]
pub enum BatcherOut {
    Do(BatcherEffect),
    Emit(Event),
}

pub struct BatcherCore {
    me: NodeId,
    peers: Vec<NodeId>,
    setup: BatcherCfg,
    failover: Failover,
    /// The submitting policy while this node holds the role.
    active: Option<Batcher>,
    /// The role last seen while standing by, to report changes once.
    standing_by: Option<BatcherRole>,
    /// Work asked for and not yet answered (`Submit`: the batch's last height).
    waiting: Option<Waiting>,
    due_ms: Millis,
    published: BatcherState,
}

/// The settings the core keeps of [`BatcherSetup`] (the L1 handle stays with the driver).
#[derive(Clone, Copy, Debug)]
struct BatcherCfg {
    level: u32,
    poll_ms: u64,
    retry_ms_min: u64,
    retry_ms_max: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Waiting {
    Head,
    Collect,
    Submit {
        number: u64,
        epoch: u64,
        last_height: u64,
    },
    Round,
    Claim,
}

impl BatcherCore {
    pub fn new(me: NodeId, peers: Vec<NodeId>, setup: &BatcherSetup, now: Millis) -> Self {
        BatcherCore {
            failover: Failover::new(FailoverConfig {
                me,
                level: setup.level,
                max_missed_rounds: setup.max_missed_rounds,
                round_ms: setup.round_ms,
            }),
            me,
            peers,
            setup: BatcherCfg {
                level: setup.level,
                poll_ms: setup.poll_interval_ms.max(1),
                retry_ms_min: setup.retry_ms_min,
                retry_ms_max: setup.retry_ms_max,
            },
            active: None,
            standing_by: None,
            waiting: None,
            due_ms: now,
            published: BatcherState {
                level: setup.level,
                ..BatcherState::default()
            },
        }
    }

    /// What status shows of this batcher.
    pub fn published(&self) -> &BatcherState {
        &self.published
    }

    /// When the batcher next has something to do; `None` while it waits for an answer.
    pub fn next_deadline(&self) -> Option<Millis> {
        self.waiting.is_none().then_some(self.due_ms)
    }

    /// Who attests `header` on L1: the signers of its blocks, which is the set L1 holds when
    /// it arrives (a batch ends at every block that declares new members; see
    /// [`crate::settlement::batch`]).
    fn attesters(&self, chain: &ChainStore, header: &BatchHeader) -> Vec<NodeId> {
        chain
            .state()
            .signers(&self.peers)
            .of(header.first_height)
            .to_vec()
    }

    /// Runs one step if one is due at `now`, reading the role and batches `chain` applied.
    pub fn step(&mut self, now: Millis, chain: &ChainStore, out: &mut Vec<BatcherOut>) {
        if self.waiting.is_some() || now < self.due_ms {
            return;
        }
        let role = chain.state().batcher_role;
        if role.is_held_by(&self.me) {
            self.standing_by = None;
            self.step_active(now, role, chain, out);
            return;
        }
        if let Some(was) = self.active.take() {
            self.failover.on_deposed(was.epoch());
        }
        if self.standing_by != Some(role) {
            self.standing_by = Some(role);
            out.push(BatcherOut::Emit(Event::BatcherStandingBy {
                epoch: role.epoch,
                holder: role.holder,
            }));
            if let (true, Some(holder)) = (self.failover.same_level_conflict(&role), role.holder) {
                out.push(BatcherOut::Emit(Event::BatcherSameLevel {
                    holder,
                    level: self.setup.level,
                }));
            }
        }
        if self.failover.round_due(now) {
            self.ask(Waiting::Round, BatcherEffect::ReadRound, out);
        } else {
            self.due_ms = now + self.setup.poll_ms;
        }
    }

    fn step_active(
        &mut self,
        now: Millis,
        role: BatcherRole,
        chain: &ChainStore,
        out: &mut Vec<BatcherOut>,
    ) {
        let setup = self.setup;
        let policy = self.active.get_or_insert_with(|| {
            Batcher::new(BatcherConfig {
                retry_ms_min: setup.retry_ms_min,
                retry_ms_max: setup.retry_ms_max,
                // A new policy starts below any claimed epoch.
                epoch: 0,
            })
        });
        if policy.epoch() != role.epoch {
            policy.set_epoch(role.epoch);
            out.push(BatcherOut::Emit(Event::BatcherActive { epoch: role.epoch }));
        }
        let sealed = chain.state().batches.sealed_number;
        let (attestations, quorum) = match policy.next_for_l1() {
            Some(n) if n <= sealed => {
                self.batch_with_signatures(chain, n)
                    .map_or((0, usize::MAX), |(header, s)| {
                        let attesters = self.attesters(chain, &header);
                        (
                            s.len(),
                            crate::chain::certificate::majority(attesters.len()),
                        )
                    })
            }
            _ => (0, usize::MAX),
        };
        let Some(policy) = self.active.as_mut() else {
            return;
        };
        match policy.poll(
            now,
            BatcherView {
                sealed,
                attestations,
                quorum,
            },
        ) {
            None => self.due_ms = now + self.setup.poll_ms,
            Some(BatcherAction::ReadHead) => self.ask(Waiting::Head, BatcherEffect::ReadHead, out),
            Some(BatcherAction::Collect { number }) => {
                self.ask(Waiting::Collect, BatcherEffect::Collect { number }, out)
            }
            Some(BatcherAction::Submit { number, epoch }) => {
                match self.batch_with_signatures(chain, number) {
                    Some((header, signatures)) => {
                        let last_height = header.last_height;
                        let effect = BatcherEffect::Submit {
                            header,
                            signatures,
                            epoch,
                        };
                        let waiting = Waiting::Submit {
                            number,
                            epoch,
                            last_height,
                        };
                        self.ask(waiting, effect, out);
                    }
                    None => {
                        let reason = format!("batch {number} or its attestations are unreadable");
                        self.submitted(
                            now,
                            number,
                            epoch,
                            None,
                            SubmitOutcome::Unknown { reason },
                            out,
                        );
                    }
                }
            }
        }
    }

    fn ask(&mut self, waiting: Waiting, effect: BatcherEffect, out: &mut Vec<BatcherOut>) {
        self.waiting = Some(waiting);
        out.push(BatcherOut::Do(effect));
    }

    /// The answer to the work asked for last, at `now`.
    pub fn on_input(
        &mut self,
        now: Millis,
        chain: &ChainStore,
        input: BatcherInput,
        out: &mut Vec<BatcherOut>,
    ) {
        let Some(waiting) = self.waiting.take() else {
            return;
        };
        // An active step is followed at once by the next; a standby waits a poll interval.
        self.due_ms = now;
        match (waiting, input) {
            (Waiting::Head, BatcherInput::HeadRead(head)) => self.head_read(now, chain, head, out),
            (Waiting::Collect, BatcherInput::Collected) => {}
            (
                Waiting::Submit {
                    number,
                    epoch,
                    last_height,
                },
                BatcherInput::Submitted(outcome),
            ) => self.submitted(now, number, epoch, Some(last_height), outcome, out),
            (Waiting::Round, BatcherInput::RoundRead(head)) => {
                self.round_read(now, chain, head, out)
            }
            (Waiting::Claim, BatcherInput::Claimed(written)) => {
                self.due_ms = now + self.setup.poll_ms;
                if let Err(reason) = written {
                    tracing::warn!(node = ?self.me, "batcher claim not written: {reason}");
                    self.failover.on_claim_failed(now);
                }
            }
            // An answer to other work than asked: the driver's bug, never a peer's. Nothing
            // is waited for any more, so the batcher goes on from its next step.
            (waiting, input) => {
                tracing::error!(node = ?self.me, "batcher asked {waiting:?}, answered {input:?}")
            }
        }
    }

    fn head_read(
        &mut self,
        now: Millis,
        chain: &ChainStore,
        head: Result<L1Head, String>,
        out: &mut Vec<BatcherOut>,
    ) {
        let (seen, ours) = match head {
            Ok(h) => {
                self.read_l1(&h);
                let seen = HeadSeen {
                    batch_number: h.batch_number,
                    commitment: h.commitment,
                    epoch: h.epoch,
                    in_flight: h.in_flight,
                };
                (Some(seen), sealed_commitment(chain, h.batch_number))
            }
            Err(reason) => {
                self.published.last_error = Some(reason.clone());
                out.push(BatcherOut::Emit(Event::L1Unavailable { reason }));
                (None, None)
            }
        };
        let Some(policy) = self.active.as_mut() else {
            return;
        };
        for r in policy.on_head(now, seen, ours) {
            out.push(BatcherOut::Emit(report_event(r)));
        }
        if let Some(h) = seen {
            out.push(BatcherOut::Emit(Event::L1HeadRead {
                batch_number: h.batch_number,
                epoch: h.epoch,
            }));
        }
    }

    fn submitted(
        &mut self,
        now: Millis,
        number: u64,
        epoch: u64,
        last_height: Option<u64>,
        outcome: SubmitOutcome,
        out: &mut Vec<BatcherOut>,
    ) {
        let p = &mut self.published;
        out.push(BatcherOut::Emit(match &outcome {
            SubmitOutcome::Committed => {
                p.l1_batch = Some(number);
                p.l1_height = last_height;
                p.last_error = None;
                Event::BatchCommitted { number, epoch }
            }
            SubmitOutcome::Refused { reason } => {
                p.last_error = Some(reason.clone());
                Event::BatchNotCommitted {
                    number,
                    reason: reason.clone(),
                    reverted: true,
                }
            }
            SubmitOutcome::Unknown { reason } => {
                p.last_error = Some(reason.clone());
                Event::BatchNotCommitted {
                    number,
                    reason: reason.clone(),
                    reverted: false,
                }
            }
        }));
        if let Some(policy) = self.active.as_mut() {
            policy.on_submitted(now, outcome);
        }
    }

    /// One standby round's reading: count, and claim the role if the count says so.
    fn round_read(
        &mut self,
        now: Millis,
        chain: &ChainStore,
        head: Result<L1Head, String>,
        out: &mut Vec<BatcherOut>,
    ) {
        let l1_batch = match head {
            Ok(h) => {
                self.read_l1(&h);
                Some(h.batch_number)
            }
            Err(reason) => {
                self.published.last_error = Some(reason);
                None
            }
        };
        let view = {
            let state = chain.state();
            RoundView {
                role: state.batcher_role,
                l1_batch,
                sealed: state.batches.sealed_number,
            }
        };
        let claim = self.failover.on_round(now, view);
        self.published.missed_rounds = self.failover.missed_rounds();
        self.due_ms = now + self.setup.poll_ms;
        let Some(claim) = claim else {
            return;
        };
        out.push(BatcherOut::Emit(Event::BatcherClaiming {
            epoch: claim.epoch,
            missed_rounds: claim.missed_rounds,
        }));
        let claim = BatcherClaim {
            epoch: claim.epoch,
            node: self.me,
            level: claim.level,
        };
        self.ask(Waiting::Claim, BatcherEffect::Claim(claim), out);
    }

    fn read_l1(&mut self, h: &L1Head) {
        self.published.l1_batch = Some(h.batch_number);
        self.published.l1_height = Some(h.height);
        self.published.last_error = None;
    }

    /// Batch `number` and the valid signatures over it from distinct members of its attester
    /// set, in the contract's order.
    fn batch_with_signatures(
        &self,
        chain: &ChainStore,
        number: u64,
    ) -> Option<(BatchHeader, Vec<Sig65>)> {
        let header = chain.batch(number).ok().flatten()?;
        let attesters = self.attesters(chain, &header);
        let atts: Vec<Attestation> = chain
            .attestations(number)
            .ok()?
            .into_iter()
            .filter(|a| attesters.contains(&a.signer))
            .collect();
        let sigs = ordered_signatures(&header, &atts);
        Some((header, sigs))
    }
}

/// The commitment of batch `number` as this node sealed it (zero for batch 0).
fn sealed_commitment(chain: &ChainStore, number: u64) -> Option<B256> {
    if number == 0 {
        return Some(B256::ZERO);
    }
    chain.batch(number).ok().flatten().map(|h| h.commitment())
}

fn report_event(r: BatcherReport) -> Event {
    match r {
        BatcherReport::Diverged { number, l1, ours } => Event::BatcherStopped {
            reason: format!(
                "L1 holds batch {number} with commitment {l1}, this node sealed {ours}: stopped"
            ),
        },
        BatcherReport::CommittedElsewhere { number } => Event::BatchCommittedElsewhere { number },
        BatcherReport::Superseded { l1_epoch, ours } => Event::BatcherSuperseded { l1_epoch, ours },
    }
}

#[cfg(test)]
mod tests {
    //! The batcher on a node, as its core runs it: no runtime, no L1, no peers; each answer
    //! the driver would bring is handed in by the table.
    use super::*;
    use crate::chain::block::{ChainSpec, DEFAULT_BLOCKS_PER_BATCH};
    use std::collections::BTreeSet;

    use alloy_primitives::Address;

    use crate::chain::store::stage_applied;
    use crate::keys::derived_key;
    use crate::net::transport::BoxFuture;
    use crate::settlement::l1::L1;
    use crate::storage::{Durability, MemDisk, WriteBatch};

    /// The core never calls L1 (the driver does): this one only fills the setup.
    struct NoL1;
    impl L1 for NoL1 {
        fn head(&self) -> BoxFuture<'_, Result<L1Head, String>> {
            Box::pin(async { Err("no L1 in this test".to_string()) })
        }
        fn submit(&self, _: BatchHeader, _: Vec<Sig65>, _: u64) -> BoxFuture<'_, SubmitOutcome> {
            Box::pin(async {
                SubmitOutcome::Unknown {
                    reason: "no L1 in this test".into(),
                }
            })
        }
    }

    const ROUND_MS: u64 = 1_000;
    const POLL_MS: u64 = 50;
    const MISSED: u32 = 3;

    fn id(i: usize) -> NodeId {
        derived_key("batcher-core-test", i).node_id()
    }

    fn store() -> ChainStore {
        let spec = ChainSpec {
            chain_id: 7,
            app: crate::app::App::new(crate::app::ledger::LedgerApp::default()),
            blocks_per_batch: DEFAULT_BLOCKS_PER_BATCH,
        };
        ChainStore::open(Arc::new(MemDisk::new()), &spec).unwrap()
    }

    /// Applies, as Raft would: the role at `epoch` held by `holder` at `level`, and `sealed`
    /// batches sealed.
    fn applied(chain: &ChainStore, holder: NodeId, level: u32, epoch: u64, sealed: u64) {
        let mut next = chain.state().clone();
        next.batcher_role = BatcherRole {
            epoch,
            holder: Some(holder),
            level,
        };
        next.batches.sealed_number = sealed;
        let mut batch = WriteBatch::default();
        stage_applied(&mut batch, &next).unwrap();
        chain.commit(batch, next, Durability::Buffered).unwrap();
    }

    fn core(level: u32) -> BatcherCore {
        let setup = BatcherSetup {
            l1: Arc::new(NoL1),
            level,
            max_missed_rounds: MISSED,
            round_ms: ROUND_MS,
            poll_interval_ms: POLL_MS,
            retry_ms_min: 100,
            retry_ms_max: 1_000,
        };
        BatcherCore::new(id(0), (0..3).map(id).collect(), &setup, 0)
    }

    fn l1_at(batch_number: u64, epoch: u64) -> Result<L1Head, String> {
        Ok(L1Head {
            batch_number,
            height: batch_number * DEFAULT_BLOCKS_PER_BATCH,
            state_root: B256::ZERO,
            commitment: B256::ZERO,
            epoch,
            in_flight: 0,
        })
    }

    /// Steps at `now`; answers every standby round with `l1`. Returns what came out.
    fn round(c: &mut BatcherCore, chain: &ChainStore, now: Millis, l1: u64) -> Vec<BatcherOut> {
        let mut out = Vec::new();
        c.step(now, chain, &mut out);
        if out.contains(&BatcherOut::Do(BatcherEffect::ReadRound)) {
            c.on_input(now, chain, BatcherInput::RoundRead(l1_at(l1, 1)), &mut out);
        }
        out
    }

    fn claims(out: &[BatcherOut]) -> Vec<u64> {
        out.iter()
            .filter_map(|o| match o {
                BatcherOut::Do(BatcherEffect::Claim(c)) => Some(c.epoch),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_batch_counts_only_the_signers_of_its_blocks() {
        let keys: Vec<_> = (0..5)
            .map(|i| derived_key("batcher-core-test", i))
            .collect();
        let chain = store();
        // Genesis {0, 1, 2}; the block at 10 declares {0, 3, 4} and ends batch 1.
        let mut next = chain.state().clone();
        next.members.declare(10, vec![id(0), id(3), id(4)]);
        let b1 = BatchHeader {
            number: 1,
            previous: B256::ZERO,
            first_height: 1,
            last_height: 10,
            state_root: B256::repeat_byte(1),
            block_hashes_hash: B256::repeat_byte(2),
            next_attesters: crate::settlement::batch::attester_addresses(&[id(0), id(3), id(4)]),
        };
        let b2 = BatchHeader {
            number: 2,
            previous: b1.commitment(),
            first_height: 11,
            last_height: 20,
            state_root: B256::repeat_byte(3),
            block_hashes_hash: B256::repeat_byte(4),
            next_attesters: Vec::new(),
        };
        next.batches.sealed_number = 2;
        let mut batch = WriteBatch::default();
        for b in [&b1, &b2] {
            crate::chain::store::stage_sealed_batch(&mut batch, b, &keys[0]).unwrap();
        }
        stage_applied(&mut batch, &next).unwrap();
        chain.commit(batch, next, Durability::Buffered).unwrap();
        for b in [&b1, &b2] {
            let all: Vec<Attestation> = keys[1..].iter().map(|k| Attestation::sign(b, k)).collect();
            chain.add_attestations(b.number, &all).unwrap();
        }
        let c = core(0);
        // (batch, the nodes whose signatures count): everyone signed both.
        for (b, counted) in [(&b1, [0, 1, 2]), (&b2, [0, 3, 4])] {
            let (_, sigs) = c.batch_with_signatures(&chain, b.number).unwrap();
            let mut got: Vec<Address> = sigs
                .iter()
                .map(|s| crate::keys::recover_address(&b.commitment(), s).unwrap())
                .collect();
            got.sort();
            let mut want: Vec<Address> = counted.iter().map(|&i| keys[i].address()).collect();
            want.sort();
            assert_eq!(got, want, "batch {}", b.number);
            let attesters: BTreeSet<NodeId> = c.attesters(&chain, b).into_iter().collect();
            assert_eq!(
                attesters,
                counted.iter().map(|&i| id(i)).collect(),
                "batch {}",
                b.number
            );
        }
    }

    #[test]
    fn a_standby_reports_once_then_claims_after_level_times_n_rounds_of_l1_standing_still() {
        let chain = store();
        applied(&chain, id(1), 0, 1, 5);
        let mut c = core(1);
        let first = round(&mut c, &chain, 0, 2);
        assert_eq!(
            first[0],
            BatcherOut::Emit(Event::BatcherStandingBy {
                epoch: 1,
                holder: Some(id(1))
            })
        );
        // L1 at batch 2 while 5 are sealed: rounds 1..=3 missed; the third claims epoch 2.
        let mut claimed_at = None;
        for r in 1..=5u64 {
            let out = round(&mut c, &chain, r * ROUND_MS, 2);
            assert!(!out
                .iter()
                .any(|o| matches!(o, BatcherOut::Emit(Event::BatcherStandingBy { .. }))));
            if !claims(&out).is_empty() {
                assert_eq!(claims(&out), vec![2]);
                claimed_at = Some(r);
                break;
            }
        }
        assert_eq!(claimed_at, Some(u64::from(MISSED)));
        assert_eq!(c.published().missed_rounds, MISSED);
        // While the claim is being written nothing else is asked for.
        assert_eq!(c.next_deadline(), None);
    }

    #[test]
    fn l1_moving_or_nothing_waiting_keeps_a_standby_from_claiming() {
        let chain = store();
        applied(&chain, id(1), 0, 1, 5);
        let mut c = core(1);
        // L1 advances every round: never missed.
        for r in 0..10u64 {
            assert!(claims(&round(&mut c, &chain, r * ROUND_MS, r.min(5))).is_empty());
        }
        // L1 holds everything sealed: nothing waits, nothing missed.
        for r in 10..20u64 {
            assert!(claims(&round(&mut c, &chain, r * ROUND_MS, 5)).is_empty());
        }
        assert_eq!(c.published().missed_rounds, 0);
    }

    #[test]
    fn a_claim_that_was_not_written_is_retried_within_the_round() {
        let chain = store();
        applied(&chain, id(1), 0, 1, 5);
        let mut c = core(1);
        let mut now = 0;
        let mut out = Vec::new();
        while claims(&out).is_empty() {
            out = round(&mut c, &chain, now, 2);
            now += ROUND_MS;
        }
        now -= ROUND_MS;
        let mut after = Vec::new();
        c.on_input(
            now,
            &chain,
            BatcherInput::Claimed(Err("no leader known".into())),
            &mut after,
        );
        // Sooner than a whole round: the role must not stay vacant a round for a lost write.
        let retry_at = c.next_deadline().unwrap();
        assert!(retry_at > now && retry_at < now + ROUND_MS, "{retry_at}");
    }

    #[test]
    fn the_holder_reads_l1_first_and_is_superseded_by_a_higher_epoch_on_l1() {
        let chain = store();
        applied(&chain, id(0), 0, 1, 0);
        let mut c = core(0);
        let mut out = Vec::new();
        c.step(0, &chain, &mut out);
        assert_eq!(
            out,
            vec![
                BatcherOut::Emit(Event::BatcherActive { epoch: 1 }),
                BatcherOut::Do(BatcherEffect::ReadHead)
            ]
        );
        let mut read = Vec::new();
        c.on_input(1, &chain, BatcherInput::HeadRead(l1_at(0, 2)), &mut read);
        assert!(
            read.contains(&BatcherOut::Emit(Event::BatcherSuperseded {
                l1_epoch: 2,
                ours: 1
            })),
            "{read:?}"
        );
    }

    #[test]
    fn a_deposed_holder_stands_by_and_does_not_take_the_role_straight_back() {
        let chain = store();
        applied(&chain, id(0), 0, 1, 5);
        let mut c = core(0);
        let mut out = Vec::new();
        c.step(0, &chain, &mut out);
        c.on_input(1, &chain, BatcherInput::HeadRead(l1_at(2, 1)), &mut out);
        // Another node (level 1) took the role: this one was deposed from epoch 1...
        applied(&chain, id(2), 1, 2, 5);
        let first = round(&mut c, &chain, 2, 2);
        assert!(first.contains(&BatcherOut::Emit(Event::BatcherStandingBy {
            epoch: 2,
            holder: Some(id(2))
        })));
        // ...and, though its level is below the holder's, it waits a full count before it
        // claims: a node that lost its role had something wrong with it.
        for r in 1..u64::from(MISSED) {
            assert!(claims(&round(&mut c, &chain, r * ROUND_MS + 2, 2)).is_empty());
        }
    }

    #[test]
    fn a_returning_main_claims_back_from_a_higher_level_at_its_first_round() {
        let chain = store();
        applied(&chain, id(2), 1, 2, 5);
        let mut c = core(0);
        let out = round(&mut c, &chain, 0, 2);
        assert_eq!(claims(&out), vec![3], "{out:?}");
    }

    #[test]
    fn same_level_holders_are_reported() {
        let chain = store();
        applied(&chain, id(1), 1, 1, 0);
        let mut c = core(1);
        let out = round(&mut c, &chain, 0, 0);
        assert!(out.contains(&BatcherOut::Emit(Event::BatcherSameLevel {
            holder: id(1),
            level: 1
        })));
    }
}

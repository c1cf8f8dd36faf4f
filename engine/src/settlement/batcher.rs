//! The batcher's task on a consensus node. While the role Raft applied names this node, it
//! feeds [`policy::batcher`](crate::policy::batcher) with what this node sealed and attested,
//! and carries out what it decides: read L1's head, gather peers' attestations, submit the next
//! batch. Otherwise it stands by, feeding
//! [`policy::batcher_failover`](crate::policy::batcher_failover) one L1 reading per batch round
//! and putting its claim through Raft when that policy says so. The decisions are all in the
//! policies.

use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::B256;
use futures::stream::{FuturesUnordered, StreamExt};
use openraft::AsyncRuntime;

use crate::consensus::node::ConsensusNode;
use crate::consensus::raft::types::{ApplyOutcome, Command};
use crate::events::Event;
use crate::net::peer;
use crate::net::wire::{Request, Response};
use crate::policy::batcher::{
    Batcher, BatcherAction, BatcherConfig, BatcherReport, BatcherView, HeadSeen, SubmitOutcome,
};
use crate::policy::batcher_failover::{Failover, FailoverConfig, RoundView};
use crate::settlement::batch::{ordered_signatures, Attestation, BatchHeader};
use crate::settlement::l1::L1;
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

impl<RT: AsyncRuntime> ConsensusNode<RT> {
    /// Starts the batcher on this node's runtime; it ends with the node.
    pub fn start_batcher(self: &Arc<Self>, setup: BatcherSetup) {
        let node = self.clone();
        let _detached = RT::spawn(async move { node.run_batcher(setup).await });
    }

    /// Submits while the role Raft applied names this node; stands by otherwise, counting
    /// batch rounds and claiming the role when `policy::batcher_failover` says so.
    async fn run_batcher(self: Arc<Self>, setup: BatcherSetup) {
        let poll = Duration::from_millis(setup.poll_interval_ms.max(1));
        let mut failover = Failover::new(FailoverConfig {
            me: self.id(),
            level: setup.level,
            max_missed_rounds: setup.max_missed_rounds,
            round_ms: setup.round_ms,
        });
        let mut active: Option<Batcher> = None;
        // The role last seen while standing by, to report changes once.
        let mut standing_by: Option<BatcherRole> = None;
        self.update_batcher(|s| s.level = setup.level);
        loop {
            if self.is_stopped() {
                return;
            }
            let role = self.chain().state().batcher_role;
            if role.is_held_by(&self.id()) {
                standing_by = None;
                let policy = active.get_or_insert_with(|| self.new_batcher_policy(&setup));
                // A new policy starts at epoch 0, below any claimed epoch.
                if policy.epoch() != role.epoch {
                    policy.set_epoch(role.epoch);
                    self.emit(Event::BatcherActive { epoch: role.epoch });
                }
                if !self.step_active(policy, &setup).await {
                    RT::sleep(poll).await;
                }
                continue;
            }
            if let Some(was) = active.take() {
                failover.on_deposed(was.epoch());
            }
            if standing_by != Some(role) {
                standing_by = Some(role);
                let same_level = failover.same_level_conflict(&role);
                self.emit(Event::BatcherStandingBy {
                    epoch: role.epoch,
                    holder: role.holder,
                });
                if let (true, Some(holder)) = (same_level, role.holder) {
                    self.emit(Event::BatcherSameLevel {
                        holder,
                        level: setup.level,
                    });
                }
            }
            if failover.round_due(self.now_ms()) {
                self.standby_round(&mut failover, &setup).await;
            }
            RT::sleep(poll).await;
        }
    }

    fn new_batcher_policy(&self, setup: &BatcherSetup) -> Batcher {
        Batcher::new(BatcherConfig {
            quorum: self.attestation_quorum(),
            retry_ms_min: setup.retry_ms_min,
            retry_ms_max: setup.retry_ms_max,
            epoch: 0,
        })
    }

    /// One standby round: read L1's head, count, and claim the role if the count says so.
    async fn standby_round(&self, failover: &mut Failover, setup: &BatcherSetup) {
        let l1_batch = match setup.l1.head().await {
            Ok(h) => {
                self.update_batcher(|s| {
                    s.l1_batch = Some(h.batch_number);
                    s.l1_height = Some(h.height);
                    s.last_error = None;
                });
                Some(h.batch_number)
            }
            Err(reason) => {
                self.update_batcher(|s| s.last_error = Some(reason));
                None
            }
        };
        let view = RoundView {
            role: self.chain().state().batcher_role,
            l1_batch,
            sealed: self.chain().state().batches.sealed_number,
        };
        let claim = failover.on_round(self.now_ms(), view);
        self.update_batcher(|s| s.missed_rounds = failover.missed_rounds());
        let Some(claim) = claim else {
            return;
        };
        self.emit(Event::BatcherClaiming {
            epoch: claim.epoch,
            missed_rounds: claim.missed_rounds,
        });
        let claim = BatcherClaim {
            epoch: claim.epoch,
            node: self.id(),
            level: claim.level,
        };
        // The role as applied is the judge of the outcome: the next loop reads it.
        if let Err(reason) = self.claim_batcher(claim).await {
            tracing::warn!(epoch = claim.epoch, "batcher claim not written: {reason}");
            failover.on_claim_failed(self.now_ms());
        }
    }

    /// Puts `claim` through Raft: written here when this node leads, else sent to the leader.
    async fn claim_batcher(&self, claim: BatcherClaim) -> Result<ApplyOutcome, String> {
        let leader = self.raft().metrics().borrow().current_leader;
        match leader {
            Some(l) if l == self.id() => self.write_claim(claim).await,
            Some(l) => {
                let timeout = Duration::from_millis(self.claim_timeout_ms());
                let req = Request::ClaimBatcher(claim);
                peer::ask(&**self.transport(), l, &req, timeout, |r| match r {
                    Response::Claim(r) => Some(r),
                    _ => None,
                })
                .await
                .map_err(|e| e.to_string())?
            }
            None => Err("no leader known".into()),
        }
    }

    /// The leader's side of a claim: one Raft entry, applied as a compare-and-set.
    pub(crate) async fn write_claim(&self, claim: BatcherClaim) -> Result<ApplyOutcome, String> {
        let within = Duration::from_millis(self.claim_timeout_ms());
        match RT::timeout(
            within,
            self.raft().client_write(Command::ClaimBatcher(claim)),
        )
        .await
        {
            Ok(Ok(resp)) => Ok(resp.data),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("not committed within {} ms", within.as_millis())),
        }
    }

    fn claim_timeout_ms(&self) -> u64 {
        self.config().election_timeout_ms_max * 4
    }

    /// One step of the active batcher; false when the policy had nothing to do.
    async fn step_active(&self, policy: &mut Batcher, setup: &BatcherSetup) -> bool {
        let now = self.now_ms();
        let view = self.batcher_view(policy.next_for_l1());
        let Some(action) = policy.poll(now, view) else {
            return false;
        };
        match action {
            BatcherAction::ReadHead => {
                let head = setup.l1.head().await;
                let now = self.now_ms();
                let (seen, ours) = match head {
                    Ok(h) => {
                        self.update_batcher(|s| {
                            s.l1_batch = Some(h.batch_number);
                            s.l1_height = Some(h.height);
                            s.last_error = None;
                        });
                        (
                            Some(HeadSeen {
                                batch_number: h.batch_number,
                                commitment: h.commitment,
                                epoch: h.epoch,
                                in_flight: h.in_flight,
                            }),
                            self.sealed_commitment(h.batch_number),
                        )
                    }
                    Err(reason) => {
                        self.update_batcher(|s| s.last_error = Some(reason.clone()));
                        self.emit(Event::L1Unavailable { reason });
                        (None, None)
                    }
                };
                for r in policy.on_head(now, seen, ours) {
                    self.emit(report_event(r));
                }
                if let Some(h) = seen {
                    self.emit(Event::L1HeadRead {
                        batch_number: h.batch_number,
                        epoch: h.epoch,
                    });
                }
            }
            BatcherAction::Collect { number } => self.collect_attestations(number).await,
            BatcherAction::Submit { number, epoch } => {
                let (outcome, last_height) = match self.batch_with_signatures(number) {
                    Some((header, sigs)) => {
                        let last = header.last_height;
                        (setup.l1.submit(header, sigs, epoch).await, Some(last))
                    }
                    None => (
                        SubmitOutcome::Unknown {
                            reason: format!("batch {number} or its attestations are unreadable"),
                        },
                        None,
                    ),
                };
                self.update_batcher(|s| match &outcome {
                    SubmitOutcome::Committed => {
                        s.l1_batch = Some(number);
                        s.l1_height = last_height;
                        s.last_error = None;
                    }
                    SubmitOutcome::Refused { reason } | SubmitOutcome::Unknown { reason } => {
                        s.last_error = Some(reason.clone())
                    }
                });
                self.emit(match &outcome {
                    SubmitOutcome::Committed => Event::BatchCommitted { number, epoch },
                    SubmitOutcome::Refused { reason } => Event::BatchNotCommitted {
                        number,
                        reason: reason.clone(),
                        reverted: true,
                    },
                    SubmitOutcome::Unknown { reason } => Event::BatchNotCommitted {
                        number,
                        reason: reason.clone(),
                        reverted: false,
                    },
                });
                policy.on_submitted(self.now_ms(), outcome);
            }
        }
        true
    }

    /// The commitment of batch `number` as this node sealed it (zero for batch 0).
    fn sealed_commitment(&self, number: u64) -> Option<B256> {
        if number == 0 {
            return Some(B256::ZERO);
        }
        self.chain()
            .batch(number)
            .ok()
            .flatten()
            .map(|h| h.commitment())
    }

    fn batcher_view(&self, next: Option<u64>) -> BatcherView {
        let sealed = self.chain().state().batches.sealed_number;
        let attestations = match next {
            Some(n) if n <= sealed => self
                .batch_with_signatures(n)
                .map(|(_, s)| s.len())
                .unwrap_or(0),
            _ => 0,
        };
        BatcherView {
            sealed,
            attestations,
        }
    }

    /// Batch `number` and the valid signatures over it from distinct consensus nodes, in the
    /// contract's order.
    fn batch_with_signatures(&self, number: u64) -> Option<(BatchHeader, Vec<crate::ids::Sig65>)> {
        let header = self.chain().batch(number).ok().flatten()?;
        let peers = &self.config().peers;
        let atts: Vec<Attestation> = self
            .chain()
            .attestations(number)
            .ok()?
            .into_iter()
            .filter(|a| peers.contains(&a.signer))
            .collect();
        let sigs = ordered_signatures(&header, &atts);
        Some((header, sigs))
    }

    /// Asks the other consensus nodes for their attestations of batch `number`, all at once,
    /// and keeps the valid ones as soon as those held and those answered make a quorum: a peer
    /// that is down costs nothing once the others answered. Asked one after another, a dead
    /// peer cost every batch a whole `rpc_timeout_ms`, and a takeover's backlog drained at a
    /// batch per three L1 blocks (batcher-l1-partition, 750 ms a batch).
    async fn collect_attestations(&self, number: u64) {
        let Some(header) = self.chain().batch(number).ok().flatten() else {
            return;
        };
        let have: Vec<_> = self
            .chain()
            .attestations(number)
            .unwrap_or_default()
            .into_iter()
            .map(|a| a.signer)
            .collect();
        let timeout = Duration::from_millis(self.config().rpc_timeout_ms);
        let req = Request::GetAttestations { number };
        let mut asking: FuturesUnordered<_> = self
            .config()
            .peers
            .iter()
            .filter(|p| **p != self.id() && !have.contains(p))
            .map(|peer| {
                let req = &req;
                async move {
                    let answer = peer::ask(&**self.transport(), *peer, req, timeout, |r| match r {
                        Response::Attestations(atts) => Some(atts),
                        _ => None,
                    });
                    (*peer, answer.await)
                }
            })
            .collect();
        let quorum = self.attestation_quorum();
        let mut got: Vec<Attestation> = Vec::new();
        while let Some((peer, answer)) = asking.next().await {
            if let Ok(atts) = answer {
                got.extend(
                    atts.into_iter()
                        .filter(|a| a.signer == peer && a.verify(&header))
                        .take(1),
                );
            }
            if have.len() + got.len() >= quorum {
                break;
            }
        }
        if got.is_empty() {
            return;
        }
        if let Err(e) = self.chain().add_attestations(number, &got) {
            self.emit(Event::StorageFailed {
                reason: e.to_string(),
            });
        }
    }

    /// Attestations a batch needs: a majority of the consensus nodes.
    fn attestation_quorum(&self) -> usize {
        self.config().peers.len() / 2 + 1
    }

    /// This node's answer to `GetAttestations`: what it holds for batch `number`.
    pub(crate) fn answer_attestations(&self, number: u64) -> Response {
        Response::Attestations(self.chain().attestations(number).unwrap_or_default())
    }
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

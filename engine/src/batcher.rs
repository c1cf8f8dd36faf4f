//! The batcher's task on a consensus node: feeds [`policy::batcher`](crate::policy::batcher)
//! with what this node sealed and attested, and carries out what it decides: read L1's head,
//! gather peers' attestations, submit the next batch. The decisions are all in the policy.

use std::sync::Arc;
use std::time::Duration;

use alloy_primitives::B256;
use openraft::AsyncRuntime;

use crate::batch::{ordered_signatures, Attestation, BatchHeader};
use crate::chain_store::stage_attestations;
use crate::codec;
use crate::events::Event;
use crate::l1::L1;
use crate::node::ConsensusNode;
use crate::policy::batcher::{
    Batcher, BatcherAction, BatcherConfig, BatcherReport, BatcherView, HeadSeen, SubmitOutcome,
};
use crate::storage::{Durability, WriteBatch};
use crate::wire::{Request, Response};

/// How a node runs its batcher.
#[derive(Clone)]
pub struct BatcherSetup {
    pub l1: Arc<dyn L1>,
    /// The epoch it submits at.
    pub epoch: u64,
    /// How often it looks for work when idle.
    pub poll_interval_ms: u64,
    pub retry_ms_min: u64,
    pub retry_ms_max: u64,
}

impl<RT: AsyncRuntime> ConsensusNode<RT> {
    /// Starts the batcher on this node's runtime; it ends with the node.
    pub fn start_batcher(self: &Arc<Self>, setup: BatcherSetup) {
        let node = self.clone();
        let _detached = RT::spawn(async move { node.run_batcher(setup).await });
    }

    async fn run_batcher(self: Arc<Self>, setup: BatcherSetup) {
        let peers = self.config().peers.clone();
        let mut policy = Batcher::new(BatcherConfig {
            quorum: peers.len() / 2 + 1,
            retry_ms_min: setup.retry_ms_min,
            retry_ms_max: setup.retry_ms_max,
            epoch: setup.epoch,
        });
        let poll = Duration::from_millis(setup.poll_interval_ms.max(1));
        self.update_batcher(|s| s.epoch = setup.epoch);
        loop {
            if self.is_stopped() {
                return;
            }
            let now = self.now_ms();
            let view = self.batcher_view(policy.next_for_l1());
            let Some(action) = policy.poll(now, view) else {
                RT::sleep(poll).await;
                continue;
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
                                reason: format!(
                                    "batch {number} or its attestations are unreadable"
                                ),
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
                        SubmitOutcome::Refused { reason } | SubmitOutcome::Unknown { reason } => {
                            Event::BatchNotCommitted {
                                number,
                                reason: reason.clone(),
                            }
                        }
                    });
                    policy.on_submitted(self.now_ms(), outcome);
                }
            }
        }
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

    /// Asks every other consensus node for its attestations of batch `number` and keeps the
    /// valid ones.
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
        let Ok(req) = codec::encode(&Request::GetAttestations { number }) else {
            return;
        };
        let mut got = Vec::new();
        for peer in self.config().peers.iter().filter(|p| **p != self.id()) {
            if have.contains(peer) {
                continue;
            }
            let Ok(bytes) = self.transport().request(*peer, req.clone(), timeout).await else {
                continue;
            };
            if let Ok(Response::Attestations(atts)) = codec::decode::<Response>(&bytes) {
                got.extend(
                    atts.into_iter()
                        .filter(|a| a.signer == *peer && a.verify(&header)),
                );
            }
        }
        if got.is_empty() {
            return;
        }
        let mut batch = WriteBatch::default();
        if stage_attestations(&mut batch, number, &got).is_ok() {
            // Collected attestations can be collected again: no sync needed.
            let _ = self.chain().storage().write(batch, Durability::Buffered);
        }
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

//! What the engine reports, logged and counted: every [`Event`] becomes a log line at its
//! level and moves the Prometheus metrics it concerns ([`Metrics`]).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use canon_engine::events::{Event, EventSink};
use canon_engine::net::p2p::ConnectionFault;
use canon_engine::policy::log_budget::{LogBudget, Say};
use canon_engine::NodeId;

use crate::metrics::{now_ms, ConnectionFaultLabels, Metrics, RejectLabels};

/// Logs and counts what the engine reports.
pub struct EventLog {
    pub metrics: Arc<Metrics>,
    started: Instant,
    /// Refused connections by (address, fault): said once, then summarised.
    refusals: Mutex<LogBudget<(String, &'static str)>>,
}

impl EventLog {
    pub fn new(metrics: Arc<Metrics>) -> EventLog {
        EventLog {
            metrics,
            started: Instant::now(),
            refusals: Mutex::new(LogBudget::default()),
        }
    }

    fn refused(&self, peer: Option<NodeId>, remote: &str, fault: ConnectionFault, detail: &str) {
        // The address without its port: a flood comes from many ports of one host.
        let host = canon_engine::net::address_slot::host_of(remote).to_string();
        let now = self.started.elapsed().as_millis() as u64;
        let say =
            canon_engine::sync::lock(&self.refusals).note(now, (host.clone(), fault.as_str()));
        match say {
            Some(Say::First) => tracing::warn!(
                ?peer, %remote, ?fault,
                "p2p connection refused: {detail} (more from {host} for this are summarised every minute)"
            ),
            Some(Say::Summary { count, over_ms }) => tracing::warn!(
                %host, ?fault, refused = count, over_secs = over_ms / 1000,
                "p2p connections refused: {detail} (the latest)"
            ),
            None => {}
        }
    }
}

impl EventSink for EventLog {
    fn emit(&self, _node: &NodeId, event: Event) {
        let m = &self.metrics;
        match event {
            Event::Started {
                head_height,
                head_hash,
                applied_index,
                term,
                committed_index,
            } => {
                m.applied_height.set(head_height as i64);
                m.set_term(term);
                tracing::info!(
                    head_height, %head_hash, ?applied_index, term, ?committed_index,
                    "storage opened"
                );
            }
            Event::VoteSaved { term, .. } => m.set_term(term),
            Event::Scrubbed {
                corrupt_records,
                repair,
            } => match repair {
                canon_engine::policy::repair::Repair::Halt(why) => {
                    tracing::error!(corrupt_records, "the start-up scrub refuses this database: {why}");
                }
                canon_engine::policy::repair::Repair::Rejoin { abstain_until } => {
                    tracing::error!(
                        corrupt_records,
                        abstain_until_term = abstain_until.term,
                        abstain_until_index = abstain_until.index,
                        "the start-up scrub found damaged records: forgot every replicated record, \
                         catching up from peers; no election until it has applied that far"
                    );
                }
                canon_engine::policy::repair::Repair::Refetch { heights } => {
                    tracing::error!(
                        corrupt_records,
                        ?heights,
                        "the start-up scrub found rotten blocks below the head: fetching them \
                         again from peers with the rest of their batches, checked against the \
                         hash chain"
                    );
                }
                other => tracing::warn!(corrupt_records, "the start-up scrub repaired: {other:?}"),
            },
            Event::CorruptRead { error } => {
                tracing::error!("a read met a corrupt record, stopping to repair at the next start: {error}");
            }
            Event::Committed { .. } | Event::EntryApplied { .. } => {}
            Event::MembersDeclared { height, members } => {
                let members: Vec<String> = members.iter().map(|m| m.to_string()).collect();
                tracing::info!(
                    height,
                    members = %members.join(","),
                    "the chain declared new members: they certify the blocks after this one"
                );
            }
            Event::L1HeadRead {
                batch_number,
                epoch,
            } => tracing::debug!(batch_number, epoch, "L1 head read"),
            Event::L1Unavailable { reason } => {
                m.l1_errors.inc();
                tracing::warn!("L1 unavailable: {reason}");
            }
            Event::BatchCommitted { number, epoch } => {
                m.batches_committed.inc();
                m.batch_last_committed
                    .set(i64::try_from(number).unwrap_or(i64::MAX));
                tracing::info!(number, epoch, "batch committed to L1");
            }
            Event::BatchNotCommitted {
                number,
                reason,
                reverted,
            } => {
                m.batch_submit_failures.inc();
                if reverted {
                    m.batch_reverts.inc();
                }
                tracing::warn!(number, "batch not committed: {reason}");
            }
            Event::BatchCommittedElsewhere { number } => tracing::warn!(
                number,
                "batch was already on L1, committed by another batcher (is batcher_enabled set on two nodes?) or by an earlier transaction of ours"
            ),
            Event::BatcherSuperseded { l1_epoch, ours } => {
                m.batcher_superseded.inc();
                tracing::warn!(l1_epoch, ours, "another batcher took over at a higher epoch")
            }
            Event::BatcherClaimApplied {
                epoch,
                claimant,
                level,
                won,
                ..
            } => {
                if won {
                    m.batcher_epoch.set(i64::try_from(epoch).unwrap_or(i64::MAX));
                }
                tracing::info!(epoch, %claimant, level, won, "batcher claim applied");
            }
            Event::BatcherClaiming {
                epoch,
                missed_rounds,
            } => {
                m.batcher_claims.inc();
                tracing::warn!(epoch, missed_rounds, "claiming the batcher role");
            }
            Event::BatcherActive { epoch } => {
                m.batcher_active.set(1);
                tracing::info!(epoch, "this node is the batcher");
            }
            Event::BatcherStandingBy { epoch, holder } => {
                m.batcher_active.set(0);
                tracing::info!(epoch, holder = ?holder, "batcher standing by");
            }
            Event::BatcherSameLevel { holder, level } => tracing::error!(
                %holder,
                level,
                "another node holds the batcher role at this node's batcher_redundancy_level: give each batcher its own level"
            ),
            Event::BatcherStopped { reason } => tracing::error!("batcher stopped: {reason}"),
            Event::BatchSealed {
                number,
                first_height,
                last_height,
                commitment,
                ..
            } => {
                m.batch_last_sealed
                    .set(i64::try_from(number).unwrap_or(i64::MAX));
                m.batch_last_sealed_height
                    .set(i64::try_from(last_height).unwrap_or(i64::MAX));
                tracing::debug!(number, first_height, last_height, %commitment, "batch sealed and attested");
            }
            Event::BlockApplied {
                height,
                hash,
                timestamp_ms,
                transactions,
                ..
            } => {
                m.blocks_applied.inc();
                m.transactions_applied.inc_by(transactions as u64);
                m.applied_height.set(height as i64);
                let age_ms = now_ms().saturating_sub(timestamp_ms);
                m.apply_latency_seconds.observe(age_ms as f64 / 1000.0);
                tracing::debug!(height, %hash, transactions, "block applied");
            }
            Event::EntryRejected {
                index,
                term,
                height,
                reason,
            } => {
                m.entries_rejected.inc();
                tracing::info!(index, term, height, "committed entry rejected: {reason}");
            }
            Event::BecameLeader { term } => {
                m.set_term(term);
                tracing::info!(term, "became leader");
            }
            Event::LostLeadership { term } => tracing::info!(term, "lost leadership"),
            Event::Proposed {
                height,
                transactions,
            } => {
                m.blocks_proposed.inc();
                tracing::debug!(height, transactions, "proposed block");
            }
            Event::ProposalDropped { height, reason } => {
                m.proposals_dropped.inc();
                tracing::info!(height, "proposal dropped: {reason}");
            }
            Event::SteppedDown {
                millis_since_quorum_ack,
            } => tracing::warn!(millis_since_quorum_ack, "stepped down: no quorum heard"),
            Event::StorageFailed { reason } => {
                m.storage_failures.inc();
                tracing::error!("storage write failed: {reason}");
            }
            Event::RaftReopened { after } => tracing::warn!("raft reopened after: {after}"),
            Event::Signed {
                height,
                round,
                level,
                hash,
                transactions,
                ..
            } => {
                m.blocks_applied.inc();
                m.transactions_applied.inc_by(transactions as u64);
                m.applied_height.set(height as i64);
                tracing::debug!(height, round, level, %hash, transactions, "signed block");
            }
            Event::SteppedIn {
                round,
                level,
                reason,
            } => {
                m.redundancy_step_ins.inc();
                tracing::warn!(round, level, "stepped in as signer: {reason}")
            }
            Event::Reverted { by_level, round } => {
                m.redundancy_reverts.inc();
                tracing::warn!(by_level, round, "reverted to standby: a lower level signed")
            }
            Event::SameLevel { other, yields } => tracing::error!(
                %other, yields,
                "another member of the group runs at this redundancy level"
            ),
            Event::SignRefused { round, reason } => {
                m.signs_refused.inc();
                tracing::error!(round, "did not sign: {reason}")
            }
            Event::Equivocation {
                height,
                ours,
                theirs,
                our_level,
                their_level,
                source,
                kept,
            } => {
                m.equivocations.inc();
                tracing::error!(
                    height, %ours, %theirs, our_level, their_level, %source, kept = kept.name(),
                    "equivocation: the identity signed two blocks at one height"
                );
            }
            Event::RolledBack {
                from_height,
                to_height,
            } => {
                m.rollbacks.inc();
                m.applied_height.set(to_height as i64);
                tracing::warn!(
                    from_height,
                    to_height,
                    "left the losing branch of an equivocation"
                );
            }
            Event::Replayed {
                height,
                hash,
                certified_by,
                ..
            } => {
                m.blocks_applied.inc();
                m.applied_height.set(height as i64);
                m.certified_height.set(height as i64);
                tracing::debug!(height, %hash, certified_by, "block replayed");
            }
            Event::Certified { through } => {
                m.certified_height.set(i64::try_from(through).unwrap_or(i64::MAX));
                tracing::trace!(through, "blocks certified");
            }
            Event::SourceRejected {
                source,
                height,
                kind,
                reason,
            } => {
                m.blocks_rejected
                    .get_or_create(&RejectLabels { reason: kind })
                    .inc();
                tracing::warn!(%source, height, "source dropped: served a bad block: {reason}");
            }
            Event::ConnectionRefused {
                peer,
                remote,
                fault,
                detail,
            } => {
                m.p2p_connections_refused
                    .get_or_create(&ConnectionFaultLabels {
                        fault: fault.as_str().to_string(),
                    })
                    .inc();
                self.refused(peer, &remote, fault, &detail);
            }
            Event::SnapshotBuilt { index, height } => {
                tracing::debug!(?index, height, "raft snapshot built; the log before it may be purged")
            }
            Event::SnapshotInstalled {
                index,
                height,
                hash,
                missing_blocks,
                ..
            } => {
                m.applied_height.set(height as i64);
                tracing::info!(
                    ?index,
                    height,
                    %hash,
                    missing_blocks,
                    "installed the leader's snapshot; downloading the blocks below it"
                );
            }
            Event::BlockBackfilled { height, hash, .. } => {
                tracing::debug!(height, %hash, "backfilled block")
            }
            Event::BackfillDone {
                from_height,
                to_height,
                batches_sealed,
            } => tracing::info!(
                from_height,
                to_height,
                batches_sealed,
                "backfill done: every block below the head is stored"
            ),
            Event::BackfillRefused {
                source,
                kind,
                reason,
            } => {
                tracing::warn!(%source, kind, "backfill refused a peer's answer: {reason}")
            }
            Event::BackfillRecutFailed {
                from_height,
                to_height,
                reason,
            } => tracing::error!(
                from_height,
                to_height,
                "backfill cannot close its gap: {reason}"
            ),
        }
    }
}

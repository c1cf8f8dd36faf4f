//! What the batcher does next: read L1's head, gather a majority of attestations for the next
//! batch, submit it, and go on in strict order. L1 trouble (down, slow, a refusal, a revert, a
//! transaction that never lands) is weather: the batcher backs off and re-reads the head before
//! it sends again, so it never skips a batch and never sends one L1 already holds. If L1's chain
//! of commitments differs from the batches this node sealed, it stops and says so: nothing it
//! could send would be right.

use alloy_primitives::B256;

use super::Millis;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatcherConfig {
    /// The first retry waits this long after a failure; each next failure doubles it...
    pub retry_ms_min: u64,
    /// ...up to this.
    pub retry_ms_max: u64,
    /// The epoch the batcher submits at (the contract refuses one below the highest seen).
    pub epoch: u64,
}

/// What the node sees when the batcher is polled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatcherView {
    /// The highest batch this node sealed (0: none).
    pub sealed: u64,
    /// Valid attestations from distinct consensus nodes this node holds for the next batch L1
    /// needs (0 when it is not sealed here yet).
    pub attestations: usize,
    /// Attestations that batch needs: a majority of the attester set L1 holds when it
    /// arrives (the set its blocks' certificates name; see `settlement::batch`).
    pub quorum: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatcherAction {
    /// Read the settlement contract's head; answer with [`Batcher::on_head`].
    ReadHead,
    /// Ask the peers for their attestations of batch `number`.
    Collect { number: u64 },
    /// Send batch `number` with its attestations at `epoch`; answer with
    /// [`Batcher::on_submitted`].
    Submit { number: u64, epoch: u64 },
}

/// How a submission ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubmitOutcome {
    /// The receipt says it is on L1.
    Committed,
    /// The contract refused it before it was mined, or it was mined and reverted: L1 holds
    /// something else at that number, or an epoch above ours. `reason` names it.
    Refused { reason: String },
    /// L1 unreachable, or no receipt in time: the transaction may or may not have landed.
    Unknown { reason: String },
}

/// What the batcher reports (logs, metrics, the simulator's trace).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatcherReport {
    /// L1 holds batch `number` with a commitment other than the one this node sealed.
    Diverged { number: u64, l1: B256, ours: B256 },
    /// The batch this node was sending is on L1 already, committed by another batcher (two
    /// are configured) or by its own earlier transaction.
    CommittedElsewhere { number: u64 },
    /// L1 is at a higher epoch than ours: another batcher took over.
    Superseded { l1_epoch: u64, ours: u64 },
}

/// L1's head as the batcher reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadSeen {
    pub batch_number: u64,
    pub commitment: B256,
    pub epoch: u64,
    /// This batcher's transactions still waiting to be mined (from before a restart).
    pub in_flight: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Phase {
    /// The head must be (re-)read before anything is sent.
    Unknown,
    /// Read: L1 needs batch `next`. `unverified`: L1's last batch, not sealed here yet, whose
    /// commitment is still to be compared once it is.
    Known { next: u64, unverified: Option<u64> },
    /// An action is being carried out; its answer moves the phase on.
    Busy { was_submit: Option<u64> },
    /// L1's chain is not ours: nothing more is sent.
    Stopped,
    /// L1 is at an epoch above ours: another batcher took over, and anything sent would
    /// revert. Nothing is sent until the role is claimed again at a higher epoch.
    Superseded,
}

pub struct Batcher {
    cfg: BatcherConfig,
    phase: Phase,
    /// Failures in a row (sets the backoff).
    failures: u32,
    not_before_ms: Millis,
    /// Peers are asked for attestations again no sooner than this (they may not have sealed
    /// the batch yet); a batch whose attestations arrived is sent at once.
    collect_not_before_ms: Millis,
    /// The number being sent when the head was last re-read after an unclear or refused
    /// submission: if L1 then holds it, someone else committed it.
    chasing: Option<u64>,
}

impl Batcher {
    pub fn new(cfg: BatcherConfig) -> Batcher {
        Batcher {
            cfg,
            phase: Phase::Unknown,
            failures: 0,
            not_before_ms: 0,
            collect_not_before_ms: 0,
            chasing: None,
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.phase == Phase::Stopped
    }

    /// The next batch L1 needs, once known.
    pub fn next_for_l1(&self) -> Option<u64> {
        match self.phase {
            Phase::Known { next, .. } => Some(next),
            _ => None,
        }
    }

    /// A new epoch to submit at (the batcher role was claimed again): L1 is read afresh.
    pub fn set_epoch(&mut self, epoch: u64) {
        if epoch != self.cfg.epoch && self.phase == Phase::Superseded {
            self.phase = Phase::Unknown;
        }
        self.cfg.epoch = epoch;
    }

    pub fn epoch(&self) -> u64 {
        self.cfg.epoch
    }

    /// What to do now, if anything.
    pub fn poll(&mut self, now: Millis, view: BatcherView) -> Option<BatcherAction> {
        if now < self.not_before_ms {
            return None;
        }
        let action = match self.phase {
            Phase::Stopped | Phase::Superseded | Phase::Busy { .. } => return None,
            Phase::Unknown => BatcherAction::ReadHead,
            // Caught up with the batch L1 ended on: read the head again to compare.
            Phase::Known {
                unverified: Some(n),
                ..
            } if view.sealed >= n => BatcherAction::ReadHead,
            Phase::Known {
                unverified: Some(_),
                ..
            } => return None,
            Phase::Known { next, .. } if next > view.sealed => return None,
            Phase::Known { next, .. } if view.attestations < view.quorum => {
                // Collecting is not busy: the next poll submits as soon as enough arrived.
                if now < self.collect_not_before_ms {
                    return None;
                }
                self.collect_not_before_ms = now + self.cfg.retry_ms_min;
                return Some(BatcherAction::Collect { number: next });
            }
            Phase::Known { next, .. } => BatcherAction::Submit {
                number: next,
                epoch: self.cfg.epoch,
            },
        };
        self.phase = Phase::Busy {
            was_submit: match action {
                BatcherAction::Submit { number, .. } => Some(number),
                _ => None,
            },
        };
        Some(action)
    }

    /// L1's head was read (`None`: unreachable). `ours`: this node's commitment of batch
    /// `head.batch_number`, if it sealed that batch (the zero hash for batch 0).
    pub fn on_head(
        &mut self,
        now: Millis,
        head: Option<HeadSeen>,
        ours: Option<B256>,
    ) -> Vec<BatcherReport> {
        let Some(head) = head else {
            self.fail(now);
            return Vec::new();
        };
        if head.in_flight > 0 {
            // A transaction of ours (sent before a restart, or before its receipt was given
            // up) may still land: what it carries is only known once it is mined.
            self.phase = Phase::Unknown;
            self.not_before_ms = now + self.cfg.retry_ms_min;
            return Vec::new();
        }
        let mut reports = Vec::new();
        if let Some(n) = self.chasing.take() {
            if head.batch_number >= n {
                reports.push(BatcherReport::CommittedElsewhere { number: n });
            }
        }
        if head.epoch > self.cfg.epoch {
            reports.push(BatcherReport::Superseded {
                l1_epoch: head.epoch,
                ours: self.cfg.epoch,
            });
            self.phase = Phase::Superseded;
            return reports;
        }
        match ours {
            Some(ours) if ours != head.commitment => {
                reports.push(BatcherReport::Diverged {
                    number: head.batch_number,
                    l1: head.commitment,
                    ours,
                });
                self.phase = Phase::Stopped;
                return reports;
            }
            _ => {}
        }
        self.failures = 0;
        self.phase = Phase::Known {
            next: head.batch_number + 1,
            unverified: ours.is_none().then_some(head.batch_number),
        };
        reports
    }

    /// The submission of the batch last handed out ended with `outcome`.
    pub fn on_submitted(&mut self, now: Millis, outcome: SubmitOutcome) {
        let Phase::Busy {
            was_submit: Some(number),
        } = self.phase
        else {
            return;
        };
        match outcome {
            SubmitOutcome::Committed => {
                self.failures = 0;
                self.phase = Phase::Known {
                    next: number + 1,
                    unverified: None,
                };
            }
            SubmitOutcome::Refused { .. } | SubmitOutcome::Unknown { .. } => {
                // Whatever happened, L1 is the judge: re-read its head before sending again.
                self.chasing = Some(number);
                self.phase = Phase::Unknown;
                self.fail(now);
            }
        }
    }

    /// A read of the head failed, or a submission did not go through: wait, doubling.
    fn fail(&mut self, now: Millis) {
        if !matches!(self.phase, Phase::Stopped | Phase::Superseded) {
            self.phase = Phase::Unknown;
        }
        let shift = self.failures.min(16);
        let wait = self
            .cfg
            .retry_ms_min
            .saturating_mul(1u64 << shift)
            .min(self.cfg.retry_ms_max);
        self.failures = self.failures.saturating_add(1);
        self.not_before_ms = now + wait;
    }

    /// When the batcher wants to be polled again, at the latest.
    pub fn not_before_ms(&self) -> Millis {
        self.not_before_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batcher() -> Batcher {
        Batcher::new(BatcherConfig {
            retry_ms_min: 100,
            retry_ms_max: 1_000,
            epoch: 1,
        })
    }

    fn view(sealed: u64, attestations: usize) -> BatcherView {
        BatcherView {
            sealed,
            attestations,
            quorum: 2,
        }
    }

    fn head(n: u64, c: u8) -> Option<HeadSeen> {
        Some(HeadSeen {
            batch_number: n,
            commitment: B256::repeat_byte(c),
            epoch: 1,
            in_flight: 0,
        })
    }

    #[test]
    fn a_transaction_still_in_flight_is_waited_for_not_sent_again() {
        let mut b = batcher();
        b.poll(0, view(5, 3));
        let pending = HeadSeen {
            in_flight: 1,
            ..head(4, 4).unwrap()
        };
        assert!(b
            .on_head(0, Some(pending), Some(B256::repeat_byte(4)))
            .is_empty());
        assert_eq!(b.poll(50, view(5, 3)), None);
        assert_eq!(b.poll(100, view(5, 3)), Some(BatcherAction::ReadHead));
        // It landed: batch 5 is on L1, and 6 is next.
        b.on_head(100, head(5, 5), Some(B256::repeat_byte(5)));
        assert_eq!(
            b.poll(100, view(6, 3)),
            Some(BatcherAction::Submit {
                number: 6,
                epoch: 1
            })
        );
    }

    #[test]
    fn commits_in_strict_order_once_a_majority_attested() {
        let mut b = batcher();
        assert_eq!(b.poll(0, view(0, 0)), Some(BatcherAction::ReadHead));
        assert_eq!(b.poll(0, view(0, 0)), None, "busy until the head is read");
        assert!(b.on_head(0, head(0, 0), Some(B256::ZERO)).is_empty());
        // (sealed, attestations) -> action, with batch 1 next.
        let table = [
            (view(0, 0), None),
            (view(1, 1), Some(BatcherAction::Collect { number: 1 })),
        ];
        for (v, want) in table {
            assert_eq!(b.poll(10, v), want, "{v:?}");
        }
        assert_eq!(b.poll(50, view(1, 1)), None, "asking again waits its retry");
        assert_eq!(
            b.poll(110, view(1, 1)),
            Some(BatcherAction::Collect { number: 1 })
        );
        // The attestations arrived: sent at once, not a retry later.
        assert_eq!(
            b.poll(111, view(1, 2)),
            Some(BatcherAction::Submit {
                number: 1,
                epoch: 1
            })
        );
        b.on_submitted(120, SubmitOutcome::Committed);
        assert_eq!(b.next_for_l1(), Some(2));
        // Batch 1 named a set of five: batch 2 needs three of them, whatever batch 1 needed.
        let of_five = |attestations| BatcherView {
            sealed: 3,
            attestations,
            quorum: 3,
        };
        assert_eq!(
            b.poll(300, of_five(2)),
            Some(BatcherAction::Collect { number: 2 })
        );
        assert_eq!(
            b.poll(301, of_five(3)),
            Some(BatcherAction::Submit {
                number: 2,
                epoch: 1
            })
        );
    }

    #[test]
    fn trouble_backs_off_and_rereads_the_head_before_sending_again() {
        let mut b = batcher();
        b.poll(0, view(0, 0));
        b.on_head(0, None, None); // L1 down
        assert_eq!(b.poll(99, view(5, 3)), None);
        assert_eq!(b.poll(100, view(5, 3)), Some(BatcherAction::ReadHead));
        b.on_head(100, None, None);
        assert_eq!(b.poll(299, view(5, 3)), None, "doubled");
        assert_eq!(b.poll(300, view(5, 3)), Some(BatcherAction::ReadHead));
        b.on_head(300, head(2, 7), Some(B256::repeat_byte(7)));
        assert_eq!(
            b.poll(300, view(5, 3)),
            Some(BatcherAction::Submit {
                number: 3,
                epoch: 1
            })
        );
        // The receipt never came: it may have landed. The head decides.
        b.on_submitted(
            300,
            SubmitOutcome::Unknown {
                reason: "timeout".into(),
            },
        );
        assert_eq!(b.poll(300, view(5, 3)), None);
        assert_eq!(b.poll(400, view(5, 3)), Some(BatcherAction::ReadHead));
        // It had landed: reported, and batch 4 is next; never 3 again.
        let r = b.on_head(400, head(3, 8), Some(B256::repeat_byte(8)));
        assert_eq!(r, vec![BatcherReport::CommittedElsewhere { number: 3 }]);
        assert_eq!(
            b.poll(400, view(5, 3)),
            Some(BatcherAction::Submit {
                number: 4,
                epoch: 1
            })
        );
        // L1 stays down: the wait doubles from 100 ms and stops at 1 s.
        b.on_submitted(
            400,
            SubmitOutcome::Refused {
                reason: "Reverted".into(),
            },
        );
        let mut waits = Vec::new();
        let mut now = 400;
        for _ in 0..8 {
            let next = b.not_before_ms();
            waits.push(next - now);
            now = next;
            assert_eq!(b.poll(now, view(5, 3)), Some(BatcherAction::ReadHead));
            b.on_head(now, None, None);
        }
        assert_eq!(waits, [100, 200, 400, 800, 1_000, 1_000, 1_000, 1_000]);
    }

    #[test]
    fn a_different_l1_chain_stops_the_batcher() {
        let mut b = batcher();
        b.poll(0, view(4, 3));
        let r = b.on_head(0, head(2, 1), Some(B256::repeat_byte(2)));
        assert!(matches!(r[0], BatcherReport::Diverged { number: 2, .. }));
        assert!(b.is_stopped());
        assert_eq!(b.poll(10_000, view(9, 3)), None);
    }

    #[test]
    fn a_batcher_behind_l1_compares_once_it_sealed_l1s_last_batch() {
        let mut b = batcher();
        b.poll(0, view(1, 3));
        // L1 is at 3; this node sealed only 1 (a restart, or another batcher ran ahead).
        assert!(b.on_head(0, head(3, 9), None).is_empty());
        assert_eq!(
            b.poll(10, view(2, 3)),
            None,
            "nothing to send or compare yet"
        );
        assert_eq!(b.poll(10, view(3, 3)), Some(BatcherAction::ReadHead));
        b.on_head(10, head(3, 9), Some(B256::repeat_byte(9)));
        assert_eq!(b.poll(10, view(3, 3)), None, "batch 4 is not sealed");
        assert_eq!(
            b.poll(10, view(4, 2)),
            Some(BatcherAction::Submit {
                number: 4,
                epoch: 1
            })
        );
    }

    #[test]
    fn a_higher_epoch_on_l1_is_reported_and_nothing_more_is_sent() {
        let mut b = batcher();
        b.poll(0, view(0, 0));
        let r = b.on_head(
            0,
            Some(HeadSeen {
                batch_number: 0,
                commitment: B256::ZERO,
                epoch: 5,
                in_flight: 0,
            }),
            Some(B256::ZERO),
        );
        assert_eq!(
            r,
            vec![BatcherReport::Superseded {
                l1_epoch: 5,
                ours: 1
            }]
        );
        // Anything it sent now would revert: it sends nothing until it holds a newer epoch.
        assert_eq!(b.poll(10_000, view(3, 3)), None);
        b.set_epoch(6);
        assert_eq!(b.poll(10_000, view(3, 3)), Some(BatcherAction::ReadHead));
    }
}

//! When the leader proposes a block, and what a proposal that lost means.
//!
//! Every `block_time` a node that believes it leads first confirms its leadership with a quorum
//! (which also waits until everything committed before is applied here, so the block builds on
//! the canonical head), then builds on the head it applied. One proposal at a time: the next
//! waits until this one is canonized or given up. A proposal that lost (another leader's block
//! took its height, leadership ended, or it was not canonized in time) is reported and dropped;
//! the node follows the canonical chain, and the transactions stay in the mempool for a later
//! block.

use super::election::{RaftView, Role};
use crate::ledger::TxError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequencerConfig {
    /// How long confirming leadership may take before this tick is skipped.
    pub confirm_within_ms: u64,
    /// How long a proposal may take to be canonized before it is given up.
    pub commit_within_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SequencerAction {
    /// Confirm leadership with a quorum (openraft's `ensure_linearizable`), within `within_ms`.
    ConfirmLeadership { within_ms: u64 },
    /// Build, sign and propose the next block in `term`; canonized or not within `within_ms`.
    Propose { term: u64, within_ms: u64 },
    /// The proposal at `height` lost: report it; the node follows the canonical chain.
    Dropped { height: u64, reason: String },
}

/// What became of a proposal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProposalOutcome {
    /// Canonized (or a control entry): nothing to do.
    Canonized,
    /// Committed, but rejected on apply (it no longer extended the head).
    Rejected(String),
    /// openraft refused it (leadership changed) or failed.
    Failed(String),
    /// Not canonized within the deadline.
    TimedOut,
}

pub struct Sequencer {
    cfg: SequencerConfig,
    in_flight: Option<u64>,
}

impl Sequencer {
    pub fn new(cfg: SequencerConfig) -> Sequencer {
        Sequencer {
            cfg,
            in_flight: None,
        }
    }

    /// A `block_time` passed.
    pub fn on_tick(&mut self, view: &RaftView) -> Option<SequencerAction> {
        (view.role == Role::Leader && view.failed.is_none() && self.in_flight.is_none()).then_some(
            SequencerAction::ConfirmLeadership {
                within_ms: self.cfg.confirm_within_ms,
            },
        )
    }

    /// Confirming leadership came back `confirmed` (or timed out: `false`); `view` is Raft now.
    pub fn on_confirmed(&mut self, confirmed: bool, view: &RaftView) -> Option<SequencerAction> {
        (confirmed && view.role == Role::Leader && self.in_flight.is_none()).then_some(
            SequencerAction::Propose {
                term: view.term,
                within_ms: self.cfg.commit_within_ms,
            },
        )
    }

    /// The block at `height` was proposed.
    pub fn on_proposed(&mut self, height: u64) {
        self.in_flight = Some(height);
    }

    pub fn on_outcome(&mut self, height: u64, outcome: ProposalOutcome) -> Option<SequencerAction> {
        self.in_flight = None;
        let reason = match outcome {
            ProposalOutcome::Canonized => return None,
            ProposalOutcome::Rejected(why) | ProposalOutcome::Failed(why) => why,
            ProposalOutcome::TimedOut => {
                format!("not canonized within {} ms", self.cfg.commit_within_ms)
            }
        };
        Some(SequencerAction::Dropped { height, reason })
    }

    /// Whether a transaction the builder left out stays in the mempool: a nonce gap may close
    /// later; anything else never becomes valid.
    pub fn keeps_excluded(err: &TxError) -> bool {
        matches!(err, TxError::NonceGap { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SequencerConfig {
        SequencerConfig {
            confirm_within_ms: 300,
            commit_within_ms: 1_200,
        }
    }

    fn view(role: Role, term: u64) -> RaftView {
        RaftView {
            role,
            term,
            voted_for: None,
            leader: None,
            millis_since_quorum_ack: None,
            failed: None,
        }
    }

    #[test]
    fn only_a_confirmed_leader_proposes() {
        // (role at the tick, confirmed, role after) -> proposes in term
        let table = [
            (Role::Leader, true, Role::Leader, Some(5)),
            (Role::Leader, false, Role::Leader, None),
            // Lost leadership while confirming (a lost quorum): no block.
            (Role::Leader, true, Role::Follower, None),
            (Role::Follower, true, Role::Follower, None),
            (Role::Candidate, true, Role::Leader, None),
        ];
        for (before, confirmed, after, expect) in table {
            let mut s = Sequencer::new(cfg());
            let Some(SequencerAction::ConfirmLeadership { within_ms }) =
                s.on_tick(&view(before, 5))
            else {
                assert_eq!(expect, None, "{before:?}");
                continue;
            };
            assert_eq!(within_ms, 300);
            let got = s.on_confirmed(confirmed, &view(after, 5));
            let term = match got {
                Some(SequencerAction::Propose { term, within_ms }) => {
                    assert_eq!(within_ms, 1_200);
                    Some(term)
                }
                None => None,
                other => panic!("{other:?}"),
            };
            assert_eq!(term, expect, "{before:?} {confirmed} {after:?}");
        }
        // A failed Raft never proposes.
        let mut failed = view(Role::Leader, 5);
        failed.failed = Some("disk".into());
        assert_eq!(Sequencer::new(cfg()).on_tick(&failed), None);
    }

    #[test]
    fn one_proposal_at_a_time() {
        let mut s = Sequencer::new(cfg());
        let v = view(Role::Leader, 2);
        assert!(s.on_tick(&v).is_some());
        assert!(s.on_confirmed(true, &v).is_some());
        s.on_proposed(10);
        assert_eq!(s.on_tick(&v), None);
        assert_eq!(s.on_confirmed(true, &v), None);
        assert_eq!(s.on_outcome(10, ProposalOutcome::Canonized), None);
        assert!(s.on_tick(&v).is_some());
    }

    #[test]
    fn a_leader_whose_proposal_lost_reports_it_and_goes_on() {
        // (outcome) -> reported reason
        let table = [
            (ProposalOutcome::Canonized, None),
            (
                ProposalOutcome::Rejected("block 7 does not extend the head".into()),
                Some("block 7 does not extend the head".to_string()),
            ),
            (
                ProposalOutcome::Failed("has to forward request to leader".into()),
                Some("has to forward request to leader".to_string()),
            ),
            (
                ProposalOutcome::TimedOut,
                Some("not canonized within 1200 ms".to_string()),
            ),
        ];
        for (outcome, reason) in table {
            let mut s = Sequencer::new(cfg());
            let v = view(Role::Leader, 3);
            s.on_tick(&v);
            s.on_confirmed(true, &v);
            s.on_proposed(7);
            let got = s.on_outcome(7, outcome.clone());
            let expect = reason.map(|reason| SequencerAction::Dropped { height: 7, reason });
            assert_eq!(got, expect, "{outcome:?}");
            // Either way the next tick may propose again.
            assert!(s.on_tick(&v).is_some());
        }
    }

    #[test]
    fn which_excluded_transactions_stay() {
        assert!(Sequencer::keeps_excluded(&TxError::NonceGap {
            expected: 1,
            got: 3
        }));
        assert!(!Sequencer::keeps_excluded(&TxError::BadSignature));
    }
}

//! When the leader proposes a block, what it builds on, and what a proposal that lost means.
//!
//! Proposals are pipelined: every `block_time` a leader proposes the next block without waiting
//! for the previous one to be canonized, building on the state its own proposals in flight
//! lead to (the *tip*), up to `max_in_flight` at once. Waiting for each commit made the block
//! period `block_time` plus a quorum round trip plus the commit.
//!
//! The first block of a run builds on the applied head and needs leadership confirmed by a
//! quorum first (which also waits until everything committed before is applied here, so it
//! builds on the canonical head); so does one after a proposal lost or after leadership went
//! unproven for `confirm_within_ms`. A canonized proposal of the run proves leadership as well
//! as a confirmation does.
//!
//! A proposal that lost (another leader's block took its height, leadership ended, or it was
//! not canonized in time) is reported and dropped; every later proposal of the run builds on
//! it, so the run is broken: nothing new is proposed until all of it is resolved, and the next
//! run starts from the canonical head. Their transactions stay in the mempool for a later block.

use std::collections::VecDeque;

use super::election::{RaftView, Role};
use crate::app::Rejection;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequencerConfig {
    /// How long confirming leadership may take before this tick is skipped; also how long a
    /// confirmation or a canonized proposal counts as proof of leadership.
    pub confirm_within_ms: u64,
    /// How long a proposal may take to be canonized before it is given up.
    pub commit_within_ms: u64,
    /// How many proposals may wait for canonization at once (1: no pipelining).
    pub max_in_flight: usize,
}

/// What the next block extends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildOn {
    /// The head this node applied (the canonical head, leadership being confirmed).
    Applied,
    /// The block this node proposed last, still in flight.
    Tip,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SequencerAction {
    /// Confirm leadership with a quorum (openraft's `ensure_linearizable`), within `within_ms`.
    ConfirmLeadership { within_ms: u64 },
    /// Build, sign and propose the next block in `term` on `on`; canonized or not within
    /// `within_ms`.
    Propose {
        term: u64,
        on: BuildOn,
        within_ms: u64,
    },
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
    /// Heights proposed and not yet resolved, oldest first.
    in_flight: VecDeque<u64>,
    /// The term of the current run of proposals.
    term: Option<u64>,
    /// A proposal of the run lost; the rest of it is doomed and nothing new goes out until it
    /// drains.
    broken: bool,
    /// When leadership in `term` was last proven (a confirmation or a canonized proposal).
    proven_at_ms: Option<u64>,
}

impl Sequencer {
    pub fn new(cfg: SequencerConfig) -> Sequencer {
        Sequencer {
            cfg,
            in_flight: VecDeque::new(),
            term: None,
            broken: false,
            proven_at_ms: None,
        }
    }

    /// Proposals waiting for canonization.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    fn propose(&self, term: u64, on: BuildOn) -> SequencerAction {
        SequencerAction::Propose {
            term,
            on,
            within_ms: self.cfg.commit_within_ms,
        }
    }

    /// A `block_time` passed at `now_ms`.
    pub fn on_tick(&mut self, now_ms: u64, view: &RaftView) -> Option<SequencerAction> {
        if view.role != Role::Leader || view.failed.is_some() {
            return None;
        }
        if self.broken || self.in_flight.len() >= self.cfg.max_in_flight.max(1) {
            return None;
        }
        if self.term != Some(view.term) {
            // Proposals of an older term are doomed or already decided: let them resolve.
            return self
                .in_flight
                .is_empty()
                .then_some(SequencerAction::ConfirmLeadership {
                    within_ms: self.cfg.confirm_within_ms,
                });
        }
        if !self.in_flight.is_empty() {
            return Some(self.propose(view.term, BuildOn::Tip));
        }
        let proven = self
            .proven_at_ms
            .is_some_and(|at| now_ms.saturating_sub(at) < self.cfg.confirm_within_ms);
        Some(if proven {
            self.propose(view.term, BuildOn::Applied)
        } else {
            SequencerAction::ConfirmLeadership {
                within_ms: self.cfg.confirm_within_ms,
            }
        })
    }

    /// Confirming leadership came back `confirmed` (or timed out: `false`) at `now_ms`; `view`
    /// is Raft now.
    pub fn on_confirmed(
        &mut self,
        confirmed: bool,
        now_ms: u64,
        view: &RaftView,
    ) -> Option<SequencerAction> {
        if !(confirmed && view.role == Role::Leader && self.in_flight.is_empty()) {
            return None;
        }
        self.term = Some(view.term);
        self.broken = false;
        self.proven_at_ms = Some(now_ms);
        Some(self.propose(view.term, BuildOn::Applied))
    }

    /// The block at `height` was proposed.
    pub fn on_proposed(&mut self, height: u64) {
        self.in_flight.push_back(height);
    }

    /// What became of the proposal at `height`, learnt at `now_ms`.
    pub fn on_outcome(
        &mut self,
        height: u64,
        outcome: ProposalOutcome,
        now_ms: u64,
    ) -> Option<SequencerAction> {
        self.in_flight.retain(|h| *h != height);
        let reason = match outcome {
            ProposalOutcome::Canonized => {
                if !self.broken {
                    self.proven_at_ms = Some(now_ms);
                }
                None
            }
            ProposalOutcome::Rejected(why) | ProposalOutcome::Failed(why) => Some(why),
            ProposalOutcome::TimedOut => Some(format!(
                "not canonized within {} ms",
                self.cfg.commit_within_ms
            )),
        };
        if reason.is_some() {
            self.broken = true;
            self.proven_at_ms = None;
        }
        if self.in_flight.is_empty() {
            self.broken = false;
        }
        reason.map(|reason| SequencerAction::Dropped { height, reason })
    }

    /// Whether a transaction the builder left out stays in the mempool: a gap in its lane may
    /// close later; anything else never becomes valid.
    pub fn keeps_excluded(err: &Rejection) -> bool {
        err.rule == crate::app::RULE_SEQUENCE_AHEAD
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::ledger::TxError;

    fn cfg(max_in_flight: usize) -> SequencerConfig {
        SequencerConfig {
            confirm_within_ms: 300,
            commit_within_ms: 1_200,
            max_in_flight,
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
            voters: Vec::new(),
            abstain_until: None,
        }
    }

    fn propose(term: u64, on: BuildOn) -> Option<SequencerAction> {
        Some(SequencerAction::Propose {
            term,
            on,
            within_ms: 1_200,
        })
    }

    const CONFIRM: Option<SequencerAction> =
        Some(SequencerAction::ConfirmLeadership { within_ms: 300 });

    /// A sequencer that confirmed leadership in `term` at 0 ms and proposed `heights`.
    fn running(max_in_flight: usize, term: u64, heights: &[u64]) -> Sequencer {
        let mut s = Sequencer::new(cfg(max_in_flight));
        let v = view(Role::Leader, term);
        assert_eq!(s.on_tick(0, &v), CONFIRM);
        assert_eq!(s.on_confirmed(true, 0, &v), propose(term, BuildOn::Applied));
        for h in heights {
            s.on_proposed(*h);
        }
        s
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
            let mut s = Sequencer::new(cfg(4));
            let Some(SequencerAction::ConfirmLeadership { within_ms }) =
                s.on_tick(0, &view(before, 5))
            else {
                assert_eq!(expect, None, "{before:?}");
                continue;
            };
            assert_eq!(within_ms, 300);
            let got = s.on_confirmed(confirmed, 10, &view(after, 5));
            let term = match got {
                Some(SequencerAction::Propose {
                    term,
                    on,
                    within_ms,
                }) => {
                    assert_eq!((on, within_ms), (BuildOn::Applied, 1_200));
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
        assert_eq!(Sequencer::new(cfg(4)).on_tick(0, &failed), None);
    }

    #[test]
    fn proposals_pipeline_on_the_tip_up_to_the_limit() {
        let v = view(Role::Leader, 2);
        // (limit, in flight) -> the next tick's action
        let table = [
            (1, vec![10], None),
            (2, vec![10], propose(2, BuildOn::Tip)),
            (2, vec![10, 11], None),
            (4, vec![10, 11, 12], propose(2, BuildOn::Tip)),
            (4, vec![10, 11, 12, 13], None),
            // A limit of 0 means 1: never more than one at a time, never none.
            (0, vec![], propose(2, BuildOn::Applied)),
            (0, vec![10], None),
        ];
        for (limit, heights, expect) in table {
            let mut s = running(limit, 2, &heights);
            assert_eq!(s.on_tick(50, &v), expect, "limit {limit}, {heights:?}");
        }
    }

    #[test]
    fn a_canonized_proposal_proves_leadership_for_a_while() {
        let v = view(Role::Leader, 2);
        // (canonized at, next tick at) -> the next tick's action
        let table = [
            (100, 150, propose(2, BuildOn::Applied)),
            (100, 399, propose(2, BuildOn::Applied)),
            (100, 400, CONFIRM),
            (100, 1_000, CONFIRM),
        ];
        for (canonized_at, tick_at, expect) in table {
            let mut s = running(4, 2, &[10]);
            assert_eq!(
                s.on_outcome(10, ProposalOutcome::Canonized, canonized_at),
                None
            );
            assert_eq!(s.on_tick(tick_at, &v), expect, "{canonized_at} {tick_at}");
        }
        // Confirmation itself counts from when it came back.
        let mut s = running(4, 2, &[]);
        assert_eq!(s.on_tick(299, &v), propose(2, BuildOn::Applied));
        assert_eq!(s.on_tick(300, &v), CONFIRM);
    }

    #[test]
    fn a_lost_proposal_breaks_the_run_until_it_drains() {
        let v = view(Role::Leader, 3);
        for lost in [
            ProposalOutcome::Rejected("block 10 does not extend the head".into()),
            ProposalOutcome::Failed("has to forward request to leader".into()),
            ProposalOutcome::TimedOut,
        ] {
            let mut s = running(4, 3, &[10, 11, 12]);
            assert!(s.on_outcome(10, lost.clone(), 100).is_some(), "{lost:?}");
            // 11 and 12 build on 10: nothing new while they are out, whatever they become.
            assert_eq!(s.on_tick(150, &v), None);
            assert!(s.on_outcome(11, lost.clone(), 160).is_some());
            assert_eq!(s.on_tick(200, &v), None);
            // One still canonized (10 timed out here but was canonized after all) proves
            // nothing: the run starts again from a confirmation.
            assert_eq!(s.on_outcome(12, ProposalOutcome::Canonized, 210), None);
            assert_eq!(s.in_flight(), 0);
            assert_eq!(s.on_tick(250, &v), CONFIRM, "{lost:?}");
            assert_eq!(s.on_confirmed(true, 260, &v), propose(3, BuildOn::Applied));
        }
    }

    #[test]
    fn a_new_term_waits_for_the_old_run_then_confirms() {
        let mut s = running(4, 3, &[10, 11]);
        let v4 = view(Role::Leader, 4);
        // Leader again in term 4 with term-3 proposals out: no block on their tip.
        assert_eq!(s.on_tick(50, &v4), None);
        assert_eq!(s.on_confirmed(true, 60, &v4), None);
        assert_eq!(s.on_outcome(10, ProposalOutcome::Canonized, 70), None);
        assert_eq!(s.on_outcome(11, ProposalOutcome::Canonized, 80), None);
        assert_eq!(s.on_tick(100, &v4), CONFIRM);
        assert_eq!(s.on_confirmed(true, 110, &v4), propose(4, BuildOn::Applied));
        // A follower proposes nothing, with or without proposals out.
        let mut s = running(4, 3, &[10]);
        assert_eq!(s.on_tick(50, &view(Role::Follower, 3)), None);
    }

    #[test]
    fn a_lost_proposal_is_reported_with_its_reason() {
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
            let mut s = running(4, 3, &[7]);
            let got = s.on_outcome(7, outcome.clone(), 100);
            let expect = reason.map(|reason| SequencerAction::Dropped { height: 7, reason });
            assert_eq!(got, expect, "{outcome:?}");
            // Either way the next tick may propose again (after confirming, if it lost).
            assert!(s.on_tick(150, &view(Role::Leader, 3)).is_some());
        }
    }

    #[test]
    fn which_excluded_transactions_stay() {
        assert!(Sequencer::keeps_excluded(&Rejection::from(
            TxError::NonceGap {
                expected: 1,
                got: 3
            }
        )));
        assert!(!Sequencer::keeps_excluded(&TxError::BadSignature.into()));
    }
}

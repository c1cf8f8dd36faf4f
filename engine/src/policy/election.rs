//! Who campaigns, and when a leader gives up.
//!
//! openraft 0.9 has neither pre-vote nor check-quorum, so elections are decided here and
//! openraft only runs the vote it is told to (`enable_elect = false`):
//!
//! - **Pre-vote.** When its timer fires, a node first asks every voter whether it *would* vote
//!   for it (its log is at least as up to date, and the voter hears no live leader). Only with
//!   a quorum of such answers, itself included, does it start a real election. A node that
//!   could not win (partitioned either way, restarted with a stale log) therefore never raises
//!   any term, its own included, and cannot depose a working leader with a higher one.
//! - **A fresh random timeout every round**, drawn at full resolution: two nodes that split a
//!   vote do not split the next one in lockstep (openraft draws one timeout per node for life).
//! - **Check-quorum.** A leader that has not heard a quorum for [`ElectionConfig::check_quorum_ms`]
//!   steps down, within 2 x `election_timeout_ms_max` of losing it.
//! - A Raft instance stopped by a fatal error (a failed disk write) is reopened after one
//!   election timeout, so a node comes back once its disk does.

use std::collections::BTreeSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::contact::ContactBook;
use super::Millis;
use crate::ids::NodeId;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElectionConfig {
    pub id: NodeId,
    /// Every voter, this node included.
    pub voters: Vec<NodeId>,
    pub election_timeout_ms_min: u64,
    pub election_timeout_ms_max: u64,
    pub heartbeat_interval_ms: u64,
}

impl ElectionConfig {
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// A leader that has not heard a quorum for this long steps down: one election timeout
    /// plus a heartbeat. openraft refreshes the age of its last quorum ack only on its own
    /// tick (1.5 heartbeats) and the driver looks every heartbeat, so the leader is gone
    /// within 2 x `election_timeout_ms_max` of losing its quorum.
    pub fn check_quorum_ms(&self) -> u64 {
        self.election_timeout_ms_max + self.heartbeat_interval_ms
    }
}

/// A log position, ordered as Raft compares logs: by the term of the last entry, then index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LogPos {
    pub term: u64,
    pub index: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Leader,
    Candidate,
    Follower,
    /// Learner or shut down: takes no part in elections.
    Other,
}

/// What the elector reads of Raft at a moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftView {
    pub role: Role,
    pub term: u64,
    /// Whom this node's vote in `term` is for.
    pub voted_for: Option<NodeId>,
    pub leader: Option<NodeId>,
    /// As a leader: how long since a quorum last acknowledged it.
    pub millis_since_quorum_ack: Option<u64>,
    /// Raft stopped on this fatal error.
    pub failed: Option<String>,
    /// The voters of the membership in effect (the last in the log), sorted; empty before
    /// Raft is initialized, when the configured `voters` stand.
    pub voters: Vec<NodeId>,
    /// A repair made this node forget log entries it may have acknowledged, and it has not
    /// yet applied this far: it never asks for pre-votes or campaigns, and it grants a
    /// pre-vote only to a candidate whose log reaches this position (`policy::repair`).
    pub abstain_until: Option<LogPos>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ElectionAction {
    /// Ask every other voter whether it would vote for this node (sending its last log
    /// position); feed each answer to [`Elector::on_pre_vote_answer`] with `round`.
    RequestPreVotes {
        round: u64,
    },
    /// A quorum would vote for this node: start a real election for the next term.
    Campaign {
        round: u64,
    },
    /// Leading without a quorum's acknowledgement for `silent_ms`: leave leadership.
    StepDown {
        silent_ms: u64,
    },
    /// Raft stopped on a fatal error an election timeout ago: start it again from storage.
    Reopen {
        after: String,
    },
    /// Fewer than a quorum of peers heard lately: ping them, so contact stays current.
    Probe,
    BecameLeader {
        term: u64,
    },
    LostLeadership {
        term: u64,
    },
}

struct Round {
    id: u64,
    grants: BTreeSet<NodeId>,
    campaigned: bool,
}

pub struct Elector {
    cfg: ElectionConfig,
    rng: ChaCha8Rng,
    contact: ContactBook,
    /// The latest `now` seen; an earlier one is read as this (time never runs backwards here).
    now: Millis,
    /// The election timer runs from here...
    timer_from: Millis,
    /// ...for this long, drawn afresh every round.
    timeout_ms: u64,
    last_vote: Option<(u64, Option<NodeId>)>,
    /// The term this node leads and since when.
    leading: Option<(u64, Millis)>,
    /// Step-down was asked for this term; not asked again.
    stepped_down: Option<u64>,
    failed_since: Option<Millis>,
    round: Option<Round>,
    rounds: u64,
}

impl Elector {
    /// `seed` comes from the runtime's seeded RNG: the only randomness the elector uses.
    pub fn new(cfg: ElectionConfig, seed: u64) -> Elector {
        let mut e = Elector {
            rng: ChaCha8Rng::seed_from_u64(seed),
            contact: ContactBook::default(),
            now: 0,
            timer_from: 0,
            timeout_ms: cfg.election_timeout_ms_max,
            last_vote: None,
            leading: None,
            stepped_down: None,
            failed_since: None,
            round: None,
            rounds: 0,
            cfg,
        };
        e.restart_timer(0);
        e
    }

    fn clamp(&mut self, now: Millis) -> Millis {
        self.now = self.now.max(now);
        self.now
    }

    fn restart_timer(&mut self, now: Millis) {
        self.timer_from = now;
        self.timeout_ms = self
            .rng
            .gen_range(self.cfg.election_timeout_ms_min..=self.cfg.election_timeout_ms_max);
    }

    /// A request from, or a response by, `peer` arrived.
    pub fn heard(&mut self, now: Millis, peer: NodeId) {
        let now = self.clamp(now);
        self.contact.heard(now, peer);
    }

    /// `peer` sent AppendEntries.
    pub fn appended_by(&mut self, now: Millis, peer: NodeId) {
        let now = self.clamp(now);
        self.contact.appended_by(now, peer);
    }

    pub fn peers_heard_within(&self, now: Millis, window_ms: u64) -> usize {
        self.contact.heard_within(now.max(self.now), window_ms)
    }

    /// Whether a leader other than `except` sent AppendEntries within `window_ms`.
    fn leader_alive(&self, now: Millis, view: &RaftView, except: &NodeId, window_ms: u64) -> bool {
        view.leader
            .filter(|l| *l != self.cfg.id && l != except)
            .is_some_and(|l| self.contact.leader_alive(now, &l, window_ms))
    }

    /// When the election timer fires, given what is known of the leader.
    fn deadline(&self, view: &RaftView) -> Millis {
        let leader_heard = view
            .leader
            .filter(|l| *l != self.cfg.id)
            .and_then(|l| self.contact.last_append(&l))
            .unwrap_or(0);
        self.timer_from.max(leader_heard) + self.timeout_ms
    }

    /// When the driver should call [`Elector::tick`] next: the election deadline, and at
    /// least every heartbeat (to watch the leader's quorum and Raft's health).
    pub fn next_tick(&self, view: &RaftView) -> Millis {
        let soon = self.now + self.cfg.heartbeat_interval_ms;
        match view.role {
            Role::Follower | Role::Candidate => self.deadline(view).clamp(self.now + 1, soon),
            _ => soon,
        }
    }

    /// The voters are Raft's membership in effect once there is one: a node added or removed
    /// by a membership change counts (or stops counting) for quorums from then on.
    fn follow_membership(&mut self, view: &RaftView) {
        if !view.voters.is_empty() && view.voters != self.cfg.voters {
            self.cfg.voters.clone_from(&view.voters);
        }
    }

    pub fn tick(&mut self, now: Millis, view: &RaftView) -> Vec<ElectionAction> {
        let now = self.clamp(now);
        self.follow_membership(view);
        let mut out = Vec::new();
        self.report_leadership(now, view, &mut out);
        if let Some(why) = &view.failed {
            let since = *self.failed_since.get_or_insert(now);
            if now - since >= self.cfg.election_timeout_ms_max {
                self.failed_since = None;
                out.push(ElectionAction::Reopen { after: why.clone() });
            }
            return out;
        }
        self.failed_since = None;
        // Granting a vote to another node restarts the timer, as in Raft; our own candidacy
        // does not.
        let vote = (view.term, view.voted_for);
        if self.last_vote != Some(vote) {
            if view.voted_for.is_some_and(|v| v != self.cfg.id) {
                self.restart_timer(now);
            }
            self.last_vote = Some(vote);
        }
        if self.cfg.voters.len() > 1
            && self.contact.heard_within(now, self.cfg.check_quorum_ms()) + 1 < self.cfg.quorum()
        {
            out.push(ElectionAction::Probe);
        }
        match view.role {
            Role::Leader => {
                self.round = None;
                // Once leadership ends, a full timeout passes before this node asks for votes.
                self.restart_timer(now);
                self.check_quorum(now, view, &mut out);
            }
            Role::Follower | Role::Candidate => {
                if now >= self.deadline(view) {
                    if view.abstain_until.is_some() {
                        self.restart_timer(now);
                    } else {
                        self.start_round(now, &mut out);
                    }
                }
            }
            Role::Other => {}
        }
        out
    }

    fn report_leadership(&mut self, now: Millis, view: &RaftView, out: &mut Vec<ElectionAction>) {
        let leading = (view.role == Role::Leader).then_some(view.term);
        if self.leading.map(|(t, _)| t) == leading {
            return;
        }
        if let Some((term, _)) = self.leading {
            out.push(ElectionAction::LostLeadership { term });
        }
        if let Some(term) = leading {
            out.push(ElectionAction::BecameLeader { term });
        }
        self.leading = leading.map(|t| (t, now));
    }

    fn check_quorum(&mut self, now: Millis, view: &RaftView, out: &mut Vec<ElectionAction>) {
        let Some((term, since)) = self.leading else {
            return;
        };
        if self.cfg.voters.len() < 2 || self.stepped_down == Some(term) {
            return;
        }
        let silent_ms = view
            .millis_since_quorum_ack
            .unwrap_or_else(|| now.saturating_sub(since));
        if silent_ms >= self.cfg.check_quorum_ms() {
            self.stepped_down = Some(term);
            out.push(ElectionAction::StepDown { silent_ms });
        }
    }

    fn start_round(&mut self, now: Millis, out: &mut Vec<ElectionAction>) {
        self.rounds += 1;
        let id = self.rounds;
        self.restart_timer(now);
        let mut round = Round {
            id,
            grants: BTreeSet::from([self.cfg.id]),
            campaigned: false,
        };
        if round.grants.len() >= self.cfg.quorum() {
            round.campaigned = true;
            out.push(ElectionAction::Campaign { round: id });
        } else {
            out.push(ElectionAction::RequestPreVotes { round: id });
        }
        self.round = Some(round);
    }

    /// A voter's answer to this node's pre-vote `round`. Returns `Campaign` once a quorum
    /// (this node included) would vote for it, unless it leads or hears a leader by then.
    pub fn on_pre_vote_answer(
        &mut self,
        now: Millis,
        round: u64,
        from: NodeId,
        granted: bool,
        view: &RaftView,
    ) -> Option<ElectionAction> {
        let now = self.clamp(now);
        self.follow_membership(view);
        self.contact.heard(now, from);
        let quorum = self.cfg.quorum();
        let alive = self.leader_alive(now, view, &self.cfg.id, self.cfg.election_timeout_ms_min);
        let r = self.round.as_mut().filter(|r| r.id == round)?;
        if !granted
            || r.campaigned
            || !self.cfg.voters.contains(&from)
            || view.abstain_until.is_some()
        {
            return None;
        }
        r.grants.insert(from);
        if r.grants.len() < quorum || view.role == Role::Leader || alive {
            return None;
        }
        r.campaigned = true;
        Some(ElectionAction::Campaign { round })
    }

    /// Whether this node would vote for `from`, whose last log entry is at `candidate_last`;
    /// this node's is at `own_last`. No state changes but contact: a pre-vote is a question.
    pub fn answer_pre_vote(
        &mut self,
        now: Millis,
        from: NodeId,
        candidate_last: Option<LogPos>,
        own_last: Option<LogPos>,
        view: &RaftView,
    ) -> bool {
        let now = self.clamp(now);
        self.follow_membership(view);
        self.contact.heard(now, from);
        if from == self.cfg.id || !self.cfg.voters.contains(&from) {
            return false;
        }
        // A working leader is kept: neither it nor a follower that hears it helps unseat it.
        if view.role == Role::Leader
            || self.leader_alive(now, view, &from, self.cfg.election_timeout_ms_min)
        {
            return false;
        }
        // An abstaining node compares with the log it forgot as well as the one it holds.
        let own_last = own_last.max(view.abstain_until);
        candidate_last >= own_last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::derived_key;

    fn ids() -> Vec<NodeId> {
        (0..3)
            .map(|i| derived_key("elector", i).node_id())
            .collect()
    }

    fn cfg(me: usize) -> ElectionConfig {
        ElectionConfig {
            id: ids()[me],
            voters: ids(),
            election_timeout_ms_min: 150,
            election_timeout_ms_max: 300,
            heartbeat_interval_ms: 50,
        }
    }

    fn view(role: Role, term: u64, leader: Option<usize>) -> RaftView {
        RaftView {
            role,
            term,
            voted_for: leader.map(|l| ids()[l]),
            leader: leader.map(|l| ids()[l]),
            millis_since_quorum_ack: None,
            failed: None,
            voters: Vec::new(),
            abstain_until: None,
        }
    }

    fn follower(term: u64, leader: Option<usize>) -> RaftView {
        view(Role::Follower, term, leader)
    }

    fn pos(term: u64, index: u64) -> Option<LogPos> {
        Some(LogPos { term, index })
    }

    fn rounds_started(actions: &[ElectionAction]) -> usize {
        actions
            .iter()
            .filter(|a| matches!(a, ElectionAction::RequestPreVotes { .. }))
            .count()
    }

    /// Drives `e` every `step` ms from `from` to `to`; the leader (if any) heartbeats every
    /// `heartbeat` ms (0: never). Returns every action but `Probe` with its time.
    fn run(
        e: &mut Elector,
        v: &RaftView,
        (from, to, step): (u64, u64, u64),
        heartbeat: u64,
    ) -> Vec<(Millis, ElectionAction)> {
        let mut out = Vec::new();
        let mut t = from;
        while t <= to {
            if heartbeat > 0 && t % heartbeat == 0 {
                if let Some(l) = v.leader {
                    e.appended_by(t, l);
                }
            }
            let acts = e.tick(t, v).into_iter();
            out.extend(acts.filter(|a| *a != ElectionAction::Probe).map(|a| (t, a)));
            t += step;
        }
        out
    }

    #[test]
    fn quorums_follow_the_membership_in_effect() {
        // Configured (genesis) voters 0, 1, 2; the membership in effect then makes them 0, 1
        // and a newcomer, 2 removed. Node 0 asks for pre-votes after its timeout.
        let newcomer = derived_key("elector", 9).node_id();
        let mut voters = vec![ids()[0], ids()[1], newcomer];
        voters.sort();
        let v = RaftView {
            voters,
            ..follower(3, None)
        };
        // (who answers 'granted', whether node 0 then campaigns): one other member's grant
        // makes a majority of three with its own; a removed voter's never counts.
        let table = [(ids()[2], false), (newcomer, true), (ids()[1], true)];
        for (from, campaigns) in table {
            let mut e = Elector::new(cfg(0), 1);
            let acts = run(&mut e, &v, (0, 1_000, 10), 0);
            // The round still open: the last one asked for.
            let round = acts
                .iter()
                .rev()
                .find_map(|(_, a)| match a {
                    ElectionAction::RequestPreVotes { round } => Some(*round),
                    _ => None,
                })
                .expect("a pre-vote round");
            let got = e.on_pre_vote_answer(1_000, round, from, true, &v);
            assert_eq!(got.is_some(), campaigns, "granted by {from}");
        }
        // And it answers the newcomer's question, not the removed voter's.
        let mut e = Elector::new(cfg(0), 1);
        let _ = run(&mut e, &v, (0, 10, 10), 0);
        assert!(e.answer_pre_vote(5_000, newcomer, pos(3, 9), pos(3, 9), &v));
        assert!(!e.answer_pre_vote(5_000, ids()[2], pos(3, 9), pos(3, 9), &v));
    }

    #[test]
    fn a_follower_hearing_its_leader_never_asks_for_votes() {
        let mut e = Elector::new(cfg(1), 1);
        let acts = run(&mut e, &follower(3, Some(0)), (0, 10_000, 10), 50);
        assert!(acts.is_empty(), "{acts:?}");
    }

    #[test]
    fn an_abstaining_follower_never_asks_for_votes_and_resumes_once_repaired() {
        let mut e = Elector::new(cfg(1), 1);
        let abstaining = RaftView {
            abstain_until: Some(LogPos { term: 3, index: 50 }),
            ..follower(3, None)
        };
        let acts = run(&mut e, &abstaining, (0, 10_000, 10), 0);
        assert!(acts.is_empty(), "{acts:?}");
        // No hot loop: the next tick is at most a timeout away, never the next millisecond.
        assert_eq!(e.next_tick(&abstaining), 10_000 + 50);
        let acts = run(&mut e, &follower(3, None), (10_010, 11_000, 10), 0);
        assert!(
            acts.iter()
                .any(|(_, a)| matches!(a, ElectionAction::RequestPreVotes { .. })),
            "{acts:?}"
        );
    }

    #[test]
    fn a_silent_leader_is_replaced_after_one_randomized_timeout() {
        // (seed, last heartbeat at) -> the first pre-vote round starts within [min, max] of it.
        for seed in 0..50 {
            let mut e = Elector::new(cfg(1), seed);
            let v = follower(3, Some(0));
            run(&mut e, &v, (0, 1_000, 10), 50);
            let acts = run(&mut e, &v, (1_001, 3_000, 1), 0);
            let (first, _) = acts
                .iter()
                .find(|(_, a)| matches!(a, ElectionAction::RequestPreVotes { .. }))
                .expect("a round starts");
            let since_heartbeat = first - 1_000;
            assert!(
                (150..=301).contains(&since_heartbeat),
                "seed {seed}: {since_heartbeat} ms"
            );
        }
    }

    #[test]
    fn split_votes_do_not_repeat_in_lockstep() {
        // Two candidates that keep failing: each round's timeout is a fresh draw, so the gaps
        // between their rounds differ and drift apart instead of colliding every time.
        let mut a = Elector::new(cfg(0), 7);
        let mut b = Elector::new(cfg(1), 8);
        let v = view(Role::Candidate, 5, None);
        let starts = |e: &mut Elector| -> Vec<u64> {
            run(e, &v, (0, 20_000, 1), 0)
                .into_iter()
                .filter(|(_, a)| matches!(a, ElectionAction::RequestPreVotes { .. }))
                .map(|(t, _)| t)
                .collect()
        };
        let (sa, sb) = (starts(&mut a), starts(&mut b));
        let gaps: BTreeSet<u64> = sa.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.len() > 20, "timeouts are redrawn: {gaps:?}");
        assert!(gaps.iter().all(|g| (150..=300).contains(g)), "{gaps:?}");
        let together = sa
            .iter()
            .filter(|t| sb.iter().any(|u| t.abs_diff(*u) < 5))
            .count();
        assert!(
            together * 10 < sa.len(),
            "{together} of {} rounds collide",
            sa.len()
        );
    }

    #[test]
    fn campaigns_only_with_a_quorum_of_pre_votes_and_only_once() {
        let ids = ids();
        let v = view(Role::Follower, 4, None);
        // (answers in order: (voter, granted), campaign expected after which answer)
        type Case = (&'static [(usize, bool)], Option<usize>);
        let table: &[Case] = &[
            (&[(0, true)], Some(0)),
            (&[(0, false), (2, false)], None),
            (&[(0, false), (2, true)], Some(1)),
            (&[(2, true), (0, true)], Some(0)),
            // Not a voter, or our own id: not counted.
            (&[(1, true)], None),
        ];
        for (answers, expect) in table {
            let mut e = Elector::new(cfg(1), 3);
            let acts = e.tick(400, &v);
            let Some(ElectionAction::RequestPreVotes { round }) = acts.last().cloned() else {
                panic!("{acts:?}")
            };
            let mut campaigned = None;
            for (k, (from, granted)) in answers.iter().enumerate() {
                if let Some(a) = e.on_pre_vote_answer(401, round, ids[*from], *granted, &v) {
                    assert_eq!(a, ElectionAction::Campaign { round });
                    assert!(campaigned.is_none(), "campaigned twice");
                    campaigned = Some(k);
                }
            }
            assert_eq!(campaigned, *expect, "{answers:?}");
        }
    }

    #[test]
    fn answers_from_an_old_round_are_ignored() {
        let ids = ids();
        let mut e = Elector::new(cfg(1), 3);
        let v = view(Role::Candidate, 4, None);
        let acts = run(&mut e, &v, (0, 2_000, 1), 0);
        assert!(rounds_started(&acts.iter().map(|(_, a)| a.clone()).collect::<Vec<_>>()) >= 2);
        assert_eq!(e.on_pre_vote_answer(2_001, 1, ids[0], true, &v), None);
    }

    #[test]
    fn pre_vote_answers() {
        let ids = ids();
        // (own log, candidate log, our view, leader last heard at, now) -> granted
        let table = [
            // Logs: the candidate must be at least as up to date.
            (pos(5, 10), pos(5, 10), follower(5, None), None, 1_000, true),
            (pos(5, 10), pos(5, 9), follower(5, None), None, 1_000, false),
            (
                pos(5, 10),
                pos(4, 99),
                follower(5, None),
                None,
                1_000,
                false,
            ),
            (pos(5, 10), pos(6, 1), follower(5, None), None, 1_000, true),
            (None, None, follower(0, None), None, 1_000, true),
            (pos(1, 1), None, follower(1, None), None, 1_000, false),
            // A node repairing its log grants only to a candidate whose log reaches the bound
            // (the term of its vote, the highest index it held), whatever it holds now.
            (
                None,
                pos(5, 99),
                RaftView {
                    abstain_until: pos(5, 100),
                    ..follower(5, None)
                },
                None,
                1_000,
                false,
            ),
            (
                None,
                pos(5, 100),
                RaftView {
                    abstain_until: pos(5, 100),
                    ..follower(5, None)
                },
                None,
                1_000,
                true,
            ),
            (
                pos(3, 10),
                pos(6, 1),
                RaftView {
                    abstain_until: pos(5, 100),
                    ..follower(6, None)
                },
                None,
                1_000,
                true,
            ),
            // A leader heard within the minimum timeout is kept.
            (
                pos(5, 10),
                pos(5, 10),
                follower(5, Some(2)),
                Some(900),
                1_000,
                false,
            ),
            (
                pos(5, 10),
                pos(5, 10),
                follower(5, Some(2)),
                Some(800),
                1_000,
                true,
            ),
            // A leader never helps unseat itself.
            (
                pos(5, 10),
                pos(5, 10),
                view(Role::Leader, 5, Some(1)),
                None,
                1_000,
                false,
            ),
            // The candidate was our leader: its own silence does not count against it.
            (
                pos(5, 10),
                pos(5, 10),
                follower(5, Some(0)),
                Some(990),
                1_000,
                true,
            ),
        ];
        for (own, cand, v, leader_heard, now, expect) in table {
            let mut e = Elector::new(cfg(1), 9);
            if let (Some(at), Some(l)) = (leader_heard, v.leader) {
                e.appended_by(at, l);
            }
            let got = e.answer_pre_vote(now, ids[0], cand, own, &v);
            assert_eq!(
                got, expect,
                "own {own:?} cand {cand:?} view {v:?} heard {leader_heard:?}"
            );
        }
        // Strangers and ourselves are never granted.
        let mut e = Elector::new(cfg(1), 9);
        let stranger = derived_key("elector", 9).node_id();
        assert!(!e.answer_pre_vote(0, stranger, None, None, &follower(0, None)));
        assert!(!e.answer_pre_vote(0, ids[1], None, None, &follower(0, None)));
    }

    #[test]
    fn a_node_that_cannot_win_never_campaigns() {
        // Partitioned (no answers), one-way partitioned (requests out, nothing back), or
        // restarted with a stale log (every answer is no): it asks and asks, and never
        // campaigns, so it never raises a term.
        let ids = ids();
        for answers in [None, Some(false)] {
            let mut e = Elector::new(cfg(2), 11);
            let v = follower(3, None);
            let mut rounds = 0;
            for t in 0..30_000 {
                for a in e.tick(t, &v) {
                    match a {
                        ElectionAction::RequestPreVotes { round } => {
                            rounds += 1;
                            if let Some(granted) = answers {
                                for p in [0, 1] {
                                    let got = e.on_pre_vote_answer(t, round, ids[p], granted, &v);
                                    assert_eq!(got, None);
                                }
                            }
                        }
                        ElectionAction::Campaign { .. } => panic!("campaigned at {t}"),
                        _ => {}
                    }
                }
            }
            assert!(rounds > 50, "{rounds}");
        }
    }

    #[test]
    fn a_node_that_hears_its_leader_but_cannot_answer_does_not_campaign() {
        // Receive-only: AppendEntries keep arriving, the leader never hears back. This node
        // stays quiet; the leader's own check-quorum moves things on.
        let mut e = Elector::new(cfg(1), 5);
        let acts = run(&mut e, &follower(8, Some(0)), (0, 5_000, 5), 50);
        assert!(acts.iter().all(|(_, a)| !matches!(
            a,
            ElectionAction::RequestPreVotes { .. } | ElectionAction::Campaign { .. }
        )));
    }

    #[test]
    fn a_leader_without_quorum_steps_down_within_two_election_timeouts() {
        // (age of the last quorum ack as openraft reports it at each tick) -> step down at
        let c = cfg(0);
        for lag in [0, 25, 75] {
            let mut e = Elector::new(c.clone(), 1);
            let mut v = view(Role::Leader, 7, Some(0));
            let lost_at = 1_000;
            let mut stepped = Vec::new();
            for t in (0..3_000u64).step_by(c.heartbeat_interval_ms as usize) {
                // Acks stop at `lost_at`; openraft's report is up to `lag` ms stale.
                let seen = t.saturating_sub(lag);
                v.millis_since_quorum_ack = Some(seen.saturating_sub(seen.min(lost_at)));
                for a in e.tick(t, &v) {
                    if let ElectionAction::StepDown { .. } = a {
                        stepped.push(t);
                    }
                }
            }
            assert_eq!(stepped.len(), 1, "lag {lag}: {stepped:?}");
            let took = stepped[0] - lost_at;
            assert!(
                took <= 2 * c.election_timeout_ms_max,
                "lag {lag}: {took} ms"
            );
            assert!(took >= c.check_quorum_ms(), "lag {lag}: {took} ms");
        }
    }

    #[test]
    fn a_leader_with_quorum_stays() {
        let mut e = Elector::new(cfg(0), 1);
        let mut v = view(Role::Leader, 7, Some(0));
        v.millis_since_quorum_ack = Some(40);
        let acts = run(&mut e, &v, (0, 10_000, 50), 0);
        let acts: Vec<_> = acts.into_iter().map(|(_, a)| a).collect();
        assert_eq!(acts, vec![ElectionAction::BecameLeader { term: 7 }]);
    }

    #[test]
    fn leadership_changes_are_reported_once() {
        let mut e = Elector::new(cfg(0), 1);
        let mut got = Vec::new();
        for (t, v) in [
            (0, follower(1, None)),
            (10, view(Role::Leader, 2, Some(0))),
            (20, view(Role::Leader, 2, Some(0))),
            (30, view(Role::Leader, 4, Some(0))),
            (40, follower(5, Some(1))),
        ] {
            got.extend(e.tick(t, &v).into_iter().filter(|a| {
                matches!(
                    a,
                    ElectionAction::BecameLeader { .. } | ElectionAction::LostLeadership { .. }
                )
            }));
        }
        use ElectionAction::*;
        assert_eq!(
            got,
            vec![
                BecameLeader { term: 2 },
                LostLeadership { term: 2 },
                BecameLeader { term: 4 },
                LostLeadership { term: 4 }
            ]
        );
    }

    #[test]
    fn clock_jumps() {
        // Backwards: read as "no time passed"; nothing fires early, nothing underflows.
        let mut e = Elector::new(cfg(1), 2);
        let v = follower(3, Some(0));
        e.appended_by(5_000, ids()[0]);
        assert!(e.tick(5_010, &v).is_empty());
        assert!(e.tick(10, &v).is_empty());
        assert!(e.tick(0, &v).is_empty());
        // Forwards, past any lease: a pre-vote round (a question), never a direct campaign.
        let acts = e.tick(1_000_000, &v);
        assert_eq!(rounds_started(&acts), 1, "{acts:?}");
        assert!(!acts
            .iter()
            .any(|a| matches!(a, ElectionAction::Campaign { .. })));
    }

    #[test]
    fn granting_a_vote_restarts_the_timer() {
        let mut e = Elector::new(cfg(1), 4);
        let mut v = follower(3, None);
        v.voted_for = None;
        e.tick(0, &v);
        // At 140 we grant our vote to node 2 for term 4: no round before 140 + min.
        v.term = 4;
        v.voted_for = Some(ids()[2]);
        let acts = run(&mut e, &v, (140, 289, 1), 0);
        assert!(acts.is_empty(), "{acts:?}");
    }

    #[test]
    fn probes_while_it_hears_less_than_a_quorum() {
        let ids = ids();
        let mut e = Elector::new(cfg(1), 1);
        let v = follower(3, Some(0));
        // (peers heard at these times, now) -> probe
        assert!(e.tick(0, &v).contains(&ElectionAction::Probe));
        e.heard(10, ids[2]);
        assert!(!e.tick(20, &v).contains(&ElectionAction::Probe));
        assert!(!e.tick(360, &v).contains(&ElectionAction::Probe));
        assert!(e.tick(361, &v).contains(&ElectionAction::Probe));
    }

    #[test]
    fn a_single_voter_campaigns_without_asking() {
        let me = ids()[0];
        let c = ElectionConfig {
            voters: vec![me],
            ..cfg(0)
        };
        let mut e = Elector::new(c, 1);
        let acts = e.tick(1_000, &follower(0, None));
        assert!(
            matches!(acts[..], [ElectionAction::Campaign { .. }]),
            "{acts:?}"
        );
    }

    #[test]
    fn a_failed_raft_is_reopened_after_one_election_timeout() {
        let mut e = Elector::new(cfg(1), 1);
        let mut v = follower(2, None);
        v.failed = Some("disk".into());
        assert!(e.tick(1_000, &v).is_empty());
        assert!(e.tick(1_299, &v).is_empty());
        assert_eq!(
            e.tick(1_300, &v),
            vec![ElectionAction::Reopen {
                after: "disk".into()
            }]
        );
        // Still failed after the reopen: another full timeout before the next try.
        assert!(e.tick(1_350, &v).is_empty());
        assert_eq!(e.tick(1_650, &v).len(), 1);
    }
}

//! Whether an operator's membership change may go ahead, and as what Raft change: adding a
//! learner, promoting a learner to voter once it has caught up, removing a member. Decided
//! from what the leader sees of Raft; the node carries the plan out with openraft's
//! `add_learner` and `change_membership` (joint consensus), one change at a time.

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::NodeId;

/// A learner is promoted only once its log is within this many entries of the leader's: a
/// voter that lags far would hold up commits the moment it counts toward a majority. At ten
/// blocks a second with a few proposals in flight, a caught-up learner is within ten.
pub const PROMOTE_MAX_LAG_ENTRIES: u64 = 32;

/// What an operator asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    AddLearner(NodeId),
    Promote(NodeId),
    Remove(NodeId),
}

/// What the leader sees of Raft when asked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaderView {
    pub id: NodeId,
    pub is_leader: bool,
    pub leader: Option<NodeId>,
    /// The voters of the configuration the membership is headed for: the only one, or the
    /// new half of a joint configuration.
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
    /// The last index in the leader's log.
    pub last_log_index: u64,
    /// Per member the leader replicates to: the last index it acknowledged (`None`: nothing
    /// yet).
    pub matched: BTreeMap<NodeId, Option<u64>>,
    /// The last membership entry is not applied yet: a change is still being committed.
    pub changing: bool,
    /// A joint configuration (old and new voters) is in effect: a change began and is not
    /// finished. Once it is committed, the next change finishes it (openraft moves from a
    /// joint configuration to the next coherent one), so a change a leader's crash left half
    /// done is completed by asking again.
    pub joint: bool,
}

/// The Raft change to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    AddLearner(NodeId),
    AddVoter(NodeId),
    RemoveVoter(NodeId),
    RemoveLearner(NodeId),
    /// Asked for what already holds (a retry after a timeout): nothing to do.
    Nothing,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this node does not lead; ask the leader ({leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("a membership change is still being committed; try again in a moment")]
    Changing,
    #[error("{id} is not a learner: add it first (admin add-learner)")]
    NotLearner { id: NodeId },
    #[error("learner {id} acknowledged up to index {matched:?}, the leader's log ends at {last}: it is promoted once within {allowed} entries")]
    NotCaughtUp {
        id: NodeId,
        matched: Option<u64>,
        last: u64,
        allowed: u64,
    },
    #[error("{id} is not a member")]
    NotMember { id: NodeId },
    #[error("removing {id} would leave no voter")]
    LastVoter { id: NodeId },
}

/// Decides `change` against `view`.
pub fn decide(view: &LeaderView, change: Change) -> Result<Plan, Refusal> {
    if !view.is_leader {
        return Err(Refusal::NotLeader {
            leader: view.leader.filter(|l| *l != view.id),
        });
    }
    if view.changing {
        return Err(Refusal::Changing);
    }
    let member = |id: &NodeId| view.voters.contains(id) || view.learners.contains(id);
    if view.joint {
        // Half done (its leader crashed between the joint and the final configuration):
        // the same change again moves on to the final one.
        match change {
            Change::Promote(id) if view.voters.contains(&id) => return Ok(Plan::AddVoter(id)),
            Change::Remove(id) if !member(&id) => return Ok(Plan::RemoveVoter(id)),
            _ => {}
        }
    } else {
        // Asked again after a timeout, for what holds already.
        match change {
            Change::AddLearner(id) if member(&id) => return Ok(Plan::Nothing),
            Change::Promote(id) if view.voters.contains(&id) => return Ok(Plan::Nothing),
            _ => {}
        }
    }
    match change {
        Change::AddLearner(id) => Ok(Plan::AddLearner(id)),
        Change::Promote(id) => {
            if !view.learners.contains(&id) {
                return Err(Refusal::NotLearner { id });
            }
            let matched = view.matched.get(&id).copied().flatten();
            let caught_up = matched
                .is_some_and(|m| m.saturating_add(PROMOTE_MAX_LAG_ENTRIES) >= view.last_log_index);
            if !caught_up {
                return Err(Refusal::NotCaughtUp {
                    id,
                    matched,
                    last: view.last_log_index,
                    allowed: PROMOTE_MAX_LAG_ENTRIES,
                });
            }
            Ok(Plan::AddVoter(id))
        }
        Change::Remove(id) if view.voters.contains(&id) => {
            if view.voters.len() == 1 {
                return Err(Refusal::LastVoter { id });
            }
            Ok(Plan::RemoveVoter(id))
        }
        Change::Remove(id) if view.learners.contains(&id) => Ok(Plan::RemoveLearner(id)),
        Change::Remove(id) => Err(Refusal::NotMember { id }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::ids::test_id as id;

    fn leader() -> LeaderView {
        LeaderView {
            id: id(1),
            is_leader: true,
            leader: Some(id(1)),
            voters: [id(1), id(2), id(3)].into(),
            learners: [id(4)].into(),
            last_log_index: 100,
            matched: [(id(2), Some(100)), (id(3), Some(99)), (id(4), Some(68))].into(),
            changing: false,
            joint: false,
        }
    }

    #[test]
    fn changes_are_decided_by_the_table() {
        let base = leader();
        let not_leader = LeaderView {
            is_leader: false,
            leader: Some(id(2)),
            ..leader()
        };
        let changing = LeaderView {
            changing: true,
            ..leader()
        };
        // A replacement half done (a leader crashed between the joint and the final
        // configuration, {1, 2, 3} to {1, 2, 4}): asking again for either finishes it.
        let half_done = LeaderView {
            voters: [id(1), id(2), id(4)].into(),
            learners: BTreeSet::new(),
            joint: true,
            ..leader()
        };
        let lagging = LeaderView {
            matched: [(id(4), Some(67))].into(),
            ..leader()
        };
        let silent = LeaderView {
            matched: [(id(4), None)].into(),
            ..leader()
        };
        let alone = LeaderView {
            voters: [id(1)].into(),
            ..leader()
        };
        let table: Vec<(&str, &LeaderView, Change, Result<Plan, Refusal>)> = vec![
            (
                "learner added",
                &base,
                Change::AddLearner(id(5)),
                Ok(Plan::AddLearner(id(5))),
            ),
            (
                "added twice",
                &base,
                Change::AddLearner(id(4)),
                Ok(Plan::Nothing),
            ),
            (
                "a voter is no new learner",
                &base,
                Change::AddLearner(id(2)),
                Ok(Plan::Nothing),
            ),
            (
                "only the leader changes",
                &not_leader,
                Change::AddLearner(id(5)),
                Err(Refusal::NotLeader {
                    leader: Some(id(2)),
                }),
            ),
            (
                "one change at a time",
                &changing,
                Change::Promote(id(4)),
                Err(Refusal::Changing),
            ),
            // 68 + 32 = 100: exactly within the lag.
            (
                "caught up is promoted",
                &base,
                Change::Promote(id(4)),
                Ok(Plan::AddVoter(id(4))),
            ),
            (
                "one entry too far behind",
                &lagging,
                Change::Promote(id(4)),
                Err(Refusal::NotCaughtUp {
                    id: id(4),
                    matched: Some(67),
                    last: 100,
                    allowed: 32,
                }),
            ),
            (
                "a learner that acknowledged nothing",
                &silent,
                Change::Promote(id(4)),
                Err(Refusal::NotCaughtUp {
                    id: id(4),
                    matched: None,
                    last: 100,
                    allowed: 32,
                }),
            ),
            (
                "promoting a stranger",
                &base,
                Change::Promote(id(5)),
                Err(Refusal::NotLearner { id: id(5) }),
            ),
            (
                "promoted twice",
                &base,
                Change::Promote(id(2)),
                Ok(Plan::Nothing),
            ),
            (
                "a half-done promotion finished",
                &half_done,
                Change::Promote(id(4)),
                Ok(Plan::AddVoter(id(4))),
            ),
            (
                "a half-done removal finished",
                &half_done,
                Change::Remove(id(3)),
                Ok(Plan::RemoveVoter(id(3))),
            ),
            (
                "a half-done change is no excuse to skip one",
                &half_done,
                Change::Promote(id(5)),
                Err(Refusal::NotLearner { id: id(5) }),
            ),
            (
                "a voter removed",
                &base,
                Change::Remove(id(3)),
                Ok(Plan::RemoveVoter(id(3))),
            ),
            (
                "the leader removes itself",
                &base,
                Change::Remove(id(1)),
                Ok(Plan::RemoveVoter(id(1))),
            ),
            (
                "a learner removed",
                &base,
                Change::Remove(id(4)),
                Ok(Plan::RemoveLearner(id(4))),
            ),
            (
                "removing a stranger",
                &base,
                Change::Remove(id(5)),
                Err(Refusal::NotMember { id: id(5) }),
            ),
            (
                "never the last voter",
                &alone,
                Change::Remove(id(1)),
                Err(Refusal::LastVoter { id: id(1) }),
            ),
        ];
        for (what, view, change, want) in table {
            assert_eq!(decide(view, change), want, "{what}");
        }
    }
}

//! Whether an operator's membership change may go ahead, and as what Raft change: adding a
//! learner, promoting a learner to voter once it has caught up, removing a member. Decided
//! from what the leader sees of Raft; the node carries the plan out with openraft's
//! `add_learner` and `change_membership` (joint consensus), one change at a time.
//!
//! A voter is removed only once L1 no longer needs it: every sealed batch is attested on L1
//! by the signers of its blocks ([`crate::settlement::batch`]), a set the chain fixed when it
//! certified them, so an operator who shuts a removed member down while a batch it must
//! attest is still off L1 can leave that batch short of a majority for good (replace-twice,
//! seed 3968397: a batch sealed under two members, one removed and gone before it attested).

use std::collections::{BTreeMap, BTreeSet};

use crate::chain::members::Signers;
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
    /// What L1 still needs of the signers, read for a removal (`None`: this node reads no
    /// L1, so it has nothing to check; a cluster with no settlement contract commits nothing
    /// there).
    pub l1: Option<L1Duties>,
}

/// The attestations L1 still needs, as a removal weighs them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct L1Duties {
    /// The last height of the last batch L1 holds (0: none yet).
    pub landed_height: u64,
    /// The signer sets of the sealed blocks above it, each with the first of those heights
    /// it signed, ascending. A batch ends at every block that declares new members, so each
    /// is the attester set of the batches it spans.
    pub unlanded: Vec<(u64, BTreeSet<NodeId>)>,
    /// The current signers: they attest the batch open now once it is sealed, which the
    /// removal itself seals.
    pub open: BTreeSet<NodeId>,
}

impl L1Duties {
    /// What L1 needs when it holds the chain up to `landed_height` and batches are sealed up
    /// to `sealed_height`, under `signers`.
    pub fn of(signers: &Signers, landed_height: u64, sealed_height: u64) -> L1Duties {
        let set = |members: &[NodeId]| members.iter().copied().collect::<BTreeSet<_>>();
        let first = landed_height.saturating_add(1);
        let mut unlanded = Vec::new();
        if first <= sealed_height {
            unlanded.push((first, set(signers.of(first))));
            // A set declared at height d signs from d + 1 on.
            for change in signers.history().changes() {
                let from = change.height.saturating_add(1);
                if from > first && from <= sealed_height {
                    unlanded.push((from, set(&change.members)));
                }
            }
        }
        L1Duties {
            landed_height,
            unlanded,
            open: set(signers.current()),
        }
    }
}

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
    #[error("{id} attests the sealed blocks from height {from_height}, which L1 does not hold yet (it holds the chain up to height {landed_height}): {id} is removed once it does, so that no batch loses an attester it needs")]
    AttestationOwed {
        id: NodeId,
        from_height: u64,
        landed_height: u64,
    },
    #[error("the open batch is attested by {attesters} signers, {id} among them, and needs a majority of them on L1: without {id} it could never land; add its replacement first")]
    OpenBatchNeeds { id: NodeId, attesters: usize },
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
            if let Some(duties) = &view.l1 {
                owes_nothing(duties, id)?;
            }
            Ok(Plan::RemoveVoter(id))
        }
        Change::Remove(id) if view.learners.contains(&id) => Ok(Plan::RemoveLearner(id)),
        Change::Remove(id) => Err(Refusal::NotMember { id }),
    }
}

/// Whether L1 can do without voter `id`: no batch it attests is still off L1, and the open
/// batch, which its removal seals, keeps a majority of attesters without it.
fn owes_nothing(duties: &L1Duties, id: NodeId) -> Result<(), Refusal> {
    if let Some((from, _)) = duties.unlanded.iter().find(|(_, a)| a.contains(&id)) {
        return Err(Refusal::AttestationOwed {
            id,
            from_height: *from,
            landed_height: duties.landed_height,
        });
    }
    let n = duties.open.len();
    if duties.open.contains(&id) && n - 1 < crate::chain::certificate::majority(n) {
        return Err(Refusal::OpenBatchNeeds { id, attesters: n });
    }
    Ok(())
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
            l1: None,
        }
    }

    fn set(ids: &[u8]) -> BTreeSet<NodeId> {
        ids.iter().map(|i| id(*i)).collect()
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
        // L1 holds the chain up to height 40; 41.. were signed by {1, 2} (a third had died and
        // was removed), 45.. by {1, 2, 3} once its replacement joined.
        let owed = LeaderView {
            l1: Some(L1Duties {
                landed_height: 40,
                unlanded: vec![(41, set(&[1, 2])), (45, set(&[1, 2, 3]))],
                open: set(&[1, 2, 3]),
            }),
            ..leader()
        };
        let landed = LeaderView {
            l1: Some(L1Duties {
                landed_height: 50,
                unlanded: Vec::new(),
                open: set(&[1, 2, 3]),
            }),
            ..leader()
        };
        let pair = LeaderView {
            voters: set(&[1, 2]),
            l1: Some(L1Duties {
                landed_height: 50,
                unlanded: Vec::new(),
                open: set(&[1, 2]),
            }),
            ..leader()
        };
        let four = LeaderView {
            voters: set(&[1, 2, 3, 4]),
            learners: BTreeSet::new(),
            l1: Some(L1Duties {
                landed_height: 50,
                unlanded: Vec::new(),
                open: set(&[1, 2, 3, 4]),
            }),
            ..leader()
        };
        let pair_without_l1 = LeaderView {
            voters: set(&[1, 2]),
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
            (
                "the first batch off L1 that a voter attests holds its removal",
                &owed,
                Change::Remove(id(2)),
                Err(Refusal::AttestationOwed {
                    id: id(2),
                    from_height: 41,
                    landed_height: 40,
                }),
            ),
            (
                "so does a later one",
                &owed,
                Change::Remove(id(3)),
                Err(Refusal::AttestationOwed {
                    id: id(3),
                    from_height: 45,
                    landed_height: 40,
                }),
            ),
            (
                "a learner attests nothing",
                &owed,
                Change::Remove(id(4)),
                Ok(Plan::RemoveLearner(id(4))),
            ),
            (
                "once L1 holds them, the voter goes; two of three attest the open batch",
                &landed,
                Change::Remove(id(3)),
                Ok(Plan::RemoveVoter(id(3))),
            ),
            (
                "one of two is no majority of the open batch's attesters",
                &pair,
                Change::Remove(id(2)),
                Err(Refusal::OpenBatchNeeds {
                    id: id(2),
                    attesters: 2,
                }),
            ),
            (
                "three of four are",
                &four,
                Change::Remove(id(4)),
                Ok(Plan::RemoveVoter(id(4))),
            ),
            (
                "a node that reads no L1 checks nothing",
                &pair_without_l1,
                Change::Remove(id(2)),
                Ok(Plan::RemoveVoter(id(2))),
            ),
        ];
        for (what, view, change, want) in table {
            assert_eq!(decide(view, change), want, "{what}");
        }
    }

    #[test]
    fn the_duties_are_the_signer_sets_of_the_sealed_heights_l1_lacks() {
        let mut signers = Signers::fixed(&[id(1), id(2), id(3)]);
        // 3 is removed at height 10, its replacement 4 declared at height 20.
        signers.declare(10, vec![id(1), id(2)]);
        signers.declare(20, vec![id(1), id(2), id(4)]);
        type Spans = Vec<(u64, BTreeSet<NodeId>)>;
        let table: Vec<(&str, u64, u64, Spans)> = vec![
            ("L1 holds everything sealed", 30, 30, vec![]),
            ("L1 ahead of this node's seals", 35, 30, vec![]),
            ("only the last set", 25, 30, vec![(26, set(&[1, 2, 4]))]),
            (
                "the declaring block is the old set's",
                5,
                20,
                vec![(6, set(&[1, 2, 3])), (11, set(&[1, 2]))],
            ),
            (
                "all three",
                0,
                21,
                vec![
                    (1, set(&[1, 2, 3])),
                    (11, set(&[1, 2])),
                    (21, set(&[1, 2, 4])),
                ],
            ),
            (
                "starting on a set's first height",
                10,
                11,
                vec![(11, set(&[1, 2]))],
            ),
        ];
        for (what, landed, sealed, want) in table {
            let duties = L1Duties::of(&signers, landed, sealed);
            assert_eq!(duties.unlanded, want, "{what}");
            assert_eq!(duties.landed_height, landed, "{what}");
            assert_eq!(duties.open, set(&[1, 2, 4]), "{what}");
        }
    }
}

//! Who certifies the chain's blocks, as the chain itself declares it.
//!
//! `consensus_peer_ids` is the membership at genesis. Raft's membership changes later
//! (`canon-node admin`); the first block applied after a change declares the voters in effect
//! in its header ([`crate::chain::block::BlockHeader::members`]). That block is still certified
//! by the set before it, so whoever trusts the old set (an external node, the checker) learns
//! the new one from a block the old one certified, never from a claim nobody vouched for.
//! The history of declarations is tiny (one entry per change) and kept whole.

use serde::{Deserialize, Serialize};

use crate::ids::NodeId;

/// One declaration: from the block after `height` on, `members` certify.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberChange {
    /// The height of the block whose header declared the set.
    pub height: u64,
    /// Sorted, distinct.
    pub members: Vec<NodeId>,
}

/// Every declaration the chain made up to its head, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberHistory(Vec<MemberChange>);

impl MemberHistory {
    pub fn changes(&self) -> &[MemberChange] {
        &self.0
    }

    /// Records the declaration of the block at `height`. Heights only grow on a Raft chain;
    /// one at or below the last declaration replaces what follows it (a replica that applies
    /// a block again after a crash declares the same set again).
    pub fn declare(&mut self, height: u64, members: Vec<NodeId>) {
        self.0.retain(|c| c.height < height);
        self.0.push(MemberChange { height, members });
    }
}

/// The signer sets of one chain at every height: its genesis set and what blocks declared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signers {
    genesis: Vec<NodeId>,
    history: MemberHistory,
}

impl Signers {
    pub fn new(genesis: &[NodeId], history: &MemberHistory) -> Signers {
        Signers {
            genesis: genesis.to_vec(),
            history: history.clone(),
        }
    }

    /// Only the genesis set: a chain whose membership never changed.
    pub fn fixed(genesis: &[NodeId]) -> Signers {
        Signers::new(genesis, &MemberHistory::default())
    }

    /// The set whose majority certifies the block at `height`: the last one declared below it.
    pub fn of(&self, height: u64) -> &[NodeId] {
        self.history
            .0
            .iter()
            .rev()
            .find(|c| c.height < height)
            .map_or(&self.genesis[..], |c| &c.members[..])
    }

    /// The set that certifies the next block after everything declared so far.
    pub fn current(&self) -> &[NodeId] {
        self.of(u64::MAX)
    }

    /// Whether `id` was in any set: its signatures and requests are a member's, now or once.
    pub fn ever(&self, id: &NodeId) -> bool {
        self.genesis.contains(id) || self.history.0.iter().any(|c| c.members.contains(id))
    }

    pub fn history(&self) -> &MemberHistory {
        &self.history
    }

    /// What the block at `height` declares: recorded for the blocks after it.
    pub fn declare(&mut self, height: u64, members: Vec<NodeId>) {
        self.history.declare(height, members);
    }
}

/// What a block at the head of a chain whose signers are `current` must declare when Raft's
/// voters in effect are `voters`: nothing while they agree, the voters (sorted) once they
/// differ. Order does not matter: sets are compared.
pub fn declaration(current: &[NodeId], voters: &[NodeId]) -> Option<Vec<NodeId>> {
    let mut voters = voters.to_vec();
    voters.sort();
    voters.dedup();
    let mut current = current.to_vec();
    current.sort();
    current.dedup();
    // Raft not yet initialized has no voters: nothing to declare.
    (!voters.is_empty() && voters != current).then_some(voters)
}

/// Who may have proposed a block: a member before it or after it (a leader that removes
/// itself leads until the change commits; a new one declares itself).
pub fn proposers(before: &[NodeId], declared: Option<&Vec<NodeId>>) -> Vec<NodeId> {
    before
        .iter()
        .chain(declared.into_iter().flatten())
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::ids::test_id as id;

    #[test]
    fn the_set_certifying_a_block_is_the_last_declared_below_it() {
        let genesis = [id(1), id(2), id(3)];
        let mut s = Signers::fixed(&genesis);
        s.declare(10, vec![id(1), id(2), id(3), id(4)]);
        s.declare(12, vec![id(1), id(2), id(4)]);
        // (height, the set a majority of which certifies it), restated by hand.
        let table: [(u64, &[NodeId]); 6] = [
            (1, &genesis),
            (10, &genesis),
            (11, &[id(1), id(2), id(3), id(4)]),
            (12, &[id(1), id(2), id(3), id(4)]),
            (13, &[id(1), id(2), id(4)]),
            (1_000, &[id(1), id(2), id(4)]),
        ];
        for (height, want) in table {
            assert_eq!(s.of(height), want, "height {height}");
        }
        assert_eq!(s.current(), &[id(1), id(2), id(4)]);
        assert!(s.ever(&id(3)) && s.ever(&id(4)) && !s.ever(&id(5)));
    }

    #[test]
    fn declaring_again_at_a_height_replaces_what_followed_it() {
        let mut h = MemberHistory::default();
        h.declare(5, vec![id(1)]);
        h.declare(9, vec![id(2)]);
        h.declare(5, vec![id(3)]);
        assert_eq!(
            h.changes(),
            &[MemberChange {
                height: 5,
                members: vec![id(3)]
            }]
        );
    }

    #[test]
    fn a_block_declares_exactly_when_the_voters_differ() {
        // (the chain's signers, Raft's voters, what the next block must declare)
        type Row<'a> = (&'a [NodeId], &'a [NodeId], Option<Vec<NodeId>>);
        let table: [Row; 5] = [
            (&[id(1), id(2)], &[id(2), id(1)], None),
            (
                &[id(1), id(2)],
                &[id(1), id(2), id(3)],
                Some(vec![id(1), id(2), id(3)]),
            ),
            (
                &[id(1), id(2), id(3)],
                &[id(3), id(1)],
                Some(vec![id(1), id(3)]),
            ),
            (&[id(1)], &[], None),
            (&[id(2), id(1)], &[id(1), id(2), id(2)], None),
        ];
        for (current, voters, want) in table {
            assert_eq!(declaration(current, voters), want, "{current:?} {voters:?}");
        }
    }

    #[test]
    fn a_proposer_is_a_member_before_or_after_its_block() {
        let before = [id(1), id(2), id(3)];
        let after = vec![id(2), id(3), id(4)];
        let none = proposers(&before, None);
        assert!(none.contains(&id(1)) && !none.contains(&id(4)));
        let changed = proposers(&before, Some(&after));
        for (who, may) in [(1, true), (3, true), (4, true), (5, false)] {
            assert_eq!(changed.contains(&id(who)), may, "node {who}");
        }
    }
}

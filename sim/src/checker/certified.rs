//! The checker's rule for commit certificates, restated from what it observes rather than
//! from certificates themselves: a certificate is a majority of consensus nodes' signatures
//! that they hold a block, and an honest node signs only a block it applied or backfilled. So
//! an external node may replay a block only once a majority of consensus nodes reported
//! holding that very block at that height. A block served without a certificate, with a forged
//! one, or a deposed leader's proposal that no majority applied breaks it.

use std::collections::{BTreeMap, BTreeSet};

use alloy_primitives::B256;

/// Which consensus nodes reported holding which block at each height.
#[derive(Clone, Debug, Default)]
pub struct Holders {
    consensus_nodes: usize,
    by_height: BTreeMap<u64, BTreeMap<B256, BTreeSet<usize>>>,
    /// The nodes whose majority certifies blocks at genesis, and each set a block declared
    /// (by the height of the declaring block): a set certifies the blocks above its height.
    genesis: BTreeSet<usize>,
    declared: BTreeMap<u64, BTreeSet<usize>>,
}

impl Holders {
    pub fn new(consensus_nodes: usize) -> Holders {
        Holders {
            consensus_nodes,
            by_height: BTreeMap::new(),
            genesis: (0..consensus_nodes).collect(),
            declared: BTreeMap::new(),
        }
    }

    /// Only nodes `0..n` are members at genesis (the rest are spares a scenario adds later).
    pub fn set_genesis_members(&mut self, n: usize) {
        self.genesis = (0..n).collect();
    }

    /// The block at `height` declared `members` (by node index).
    pub fn declare(&mut self, height: u64, members: BTreeSet<usize>) {
        self.declared.insert(height, members);
    }

    /// What was declared at `height`, if anything.
    pub fn declared_at(&self, height: u64) -> Option<&BTreeSet<usize>> {
        self.declared.get(&height)
    }

    /// The heights in `range` at which a block declared members.
    pub fn declared_in(&self, range: std::ops::Range<u64>) -> Vec<u64> {
        self.declared.range(range).map(|(h, _)| *h).collect()
    }

    /// The set whose majority must hold the block at `height`.
    pub fn members_for(&self, height: u64) -> &BTreeSet<usize> {
        self.declared
            .range(..height)
            .next_back()
            .map_or(&self.genesis, |(_, set)| set)
    }

    /// Consensus node `node` applied or backfilled `hash` at `height`.
    pub fn hold(&mut self, node: usize, height: u64, hash: B256) {
        if node < self.consensus_nodes {
            self.by_height
                .entry(height)
                .or_default()
                .entry(hash)
                .or_default()
                .insert(node);
        }
    }

    /// Why replaying `hash` at `height` now breaks the rule, if it does. A run without
    /// consensus nodes (a redundancy group's chain, which its identity's signature makes
    /// canonical and has no certificates) has nothing to check here.
    pub fn replay_refused(&self, height: u64, hash: &B256) -> Option<String> {
        if self.consensus_nodes == 0 {
            return None;
        }
        let members = self.members_for(height);
        let holders = self
            .by_height
            .get(&height)
            .and_then(|blocks| blocks.get(hash))
            .map_or(0, |held| held.intersection(members).count());
        // More than half of the members at that height, counted here rather than with the
        // engine's `majority`.
        if 2 * holders > members.len() {
            return None;
        }
        Some(format!(
            "replayed {hash} at {height}, which {holders} of its {} members held",
            members.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_needs_more_than_half_of_the_consensus_nodes_holding_that_block() {
        let (a, b) = (B256::repeat_byte(1), B256::repeat_byte(2));
        let mut h = Holders::new(5);
        // (node, height, hash held) then whether replaying `a` at 7 is allowed.
        let table = [
            (0, 7, a, false),
            (1, 7, b, false), // another block at the height does not count
            (2, 8, a, false), // nor the block at another height
            (9, 7, a, false), // nor an external node (index past the consensus nodes)
            (3, 7, a, false),
            (3, 7, a, false), // nor the same node twice
            (4, 7, a, true),
        ];
        for (node, height, hash, allowed) in table {
            h.hold(node, height, hash);
            assert_eq!(
                h.replay_refused(7, &a).is_none(),
                allowed,
                "after node {node} held {hash} at {height}"
            );
        }
    }

    #[test]
    fn after_a_declaration_a_majority_of_the_new_members_must_hold() {
        let a = B256::repeat_byte(1);
        // Nodes 0-2 at genesis, 3 a spare; block 5 declares {0, 1, 3}: 2 removed, 3 added.
        let mut h = Holders::new(4);
        h.set_genesis_members(3);
        h.declare(5, [0, 1, 3].into());
        for node in [0, 2] {
            h.hold(node, 5, a);
            h.hold(node, 6, a);
        }
        // Block 5 is still certified by the genesis set: 0 and 2 are two of three.
        assert!(h.replay_refused(5, &a).is_none());
        // Block 6 by the declared one: 2 no longer counts, and 0 alone is one of three.
        assert!(h.replay_refused(6, &a).is_some());
        h.hold(3, 6, a);
        assert!(h.replay_refused(6, &a).is_none());
    }
}

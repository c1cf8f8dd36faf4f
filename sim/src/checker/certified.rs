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
}

impl Holders {
    pub fn new(consensus_nodes: usize) -> Holders {
        Holders {
            consensus_nodes,
            by_height: BTreeMap::new(),
        }
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
        let holders = self
            .by_height
            .get(&height)
            .and_then(|blocks| blocks.get(hash))
            .map_or(0, BTreeSet::len);
        // More than half, counted here rather than with the engine's `majority`.
        if 2 * holders > self.consensus_nodes {
            return None;
        }
        Some(format!(
            "replayed {hash} at {height}, which {holders} of {} consensus nodes held",
            self.consensus_nodes
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
}

//! The checker's part for single-sequencer groups: one block per height and per round for the
//! identity, and in fork mode (an unfenced partition) every node's chain a chain of the
//! identity's blocks.

use std::time::Duration;

use alloy_primitives::B256;

use super::{Canonical, Checker};

impl Checker {
    /// The identity is expected to sign two branches (an unfenced partition): see `fork_mode`.
    pub fn expect_equivocation(&mut self) {
        self.fork_mode = true;
    }

    pub fn double_signed(&self) -> &[(u64, B256, B256)] {
        &self.double_signed
    }

    pub fn double_signed_rounds(&self) -> &[(u64, B256, B256)] {
        &self.double_signed_rounds
    }

    pub fn reported_equivocations(&self) -> &[(usize, u64)] {
        &self.reported_equivocations
    }

    /// Fork mode: the hash node `node` holds at `height`, as its events built its chain.
    pub fn node_chain_hash(&self, node: usize, height: u64) -> Option<B256> {
        if height == 0 {
            return Some(self.genesis_hash);
        }
        self.nodes.get(node)?.chain.get(&height).copied()
    }

    /// Fork mode: a node's chain grows by `hash` at `height`, which must sit on the block it
    /// holds at `height - 1` and be one the identity signed.
    pub(super) fn fork_mode_extend(
        &mut self,
        node: usize,
        at: Duration,
        height: u64,
        hash: B256,
        parent_hash: B256,
    ) {
        let parent = self.node_chain_hash(node, height.saturating_sub(1));
        if parent != Some(parent_hash) {
            self.fail(
                "every node's chain is a chain of the identity's blocks",
                node,
                Some(height),
                at,
                format!("{hash} on parent {parent_hash}; this node holds {parent:?} below it"),
            );
        }
        if !self.signed_blocks.contains_key(&hash) {
            self.fail(
                "every node's chain is a chain of the identity's blocks",
                node,
                Some(height),
                at,
                format!("{hash} was never signed by the identity"),
            );
        }
        self.nodes[node].chain.insert(height, hash);
    }

    /// A group member signed and stored a block: per identity, one block per height and per
    /// round; the signer's chain grows by exactly that block; the first signature at a height
    /// defines the canonical block there.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn signed(
        &mut self,
        node: usize,
        at: Duration,
        height: u64,
        round: u64,
        hash: B256,
        parent_hash: B256,
        state_root: B256,
    ) {
        self.signed_blocks.insert(hash, (height, parent_hash));
        // Whatever the group does, one machine never signs two blocks for a height or a round:
        // its guard holds across crashes.
        let track = &mut self.nodes[node];
        let mine = [
            ("height", height, track.signed_heights.insert(height, hash)),
            ("round", round, track.signed_rounds.insert(round, hash)),
        ];
        for (what, at_value, earlier) in mine {
            if let Some(earlier) = earlier.filter(|e| *e != hash) {
                self.fail(
                    "one machine never signs two blocks for one height or round",
                    node,
                    Some(height),
                    at,
                    format!("signed {hash} at {what} {at_value}; it signed {earlier} there before"),
                );
            }
        }
        let by_height = self.signed_heights.get(&height).copied();
        let by_round = self.signed_rounds.get(&round).copied();
        if let Some(earlier) = by_height.filter(|e| *e != hash) {
            if self.fork_mode {
                self.double_signed.push((height, earlier, hash));
            } else {
                self.fail(
                    "no identity signs two different blocks for one height or round",
                    node,
                    Some(height),
                    at,
                    format!("signed {hash} in round {round}; {earlier} was signed at this height"),
                );
            }
        }
        if let Some(earlier) = by_round.filter(|e| *e != hash) {
            if self.fork_mode {
                self.double_signed_rounds.push((round, earlier, hash));
            } else {
                self.fail(
                    "no identity signs two different blocks for one height or round",
                    node,
                    Some(height),
                    at,
                    format!("signed {hash} in round {round}; {earlier} was signed at this round"),
                );
            }
        }
        self.signed_heights.entry(height).or_insert(hash);
        self.signed_rounds.entry(round).or_insert(hash);
        let chain_rule = if self.fork_mode {
            "every node's chain is a chain of the identity's blocks"
        } else {
            "every node's chain is a prefix of the canonical chain"
        };
        self.expect_next_height(node, at, height, chain_rule, "signed");
        if self.fork_mode {
            self.fork_mode_extend(node, at, height, hash, parent_hash);
        } else if self
            .canonical_hash(height.saturating_sub(1))
            .is_some_and(|p| p != parent_hash)
        {
            self.fail(
                chain_rule,
                node,
                Some(height),
                at,
                format!("signed on parent {parent_hash}, which is not canonical"),
            );
        }
        // In fork mode only "the highest signed height" is read from it.
        self.canonical.entry(height).or_insert(Canonical {
            timestamp_ms: 0,
            hash,
            parent: parent_hash,
            state_root,
        });
        self.set_head(node, height);
    }
}

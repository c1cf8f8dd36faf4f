//! The checker's part for chains: every consensus node's chain and every external node's
//! replayed chain is a prefix of the one canonical chain, with agreeing state roots, block
//! times that never go backwards, and (with certificates) only blocks a majority held.

use std::time::Duration;

use alloy_primitives::B256;
use canon_engine::NodeId;

use super::{Canonical, Checker, MAJORITY_HOLDS};

impl Checker {
    /// A consensus node applied the block `hash` at `height` from log entry `index`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn block_applied(
        &mut self,
        node: usize,
        at: Duration,
        index: u64,
        height: u64,
        hash: B256,
        parent_hash: B256,
        state_root: B256,
        timestamp_ms: u64,
    ) {
        let parent_time = self
            .canonical
            .get(&height.saturating_sub(1))
            .map(|c| c.timestamp_ms);
        if parent_time.is_some_and(|p| timestamp_ms < p) {
            self.fail(
                "block time never goes backwards",
                node,
                Some(height),
                at,
                format!("timestamp {timestamp_ms} ms after the parent's {parent_time:?}"),
            );
        }
        self.monotonic_index(node, index, at);
        self.same_outcome(node, index, Some(hash), at);
        self.holders.hold(node, height, hash);
        self.expect_next_height(
            node,
            at,
            height,
            "every node's chain is a prefix of the canonical chain",
            "applied",
        );
        let expected_parent = self.canonical_hash(height.saturating_sub(1));
        if expected_parent.is_some_and(|p| p != parent_hash) {
            self.fail(
                "every node's chain is a prefix of the canonical chain",
                node,
                Some(height),
                at,
                format!("parent {parent_hash} is not the canonical block {expected_parent:?}"),
            );
        }
        match self.canonical.get(&height).copied() {
            Some(c) if c.hash != hash => self.fail(
                "no two different blocks at one height",
                node,
                Some(height),
                at,
                format!("applied {hash}, another node applied {}", c.hash),
            ),
            Some(c) if c.state_root != state_root || c.parent != parent_hash => self.fail(
                "state roots agree at every height",
                node,
                Some(height),
                at,
                format!("state root {state_root}, another node has {}", c.state_root),
            ),
            Some(_) => {}
            None => {
                self.canonical.insert(
                    height,
                    Canonical {
                        timestamp_ms,
                        hash,
                        parent: parent_hash,
                        state_root,
                    },
                );
            }
        }
        self.set_head(node, height);
    }

    /// An external node replayed the block `hash` at `height`, downloaded from `source`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn replayed(
        &mut self,
        node: usize,
        at: Duration,
        height: u64,
        hash: B256,
        parent_hash: B256,
        state_root: B256,
        source: NodeId,
    ) {
        self.expect_next_height(
            node,
            at,
            height,
            "an external node replays without gap or duplicate",
            "replayed",
        );
        if self.fork_mode {
            self.fork_mode_extend(node, at, height, hash, parent_hash);
            self.set_head(node, height);
            return;
        }
        if let Some(why) = self.holders.replay_refused(height, &hash) {
            self.fail(
                MAJORITY_HOLDS,
                node,
                Some(height),
                at,
                format!("{why} (from {source:?})"),
            );
        }
        // Only canonized blocks are served, and a consensus node applied each before
        // serving it: the canonical block is known here.
        match self.canonical.get(&height).copied() {
            None => self.fail(
                "every external chain is a prefix of the canonical chain",
                node,
                Some(height),
                at,
                format!("replayed {hash} from {source:?}, which no consensus node applied"),
            ),
            Some(c) if c.hash != hash || c.parent != parent_hash => self.fail(
                "every external chain is a prefix of the canonical chain",
                node,
                Some(height),
                at,
                format!("replayed {hash} from {source:?}, canonical is {}", c.hash),
            ),
            Some(c) if c.state_root != state_root => self.fail(
                "state roots agree at every height",
                node,
                Some(height),
                at,
                format!(
                    "external state root {state_root}, canonical {}",
                    c.state_root
                ),
            ),
            Some(_) => {}
        }
        self.set_head(node, height);
    }
}

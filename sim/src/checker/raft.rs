//! The checker's Raft rules: a restart keeps what was committed, one leader per term, terms
//! and commit and applied indexes never go backwards, replicas apply each entry alike, and a
//! snapshot installs a canonical head.

use std::time::Duration;

use alloy_primitives::B256;
use canon_engine::NodeId;

use super::Checker;

impl Checker {
    /// A node (re)started on what its disk held.
    pub(super) fn started(
        &mut self,
        node: usize,
        at: Duration,
        (head_height, head_hash): (u64, B256),
        applied_index: Option<u64>,
        term: u64,
        committed_index: Option<u64>,
    ) {
        let t = self.nodes[node].clone();
        if self.fork_mode {
            // What reached the disk: the chain up to the head it restarted on.
            let kept = self.node_chain_hash(node, head_height);
            if kept.is_some_and(|k| k != head_hash) {
                self.fail(
                    "every node's chain is a chain of the identity's blocks",
                    node,
                    Some(head_height),
                    at,
                    format!("restarted on head {head_hash}, it held {kept:?} there"),
                );
            }
            self.nodes[node].chain.split_off(&(head_height + 1));
        } else if let Some(expected) = self.canonical_hash(head_height) {
            if expected != head_hash {
                self.fail(
                    "every node's chain is a prefix of the canonical chain",
                    node,
                    Some(head_height),
                    at,
                    format!("restarted on head {head_hash}, canonical is {expected}"),
                );
            }
        }
        if term < t.term {
            self.fail(
                "term never goes backwards",
                node,
                None,
                at,
                format!("restarted in term {term} after {}", t.term),
            );
        }
        // The commit index is synced: what was committed stays committed, so every
        // canonized block is re-applied from the log even if applied state was lost.
        if committed_index < t.committed {
            self.fail(
                "a canonized block is never lost across restarts",
                node,
                None,
                at,
                format!(
                    "restarted with commit {committed_index:?} after {:?}",
                    t.committed
                ),
            );
        }
        // Applied state may roll back to what reached the disk; the log replays the rest.
        self.nodes[node].head = head_height;
        self.nodes[node].applied_index = applied_index;
    }

    /// A committed vote: it names the leader a quorum granted in `term`.
    pub(super) fn leader_chosen(&mut self, node: usize, at: Duration, term: u64, leader: &NodeId) {
        self.saw_term(node, term, at);
        // Election safety from the votes themselves: a committed vote names the leader
        // a quorum granted, and one term has one.
        let peer = format!("{leader:?}");
        match self.leader_of_term.get(&term) {
            Some(other) if *other != peer => {
                let other = other.clone();
                self.fail(
                    "at most one leader per term",
                    node,
                    None,
                    at,
                    format!("term {term} led by {other} and by {peer}"),
                )
            }
            _ => {
                self.leader_of_term.insert(term, peer);
            }
        }
    }

    pub(super) fn committed(&mut self, node: usize, at: Duration, index: u64) {
        let prev = self.nodes[node].committed;
        if prev.is_some_and(|p| index < p) {
            self.fail(
                "commit index never goes backwards",
                node,
                None,
                at,
                format!("commit {index} after {prev:?}"),
            );
        }
        self.nodes[node].committed = Some(index);
    }

    /// Replicas apply one committed entry identically: the same block, or all reject it.
    pub(super) fn same_outcome(
        &mut self,
        node: usize,
        index: u64,
        outcome: Option<B256>,
        at: Duration,
    ) {
        match self.outcome_of_index.get(&index).copied() {
            Some(first) if first != outcome => self.fail(
                "replicas apply each committed entry identically",
                node,
                None,
                at,
                format!("entry {index}: here {outcome:?}, elsewhere {first:?}"),
            ),
            Some(_) => {}
            None => {
                self.outcome_of_index.insert(index, outcome);
            }
        }
    }

    pub(super) fn saw_term(&mut self, node: usize, term: u64, at: Duration) {
        let prev = self.nodes[node].term;
        if term < prev {
            self.fail(
                "term never goes backwards",
                node,
                None,
                at,
                format!("vote for term {term} after {prev}"),
            );
        }
        self.nodes[node].term = term;
    }

    pub(super) fn monotonic_index(&mut self, node: usize, index: u64, at: Duration) {
        let prev = self.nodes[node].applied_index;
        if prev.is_some_and(|p| index <= p) {
            self.fail(
                "applied index never goes backwards",
                node,
                None,
                at,
                format!("applied index {index} after {prev:?}"),
            );
        }
        self.nodes[node].applied_index = Some(index);
    }

    /// A node installed a snapshot: its applied state jumps to a head that some node applied,
    /// ahead of its own, with the same state root; its applied index moves forward.
    pub(super) fn snapshot_installed(
        &mut self,
        node: usize,
        at: Duration,
        index: Option<u64>,
        height: u64,
        hash: B256,
        state_root: B256,
    ) {
        const INV: &str = "a snapshot installs a canonical head ahead of the node's own";
        match self.canonical.get(&height).copied() {
            Some(c) if c.hash == hash && c.state_root == state_root => {}
            other => self.fail(
                INV,
                node,
                Some(height),
                at,
                format!(
                    "snapshot head {hash} (state root {state_root}), canonical {:?}",
                    other.map(|c| (c.hash, c.state_root))
                ),
            ),
        }
        let head = self.nodes[node].head;
        if height < head {
            self.fail(
                INV,
                node,
                Some(height),
                at,
                format!("snapshot at height {height} below the applied head {head}"),
            );
        }
        if let Some(i) = index {
            self.monotonic_index(node, i, at);
        }
        self.set_head(node, height);
    }
}

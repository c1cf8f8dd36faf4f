//! The checker's rule for membership declarations: the chain names one signer set per
//! declaring height, and every node that applies the block declaring it names the same one
//! (the block hash covers it, so a difference is a fork the chain rule also sees; this rule
//! says which). A declared member must be a node of the run. What it records decides which
//! nodes' holding a block counts for the replay rule (see [`super::certified`]).

use std::collections::BTreeSet;
use std::time::Duration;

use canon_engine::NodeId;

use super::Checker;

impl Checker {
    pub(super) fn members_declared(
        &mut self,
        node: usize,
        at: Duration,
        height: u64,
        members: &[NodeId],
    ) {
        const RULE: &str = "one signer set per declaring height, of nodes in the run";
        let mut set = BTreeSet::new();
        for id in members {
            match self.node_ids.iter().position(|n| n == id) {
                Some(i) => {
                    set.insert(i);
                }
                None => {
                    self.fail(
                        RULE,
                        node,
                        Some(height),
                        at,
                        format!("declared {id}, which is no node of this run"),
                    );
                    return;
                }
            }
        }
        match self.holders.declared_at(height) {
            Some(first) if *first != set => {
                let first = first.clone();
                self.fail(
                    RULE,
                    node,
                    Some(height),
                    at,
                    format!("declared nodes {set:?}, another node declared {first:?}"),
                );
            }
            Some(_) => {}
            None => self.holders.declare(height, set),
        }
    }

    /// Only nodes `0..n` are members at genesis; the rest are spares a scenario adds.
    pub fn set_genesis_members(&mut self, n: usize) {
        self.holders.set_genesis_members(n);
    }
}

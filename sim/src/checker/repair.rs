//! The checker's rules for nodes whose disks lied: a node that forgot its log never stands
//! for election until it has applied past it; and how many nodes were unhealthy at once (at a
//! majority the cluster may stall, and then only safety is owed).

use std::time::Duration;

use canon_engine::policy::repair::Repair;

use super::Checker;

impl Checker {
    /// How many times a node's start-up repair made it forget its replicated records.
    pub fn rejoins(&self) -> usize {
        self.rejoins
    }

    /// How many times a node's start-up repair deleted rotten blocks below its head to fetch
    /// them again, keeping everything else.
    pub fn refetches(&self) -> usize {
        self.refetches
    }

    /// The most nodes whose disks were unhealthy at once: halted, or repairing (abstaining
    /// until they have applied past what they forgot). At a majority, the cluster may stall
    /// for good, and only safety is owed.
    pub fn most_unhealthy_at_once(&self) -> usize {
        self.most_unhealthy
    }

    pub(super) fn count_unhealthy(&mut self) {
        let now = self
            .nodes
            .iter()
            .filter(|t| {
                t.halted
                    || t.abstain_until.is_some_and(|b| {
                        (t.applied_term, t.applied_index.unwrap_or(0)) < (b.term, b.index)
                    })
            })
            .count();
        self.most_unhealthy = self.most_unhealthy.max(now);
    }

    /// A scrub at start found damage, and the node repaired it as `repair` says.
    pub(super) fn scrubbed(&mut self, node: usize, repair: &Repair) {
        match repair {
            Repair::Rejoin { abstain_until } => {
                // It forgot everything replicated and starts over as a new member would;
                // only its vote (so its term) and its identity remain.
                let t = &mut self.nodes[node];
                t.committed = None;
                t.applied_index = None;
                t.head = 0;
                t.chain.clear();
                t.applied_term = 0;
                t.abstain_until = Some(*abstain_until);
                self.rejoins += 1;
                self.count_unhealthy();
            }
            // Blocks below its head go and come back through the backfill, each checked as it
            // comes (`BlockBackfilled`); its log, vote and applied state stay, so it is not
            // unhealthy: it keeps voting and may lead.
            Repair::Refetch { .. } => self.refetches += 1,
            Repair::Halt(_) => {
                self.nodes[node].halted = true;
                self.count_unhealthy();
            }
            Repair::Nothing | Repair::DropAttestations(_) => {}
        }
    }

    /// The node voted for itself in `term`: it stood for election.
    pub(super) fn stood(&mut self, node: usize, at: Duration, term: u64) {
        self.saw_term(node, term, at);
        let t = &self.nodes[node];
        if let Some(bound) = t.abstain_until {
            // Restated: what it applied last (its term, as blocks and snapshots
            // report it, and index) is short of the bound, in Raft's order of logs.
            let applied = (t.applied_term, t.applied_index.unwrap_or(0));
            if applied < (bound.term, bound.index) {
                self.fail(
                        "a node that forgot its log never stands for election until it has applied past it",
                        node,
                        None,
                        at,
                        format!("stood in term {term} at applied {applied:?}, its bound is {bound:?}"),
                    );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use alloy_primitives::B256;
    use canon_engine::events::Event;
    use canon_engine::policy::election::LogPos;
    use canon_engine::NodeId;

    use super::*;

    const RULE: &str =
        "a node that forgot its log never stands for election until it has applied past it";

    /// Node 0 repairs with the bound (4, 174), applies `applied`, then votes for itself: the
    /// rule fires exactly when what it applied is short of the bound in Raft's order.
    #[test]
    fn standing_is_a_violation_only_short_of_the_bound() {
        let me = NodeId([1; 64]);
        let entry = |index, term| Event::EntryApplied { index, term };
        let table: [(&str, Vec<Event>, bool); 4] = [
            ("nothing applied", vec![], true),
            ("term 4's entries short of 174", vec![entry(134, 4)], true),
            // Seed 3946582 of disk-corruption: a later leader's no-op moves past the bound.
            ("a later term's no-op", vec![entry(134, 10)], false),
            ("term 4 up to the bound", vec![entry(174, 4)], false),
        ];
        for (what, applied, fires) in table {
            let mut c = Checker::new(1, B256::ZERO);
            c.set_node_ids(vec![me]);
            let at = Duration::from_millis(5);
            let repair = Repair::Rejoin {
                abstain_until: LogPos {
                    term: 4,
                    index: 174,
                },
            };
            c.observe(
                0,
                at,
                &Event::Scrubbed {
                    corrupt_records: 1,
                    repair,
                },
            );
            for e in &applied {
                c.observe(0, at, e);
            }
            let stand = Event::VoteSaved {
                term: 11,
                voted_for: Some(me),
                committed: false,
            };
            c.observe(0, at, &stand);
            let fired = c.violations().iter().any(|v| v.invariant == RULE);
            assert_eq!(fired, fires, "{what}: {:?}", c.violations());
        }
    }
}

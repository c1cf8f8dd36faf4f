//! A downloaded range, checked at once: its certificates (a certified chain) and, where the
//! trust asks for it, every transaction's signature, on every core the host's verifier uses;
//! what each block's check came to; and how far a round's ranges lead from the head, which the
//! download pipeline plans the next round from.

use super::{ExternalNode, Fetched, Trust};
use crate::chain::certificate::ServedBlock;
use crate::chain::rules::BlockError;
use openraft::AsyncRuntime;

use crate::chain::members::MemberHistory;

/// What checking a fetched range at once found.
pub(super) enum RangeChecks {
    /// A certified chain: the first block (by index) whose certificate, or with
    /// `signatures_checked` whose transaction signatures, fail, and why.
    Certified {
        bad: Option<(usize, BlockError)>,
        signatures_checked: bool,
        /// The declarations the certificates were checked against: those up to the head
        /// when the range arrived.
        members: MemberHistory,
    },
    /// A group's chain: the first block with a bad transaction signature.
    Signed { first_bad_signature: Option<usize> },
}

/// How the block at one index of a checked range is applied.
pub(super) enum Verdict {
    Refused(BlockError),
    Certified { signatures_checked: bool },
    SignaturesChecked,
    CheckAlone,
}

impl RangeChecks {
    /// Whether these checks still hold with `members` declared up to the head: a range
    /// fetched ahead of the head was checked before the blocks between them were applied,
    /// and one of those may have declared new signers.
    pub(super) fn holds_with(&self, members: &MemberHistory) -> bool {
        match self {
            RangeChecks::Certified { members: with, .. } => with == members,
            RangeChecks::Signed { .. } => true,
        }
    }

    pub(super) fn verdict(&self, i: usize) -> Verdict {
        match self {
            RangeChecks::Certified {
                bad: Some((b, e)), ..
            } if *b == i => Verdict::Refused(e.clone()),
            // Past the first bad block nothing is applied (the source is dropped there).
            RangeChecks::Certified {
                bad: Some((b, _)), ..
            } if *b < i => Verdict::Refused(BlockError::Uncertified),
            RangeChecks::Certified {
                signatures_checked, ..
            } => Verdict::Certified {
                signatures_checked: *signatures_checked,
            },
            RangeChecks::Signed {
                first_bad_signature: Some(b),
            } if *b <= i => Verdict::CheckAlone,
            RangeChecks::Signed { .. } => Verdict::SignaturesChecked,
        }
    }
}

/// The head the ranges in `results` lead to from `head`, if they all apply: the highest
/// height reached by ranges that join up from `head + 1`.
pub(super) fn contiguous_head(head: u64, results: &[Fetched]) -> u64 {
    let mut ranges: Vec<(u64, u64)> = results
        .iter()
        .filter_map(|f| {
            let served = f.blocks.as_ref().ok()?;
            Some((
                served.first()?.block.header.height,
                served.last()?.block.header.height,
            ))
        })
        .collect();
    ranges.sort_unstable();
    let mut reached = head;
    for (first, last) in ranges {
        if first > reached + 1 {
            break;
        }
        reached = reached.max(last);
    }
    reached
}

impl<RT: AsyncRuntime> ExternalNode<RT> {
    /// Checks a fetched range at once, on every core the host's verifier uses: its
    /// certificates (a certified chain), and its transactions' signatures unless the
    /// certificates vouch for them.
    pub(super) fn check_range(&self, served: &[ServedBlock]) -> RangeChecks {
        let blocks = served.iter().map(|s| &s.block);
        let Trust::Certificates {
            verify_every_signature,
        } = self.cfg.trust
        else {
            return RangeChecks::Signed {
                first_bad_signature: self.replica.first_bad_signature(blocks).map(|(b, _, _)| b),
            };
        };
        let members = self.replica.members();
        let bad_certificate = self.replica.first_bad_certificate(served, &members);
        if !verify_every_signature {
            return RangeChecks::Certified {
                bad: bad_certificate,
                signatures_checked: false,
                members,
            };
        }
        // A bad transaction signature refuses its block like a bad certificate: whichever
        // block comes first is where the source is dropped.
        let bad_signature = self
            .replica
            .first_bad_signature(blocks)
            .map(|(b, index, error)| (b, BlockError::Transaction { index, error }));
        let bad = match (bad_certificate, bad_signature) {
            (Some(c), Some(t)) => Some(if c.0 <= t.0 { c } else { t }),
            (c, t) => c.or(t),
        };
        RangeChecks::Certified {
            bad,
            signatures_checked: true,
            members,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::block::Block;
    use crate::chain::block::BlockHeader;
    use crate::chain::certificate::ServedBlock;
    use crate::keys::derived_key;

    /// A fetched range of (empty, unsigned-for-the-purpose) blocks at `heights`, or a failure.
    fn fetched(heights: Option<std::ops::RangeInclusive<u64>>) -> Fetched {
        let k = derived_key("contiguous", 0);
        let blocks = heights.map(|hs| {
            hs.map(|height| {
                let header = BlockHeader {
                    height,
                    parent_hash: Default::default(),
                    timestamp_ms: 0,
                    transactions_root: Default::default(),
                    state_root: Default::default(),
                    proposer: k.node_id(),
                    term: 1,
                    slot: None,
                    seals_batch: false,
                    members: None,
                };
                ServedBlock {
                    block: Block::seal(header, Vec::new(), &k).expect("seal"),
                    certificate: None,
                }
            })
            .collect()
        });
        Fetched {
            source: k.node_id(),
            blocks: blocks.ok_or_else(|| "timed out".to_string()),
            checks: None,
        }
    }

    #[test]
    fn a_round_leads_as_far_as_its_ranges_join_up_from_the_head() {
        // (head, ranges in the order they came back, the head they lead to)
        let table = [
            (10, vec![Some(11..=20), Some(21..=30)], 30),
            (10, vec![Some(21..=30), Some(11..=20)], 30),
            (10, vec![Some(11..=20), None, Some(31..=40)], 20),
            (10, vec![Some(11..=15), Some(21..=30)], 15),
            (10, vec![Some(5..=12)], 12),
            (10, vec![None, None], 10),
            (10, vec![Some(12..=20)], 10),
        ];
        for (head, ranges, leads_to) in table {
            let results: Vec<Fetched> = ranges.iter().cloned().map(fetched).collect();
            assert_eq!(contiguous_head(head, &results), leads_to, "{ranges:?}");
        }
    }
}

//! Which branch a follower keeps when the single-sequencer identity signed two different blocks
//! at one height (an equivocation: an unfenced partition let main and standby both sign).
//!
//! The rule looks only at the two blocks at the first height where the branches differ, so
//! every follower that sees both decides the same way, whenever it sees them and whatever
//! either branch grew since:
//! 1. the lower signer level wins: the branch of the member that should have been signing
//!    (a standby signs only because it believed every lower level gone);
//! 2. at one level, the earlier round wins;
//! 3. in one round, the lower block hash wins.

use alloy_primitives::B256;

/// One of the two conflicting blocks: its signer's level, its round and its hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForkBlock {
    pub level: i64,
    pub round: u64,
    pub hash: B256,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Keep {
    Ours,
    Theirs,
}

impl Keep {
    pub fn name(self) -> &'static str {
        match self {
            Keep::Ours => "ours",
            Keep::Theirs => "theirs",
        }
    }
}

/// The branch to follow, given the blocks at the first differing height.
pub fn choose(ours: &ForkBlock, theirs: &ForkBlock) -> Keep {
    let rank = |b: &ForkBlock| (b.level, b.round, b.hash);
    if rank(theirs) < rank(ours) {
        Keep::Theirs
    } else {
        Keep::Ours
    }
}

/// The highest height at which both chains hold the same block, given the hashes both hold for
/// the same window of heights, lowest first; `None` if they differ everywhere in the window.
pub fn common_ancestor(ours: &[(u64, B256)], theirs: &[(u64, B256)]) -> Option<u64> {
    ours.iter()
        .rev()
        .find(|(h, hash)| theirs.iter().any(|(th, thash)| th == h && thash == hash))
        .map(|(h, _)| *h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(level: i64, round: u64, hash: u8) -> ForkBlock {
        ForkBlock {
            level,
            round,
            hash: B256::repeat_byte(hash),
        }
    }

    #[test]
    fn the_rule_is_level_then_round_then_hash() {
        let cases = [
            // (ours, theirs, keep)
            // The main's branch beats a standby's, whichever was signed first.
            (b(1, 26, 9), b(0, 21, 9), Keep::Theirs),
            (b(0, 30, 1), b(1, 26, 0), Keep::Ours),
            // Two standbys that both stepped in: the lower level.
            (b(2, 31, 0), b(1, 36, 9), Keep::Theirs),
            // Same level (a misconfigured pair): the earlier round.
            (b(1, 40, 0), b(1, 39, 9), Keep::Theirs),
            (b(1, 39, 9), b(1, 40, 0), Keep::Ours),
            // Same level and round: the lower hash.
            (b(0, 50, 2), b(0, 50, 1), Keep::Theirs),
            (b(0, 50, 1), b(0, 50, 2), Keep::Ours),
            // The same block is no fork: keep ours.
            (b(0, 50, 1), b(0, 50, 1), Keep::Ours),
        ];
        for (ours, theirs, keep) in cases {
            assert_eq!(choose(&ours, &theirs), keep, "{ours:?} vs {theirs:?}");
            // Both followers of a fork agree: the rule is symmetric.
            if ours != theirs {
                let flipped = match keep {
                    Keep::Ours => Keep::Theirs,
                    Keep::Theirs => Keep::Ours,
                };
                assert_eq!(choose(&theirs, &ours), flipped);
            }
        }
    }

    #[test]
    fn the_common_ancestor_is_the_highest_shared_block() {
        let h = |n: u8| B256::repeat_byte(n);
        let ours = [(5, h(5)), (6, h(6)), (7, h(7)), (8, h(8))];
        let theirs = [(5, h(5)), (6, h(6)), (7, h(70)), (8, h(80))];
        assert_eq!(common_ancestor(&ours, &theirs), Some(6));
        // Different everywhere in the window: look further back.
        let theirs = [(5, h(50)), (6, h(60)), (7, h(70)), (8, h(80))];
        assert_eq!(common_ancestor(&ours, &theirs), None);
        // A shorter branch on their side.
        let theirs = [(5, h(5)), (6, h(60))];
        assert_eq!(common_ancestor(&ours, &theirs), Some(5));
    }
}

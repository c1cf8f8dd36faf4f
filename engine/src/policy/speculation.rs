//! Whether a follower executes a block it appended before the block is committed, and on what.
//!
//! A follower that waits for the commit before executing a block answers its clients one
//! execution later than the leader, which ran the block when it built it. Executing it as soon
//! as it is appended, while the leader gathers the quorum, takes that execution off the path
//! from commit to answer. The result is a memo keyed by block hash (the chain store's built
//! blocks): applying the block takes it only if the block extends the applied head then, and
//! its state root is checked again. So a wrong guess costs an execution, never correctness.
//!
//! A block is executed on the state after its parent, which this node holds in one of two
//! places: the *tip* (the last block it executed ahead, still unapplied) or the applied head.
//! Anything else (a parent it skipped, a leader's fork it never saw) is skipped: apply executes
//! it as before. So is this node's own block (building it left the memo already) and one too
//! far ahead of the applied head, whose memo would be forgotten before apply reaches it.

use alloy_primitives::B256;

/// Blocks ahead of the applied head a follower executes at most. The chain store remembers 16
/// built blocks; a node catching up appends hundreds at once and applies them as fast as it
/// can execute them, so executing further ahead would only execute them twice.
pub const MAX_AHEAD_BLOCKS: u64 = 8;

/// A block's place: its height and hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    pub height: u64,
    pub hash: B256,
}

/// An appended block, as far as the decision goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    pub height: u64,
    pub parent: B256,
    /// Proposed by this node.
    pub own: bool,
}

/// What to execute an appended block on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Base {
    /// The state after the tip, the last block executed ahead.
    Tip,
    /// The applied state.
    Applied,
    /// Nothing: apply executes it when committed. The tip is forgotten.
    Skip(Skipped),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skipped {
    /// This node built it: its execution is remembered already.
    Own,
    /// More than [`MAX_AHEAD_BLOCKS`] above the applied head.
    TooFarAhead,
    /// Its parent is neither the tip nor the applied head.
    UnknownParent,
}

/// Where `block` is executed, given the `tip` (if any) and the `applied` head.
pub fn base_for(block: Appended, tip: Option<Place>, applied: Place) -> Base {
    if block.own {
        return Base::Skip(Skipped::Own);
    }
    if block.height > applied.height.saturating_add(MAX_AHEAD_BLOCKS) {
        return Base::Skip(Skipped::TooFarAhead);
    }
    // The tip first: while blocks arrive faster than they are applied, the applied head is
    // behind and only the tip is the parent.
    if tip.is_some_and(|t| t.hash == block.parent && t.height + 1 == block.height) {
        return Base::Tip;
    }
    if applied.hash == block.parent && applied.height + 1 == block.height {
        return Base::Applied;
    }
    Base::Skip(Skipped::UnknownParent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(n: u8) -> B256 {
        B256::repeat_byte(n)
    }

    fn place(height: u64, h: u8) -> Place {
        Place {
            height,
            hash: hash(h),
        }
    }

    fn block(height: u64, parent: u8, own: bool) -> Appended {
        Appended {
            height,
            parent: hash(parent),
            own,
        }
    }

    #[test]
    fn each_appended_block_is_executed_on_its_parent_or_skipped() {
        // (block, tip, applied, expected)
        let table = [
            // The next block on the applied head, nothing ahead.
            (block(11, 10, false), None, place(10, 10), Base::Applied),
            // The next on the tip, the applied head behind.
            (
                block(13, 12, false),
                Some(place(12, 12)),
                place(10, 10),
                Base::Tip,
            ),
            // The tip went stale (applied past it): the applied head is the parent.
            (
                block(13, 12, false),
                Some(place(11, 11)),
                place(12, 12),
                Base::Applied,
            ),
            // A new leader's block on a parent this node never executed ahead.
            (
                block(13, 99, false),
                Some(place(12, 12)),
                place(10, 10),
                Base::Skip(Skipped::UnknownParent),
            ),
            // The parent's hash at the wrong height is not the parent.
            (
                block(14, 12, false),
                Some(place(12, 12)),
                place(12, 12),
                Base::Skip(Skipped::UnknownParent),
            ),
            // This node's own block.
            (
                block(11, 10, true),
                None,
                place(10, 10),
                Base::Skip(Skipped::Own),
            ),
            // Exactly as far ahead as allowed, then one more.
            (
                block(10 + MAX_AHEAD_BLOCKS, 17, false),
                Some(place(9 + MAX_AHEAD_BLOCKS, 17)),
                place(10, 10),
                Base::Tip,
            ),
            (
                block(11 + MAX_AHEAD_BLOCKS, 18, false),
                Some(place(10 + MAX_AHEAD_BLOCKS, 18)),
                place(10, 10),
                Base::Skip(Skipped::TooFarAhead),
            ),
        ];
        for (i, (b, tip, applied, expected)) in table.into_iter().enumerate() {
            assert_eq!(base_for(b, tip, applied), expected, "row {i}");
        }
    }
}

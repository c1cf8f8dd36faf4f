//! Who holds the batcher role, as Raft agreed it: the first of the two fences around a takeover.
//! A node takes the role with a `ClaimBatcher` entry through the Raft log, applied as a
//! compare-and-set on the epoch, so of two claims for the same epoch exactly one wins on every
//! node. The second fence is the settlement contract's epoch check: a deposed batcher's
//! transactions carry the old epoch and revert once the new one is on L1.

use serde::{Deserialize, Serialize};

use crate::ids::NodeId;

/// The replicated record of the batcher role. Epoch 0 with no holder: nobody claimed yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatcherRole {
    pub epoch: u64,
    pub holder: Option<NodeId>,
    /// The holder's `batcher_redundancy_level` when it claimed (0: the main batcher).
    pub level: u32,
}

/// A node's claim of the batcher role at `epoch`, as carried by a Raft entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatcherClaim {
    pub epoch: u64,
    pub node: NodeId,
    pub level: u32,
}

/// Why a claim did not take the role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("claim for batcher epoch {claimed} lost: the role is at epoch {current}")]
pub struct ClaimLost {
    pub claimed: u64,
    pub current: u64,
}

impl BatcherRole {
    /// Applies `claim`: it wins only if it names the epoch right after the current one, so a
    /// claim made on a stale view, or the second of two racing claims, changes nothing.
    pub fn apply(&mut self, claim: &BatcherClaim) -> Result<(), ClaimLost> {
        if claim.epoch != self.epoch + 1 {
            return Err(ClaimLost {
                claimed: claim.epoch,
                current: self.epoch,
            });
        }
        *self = BatcherRole {
            epoch: claim.epoch,
            holder: Some(claim.node),
            level: claim.level,
        };
        Ok(())
    }

    pub fn is_held_by(&self, node: &NodeId) -> bool {
        self.holder.as_ref() == Some(node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(epoch: u64, n: u8, level: u32) -> BatcherClaim {
        BatcherClaim {
            epoch,
            node: NodeId([n; 64]),
            level,
        }
    }

    #[test]
    fn claims_are_compare_and_set_on_the_epoch() {
        let mut role = BatcherRole::default();
        // (claim, wins?, epoch and holder after)
        let table = [
            (claim(2, 1, 0), false, 0, None),
            (claim(1, 1, 0), true, 1, Some(1)),
            // The same epoch again, from a racing claimant: one winner.
            (claim(1, 2, 1), false, 1, Some(1)),
            (claim(0, 2, 1), false, 1, Some(1)),
            (claim(2, 2, 1), true, 2, Some(2)),
            (claim(3, 1, 0), true, 3, Some(1)),
        ];
        for (c, wins, epoch, holder) in table {
            let r = role.apply(&c);
            assert_eq!(r.is_ok(), wins, "{c:?}");
            assert_eq!(role.epoch, epoch, "{c:?}");
            assert_eq!(role.holder, holder.map(|n| NodeId([n; 64])), "{c:?}");
        }
        assert_eq!(role.level, 0);
        assert_eq!(
            role.apply(&claim(3, 2, 1)),
            Err(ClaimLost {
                claimed: 3,
                current: 3
            })
        );
    }
}

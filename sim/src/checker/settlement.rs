//! The checker's part for L1: every node seals the same contiguous batches of the canonical
//! chain, and L1 commits them in order, each from the batcher that won its epoch.

use std::collections::BTreeMap;
use std::time::Duration;

use alloy_primitives::{keccak256, B256};

use super::{Checker, SealedBatch};

impl Checker {
    /// The last batch L1 committed: (number, last height); (0, 0) before the first.
    pub fn l1_head(&self) -> (u64, u64) {
        self.l1.last().copied().unwrap_or((0, 0))
    }

    /// L1 committed batch `number`, sent by node `sender` at `epoch`: one more than its last,
    /// continuing its range, ending on the canonical chain's state root at that height, the
    /// batch the nodes sealed, at an epoch not below the last, and sent by the node that won
    /// that epoch's claim through Raft (a deposed batcher's commits must all revert).
    #[allow(clippy::too_many_arguments)]
    pub fn l1_committed(
        &mut self,
        at: Duration,
        sender: usize,
        epoch: u64,
        number: u64,
        first_height: u64,
        last_height: u64,
        state_root: B256,
        commitment: B256,
    ) {
        const FENCE: &str = "only the batcher that won an epoch's claim commits at that epoch, and L1's epoch never falls";
        if epoch < self.l1_epoch {
            self.fail(
                FENCE,
                sender,
                Some(last_height),
                at,
                format!(
                    "L1 committed batch {number} at epoch {epoch} after epoch {}",
                    self.l1_epoch
                ),
            );
        }
        self.l1_epoch = epoch;
        let winner = self.claim_winners.get(&epoch).copied();
        let sender_id = self.node_ids.get(sender).copied();
        if winner.is_none() || winner != sender_id {
            self.fail(
                FENCE,
                sender,
                Some(last_height),
                at,
                format!(
                    "n{sender} committed batch {number} at epoch {epoch}, whose claim {}",
                    match winner {
                        Some(w) => format!("{w} won"),
                        None => "nobody won".into(),
                    }
                ),
            );
        }
        const INV: &str = "L1 batches rise by one over contiguous ranges of the canonical chain";
        let (last_number, last_height_before) = self.l1_head();
        if number != last_number + 1 || first_height != last_height_before + 1 {
            self.fail(INV, 0, Some(last_height), at, format!(
                "L1 committed batch {number} ({first_height}..={last_height}) after batch {last_number} ending at {last_height_before}"
            ));
        }
        let canonical_root = self.canonical.get(&last_height).map(|c| c.state_root);
        if canonical_root != Some(state_root) {
            self.fail(INV, 0, Some(last_height), at, format!(
                "L1 batch {number} ends on state root {state_root}, the canonical chain has {canonical_root:?}"
            ));
        }
        match self.batches.get(&number) {
            Some(b) if b.commitment == commitment => {}
            other => self.fail(
                INV,
                0,
                Some(last_height),
                at,
                format!(
                    "L1 batch {number} has commitment {commitment}; the nodes sealed {other:?}"
                ),
            ),
        }
        self.l1.push((number, last_height));
    }

    /// The batches sealed so far, by number.
    pub fn sealed_batches(&self) -> &BTreeMap<u64, SealedBatch> {
        &self.batches
    }

    /// A node sealed batch `number`: it must be the canonical batch of that number (all nodes
    /// agree), continue the batch before it with no gap or overlap, end on a canonical block
    /// with that block's state root, and carry the commitment the checker computes itself
    /// from the canonical block hashes (keccak over the six ABI words the contract hashes).
    pub(super) fn batch_sealed(
        &mut self,
        node: usize,
        at: Duration,
        number: u64,
        got: SealedBatch,
    ) {
        const INV: &str = "every node seals the same contiguous L1 batches of the canonical chain";
        if let Some(first) = self.batches.get(&number).copied() {
            if first != got {
                self.fail(
                    INV,
                    node,
                    Some(got.last_height),
                    at,
                    format!("batch {number}: sealed {got:?}, another node sealed {first:?}"),
                );
            }
            return;
        }
        let (prev_last, prev_commitment) = match number {
            0 => {
                self.fail(INV, node, None, at, "batch number 0".into());
                return;
            }
            1 => (0, B256::ZERO),
            n => match self.batches.get(&(n - 1)) {
                Some(p) => (p.last_height, p.commitment),
                None => {
                    self.fail(
                        INV,
                        node,
                        Some(got.last_height),
                        at,
                        format!("batch {number} sealed before batch {} ever was", n - 1),
                    );
                    return;
                }
            },
        };
        let len = got.last_height.saturating_sub(got.first_height) + 1;
        if got.first_height != prev_last + 1 || got.last_height < got.first_height {
            self.fail(
                INV,
                node,
                Some(got.last_height),
                at,
                format!(
                    "batch {number} covers {}..={} after a batch ending at {prev_last}",
                    got.first_height, got.last_height
                ),
            );
        } else if self.blocks_per_batch > 0 && len > self.blocks_per_batch {
            self.fail(
                INV,
                node,
                Some(got.last_height),
                at,
                format!(
                    "batch {number} holds {len} blocks, over {}",
                    self.blocks_per_batch
                ),
            );
        } else {
            let hashes: Option<Vec<B256>> = (got.first_height..=got.last_height)
                .map(|h| self.canonical.get(&h).map(|c| c.hash))
                .collect();
            let root = self.canonical.get(&got.last_height).map(|c| c.state_root);
            match hashes {
                Some(hashes) if root == Some(got.state_root) => {
                    let mut concat = Vec::with_capacity(32 * hashes.len());
                    hashes.iter().for_each(|h| concat.extend_from_slice(h.as_slice()));
                    let word = |v: u64| B256::left_padding_from(&v.to_be_bytes());
                    let mut abi = Vec::with_capacity(6 * 32);
                    for w in [
                        word(number),
                        prev_commitment,
                        word(got.first_height),
                        word(got.last_height),
                        got.state_root,
                        keccak256(&concat),
                    ] {
                        abi.extend_from_slice(w.as_slice());
                    }
                    let expected = keccak256(&abi);
                    if expected != got.commitment {
                        self.fail(INV, node, Some(got.last_height), at, format!(
                            "batch {number}: commitment {}, the canonical blocks give {expected}",
                            got.commitment
                        ));
                    }
                }
                _ => self.fail(INV, node, Some(got.last_height), at, format!(
                    "batch {number} ends on state root {} at {}, not the canonical chain's {root:?} (or a block is not canonical)",
                    got.state_root, got.last_height
                )),
            }
        }
        self.batches.insert(number, got);
    }
}

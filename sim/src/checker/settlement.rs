//! The checker's part for L1: every node seals the same contiguous batches of the canonical
//! chain, and L1 commits them in order, each from the batcher that won its epoch. L1's
//! attester set follows the chain's membership: a batch ends at each block declaring members
//! and commits to their addresses, and after each batch L1 holds the set that certifies the
//! blocks after it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use alloy_primitives::{keccak256, Address, B256};

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

    /// L1 committed batch `number`, ending at `last_height`, and now holds `attesters`: they
    /// must be the L1 addresses of the set that certifies the block after it (the genesis
    /// members, or the last set a block up to `last_height` declared).
    pub fn l1_attesters(
        &mut self,
        at: Duration,
        number: u64,
        last_height: u64,
        attesters: &[Address],
    ) {
        const RULE: &str =
            "after each batch L1's attesters are the chain's signers after its last block";
        let members = self.holders.members_for(last_height + 1).clone();
        let expected = self.addresses(&members);
        // The deployment registers its set in node order; a named set comes ascending.
        let mut held = attesters.to_vec();
        held.sort();
        if expected != Some(held) {
            self.fail(RULE, 0, Some(last_height), at, format!(
                "after batch {number} L1 holds attesters {attesters:?}; the chain's signers after height {last_height} are nodes {members:?}"
            ));
        }
    }

    /// The L1 addresses of nodes `members`, ascending (`None`: an index names no node).
    fn addresses(&self, members: &BTreeSet<usize>) -> Option<Vec<Address>> {
        let mut out = members
            .iter()
            .map(|&i| {
                self.node_ids
                    .get(i)
                    .map(|id| Address::from_raw_public_key(&id.0))
            })
            .collect::<Option<Vec<Address>>>()?;
        out.sort();
        Some(out)
    }

    /// The batches sealed so far, by number.
    pub fn sealed_batches(&self) -> &BTreeMap<u64, SealedBatch> {
        &self.batches
    }

    /// A node sealed batch `number`: it must be the canonical batch of that number (all nodes
    /// agree), continue the batch before it with no gap or overlap, end on a canonical block
    /// with that block's state root, end at any block declaring members, and carry the
    /// commitment the checker computes itself from the canonical block hashes and the
    /// declared members (keccak over the seven ABI words the contract hashes).
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
        } else if let Some(&inside) = self
            .holders
            .declared_in(got.first_height..got.last_height)
            .first()
        {
            self.fail(
                "a batch ends at each block that declares members",
                node,
                Some(got.last_height),
                at,
                format!(
                    "batch {number} covers {}..={} past the declaration at {inside}",
                    got.first_height, got.last_height
                ),
            );
        } else {
            // What the batch commits to of its next attesters: the members its last block
            // declared, as abi.encodePacked(address[]) of their ascending addresses.
            let declared = self.holders.declared_at(got.last_height).cloned();
            let next = declared
                .map(|set| self.addresses(&set).unwrap_or_default())
                .unwrap_or_default();
            let mut packed = Vec::with_capacity(32 * next.len());
            next.iter().for_each(|a| {
                packed.extend_from_slice(B256::left_padding_from(a.as_slice()).as_slice())
            });
            let hashes: Option<Vec<B256>> = (got.first_height..=got.last_height)
                .map(|h| self.canonical.get(&h).map(|c| c.hash))
                .collect();
            let root = self.canonical.get(&got.last_height).map(|c| c.state_root);
            match hashes {
                Some(hashes) if root == Some(got.state_root) => {
                    let mut concat = Vec::with_capacity(32 * hashes.len());
                    hashes.iter().for_each(|h| concat.extend_from_slice(h.as_slice()));
                    let word = |v: u64| B256::left_padding_from(&v.to_be_bytes());
                    let mut abi = Vec::with_capacity(7 * 32);
                    for w in [
                        word(number),
                        prev_commitment,
                        word(got.first_height),
                        word(got.last_height),
                        got.state_root,
                        keccak256(&concat),
                        keccak256(&packed),
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

/// A batch of blocks `first..=last` of the checker tests' chain (block `h` hashes to
/// `[h; 32]`, every state root is `0xee`), naming `next` as its next attesters.
#[cfg(test)]
pub(super) fn test_batch(
    number: u64,
    previous: B256,
    first: u64,
    last: u64,
    next: Vec<Address>,
) -> canon_engine::settlement::batch::BatchHeader {
    canon_engine::settlement::batch::BatchHeader {
        number,
        previous,
        first_height: first,
        last_height: last,
        state_root: B256::repeat_byte(0xee),
        block_hashes_hash: canon_engine::settlement::batch::block_hashes_hash(
            &(first..=last)
                .map(|h| B256::repeat_byte(h as u8))
                .collect::<Vec<_>>(),
        ),
        next_attesters: next,
    }
}

#[cfg(test)]
mod tests {
    use canon_engine::events::Event;
    use canon_engine::keys::derived_key;
    use canon_engine::settlement::batch::{attester_addresses, BatchHeader};
    use canon_engine::NodeId;

    use super::*;

    const ENDS: &str = "a batch ends at each block that declares members";
    const HANDED: &str =
        "after each batch L1's attesters are the chain's signers after its last block";
    const SEALED: &str = "every node seals the same contiguous L1 batches of the canonical chain";

    fn at() -> Duration {
        Duration::from_millis(5)
    }

    /// Four nodes (three at genesis); blocks 1..=4 with hashes 1..=4; the block at 2 declares
    /// nodes {0, 1, 3}.
    fn setup() -> (Checker, Vec<NodeId>) {
        let g = B256::ZERO;
        let ids: Vec<NodeId> = (0..4)
            .map(|i| derived_key("checker-l1-members", i).node_id())
            .collect();
        let mut c = Checker::new(4, g);
        c.set_node_ids(ids.clone());
        c.set_genesis_members(3);
        let mut parent = g;
        for h in 1..=4u64 {
            c.observe(
                0,
                at(),
                &Event::BlockApplied {
                    index: h,
                    height: h,
                    hash: B256::repeat_byte(h as u8),
                    parent_hash: parent,
                    state_root: B256::repeat_byte(0xee),
                    timestamp_ms: h,
                    term: 1,
                    proposer: NodeId::default(),
                    transactions: 0,
                },
            );
            if h == 2 {
                let members = vec![ids[0], ids[1], ids[3]];
                c.observe(0, at(), &Event::MembersDeclared { height: 2, members });
            }
            parent = B256::repeat_byte(h as u8);
        }
        (c, ids)
    }

    fn seal(c: &mut Checker, h: &BatchHeader) {
        c.observe(
            0,
            at(),
            &Event::BatchSealed {
                number: h.number,
                first_height: h.first_height,
                last_height: h.last_height,
                state_root: h.state_root,
                commitment: h.commitment(),
            },
        );
    }

    fn rules(c: &Checker) -> Vec<&'static str> {
        c.violations().iter().map(|v| v.invariant).collect()
    }

    #[test]
    fn a_batch_ends_at_a_declaration_names_its_members_and_l1_takes_them() {
        // Right: batch 1 ends at the declaration naming {0, 1, 3}; L1 then holds them.
        let (mut ok, ids) = setup();
        let named = attester_addresses(&[ids[0], ids[1], ids[3]]);
        let b1 = test_batch(1, B256::ZERO, 1, 2, named.clone());
        seal(&mut ok, &b1);
        seal(&mut ok, &test_batch(2, b1.commitment(), 3, 4, Vec::new()));
        ok.l1_attesters(at(), 1, 2, &named);
        assert!(ok.violations().is_empty(), "{:?}", ok.violations());

        // A batch running past the declaration.
        let (mut past, _) = setup();
        seal(&mut past, &test_batch(1, B256::ZERO, 1, 3, Vec::new()));
        assert_eq!(rules(&past), [ENDS]);

        // Ending there but naming nobody, or another set: its commitment is not the chain's.
        for next in [Vec::new(), attester_addresses(&ids[..3])] {
            let (mut unnamed, _) = setup();
            seal(&mut unnamed, &test_batch(1, B256::ZERO, 1, 2, next));
            assert_eq!(rules(&unnamed), [SEALED]);
        }

        // L1 kept the genesis set after the batch that named the new one, or took a set
        // before any was declared.
        let (mut kept, ids) = setup();
        kept.l1_attesters(at(), 1, 2, &attester_addresses(&ids[..3]));
        assert_eq!(rules(&kept), [HANDED]);
        let (mut early, ids) = setup();
        early.l1_attesters(at(), 1, 1, &attester_addresses(&[ids[0], ids[1], ids[3]]));
        assert_eq!(rules(&early), [HANDED]);
    }
}

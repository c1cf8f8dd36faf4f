//! The blocks a Raft snapshot jumped over.
//!
//! A snapshot carries the applied state (head, accounts, batch cursor, batcher role), not the
//! blocks: the log is compacted so disk grows once per block, and a snapshot the size of the
//! chain would grow with the chain. A node that installs one keeps every block up to its old
//! head and stores every block it applies after the snapshot's head; the blocks between are
//! fetched from peers by the block-download protocol (`GetBlocks`).
//!
//! A fetched range is trusted only through the hash chain that ends at the snapshot's head,
//! which Raft committed: the range's highest block must hash to the hash expected next (at
//! first the head's), each block below to its successor's parent hash, and, once the gap is
//! closed, the lowest one's parent must be the old head. So filling goes downward, and every
//! stored block is linked to the committed head before it is written. Then the gap's L1
//! batches are cut again by the chain's rule and attested; the cursor that gives must be the
//! snapshot's.
//!
//! [`Backfill`] is the pure record of where that stands; it is stored with each range it
//! accepts, so a crash resumes where the disk left it.
//!
//! The same gap serves a node whose disk rotted blocks below its head
//! ([`crate::policy::repair`]): [`refetch_span`] widens the damaged heights to whole batches,
//! and [`Backfill::over`] opens a gap there, which fills and closes as a snapshot's does.

use alloy_primitives::B256;
use serde::{Deserialize, Serialize};

use crate::chain::block::{transactions_root, Block};
use crate::chain::rules::Head;
use crate::settlement::batch::BatchCursor;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backfill {
    /// Every block up to this height is stored: the applied head before the first snapshot.
    pub base_height: u64,
    pub base_hash: B256,
    /// The batch cursor after `base_height`: where cutting the gap's batches again starts.
    pub base_batches: BatchCursor,
    /// The installed snapshot's head and the batch cursor after it.
    pub top_height: u64,
    pub top_batches: BatchCursor,
    /// Blocks `filled_from..=top_height` are stored and chain to the top.
    pub filled_from: u64,
    /// The hash the block at `filled_from - 1` must have.
    pub next_hash: B256,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BackfillError {
    #[error("the answer does not reach height {wanted} (its last block is at {got:?})")]
    Short { wanted: u64, got: Option<u64> },
    #[error("the answer skips from height {after} to {next}")]
    NotContiguous { after: u64, next: u64 },
    #[error(
        "block {height} hashes to {got}, the chain down from the snapshot head needs {expected}"
    )]
    WrongHash {
        height: u64,
        expected: B256,
        got: B256,
    },
    #[error("block {height}'s transactions do not match its header's transactions root")]
    WrongBody { height: u64 },
    #[error("block {height} cannot be hashed: {reason}")]
    Unhashable { height: u64, reason: String },
    #[error(
        "the gap does not join the stored chain: block {height} names parent {parent}, the stored block there is {stored}"
    )]
    Disjoint {
        height: u64,
        parent: B256,
        stored: B256,
    },
    #[error("block {height} of the filled gap is not stored")]
    NotStored { height: u64 },
    #[error("cutting the gap's batches again ends at {got:?}, the snapshot holds {expected:?}")]
    BatchesDisagree {
        expected: Box<BatchCursor>,
        got: Box<BatchCursor>,
    },
}

impl BackfillError {
    /// A short label for reports: which rule the answer broke.
    pub fn kind(&self) -> &'static str {
        match self {
            BackfillError::Short { .. } => "short",
            BackfillError::NotContiguous { .. } => "not_contiguous",
            BackfillError::WrongHash { .. } => "wrong_hash",
            BackfillError::WrongBody { .. } => "wrong_body",
            BackfillError::Unhashable { .. } => "unhashable",
            BackfillError::Disjoint { .. } => "disjoint",
            BackfillError::NotStored { .. } => "not_stored",
            BackfillError::BatchesDisagree { .. } => "batches_disagree",
        }
    }
}

impl Backfill {
    /// What is missing after installing a snapshot whose head is `snapshot` (with batch cursor
    /// `snapshot_batches`) over a node whose applied head was `old` (cursor `old_batches`), with
    /// `pending` the backfill it had not finished. `None` when no block is missing.
    pub fn after_snapshot(
        pending: Option<&Backfill>,
        old: &Head,
        old_batches: &BatchCursor,
        snapshot: &Head,
        snapshot_batches: &BatchCursor,
    ) -> Option<Backfill> {
        // An unfinished gap keeps its base: the blocks between are refetched or found again.
        let (base_height, base_hash, base_batches) = match pending {
            Some(p) => (p.base_height, p.base_hash, p.base_batches.clone()),
            None => (old.height, old.hash, old_batches.clone()),
        };
        if snapshot.height <= base_height {
            return None;
        }
        Some(Backfill {
            base_height,
            base_hash,
            base_batches,
            top_height: snapshot.height,
            top_batches: snapshot_batches.clone(),
            filled_from: snapshot.height + 1,
            next_hash: snapshot.hash,
        })
    }

    /// A gap over stored blocks `base.height + 1..=top.height` that are to be fetched again:
    /// `base` and `top` are each a height, the hash of the block there and the batch cursor
    /// after it. Cutting again from `base`'s cursor must give `top`'s, so both are batch
    /// boundaries or `top` is the applied head ([`refetch_span`]).
    pub fn over(base: (u64, B256, BatchCursor), top: (u64, B256, BatchCursor)) -> Backfill {
        let (base_height, base_hash, base_batches) = base;
        let (top_height, top_hash, top_batches) = top;
        Backfill {
            base_height,
            base_hash,
            base_batches,
            top_height,
            top_batches,
            filled_from: top_height + 1,
            next_hash: top_hash,
        }
    }

    /// The heights still missing, lowest and highest; `None` once the gap is closed.
    pub fn missing(&self) -> Option<(u64, u64)> {
        let hi = self.filled_from.checked_sub(1)?;
        (hi > self.base_height).then_some((self.base_height + 1, hi))
    }

    /// How many blocks are missing.
    pub fn missing_blocks(&self) -> u64 {
        self.missing().map_or(0, |(lo, hi)| hi - lo + 1)
    }

    /// The next range to ask for, at most `max` blocks: the top of what is missing.
    pub fn next_request(&self, max: u64) -> Option<(u64, u64)> {
        let (lo, hi) = self.missing()?;
        let from = lo.max(hi.saturating_sub(max.max(1) - 1));
        Some((from, hi - from + 1))
    }

    /// Takes a fetched range (ascending, as `GetBlocks` answers). Blocks outside the gap are
    /// ignored; the rest must be contiguous, reach the highest missing height and chain down
    /// from the hash expected there. Returns the accepted blocks, with their hashes, and moves
    /// the record below them. Nothing changes on an error.
    pub fn accept<'a>(
        &mut self,
        blocks: &'a [Block],
    ) -> Result<Vec<(&'a Block, B256)>, BackfillError> {
        let Some((lo, hi)) = self.missing() else {
            return Ok(Vec::new());
        };
        let in_gap: Vec<&Block> = blocks
            .iter()
            .filter(|b| (lo..=hi).contains(&b.header.height))
            .collect();
        for pair in in_gap.windows(2) {
            let (a, b) = (pair[0].header.height, pair[1].header.height);
            if b != a + 1 {
                return Err(BackfillError::NotContiguous { after: a, next: b });
            }
        }
        let last = in_gap.last().map(|b| b.header.height);
        if last != Some(hi) {
            return Err(BackfillError::Short {
                wanted: hi,
                got: blocks.last().map(|b| b.header.height),
            });
        }
        let mut expected = self.next_hash;
        let mut accepted = Vec::with_capacity(in_gap.len());
        for block in in_gap.iter().rev() {
            let height = block.header.height;
            let hash = block.hash().map_err(|e| BackfillError::Unhashable {
                height,
                reason: e.to_string(),
            })?;
            if hash != expected {
                return Err(BackfillError::WrongHash {
                    height,
                    expected,
                    got: hash,
                });
            }
            let root = transactions_root(&block.transactions);
            if root != block.header.transactions_root {
                return Err(BackfillError::WrongBody { height });
            }
            expected = block.header.parent_hash;
            accepted.push((*block, hash));
        }
        accepted.reverse();
        let lowest = accepted[0].0.header.height;
        if lowest == self.base_height + 1 && expected != self.base_hash {
            return Err(BackfillError::Disjoint {
                height: lowest,
                parent: expected,
                stored: self.base_hash,
            });
        }
        self.filled_from = lowest;
        self.next_hash = expected;
        Ok(accepted)
    }

    /// Checks the cursor that cutting the gap's blocks again from `base_batches` gave.
    pub fn check_recut(&self, cursor: &BatchCursor) -> Result<(), BackfillError> {
        if *cursor == self.top_batches {
            return Ok(());
        }
        Err(BackfillError::BatchesDisagree {
            expected: Box::new(self.top_batches.clone()),
            got: Box::new(cursor.clone()),
        })
    }
}

/// Where a gap to fetch blocks `lowest..=highest` again must start and end, so the batches
/// cut again over it are whole ones: from the last height of the last batch sealed below
/// `lowest` (0 before the first batch) to the last height of the first batch sealed at or
/// above `highest`, or the applied head `head` when the open batch holds it.
/// `sealed_last_heights` are the sealed batches' last heights, ascending.
pub fn refetch_span(
    lowest: u64,
    highest: u64,
    sealed_last_heights: &[u64],
    head: u64,
) -> (u64, u64) {
    let base = sealed_last_heights
        .iter()
        .copied()
        .take_while(|last| *last < lowest)
        .last()
        .unwrap_or(0);
    let top = sealed_last_heights
        .iter()
        .copied()
        .find(|last| *last >= highest)
        .unwrap_or(head);
    (base, top)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::block::ChainSpec;
    use crate::chain::rules::{build_block, Proposal};
    use crate::keys::derived_key;

    /// A chain of `n` empty blocks (index 0 is height 1) and the genesis head.
    fn chain(n: u64) -> (Head, Vec<Block>) {
        let spec = ChainSpec {
            chain_id: 3,
            app: crate::app::App::new(crate::app::ledger::LedgerApp::default()),
            blocks_per_batch: 4,
        };
        let genesis = Head::of(&spec.genesis_header().expect("genesis")).expect("head");
        let ledger = spec.genesis_state();
        let key = derived_key("backfill-test", 0);
        let mut head = genesis;
        let mut blocks = Vec::new();
        for _ in 0..n {
            let built = build_block(
                Proposal {
                    head: &head,
                    state: &ledger,
                    key: &key,
                    term: 1,
                    slot: None,
                    seals_batch: false,
                    members: None,
                    timestamp_ms: head.timestamp_ms + 1,
                    max_transactions: 0,
                },
                Vec::new(),
            )
            .expect("build");
            head = Head::of(&built.block.header).expect("head");
            blocks.push(built.block);
        }
        (genesis, blocks)
    }

    fn head_at(blocks: &[Block], height: u64) -> Head {
        Head::of(&blocks[height as usize - 1].header).expect("head")
    }

    fn range(blocks: &[Block], from: u64, to: u64) -> Vec<Block> {
        blocks[from as usize - 1..to as usize].to_vec()
    }

    /// A gap over heights 4..=10 (old head 3, snapshot head 10).
    fn gap(blocks: &[Block]) -> Backfill {
        Backfill::after_snapshot(
            None,
            &head_at(blocks, 3),
            &BatchCursor::default(),
            &head_at(blocks, 10),
            &BatchCursor::default(),
        )
        .expect("a gap")
    }

    #[test]
    fn fills_downward_in_ranges_and_joins_the_old_head() {
        let (_, blocks) = chain(12);
        let mut bf = gap(&blocks);
        assert_eq!(bf.missing(), Some((4, 10)));
        assert_eq!(bf.next_request(3), Some((8, 3)));
        let top = range(&blocks, 8, 10);
        assert_eq!(bf.accept(&top).expect("top range").len(), 3);
        assert_eq!(bf.missing(), Some((4, 7)));
        assert_eq!(bf.next_request(100), Some((4, 4)));
        // An answer that runs past the gap (into what is already filled) is cut to the gap.
        bf.accept(&range(&blocks, 4, 9)).expect("the rest");
        assert_eq!(bf.missing(), None);
        assert_eq!(bf.missing_blocks(), 0);
        assert_eq!(bf.next_request(5), None);
    }

    #[test]
    fn refuses_what_does_not_chain_to_the_snapshot_head() {
        let (_, blocks) = chain(12);
        let key = derived_key("backfill-test", 1);
        let stray = crate::app::ledger::Transaction {
            sender: key.address(),
            nonce: 0,
            payload: crate::app::ledger::Payload::Data(vec![1]),
        }
        .sign(&key)
        .expect("sign")
        .to_tx()
        .expect("encode");
        type Expected = fn(&BackfillError) -> bool;
        let table: Vec<(&str, Vec<Block>, Expected)> = vec![
            ("short of the top", range(&blocks, 6, 9), |e| {
                matches!(e, BackfillError::Short { wanted: 10, .. })
            }),
            ("empty", Vec::new(), |e| {
                matches!(e, BackfillError::Short { got: None, .. })
            }),
            (
                "a hole",
                {
                    let mut r = range(&blocks, 7, 10);
                    r.remove(1);
                    r
                },
                |e| matches!(e, BackfillError::NotContiguous { after: 7, next: 9 }),
            ),
            (
                "the top altered",
                {
                    let mut r = range(&blocks, 8, 10);
                    r[2].header.timestamp_ms += 1;
                    r
                },
                |e| matches!(e, BackfillError::WrongHash { height: 10, .. }),
            ),
            (
                "a middle block altered",
                {
                    let mut r = range(&blocks, 8, 10);
                    r[0].header.timestamp_ms += 1;
                    r
                },
                |e| matches!(e, BackfillError::WrongHash { height: 8, .. }),
            ),
            (
                "a body swapped",
                {
                    let mut r = range(&blocks, 8, 10);
                    r[1].transactions.push(stray.clone());
                    r
                },
                |e| matches!(e, BackfillError::WrongBody { height: 9 }),
            ),
        ];
        for (name, answer, expected) in table {
            let mut bf = gap(&blocks);
            let before = bf.clone();
            match bf.accept(&answer) {
                Err(e) => assert!(expected(&e), "{name}: {e}"),
                Ok(_) => panic!("{name}: accepted"),
            }
            assert_eq!(bf, before, "{name}: the record moved on an error");
        }
    }

    #[test]
    fn refuses_a_gap_that_does_not_join_the_stored_chain() {
        let (_, blocks) = chain(12);
        let mut bf = gap(&blocks);
        bf.base_hash = B256::repeat_byte(7);
        let e = bf.accept(&range(&blocks, 4, 10)).expect_err("disjoint");
        assert!(
            matches!(e, BackfillError::Disjoint { height: 4, .. }),
            "{e}"
        );
        assert_eq!(bf.missing(), Some((4, 10)));
    }

    #[test]
    fn a_second_snapshot_keeps_the_base_and_moves_the_top() {
        let (genesis, blocks) = chain(20);
        let mut first = Backfill::after_snapshot(
            None,
            &genesis,
            &BatchCursor::default(),
            &head_at(&blocks, 10),
            &BatchCursor::default(),
        )
        .expect("gap");
        first.accept(&range(&blocks, 6, 10)).expect("part");
        let second = Backfill::after_snapshot(
            Some(&first),
            &head_at(&blocks, 10),
            &BatchCursor::default(),
            &head_at(&blocks, 20),
            &BatchCursor::default(),
        )
        .expect("gap");
        assert_eq!(second.base_height, 0);
        assert_eq!(second.missing(), Some((1, 20)));
        // No gap when the snapshot is not above what is stored.
        assert!(Backfill::after_snapshot(
            None,
            &head_at(&blocks, 10),
            &BatchCursor::default(),
            &head_at(&blocks, 10),
            &BatchCursor::default(),
        )
        .is_none());
    }

    #[test]
    fn the_recut_must_end_at_the_snapshot_cursor() {
        let (_, blocks) = chain(12);
        let mut cursor = BatchCursor::default();
        let mut sealed = Vec::new();
        for b in &blocks[..10] {
            let hash = b.hash().expect("hash");
            sealed.extend(cursor.on_block(&b.header, hash, 4));
        }
        let bf = Backfill::after_snapshot(
            None,
            &head_at(&blocks, 3),
            &BatchCursor::default(),
            &head_at(&blocks, 10),
            &cursor,
        )
        .expect("gap");
        // Cut again from the base cursor (the one after height 3).
        let mut again = BatchCursor::default();
        for b in &blocks[..3] {
            again.on_block(&b.header, b.hash().expect("hash"), 4);
        }
        let from_base = Backfill {
            base_batches: again.clone(),
            ..bf.clone()
        };
        let mut recut = again;
        for b in &blocks[3..10] {
            recut.on_block(&b.header, b.hash().expect("hash"), 4);
        }
        assert_eq!(sealed.len(), 2);
        from_base.check_recut(&recut).expect("same cursor");
        let e = from_base
            .check_recut(&BatchCursor::default())
            .expect_err("differs");
        assert!(matches!(e, BackfillError::BatchesDisagree { .. }));
    }

    #[test]
    fn a_refetch_spans_whole_batches() {
        // Four blocks a batch, but a seal mark closed one at 9; the head is 18.
        let sealed = [4, 8, 9, 13, 17];
        // (lowest, highest damaged) -> (base, top)
        let table = [
            ((1, 1), (0, 4)),
            ((4, 4), (0, 4)),
            ((5, 5), (4, 8)),
            ((8, 9), (4, 9)),
            ((9, 9), (8, 9)),
            ((10, 10), (9, 13)),
            ((3, 14), (0, 17)),
            // In the open batch: up to the head.
            ((17, 17), (13, 17)),
            ((18, 18), (17, 18)),
        ];
        for ((lo, hi), expected) in table {
            assert_eq!(refetch_span(lo, hi, &sealed, 18), expected, "{lo}..={hi}");
        }
        // No batch sealed yet: from genesis to the head.
        assert_eq!(refetch_span(2, 3, &[], 7), (0, 7));
    }

    #[test]
    fn a_gap_over_stored_blocks_fills_downward_and_joins_its_base() {
        let (_, blocks) = chain(10);
        let hash = |h: u64| blocks[h as usize - 1].hash().expect("hash");
        let mut gap = Backfill::over(
            (4, hash(4), BatchCursor::default()),
            (8, hash(8), BatchCursor::default()),
        );
        assert_eq!(gap.missing(), Some((5, 8)));
        assert_eq!(gap.next_request(3), Some((6, 3)));
        let accepted = gap.accept(&blocks[5..8]).expect("6..=8 chain to 8's hash");
        assert_eq!(accepted.len(), 3);
        // Block 5 must be the one block 6 names as its parent.
        let mut other = blocks[4].clone();
        other.header.timestamp_ms += 1;
        assert!(matches!(
            gap.clone().accept(std::slice::from_ref(&other)),
            Err(BackfillError::WrongHash { height: 5, .. })
        ));
        gap.accept(&blocks[4..5])
            .expect("5 chains to 6's parent and joins 4");
        assert_eq!(gap.missing(), None);
    }
}

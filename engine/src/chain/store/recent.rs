//! The heights and hashes of the newest stored blocks, in memory. Every commit-vote round (a
//! node's own, and each peer's question to it) needs the hashes of the blocks past the
//! certified cursor; read from storage, that was a scan copying whole blocks to decode their
//! headers, nine times a block across three nodes (2.6% of all CPU at the key-value peak).
//!
//! It mirrors the block column as [`ChainStore::commit`] writes it: a block put there is
//! remembered with its header's hash, a deleted range forgets everything, and a bound drops the
//! oldest. Blocks written another way (backfill, below a snapshot) are not remembered; a
//! question this cannot answer in full is finished from storage.

use std::collections::BTreeMap;
use std::sync::Mutex;

use alloy_primitives::B256;

use crate::chain::block::BlockHeader;
use crate::codec::{self, CodecError};
use crate::storage::{Column, Op, WriteBatch};
use crate::sync::lock;

/// Heights remembered at most: several certifier rounds' worth.
pub(super) const REMEMBERED: usize = 4 * crate::policy::certifier::ROUND_HEIGHTS as usize;

#[derive(Default)]
pub(super) struct RecentHashes(Mutex<BTreeMap<u64, B256>>);

impl RecentHashes {
    /// What `batch`'s block writes will change, worked out before it is written (it is
    /// consumed by the write): the blocks it puts, and whether it deletes any.
    pub(super) fn staged(batch: &WriteBatch) -> Result<Staged, CodecError> {
        let mut staged = Staged::default();
        for op in &batch.ops {
            match op {
                Op::Put(Column::Block, _, value) => {
                    let header: BlockHeader = codec::decode_prefix(value)?;
                    staged.puts.push((header.height, header.hash()?));
                }
                Op::Delete(Column::Block, _) | Op::DeleteRange(Column::Block, _, _) => {
                    staged.deletes = true;
                }
                _ => {}
            }
        }
        Ok(staged)
    }

    /// Takes in what a written batch did to the block column.
    pub(super) fn written(&self, staged: Staged) {
        let mut held = lock(&self.0);
        if staged.deletes {
            held.clear();
        }
        held.extend(staged.puts);
        while held.len() > REMEMBERED {
            held.pop_first();
        }
    }

    /// The remembered run `from..=to`, at most `max`, stopping at the first height not
    /// remembered (empty when `from` is not).
    pub(super) fn run(&self, from: u64, to: u64, max: usize) -> Vec<(u64, B256)> {
        let mut out = Vec::new();
        if from > to {
            // A question about heights past the head (a peer ahead of this node) or an
            // empty range: `range` would panic on it.
            return out;
        }
        let held = lock(&self.0);
        for (expected, (height, hash)) in (from..=to).zip(held.range(from..=to)) {
            if *height != expected || out.len() == max {
                break;
            }
            out.push((*height, *hash));
        }
        out
    }
}

/// A batch's block writes; see [`RecentHashes::staged`].
#[derive(Default)]
pub(super) struct Staged {
    puts: Vec<(u64, B256)>,
    deletes: bool,
}

//! The backfill task on a consensus node: while an installed snapshot left a gap, it asks
//! peers for the missing blocks, top first, keeps what [`Backfill::accept`] verifies, and once
//! the gap is closed cuts the gap's L1 batches again and attests them. The rules are in
//! [`crate::chain::backfill`]; this task only carries them out.

use std::sync::Arc;
use std::time::Duration;

use openraft::AsyncRuntime;

use crate::chain::backfill::{Backfill, BackfillError};
use crate::chain::store::{
    stage_block_alone, stage_sealed_batch, StoreError, MAX_BLOCKS_PER_RESPONSE, MAX_RESPONSE_BYTES,
};
use crate::consensus::node::ConsensusNode;
use crate::events::Event;
use crate::ids::NodeId;
use crate::net::peer;
use crate::net::wire::{Request, Response};
use crate::storage::WriteBatch;

/// How long the task waits after every peer failed it, or a step could not be stored.
const RETRY_MS: u64 = 200;

/// Why a filled gap could not be closed.
#[derive(Debug)]
enum RecutError {
    /// This node's storage failed (a disk fault): retried until it works again.
    Storage(StoreError),
    /// The stored gap does not cut again to the snapshot's batches: it never will.
    Inconsistent(BackfillError),
}

impl From<StoreError> for RecutError {
    fn from(e: StoreError) -> Self {
        RecutError::Storage(e)
    }
}

/// What one request for missing blocks came to.
enum Step {
    /// Blocks were verified and stored (or a snapshot changed the gap meanwhile).
    Progress,
    /// The peer's answer was cut short by its size limit: ask for fewer.
    Short { got: u64 },
    /// The peer did not have them, did not answer, or answered wrongly: ask another.
    NextPeer,
}

impl<RT: AsyncRuntime> ConsensusNode<RT> {
    pub(crate) async fn backfill(self: Arc<Self>) {
        let mut turn = 0usize;
        let mut ask_for = u64::from(MAX_BLOCKS_PER_RESPONSE);
        let mut failures = 0usize;
        while !self.is_stopped() {
            let Some(gap) = self.chain().backfill() else {
                // Bounded, so a stopped node's task ends.
                let _ = RT::timeout(Duration::from_secs(1), self.chain().backfill_due()).await;
                continue;
            };
            let Some((from, count)) = gap.next_request(ask_for) else {
                if let Err(e) = self.recut(&gap) {
                    // This node's own failure, never a source's: no peer is blamed for it.
                    self.emit(match e {
                        RecutError::Storage(e) => Event::StorageFailed {
                            reason: e.to_string(),
                        },
                        RecutError::Inconsistent(e) => Event::BackfillRecutFailed {
                            from_height: gap.base_height + 1,
                            to_height: gap.top_height,
                            reason: e.to_string(),
                        },
                    });
                    RT::sleep(Duration::from_millis(RETRY_MS * 10)).await;
                }
                continue;
            };
            let sources = self.backfill_sources();
            let Some(source) = sources.get(turn % sources.len().max(1)).copied() else {
                RT::sleep(Duration::from_millis(RETRY_MS)).await;
                continue;
            };
            match self.fill_from(source, &gap, from, count).await {
                Step::Progress => {
                    ask_for = u64::from(MAX_BLOCKS_PER_RESPONSE);
                    failures = 0;
                }
                Step::Short { got } => ask_for = got.max(1),
                Step::NextPeer => {
                    turn += 1;
                    failures += 1;
                    ask_for = u64::from(MAX_BLOCKS_PER_RESPONSE);
                    if failures >= sources.len() {
                        failures = 0;
                        RT::sleep(Duration::from_millis(RETRY_MS)).await;
                    }
                }
            }
        }
    }

    /// The peers to ask, the leader first: it built the snapshot, so it holds its blocks.
    fn backfill_sources(&self) -> Vec<NodeId> {
        let leader = self.raft().metrics().borrow().current_leader;
        let mut out: Vec<NodeId> = leader.filter(|l| *l != self.id()).into_iter().collect();
        out.extend(
            self.config()
                .peers
                .iter()
                .filter(|p| **p != self.id() && Some(**p) != leader),
        );
        out
    }

    async fn fill_from(&self, source: NodeId, gap: &Backfill, from: u64, count: u64) -> Step {
        let req = Request::GetBlocks {
            from,
            max: u32::try_from(count).unwrap_or(MAX_BLOCKS_PER_RESPONSE),
            wait_ms: 0,
        };
        let timeout = Duration::from_millis(self.config().rpc_timeout_ms);
        let answer = peer::ask(&**self.transport(), source, &req, timeout, |r| match r {
            Response::Blocks(b) => Some(b),
            _ => None,
        });
        let Ok(blocks) = answer.await else {
            return Step::NextPeer;
        };
        let mut next = gap.clone();
        let accepted = match next.accept(&blocks) {
            Ok(a) => a,
            // A peer holds blocks only up to its own gap or head: nothing wrong with it.
            Err(BackfillError::Short { .. }) if blocks.is_empty() => return Step::NextPeer,
            Err(BackfillError::Short { .. })
                if blocks.first().map(|b| b.header.height) == Some(from) =>
            {
                return Step::Short {
                    got: blocks.len() as u64,
                }
            }
            Err(BackfillError::Short { .. }) => return Step::NextPeer,
            Err(e) => {
                self.emit(Event::BackfillRefused {
                    source,
                    reason: e.to_string(),
                });
                return Step::NextPeer;
            }
        };
        let mut batch = WriteBatch::default();
        for (block, _) in &accepted {
            if stage_block_alone(&mut batch, block).is_err() {
                return Step::NextPeer;
            }
        }
        match self.chain().commit_backfill(batch, gap, Some(next)) {
            Ok(true) => {
                for (block, hash) in &accepted {
                    self.emit(Event::BlockBackfilled {
                        height: block.header.height,
                        hash: *hash,
                        parent_hash: block.header.parent_hash,
                    });
                }
                Step::Progress
            }
            Ok(false) => Step::Progress,
            Err(e) => {
                self.emit(Event::StorageFailed {
                    reason: e.to_string(),
                });
                RT::sleep(Duration::from_millis(RETRY_MS)).await;
                Step::Progress
            }
        }
    }

    /// With the gap's blocks stored: cuts its batches again from the cursor at its base, by the
    /// chain's rule, attests them, and closes the gap if the cursor reached is the snapshot's.
    fn recut(&self, gap: &Backfill) -> Result<(), RecutError> {
        let chain = self.chain();
        let per_batch = chain.blocks_per_batch();
        let mut cursor = gap.base_batches.clone();
        let mut sealed: Vec<Event> = Vec::new();
        let mut batch = WriteBatch::default();
        let mut height = gap.base_height + 1;
        while height <= gap.top_height {
            let blocks = chain.blocks_between(
                height,
                gap.top_height,
                MAX_BLOCKS_PER_RESPONSE as usize,
                MAX_RESPONSE_BYTES,
            )?;
            if blocks.is_empty() {
                return Err(RecutError::Inconsistent(BackfillError::NotStored {
                    height,
                }));
            }
            for block in &blocks {
                let hash = block.hash().map_err(|e| {
                    RecutError::Inconsistent(BackfillError::Unhashable {
                        height: block.header.height,
                        reason: e.to_string(),
                    })
                })?;
                if let Some(s) = cursor.on_block(&block.header, hash, per_batch) {
                    sealed.push(
                        stage_sealed_batch(&mut batch, &s, &self.config().key)
                            .map_err(StoreError::from)?,
                    );
                }
                height = block.header.height + 1;
            }
        }
        gap.check_recut(&cursor).map_err(RecutError::Inconsistent)?;
        if !chain.commit_backfill(batch, gap, None)? {
            return Ok(());
        }
        let batches_sealed = sealed.len() as u64;
        for event in sealed {
            self.emit(event);
        }
        self.emit(Event::BackfillDone {
            from_height: gap.base_height + 1,
            to_height: gap.top_height,
            batches_sealed,
        });
        Ok(())
    }
}

//! Forks of a single-sequencer chain, as an external node (or a group member's sync) meets
//! them: find where the branches part ([`AncestorSearch`]), report the double signature once,
//! keep the branch [`fork_choice`] picks, rolling back to the shared block if that is theirs,
//! and remember the losing block so no source leads this node back onto it.

use std::collections::BTreeMap;
use std::time::Duration;

use alloy_primitives::B256;
use futures::future::join_all;
use openraft::AsyncRuntime;

use super::{ExternalNode, FORK_WINDOW, MAX_FORK_DEPTH};
use crate::chain::block::Block;
use crate::chain::rules::{verify_signature, Head};
use crate::events::Event;
use crate::external::core::EquivocationSeen;
use crate::ids::NodeId;
use crate::net::peer;
use crate::net::wire::{Request, Response};
use crate::policy::fork_choice::{self, ForkBlock, Keep};
use crate::policy::fork_search::{AncestorSearch, SearchStep};
use crate::sync::lock;

/// What a block of a group's chain means for the download (see `fork_or_loser`).
pub(super) enum ForkCheck {
    Loser,
    Fork,
}

impl<RT: AsyncRuntime> ExternalNode<RT> {
    /// On a group's chain: whether `block` is one this node resolved as a loser (the source
    /// is on a losing branch), or a block the identity signed on another parent (a fork).
    pub(super) fn fork_or_loser(
        &self,
        source: NodeId,
        block: &Block,
        head: &Head,
    ) -> Option<ForkCheck> {
        let h = &block.header;
        if h.slot.is_some() {
            let lost = h
                .hash()
                .ok()
                .is_some_and(|hash| lock(&self.core).is_loser(h.height, &hash));
            if lost {
                self.mark_losing(source);
                return Some(ForkCheck::Loser);
            }
        }
        // A single-sequencer block the identity did sign, on another parent: the identity
        // signed two branches. That is an equivocation to resolve, not a lying source.
        if head.height > 0
            && h.parent_hash != head.hash
            && h.slot.is_some()
            && verify_signature(&self.cfg.validators, block).is_ok()
        {
            return Some(ForkCheck::Fork);
        }
        None
    }

    /// `source` serves a branch the identity also signed: finds where the branches part,
    /// reports the equivocation, and keeps the branch `policy::fork_choice` picks, rolling this
    /// chain back to the shared block if that is theirs.
    pub(super) async fn resolve_fork(&self, source: NodeId, from_height: u64) {
        let head = self.replica.head();
        let mut theirs: BTreeMap<u64, Block> = BTreeMap::new();
        let Some(mut search) =
            AncestorSearch::new(head.height, from_height, FORK_WINDOW, MAX_FORK_DEPTH)
        else {
            return;
        };
        let mut step = search.first();
        let ancestor = loop {
            let (lo, hi) = match step {
                SearchStep::Compare { lo, hi } => (lo, hi),
                SearchStep::Found(a) => break a,
                SearchStep::GiveUp => return,
            };
            let fetched = self.fetch_max(source, lo, (hi - lo + 1) as u32, 0).await;
            let Ok(served) = fetched.blocks else {
                return; // Unreachable now: the next round finds the fork again.
            };
            let blocks: Vec<Block> = served.into_iter().map(|s| s.block).collect();
            if blocks.is_empty() {
                return;
            }
            for b in &blocks {
                if let Err(e) = verify_signature(&self.cfg.validators, b) {
                    self.reject(source, b.header.height, &e);
                    return;
                }
            }
            let ours = match self
                .replica
                .chain()
                .blocks(lo, (hi - lo + 1) as usize, usize::MAX)
            {
                Ok(b) => b,
                Err(e) => {
                    self.seams.events.emit(
                        &self.id,
                        Event::StorageFailed {
                            reason: e.to_string(),
                        },
                    );
                    return;
                }
            };
            let hashes = |bs: &[Block]| -> Vec<(u64, B256)> {
                bs.iter()
                    .filter_map(|b| Some((b.header.height, b.header.hash().ok()?)))
                    .collect()
            };
            let found = fork_choice::common_ancestor(&hashes(&ours), &hashes(&blocks));
            for b in blocks {
                theirs.insert(b.header.height, b);
            }
            step = search.on_compared(found);
        };
        if ancestor >= head.height {
            return; // The branches met again meanwhile: nothing to resolve.
        }
        let at = ancestor + 1;
        let ours = match self.replica.chain().block(at) {
            Ok(Some(b)) => b,
            _ => return,
        };
        let Some(theirs) = theirs.remove(&at) else {
            return;
        };
        let (Some(our_slot), Some(their_slot), Ok(our_hash), Ok(their_hash)) = (
            ours.header.slot,
            theirs.header.slot,
            ours.header.hash(),
            theirs.header.hash(),
        ) else {
            return;
        };
        let keep = fork_choice::choose(
            &ForkBlock {
                level: our_slot.level,
                round: our_slot.round,
                hash: our_hash,
            },
            &ForkBlock {
                level: their_slot.level,
                round: their_slot.round,
                hash: their_hash,
            },
        );
        let seen = EquivocationSeen {
            height: at,
            ours: our_hash,
            theirs: their_hash,
            our_level: our_slot.level,
            their_level: their_slot.level,
            kept: keep,
        };
        let loser = match keep {
            Keep::Ours => their_hash,
            Keep::Theirs => our_hash,
        };
        let new = lock(&self.core).on_fork(seen, loser);
        if new {
            self.seams.events.emit(
                &self.id,
                Event::Equivocation {
                    height: at,
                    ours: our_hash,
                    theirs: their_hash,
                    our_level: our_slot.level,
                    their_level: their_slot.level,
                    source,
                    kept: keep,
                },
            );
        }
        match keep {
            Keep::Theirs => match self.replica.rollback_to(ancestor) {
                Ok(_) => self.seams.events.emit(
                    &self.id,
                    Event::RolledBack {
                        from_height: head.height,
                        to_height: ancestor,
                    },
                ),
                Err(e) => self.seams.events.emit(
                    &self.id,
                    Event::StorageFailed {
                        reason: e.to_string(),
                    },
                ),
            },
            Keep::Ours => self.mark_losing(source),
        }
    }

    /// A source on another branch that is not longer than this chain never serves a block
    /// above its head, so downloading alone never finds the fork: compare heads instead. Only
    /// single-sequencer chains (blocks with rounds) can fork this way.
    pub(super) async fn probe_shorter_branches(&self) {
        let head = self.replica.head();
        if head.round.is_none() {
            return;
        }
        let timeout = Duration::from_millis(self.cfg.request_timeout_ms);
        let transport = &*self.seams.transport;
        let sources = self.trusted_sources();
        let answers = join_all(sources.iter().map(|s| async move {
            (
                *s,
                peer::call(transport, *s, &Request::GetHead, timeout).await,
            )
        }))
        .await;
        for (source, answer) in answers {
            let Ok(Response::Head(theirs)) = answer else {
                continue;
            };
            if theirs.height == 0 || theirs.height > head.height {
                continue;
            }
            let ours = match self.replica.chain().block(theirs.height) {
                Ok(Some(b)) => b.header.hash().ok(),
                _ => None,
            };
            if ours.is_some_and(|h| h != theirs.hash) {
                self.resolve_fork(source, theirs.height).await;
            }
        }
    }

    pub(super) fn mark_losing(&self, source: NodeId) {
        let now = self.monotonic_ms();
        lock(&self.core).mark_losing(source, now);
    }
}

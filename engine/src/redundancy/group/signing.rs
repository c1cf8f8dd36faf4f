//! The unfenced sign path of a group member: a block a crash left guarded but unsent goes
//! out first (no new signature); then the round's block is built, recorded in the
//! [`SigningGuard`](crate::redundancy::signing_guard::SigningGuard) (synced) before any
//! signature leaves the machine, and published. Runs under the member's state lock, so an
//! announcement's answer always covers what was signed.

use openraft::AsyncRuntime;

use super::{GroupMember, MemberState};
use crate::chain::block::{Block, Slot};
use crate::chain::rules::{build_block, Proposal};
use crate::events::Event;
use crate::policy::redundancy::StepIn;

impl<RT: AsyncRuntime> GroupMember<RT> {
    /// The sign path, under the state lock (so an announcement's answer always covers what was
    /// signed): publish a guarded block a crash left unsent, build the round's block, record it
    /// in the guard (synced), then store and serve it.
    pub(super) fn sign(&self, st: &mut MemberState, round: u64, reason: StepIn) {
        if self.publish_pending(st).is_err() {
            return;
        }
        if let Some(block) = self.build(st, round) {
            self.record_and_publish(st, &block, reason);
        }
    }

    /// Publishes the block the guard recorded, if a crash left it unsent (that is no new
    /// signature); an error when it does not extend the head.
    pub(super) fn publish_pending(&self, st: &mut MemberState) -> Result<(), ()> {
        let pending = self.guard.pending(self.sync.head().height);
        match pending.as_ref().and_then(|b| Some((b, b.header.slot?))) {
            Some((block, slot)) => self.publish(st, block, slot),
            None => Ok(()),
        }
    }

    /// The block of `round` on top of the head, sealed with the identity's key in memory only;
    /// `None` when the head is already of this round or later, or the block cannot be built.
    pub(super) fn build(&self, st: &mut MemberState, round: u64) -> Option<Block> {
        let level = self.cfg.redundancy.level.value();
        let (head, state) = {
            let c = self.sync.replica().chain().state();
            (c.head, c.state.clone())
        };
        if head.round.is_some_and(|r| r >= round) {
            return None;
        }
        let candidates = st
            .mempool
            .candidates(&state, self.cfg.max_block_transactions);
        let built = build_block(
            Proposal {
                head: &head,
                state: &state,
                key: &self.cfg.identity,
                term: 0,
                slot: Some(Slot { round, level }),
                seals_batch: false,
                members: None,
                timestamp_ms: self.seams.clock.now_ms(),
                max_transactions: self.cfg.max_block_transactions,
            },
            candidates,
        );
        match built {
            Ok(b) => {
                st.mempool.proposed(&b.block.transactions);
                Some(b.block)
            }
            Err(e) => {
                self.emit(Event::SignRefused {
                    round,
                    reason: e.to_string(),
                });
                None
            }
        }
    }

    /// Records `block` in the guard (synced) before anything of it leaves, then publishes it.
    pub(super) fn record_and_publish(&self, st: &mut MemberState, block: &Block, reason: StepIn) {
        let Some(slot) = block.header.slot else {
            return;
        };
        if let Err(e) = self.guard.record(slot.round, block) {
            self.emit(Event::SignRefused {
                round: slot.round,
                reason: e.to_string(),
            });
            return;
        }
        let level = self.cfg.redundancy.level.value();
        if let Some(stepped_in) = st.core.on_guarded(slot.round, level, reason) {
            self.emit(stepped_in);
        }
        let _ = self.publish(st, block, slot);
    }

    /// Stores a block this machine signed (synced: a signer never forgets what it signed) and
    /// reports it; downloaders get it from the chain store.
    fn publish(&self, st: &mut MemberState, block: &Block, slot: Slot) -> Result<(), ()> {
        match self.sync.replica().apply_own(block) {
            Ok(head) => {
                if let Err(e) = self.guard.published(head.height) {
                    self.emit(Event::StorageFailed {
                        reason: e.to_string(),
                    });
                }
                st.core.on_published(&head, slot);
                st.mempool.prune(&self.sync.replica().chain().state().state);
                self.emit(Event::Signed {
                    height: head.height,
                    round: slot.round,
                    level: slot.level,
                    hash: head.hash,
                    parent_hash: block.header.parent_hash,
                    state_root: head.state_root,
                    transactions: block.transactions.len(),
                });
                Ok(())
            }
            Err(e) => {
                self.emit(Event::SignRefused {
                    round: slot.round,
                    reason: e.to_string(),
                });
                Err(())
            }
        }
    }
}

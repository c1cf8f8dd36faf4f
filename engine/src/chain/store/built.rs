//! What the leader's own blocks executed to, kept from building them until they are applied:
//! a leader that built a block has run every transaction in it once already, and applying the
//! canonized block takes the result instead of running them again (see
//! [`crate::chain::rules::check_built`]). Keyed by block hash, so only that exact block on that
//! exact parent finds it; a block dropped before canonization just ages out.

use std::collections::VecDeque;
use std::sync::Mutex;

use alloy_primitives::B256;

use super::ChainStore;
use crate::chain::rules::Executed;
use crate::sync::lock;

/// Blocks remembered at most: above any number of proposals in flight worth pipelining.
const REMEMBERED: usize = 16;

#[derive(Default)]
pub(super) struct BuiltBlocks(Mutex<VecDeque<(B256, Executed)>>);

impl ChainStore {
    /// Remembers what the block `hash` this node built executed to.
    pub fn remember_built(&self, hash: B256, executed: Executed) {
        let mut built = lock(&self.built.0);
        if built.len() >= REMEMBERED {
            built.pop_front();
        }
        built.push_back((hash, executed));
    }

    /// What the block `hash` executed to, if this node built it (forgotten once taken).
    pub fn take_built(&self, hash: &B256) -> Option<Executed> {
        let mut built = lock(&self.built.0);
        let at = built.iter().position(|(h, _)| h == hash)?;
        built.remove(at).map(|(_, executed)| executed)
    }
}

//! The node's [`NodeCore`] shared by what feeds it: the driver (deadlines and finished work),
//! request dispatch (AppendEntries, pre-votes, admission) and the Raft network (every response
//! is contact). It turns the runtime's monotonic clock into the policies' [`Millis`]; the
//! decisions stay in the core.

use std::sync::{Mutex, MutexGuard};

use openraft::Instant;

use crate::consensus::core::NodeCore;
use crate::ids::NodeId;
use crate::policy::Millis;

pub struct SharedCore<I> {
    started: I,
    core: Mutex<NodeCore>,
}

impl<I: Instant> SharedCore<I> {
    /// Shares `core`, whose clock started at `started`.
    pub fn new(started: I, core: NodeCore) -> Self {
        SharedCore {
            started,
            core: Mutex::new(core),
        }
    }

    /// Milliseconds since this node started, by the runtime's monotonic clock.
    pub fn now_ms(&self) -> Millis {
        let now = I::now();
        if now > self.started {
            (now - self.started).as_millis() as Millis
        } else {
            0
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, NodeCore> {
        crate::sync::lock(&self.core)
    }

    /// A request from, or a response by, `peer` arrived.
    pub fn heard(&self, peer: NodeId) {
        let now = self.now_ms();
        self.lock().heard(now, peer);
    }

    /// `peer` sent AppendEntries.
    pub fn appended_by(&self, peer: NodeId) {
        let now = self.now_ms();
        self.lock().appended_by(now, peer);
    }
}

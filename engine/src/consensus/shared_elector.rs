//! The node's [`Elector`] shared by the tasks that feed it: the Raft network (every response
//! is contact), request dispatch (AppendEntries, pre-votes) and the election driver. It turns
//! the runtime's monotonic clock into the policy's [`Millis`]; the decisions stay in the
//! policy.

use std::sync::{Mutex, MutexGuard};

use openraft::Instant;

use crate::ids::NodeId;
use crate::policy::election::Elector;
use crate::policy::Millis;

pub struct SharedElector<I> {
    started: I,
    elector: Mutex<Elector>,
}

impl<I: Instant> SharedElector<I> {
    pub fn new(elector: Elector) -> Self {
        SharedElector {
            started: I::now(),
            elector: Mutex::new(elector),
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

    pub fn lock(&self) -> MutexGuard<'_, Elector> {
        crate::sync::lock(&self.elector)
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

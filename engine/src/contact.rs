//! When this node last heard from each peer. openraft 0.9 has no pre-vote, so a node that
//! cannot hear a quorum (one-way partition) would campaign forever and, with its up-to-date
//! log, win every vote it sends while never learning it won, holding the cluster hostage.
//! The node therefore campaigns only while it hears a quorum (see `ConsensusNode::watchdog`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use openraft::Instant;

use crate::ids::NodeId;

pub struct PeerContact<I> {
    last_heard: Mutex<BTreeMap<NodeId, I>>,
}

impl<I: Instant> Default for PeerContact<I> {
    fn default() -> Self {
        PeerContact {
            last_heard: Mutex::new(BTreeMap::new()),
        }
    }
}

impl<I: Instant> PeerContact<I> {
    /// A request from, or a response by, `peer` arrived.
    pub fn heard(&self, peer: NodeId) {
        self.last_heard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(peer, I::now());
    }

    /// Peers heard from within `window`.
    pub fn heard_within(&self, window: Duration) -> usize {
        let now = I::now();
        self.last_heard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|t| now.saturating_duration_since_or_zero(**t) <= window)
            .count()
    }
}

trait SinceOrZero {
    fn saturating_duration_since_or_zero(&self, earlier: Self) -> Duration;
}

impl<I: Instant> SinceOrZero for I {
    fn saturating_duration_since_or_zero(&self, earlier: I) -> Duration {
        if *self > earlier {
            *self - earlier
        } else {
            Duration::ZERO
        }
    }
}

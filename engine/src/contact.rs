//! When this node last heard from each peer. openraft 0.9 has no pre-vote, so a node that
//! cannot hear a quorum (one-way partition) would campaign forever and, with its up-to-date
//! log, win every vote it sends while never learning it won, holding the cluster hostage.
//! The node therefore campaigns only while it hears a quorum (see `ConsensusNode::elector`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use openraft::Instant;

use crate::ids::NodeId;

pub struct PeerContact<I> {
    last_heard: Mutex<BTreeMap<NodeId, I>>,
    /// Only AppendEntries: what tells a follower its leader is alive (a ping does not).
    last_append: Mutex<BTreeMap<NodeId, I>>,
}

impl<I: Instant> Default for PeerContact<I> {
    fn default() -> Self {
        PeerContact {
            last_heard: Mutex::new(BTreeMap::new()),
            last_append: Mutex::new(BTreeMap::new()),
        }
    }
}

fn within<I: Instant>(map: &Mutex<BTreeMap<NodeId, I>>, peer: &NodeId, window: Duration) -> bool {
    let now = I::now();
    map.lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(peer)
        .is_some_and(|t| now.saturating_duration_since_or_zero(*t) <= window)
}

impl<I: Instant> PeerContact<I> {
    /// A request from, or a response by, `peer` arrived.
    pub fn heard(&self, peer: NodeId) {
        self.last_heard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(peer, I::now());
    }

    /// `peer` sent AppendEntries (a leader's heartbeat or replication).
    pub fn appended_by(&self, peer: NodeId) {
        self.last_append
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(peer, I::now());
    }

    /// Whether `leader` sent AppendEntries within `window`.
    pub fn leader_alive(&self, leader: &NodeId, window: Duration) -> bool {
        within(&self.last_append, leader, window)
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

//! When this node last heard from each peer. Pure bookkeeping: the caller says when.

use std::collections::BTreeMap;

use super::Millis;
use crate::ids::NodeId;

#[derive(Clone, Debug, Default)]
pub struct ContactBook {
    /// Any request from, or response by, the peer.
    last_heard: BTreeMap<NodeId, Millis>,
    /// Only AppendEntries: what tells a follower its leader is alive.
    last_append: BTreeMap<NodeId, Millis>,
}

fn within(map: &BTreeMap<NodeId, Millis>, peer: &NodeId, now: Millis, window_ms: u64) -> bool {
    map.get(peer)
        .is_some_and(|t| now.saturating_sub(*t) <= window_ms)
}

impl ContactBook {
    /// `peer` spoke to us at `now`.
    pub fn heard(&mut self, now: Millis, peer: NodeId) {
        let t = self.last_heard.entry(peer).or_insert(now);
        *t = (*t).max(now);
    }

    /// `peer` sent AppendEntries (a leader's heartbeat or replication) at `now`.
    pub fn appended_by(&mut self, now: Millis, peer: NodeId) {
        self.heard(now, peer);
        let t = self.last_append.entry(peer).or_insert(now);
        *t = (*t).max(now);
    }

    /// When `peer` last sent AppendEntries.
    pub fn last_append(&self, peer: &NodeId) -> Option<Millis> {
        self.last_append.get(peer).copied()
    }

    /// Whether `leader` sent AppendEntries within `window_ms` before `now`.
    pub fn leader_alive(&self, now: Millis, leader: &NodeId, window_ms: u64) -> bool {
        within(&self.last_append, leader, now, window_ms)
    }

    /// How many peers were heard within `window_ms` before `now`.
    pub fn heard_within(&self, now: Millis, window_ms: u64) -> usize {
        self.last_heard
            .values()
            .filter(|t| now.saturating_sub(**t) <= window_ms)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::derived_key;

    #[test]
    fn windows_and_clock_going_backwards() {
        let (a, b) = (derived_key("t", 1).node_id(), derived_key("t", 2).node_id());
        let mut c = ContactBook::default();
        c.heard(100, a);
        c.appended_by(150, b);
        // (now, window, heard_within, a's append alive, b's append alive)
        let table = [
            (150, 100, 2, false, true),
            (250, 100, 1, false, true),
            (251, 100, 0, false, false),
            // An earlier `now` than what was recorded counts as "just heard", never underflows.
            (10, 0, 2, false, true),
        ];
        for (now, window, heard, a_alive, b_alive) in table {
            assert_eq!(c.heard_within(now, window), heard, "now={now}");
            assert_eq!(c.leader_alive(now, &a, window), a_alive, "now={now}");
            assert_eq!(c.leader_alive(now, &b, window), b_alive, "now={now}");
        }
        // A late report of an older contact does not move the time back.
        c.heard(50, a);
        assert_eq!(c.heard_within(200, 100), 2);
    }
}

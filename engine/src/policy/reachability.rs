//! What to tell an operator about a peer that stops answering: once when it goes quiet, a
//! summary (how many failed requests, since when) every so often while it stays quiet, and once
//! when it answers again. A leader retries a paused follower ten times a second; a line per
//! failure buries everything else in the log (191 lines in 5.7 s, before this).

use std::collections::BTreeMap;

use super::Millis;
use crate::ids::NodeId;

/// How often a peer that stays unreachable is summarised again.
pub const DEFAULT_SUMMARY_EVERY_MS: u64 = 60_000;

/// What to say, and at which level: `Unreachable` and `StillUnreachable` are warnings,
/// `Reachable` is news.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// The first failed request after the peer last answered.
    Unreachable { peer: NodeId },
    /// The peer has failed `failures` requests over `down_ms` and still does.
    StillUnreachable {
        peer: NodeId,
        failures: u64,
        down_ms: u64,
    },
    /// The peer answered again after `failures` failed requests over `down_ms`.
    Reachable {
        peer: NodeId,
        failures: u64,
        down_ms: u64,
    },
}

#[derive(Clone, Debug)]
struct Down {
    since: Millis,
    failures: u64,
    last_report: Millis,
}

/// Per peer: up (not tracked) or down since when, with how many failures.
#[derive(Clone, Debug)]
pub struct Reachability {
    summary_every_ms: u64,
    down: BTreeMap<NodeId, Down>,
}

impl Default for Reachability {
    fn default() -> Self {
        Reachability::new(DEFAULT_SUMMARY_EVERY_MS)
    }
}

impl Reachability {
    pub fn new(summary_every_ms: u64) -> Reachability {
        Reachability {
            summary_every_ms: summary_every_ms.max(1),
            down: BTreeMap::new(),
        }
    }

    /// A request to `peer` failed at `now` (no route, no answer in time).
    pub fn failed(&mut self, now: Millis, peer: NodeId) -> Option<Report> {
        match self.down.get_mut(&peer) {
            None => {
                self.down.insert(
                    peer,
                    Down {
                        since: now,
                        failures: 1,
                        last_report: now,
                    },
                );
                Some(Report::Unreachable { peer })
            }
            Some(d) => {
                d.failures += 1;
                if now.saturating_sub(d.last_report) < self.summary_every_ms {
                    return None;
                }
                d.last_report = now;
                Some(Report::StillUnreachable {
                    peer,
                    failures: d.failures,
                    down_ms: now.saturating_sub(d.since),
                })
            }
        }
    }

    /// `peer` answered at `now`.
    pub fn answered(&mut self, now: Millis, peer: NodeId) -> Option<Report> {
        let d = self.down.remove(&peer)?;
        Some(Report::Reachable {
            peer,
            failures: d.failures,
            down_ms: now.saturating_sub(d.since),
        })
    }

    /// How many peers are unreachable now.
    pub fn unreachable(&self) -> usize {
        self.down.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::derived_key;

    #[derive(Clone, Copy, Debug)]
    enum Step {
        Fail,
        Answer,
    }

    #[test]
    fn said_once_then_summarised_then_recovered() {
        let a = derived_key("reach", 0).node_id();
        let b = derived_key("reach", 1).node_id();
        // (now ms, peer, outcome, report expected, unreachable peers after)
        let table: Vec<(Millis, NodeId, Step, Option<Report>, usize)> = vec![
            (0, a, Step::Answer, None, 0),
            (100, a, Step::Fail, Some(Report::Unreachable { peer: a }), 1),
            // A retry every 100 ms says nothing for the next 60 s.
            (200, a, Step::Fail, None, 1),
            (59_999, a, Step::Fail, None, 1),
            (300, b, Step::Fail, Some(Report::Unreachable { peer: b }), 2),
            (
                60_100,
                a,
                Step::Fail,
                Some(Report::StillUnreachable {
                    peer: a,
                    failures: 4,
                    down_ms: 60_000,
                }),
                2,
            ),
            (60_200, a, Step::Fail, None, 2),
            (
                61_000,
                a,
                Step::Answer,
                Some(Report::Reachable {
                    peer: a,
                    failures: 5,
                    down_ms: 60_900,
                }),
                1,
            ),
            (61_100, a, Step::Answer, None, 1),
            // Down again: said again, counted afresh.
            (
                62_000,
                a,
                Step::Fail,
                Some(Report::Unreachable { peer: a }),
                2,
            ),
            // A clock that went backwards never underflows.
            (
                50,
                b,
                Step::Answer,
                Some(Report::Reachable {
                    peer: b,
                    failures: 1,
                    down_ms: 0,
                }),
                1,
            ),
        ];
        let mut r = Reachability::default();
        for (i, (now, peer, step, expect, down)) in table.into_iter().enumerate() {
            let got = match step {
                Step::Fail => r.failed(now, peer),
                Step::Answer => r.answered(now, peer),
            };
            assert_eq!(got, expect, "row {i}");
            assert_eq!(r.unreachable(), down, "row {i}");
        }
    }
}

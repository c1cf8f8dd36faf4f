//! What an external node downloads next: behind, consecutive ranges pipelined over its trusted
//! sources in turn; caught up, one long-poll at a time; and how long to pause after a round.

use crate::ids::NodeId;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DownloadConfig {
    /// Blocks asked for per request.
    pub batch_blocks: u32,
    /// Ranges in flight at once while catching up.
    pub pipeline_depth: usize,
    /// How long a caught-up node's long-poll may be held by its source.
    pub follow_wait_ms: u32,
}

/// One range request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fetch {
    pub source: NodeId,
    pub from: u64,
    pub wait_ms: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    Fetch(Vec<Fetch>),
    /// No trusted source left: look again after this long.
    Pause {
        ms: u64,
    },
}

/// What a round of fetches came to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoundResult {
    /// At least one source answered.
    pub any_answered: bool,
    /// Blocks received, applied or not.
    pub received: u64,
    /// Blocks verified and stored.
    pub applied: u64,
    /// Storing failed: the round stopped there.
    pub storage_failed: bool,
}

pub struct Downloader {
    cfg: DownloadConfig,
    round: usize,
    caught_up: bool,
}

impl Downloader {
    pub fn new(cfg: DownloadConfig) -> Downloader {
        Downloader {
            cfg,
            round: 0,
            caught_up: false,
        }
    }

    pub fn caught_up(&self) -> bool {
        self.caught_up
    }

    /// The next round's fetches on top of `head`, over `trusted` sources.
    pub fn plan(&mut self, head: u64, trusted: &[NodeId]) -> Plan {
        if trusted.is_empty() {
            return Plan::Pause { ms: 500 };
        }
        let batch = u64::from(self.cfg.batch_blocks.max(1));
        let (depth, wait_ms) = if self.caught_up {
            (1, self.cfg.follow_wait_ms)
        } else {
            (self.cfg.pipeline_depth.max(1), 0)
        };
        let fetches = (0..depth)
            .map(|k| Fetch {
                source: trusted[(self.round + k) % trusted.len()],
                from: head + 1 + k as u64 * batch,
                wait_ms,
            })
            .collect();
        self.round = self.round.wrapping_add(1);
        Plan::Fetch(fetches)
    }

    /// Takes a round's result; returns how long to pause before the next one (0: go on).
    pub fn after(&mut self, planned: &[Fetch], r: RoundResult) -> u64 {
        if r.storage_failed {
            return 500;
        }
        let batch = u64::from(self.cfg.batch_blocks.max(1));
        let long_poll = planned.iter().any(|f| f.wait_ms > 0);
        // A full round means more is waiting; anything less, the sources are at their head.
        self.caught_up = r.applied == 0 || r.received < batch * planned.len() as u64;
        if !r.any_answered {
            // Every source failed at once (partition, all down): don't spin.
            200
        } else if r.applied == 0 && !self.caught_up {
            50
        } else if r.applied == 0 && !long_poll {
            // Caught up by the last round; the next one long-polls.
            10
        } else {
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::derived_key;

    fn ids(n: usize) -> Vec<NodeId> {
        (0..n)
            .map(|i| derived_key("download", i).node_id())
            .collect()
    }

    fn cfg() -> DownloadConfig {
        DownloadConfig {
            batch_blocks: 10,
            pipeline_depth: 3,
            follow_wait_ms: 1_000,
        }
    }

    fn fetches(p: Plan) -> Vec<Fetch> {
        match p {
            Plan::Fetch(f) => f,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn behind_it_pipelines_consecutive_ranges_over_sources_in_turn() {
        let s = ids(2);
        let mut d = Downloader::new(cfg());
        let f = fetches(d.plan(100, &s));
        let got: Vec<(NodeId, u64, u32)> =
            f.iter().map(|f| (f.source, f.from, f.wait_ms)).collect();
        assert_eq!(got, vec![(s[0], 101, 0), (s[1], 111, 0), (s[0], 121, 0)]);
        // The next round starts with the next source.
        assert_eq!(fetches(d.plan(130, &s))[0].source, s[1]);
    }

    #[test]
    fn rounds_and_pauses() {
        let s = ids(2);
        let full = RoundResult {
            any_answered: true,
            received: 30,
            applied: 30,
            storage_failed: false,
        };
        // (result of a catching-up round) -> (pause ms, caught up after)
        let table = [
            (full, 0, false),
            (
                RoundResult {
                    received: 12,
                    applied: 12,
                    ..full
                },
                0,
                true,
            ),
            (
                RoundResult {
                    received: 0,
                    applied: 0,
                    ..full
                },
                10,
                true,
            ),
            // Blocks came but none extended the head (an earlier range came back short).
            (
                RoundResult {
                    received: 30,
                    applied: 0,
                    ..full
                },
                10,
                true,
            ),
            (RoundResult::default(), 200, true),
            (
                RoundResult {
                    storage_failed: true,
                    ..full
                },
                500,
                false,
            ),
        ];
        for (result, pause, caught_up) in table {
            let mut d = Downloader::new(cfg());
            let planned = fetches(d.plan(0, &s));
            assert_eq!(d.after(&planned, result), pause, "{result:?}");
            assert_eq!(d.caught_up(), caught_up, "{result:?}");
        }
    }

    #[test]
    fn caught_up_it_long_polls_one_source_at_a_time() {
        let s = ids(3);
        let mut d = Downloader::new(cfg());
        let planned = fetches(d.plan(50, &s));
        d.after(
            &planned,
            RoundResult {
                any_answered: true,
                received: 2,
                applied: 2,
                storage_failed: false,
            },
        );
        let f = fetches(d.plan(52, &s));
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].from, f[0].wait_ms), (53, 1_000));
        // A long-poll that timed out empty: straight into the next one, no pause.
        let empty = RoundResult {
            any_answered: true,
            ..RoundResult::default()
        };
        assert_eq!(d.after(&f, empty), 0);
    }

    #[test]
    fn no_trusted_source_means_waiting() {
        let mut d = Downloader::new(cfg());
        assert_eq!(d.plan(7, &[]), Plan::Pause { ms: 500 });
    }
}

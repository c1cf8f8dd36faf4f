//! Finding where two branches of a single-sequencer chain part, and when a caught-up follower
//! looks for branches at all. The comparison itself ([`super::fork_choice::common_ancestor`])
//! and the choice of branch ([`super::fork_choice::choose`]) are in `fork_choice`; this is the
//! walk: window by window downward from where the fork showed, until a shared block, genesis,
//! or the deepest fork a follower resolves.

use super::Millis;

/// The next thing the search needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchStep {
    /// Fetch the other branch's blocks `lo..=hi` and compare them with ours.
    Compare { lo: u64, hi: u64 },
    /// The branches share the block at this height (0: only genesis).
    Found(u64),
    /// Deeper than a follower resolves: report it, leave it alone.
    GiveUp,
}

#[derive(Clone, Copy, Debug)]
pub struct AncestorSearch {
    head_height: u64,
    window: u64,
    max_depth: u64,
    lo: u64,
    hi: u64,
}

impl AncestorSearch {
    /// A search from `from_height` (at most this node's head, `head_height`) down, `window`
    /// heights per comparison; `None` when there is nothing to compare (the head is genesis).
    pub fn new(head_height: u64, from_height: u64, window: u64, max_depth: u64) -> Option<Self> {
        let hi = from_height.min(head_height);
        if hi == 0 {
            return None;
        }
        let window = window.max(1);
        Some(AncestorSearch {
            head_height,
            window,
            max_depth,
            lo: hi.saturating_sub(window - 1).max(1),
            hi,
        })
    }

    /// The first comparison.
    pub fn first(&self) -> SearchStep {
        SearchStep::Compare {
            lo: self.lo,
            hi: self.hi,
        }
    }

    /// The last comparison found the branches sharing the block at `shared`, or none in its
    /// window.
    pub fn on_compared(&mut self, shared: Option<u64>) -> SearchStep {
        if let Some(a) = shared {
            return SearchStep::Found(a);
        }
        if self.lo == 1 {
            return SearchStep::Found(0);
        }
        if self.head_height - self.lo >= self.max_depth {
            return SearchStep::GiveUp;
        }
        self.hi = self.lo - 1;
        self.lo = self.hi.saturating_sub(self.window - 1).max(1);
        self.first()
    }
}

/// When a caught-up follower next compares its head with its sources' (a source on another
/// branch that is not longer never serves a block above this node's head, so downloading
/// alone never finds the fork).
#[derive(Clone, Copy, Debug)]
pub struct ProbeSchedule {
    every_ms: u64,
    last_ms: Millis,
}

impl ProbeSchedule {
    pub fn new(every_ms: u64) -> ProbeSchedule {
        ProbeSchedule {
            every_ms,
            last_ms: 0,
        }
    }

    /// Whether to probe now (and, if so, the next one is `every_ms` from now).
    pub fn due(&mut self, now: Millis, caught_up: bool) -> bool {
        if !caught_up || now.saturating_sub(self.last_ms) < self.every_ms {
            return false;
        }
        self.last_ms = now;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_down_window_by_window_to_a_shared_block_genesis_or_the_depth_limit() {
        // (head, from, shared found per comparison, expected steps)
        type Case = (u64, u64, Vec<Option<u64>>, Vec<SearchStep>);
        let table: Vec<Case> = vec![
            (
                100,
                u64::MAX,
                vec![Some(97)],
                vec![
                    SearchStep::Compare { lo: 37, hi: 100 },
                    SearchStep::Found(97),
                ],
            ),
            (
                100,
                90,
                vec![None, Some(5)],
                vec![
                    SearchStep::Compare { lo: 27, hi: 90 },
                    SearchStep::Compare { lo: 1, hi: 26 },
                    SearchStep::Found(5),
                ],
            ),
            (
                50,
                50,
                vec![None],
                vec![SearchStep::Compare { lo: 1, hi: 50 }, SearchStep::Found(0)],
            ),
            (
                300,
                300,
                vec![None, None],
                vec![
                    SearchStep::Compare { lo: 237, hi: 300 },
                    SearchStep::Compare { lo: 173, hi: 236 },
                    SearchStep::GiveUp,
                ],
            ),
        ];
        for (head, from, shared, steps) in table {
            let mut s = AncestorSearch::new(head, from, 64, 100).unwrap();
            let mut got = vec![s.first()];
            for found in shared {
                got.push(s.on_compared(found));
            }
            assert_eq!(got, steps, "head {head} from {from}");
        }
        assert!(AncestorSearch::new(0, 10, 64, 100).is_none());
    }

    #[test]
    fn probes_only_when_caught_up_and_at_most_once_a_period() {
        let mut p = ProbeSchedule::new(1_000);
        let table = [
            (500, true, false),
            (1_000, false, false),
            (1_000, true, true),
            (1_999, true, false),
            (2_000, true, true),
        ];
        for (now, caught_up, due) in table {
            assert_eq!(p.due(now, caught_up), due, "at {now}");
        }
    }
}

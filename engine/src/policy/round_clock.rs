//! When a group member decides: at the start of every round by its local wall clock
//! ([`round_at`]), each round once. A clock that steps back re-enters rounds already decided;
//! they are skipped, not decided again (that could sign a round twice).

use super::redundancy::{round_at, round_start_ms};

#[derive(Clone, Debug)]
pub struct RoundClock {
    genesis_ms: u64,
    block_time_ms: u64,
    /// The last round decided.
    last: Option<u64>,
}

/// What the clock says at a moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tick {
    /// The round to decide now, if one began that was not decided yet.
    pub decide: Option<u64>,
    /// When to look again (wall-clock milliseconds).
    pub next_ms: u64,
}

impl RoundClock {
    pub fn new(genesis_ms: u64, block_time_ms: u64) -> RoundClock {
        RoundClock {
            genesis_ms,
            block_time_ms: block_time_ms.max(1),
            last: None,
        }
    }

    /// The wall clock reads `now_ms`.
    pub fn tick(&mut self, now_ms: u64) -> Tick {
        let Some(round) = round_at(now_ms, self.genesis_ms, self.block_time_ms) else {
            return Tick {
                decide: None,
                next_ms: self.genesis_ms,
            };
        };
        let next_ms = round_start_ms(round + 1, self.genesis_ms, self.block_time_ms);
        if self.last.is_some_and(|l| round <= l) {
            return Tick {
                decide: None,
                next_ms,
            };
        }
        self.last = Some(round);
        Tick {
            decide: Some(round),
            next_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decides_each_round_once_and_skips_rounds_a_clock_stepped_back_into() {
        let mut c = RoundClock::new(1_000, 100);
        let table = [
            // (wall clock, round decided, next look)
            (500, None, 1_000),
            (1_000, Some(0), 1_100),
            (1_050, None, 1_100),
            (1_100, Some(1), 1_200),
            // Slept long: round 2 was never decided, and is not now either; 4 is.
            (1_450, Some(4), 1_500),
            // The clock stepped back two rounds: nothing is decided again.
            (1_250, None, 1_300),
            (1_499, None, 1_500),
            (1_500, Some(5), 1_600),
        ];
        for (now, decide, next_ms) in table {
            assert_eq!(c.tick(now), Tick { decide, next_ms }, "at {now}");
        }
    }
}

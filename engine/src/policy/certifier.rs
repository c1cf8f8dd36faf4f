//! When a consensus node gathers commit votes: a round asks every peer for its votes (or the
//! certificates it holds) on the blocks this node applied past its certified cursor, and
//! stores the certificates a majority completes. One round at a time; at once again while
//! rounds make progress, backing off while they do not (peers that have not applied yet, a
//! partition), and looking for new blocks at a short, steady interval while idle.

use super::Millis;

/// How often an idle certifier looks for newly applied blocks.
pub const IDLE_CHECK_MS: u64 = 20;
/// The longest pause after rounds that certified nothing.
pub const MAX_BACKOFF_MS: u64 = 500;
/// Heights one round covers at most (one `GetCommitVotes` answer's worth).
pub const ROUND_HEIGHTS: u64 = 256;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Round {
    pub from: u64,
    pub to: u64,
}

#[derive(Debug)]
pub struct Certifier {
    in_flight: bool,
    due_ms: Millis,
    /// The pause after the next round that certifies nothing.
    backoff_ms: u64,
}

impl Certifier {
    pub fn new(now: Millis) -> Certifier {
        Certifier {
            in_flight: false,
            due_ms: now,
            backoff_ms: IDLE_CHECK_MS,
        }
    }

    /// The round to run at `now` with the cursor at `certified` and the head at `head`, if
    /// one is due.
    pub fn poll(&mut self, now: Millis, certified: u64, head: u64) -> Option<Round> {
        if self.in_flight || now < self.due_ms {
            return None;
        }
        if certified >= head {
            self.due_ms = now + IDLE_CHECK_MS;
            return None;
        }
        self.in_flight = true;
        let from = certified + 1;
        Some(Round {
            from,
            to: head.min(from + ROUND_HEIGHTS - 1),
        })
    }

    /// The round came back at `now`; `progressed` if it moved the cursor.
    pub fn on_round(&mut self, now: Millis, progressed: bool) {
        self.in_flight = false;
        if progressed {
            self.backoff_ms = IDLE_CHECK_MS;
            self.due_ms = now;
        } else {
            self.due_ms = now + self.backoff_ms;
            self.backoff_ms = (self.backoff_ms * 2).min(MAX_BACKOFF_MS);
        }
    }

    /// When it next has something to do; `None` while a round is out (its answer wakes it).
    pub fn next_deadline(&self) -> Option<Millis> {
        (!self.in_flight).then_some(self.due_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_round_at_a_time_over_what_is_uncertified() {
        let mut c = Certifier::new(0);
        assert_eq!(c.poll(0, 5, 5), None, "nothing to certify");
        assert_eq!(c.next_deadline(), Some(IDLE_CHECK_MS));
        assert_eq!(c.poll(IDLE_CHECK_MS - 1, 5, 9), None, "not due yet");
        assert_eq!(c.poll(IDLE_CHECK_MS, 5, 9), Some(Round { from: 6, to: 9 }));
        assert_eq!(c.poll(IDLE_CHECK_MS, 5, 9), None, "one in flight");
        assert_eq!(c.next_deadline(), None);
        // A long way behind: one answer's worth at a time.
        let mut c = Certifier::new(0);
        assert_eq!(
            c.poll(0, 0, 10_000),
            Some(Round {
                from: 1,
                to: ROUND_HEIGHTS
            })
        );
    }

    #[test]
    fn progress_goes_again_at_once_and_no_progress_backs_off_to_a_cap() {
        let mut c = Certifier::new(0);
        // (now the round comes back, progressed, when the next may run)
        let table = [
            (100, false, 100 + IDLE_CHECK_MS),
            (200, false, 200 + 2 * IDLE_CHECK_MS),
            (300, false, 300 + 4 * IDLE_CHECK_MS),
            (400, true, 400),
            (500, false, 500 + IDLE_CHECK_MS),
        ];
        for (now, progressed, due) in table {
            assert!(c.poll(now, 0, 1).is_some(), "a round at {now}");
            c.on_round(now, progressed);
            assert_eq!(c.next_deadline(), Some(due), "after the round at {now}");
        }
        let mut c = Certifier::new(0);
        for i in 0..20 {
            c.poll(i * 1_000, 0, 1);
            c.on_round(i * 1_000, false);
        }
        assert_eq!(c.next_deadline(), Some(19_000 + MAX_BACKOFF_MS));
    }
}

//! When a consensus node gathers commit votes: a round asks every peer for its votes (or the
//! certificates it holds) on the blocks this node applied past its certified cursor, and
//! stores the certificates a majority completes. One round at a time; at once again while
//! rounds make progress, backing off while they do not (peers that have not applied yet, a
//! partition), and looking for new blocks at a short, steady interval while idle.
//!
//! Not every member signs every height: a majority designated by the height does
//! ([`crate::chain::certificate::designated`]), which is all a certificate needs, and the
//! others take the certificate from them. A round that finds the cursor stuck for
//! [`EVERYONE_AFTER_MS`] (a designated signer down or cut off) asks every member to sign, and
//! rounds keep asking so for [`EVERYONE_HOLD_MS`] after the cursor last stood stuck.

use super::Millis;

/// How often an idle certifier looks for newly applied blocks.
pub const IDLE_CHECK_MS: u64 = 20;
/// The longest pause after rounds that certified nothing.
pub const MAX_BACKOFF_MS: u64 = 500;
/// How long the cursor may stand below the head, no round moving it, before rounds ask every
/// member to sign. Rounds back off meanwhile (20, 40, 80 ms ...), so the first round that
/// asks everyone runs about 300 ms after the cursor stopped.
pub const EVERYONE_AFTER_MS: u64 = 150;
/// How long rounds keep asking every member after the cursor was last stuck that long: a
/// member that is down stays down for a while, and each stall would cost the wait again.
pub const EVERYONE_HOLD_MS: u64 = 5_000;
/// Heights one round covers at most (one `GetCommitVotes` answer's worth).
pub const ROUND_HEIGHTS: u64 = 256;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Round {
    pub from: u64,
    pub to: u64,
    /// Every member signs, not only the designated majority.
    pub everyone: bool,
}

#[derive(Debug)]
pub struct Certifier {
    in_flight: bool,
    due_ms: Millis,
    /// The pause after the next round that certifies nothing.
    backoff_ms: u64,
    /// Since when the cursor stands below the head with no round moving it.
    stuck_since: Option<Millis>,
    /// Rounds ask every member to sign until then.
    everyone_until: Millis,
}

impl Certifier {
    pub fn new(now: Millis) -> Certifier {
        Certifier {
            in_flight: false,
            due_ms: now,
            backoff_ms: IDLE_CHECK_MS,
            stuck_since: None,
            everyone_until: 0,
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
            self.stuck_since = None;
            return None;
        }
        let stuck_since = *self.stuck_since.get_or_insert(now);
        if now >= stuck_since + EVERYONE_AFTER_MS {
            self.everyone_until = now + EVERYONE_HOLD_MS;
        }
        self.in_flight = true;
        let from = certified + 1;
        Some(Round {
            from,
            to: head.min(from + ROUND_HEIGHTS - 1),
            everyone: now < self.everyone_until,
        })
    }

    /// The round came back at `now`; `progressed` if it moved the cursor.
    pub fn on_round(&mut self, now: Millis, progressed: bool) {
        self.in_flight = false;
        if progressed {
            self.stuck_since = None;
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
        assert_eq!(
            c.poll(IDLE_CHECK_MS, 5, 9),
            Some(Round {
                from: 6,
                to: 9,
                everyone: false
            })
        );
        assert_eq!(c.poll(IDLE_CHECK_MS, 5, 9), None, "one in flight");
        assert_eq!(c.next_deadline(), None);
        // A long way behind: one answer's worth at a time.
        let mut c = Certifier::new(0);
        assert_eq!(
            c.poll(0, 0, 10_000),
            Some(Round {
                from: 1,
                to: ROUND_HEIGHTS,
                everyone: false,
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

    /// (now, certified, head, whether the round came back with progress) -> whether that
    /// round asked everyone; restated: a stall of EVERYONE_AFTER_MS (150) with no progress
    /// turns it on, and it stays on for EVERYONE_HOLD_MS (5,000) after the last such round.
    #[test]
    fn a_stuck_cursor_asks_everyone_and_keeps_asking_for_a_while() {
        let table: [(u64, u64, u64, bool, bool); 9] = [
            (1_000, 4, 5, false, false),
            (1_100, 4, 5, false, false),
            (1_149, 4, 5, false, false),
            // 150 ms without progress since 1,000.
            (1_150, 4, 5, true, true),
            // Progress came; held on until 6,150.
            (1_200, 5, 6, true, true),
            (6_149, 9, 10, true, true),
            (6_150, 10, 11, true, false),
            // A fresh stall starts counting from its first round.
            (7_000, 11, 12, false, false),
            (7_150, 11, 12, false, true),
        ];
        let mut c = Certifier::new(0);
        for (now, certified, head, progressed, everyone) in table {
            c.due_ms = now;
            let round = c.poll(now, certified, head).expect("a round is due");
            assert_eq!(round.everyone, everyone, "the round at {now}");
            c.on_round(now, progressed);
        }
        // Caught up: nothing stuck, and the next stall counts afresh.
        c.due_ms = 20_000;
        assert_eq!(c.poll(20_000, 12, 12), None);
        c.due_ms = 20_100;
        assert!(!c.poll(20_100, 12, 13).expect("due").everyone);
    }
}

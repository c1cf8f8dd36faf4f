//! Where a consensus node's backfill asks next, and when it waits.
//!
//! The gap itself (which blocks a snapshot jumped over, what is stored of them) is durable and
//! lives in the chain store ([`crate::chain::backfill`]): a crash resumes from the disk. This
//! cursor is what is not worth keeping across a crash: which source's turn it is, how many
//! blocks to ask for (fewer after an answer cut short by its size limit), and how long to wait
//! after every source failed or this node's own storage did.

use super::Millis;
use crate::ids::NodeId;

/// How long the backfill waits after every source failed it, or a step could not be stored.
pub const RETRY_MS: u64 = 200;
/// How long it waits after the filled gap could not be cut into batches again.
pub const RECUT_RETRY_MS: u64 = RETRY_MS * 10;
/// How long an idle backfill (no gap) waits before it looks again, unless woken sooner.
pub const IDLE_MS: u64 = 1_000;

/// What one request for missing blocks came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Blocks were verified and stored (or a snapshot changed the gap meanwhile).
    Progress,
    /// The source's answer was cut short by its size limit: ask for fewer.
    Short { got: u64 },
    /// The source did not have them, did not answer, or answered wrongly: ask another.
    NextPeer,
    /// This node could not store what it verified: wait, then ask again.
    StorageFailed,
}

/// The work the cursor asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackfillAction {
    /// Ask `source` for `count` blocks from `from` up, verify and store them; answer with
    /// [`BackfillCursor::on_step`].
    Fetch {
        source: NodeId,
        from: u64,
        count: u64,
    },
    /// Every block of the gap is stored: cut its batches again and close it; answer with
    /// [`BackfillCursor::on_recut`].
    Recut,
}

/// What the cursor reads of the gap when it is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gap {
    /// No gap.
    None,
    /// Blocks `from..from + count` are the next to fetch (`count` no more than asked).
    Missing,
    /// Every block is stored; the batches are not yet cut again.
    Filled,
}

#[derive(Clone, Debug)]
pub struct BackfillCursor {
    /// The most blocks a source serves in one answer.
    max_per_request: u64,
    turn: usize,
    ask_for: u64,
    failures: usize,
    waiting: bool,
    due_ms: Millis,
}

impl BackfillCursor {
    pub fn new(max_per_request: u64) -> BackfillCursor {
        BackfillCursor {
            max_per_request: max_per_request.max(1),
            turn: 0,
            ask_for: max_per_request.max(1),
            failures: 0,
            waiting: false,
            due_ms: 0,
        }
    }

    /// How many blocks to ask for next.
    pub fn ask_for(&self) -> u64 {
        self.ask_for
    }

    /// When the cursor next has something to do; `None` while work it asked for runs.
    pub fn next_deadline(&self) -> Option<Millis> {
        (!self.waiting).then_some(self.due_ms)
    }

    /// A gap may have appeared (a snapshot was installed): look at once.
    pub fn wake(&mut self, now: Millis) {
        self.due_ms = self.due_ms.min(now);
    }

    /// Runs if due at `now`: `gap` is the gap's state, `next` the range to fetch when blocks
    /// are missing (from [`crate::chain::backfill::Backfill::next_request`] with
    /// [`Self::ask_for`]), `sources` the peers to ask, the leader first.
    pub fn poll(
        &mut self,
        now: Millis,
        gap: Gap,
        next: Option<(u64, u64)>,
        sources: &[NodeId],
    ) -> Option<BackfillAction> {
        if self.waiting || now < self.due_ms {
            return None;
        }
        match (gap, next) {
            (Gap::None, _) => {
                self.due_ms = now + IDLE_MS;
                None
            }
            (Gap::Filled, _) | (Gap::Missing, None) => {
                self.waiting = true;
                Some(BackfillAction::Recut)
            }
            (Gap::Missing, Some((from, count))) => {
                let Some(source) = sources.get(self.turn % sources.len().max(1)).copied() else {
                    self.due_ms = now + RETRY_MS;
                    return None;
                };
                self.waiting = true;
                Some(BackfillAction::Fetch {
                    source,
                    from,
                    count,
                })
            }
        }
    }

    /// What the fetch came to, at `now`; `sources` is how many there were to ask.
    pub fn on_step(&mut self, now: Millis, step: Step, sources: usize) {
        self.waiting = false;
        self.due_ms = now;
        match step {
            Step::Progress => {
                self.ask_for = self.max_per_request;
                self.failures = 0;
            }
            Step::Short { got } => self.ask_for = got.max(1),
            Step::NextPeer => {
                self.turn += 1;
                self.failures += 1;
                self.ask_for = self.max_per_request;
                // Every source failed in turn: pause before the next lap.
                if self.failures >= sources {
                    self.failures = 0;
                    self.due_ms = now + RETRY_MS;
                }
            }
            Step::StorageFailed => {
                self.ask_for = self.max_per_request;
                self.failures = 0;
                self.due_ms = now + RETRY_MS;
            }
        }
    }

    /// The recut came back at `now`: closed (or a snapshot moved the gap), or failed.
    pub fn on_recut(&mut self, now: Millis, closed: bool) {
        self.waiting = false;
        self.due_ms = if closed { now } else { now + RECUT_RETRY_MS };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId([n; 64])
    }

    #[test]
    fn asks_sources_in_turn_and_pauses_after_a_failed_lap() {
        let sources = [id(1), id(2)];
        let mut c = BackfillCursor::new(64);
        let mut now = 0;
        let ask = |c: &mut BackfillCursor, now| c.poll(now, Gap::Missing, Some((10, 64)), &sources);
        let table = [
            // (answer to the previous fetch, source asked next, wait before it)
            (None, id(1), 0),
            (Some(Step::NextPeer), id(2), 0),
            (Some(Step::NextPeer), id(1), RETRY_MS),
            (Some(Step::Progress), id(1), 0),
            (Some(Step::NextPeer), id(2), 0),
            (Some(Step::Progress), id(2), 0),
            (Some(Step::StorageFailed), id(2), RETRY_MS),
        ];
        for (answer, source, wait) in table {
            if let Some(step) = answer {
                c.on_step(now, step, sources.len());
            }
            if wait > 0 {
                assert_eq!(ask(&mut c, now + wait - 1), None, "waits {wait} ms");
                now += wait;
            }
            let Some(BackfillAction::Fetch { source: got, .. }) = ask(&mut c, now) else {
                panic!("no fetch after {answer:?}");
            };
            assert_eq!(got, source, "after {answer:?}");
            // One request at a time.
            assert_eq!(ask(&mut c, now), None);
        }
    }

    #[test]
    fn a_short_answer_asks_for_fewer_until_progress() {
        let mut c = BackfillCursor::new(64);
        assert_eq!(c.ask_for(), 64);
        c.poll(0, Gap::Missing, Some((1, 64)), &[id(1)]);
        c.on_step(0, Step::Short { got: 5 }, 1);
        assert_eq!(c.ask_for(), 5);
        c.poll(0, Gap::Missing, Some((1, 5)), &[id(1)]);
        c.on_step(0, Step::Short { got: 0 }, 1);
        assert_eq!(c.ask_for(), 1, "never asks for nothing");
        c.poll(0, Gap::Missing, Some((1, 1)), &[id(1)]);
        c.on_step(0, Step::Progress, 1);
        assert_eq!(c.ask_for(), 64);
    }

    #[test]
    fn a_filled_gap_is_recut_and_a_failed_recut_waits() {
        let mut c = BackfillCursor::new(64);
        assert_eq!(
            c.poll(0, Gap::Filled, None, &[]),
            Some(BackfillAction::Recut)
        );
        assert_eq!(c.next_deadline(), None);
        c.on_recut(10, false);
        assert_eq!(
            c.poll(10 + RECUT_RETRY_MS - 1, Gap::Filled, None, &[]),
            None
        );
        assert_eq!(
            c.poll(10 + RECUT_RETRY_MS, Gap::Filled, None, &[]),
            Some(BackfillAction::Recut)
        );
        c.on_recut(3_000, true);
        assert_eq!(c.next_deadline(), Some(3_000));
    }

    #[test]
    fn idle_without_a_gap_until_woken_and_waits_without_sources() {
        let mut c = BackfillCursor::new(64);
        assert_eq!(c.poll(0, Gap::None, None, &[]), None);
        assert_eq!(c.next_deadline(), Some(IDLE_MS));
        c.wake(5);
        assert_eq!(c.next_deadline(), Some(5));
        assert_eq!(c.poll(5, Gap::Missing, Some((1, 64)), &[]), None);
        assert_eq!(c.next_deadline(), Some(5 + RETRY_MS));
    }
}

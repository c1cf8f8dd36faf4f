//! How often to say the same thing: an outsider can make a node refuse a connection a thousand
//! times a second, and a line each filled the log at 90 KiB/s under a loopback flood (5,106
//! lines in 10 s). Per key (who, and what went wrong), the first occurrence is said at once;
//! later ones are counted and said as one summary when the key next occurs after a window.
//! The metrics count every one.

use std::collections::BTreeMap;

use super::Millis;

/// How long a key's later occurrences are counted before they are summarised.
pub const DEFAULT_WINDOW_MS: u64 = 60_000;
/// Keys remembered at most; the oldest-said is forgotten first, so a flood from many
/// addresses costs bounded memory (and is then said again, which is bounded too).
pub const MAX_KEYS: usize = 1_024;

/// What to say about an occurrence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Say {
    /// The first in a window: say it as it is.
    First,
    /// `count` more happened in the `over_ms` since the key was last said, this one included.
    Summary { count: u64, over_ms: u64 },
}

#[derive(Clone, Debug)]
struct Seen {
    said_at: Millis,
    unsaid: u64,
}

#[derive(Clone, Debug)]
pub struct LogBudget<K: Ord + Clone> {
    window_ms: u64,
    max_keys: usize,
    keys: BTreeMap<K, Seen>,
}

impl<K: Ord + Clone> Default for LogBudget<K> {
    fn default() -> Self {
        LogBudget::new(DEFAULT_WINDOW_MS, MAX_KEYS)
    }
}

impl<K: Ord + Clone> LogBudget<K> {
    pub fn new(window_ms: u64, max_keys: usize) -> LogBudget<K> {
        LogBudget {
            window_ms,
            max_keys: max_keys.max(1),
            keys: BTreeMap::new(),
        }
    }

    /// `key` happened at `now`: what to say, if anything.
    pub fn note(&mut self, now: Millis, key: K) -> Option<Say> {
        if let Some(seen) = self.keys.get_mut(&key) {
            seen.unsaid += 1;
            let over_ms = now.saturating_sub(seen.said_at);
            if over_ms < self.window_ms {
                return None;
            }
            let count = seen.unsaid;
            *seen = Seen {
                said_at: now,
                unsaid: 0,
            };
            return Some(Say::Summary { count, over_ms });
        }
        if self.keys.len() >= self.max_keys {
            super::forget_oldest(&mut self.keys, |s| s.said_at);
        }
        self.keys.insert(
            key,
            Seen {
                said_at: now,
                unsaid: 0,
            },
        );
        Some(Say::First)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn said_once_then_summarised_per_key_in_bounded_memory() {
        let mut b = LogBudget::new(1_000, 2);
        // (now ms, key, what is said)
        let table: Vec<(Millis, &str, Option<Say>)> = vec![
            (0, "a", Some(Say::First)),
            (1, "a", None),
            (2, "b", Some(Say::First)),
            (999, "a", None),
            (
                1_000,
                "a",
                Some(Say::Summary {
                    count: 3,
                    over_ms: 1_000,
                }),
            ),
            (1_500, "a", None),
            // A third key forgets the oldest-said (b at 2) ...
            (1_600, "c", Some(Say::First)),
            // ... which is then said afresh, forgetting a (said at 1,000) ...
            (1_700, "b", Some(Say::First)),
            // ... which is said afresh too.
            (2_100, "a", Some(Say::First)),
            (2_200, "a", None),
            (
                3_100,
                "a",
                Some(Say::Summary {
                    count: 2,
                    over_ms: 1_000,
                }),
            ),
        ];
        for (i, (now, key, expect)) in table.into_iter().enumerate() {
            assert_eq!(b.note(now, key), expect, "row {i}");
            assert!(b.keys.len() <= 2, "row {i}");
        }
    }
}

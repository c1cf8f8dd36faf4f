//! Checks a key-value history for linearizability: every operation appears to take effect at
//! one instant between its invocation and its completion, in an order a single register would
//! give. Checked key by key (linearizability is local: a history is linearizable if each
//! object's is).
//!
//! The search is Wing and Gong's, with Lowe's memoization, as Porcupine implements it: walk
//! the entries in time order, linearize a call whose effect the register allows, backtrack
//! when a completion is reached before its call was linearized, and never revisit a (set of
//! linearized operations, register value) pair. Stateright's `LinearizabilityTester` searches
//! the same space without the memo; on a history that is not linearizable (the very case the
//! checker is for) it revisits the same states exponentially often, and a few hundred
//! operations on one key already outran any budget. An operation whose completion the client
//! never saw (a timeout: it may or may not have happened) completes at the end of time with any
//! answer, which is Jepsen's treatment of indeterminate operations.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::time::Duration;

/// What a client asked of one key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvCall {
    Put(Vec<u8>),
    Delete,
    CompareAndSet {
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    },
    Get,
}

/// What it was answered.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KvReturn {
    Put,
    Deleted(bool),
    Swapped(bool),
    Value(Option<Vec<u8>>),
}

/// One operation of a history.
#[derive(Clone, Debug)]
pub struct Operation {
    pub client: u64,
    /// The client's number for it: with `client`, what names its transaction.
    pub request: u64,
    pub key: Vec<u8>,
    pub call: KvCall,
    pub invoked: Duration,
    /// `None`: the client never learned the outcome (it may have happened).
    pub completed: Option<(Duration, KvReturn)>,
}

/// The register's answer to `call` on `value`, and its value after.
fn step(value: &Option<Vec<u8>>, call: &KvCall) -> (KvReturn, Option<Vec<u8>>) {
    match call {
        KvCall::Put(v) => (KvReturn::Put, Some(v.clone())),
        KvCall::Delete => (KvReturn::Deleted(value.is_some()), None),
        KvCall::CompareAndSet { expected, new } if value == expected => {
            (KvReturn::Swapped(true), new.clone())
        }
        KvCall::CompareAndSet { .. } => (KvReturn::Swapped(false), value.clone()),
        KvCall::Get => (KvReturn::Value(value.clone()), value.clone()),
    }
}

/// Why a history failed the check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No order of `key`'s operations explains what the clients saw.
    NotLinearizable { key: Vec<u8>, history: Vec<String> },
    /// The search for `key` took more than its budget of steps: neither proven nor refuted.
    Inconclusive { key: Vec<u8>, operations: usize },
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::NotLinearizable { key, history } => {
                let shown = history.len().min(SHOWN_OPERATIONS);
                write!(
                    f,
                    "no linearization of key {:?}'s {} operations (the first {shown}):\n  {}",
                    String::from_utf8_lossy(key),
                    history.len(),
                    history[..shown].join("\n  ")
                )
            }
            Verdict::Inconclusive { key, operations } => write!(
                f,
                "linearizability of key {:?} ({operations} operations) undecided within the budget",
                String::from_utf8_lossy(key)
            ),
        }
    }
}

/// Operations a refutation prints (the rest are in the verdict).
const SHOWN_OPERATIONS: usize = 40;

/// Steps one key's search may take before it gives up as inconclusive.
pub const STEP_BUDGET: u64 = 20_000_000;

/// Checks every key's operations; the first key that fails, fails the history.
pub fn check(history: &[Operation]) -> Result<(), Verdict> {
    let mut by_key: BTreeMap<&[u8], Vec<&Operation>> = BTreeMap::new();
    for op in history {
        by_key.entry(&op.key).or_default().push(op);
    }
    for (key, ops) in by_key {
        check_key(&ops).map_err(|refuted| match refuted {
            Refuted::Impossible => Verdict::NotLinearizable {
                key: key.to_vec(),
                history: describe(&ops),
            },
            Refuted::OverBudget => Verdict::Inconclusive {
                key: key.to_vec(),
                operations: ops.len(),
            },
        })?;
    }
    Ok(())
}

fn describe(ops: &[&Operation]) -> Vec<String> {
    let mut ops = ops.to_vec();
    ops.sort_by_key(|o| o.invoked);
    ops.iter()
        .map(|o| {
            let done = match &o.completed {
                Some((at, ret)) => format!("{:.3}s -> {ret:?}", at.as_secs_f64()),
                None => "never answered".to_string(),
            };
            format!(
                "{:.3}s client {} {:?} .. {done}",
                o.invoked.as_secs_f64(),
                o.client,
                o.call
            )
        })
        .collect()
}

enum Refuted {
    Impossible,
    OverBudget,
}

/// One end of an operation in time: its call or its return.
#[derive(Clone, Copy)]
struct Entry {
    op: usize,
    is_call: bool,
}

/// The entries still to linearize, as a doubly linked list over `entries` (index
/// `entries.len()` is the head), so an operation is lifted out and put back in O(1).
struct Entries {
    entries: Vec<Entry>,
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Each operation's call and return entry.
    ends: Vec<(usize, usize)>,
}

impl Entries {
    fn head(&self) -> usize {
        self.entries.len()
    }

    fn first(&self) -> Option<usize> {
        let n = self.next[self.head()];
        (n != self.head()).then_some(n)
    }

    fn after(&self, e: usize) -> Option<usize> {
        let n = self.next[e];
        (n != self.head()).then_some(n)
    }

    fn unlink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = n;
        self.prev[n] = p;
    }

    /// Puts `e` back where it was; valid when lifts are undone in reverse order.
    fn relink(&mut self, e: usize) {
        let (p, n) = (self.prev[e], self.next[e]);
        self.next[p] = e;
        self.prev[n] = e;
    }

    fn lift(&mut self, op: usize) {
        let (call, ret) = self.ends[op];
        self.unlink(call);
        self.unlink(ret);
    }

    fn unlift(&mut self, op: usize) {
        let (call, ret) = self.ends[op];
        self.relink(ret);
        self.relink(call);
    }
}

fn check_key(ops: &[&Operation]) -> Result<(), Refuted> {
    // Calls before returns at the same instant: operations that touch in time count as
    // concurrent, so a coarse clock never makes a false alarm.
    let mut timed: Vec<(Duration, bool, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        timed.push((op.invoked, false, i));
        let end = op.completed.as_ref().map_or(Duration::MAX, |(at, _)| *at);
        timed.push((end, true, i));
    }
    timed.sort();
    let n = timed.len();
    let mut list = Entries {
        entries: timed
            .iter()
            .map(|(_, is_return, op)| Entry {
                op: *op,
                is_call: !is_return,
            })
            .collect(),
        next: (1..=n).chain([0]).collect(),
        prev: std::iter::once(n).chain(0..n).collect(),
        ends: vec![(0, 0); ops.len()],
    };
    for (e, entry) in list.entries.iter().enumerate() {
        let end = &mut list.ends[entry.op];
        if entry.is_call {
            end.0 = e;
        } else {
            end.1 = e;
        }
    }
    let words = ops.len().div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut seen: HashSet<(Vec<u64>, Option<Vec<u8>>)> = HashSet::new();
    let mut value: Option<Vec<u8>> = None;
    // Linearized operations in order, with the value before each.
    let mut stack: Vec<(usize, Option<Vec<u8>>)> = Vec::new();
    let mut at = list.first();
    let mut steps = 0u64;
    while let Some(e) = at {
        steps += 1;
        if steps > STEP_BUDGET {
            return Err(Refuted::OverBudget);
        }
        let entry = list.entries[e];
        if entry.is_call {
            let op = ops[entry.op];
            let (answer, after) = step(&value, &op.call);
            let allowed = op.completed.as_ref().is_none_or(|(_, ret)| *ret == answer);
            if allowed {
                let (w, bit) = (entry.op / 64, 1u64 << (entry.op % 64));
                linearized[w] |= bit;
                if seen.insert((linearized.clone(), after.clone())) {
                    stack.push((entry.op, std::mem::replace(&mut value, after)));
                    list.lift(entry.op);
                    at = list.first();
                    if at.is_none() {
                        return Ok(());
                    }
                    continue;
                }
                linearized[w] &= !bit;
            }
            at = list.after(e);
        } else {
            // A completion before its call was linearized: undo the last choice.
            let Some((op, before)) = stack.pop() else {
                return Err(Refuted::Impossible);
            };
            linearized[op / 64] &= !(1u64 << (op % 64));
            value = before;
            list.unlift(op);
            at = list.after(list.ends[op].0);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: u64, call: KvCall, from_ms: u64, to: Option<(u64, KvReturn)>) -> Operation {
        Operation {
            client,
            request: from_ms,
            key: b"k".to_vec(),
            call,
            invoked: Duration::from_millis(from_ms),
            completed: to.map(|(ms, r)| (Duration::from_millis(ms), r)),
        }
    }

    fn v(s: &str) -> Option<Vec<u8>> {
        Some(s.as_bytes().to_vec())
    }

    fn put(s: &str) -> KvCall {
        KvCall::Put(s.as_bytes().to_vec())
    }

    /// (what it shows, the history, linearizable?)
    #[test]
    fn histories_are_judged_as_a_register_would() {
        let table: Vec<(&str, Vec<Operation>, bool)> = vec![
            (
                "a read after a completed write sees it",
                vec![
                    op(1, put("a"), 0, Some((10, KvReturn::Put))),
                    op(2, KvCall::Get, 20, Some((30, KvReturn::Value(v("a"))))),
                ],
                true,
            ),
            (
                "a stale read after a completed write",
                vec![
                    op(1, put("a"), 0, Some((10, KvReturn::Put))),
                    op(2, KvCall::Get, 20, Some((30, KvReturn::Value(None)))),
                ],
                false,
            ),
            (
                "a read concurrent with the write may see either",
                vec![
                    op(1, put("a"), 0, Some((30, KvReturn::Put))),
                    op(2, KvCall::Get, 10, Some((20, KvReturn::Value(None)))),
                    op(3, KvCall::Get, 11, Some((21, KvReturn::Value(v("a"))))),
                ],
                true,
            ),
            (
                "but not go back once a later read saw the write",
                vec![
                    op(1, put("a"), 0, Some((50, KvReturn::Put))),
                    op(2, KvCall::Get, 10, Some((20, KvReturn::Value(v("a"))))),
                    op(3, KvCall::Get, 25, Some((30, KvReturn::Value(None)))),
                ],
                false,
            ),
            (
                "a timed-out write may have happened",
                vec![
                    op(1, put("a"), 0, None),
                    op(2, KvCall::Get, 20, Some((30, KvReturn::Value(v("a"))))),
                    op(2, KvCall::Get, 40, Some((50, KvReturn::Value(v("a"))))),
                ],
                true,
            ),
            (
                "or not",
                vec![
                    op(1, put("a"), 0, None),
                    op(2, KvCall::Get, 20, Some((30, KvReturn::Value(None)))),
                ],
                true,
            ),
            (
                "but not both: seen, then unseen",
                vec![
                    op(1, put("a"), 0, None),
                    op(2, KvCall::Get, 20, Some((30, KvReturn::Value(v("a"))))),
                    op(2, KvCall::Get, 40, Some((50, KvReturn::Value(None)))),
                ],
                false,
            ),
            (
                "two compare-and-sets from the same value: one wins",
                vec![
                    op(1, put("a"), 0, Some((5, KvReturn::Put))),
                    op(
                        2,
                        KvCall::CompareAndSet {
                            expected: v("a"),
                            new: v("b"),
                        },
                        10,
                        Some((30, KvReturn::Swapped(true))),
                    ),
                    op(
                        3,
                        KvCall::CompareAndSet {
                            expected: v("a"),
                            new: v("c"),
                        },
                        11,
                        Some((31, KvReturn::Swapped(true))),
                    ),
                ],
                false,
            ),
            (
                "a delete says whether the key was there",
                vec![
                    op(1, put("a"), 0, Some((5, KvReturn::Put))),
                    op(2, KvCall::Delete, 10, Some((20, KvReturn::Deleted(true)))),
                    op(3, KvCall::Delete, 30, Some((40, KvReturn::Deleted(false)))),
                    op(4, KvCall::Get, 50, Some((60, KvReturn::Value(None)))),
                ],
                true,
            ),
        ];
        for (what, history, linearizable) in table {
            assert_eq!(check(&history).is_ok(), linearizable, "{what}");
        }
    }

    /// Many concurrent clients on one key with a stale read at the end: the memo keeps the
    /// refutation (which must try every order) within a small number of steps.
    #[test]
    fn a_long_refutation_stays_within_the_budget() {
        let mut history = Vec::new();
        for i in 0..400u64 {
            let value = format!("v{i}");
            let start = i * 10;
            history.push(op(
                i % 8,
                put(&value),
                start,
                Some((start + 35, KvReturn::Put)),
            ));
        }
        history.push(op(
            99,
            KvCall::Get,
            10_000,
            Some((10_010, KvReturn::Value(v("v3")))),
        ));
        match check(&history) {
            Err(Verdict::NotLinearizable { history, .. }) => assert_eq!(history.len(), 401),
            other => panic!("expected a refutation, got {other:?}"),
        }
        history.pop();
        history.push(op(
            99,
            KvCall::Get,
            10_000,
            Some((10_010, KvReturn::Value(v("v399")))),
        ));
        assert_eq!(check(&history), Ok(()));
    }
}

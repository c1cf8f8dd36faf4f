//! Shrinking a failing schedule: remove faults, then close the time between them and after the
//! last, for as long as the same check still fails. Pure: the runs are the caller's, asked
//! through an oracle that says which of some candidate schedules (in order) is the first to
//! fail. The same input and the same oracle give the same minimal schedule.

use super::{Fault, Schedule, Timed};

/// Gaps shorter than this are not halved again: a few runs more would buy tens of milliseconds.
const SMALLEST_STEP_MS: u64 = 100;

/// How far a shrink got, said after each step (for progress output).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    pub faults: usize,
    pub end_ms: u64,
    /// Candidate schedules asked about so far.
    pub asked: usize,
}

/// The shrinking, with the oracle and a progress callback.
pub struct Shrinker<'a> {
    /// Given candidates in order, the index of the first that still fails the same check.
    oracle: &'a mut dyn FnMut(&[Schedule]) -> Option<usize>,
    said: &'a mut dyn FnMut(&Step),
    asked: usize,
}

impl<'a> Shrinker<'a> {
    pub fn new(
        oracle: &'a mut dyn FnMut(&[Schedule]) -> Option<usize>,
        said: &'a mut dyn FnMut(&Step),
    ) -> Shrinker<'a> {
        Shrinker {
            oracle,
            said,
            asked: 0,
        }
    }

    /// Candidates asked about so far.
    pub fn asked(&self) -> usize {
        self.asked
    }

    /// The smallest schedule reached from `start` (which must fail) that still fails: no fault
    /// can be removed, no gap closed or halved (down to [`SMALLEST_STEP_MS`]), the end comes as
    /// soon after the last fault as it can, and no fault can be made milder ([`milder`]).
    pub fn shrink(&mut self, start: Schedule) -> Schedule {
        let mut s = start;
        loop {
            let before = s.clone();
            s = self.remove_faults(s);
            s = self.close_gaps(s);
            s = self.soften(s);
            if s == before {
                return s;
            }
        }
    }

    /// Each fault in turn replaced by its milder forms, the mildest first, while the schedule
    /// still fails.
    fn soften(&mut self, mut s: Schedule) -> Schedule {
        for i in 0..s.faults.len() {
            loop {
                let candidates: Vec<Schedule> = milder(&s.faults[i].fault)
                    .into_iter()
                    .map(|fault| {
                        let mut c = s.clone();
                        c.faults[i].fault = fault;
                        c
                    })
                    .collect();
                match self.ask(candidates) {
                    Some(softer) => {
                        s = softer;
                        self.tell(&s);
                    }
                    None => break,
                }
            }
        }
        s
    }

    fn ask(&mut self, candidates: Vec<Schedule>) -> Option<Schedule> {
        if candidates.is_empty() {
            return None;
        }
        self.asked += candidates.len();
        let first = (self.oracle)(&candidates);
        first.and_then(|i| candidates.into_iter().nth(i))
    }

    fn tell(&mut self, s: &Schedule) {
        let step = Step {
            faults: s.faults.len(),
            end_ms: s.end_ms,
            asked: self.asked,
        };
        (self.said)(&step);
    }

    /// Delta debugging's reduction: try removing each run of `k` faults, `k` halving from half
    /// the schedule down to one; a removal that still fails is kept and the same `k` is tried
    /// again on what is left.
    fn remove_faults(&mut self, mut s: Schedule) -> Schedule {
        let mut k = s.faults.len().div_ceil(2);
        while k >= 1 && !s.faults.is_empty() {
            let candidates: Vec<Schedule> = (0..s.faults.len())
                .step_by(k)
                .map(|from| without(&s, from, k))
                .collect();
            match self.ask(candidates) {
                Some(smaller) => {
                    s = smaller;
                    self.tell(&s);
                    k = k.min(s.faults.len().div_ceil(2));
                }
                None => k /= 2,
            }
        }
        s
    }

    /// For each fault, then the end: the time since the one before closed (everything after
    /// moving earlier with it), or else closed as far as the schedule still fails, searched
    /// two points at a time down to [`SMALLEST_STEP_MS`].
    fn close_gaps(&mut self, mut s: Schedule) -> Schedule {
        for i in 0..=s.faults.len() {
            let gap = gap_before(&s, i);
            if gap < SMALLEST_STEP_MS {
                continue;
            }
            let base = s.clone();
            if let Some(closed) = self.ask(vec![shift_from(&base, i, gap)]) {
                s = closed;
                self.tell(&s);
                continue;
            }
            // Shifting by `fails_ms` still fails; by `passes_ms` it does not.
            let (mut fails_ms, mut passes_ms) = (0u64, gap);
            while passes_ms - fails_ms >= SMALLEST_STEP_MS {
                let third = (passes_ms - fails_ms) / 3;
                let (far, near) = (passes_ms - third, fails_ms + third);
                let candidates = vec![shift_from(&base, i, far), shift_from(&base, i, near)];
                match self.ask(candidates) {
                    Some(closer) => {
                        let by = base.end_ms - closer.end_ms;
                        if by == far {
                            fails_ms = far;
                        } else {
                            fails_ms = near;
                            passes_ms = far;
                        }
                        s = closer;
                        self.tell(&s);
                    }
                    None => passes_ms = near,
                }
            }
        }
        s
    }
}

/// Milder forms of `fault`, the mildest first: a process exit for a power loss, every unsynced
/// write kept (then half of them) rather than some lost, half the clock jump, loss, delay,
/// stall or count. Each form is strictly milder, so softening ends.
fn milder(fault: &Fault) -> Vec<Fault> {
    fn keeps(keep: u16) -> Vec<u16> {
        match keep {
            1_000 => vec![],
            k if k >= 500 => vec![1_000],
            _ => vec![1_000, 500],
        }
    }
    /// A crash's milder (power loss, kept) pairs: a process exit first, then more kept.
    fn crashes(power_loss: bool, keep: u16) -> Vec<(bool, u16)> {
        let exit = power_loss.then_some((false, keep));
        exit.into_iter()
            .chain(keeps(keep).into_iter().map(|k| (power_loss, k)))
            .collect()
    }
    match *fault {
        Fault::Crash {
            node,
            power_loss,
            keep_permille,
        } => crashes(power_loss, keep_permille)
            .into_iter()
            .map(|(power_loss, keep_permille)| Fault::Crash {
                node,
                power_loss,
                keep_permille,
            })
            .collect(),
        Fault::CrashLeader {
            power_loss,
            keep_permille,
        } => crashes(power_loss, keep_permille)
            .into_iter()
            .map(|(power_loss, keep_permille)| Fault::CrashLeader {
                power_loss,
                keep_permille,
            })
            .collect(),
        Fault::CrashExternal {
            external,
            keep_permille,
        } => keeps(keep_permille)
            .into_iter()
            .map(|k| Fault::CrashExternal {
                external,
                keep_permille: k,
            })
            .collect(),
        Fault::ClockJump { node, delta_ms } if delta_ms.unsigned_abs() >= 2 * SMALLEST_STEP_MS => {
            vec![Fault::ClockJump {
                node,
                delta_ms: delta_ms / 2,
            }]
        }
        Fault::Loss { permille } if permille >= 20 => vec![Fault::Loss {
            permille: permille / 2,
        }],
        Fault::Delay { max_ms } if max_ms >= 20 => vec![Fault::Delay { max_ms: max_ms / 2 }],
        Fault::Stall { reader, writer, ms } if ms >= 2 * SMALLEST_STEP_MS => vec![Fault::Stall {
            reader,
            writer,
            ms: ms / 2,
        }],
        // A shorter stall, or fewer stalled writes.
        Fault::SlowFsync { node, writes, ms } if ms >= 2 * SMALLEST_STEP_MS || writes > 1 => [
            Fault::SlowFsync {
                node,
                writes,
                ms: ms / 2,
            },
            Fault::SlowFsync {
                node,
                writes: writes.div_ceil(2),
                ms,
            },
        ]
        .into_iter()
        .filter(|f| f != fault)
        .collect(),
        // A shorter wait, or fewer slow reads.
        Fault::SlowReads { node, reads, ms } if ms >= 2 * SMALLEST_STEP_MS || reads > 1 => [
            Fault::SlowReads {
                node,
                reads,
                ms: ms / 2,
            },
            Fault::SlowReads {
                node,
                reads: reads.div_ceil(2),
                ms,
            },
        ]
        .into_iter()
        .filter(|f| f != fault)
        .collect(),
        Fault::L1DropNext { count } if count > 1 => vec![Fault::L1DropNext { count: 1 }],
        Fault::L1LoseReceipts { count } if count > 1 => vec![Fault::L1LoseReceipts { count: 1 }],
        _ => Vec::new(),
    }
}

/// `s` without faults `from..from + k`.
fn without(s: &Schedule, from: usize, k: usize) -> Schedule {
    let faults: Vec<Timed> = s
        .faults
        .iter()
        .enumerate()
        .filter(|(i, _)| *i < from || *i >= from + k)
        .map(|(_, t)| t.clone())
        .collect();
    Schedule {
        faults,
        end_ms: s.end_ms,
    }
}

/// The time between fault `i` and the one before it (the start for the first); for `i` past
/// the last fault, between the last fault and the end.
fn gap_before(s: &Schedule, i: usize) -> u64 {
    let prev = if i == 0 { 0 } else { s.faults[i - 1].at_ms };
    let at = s.faults.get(i).map_or(s.end_ms, |t| t.at_ms);
    at - prev
}

/// `s` with fault `i` and everything after it (the end too) `by_ms` earlier.
fn shift_from(s: &Schedule, i: usize, by_ms: u64) -> Schedule {
    let faults = s
        .faults
        .iter()
        .enumerate()
        .map(|(j, t)| Timed {
            at_ms: if j >= i { t.at_ms - by_ms } else { t.at_ms },
            fault: t.fault.clone(),
        })
        .collect();
    Schedule {
        faults,
        end_ms: s.end_ms - by_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crash(node: usize) -> Fault {
        Fault::Crash {
            node,
            power_loss: false,
            keep_permille: 0,
        }
    }

    /// Forty faults a second apart, ending at 45 s: crashes of n0..n2 in turn, with a disk
    /// failure of n1 as the 17th and a clock jump as the 30th.
    fn big() -> Schedule {
        let faults = (0..40u64)
            .map(|i| Timed {
                at_ms: 1_000 * (i + 1),
                fault: match i {
                    16 => Fault::DiskFails { node: 1 },
                    29 => Fault::ClockJump {
                        node: 2,
                        delta_ms: -5_000,
                    },
                    _ => crash(i as usize % 3),
                },
            })
            .collect();
        Schedule::new(faults, 45_000)
    }

    /// A planted bug: it fails when n1's disk fails and, at least 5 s later, n2's clock jumps,
    /// and the faults go on for at least 2 s after that.
    fn fails(s: &Schedule) -> bool {
        let disk = s
            .faults
            .iter()
            .find(|t| t.fault == Fault::DiskFails { node: 1 });
        let jump = s
            .faults
            .iter()
            .find(|t| matches!(t.fault, Fault::ClockJump { node: 2, .. }));
        match (disk, jump) {
            (Some(d), Some(j)) => j.at_ms >= d.at_ms + 5_000 && s.end_ms >= j.at_ms + 2_000,
            _ => false,
        }
    }

    fn run(start: Schedule) -> (Schedule, usize, Vec<Step>) {
        let mut oracle = |c: &[Schedule]| c.iter().position(fails);
        let mut steps = Vec::new();
        let mut said = |s: &Step| steps.push(s.clone());
        let mut shrinker = Shrinker::new(&mut oracle, &mut said);
        let out = shrinker.shrink(start);
        let asked = shrinker.asked();
        (out, asked, steps)
    }

    #[test]
    fn a_planted_failure_shrinks_to_the_two_faults_that_cause_it() {
        let (s, asked, steps) = run(big());
        assert!(fails(&s));
        let kinds: Vec<String> = s.faults.iter().map(|t| t.fault.to_string()).collect();
        // The bug does not care how far the clock jumps: the jump is halved while it is at
        // least two steps.
        assert_eq!(kinds, ["disk-fails n1", "clock-jump n2 -156ms"]);
        // Moved as early as the bug allows, within the smallest step.
        assert!(s.faults[0].at_ms < SMALLEST_STEP_MS, "{s}");
        let gap = s.faults[1].at_ms - s.faults[0].at_ms;
        assert!((5_000..5_000 + SMALLEST_STEP_MS).contains(&gap), "{s}");
        let tail = s.end_ms - s.faults[1].at_ms;
        assert!((2_000..2_000 + SMALLEST_STEP_MS).contains(&tail), "{s}");
        // Far fewer runs than trying every subset, and it said how it went.
        assert!(asked < 200, "asked {asked}");
        assert_eq!(steps.last().map(|s| s.faults), Some(2));
    }

    #[test]
    fn the_same_input_gives_the_same_minimal_schedule() {
        assert_eq!(run(big()).0, run(big()).0);
    }

    #[test]
    fn a_schedule_that_cannot_shrink_comes_back_unchanged() {
        let s = Schedule::new(
            vec![
                Timed {
                    at_ms: 0,
                    fault: Fault::DiskFails { node: 1 },
                },
                Timed {
                    at_ms: 5_000,
                    fault: Fault::ClockJump {
                        node: 2,
                        delta_ms: 1,
                    },
                },
            ],
            7_000,
        );
        let (out, _, steps) = run(s.clone());
        assert_eq!(out, s);
        assert!(steps.is_empty());
    }

    #[test]
    fn a_failure_that_needs_no_fault_shrinks_to_none() {
        let mut oracle = |c: &[Schedule]| (!c.is_empty()).then_some(0);
        let mut said = |_: &Step| {};
        let out = Shrinker::new(&mut oracle, &mut said).shrink(big());
        assert_eq!(out, Schedule::default());
    }

    #[test]
    fn faults_are_softened_as_far_as_the_failure_allows() {
        // Fails while some crash is a power loss, and n2's clock jumps back at least 3 s.
        let fails = |s: &Schedule| {
            let power = s.faults.iter().any(|t| {
                matches!(
                    t.fault,
                    Fault::Crash {
                        power_loss: true,
                        ..
                    }
                )
            });
            let jump = s.faults.iter().any(
                |t| matches!(t.fault, Fault::ClockJump { node: 2, delta_ms } if delta_ms <= -3_000),
            );
            power && jump
        };
        let start = Schedule::new(
            vec![
                Timed {
                    at_ms: 0,
                    fault: Fault::Crash {
                        node: 0,
                        power_loss: true,
                        keep_permille: 77,
                    },
                },
                Timed {
                    at_ms: 0,
                    fault: Fault::ClockJump {
                        node: 2,
                        delta_ms: -29_000,
                    },
                },
            ],
            0,
        );
        let mut oracle = |c: &[Schedule]| c.iter().position(fails);
        let mut said = |_: &Step| {};
        let out = Shrinker::new(&mut oracle, &mut said).shrink(start);
        let text: Vec<String> = out.faults.iter().map(|t| t.fault.to_string()).collect();
        // The power loss stays (the bug needs it), every unsynced write is kept, and the jump
        // is halved while it is still at least 3 s.
        assert_eq!(
            text,
            ["crash n0 power-loss keep=1000", "clock-jump n2 -3625ms"]
        );
    }

    #[test]
    fn every_softening_chain_ends() {
        let mut f = Fault::Crash {
            node: 1,
            power_loss: true,
            keep_permille: 0,
        };
        for _ in 0..10 {
            match milder(&f).into_iter().last() {
                Some(next) => f = next,
                None => break,
            }
        }
        assert!(milder(&f).is_empty(), "{f}");
        let mut jump = Fault::ClockJump {
            node: 0,
            delta_ms: -30_000,
        };
        let mut steps = 0;
        while let Some(next) = milder(&jump).into_iter().next() {
            jump = next;
            steps += 1;
        }
        assert!(steps < 10, "{steps}");
    }

    #[test]
    fn shifting_moves_the_rest_and_the_end_with_it() {
        let s = big();
        let shifted = shift_from(&s, 2, 400);
        assert_eq!(shifted.faults[1].at_ms, 2_000);
        assert_eq!(shifted.faults[2].at_ms, 2_600);
        assert_eq!(shifted.end_ms, 44_600);
        assert_eq!(gap_before(&s, 40), 5_000);
        assert_eq!(without(&s, 38, 5).faults.len(), 38);
    }
}

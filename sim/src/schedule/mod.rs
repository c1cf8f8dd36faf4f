//! Fault schedules as data: what a chaos scenario does to its cluster, drawn from the seed up
//! front ([`draw`]) and then carried out ([`execute`]), so a run can be given a schedule instead
//! of drawing one (`canon-sim run --schedule`), print the one it drew (`--print-schedule`), and
//! be shrunk to the few faults that matter (`canon-sim shrink`, [`shrink`]).
//!
//! A schedule is text a person can read and edit, one fault per line:
//!
//! ```text
//! # canon-sim schedule (times in ms after the faults start)
//! 1200 crash n1 power-loss keep=500
//! 3400 restart n1
//! 5000 drop n0->n2
//! end 60000
//! ```
//!
//! Every choice a fault makes is in its line (which node, a power loss or a process exit, how
//! much of the unsynced disk survives), so removing one fault never changes what another does.
//! Only `crash-leader` picks its node when it happens: the leader is not known in advance.

pub mod disk;
pub mod draw;
pub mod exec;
pub mod shrink;
pub mod swarm;
mod text;

pub use text::{ParseError, HEADER};

use canon_engine::storage::Column;

use crate::net::stream::Tamper;

pub use disk::{draw_disk_corruption, draw_misdirected_write, draw_slow_disk, draw_torn_write};
pub use draw::{draw_chaos, draw_kv_linearizable, draw_l1_weather, ChaosMix, SpareDraw};
pub use exec::execute;
pub use swarm::{Swarm, Swarming, Weights, SWARMED};

/// One fault and when it happens, in milliseconds after the faults start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timed {
    pub at_ms: u64,
    pub fault: Fault,
}

/// What happens to the cluster. Nodes are consensus node indexes (`n1`), externals are
/// external node indexes (`x0`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Node `node` stops: a power loss drops its connections without a word; `keep_permille`
    /// of its unsynced writes survive (rounded down).
    Crash {
        node: usize,
        power_loss: bool,
        keep_permille: u16,
    },
    /// Node `node` loses power in the middle of a write: `keep_permille` of its unsynced
    /// batches survive, then the first `torn_ops` operations of the next one.
    CrashTorn {
        node: usize,
        keep_permille: u16,
        torn_ops: usize,
    },
    /// [`Fault::Crash`] of whichever node leads when it happens (none: nothing).
    CrashLeader {
        power_loss: bool,
        keep_permille: u16,
    },
    Restart {
        node: usize,
    },
    /// Restarts one of the nodes down when it happens: the `nth` of them (modulo how many)
    /// in index order; nothing if none is. For schedules whose crashes pick their node at run
    /// time (`crash-leader`), so the schedule cannot name whom to restart.
    RestartDown {
        nth: usize,
    },
    /// Restarts every node down when it happens.
    RestartAllDown,
    /// Cuts whichever node leads when it happens off from its peers (clients still reach
    /// it); node `otherwise` when none leads.
    CutOffLeader {
        otherwise: usize,
    },
    /// Node `node` neither sends to nor receives from anyone.
    Isolate {
        node: usize,
    },
    /// Messages from `from` to `to` are dropped (one direction).
    Drop {
        from: usize,
        to: usize,
    },
    /// Node `node` is cut off from its peers both ways; clients still reach it.
    CutOff {
        node: usize,
    },
    /// Every message is lost with this probability, in thousandths.
    Loss {
        permille: u32,
    },
    /// Every message is delayed by up to this much more.
    Delay {
        max_ms: u64,
    },
    /// Ends every network fault above.
    HealNetwork,
    DiskFails {
        node: usize,
    },
    HealDisks,
    /// Bit rot: bit `bit` of the `nth` record (in key order, modulo how many) of `column` on
    /// node `node`'s disk flips at rest.
    Rot {
        node: usize,
        column: Column,
        nth: usize,
        bit: u32,
    },
    /// The next record of `column` node `node` reads comes back with bit `bit` flipped; the
    /// stored one stays sound.
    FlipRead {
        node: usize,
        column: Column,
        bit: u32,
    },
    /// The next put to `column` on node `node`'s disk lands under another key (its last byte
    /// xor-ed with `xor`); the key it was meant for keeps what it had.
    Misdirect {
        node: usize,
        column: Column,
        xor: u8,
    },
    /// Node `node`'s disk stalls: each of its next `writes` synced writes (Raft's log appends
    /// and votes) waits `ms` before it starts, blocking Raft as a slow fsync does.
    SlowFsync {
        node: usize,
        writes: u32,
        ms: u64,
    },
    /// Node `node`'s disk is slow to read: each of its next `reads` reads that can wait
    /// (Raft's log read past its cache, as a lagging follower needs; a block download it
    /// serves) waits `ms` first.
    SlowReads {
        node: usize,
        reads: u32,
        ms: u64,
    },
    ClockJump {
        node: usize,
        delta_ms: i64,
    },
    /// Live connections between `a` and `b` are reset.
    Reset {
        a: usize,
        b: usize,
    },
    /// Live connections between `a` and `b` go half-open.
    HalfOpen {
        a: usize,
        b: usize,
    },
    /// `reader` stops reading what `writer` sends for `ms`.
    Stall {
        reader: usize,
        writer: usize,
        ms: u64,
    },
    /// An attacker on the path from `from` to `to` tampers with the next segment.
    Tamper {
        from: usize,
        to: usize,
        attack: Tamper,
    },
    L1Down,
    L1Up,
    /// L1 drops the next `count` transactions sent to it.
    L1DropNext {
        count: u32,
    },
    /// L1 takes the next `count` transactions but their receipts are lost.
    L1LoseReceipts {
        count: u32,
    },
    CrashExternal {
        external: usize,
        keep_permille: u16,
    },
    RestartExternal {
        external: usize,
    },
}

/// A run's faults, in time order, and when the faults end (the scenario then heals everything
/// and checks), in milliseconds after they start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Schedule {
    pub faults: Vec<Timed>,
    pub end_ms: u64,
}

impl Schedule {
    /// The schedule with `faults`, sorted by time (stable: faults at one time keep their order),
    /// ending at `end_ms` or at the last fault, whichever is later.
    pub fn new(mut faults: Vec<Timed>, end_ms: u64) -> Schedule {
        faults.sort_by_key(|f| f.at_ms);
        let last = faults.last().map_or(0, |f| f.at_ms);
        Schedule {
            faults,
            end_ms: end_ms.max(last),
        }
    }

    /// The highest node index any fault names (`None`: it names none).
    pub fn highest_node(&self) -> Option<usize> {
        self.faults
            .iter()
            .filter_map(|t| t.fault.highest_node())
            .max()
    }

    /// The highest external index any fault names.
    pub fn highest_external(&self) -> Option<usize> {
        self.faults.iter().filter_map(|t| t.fault.external()).max()
    }
}

impl Fault {
    fn highest_node(&self) -> Option<usize> {
        match *self {
            Fault::Crash { node, .. }
            | Fault::CrashTorn { node, .. }
            | Fault::Restart { node }
            | Fault::Isolate { node }
            | Fault::CutOff { node }
            | Fault::CutOffLeader { otherwise: node }
            | Fault::DiskFails { node }
            | Fault::Rot { node, .. }
            | Fault::FlipRead { node, .. }
            | Fault::Misdirect { node, .. }
            | Fault::SlowFsync { node, .. }
            | Fault::SlowReads { node, .. }
            | Fault::ClockJump { node, .. } => Some(node),
            Fault::Drop { from, to } | Fault::Tamper { from, to, .. } => Some(from.max(to)),
            Fault::Reset { a, b } | Fault::HalfOpen { a, b } => Some(a.max(b)),
            Fault::Stall { reader, writer, .. } => Some(reader.max(writer)),
            _ => None,
        }
    }

    fn external(&self) -> Option<usize> {
        match *self {
            Fault::CrashExternal { external, .. } | Fault::RestartExternal { external } => {
                Some(external)
            }
            _ => None,
        }
    }

    /// Whether this fault needs an L1 (a cluster without one cannot run it).
    pub fn needs_l1(&self) -> bool {
        matches!(
            self,
            Fault::L1Down | Fault::L1Up | Fault::L1DropNext { .. } | Fault::L1LoseReceipts { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_kind() -> Vec<Fault> {
        vec![
            Fault::Crash {
                node: 1,
                power_loss: true,
                keep_permille: 500,
            },
            Fault::Crash {
                node: 0,
                power_loss: false,
                keep_permille: 0,
            },
            Fault::CrashLeader {
                power_loss: false,
                keep_permille: 1000,
            },
            Fault::Restart { node: 2 },
            Fault::RestartDown { nth: 4 },
            Fault::RestartAllDown,
            Fault::CutOffLeader { otherwise: 2 },
            Fault::Isolate { node: 0 },
            Fault::Drop { from: 2, to: 0 },
            Fault::CutOff { node: 1 },
            Fault::Loss { permille: 299 },
            Fault::Delay { max_ms: 149 },
            Fault::HealNetwork,
            Fault::DiskFails { node: 1 },
            Fault::SlowFsync {
                node: 2,
                writes: 7,
                ms: 900,
            },
            Fault::SlowReads {
                node: 1,
                reads: 12,
                ms: 350,
            },
            Fault::HealDisks,
            Fault::ClockJump {
                node: 2,
                delta_ms: -29_999,
            },
            Fault::ClockJump {
                node: 0,
                delta_ms: 7,
            },
            Fault::Reset { a: 0, b: 1 },
            Fault::HalfOpen { a: 2, b: 1 },
            Fault::Stall {
                reader: 1,
                writer: 0,
                ms: 2_999,
            },
            Fault::Tamper {
                from: 0,
                to: 2,
                attack: Tamper::Splice,
            },
            Fault::Tamper {
                from: 1,
                to: 0,
                attack: Tamper::FlipBit,
            },
            Fault::L1Down,
            Fault::L1Up,
            Fault::L1DropNext { count: 3 },
            Fault::L1LoseReceipts { count: 2 },
            Fault::CrashExternal {
                external: 0,
                keep_permille: 250,
            },
            Fault::RestartExternal { external: 1 },
        ]
    }

    #[test]
    fn every_fault_reads_back_as_printed() {
        let faults: Vec<Timed> = every_kind()
            .into_iter()
            .enumerate()
            .map(|(i, fault)| Timed {
                at_ms: 100 * i as u64,
                fault,
            })
            .collect();
        let s = Schedule::new(faults, 60_000);
        let text = s.to_string();
        assert!(text.starts_with(HEADER));
        assert_eq!(text.parse::<Schedule>(), Ok(s));
    }

    #[test]
    fn the_printed_form_is_what_a_person_reads() {
        let s = Schedule::new(
            vec![
                Timed {
                    at_ms: 1_200,
                    fault: every_kind()[0].clone(),
                },
                Timed {
                    at_ms: 3_400,
                    fault: Fault::Restart { node: 1 },
                },
            ],
            5_000,
        );
        let text = s.to_string();
        let lines: Vec<&str> = text.lines().skip(1).collect();
        assert_eq!(
            lines,
            [
                "1200 crash n1 power-loss keep=500",
                "3400 restart n1",
                "end 5000"
            ]
        );
    }

    #[test]
    fn bad_lines_are_refused_by_line_and_reason() {
        let cases: &[(&str, usize, &str)] = &[
            ("10 crash n1 power-loss\nend 20", 1, "keep="),
            ("10 crash 1 process keep=5\nend 20", 1, "n<number>"),
            ("10 explode n1\nend 20", 1, "unknown fault"),
            ("20 heal-disks\n10 heal-disks\nend 30", 2, "time order"),
            ("10 heal-disks\nend 5", 2, "end before"),
            ("10 heal-disks", 1, "no \"end"),
            ("end 10\n20 heal-disks", 2, "follow the end"),
            ("10 drop n1->n1\nend 20", 1, "one node twice"),
            ("10 loss 1001/1000\nend 20", 1, "0..1000"),
            ("10 heal-disks now\nend 20", 1, "unexpected"),
            ("x heal-disks\nend 20", 1, "a time in ms"),
            ("10 crash n1 process keep=1001\nend 20", 1, "keep=<0..1000>"),
        ];
        for (text, line, why) in cases {
            let e = text.parse::<Schedule>().expect_err(text);
            assert_eq!(e.line, *line, "{text}: {e}");
            assert!(e.why.contains(why), "{text}: {e}");
        }
    }

    #[test]
    fn comments_and_blank_lines_are_skipped_and_end_may_follow_the_last_fault() {
        let s: Schedule = "# hello\n\n10 heal-disks # why\nend 10\n".parse().unwrap();
        assert_eq!(s.faults.len(), 1);
        assert_eq!(s.end_ms, 10);
        assert_eq!(s.highest_node(), None);
    }

    #[test]
    fn names_reach_the_highest_index() {
        let s = Schedule::new(
            vec![
                Timed {
                    at_ms: 0,
                    fault: Fault::Stall {
                        reader: 4,
                        writer: 1,
                        ms: 5,
                    },
                },
                Timed {
                    at_ms: 0,
                    fault: Fault::CrashExternal {
                        external: 2,
                        keep_permille: 0,
                    },
                },
            ],
            0,
        );
        assert_eq!(s.highest_node(), Some(4));
        assert_eq!(s.highest_external(), Some(2));
    }
}

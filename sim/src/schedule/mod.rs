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

use std::fmt;
use std::str::FromStr;

use canon_engine::storage::Column;

use crate::net::stream::Tamper;

pub use disk::{draw_disk_corruption, draw_misdirected_write, draw_torn_write};
pub use draw::{draw_chaos, draw_kv_linearizable, draw_l1_weather, ChaosMix, SpareDraw};
pub use exec::execute;
pub use swarm::{Swarm, Weights};

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

fn how(power_loss: bool) -> &'static str {
    if power_loss {
        "power-loss"
    } else {
        "process"
    }
}

fn attack_name(a: Tamper) -> &'static str {
    match a {
        Tamper::FlipBit => "flip-bit",
        Tamper::Replay => "replay",
        Tamper::Drop => "drop",
        Tamper::Splice => "splice",
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Fault::Crash {
                node,
                power_loss,
                keep_permille,
            } => write!(f, "crash n{node} {} keep={keep_permille}", how(power_loss)),
            Fault::CrashTorn {
                node,
                keep_permille,
                torn_ops,
            } => write!(f, "crash-torn n{node} keep={keep_permille} ops={torn_ops}"),
            Fault::CrashLeader {
                power_loss,
                keep_permille,
            } => write!(f, "crash-leader {} keep={keep_permille}", how(power_loss)),
            Fault::Restart { node } => write!(f, "restart n{node}"),
            Fault::RestartDown { nth } => write!(f, "restart-down {nth}"),
            Fault::RestartAllDown => write!(f, "restart-all-down"),
            Fault::CutOffLeader { otherwise } => write!(f, "cut-off-leader otherwise=n{otherwise}"),
            Fault::Isolate { node } => write!(f, "isolate n{node}"),
            Fault::Drop { from, to } => write!(f, "drop n{from}->n{to}"),
            Fault::CutOff { node } => write!(f, "cut-off n{node}"),
            Fault::Loss { permille } => write!(f, "loss {permille}/1000"),
            Fault::Delay { max_ms } => write!(f, "delay {max_ms}ms"),
            Fault::HealNetwork => write!(f, "heal-network"),
            Fault::DiskFails { node } => write!(f, "disk-fails n{node}"),
            Fault::HealDisks => write!(f, "heal-disks"),
            Fault::Rot {
                node,
                column,
                nth,
                bit,
            } => write!(f, "rot n{node} {} nth={nth} bit={bit}", column.name()),
            Fault::FlipRead { node, column, bit } => {
                write!(f, "flip-read n{node} {} bit={bit}", column.name())
            }
            Fault::Misdirect { node, column, xor } => {
                write!(f, "misdirect n{node} {} xor={xor}", column.name())
            }
            Fault::ClockJump { node, delta_ms } => write!(f, "clock-jump n{node} {delta_ms:+}ms"),
            Fault::Reset { a, b } => write!(f, "reset n{a}<->n{b}"),
            Fault::HalfOpen { a, b } => write!(f, "half-open n{a}<->n{b}"),
            Fault::Stall { reader, writer, ms } => {
                write!(f, "stall n{reader}<-n{writer} {ms}ms")
            }
            Fault::Tamper { from, to, attack } => {
                write!(f, "tamper {} n{from}->n{to}", attack_name(attack))
            }
            Fault::L1Down => write!(f, "l1-down"),
            Fault::L1Up => write!(f, "l1-up"),
            Fault::L1DropNext { count } => write!(f, "l1-drop-next {count}"),
            Fault::L1LoseReceipts { count } => write!(f, "l1-lose-receipts {count}"),
            Fault::CrashExternal {
                external,
                keep_permille,
            } => write!(f, "crash-external x{external} keep={keep_permille}"),
            Fault::RestartExternal { external } => write!(f, "restart-external x{external}"),
        }
    }
}

/// The header every printed schedule starts with.
pub const HEADER: &str = "# canon-sim schedule: one fault per line, \"<ms after the faults start> <fault>\"; \"end <ms>\" is when the faults end and the heal begins";

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{HEADER}")?;
        for t in &self.faults {
            writeln!(f, "{} {}", t.at_ms, t.fault)?;
        }
        writeln!(f, "end {}", self.end_ms)
    }
}

/// Why a schedule's text was refused: the line (from 1), the text, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schedule line {line} {text:?}: {why}")]
pub struct ParseError {
    pub line: usize,
    pub text: String,
    pub why: String,
}

fn index(word: &str, prefix: char) -> Result<usize, String> {
    word.strip_prefix(prefix)
        .and_then(|n| n.parse::<usize>().ok())
        .ok_or_else(|| format!("{word:?} is not a {prefix}<number> name"))
}

fn pair(word: &str, sep: &str) -> Result<(usize, usize), String> {
    let (a, b) = word
        .split_once(sep)
        .ok_or_else(|| format!("{word:?} is not n<a>{sep}n<b>"))?;
    let (a, b) = (index(a, 'n')?, index(b, 'n')?);
    if a == b {
        return Err(format!("{word:?} names one node twice"));
    }
    Ok((a, b))
}

fn keep(word: Option<&str>) -> Result<u16, String> {
    let w = word.ok_or("missing keep=<0..1000>")?;
    w.strip_prefix("keep=")
        .and_then(|k| k.parse::<u16>().ok())
        .filter(|k| *k <= 1000)
        .ok_or_else(|| format!("{w:?} is not keep=<0..1000>"))
}

fn power(word: Option<&str>) -> Result<bool, String> {
    match word {
        Some("power-loss") => Ok(true),
        Some("process") => Ok(false),
        other => Err(format!("{other:?}: say power-loss or process")),
    }
}

fn millis(word: Option<&str>) -> Result<u64, String> {
    let w = word.ok_or("missing <n>ms")?;
    w.strip_suffix("ms")
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| format!("{w:?} is not <n>ms"))
}

fn column(word: Option<&str>) -> Result<Column, String> {
    let w = word.ok_or("missing a column")?;
    Column::from_name(w).ok_or_else(|| {
        let names: Vec<&str> = Column::ALL.iter().map(|c| c.name()).collect();
        format!("{w:?} is not a column ({})", names.join(", "))
    })
}

/// `<name>=<value>`.
fn named<T: FromStr>(word: Option<&str>, name: &str) -> Result<T, String> {
    let w = word.ok_or_else(|| format!("missing {name}=<n>"))?;
    w.strip_prefix(name)
        .and_then(|r| r.strip_prefix('='))
        .and_then(|v| v.parse::<T>().ok())
        .ok_or_else(|| format!("{w:?} is not {name}=<n>"))
}

fn number<T: FromStr>(word: Option<&str>, what: &str) -> Result<T, String> {
    let w = word.ok_or_else(|| format!("missing {what}"))?;
    w.parse::<T>().map_err(|_| format!("{w:?} is not {what}"))
}

impl FromStr for Fault {
    type Err = String;

    fn from_str(text: &str) -> Result<Fault, String> {
        let mut words = text.split_whitespace();
        let verb = words.next().ok_or("no fault")?;
        let mut arg = || words.next();
        let fault = match verb {
            "crash" => Fault::Crash {
                node: index(arg().ok_or("missing n<node>")?, 'n')?,
                power_loss: power(arg())?,
                keep_permille: keep(arg())?,
            },
            "crash-torn" => Fault::CrashTorn {
                node: index(arg().ok_or("missing n<node>")?, 'n')?,
                keep_permille: keep(arg())?,
                torn_ops: named(arg(), "ops")?,
            },
            "crash-leader" => Fault::CrashLeader {
                power_loss: power(arg())?,
                keep_permille: keep(arg())?,
            },
            "restart" => Fault::Restart {
                node: index(arg().ok_or("missing n<node>")?, 'n')?,
            },
            "restart-down" => Fault::RestartDown {
                nth: number(arg(), "which down node (a number)")?,
            },
            "restart-all-down" => Fault::RestartAllDown,
            "cut-off-leader" => {
                let w = arg().ok_or("missing otherwise=n<node>")?;
                let node = w
                    .strip_prefix("otherwise=")
                    .ok_or_else(|| format!("{w:?} is not otherwise=n<node>"))?;
                Fault::CutOffLeader {
                    otherwise: index(node, 'n')?,
                }
            }
            "isolate" => Fault::Isolate {
                node: index(arg().ok_or("missing n<node>")?, 'n')?,
            },
            "drop" => {
                let (from, to) = pair(arg().ok_or("missing n<from>->n<to>")?, "->")?;
                Fault::Drop { from, to }
            }
            "cut-off" => Fault::CutOff {
                node: index(arg().ok_or("missing n<node>")?, 'n')?,
            },
            "loss" => {
                let w = arg().ok_or("missing <permille>/1000")?;
                let permille = w
                    .strip_suffix("/1000")
                    .and_then(|p| p.parse::<u32>().ok())
                    .filter(|p| *p <= 1000)
                    .ok_or_else(|| format!("{w:?} is not <0..1000>/1000"))?;
                Fault::Loss { permille }
            }
            "delay" => Fault::Delay {
                max_ms: millis(arg())?,
            },
            "heal-network" => Fault::HealNetwork,
            "disk-fails" => Fault::DiskFails {
                node: index(arg().ok_or("missing n<node>")?, 'n')?,
            },
            "heal-disks" => Fault::HealDisks,
            "rot" => Fault::Rot {
                node: index(arg().ok_or("missing n<node>")?, 'n')?,
                column: column(arg())?,
                nth: named(arg(), "nth")?,
                bit: named(arg(), "bit")?,
            },
            "flip-read" => Fault::FlipRead {
                node: index(arg().ok_or("missing n<node>")?, 'n')?,
                column: column(arg())?,
                bit: named(arg(), "bit")?,
            },
            "misdirect" => Fault::Misdirect {
                node: index(arg().ok_or("missing n<node>")?, 'n')?,
                column: column(arg())?,
                xor: named::<u8>(arg(), "xor")?.max(1),
            },
            "clock-jump" => {
                let node = index(arg().ok_or("missing n<node>")?, 'n')?;
                let w = arg().ok_or("missing <+-n>ms")?;
                let delta_ms = w
                    .strip_suffix("ms")
                    .and_then(|n| n.parse::<i64>().ok())
                    .ok_or_else(|| format!("{w:?} is not <+-n>ms"))?;
                Fault::ClockJump { node, delta_ms }
            }
            "reset" => {
                let (a, b) = pair(arg().ok_or("missing n<a><->n<b>")?, "<->")?;
                Fault::Reset { a, b }
            }
            "half-open" => {
                let (a, b) = pair(arg().ok_or("missing n<a><->n<b>")?, "<->")?;
                Fault::HalfOpen { a, b }
            }
            "stall" => {
                let (reader, writer) = pair(arg().ok_or("missing n<reader><-n<writer>")?, "<-")?;
                Fault::Stall {
                    reader,
                    writer,
                    ms: millis(arg())?,
                }
            }
            "tamper" => {
                let attack = match arg() {
                    Some("flip-bit") => Tamper::FlipBit,
                    Some("replay") => Tamper::Replay,
                    Some("drop") => Tamper::Drop,
                    Some("splice") => Tamper::Splice,
                    other => {
                        return Err(format!("{other:?}: say flip-bit, replay, drop or splice"))
                    }
                };
                let (from, to) = pair(arg().ok_or("missing n<from>->n<to>")?, "->")?;
                Fault::Tamper { from, to, attack }
            }
            "l1-down" => Fault::L1Down,
            "l1-up" => Fault::L1Up,
            "l1-drop-next" => Fault::L1DropNext {
                count: number(arg(), "a count")?,
            },
            "l1-lose-receipts" => Fault::L1LoseReceipts {
                count: number(arg(), "a count")?,
            },
            "crash-external" => Fault::CrashExternal {
                external: index(arg().ok_or("missing x<external>")?, 'x')?,
                keep_permille: keep(arg())?,
            },
            "restart-external" => Fault::RestartExternal {
                external: index(arg().ok_or("missing x<external>")?, 'x')?,
            },
            other => return Err(format!("unknown fault {other:?}")),
        };
        if let Some(extra) = words.next() {
            return Err(format!("unexpected {extra:?} after the fault"));
        }
        Ok(fault)
    }
}

impl FromStr for Schedule {
    type Err = ParseError;

    /// Reads [`Schedule`]'s text: `#` starts a comment, blank lines are skipped, faults must be
    /// in time order and `end` must come last, once.
    fn from_str(text: &str) -> Result<Schedule, ParseError> {
        let mut faults: Vec<Timed> = Vec::new();
        let mut end = None;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let refuse = |why: String| ParseError {
                line: i + 1,
                text: raw.to_string(),
                why,
            };
            if end.is_some() {
                return Err(refuse("nothing may follow the end line".into()));
            }
            let (head, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            if head == "end" {
                let at: u64 = number(Some(rest.trim()), "the end time in ms").map_err(refuse)?;
                if faults.last().is_some_and(|f| f.at_ms > at) {
                    return Err(refuse("the faults end before the last fault".into()));
                }
                end = Some(at);
                continue;
            }
            let at_ms: u64 = number(Some(head), "a time in ms").map_err(refuse)?;
            if faults.last().is_some_and(|f| f.at_ms > at_ms) {
                return Err(refuse("faults must be in time order".into()));
            }
            let fault = rest.parse::<Fault>().map_err(refuse)?;
            faults.push(Timed { at_ms, fault });
        }
        let end_ms = end.ok_or(ParseError {
            line: text.lines().count(),
            text: String::new(),
            why: "no \"end <ms>\" line".into(),
        })?;
        Ok(Schedule { faults, end_ms })
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

//! A schedule's text form, one fault per line (`at <ms> <fault>`, then `end <ms>`): what
//! `--print-schedule` writes and `--schedule` reads back, each fault by the name a person would
//! type, and errors that name the line and what is wrong with it.

use std::fmt;
use std::str::FromStr;

use canon_engine::storage::Column;

use super::{Fault, Schedule, Timed};
use crate::net::stream::Tamper;

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
            Fault::SlowFsync { node, writes, ms } => {
                write!(f, "slow-fsync n{node} writes={writes} ms={ms}")
            }
            Fault::SlowReads { node, reads, ms } => {
                write!(f, "slow-reads n{node} reads={reads} ms={ms}")
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
            "slow-fsync" => Fault::SlowFsync {
                node: index(arg().ok_or("missing n<node>")?, 'n')?,
                writes: named(arg(), "writes")?,
                ms: named(arg(), "ms")?,
            },
            "slow-reads" => Fault::SlowReads {
                node: index(arg().ok_or("missing n<node>")?, 'n')?,
                reads: named(arg(), "reads")?,
                ms: named(arg(), "ms")?,
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

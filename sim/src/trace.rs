//! The trace of a run: every event and fault, hashed in order. Same seed, same hash.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

use alloy_primitives::Keccak256;

/// The newest lines a run keeps for its report unless told otherwise.
pub const DEFAULT_KEEP_RECENT: usize = 40;
/// Fault lines kept for the failure summary, whatever else is kept.
const KEEP_FAULTS: usize = 256;

static KEEP_RECENT: AtomicUsize = AtomicUsize::new(DEFAULT_KEEP_RECENT);

/// How many of its newest lines every later run in this process keeps for its report
/// (`usize::MAX`: all of them; `canon-sim run --events`). The hash covers every line either
/// way.
pub fn set_keep_recent(lines: usize) {
    KEEP_RECENT.store(lines.max(1), Ordering::Relaxed);
}

pub struct Trace {
    /// Echo every line to stderr as it is recorded (`canon-sim run --trace`).
    pub echo: bool,
    hasher: Keccak256,
    lines: u64,
    keep: usize,
    recent: VecDeque<String>,
    /// The newest fault lines, with their simulated second.
    faults: VecDeque<(f64, String)>,
    /// The simulated second of the newest line.
    last_at_secs: f64,
}

impl Default for Trace {
    fn default() -> Self {
        let keep = KEEP_RECENT.load(Ordering::Relaxed);
        Trace {
            echo: std::env::var_os("CANON_SIM_TRACE").is_some(),
            hasher: Keccak256::new(),
            lines: 0,
            keep,
            recent: VecDeque::with_capacity(keep.min(4096)),
            faults: VecDeque::new(),
            last_at_secs: 0.0,
        }
    }
}

impl Trace {
    /// Records `line`, which happened at `at_secs` of simulated time.
    pub fn record(&mut self, at_secs: f64, line: String) {
        self.hasher.update(line.as_bytes());
        self.hasher.update(b"\n");
        self.lines += 1;
        self.last_at_secs = at_secs;
        if self.echo {
            eprintln!("{line}");
        }
        if self.recent.len() == self.keep {
            self.recent.pop_front();
        }
        self.recent.push_back(line);
    }

    /// Records a fault the run injected (also an ordinary line).
    pub fn record_fault(&mut self, at_secs: f64, line: String) {
        if self.faults.len() == KEEP_FAULTS {
            self.faults.pop_front();
        }
        self.faults.push_back((at_secs, line.clone()));
        self.record(at_secs, line);
    }

    /// The fault lines of the last `secs` of simulated time before the newest line.
    pub fn faults_within(&self, secs: f64) -> Vec<String> {
        let from = self.last_at_secs - secs;
        self.faults
            .iter()
            .filter(|(at, _)| *at >= from)
            .map(|(_, l)| l.clone())
            .collect()
    }

    /// The first 8 bytes of the running keccak, as 16 hex digits.
    pub fn hash16(&self) -> String {
        let digest = self.hasher.clone().finalize();
        hex::encode(&digest[..8])
    }

    pub fn lines(&self) -> u64 {
        self.lines
    }

    pub fn recent(&self) -> Vec<String> {
        self.recent.iter().cloned().collect()
    }
}

/// How many trace lines `canon-sim run --events` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shown {
    All,
    Last(usize),
}

impl std::str::FromStr for Shown {
    type Err = String;

    fn from_str(s: &str) -> Result<Shown, String> {
        match s {
            "all" => Ok(Shown::All),
            n => match n.parse::<usize>() {
                Ok(0) | Err(_) => Err(format!(
                    "--events {s:?}: \"all\" or how many of the last lines (at least 1)"
                )),
                Ok(n) => Ok(Shown::Last(n)),
            },
        }
    }
}

/// One node's lines, by the name the trace gives it: `n1` (a consensus node), `m0` (a
/// redundancy group member), `x0` (an external node); a bare number means `n<number>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeName(String);

impl std::str::FromStr for NodeName {
    type Err = String;

    fn from_str(s: &str) -> Result<NodeName, String> {
        let named = |prefix: char, digits: &str| {
            (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| NodeName(format!("{prefix}{digits}")))
        };
        let parsed = match s.chars().next() {
            Some(p @ ('n' | 'm' | 'x')) => named(p, &s[1..]),
            Some(_) => named('n', s),
            None => None,
        };
        parsed.ok_or_else(|| {
            format!("--node {s:?}: a node as the trace names it (n1, m0, x0) or a number")
        })
    }
}

impl NodeName {
    /// Whether `line` is about this node: its own events, and notes that name it.
    pub fn matches(&self, line: &str) -> bool {
        line.split(|c: char| !c.is_ascii_alphanumeric())
            .any(|word| word == self.0)
    }
}

/// The lines `run --events <shown> --node <node>` prints, oldest first.
pub fn select(lines: &[String], node: Option<&NodeName>, shown: Shown) -> Vec<String> {
    let picked: Vec<&String> = lines
        .iter()
        .filter(|l| node.is_none_or(|n| n.matches(l)))
        .collect();
    let from = match shown {
        Shown::All => 0,
        Shown::Last(n) => picked.len().saturating_sub(n),
    };
    picked[from..].iter().map(|l| (*l).clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines() -> Vec<String> {
        [
            "    0.100s n0 BecameLeader { term: 2 }",
            "    0.200s -- fault: crash n1 for 3000 ms",
            "    0.300s n1 Started { head_height: 0 }",
            "    0.400s n10 Committed { index: 4 }",
            "    0.500s -- fault: heal network",
            "    0.600s m1 SteppedIn { round: 3 }",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    #[test]
    fn a_node_filter_keeps_its_events_and_the_notes_naming_it() {
        let n1: NodeName = "n1".parse().unwrap();
        let picked = select(&lines(), Some(&n1), Shown::All);
        assert_eq!(picked, vec![lines()[1].clone(), lines()[2].clone()]);
        assert_eq!("1".parse::<NodeName>().unwrap(), n1);
        let m1: NodeName = "m1".parse().unwrap();
        assert_eq!(
            select(&lines(), Some(&m1), Shown::All),
            vec![lines()[5].clone()]
        );
        for bad in ["", "n", "q1", "n1x", "-1"] {
            assert!(bad.parse::<NodeName>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn shown_takes_the_newest_lines() {
        assert_eq!(
            select(&lines(), None, Shown::Last(2)),
            lines()[4..].to_vec()
        );
        assert_eq!(select(&lines(), None, Shown::Last(99)), lines());
        assert_eq!(select(&lines(), None, Shown::All), lines());
        assert_eq!("all".parse::<Shown>(), Ok(Shown::All));
        assert_eq!("7".parse::<Shown>(), Ok(Shown::Last(7)));
        assert!("0".parse::<Shown>().is_err());
        assert!("some".parse::<Shown>().is_err());
    }

    #[test]
    fn faults_within_a_window_of_the_newest_line() {
        let mut t = Trace::default();
        t.record_fault(1.0, "old fault".into());
        t.record(5.0, "event".into());
        t.record_fault(12.0, "new fault".into());
        t.record(15.0, "last".into());
        assert_eq!(t.faults_within(10.0), vec!["new fault".to_string()]);
        assert_eq!(t.faults_within(14.0).len(), 2);
    }
}

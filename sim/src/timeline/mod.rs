//! A run's timeline for a person to look at (`canon-sim run --html <file>`): what each node
//! was (leader, follower, down), how far its chain reached, the faults that hit it, the
//! snapshots, backfills, batches and their L1 fate, redundancy step-ins and reverts, and the
//! violation. [`Recorder`] collects it from the observer's events and fault notes while the
//! run goes; [`render`] writes one self-contained HTML page (inline script and style, nothing
//! fetched).

pub mod render;

pub use render::render;

use std::sync::atomic::{AtomicBool, Ordering};

use canon_engine::events::Event;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Every later run in this process records a timeline (it costs memory: one item per block
/// applied per node).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Where an item is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// A node by its index in the run (consensus nodes first, then external nodes).
    Node(usize),
    /// Faults that hit the whole network or every disk.
    Cluster,
    /// The L1 and the batches sent to it.
    L1,
    /// A redundancy group's rounds: which member signed each one.
    Rounds,
}

/// What an item is; its colour and shape on the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum What {
    Started,
    /// It leads `term` from here.
    Leader(u64),
    /// Its leadership ended (stepped down or lost to a higher term).
    Follower,
    /// Its chain reached this height.
    Height(u64),
    /// It installed a snapshot that left this many blocks below it to backfill.
    Snapshot(u64),
    Backfill,
    Sealed,
    Committed,
    NotCommitted,
    Claim,
    SteppedIn,
    Reverted,
    Refused,
    /// Group member `member` (m0..) signed round `round`.
    Signed {
        round: u64,
        member: u64,
    },
    Crash,
    Restart,
    /// A fault that starts something lasting (a partition, failing disks, L1 down).
    FaultOn,
    /// A heal that ends those.
    Heal,
    /// A fault of a moment (a clock jump, a reset connection, a lost receipt).
    Fault,
    Violation,
}

impl What {
    pub fn name(self) -> &'static str {
        match self {
            What::Started => "started",
            What::Leader(_) => "leader",
            What::Follower => "follower",
            What::Height(_) => "height",
            What::Snapshot(_) => "snapshot",
            What::Backfill => "backfill",
            What::Sealed => "sealed",
            What::Committed => "committed",
            What::NotCommitted => "not-committed",
            What::Claim => "claim",
            What::SteppedIn => "stepped-in",
            What::Reverted => "reverted",
            What::Refused => "refused",
            What::Signed { .. } => "signed",
            What::Crash => "crash",
            What::Restart => "restart",
            What::FaultOn => "fault-on",
            What::Heal => "heal",
            What::Fault => "fault",
            What::Violation => "violation",
        }
    }
}

/// A run's timeline as recorded: its items and how many lanes of each kind it has.
#[derive(Clone, Debug, Default)]
pub struct Recorded {
    pub items: Vec<Item>,
    /// Consensus nodes (lanes n0.., indexes 0..), external nodes (x0.., next), redundancy
    /// group members (m0.., indexes from `group::MEMBER_INDEX_BASE`).
    pub nodes: usize,
    pub externals: usize,
    pub members: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub at_secs: f64,
    pub lane: Lane,
    pub what: What,
    pub text: String,
}

/// The items of one run, in the order they happened.
#[derive(Default)]
pub struct Recorder {
    pub items: Vec<Item>,
    /// The highest height each node's chain reached, to record only changes.
    heights: Vec<u64>,
    /// Batches already shown sealed (every node seals every batch).
    sealed: std::collections::BTreeSet<u64>,
}

impl Recorder {
    fn push(&mut self, at_secs: f64, lane: Lane, what: What, text: String) {
        self.items.push(Item {
            at_secs,
            lane,
            what,
            text,
        });
    }

    /// One of node `node`'s events.
    pub fn event(&mut self, at_secs: f64, node: usize, event: &Event) {
        let lane = Lane::Node(node);
        let (what, text) = match event {
            Event::Started {
                head_height, term, ..
            } => (
                What::Started,
                format!("started at height {head_height}, term {term}"),
            ),
            Event::BecameLeader { term } => (What::Leader(*term), format!("leads term {term}")),
            Event::CorruptRead { error } => (What::Crash, format!("stopped on a corrupt read: {error}")),
            Event::Scrubbed {
                corrupt_records,
                repair,
            } => match repair {
                canon_engine::policy::repair::Repair::Halt(why) => {
                    (What::Crash, format!("halted: {why}"))
                }
                canon_engine::policy::repair::Repair::Rejoin { abstain_until } => (
                    What::Fault,
                    format!(
                        "scrub: {corrupt_records} damaged records: forgot what it replicated, abstains until it applied term {} index {}",
                        abstain_until.term, abstain_until.index
                    ),
                ),
                canon_engine::policy::repair::Repair::Refetch { heights } => (
                    What::Fault,
                    format!(
                        "scrub: {corrupt_records} damaged records: fetching blocks {heights:?} again from peers"
                    ),
                ),
                other => (What::Fault, format!("scrub: {corrupt_records} damaged records: {other:?}")),
            },
            Event::LostLeadership { term } => {
                (What::Follower, format!("lost leadership to term {term}"))
            }
            Event::SteppedDown {
                millis_since_quorum_ack,
            } => (
                What::Follower,
                format!("stepped down: no quorum for {millis_since_quorum_ack} ms"),
            ),
            Event::BlockApplied { height, .. }
            | Event::Replayed { height, .. }
            | Event::Signed { height, .. } => {
                if let Event::Signed { round, level, .. } = event {
                    // The group's rounds lane: who signed each round, so a takeover is a
                    // change of colour and a round signed twice stands out.
                    let member = node.saturating_sub(crate::group::MEMBER_INDEX_BASE);
                    self.push(
                        at_secs,
                        Lane::Rounds,
                        What::Signed {
                            round: *round,
                            member: member as u64,
                        },
                        format!("round {round}: m{member} (level {level}) signed height {height}"),
                    );
                }
                if self.heights.len() <= node {
                    self.heights.resize(node + 1, 0);
                }
                if *height <= self.heights[node] && !matches!(event, Event::Signed { .. }) {
                    return;
                }
                self.heights[node] = *height;
                (What::Height(*height), format!("height {height}"))
            }
            Event::RolledBack {
                from_height,
                to_height,
            } => {
                if let Some(h) = self.heights.get_mut(node) {
                    *h = *to_height;
                }
                (
                    What::Height(*to_height),
                    format!("rolled back from {from_height} to {to_height}"),
                )
            }
            Event::SnapshotInstalled {
                height,
                missing_blocks,
                ..
            } => {
                if let Some(h) = self.heights.get_mut(node) {
                    *h = (*h).max(*height);
                }
                (
                    What::Snapshot(*missing_blocks),
                    format!("installed a snapshot at height {height}, {missing_blocks} blocks to backfill"),
                )
            }
            Event::BackfillDone {
                from_height,
                to_height,
                ..
            } => (
                What::Backfill,
                format!("backfilled blocks {from_height}..={to_height}"),
            ),
            Event::BatchSealed {
                number,
                first_height,
                last_height,
                ..
            } => {
                // Every node seals every batch: the L1 lane shows the first to.
                if !self.sealed.insert(*number) {
                    return;
                }
                self.push(
                    at_secs,
                    Lane::L1,
                    What::Sealed,
                    format!("batch {number} sealed (blocks {first_height}..={last_height})"),
                );
                return;
            }
            Event::BatchCommitted { number, epoch } => {
                self.push(
                    at_secs,
                    Lane::L1,
                    What::Committed,
                    format!("batch {number} committed on L1 by n{node} (epoch {epoch})"),
                );
                return;
            }
            Event::BatchNotCommitted { number, reason, .. } => {
                self.push(
                    at_secs,
                    Lane::L1,
                    What::NotCommitted,
                    format!("batch {number} from n{node} not committed: {reason}"),
                );
                return;
            }
            Event::BatcherClaiming {
                epoch,
                missed_rounds,
            } => (
                What::Claim,
                format!(
                    "claims the batcher role at epoch {epoch} after {missed_rounds} missed rounds"
                ),
            ),
            Event::SteppedIn {
                round,
                level,
                reason,
            } => (
                What::SteppedIn,
                format!("level {level} signs from round {round}: {reason}"),
            ),
            Event::Reverted { by_level, round } => (
                What::Reverted,
                format!("stops signing: level {by_level} signed round {round}"),
            ),
            Event::SignRefused { round, reason } => (
                What::Refused,
                format!("did not sign round {round}: {reason}"),
            ),
            Event::StorageFailed { reason } => (What::Fault, format!("storage failed: {reason}")),
            _ => return,
        };
        self.push(at_secs, lane, what, text);
    }

    /// A fault note (`fault: ...`), placed on the lanes of the hosts it names (`n1`, `x0` after
    /// the cluster's `nodes`, `m2`), or on the cluster's or L1's.
    pub fn note(&mut self, at_secs: f64, what: &str, nodes: usize) {
        // A group member's (re)start is a note of its own, not a fault's.
        if let Some(rest) = what.strip_prefix("start member ") {
            if let Some(&m) = host_names(rest, nodes).first() {
                self.push(at_secs, Lane::Node(m), What::Restart, what.to_string());
            }
            return;
        }
        let Some(text) = what.strip_prefix("fault: ") else {
            return;
        };
        let named = host_names(text, nodes);
        let crash = ["crash n", "crash external x", "crash member m"];
        let restart = ["restart n", "restart external x", "restart member m"];
        let (kind, lanes): (What, Vec<Lane>) = if crash.iter().any(|c| text.starts_with(c)) {
            if text.contains("already down") {
                return;
            }
            (
                What::Crash,
                named.into_iter().take(1).map(Lane::Node).collect(),
            )
        } else if restart.iter().any(|r| text.starts_with(r)) {
            if text.contains("already up") {
                return;
            }
            (
                What::Restart,
                named.into_iter().take(1).map(Lane::Node).collect(),
            )
        } else if text.starts_with("L1") {
            let kind = match text {
                "L1 down" => What::FaultOn,
                "L1 back" => What::Heal,
                _ => What::Fault,
            };
            (kind, vec![Lane::L1])
        } else if text.starts_with("heal") {
            (What::Heal, vec![Lane::Cluster])
        } else if text.starts_with("isolate")
            || text.starts_with("partition")
            || text.starts_with("drop")
            || text.starts_with("lose ")
            || text.starts_with("delay")
            || text.contains("cut off")
            || text.contains("disk writes fail")
        {
            (What::FaultOn, vec![Lane::Cluster])
        } else if named.is_empty() {
            (What::Fault, vec![Lane::Cluster])
        } else {
            (What::Fault, named.into_iter().map(Lane::Node).collect())
        };
        for lane in lanes {
            self.push(at_secs, lane, kind, text.to_string());
        }
    }

    /// The failure, at `at_secs`.
    pub fn violation(&mut self, at_secs: f64, text: &str) {
        self.push(at_secs, Lane::Cluster, What::Violation, text.to_string());
    }
}

/// The host indexes a fault note names, in order, each once: `n1` is node 1, `x0` the first
/// external node (index `nodes`), `m2` group member 2 (from `MEMBER_INDEX_BASE`).
fn host_names(text: &str, nodes: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    for (i, w) in bytes.iter().enumerate() {
        let base = match w {
            b'n' => 0,
            b'x' => nodes,
            b'm' => crate::group::MEMBER_INDEX_BASE,
            _ => continue,
        };
        if i > 0 && bytes[i - 1].is_ascii_alphanumeric() {
            continue;
        }
        let digits: String = text[i + 1..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(n) = digits.parse::<usize>() {
            if !out.contains(&(base + n)) {
                out.push(base + n);
            }
        }
    }
    out
}

/// The simulated second a failure message names (`... (sim 84.213s)` or `... at sim 3.2s:`).
pub fn failure_time(failure: &str) -> Option<f64> {
    let i = failure.find("sim ")?;
    let rest = &failure[i + 4..];
    let num: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    num.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::B256;

    #[test]
    fn fault_notes_land_on_the_lanes_they_name() {
        let mut r = Recorder::default();
        r.note(
            1.0,
            "fault: crash n1 (power loss; 2 unsynced batches lost)",
            3,
        );
        r.note(1.5, "fault: crash n1 (already down)", 3);
        r.note(2.0, "fault: drop n0 -> n2", 3);
        r.note(3.0, "fault: n2 clock jumps -300 ms", 3);
        r.note(4.0, "fault: L1 down", 3);
        r.note(5.0, "fault: heal network", 3);
        r.note(6.0, "fault: restart n1", 3);
        r.note(7.0, "not a fault", 3);
        r.note(8.0, "fault: crash member m1 (0 unsynced batches lost)", 3);
        r.note(9.0, "start member m1 (level 1)", 3);
        r.note(10.0, "fault: partition {m0} | {m1, m2, x0}", 3);
        let got: Vec<(Lane, What)> = r.items.iter().map(|i| (i.lane, i.what)).collect();
        assert_eq!(
            got,
            [
                (Lane::Node(1), What::Crash),
                (Lane::Cluster, What::FaultOn),
                (Lane::Node(2), What::Fault),
                (Lane::L1, What::FaultOn),
                (Lane::Cluster, What::Heal),
                (Lane::Node(1), What::Restart),
                (Lane::Node(101), What::Crash),
                (Lane::Node(101), What::Restart),
                (Lane::Cluster, What::FaultOn),
            ]
        );
    }

    #[test]
    fn heights_are_recorded_when_they_change() {
        let mut r = Recorder::default();
        let applied = |height| Event::BlockApplied {
            index: height,
            height,
            hash: B256::ZERO,
            parent_hash: B256::ZERO,
            state_root: B256::ZERO,
            timestamp_ms: 0,
            term: 1,
            proposer: Default::default(),
            transactions: 0,
        };
        r.event(1.0, 0, &applied(1));
        r.event(1.1, 0, &applied(1));
        r.event(1.2, 0, &applied(2));
        r.event(1.3, 2, &applied(1));
        let got: Vec<(usize, What)> = r
            .items
            .iter()
            .map(|i| match i.lane {
                Lane::Node(n) => (n, i.what),
                _ => (99, i.what),
            })
            .collect();
        assert_eq!(
            got,
            [
                (0, What::Height(1)),
                (0, What::Height(2)),
                (2, What::Height(1))
            ]
        );
    }

    /// Each signed round lands on the rounds lane with its member, as well as on the member's
    /// own lane as a height.
    #[test]
    fn signed_rounds_name_their_member() {
        let mut r = Recorder::default();
        let signed = |height, round| Event::Signed {
            height,
            round,
            level: 1,
            hash: B256::ZERO,
            parent_hash: B256::ZERO,
            state_root: B256::ZERO,
            transactions: 0,
        };
        let m1 = crate::group::MEMBER_INDEX_BASE + 1;
        r.event(1.0, m1, &signed(7, 12));
        let got: Vec<(Lane, What)> = r.items.iter().map(|i| (i.lane, i.what)).collect();
        assert_eq!(
            got,
            [
                (
                    Lane::Rounds,
                    What::Signed {
                        round: 12,
                        member: 1
                    }
                ),
                (Lane::Node(m1), What::Height(7)),
            ]
        );
        assert_eq!(r.items[0].text, "round 12: m1 (level 1) signed height 7");
    }

    #[test]
    fn names_and_times_are_read_out_of_messages() {
        assert_eq!(host_names("drop n0 -> n12 and n0", 3), [0, 12]);
        assert_eq!(host_names("reset 3 connections n1 <-> n2", 3), [1, 2]);
        assert_eq!(host_names("crash external x1, m2 and n0", 3), [4, 102, 0]);
        assert!(host_names("heal network", 3).is_empty());
        assert!(host_names("max2 ex3", 3).is_empty());
        assert_eq!(failure_time("liveness: stuck (sim 84.213s)"), Some(84.213));
        assert_eq!(
            failure_time("invariant violated: x on n1 at sim 3.5s: y"),
            Some(3.5)
        );
        assert_eq!(failure_time("no time here"), None);
    }
}

//! An external node's synchronous core: what it knows of its sources (heads, failures, which
//! it dropped and why, which sit on a losing branch), the equivocations it found and the
//! losing blocks it must not be led back onto, and its download rounds (the downloader and
//! the fork-probe schedule). The node ([`crate::external::node`]) fetches, verifies and
//! stores; every choice of whom to ask, whom to trust and when to look is made here.

use std::collections::{BTreeMap, BTreeSet};

use alloy_primitives::B256;
use serde::{Deserialize, Serialize};

use crate::chain::certificate::ServedBlock;
use crate::chain::rules::BlockError;
use crate::events::Event;
use crate::ids::NodeId;
use crate::policy::download::{DownloadConfig, Downloader, Fetch, Plan, RoundResult};
use crate::policy::fork_choice::Keep;
use crate::policy::fork_search::ProbeSchedule;
use crate::policy::Millis;

/// How often a caught-up follower compares its chain with its sources' heads.
pub const FORK_PROBE_MS: u64 = 1_000;
/// How long a source on a losing branch is left alone before it is asked again.
pub const LOSING_BRANCH_RECHECK_MS: u64 = 2_000;
/// Equivocations kept for `/status`.
pub const EQUIVOCATIONS_KEPT: usize = 16;
/// Losing blocks remembered, newest heights kept.
pub const LOSERS_KEPT: usize = 64;

/// What the node knows of one source.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SourceState {
    pub id: NodeId,
    /// Its head height when last asked.
    pub head_height: Option<u64>,
    /// Why it was dropped; `None` while trusted.
    pub rejected: Option<String>,
    /// Requests that failed in a row (unreachable, timed out).
    pub failures: u32,
    pub blocks_applied: u64,
    /// When it was last found on the losing side of an equivocation (it is asked again a while
    /// later: a follower leaves a losing branch once it sees the winner), in milliseconds on
    /// this node's monotonic clock since it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub losing_branch_since_ms: Option<u64>,
}

/// One equivocation this node saw: the identity signed `ours` and `theirs` at `height`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EquivocationSeen {
    pub height: u64,
    pub ours: B256,
    pub theirs: B256,
    pub our_level: i64,
    pub their_level: i64,
    /// The branch followed, by `policy::fork_choice` (`"ours"` or `"theirs"` in JSON).
    pub kept: Keep,
}

pub struct ExternalCore {
    downloader: Downloader,
    probes: ProbeSchedule,
    sources: BTreeMap<NodeId, SourceState>,
    equivocations: Vec<EquivocationSeen>,
    /// The losing block of every fork resolved, by height: a source still on that branch
    /// serves it as if it extended the head once this node rolled back, and must not be
    /// followed back onto it. A height may hold several: the identity can sign more than two
    /// branches at one height (main and two standbys), and each resolved fork adds its loser.
    losers: BTreeMap<u64, BTreeSet<B256>>,
    /// Whether the last download round found the sources at their head.
    caught_up: bool,
}

impl ExternalCore {
    /// A node `me` downloading from `sources` (itself left out); with none it counts as
    /// caught up (the only member of a redundancy group).
    pub fn new(me: NodeId, sources: &[NodeId], download: DownloadConfig) -> ExternalCore {
        let sources: BTreeMap<NodeId, SourceState> = sources
            .iter()
            .filter(|s| **s != me)
            .map(|s| {
                let state = SourceState {
                    id: *s,
                    ..Default::default()
                };
                (*s, state)
            })
            .collect();
        ExternalCore {
            downloader: Downloader::new(download),
            probes: ProbeSchedule::new(FORK_PROBE_MS),
            caught_up: sources.is_empty(),
            sources,
            equivocations: Vec::new(),
            losers: BTreeMap::new(),
        }
    }

    /// The sources to ask at `now`: not dropped, and not on a losing branch unless it is
    /// time to look at it again.
    pub fn trusted(&self, now: Millis) -> Vec<NodeId> {
        self.sources
            .values()
            .filter(|s| s.rejected.is_none())
            .filter(|s| {
                s.losing_branch_since_ms
                    .is_none_or(|t| now.saturating_sub(t) >= LOSING_BRANCH_RECHECK_MS)
            })
            .map(|s| s.id)
            .collect()
    }

    /// The next download round, with the chain at `head_height`.
    pub fn plan(&mut self, now: Millis, head_height: u64) -> Plan {
        let trusted = self.trusted(now);
        self.downloader.plan(head_height, &trusted)
    }

    /// The round after one still being applied, planned from `leads_to`, the head that one
    /// reaches if it all applies: only while catching up (a caught-up node long-polls one
    /// round at a time).
    pub fn plan_ahead(&mut self, now: Millis, leads_to: u64) -> Option<Vec<Fetch>> {
        if self.downloader.caught_up() {
            return None;
        }
        match self.plan(now, leads_to) {
            Plan::Fetch(f) => Some(f),
            Plan::Pause { .. } => None,
        }
    }

    /// `source` answered a range request (or did not).
    pub fn on_answer(&mut self, source: NodeId, answer: &Result<Vec<ServedBlock>, String>) {
        let Some(s) = self.sources.get_mut(&source) else {
            return;
        };
        match answer {
            Ok(blocks) => {
                s.failures = 0;
                if let Some(last) = blocks.last() {
                    let h = last.block.header.height;
                    s.head_height = Some(s.head_height.map_or(h, |x| x.max(h)));
                }
            }
            Err(_) => s.failures = s.failures.saturating_add(1),
        }
    }

    /// A block `source` served was applied.
    pub fn on_applied(&mut self, source: NodeId) {
        if let Some(s) = self.sources.get_mut(&source) {
            s.blocks_applied += 1;
        }
    }

    /// `source` served a block at `height` that fails `error`: it is dropped for good.
    pub fn reject(&mut self, source: NodeId, height: u64, error: &BlockError) -> Event {
        let reason = error.to_string();
        if let Some(s) = self.sources.get_mut(&source) {
            s.rejected = Some(format!("height {height}: {reason}"));
        }
        Event::SourceRejected {
            source,
            height,
            kind: error.kind().to_string(),
            reason,
        }
    }

    /// `source` was found on the losing side of an equivocation at `now`.
    pub fn mark_losing(&mut self, source: NodeId, now: Millis) {
        if let Some(s) = self.sources.get_mut(&source) {
            s.losing_branch_since_ms = Some(now);
        }
    }

    /// Whether the block `hash` at `height` lost a fork this node resolved.
    pub fn is_loser(&self, height: u64, hash: &B256) -> bool {
        self.losers
            .get(&height)
            .is_some_and(|lost| lost.contains(hash))
    }

    /// A fork resolved: `seen` is recorded unless known (either way round), and its losing
    /// block remembered. Returns whether it is new.
    pub fn on_fork(&mut self, seen: EquivocationSeen, loser: B256) -> bool {
        let known = self.equivocations.iter().any(|e| {
            e.height == seen.height
                && ((e.ours, e.theirs) == (seen.ours, seen.theirs)
                    || (e.ours, e.theirs) == (seen.theirs, seen.ours))
        });
        let height = seen.height;
        if !known {
            if self.equivocations.len() == EQUIVOCATIONS_KEPT {
                self.equivocations.remove(0);
            }
            self.equivocations.push(seen);
        }
        self.losers.entry(height).or_default().insert(loser);
        while self.losers.len() > LOSERS_KEPT {
            self.losers.pop_first();
        }
        !known
    }

    /// Whether to compare heads with the sources now (caught up, and a while since the last).
    pub fn probe_due(&mut self, now: Millis) -> bool {
        self.probes.due(now, self.downloader.caught_up())
    }

    /// The round `planned` came to `round`: how long to pause before the next.
    pub fn after_round(&mut self, planned: &[Fetch], round: RoundResult) -> u64 {
        let pause_ms = self.downloader.after(planned, round);
        self.caught_up = self.downloader.caught_up();
        pause_ms
    }

    /// Whether the last download round found every answering source at its head.
    pub fn caught_up(&self) -> bool {
        self.caught_up
    }

    pub fn sources(&self) -> Vec<SourceState> {
        self.sources.values().cloned().collect()
    }

    pub fn equivocations(&self) -> &[EquivocationSeen] {
        &self.equivocations
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId([n; 64])
    }

    fn core(sources: &[NodeId]) -> ExternalCore {
        let download = DownloadConfig {
            batch_blocks: 64,
            pipeline_depth: 4,
            follow_wait_ms: 1_000,
        };
        ExternalCore::new(id(0), sources, download)
    }

    fn seen(height: u64, ours: u8, theirs: u8) -> EquivocationSeen {
        EquivocationSeen {
            height,
            ours: B256::repeat_byte(ours),
            theirs: B256::repeat_byte(theirs),
            our_level: 0,
            their_level: 1,
            kept: Keep::Ours,
        }
    }

    #[test]
    fn sources_are_itself_excluded_dropped_for_good_and_rechecked_after_a_losing_branch() {
        let mut c = core(&[id(0), id(1), id(2), id(3)]);
        assert_eq!(c.trusted(0), vec![id(1), id(2), id(3)]);
        assert!(!c.caught_up());
        let event = c.reject(id(1), 7, &BlockError::Signature);
        assert!(matches!(event, Event::SourceRejected { height: 7, .. }));
        c.mark_losing(id(2), 1_000);
        let table = [
            (1_000, vec![id(3)]),
            (1_000 + LOSING_BRANCH_RECHECK_MS - 1, vec![id(3)]),
            (1_000 + LOSING_BRANCH_RECHECK_MS, vec![id(2), id(3)]),
            (1_000_000, vec![id(2), id(3)]),
        ];
        for (now, trusted) in table {
            assert_eq!(c.trusted(now), trusted, "at {now}");
        }
    }

    #[test]
    fn answers_count_failures_and_raise_the_source_head() {
        let mut c = core(&[id(1)]);
        c.on_answer(id(1), &Err("timed out".into()));
        c.on_answer(id(1), &Err("timed out".into()));
        assert_eq!(c.sources()[0].failures, 2);
        c.on_answer(id(1), &Ok(Vec::new()));
        c.on_applied(id(1));
        let s = &c.sources()[0];
        assert_eq!((s.failures, s.head_height, s.blocks_applied), (0, None, 1));
        // Unknown sources change nothing.
        c.on_answer(id(9), &Err("?".into()));
        assert_eq!(c.sources().len(), 1);
    }

    #[test]
    fn a_fork_is_reported_once_either_way_round_and_its_loser_remembered() {
        let mut c = core(&[id(1)]);
        assert!(c.on_fork(seen(5, 1, 2), B256::repeat_byte(2)));
        assert!(
            !c.on_fork(seen(5, 2, 1), B256::repeat_byte(2)),
            "the same pair, swapped"
        );
        assert!(
            c.on_fork(seen(5, 1, 3), B256::repeat_byte(3)),
            "a third branch at 5"
        );
        assert!(c.is_loser(5, &B256::repeat_byte(2)) && c.is_loser(5, &B256::repeat_byte(3)));
        assert!(!c.is_loser(5, &B256::repeat_byte(1)));
        // Bounded: the newest equivocations and losing heights are kept.
        for h in 10..10 + EQUIVOCATIONS_KEPT as u64 + LOSERS_KEPT as u64 {
            c.on_fork(seen(h, 1, 2), B256::repeat_byte(2));
        }
        assert_eq!(c.equivocations().len(), EQUIVOCATIONS_KEPT);
        assert!(
            !c.is_loser(5, &B256::repeat_byte(2)),
            "the oldest height forgotten"
        );
    }

    #[test]
    fn without_sources_it_counts_as_caught_up() {
        let c = core(&[id(0)]);
        assert!(c.caught_up());
        assert!(c.trusted(0).is_empty());
    }

    #[test]
    fn a_round_is_planned_ahead_only_while_catching_up() {
        let mut c = core(&[id(1), id(2)]);
        // Catching up: the next round starts where the one being applied leads.
        let ahead = c.plan_ahead(0, 640).expect("a round ahead");
        assert_eq!(ahead.first().map(|f| f.from), Some(641));
        assert!(ahead.iter().all(|f| f.wait_ms == 0));
        // A round that found the sources at their head: long-polls follow, one at a time.
        let planned = ahead.clone();
        let round = RoundResult {
            any_answered: true,
            received: 3,
            applied: 3,
            storage_failed: false,
        };
        c.after_round(&planned, round);
        assert!(c.caught_up());
        assert_eq!(c.plan_ahead(0, 700), None);
    }
}

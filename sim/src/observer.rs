//! What a run observed: every event goes to the invariant checker and the trace, and the
//! scenario's own measurements ride along.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use canon_engine::events::Event;
use canon_engine::net::p2p::ConnectionFault;

use crate::checker::Checker;
use crate::timeline::Recorder;
use crate::trace::Trace;

/// Everything observed in a run: the checker's view and the trace.
pub struct Observer {
    pub checker: Checker,
    pub trace: Trace,
    /// What the scenario measured, for its test and for `explore`'s summary.
    pub facts: Vec<(String, f64)>,
    /// (node, when) of every end of leadership: a check-quorum step-down, or leadership lost
    /// to a higher term.
    pub leadership_ends: Vec<(usize, Duration)>,
    /// (node, round, level) of every step-in of a redundancy group member.
    pub step_ins: Vec<(usize, u64, i64)>,
    /// (node, round of the lower level's signature) of every revert.
    pub reverts: Vec<(usize, u64)>,
    /// (node, yields) of every same-level detection.
    pub same_levels: Vec<(usize, bool)>,
    /// (node, round) of every block a member did not sign (guard or chain refused it).
    pub sign_refusals: Vec<(usize, u64)>,
    /// (node, when, epoch, missed rounds) of every batcher claim a standby made.
    pub batcher_claims: Vec<(usize, Duration, u64, u32)>,
    /// Nodes that reported another batcher at their own level.
    pub batcher_same_level: Vec<usize>,
    /// Log compaction at work: snapshots installed, blocks backfilled, gaps closed.
    pub snapshots_installed: u64,
    /// The node of every snapshot installed, in order.
    pub installed_on: Vec<usize>,
    pub blocks_backfilled: u64,
    pub backfills_done: u64,
    /// (node, fault) of every p2p connection a node closed against the peer's will.
    pub connections_refused: Vec<(usize, ConnectionFault)>,
    /// The run's timeline, when one was asked for (`canon-sim run --html`).
    pub timeline: Option<Recorder>,
    /// Consensus nodes, then external nodes: the timeline's lanes.
    pub nodes: usize,
    pub externals: usize,
    pub members: usize,
    start: Instant,
}

impl Observer {
    pub fn new(checker: Checker) -> Observer {
        Observer {
            checker,
            trace: Trace::default(),
            facts: Vec::new(),
            leadership_ends: Vec::new(),
            step_ins: Vec::new(),
            reverts: Vec::new(),
            same_levels: Vec::new(),
            sign_refusals: Vec::new(),
            batcher_claims: Vec::new(),
            batcher_same_level: Vec::new(),
            snapshots_installed: 0,
            installed_on: Vec::new(),
            blocks_backfilled: 0,
            backfills_done: 0,
            connections_refused: Vec::new(),
            timeline: crate::timeline::enabled().then(Recorder::default),
            nodes: 0,
            externals: 0,
            members: 0,
            start: Instant::now(),
        }
    }

    pub fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.start)
    }

    pub fn event(&mut self, node: usize, event: &Event) {
        let at = self.now();
        self.trace.record(
            at.as_secs_f64(),
            format!("{:>9.3}s n{node} {event:?}", at.as_secs_f64()),
        );
        match event {
            Event::SteppedDown { .. } | Event::LostLeadership { .. } => {
                self.leadership_ends.push((node, at));
            }
            Event::SteppedIn { round, level, .. } => self.step_ins.push((node, *round, *level)),
            Event::ConnectionRefused { fault, .. } => self.connections_refused.push((node, *fault)),
            Event::Reverted { round, .. } => self.reverts.push((node, *round)),
            Event::SameLevel { yields, .. } => self.same_levels.push((node, *yields)),
            Event::SignRefused { round, .. } => self.sign_refusals.push((node, *round)),
            Event::BatcherClaiming {
                epoch,
                missed_rounds,
            } => self.batcher_claims.push((node, at, *epoch, *missed_rounds)),
            Event::BatcherSameLevel { .. } => self.batcher_same_level.push(node),
            Event::SnapshotInstalled { .. } => {
                self.snapshots_installed += 1;
                self.installed_on.push(node);
            }
            Event::BlockBackfilled { .. } => self.blocks_backfilled += 1,
            Event::BackfillDone { .. } => self.backfills_done += 1,
            _ => {}
        }
        if let Some(t) = self.timeline.as_mut() {
            t.event(at.as_secs_f64(), node, event);
        }
        self.checker.observe(node, at, event);
    }

    pub fn note(&mut self, what: impl AsRef<str>) {
        let at = self.now().as_secs_f64();
        let what = what.as_ref();
        let line = format!("{at:>9.3}s -- {what}");
        if let Some(t) = self.timeline.as_mut() {
            t.note(at, what, self.nodes);
        }
        if what.starts_with("fault:") || what.starts_with("sabotage:") {
            self.trace.record_fault(at, line);
        } else {
            self.trace.record(at, line);
        }
    }
}

#[derive(Clone)]
pub struct SharedObserver(Arc<Mutex<Observer>>);

impl From<Observer> for SharedObserver {
    fn from(o: Observer) -> Self {
        SharedObserver(Arc::new(Mutex::new(o)))
    }
}

impl SharedObserver {
    pub fn lock(&self) -> MutexGuard<'_, Observer> {
        canon_engine::sync::lock(&self.0)
    }
}

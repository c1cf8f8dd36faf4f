//! `canon-sim shrink`: runs a failing seed, then shrinks its fault schedule
//! ([`crate::schedule::shrink`]), each candidate run in a child process and kept only if it
//! fails the same check.

use std::path::{Path, PathBuf};

use crate::scenario::{self, RunReport, Scenario};
use crate::schedule::shrink::{Shrinker, Step};
use crate::schedule::Schedule;

/// Why a seed could not be shrunk.
#[derive(Debug, thiserror::Error)]
pub enum ShrinkError {
    #[error("{scenario} seed {seed} passes: there is no failure to shrink")]
    Passes { scenario: &'static str, seed: u64 },
    #[error("{scenario} runs no fault schedule (scenarios that do: {takes})")]
    NoSchedule {
        scenario: &'static str,
        takes: String,
    },
    #[error("cannot use the scratch directory {dir}: {source}")]
    Scratch {
        dir: PathBuf,
        source: std::io::Error,
    },
}

/// What a shrink found: the run it started from, the minimal schedule and its run, and how
/// many candidate runs it took.
pub struct Shrunk {
    pub original: RunReport,
    pub minimal: RunReport,
    pub schedule: Schedule,
    pub runs: usize,
}

/// How a shrink is run: this program (to run candidates in), runs at once, and where the
/// candidates' schedule files go.
pub struct Runner<'a> {
    pub exe: &'a Path,
    pub jobs: usize,
    /// Whether chaos swarms in every candidate (as in the run being shrunk).
    pub swarm: crate::schedule::Swarming,
    pub scratch: PathBuf,
}

impl Runner<'_> {
    fn child(
        &self,
        s: &'static Scenario,
        seed: u64,
        schedule: Option<&Schedule>,
        name: &str,
    ) -> Result<RunReport, ShrinkError> {
        let mut cmd = scenario::run_command(self.exe, s, seed, self.swarm);
        if let Some(sched) = schedule {
            let file = self.scratch.join(name);
            std::fs::write(&file, sched.to_string()).map_err(|source| ShrinkError::Scratch {
                dir: self.scratch.clone(),
                source,
            })?;
            cmd.arg("--schedule").arg(&file);
        }
        Ok(scenario::run_in_child(cmd, s, seed))
    }

    /// Shrinks `s` under `seed`, starting from `start` (or the schedule the seed draws);
    /// `said` hears each step.
    pub fn shrink(
        &self,
        s: &'static Scenario,
        seed: u64,
        start: Option<&Schedule>,
        takes: &[&str],
        said: &mut dyn FnMut(&Step),
    ) -> Result<Shrunk, ShrinkError> {
        std::fs::create_dir_all(&self.scratch).map_err(|source| ShrinkError::Scratch {
            dir: self.scratch.clone(),
            source,
        })?;
        let original = self.child(s, seed, start, "original.schedule")?;
        if original.ok() {
            return Err(ShrinkError::Passes {
                scenario: s.name,
                seed,
            });
        }
        let Some(schedule) = original.schedule.clone() else {
            return Err(ShrinkError::NoSchedule {
                scenario: s.name,
                takes: takes.join(", "),
            });
        };
        let target = original.check.clone();
        let mut trouble: Option<ShrinkError> = None;
        let mut oracle = |candidates: &[Schedule]| -> Option<usize> {
            // In windows of `jobs`, in order: the first failing candidate is the same whatever
            // the number of jobs, so the shrink is deterministic.
            for (w, window) in candidates.chunks(self.jobs.max(1)).enumerate() {
                let fails: Vec<bool> = std::thread::scope(|scope| {
                    let runs: Vec<_> = window
                        .iter()
                        .enumerate()
                        .map(|(k, c)| {
                            let name = format!("candidate-{k}.schedule");
                            scope.spawn(move || self.child(s, seed, Some(c), &name))
                        })
                        .collect();
                    runs.into_iter()
                        .map(|h| match h.join() {
                            Ok(Ok(r)) => !r.ok() && r.check == target,
                            Ok(Err(e)) => {
                                trouble.get_or_insert(e);
                                false
                            }
                            Err(_) => false,
                        })
                        .collect()
                });
                if let Some(k) = fails.iter().position(|f| *f) {
                    return Some(w * self.jobs.max(1) + k);
                }
            }
            None
        };
        let mut shrinker = Shrinker::new(&mut oracle, said);
        let minimal = shrinker.shrink(schedule);
        let runs = shrinker.asked();
        if let Some(e) = trouble {
            return Err(e);
        }
        let last = self.child(s, seed, Some(&minimal), "minimal.schedule")?;
        Ok(Shrunk {
            original,
            minimal: last,
            schedule: minimal,
            runs: runs + 2,
        })
    }
}

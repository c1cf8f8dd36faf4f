//! `canon-sim sweep --minutes <m>`: every scenario, round-robin over fresh seeds, until the
//! time is up; then a table per scenario (seeds run, failures, simulated and wall seconds) and
//! each failure's replay command.
//!
//! Round-robin means the k-th run is scenario `k mod S` under seed `start + k div S`, so every
//! scenario gets the same number of seeds (within one) whatever the time allows, and a sweep
//! started at the same seed runs the same (scenario, seed) pairs in the same order.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::scenario::{self, RunReport, Scenario};
use crate::schedule::Swarming;

/// The k-th run of a sweep over `scenarios` from `start`.
pub fn nth_run(scenarios: &[Scenario], start: u64, k: u64) -> (&Scenario, u64) {
    let n = scenarios.len() as u64;
    (&scenarios[(k % n) as usize], start + k / n)
}

/// Runs `scenarios` round-robin from seed `start`, each seed in a child process of `exe`
/// (`run --machine`), `jobs` at once, starting no run after `budget`. `progress` is told of
/// each finished run.
pub fn sweep(
    exe: &Path,
    scenarios: &'static [Scenario],
    start: u64,
    budget: Duration,
    jobs: usize,
    progress: &(dyn Fn(&RunReport, u64) + Sync),
) -> Vec<RunReport> {
    let began = Instant::now();
    let next = AtomicU64::new(0);
    let reports: Mutex<Vec<(u64, RunReport)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| {
                while began.elapsed() < budget {
                    let k = next.fetch_add(1, Ordering::SeqCst);
                    let (s, seed) = nth_run(scenarios, start, k);
                    let cmd = scenario::run_command(exe, s, seed, Swarming::On);
                    let r = scenario::run_in_child(cmd, s, seed);
                    let mut all = canon_engine::sync::lock(&reports);
                    all.push((k, r));
                    progress(&all[all.len() - 1].1, all.len() as u64);
                }
            });
        }
    });
    let mut all = reports.into_inner().unwrap_or_else(|p| p.into_inner());
    all.sort_by_key(|(k, _)| *k);
    all.into_iter().map(|(_, r)| r).collect()
}

/// One scenario's line of the table.
#[derive(Debug, Default, PartialEq)]
pub struct Row {
    pub seeds: u64,
    pub failures: u64,
    pub sim_secs: f64,
    pub wall_secs: f64,
}

/// Per scenario, in `scenarios`' order: what `reports` add up to.
pub fn rows<'a>(scenarios: &'a [Scenario], reports: &[RunReport]) -> Vec<(&'a str, Row)> {
    scenarios
        .iter()
        .map(|s| {
            let mut row = Row::default();
            for r in reports.iter().filter(|r| r.scenario == s.name) {
                row.seeds += 1;
                row.failures += u64::from(!r.ok());
                row.sim_secs += r.sim_secs;
                row.wall_secs += r.wall_secs;
            }
            (s.name, row)
        })
        .collect()
}

/// The table and the failures' replay commands, as printed at the end of a sweep.
pub fn render(scenarios: &[Scenario], reports: &[RunReport], wall: Duration) -> String {
    let rows = rows(scenarios, reports);
    let width = rows.iter().map(|(n, _)| n.len()).max().unwrap_or(8).max(8);
    let mut out = format!(
        "{:width$}  {:>6}  {:>8}  {:>10}  {:>9}  {:>8}\n",
        "scenario", "seeds", "failures", "sim_secs", "run_secs", "seeds/min"
    );
    for (name, r) in &rows {
        // The runs' own seconds (each child's simulation, not its process start), so one
        // scenario's speed; the last line's rate is the sweep's, everything counted.
        let per_min = if r.wall_secs > 0.0 {
            r.seeds as f64 * 60.0 / r.wall_secs
        } else {
            0.0
        };
        out.push_str(&format!(
            "{name:width$}  {:>6}  {:>8}  {:>10.1}  {:>9.1}  {:>8.0}\n",
            r.seeds, r.failures, r.sim_secs, r.wall_secs, per_min
        ));
    }
    let seeds: u64 = rows.iter().map(|(_, r)| r.seeds).sum();
    let failures: Vec<&RunReport> = reports.iter().filter(|r| !r.ok()).collect();
    let reached = rows.iter().filter(|(_, r)| r.seeds > 0).count();
    out.push_str(&format!(
        "swept {reached} of {} scenarios, {seeds} seeds, {} failures in {:.0} s ({:.0} seeds/min)\n",
        rows.len(),
        failures.len(),
        wall.as_secs_f64(),
        seeds as f64 * 60.0 / wall.as_secs_f64().max(1e-9)
    ));
    for r in failures {
        let why = r
            .failure
            .as_deref()
            .unwrap_or("")
            .lines()
            .next()
            .unwrap_or("");
        out.push_str(&format!("FAILED {} seed {}: {why}\n", r.scenario, r.seed));
        out.push_str(&format!("  replay: {}\n", r.replay_command()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenarios::SCENARIOS;

    fn report(scenario: &'static str, seed: u64, failure: Option<&str>) -> RunReport {
        RunReport {
            scenario,
            seed,
            blocks: 1,
            sim_secs: 10.0,
            wall_secs: 0.5,
            trace: "00".into(),
            trace_lines: 1,
            failure: failure.map(str::to_string),
            facts: Vec::new(),
            recent_events: Vec::new(),
            recent_faults: Vec::new(),
            check: failure.map(crate::scenario::check_of),
            schedule: None,
            schedule_file: None,
            setup: None,
            swarm: Swarming::On,
            timeline: None,
        }
    }

    #[test]
    fn runs_go_round_robin_each_scenario_on_fresh_seeds() {
        let s = &SCENARIOS[..3];
        let runs: Vec<(&str, u64)> = (0..7)
            .map(|k| {
                let (sc, seed) = nth_run(s, 100, k);
                (sc.name, seed)
            })
            .collect();
        let n = |i: usize| s[i].name;
        assert_eq!(
            runs,
            vec![
                (n(0), 100),
                (n(1), 100),
                (n(2), 100),
                (n(0), 101),
                (n(1), 101),
                (n(2), 101),
                (n(0), 102)
            ]
        );
    }

    #[test]
    fn the_table_adds_up_and_lists_each_failure_with_its_replay() {
        let s = &SCENARIOS[..2];
        let (a, b) = (s[0].name, s[1].name);
        let reports = vec![
            report(a, 7, None),
            report(b, 7, Some("invariant violated: x\nmore")),
            report(a, 8, None),
        ];
        let rows = rows(s, &reports);
        assert_eq!(
            rows[0].1,
            Row {
                seeds: 2,
                failures: 0,
                sim_secs: 20.0,
                wall_secs: 1.0
            }
        );
        assert_eq!(rows[1].1.failures, 1);
        let text = render(s, &reports, Duration::from_secs(60));
        assert!(
            text.contains("swept 2 of 2 scenarios, 3 seeds, 1 failures in 60 s (3 seeds/min)"),
            "{text}"
        );
        assert!(
            text.contains(&format!("FAILED {b} seed 7: invariant violated: x\n")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "  replay: cargo run --profile sim -p canon-sim -- run {b} --seed 7"
            )),
            "{text}"
        );
        // 2 seeds in 1 s of the children's wall time: 120 a minute.
        let line = text.lines().find(|l| l.starts_with(a)).unwrap();
        assert!(line.trim_end().ends_with("120"), "{line}");
    }
}

//! `canon-sim explore`: one scenario over consecutive seeds, a child process per seed, with
//! progress, the summary line and the spread of what the scenario measured.

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use crate::scenario::{self, RunReport};
use crate::schedule::Swarming;

/// Runs `seeds` of `s`, `jobs` child processes at a time (one process per seed: see
/// [`crate::scenario`]), with a progress bar; prints the summary and the facts' spread.
/// Whether every seed passed.
pub fn explore(
    s: &'static scenario::Scenario,
    exe: &std::path::Path,
    seeds: std::ops::Range<u64>,
    jobs: usize,
    keep_going: bool,
    swarm: Swarming,
) -> bool {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Mutex;

    let bar = ProgressBar::new(seeds.end - seeds.start);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} seeds, eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // indicatif draws nothing when stderr is not a terminal (CI, a log file): print a plain
    // line every 5% there instead, so a long run is never silent.
    let plain = !std::io::IsTerminal::is_terminal(&std::io::stderr());
    let total = seeds.end - seeds.start;
    let every = (total / 20).max(1);
    let done = AtomicU64::new(0);
    let wall = Instant::now();
    let next = AtomicU64::new(seeds.start);
    let stop = AtomicBool::new(false);
    let reports: Mutex<Vec<RunReport>> = Mutex::new(Vec::new());
    let failed = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| loop {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let seed = next.fetch_add(1, Ordering::SeqCst);
                if seed >= seeds.end {
                    return;
                }
                let cmd = scenario::run_command(exe, s, seed, swarm);
                let r = scenario::run_in_child(cmd, s, seed);
                bar.inc(1);
                let n = done.fetch_add(1, Ordering::SeqCst) + 1;
                if plain && (n / every != (n - 1) / every || n == total) {
                    eprintln!(
                        "progress: {n}/{total} seeds, {} failed, {:.0}s",
                        failed.load(Ordering::SeqCst) + u64::from(!r.ok()),
                        wall.elapsed().as_secs_f64()
                    );
                }
                if !r.ok() {
                    let n = failed.fetch_add(1, Ordering::SeqCst) + 1;
                    bar.set_message(format!("{n} failed"));
                    bar.suspend(|| eprintln!("{}", r.failure_text()));
                    if !keep_going {
                        stop.store(true, Ordering::SeqCst);
                    }
                }
                canon_engine::sync::lock(&reports).push(r);
            });
        }
    });
    bar.finish_and_clear();
    let mut reports = reports.into_inner().unwrap_or_else(|p| p.into_inner());
    reports.sort_by_key(|r| r.seed);
    let wall_secs = wall.elapsed().as_secs_f64();
    let sim_secs: f64 = reports.iter().map(|r| r.sim_secs).sum();
    let failing: Vec<u64> = reports.iter().filter(|r| !r.ok()).map(|r| r.seed).collect();
    println!(
        "explored scenario={} seeds={} failures={} jobs={} sim_secs={:.1} wall_secs={:.1} speedup={:.1}x",
        s.name,
        reports.len(),
        failing.len(),
        jobs,
        sim_secs,
        wall_secs,
        sim_secs / wall_secs.max(1e-9)
    );
    if !failing.is_empty() {
        let list: Vec<String> = failing.iter().map(u64::to_string).collect();
        println!("failing seeds: {}", list.join(" "));
    }
    for line in scenario::fact_summary(&reports) {
        println!("{line}");
    }
    failing.is_empty()
}

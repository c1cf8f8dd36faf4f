//! `canon-sim`: list, run and explore the seeded scenarios.

use std::process::ExitCode;
use std::time::Instant;

use canon_sim::scenario::{self, RunReport};
use canon_sim::scenarios::{self, SCENARIOS};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
#[command(
    name = "canon-sim",
    about = "Deterministic simulation of canon clusters under madsim",
    long_about = "Runs canon's named scenarios in the madsim simulator. Every run is determined by \
its seed: the same seed replays the identical run and prints the same trace hash. A failing run \
prints the violated invariant, the last trace events and the exact command that replays it."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the scenarios with a one-line description each.
    List,
    /// Run one scenario under one seed.
    Run {
        /// Scenario name (see `list`).
        scenario: String,
        /// The seed that determines the whole run.
        #[arg(long)]
        seed: u64,
        /// Print a machine-readable report (used by `explore` for its child processes).
        #[arg(long, hide = true)]
        machine: bool,
    },
    /// Run a scenario over consecutive seeds, stopping at the first failure.
    Explore {
        /// Scenario name (see `list`).
        scenario: String,
        /// How many seeds to run.
        #[arg(long)]
        seeds: u64,
        /// The first seed.
        #[arg(long, default_value_t = 0)]
        start: u64,
    },
}

/// The named scenario, or the exit code after saying which names exist.
fn lookup(name: &str) -> Result<&'static scenario::Scenario, ExitCode> {
    scenarios::find(name).ok_or_else(|| {
        let names: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
        eprintln!(
            "error: unknown scenario {name:?}; known: {}",
            names.join(", ")
        );
        ExitCode::from(2)
    })
}

fn report_failure(r: &RunReport) {
    eprintln!("{}", r.failure_text());
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::List => {
            let width = SCENARIOS.iter().map(|s| s.name.len()).max().unwrap_or(0);
            for s in SCENARIOS {
                println!("{:width$}  {}", s.name, s.description);
            }
            ExitCode::SUCCESS
        }
        Command::Run {
            scenario,
            seed,
            machine,
        } => {
            let s = match lookup(&scenario) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let r = scenario::run(s, seed);
            if machine {
                print!("{}", scenario::machine_report(&r));
            }
            if r.ok() {
                println!("{}", r.ok_line());
                ExitCode::SUCCESS
            } else {
                report_failure(&r);
                ExitCode::from(1)
            }
        }
        Command::Explore {
            scenario,
            seeds,
            start,
        } => {
            let s = match lookup(&scenario) {
                Ok(s) => s,
                Err(code) => return code,
            };
            let bar = ProgressBar::new(seeds);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} seeds {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let exe = match std::env::current_exe() {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("error: cannot find this program to run seeds in: {e}");
                    return ExitCode::from(2);
                }
            };
            let wall = Instant::now();
            let mut sim_secs = 0.0;
            let mut failures = 0u64;
            let mut ran = 0u64;
            for seed in start..start.saturating_add(seeds) {
                bar.set_message(format!("seed {seed}"));
                // One process per seed: see `canon_sim::scenario` on why.
                let mut cmd = std::process::Command::new(&exe);
                cmd.args(["run", s.name, "--seed", &seed.to_string(), "--machine"]);
                let r = scenario::run_in_child(cmd, s, seed);
                sim_secs += r.sim_secs;
                ran += 1;
                bar.inc(1);
                if !r.ok() {
                    failures += 1;
                    bar.suspend(|| report_failure(&r));
                    break;
                }
            }
            bar.finish_and_clear();
            let wall_secs = wall.elapsed().as_secs_f64();
            println!(
                "explored scenario={} seeds={} failures={} sim_secs={:.1} wall_secs={:.1} speedup={:.1}x",
                s.name,
                ran,
                failures,
                sim_secs,
                wall_secs,
                sim_secs / wall_secs.max(1e-9)
            );
            if failures > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
    }
}

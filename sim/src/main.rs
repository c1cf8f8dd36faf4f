//! `canon-sim`: list, run and explore the seeded scenarios.

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use canon_sim::scenario::{self, RunReport};
use canon_sim::scenarios::{self, SCENARIOS};
use canon_sim::schedule::{Swarming, SWARMED};
use canon_sim::{sweep, trace};
use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc, as in the production node: see the dependency's note in
/// `Cargo.toml`. A run's outcome never depends on the allocator (no addresses in any decision).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        /// Print the trace's last lines, pass or fail: "all", or how many (a failure prints
        /// the last 40 without this).
        #[arg(long, value_name = "all|N")]
        events: Option<trace::Shown>,
        /// Only the lines about one node: its events and the faults and notes naming it
        /// (n1, m0 for a redundancy member, x0 for an external node; a bare number is n<N>).
        #[arg(long, value_name = "NODE")]
        node: Option<trace::NodeName>,
        /// Carry out this fault schedule instead of the one the seed draws (a file as
        /// --print-schedule or shrink writes it; chaos, kv-chaos, kv-linearizable, l1-weather and the disk scenarios run schedules).
        #[arg(long, value_name = "FILE")]
        schedule: Option<std::path::PathBuf>,
        /// Write the fault schedule the run carried out to FILE ("-": standard output).
        #[arg(long, value_name = "FILE")]
        print_schedule: Option<String>,
        /// Write the run's timeline to FILE: one self-contained HTML page with a lane per
        /// node (leading, down, chain height, snapshots, backfills), the faults, the L1
        /// batches and the violation marked; zoom with the wheel, details on hover.
        #[arg(long, value_name = "FILE")]
        html: Option<std::path::PathBuf>,
        #[command(flatten)]
        swarm: SwarmArg,
    },
    /// Shrink a failing seed's fault schedule: remove faults, then move the rest earlier and
    /// shorten the run, keeping each change only while the same check still fails. Prints the
    /// minimal schedule, writes it to a file, and prints the command that replays it. The same
    /// seed gives the same minimal schedule.
    Shrink {
        /// Scenario name (chaos or kv-chaos).
        scenario: String,
        /// The failing seed.
        #[arg(long)]
        seed: u64,
        /// Start from this schedule instead of the one the seed draws.
        #[arg(long, value_name = "FILE")]
        schedule: Option<std::path::PathBuf>,
        /// Where to write the minimal schedule (default: shrunk-<scenario>-<seed>.schedule).
        #[arg(long, value_name = "FILE")]
        out: Option<std::path::PathBuf>,
        /// Candidate runs at once (default: one per core; the result does not depend on it).
        #[arg(long)]
        jobs: Option<usize>,
        #[command(flatten)]
        swarm: SwarmArg,
    },
    /// Run a scenario over consecutive seeds, each in its own process, stopping at the first
    /// failure unless --keep-going. Ends with one summary line, then p50/p99/max of what the
    /// scenario measured (failover times, catch-up times, ...).
    Explore {
        /// Scenario name (see `list`).
        scenario: String,
        /// How many seeds to run.
        #[arg(long)]
        seeds: u64,
        /// The first seed.
        #[arg(long, default_value_t = 0)]
        start: u64,
        /// Seeds run at once (default: one per core).
        #[arg(long)]
        jobs: Option<usize>,
        /// Run every seed and report all failures instead of stopping at the first.
        #[arg(long)]
        keep_going: bool,
        #[command(flatten)]
        swarm: SwarmArg,
    },
    /// Run every scenario round-robin over fresh seeds until the time is up, then print a
    /// table (scenario, seeds, failures, simulated and wall seconds, seeds a minute) and every
    /// failure's replay command. Exits 1 if any seed failed.
    Sweep {
        /// How long to start new runs, in minutes (runs in flight then finish).
        #[arg(long)]
        minutes: f64,
        /// The first seed (default: fresh, from the clock; printed so it can be repeated).
        #[arg(long)]
        start: Option<u64>,
        /// Seeds run at once (default: one per core).
        #[arg(long)]
        jobs: Option<usize>,
    },
}

/// The first seed of a sweep not told one: the wall clock in milliseconds, so each sweep
/// starts on seeds no earlier sweep of the last few hours ran (a sweep runs a few thousand
/// seeds per scenario at most).
fn fresh_start() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// This program (to run seeds in child processes of) and how many to run at once (default:
/// one per core), or the exit code after saying why not.
fn children(jobs: Option<usize>) -> Result<(std::path::PathBuf, usize), ExitCode> {
    let exe = std::env::current_exe().map_err(|e| {
        eprintln!("error: cannot find this program to run seeds in: {e}");
        ExitCode::from(2)
    })?;
    let jobs = jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    Ok((exe, jobs))
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

/// Writes `r`'s timeline page to `file`.
fn write_timeline(r: &RunReport, file: &std::path::Path) -> Result<(), ExitCode> {
    let Some(recorded) = &r.timeline else {
        eprintln!("error: --html: the run recorded no timeline (it started no cluster)");
        return Err(ExitCode::from(2));
    };
    let title = format!("canon-sim: {} seed {}", r.scenario, r.seed);
    let replay = r.replay_command();
    let page = canon_sim::timeline::render::Page {
        title: &title,
        failure: r.failure.as_deref(),
        setup: r.setup.as_deref(),
        nodes: recorded.nodes,
        externals: recorded.externals,
        members: recorded.members,
        end_secs: r.sim_secs,
        replay: &replay,
    };
    let items = &recorded.items;
    std::fs::write(file, canon_sim::timeline::render(&page, items)).map_err(|e| {
        eprintln!("error: --html {}: {e}", file.display());
        ExitCode::from(2)
    })?;
    eprintln!("timeline: {} ({} items)", file.display(), items.len());
    Ok(())
}

/// `--swarm`, as `run`, `explore` and `shrink` take it.
#[derive(clap::Args, Clone, Copy, Debug)]
struct SwarmArg {
    /// chaos only: "off" runs its fixed shape (3 nodes, 100 ms blocks, the mix of chaos before
    /// swarm testing) instead of drawing shape, timing and mix per seed; rates are compared
    /// on it.
    #[arg(long = "swarm", value_enum, default_value_t = Swarming::On)]
    swarming: Swarming,
}

/// Whether `s` takes `swarm`; says which scenarios swarm if not.
fn swarm_fits(s: &scenario::Scenario, swarm: Swarming) -> bool {
    let fits = swarm == Swarming::On || SWARMED.contains(&s.name);
    if !fits {
        eprintln!(
            "error: --swarm off: {} does not swarm; scenarios that do: {}",
            s.name,
            SWARMED.join(", ")
        );
    }
    fits
}

/// Whether `s` runs fault schedules; says which do if not.
fn takes_schedule(s: &scenario::Scenario) -> bool {
    let takes = scenarios::SCHEDULED.contains(&s.name);
    if !takes {
        eprintln!(
            "error: {} scripts its faults and runs no schedule; scenarios that do: {}",
            s.name,
            scenarios::SCHEDULED.join(", ")
        );
    }
    takes
}

/// The schedule in `file`, or the exit code after saying what is wrong with it.
fn read_schedule(file: &std::path::Path) -> Result<scenario::Given, ExitCode> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        eprintln!("error: --schedule {}: {e}", file.display());
        ExitCode::from(2)
    })?;
    let schedule = text.parse().map_err(|e| {
        eprintln!("error: --schedule {}: {e}", file.display());
        ExitCode::from(2)
    })?;
    Ok(scenario::Given {
        schedule,
        file: file.display().to_string(),
    })
}

/// `canon-sim shrink`: shrinks, prints the minimal schedule and its replay command, writes it
/// to `out`.
fn shrink(
    s: &'static scenario::Scenario,
    seed: u64,
    start: Option<&canon_sim::schedule::Schedule>,
    exe: &std::path::Path,
    jobs: usize,
    swarm: Swarming,
    out: &std::path::Path,
) -> ExitCode {
    let scratch = std::env::temp_dir().join(format!("canon-shrink-{}", std::process::id()));
    let runner = canon_sim::minimize::Runner {
        exe,
        jobs,
        swarm,
        scratch: scratch.clone(),
    };
    let wall = Instant::now();
    eprintln!("shrink: running {} seed {seed} as drawn", s.name);
    let mut said = |step: &canon_sim::schedule::shrink::Step| {
        eprintln!(
            "shrink: {} faults, faults end at {:.1} s ({} candidates run, {:.0} s)",
            step.faults,
            step.end_ms as f64 / 1_000.0,
            step.asked,
            wall.elapsed().as_secs_f64()
        );
    };
    let result = runner.shrink(s, seed, start, scenarios::SCHEDULED, &mut said);
    let _ = std::fs::remove_dir_all(&scratch);
    let shrunk = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let before = shrunk.original.schedule.as_ref();
    let faults_before = before.map_or(0, |b| b.faults.len());
    let text = shrunk.schedule.to_string();
    if let Err(e) = std::fs::write(out, &text) {
        eprintln!("error: cannot write {}: {e}", out.display());
        return ExitCode::from(2);
    }
    println!(
        "shrunk {} seed {seed}: {} faults -> {}, {:.1} -> {:.1} simulated seconds ({} runs, {:.0} s)",
        s.name,
        faults_before,
        shrunk.schedule.faults.len(),
        shrunk.original.sim_secs,
        shrunk.minimal.sim_secs,
        shrunk.runs,
        wall.elapsed().as_secs_f64()
    );
    println!(
        "check: {}",
        shrunk.original.check.as_deref().unwrap_or("(none)")
    );
    print!("{text}");
    let mut minimal = shrunk.minimal;
    minimal.schedule_file = Some(out.display().to_string());
    if minimal.ok() || minimal.check != shrunk.original.check {
        eprintln!("error: the minimal schedule no longer fails the same way when run again");
        return ExitCode::from(1);
    }
    println!("written to {}", out.display());
    println!("replay: {}", minimal.replay_command());
    ExitCode::SUCCESS
}

fn report_failure(r: &RunReport) {
    eprintln!("{}", r.failure_text());
}

fn main() -> ExitCode {
    // No transparent huge pages: mimalloc asks for them, and a run is a short-lived process
    // whose few megabytes the kernel then zeroes two at a time (a third of a heavy seed's
    // time went to it). Children (explore's, shrink's) inherit the setting. Where the kernel
    // refuses, a run is only slower.
    let _ = nix::sys::prctl::set_thp_disable(true);
    // The engine's and openraft's own logs, to stderr, only when asked for
    // (`RUST_LOG=openraft=debug canon-sim run ...`): they never enter the trace.
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .try_init();
    }
    let cli = Cli::parse();
    match cli.command {
        Command::List => {
            let width = SCENARIOS.iter().map(|s| s.name.len()).max().unwrap_or(0);
            let mut out = std::io::stdout().lock();
            for s in SCENARIOS {
                // A reader that stops early (`| head`) closes the pipe: the listing ends there.
                if writeln!(out, "{:width$}  {}", s.name, s.description).is_err() {
                    break;
                }
            }
            ExitCode::SUCCESS
        }
        Command::Run {
            scenario,
            seed,
            machine,
            events,
            node,
            schedule,
            print_schedule,
            html,
            swarm: SwarmArg { swarming: swarm },
        } => {
            let s = match lookup(&scenario) {
                Ok(s) => s,
                Err(code) => return code,
            };
            if !swarm_fits(s, swarm) {
                return ExitCode::from(2);
            }
            if (schedule.is_some() || print_schedule.is_some()) && !takes_schedule(s) {
                return ExitCode::from(2);
            }
            let given = match schedule.map(|f| read_schedule(&f)).transpose() {
                Ok(g) => g,
                Err(code) => return code,
            };
            let shown = events.unwrap_or(trace::Shown::Last(trace::DEFAULT_KEEP_RECENT));
            let asked = events.is_some() || node.is_some();
            if asked {
                // Filtered or longer than the default: keep every line, choose after the run.
                trace::set_keep_recent(usize::MAX);
            }
            if html.is_some() {
                canon_sim::timeline::enable();
            }
            let mut r = scenario::run_given(s, seed, given, swarm);
            if let Some(file) = &html {
                if let Err(code) = write_timeline(&r, file) {
                    return code;
                }
            }
            if let (Some(to), Some(sched)) = (&print_schedule, &r.schedule) {
                let text = sched.to_string();
                let written = if to == "-" {
                    std::io::stdout().write_all(text.as_bytes())
                } else {
                    std::fs::write(to, text)
                };
                if let Err(e) = written {
                    eprintln!("error: --print-schedule {to}: {e}");
                    return ExitCode::from(2);
                }
            }
            if asked {
                r.recent_events = trace::select(&r.recent_events, node.as_ref(), shown);
                if r.ok() {
                    for line in &r.recent_events {
                        println!("{line}");
                    }
                }
            }
            if machine {
                print!("{}", scenario::machine_report(&r));
            }
            for (name, value) in &r.facts {
                println!("fact {name}={value}");
            }
            if r.ok() {
                println!("{}", r.ok_line());
                ExitCode::SUCCESS
            } else {
                report_failure(&r);
                ExitCode::from(1)
            }
        }
        Command::Shrink {
            scenario,
            seed,
            schedule,
            out,
            jobs,
            swarm: SwarmArg { swarming: swarm },
        } => {
            let s = match lookup(&scenario) {
                Ok(s) => s,
                Err(code) => return code,
            };
            if !swarm_fits(s, swarm) {
                return ExitCode::from(2);
            }
            if !takes_schedule(s) {
                return ExitCode::from(2);
            }
            let start = match schedule.map(|f| read_schedule(&f)).transpose() {
                Ok(g) => g.map(|g| g.schedule),
                Err(code) => return code,
            };
            let (exe, jobs) = match children(jobs) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let out = out.unwrap_or_else(|| format!("shrunk-{}-{seed}.schedule", s.name).into());
            shrink(s, seed, start.as_ref(), &exe, jobs, swarm, &out)
        }
        Command::Explore {
            scenario,
            seeds,
            start,
            jobs,
            keep_going,
            swarm: SwarmArg { swarming: swarm },
        } => {
            let s = match lookup(&scenario) {
                Ok(s) => s,
                Err(code) => return code,
            };
            if !swarm_fits(s, swarm) {
                return ExitCode::from(2);
            }
            let (exe, jobs) = match children(jobs) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let seeds = start..start.saturating_add(seeds);
            if canon_sim::explore::explore(s, &exe, seeds, jobs, keep_going, swarm) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Command::Sweep {
            minutes,
            start,
            jobs,
        } => {
            if !(minutes > 0.0 && minutes.is_finite()) {
                eprintln!("error: --minutes {minutes}: a positive number of minutes");
                return ExitCode::from(2);
            }
            let (exe, jobs) = match children(jobs) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let start = start.unwrap_or_else(fresh_start);
            eprintln!(
                "sweep: {} scenarios round-robin from seed {start} for {minutes} min, {jobs} at once \
                 (--start {start} repeats these runs)",
                SCENARIOS.len()
            );
            let wall = Instant::now();
            let last_said = std::sync::Mutex::new(Instant::now());
            let failed = std::sync::atomic::AtomicU64::new(0);
            let progress = |r: &RunReport, done: u64| {
                use std::sync::atomic::Ordering;
                if !r.ok() {
                    failed.fetch_add(1, Ordering::SeqCst);
                    report_failure(r);
                }
                let mut said = canon_engine::sync::lock(&last_said);
                if said.elapsed() >= std::time::Duration::from_secs(10) {
                    *said = Instant::now();
                    eprintln!(
                        "progress: {done} seeds, {} failed, {:.0} of {:.0} s",
                        failed.load(Ordering::SeqCst),
                        wall.elapsed().as_secs_f64(),
                        minutes * 60.0
                    );
                }
            };
            let budget = std::time::Duration::from_secs_f64(minutes * 60.0);
            let reports = sweep::sweep(&exe, SCENARIOS, start, budget, jobs, &progress);
            print!("{}", sweep::render(SCENARIOS, &reports, wall.elapsed()));
            if reports.iter().all(RunReport::ok) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
    }
}

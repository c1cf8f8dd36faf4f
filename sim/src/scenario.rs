//! Running one named scenario under one seed: a fresh madsim runtime, the checker's verdict,
//! and the trace hash.
//!
//! One seed, one process. madsim makes time, randomness and the network deterministic, but a
//! process-wide counter inside tokio seeds the RNG behind `tokio::select!` (which openraft
//! uses), so a second simulation in the same process would draw differently. Everything that
//! runs many seeds therefore runs each in a child process ([`run_in_child`]), which is also
//! exactly what `canon-sim run --seed` does: the replay command reproduces the run bit for bit.

use std::future::Future;
use std::pin::Pin;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::cluster::{ClusterConfig, SharedObserver, SimCluster};
use crate::schedule::{Schedule, Swarming};

pub type ScenarioFuture = Pin<Box<dyn Future<Output = Result<(), String>>>>;

pub struct Scenario {
    pub name: &'static str,
    pub description: &'static str,
    pub body: fn(Ctx) -> ScenarioFuture,
    /// The run fails if simulated time passes this (a hung scenario is a failure, not a hang).
    pub sim_time_limit: Duration,
}

/// What a scenario body gets: its seed, the fault schedule it was given (if any), and the way
/// to start a cluster the runner can watch.
pub struct Ctx {
    pub seed: u64,
    /// Whether a scenario that swarms does (chaos).
    pub swarm: Swarming,
    observer: Arc<Mutex<Option<SharedObserver>>>,
    given: Option<Schedule>,
    ran: Arc<Mutex<Option<Schedule>>>,
    setup: Arc<Mutex<Option<String>>>,
}

impl Ctx {
    pub fn cluster(&self, cfg: ClusterConfig) -> SimCluster {
        let c = SimCluster::start(self.seed, cfg);
        *canon_engine::sync::lock(&self.observer) = Some(c.observer.clone());
        c
    }

    /// What this seed drew besides its faults (chaos's swarm), said with any failure.
    pub fn describe(&self, setup: String) {
        *canon_engine::sync::lock(&self.setup) = Some(setup);
    }

    /// The fault schedule this run carries out: the one it was given, or else `draw`'s. The
    /// run's report holds it (`--print-schedule`, `shrink`).
    pub fn schedule(&self, draw: impl FnOnce() -> Schedule) -> Schedule {
        let s = self.given.clone().unwrap_or_else(draw);
        *canon_engine::sync::lock(&self.ran) = Some(s.clone());
        s
    }
}

#[derive(Clone, Debug)]
pub struct RunReport {
    pub scenario: &'static str,
    pub seed: u64,
    pub blocks: u64,
    pub sim_secs: f64,
    pub wall_secs: f64,
    pub trace: String,
    pub trace_lines: u64,
    /// The first violated invariant or scenario expectation, if any.
    pub failure: Option<String>,
    /// What the scenario measured (`failover_ms`, ...), in the order it recorded them.
    pub facts: Vec<(String, f64)>,
    pub recent_events: Vec<String>,
    /// The fault lines of the last [`FAULT_WINDOW_SECS`] of the run.
    pub recent_faults: Vec<String>,
    /// What failed, without the particulars that change from run to run (heights, times,
    /// hashes): the invariant's name, or the scenario's message with its numbers blanked.
    /// `shrink` keeps a smaller schedule only if it fails the same check.
    pub check: Option<String>,
    /// The fault schedule the run carried out, for scenarios that run one.
    pub schedule: Option<Schedule>,
    /// The file the schedule was read from, if it was given one (for the replay command).
    pub schedule_file: Option<String>,
    /// What the seed drew besides its faults (chaos's swarm: cluster shape, timing, mix).
    pub setup: Option<String>,
    /// Whether chaos swarmed (`--swarm off` is in the replay command when it did not).
    pub swarm: Swarming,
    /// The run's timeline, when one was asked for ([`crate::timeline::enable`]), with the
    /// number of consensus and external nodes it has lanes for.
    pub timeline: Option<crate::timeline::Recorded>,
}

/// How far back the failure summary lists the faults injected before the end.
pub const FAULT_WINDOW_SECS: f64 = 10.0;

impl RunReport {
    pub fn ok(&self) -> bool {
        self.failure.is_none()
    }

    /// Every value the scenario recorded under `name`.
    pub fn fact(&self, name: &str) -> Vec<f64> {
        self.facts
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .collect()
    }

    /// The one command that replays this run, with the planted bug it ran with, if any.
    pub fn replay_command(&self) -> String {
        let plant = match std::env::var("CANON_SIM_PLANT") {
            Ok(p) => format!("CANON_SIM_PLANT={p} "),
            Err(_) => String::new(),
        };
        let schedule = match &self.schedule_file {
            Some(f) => format!(" --schedule {f}"),
            None => String::new(),
        };
        let swarm: String = self.swarm.args().iter().map(|a| format!(" {a}")).collect();
        format!(
            "{plant}cargo run --profile sim -p canon-sim -- run {} --seed {}{schedule}{swarm}",
            self.scenario, self.seed
        )
    }

    pub fn ok_line(&self) -> String {
        format!(
            "ok scenario={} seed={} blocks={} sim_secs={:.1} wall_secs={:.2} trace={}",
            self.scenario, self.seed, self.blocks, self.sim_secs, self.wall_secs, self.trace
        )
    }

    /// The failure report: what broke, the faults injected shortly before, the last trace
    /// events, and the replay command.
    pub fn failure_text(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "FAILED scenario={} seed={} trace={}\n{}\nfaults injected in the last {FAULT_WINDOW_SECS} s before the end:\n",
            self.scenario,
            self.seed,
            self.trace,
            self.failure.as_deref().unwrap_or("")
        ));
        if let Some(setup) = &self.setup {
            out.push_str(setup);
            out.push('\n');
        }
        if self.recent_faults.is_empty() {
            out.push_str("  (none)\n");
        }
        for f in &self.recent_faults {
            out.push_str("  ");
            out.push_str(f);
            out.push('\n');
        }
        out.push_str(&format!(
            "last {} events (more: canon-sim run {} --seed {} --events all --node <n>):\n",
            self.recent_events.len(),
            self.scenario,
            self.seed
        ));
        for e in &self.recent_events {
            out.push_str("  ");
            out.push_str(e);
            out.push('\n');
        }
        out.push_str(&format!("replay: {}", self.replay_command()));
        out
    }
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

/// Runs `scenario` with `seed` in this process, on a fresh thread. Deterministic only as the
/// first simulation of its process (see the module docs); many seeds go through
/// [`run_in_child`].
pub fn run(scenario: &'static Scenario, seed: u64) -> RunReport {
    run_given(scenario, seed, None, Swarming::On)
}

/// A schedule a run is given instead of drawing one, and the file it came from.
pub struct Given {
    pub schedule: Schedule,
    pub file: String,
}

/// [`run`], carrying out `given`'s schedule instead of drawing one.
pub fn run_given(
    scenario: &'static Scenario,
    seed: u64,
    given: Option<Given>,
    swarm: Swarming,
) -> RunReport {
    // Every simulated node recovers the same signatures: once per process is enough.
    canon_engine::keys::remember_recoveries();
    let slot: Arc<Mutex<Option<SharedObserver>>> = Arc::new(Mutex::new(None));
    let ran: Arc<Mutex<Option<Schedule>>> = Arc::new(Mutex::new(None));
    let setup: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let (given, schedule_file) = match given {
        Some(g) => (Some(g.schedule), Some(g.file)),
        None => (None, None),
    };
    let ctx = Ctx {
        seed,
        swarm,
        observer: slot.clone(),
        given,
        ran: ran.clone(),
        setup: setup.clone(),
    };
    let wall = Instant::now();
    let joined = std::thread::Builder::new()
        .name(format!("{}-{seed}", scenario.name))
        .stack_size(32 * 1024 * 1024)
        .spawn(move || {
            let mut rt =
                madsim::runtime::Runtime::with_seed_and_config(seed, madsim::Config::default());
            rt.set_time_limit(scenario.sim_time_limit);
            rt.block_on(async move {
                let start = Instant::now();
                let result = (scenario.body)(ctx).await;
                (result, start.elapsed())
            })
        })
        .map_err(|e| format!("cannot start the simulation thread: {e}"))
        .and_then(|h| {
            h.join()
                .map_err(|p| format!("simulation panicked: {}", panic_text(p)))
        });
    let wall_secs = wall.elapsed().as_secs_f64();
    let observer = canon_engine::sync::lock(&slot).clone();
    let (mut failure, sim_secs) = match joined {
        Ok((result, sim)) => (result.err(), sim.as_secs_f64()),
        Err(e) => (Some(e), scenario.sim_time_limit.as_secs_f64()),
    };
    let mut check = failure.as_deref().map(check_of);
    let schedule = canon_engine::sync::lock(&ran).clone();
    let setup = canon_engine::sync::lock(&setup).clone();
    let mut timeline = None;
    let (trace, trace_lines, recent, recent_faults, blocks, facts) = match &observer {
        Some(o) => {
            let mut o = o.lock();
            if let Some(mut t) = o.timeline.take() {
                if let Some(f) = &failure {
                    let at = o.checker.violations().first().map_or_else(
                        || crate::timeline::failure_time(f).unwrap_or(sim_secs),
                        |v| v.at.as_secs_f64(),
                    );
                    let text = o
                        .checker
                        .violations()
                        .first()
                        .map_or_else(|| f.clone(), ToString::to_string);
                    t.violation(at, &text);
                }
                timeline = Some(crate::timeline::Recorded {
                    items: t.items,
                    nodes: o.nodes,
                    externals: o.externals,
                    members: o.members,
                });
            }
            if let Some(v) = o.checker.violations().first() {
                // The checker's verdict comes first: a liveness failure is often its symptom.
                failure = Some(v.to_string());
                check = Some(format!("invariant: {}", v.invariant));
            }
            let mut facts = o.facts.clone();
            // Every run reports how much log compaction it exercised.
            if o.snapshots_installed > 0 {
                facts.push(("snapshots_installed".into(), o.snapshots_installed as f64));
                facts.push(("blocks_backfilled".into(), o.blocks_backfilled as f64));
                facts.push(("backfills_done".into(), o.backfills_done as f64));
            }
            (
                o.trace.hash16(),
                o.trace.lines(),
                o.trace.recent(),
                o.trace.faults_within(FAULT_WINDOW_SECS),
                o.checker.canonical_height(),
                facts,
            )
        }
        None => (
            "0000000000000000".into(),
            0,
            Vec::new(),
            Vec::new(),
            0,
            Vec::new(),
        ),
    };
    RunReport {
        scenario: scenario.name,
        seed,
        blocks,
        sim_secs,
        wall_secs,
        trace,
        trace_lines,
        failure,
        recent_events: recent,
        recent_faults,
        facts,
        check,
        schedule,
        schedule_file,
        setup,
        swarm,
        timeline,
    }
}

/// What a scenario's failure message says without its particulars: its first line, the
/// "(sim ...)" stamp dropped, every run of digits (heights, times, counts, node numbers) and
/// every hex string (hashes) blanked to `#`.
pub fn check_of(failure: &str) -> String {
    let first = failure.lines().next().unwrap_or("");
    let first = match first.rfind(" (sim ") {
        Some(i) => &first[..i],
        None => first,
    };
    let mut out = String::with_capacity(first.len());
    let mut chars = first.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch == '0' && chars.peek() == Some(&'x') {
            chars.next();
            while chars.peek().is_some_and(char::is_ascii_hexdigit) {
                chars.next();
            }
            out.push('#');
        } else if ch.is_ascii_digit() {
            while chars
                .peek()
                .is_some_and(|c| c.is_ascii_digit() || *c == '.')
            {
                chars.next();
            }
            out.push('#');
        } else {
            out.push(ch);
        }
    }
    out
}

const REPORT_TAG: &str = "CANON-REPORT";
const TEXT_TAG: &str = "CANON-TEXT ";

/// The machine-readable form of a report that a child prints for its parent.
pub fn machine_report(r: &RunReport) -> String {
    let mut out = format!(
        "{REPORT_TAG} ok={} scenario={} seed={} blocks={} sim_secs={} wall_secs={} trace={} lines={} swarm={}\n",
        u8::from(r.ok()),
        r.scenario,
        r.seed,
        r.blocks,
        r.sim_secs,
        r.wall_secs,
        r.trace,
        r.trace_lines,
        u8::from(r.swarm == Swarming::On)
    );
    if let Some(f) = &r.failure {
        for line in f.lines() {
            out.push_str(&format!("{TEXT_TAG}failure {line}\n"));
        }
    }
    for e in &r.recent_events {
        out.push_str(&format!("{TEXT_TAG}event {e}\n"));
    }
    for f in &r.recent_faults {
        out.push_str(&format!("{TEXT_TAG}fault {f}\n"));
    }
    for (name, value) in &r.facts {
        out.push_str(&format!("{TEXT_TAG}fact {name} {value}\n"));
    }
    if let Some(c) = &r.check {
        out.push_str(&format!("{TEXT_TAG}check {c}\n"));
    }
    if let Some(s) = &r.setup {
        out.push_str(&format!("{TEXT_TAG}setup {s}\n"));
    }
    if let Some(s) = &r.schedule {
        for line in s.to_string().lines() {
            out.push_str(&format!("{TEXT_TAG}schedule {line}\n"));
        }
    }
    out
}

fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

/// The command that runs `scenario` under `seed` in a child `canon-sim` (`exe`) and prints
/// its [`machine_report`], for [`run_in_child`]; chaos swarms or not as `swarm` says.
pub fn run_command(
    exe: &std::path::Path,
    scenario: &Scenario,
    seed: u64,
    swarm: Swarming,
) -> Command {
    let mut cmd = Command::new(exe);
    cmd.args([
        "run",
        scenario.name,
        "--seed",
        &seed.to_string(),
        "--machine",
    ]);
    cmd.args(swarm.args());
    cmd
}

/// Runs one seed in a child process. `cmd` must run exactly `scenario` with `seed` and print
/// [`machine_report`] on stdout (`canon-sim run --machine` does; so do the test probes).
pub fn run_in_child(mut cmd: Command, scenario: &'static Scenario, seed: u64) -> RunReport {
    let started = Instant::now();
    let failed = |why: String| RunReport {
        scenario: scenario.name,
        seed,
        blocks: 0,
        sim_secs: 0.0,
        wall_secs: started.elapsed().as_secs_f64(),
        trace: "0000000000000000".into(),
        trace_lines: 0,
        check: Some(check_of(&why)),
        setup: None,
        failure: Some(why),
        recent_events: Vec::new(),
        recent_faults: Vec::new(),
        facts: Vec::new(),
        schedule: None,
        schedule_file: None,
        swarm: Swarming::On,
        timeline: None,
    };
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => return failed(format!("cannot start the child process: {e}")),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(head) = stdout
        .lines()
        .find_map(|l| l.split_once(REPORT_TAG).map(|(_, r)| r))
    else {
        return failed(format!(
            "the child printed no report (exit {:?}):\n{}\n{}",
            out.status.code(),
            stdout,
            String::from_utf8_lossy(&out.stderr)
        ));
    };
    let mut failure: Vec<&str> = Vec::new();
    let mut events = Vec::new();
    let mut faults = Vec::new();
    let mut facts = Vec::new();
    let mut check = None;
    let mut setup = None;
    let mut schedule = String::new();
    for line in stdout.lines() {
        if let Some(text) = line.split_once(TEXT_TAG).map(|(_, t)| t) {
            if let Some(c) = text.strip_prefix("check ") {
                check = Some(c.to_string());
            } else if let Some(s) = text.strip_prefix("setup ") {
                setup = Some(s.to_string());
            } else if let Some(s) = text.strip_prefix("schedule ") {
                schedule.push_str(s);
                schedule.push('\n');
            } else if let Some(f) = text.strip_prefix("failure ") {
                failure.push(f);
            } else if let Some(e) = text.strip_prefix("event ") {
                events.push(e.to_string());
            } else if let Some(f) = text.strip_prefix("fault ") {
                faults.push(f.to_string());
            } else if let Some((name, value)) = text
                .strip_prefix("fact ")
                .and_then(|f| f.split_once(' '))
                .and_then(|(n, v)| Some((n.to_string(), v.parse::<f64>().ok()?)))
            {
                facts.push((name, value));
            }
        }
    }
    let num = |k: &str| {
        field(head, k)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let ok = field(head, "ok") == Some("1");
    RunReport {
        scenario: scenario.name,
        seed,
        blocks: num("blocks") as u64,
        sim_secs: num("sim_secs"),
        wall_secs: num("wall_secs"),
        trace: field(head, "trace").unwrap_or("").to_string(),
        trace_lines: num("lines") as u64,
        failure: if ok {
            None
        } else if failure.is_empty() {
            Some("failed without a reason".into())
        } else {
            Some(failure.join("\n"))
        },
        recent_events: events,
        recent_faults: faults,
        facts,
        check: if ok { None } else { check },
        schedule: schedule.parse().ok(),
        schedule_file: None,
        setup,
        // The child says how it ran, so the replay command is the child's own.
        swarm: if field(head, "swarm") == Some("0") {
            Swarming::Off
        } else {
            Swarming::On
        },
        timeline: None,
    }
}

/// p50 / p99 / max of every fact over many runs, one line per fact name (sorted by name).
pub fn fact_summary(reports: &[RunReport]) -> Vec<String> {
    let mut by_name: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    for r in reports {
        for (name, value) in &r.facts {
            by_name.entry(name).or_default().push(*value);
        }
    }
    by_name
        .into_iter()
        .map(|(name, mut v)| {
            v.sort_by(f64::total_cmp);
            let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
            format!(
                "fact {name}: n={} p50={} p99={} max={}",
                v.len(),
                at(0.5),
                at(0.99),
                at(1.0)
            )
        })
        .collect()
}

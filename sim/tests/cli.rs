//! The `canon-sim` command as a user runs it.

use std::process::Command;

fn canon_sim(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_canon-sim"))
        .args(args)
        .env_remove("CANON_SIM_TRACE")
        .output()
        .expect("run canon-sim");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn list_names_every_scenario_with_a_description() {
    let (code, out, _) = canon_sim(&["list"]);
    assert_eq!(code, Some(0));
    for name in [
        "leader-failover",
        "bootstrap-race",
        "quorum-loss",
        "follower-restart",
        "asymmetric-partition",
        "chaos",
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{out}"));
        assert!(line.len() > name.len() + 10, "no description: {line}");
    }
    assert!(!out.contains("sabotage"));
}

#[test]
fn list_into_a_reader_that_stops_early_exits_cleanly() {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_canon-sim"))
        .arg("list")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run canon-sim");
    // The reader goes away before reading anything, as `| head` does once it has its lines:
    // every write of the listing meets a closed pipe.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn run_ends_with_the_ok_line_and_replays_identically() {
    let (code, first, _) = canon_sim(&["run", "leader-failover", "--seed", "3"]);
    assert_eq!(code, Some(0), "{first}");
    let last = first.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("ok scenario=leader-failover seed=3 blocks="),
        "{last}"
    );
    let trace = last.rsplit("trace=").next().unwrap_or_default();
    assert_eq!(trace.len(), 16);
    assert!(trace.chars().all(|c| c.is_ascii_hexdigit()));
    let (_, second, _) = canon_sim(&["run", "leader-failover", "--seed", "3"]);
    let trace2 = second
        .lines()
        .last()
        .unwrap_or_default()
        .rsplit("trace=")
        .next()
        .unwrap_or_default();
    assert_eq!(trace, trace2);
}

/// `--swarm off` runs chaos's fixed shape (said in the trace), the same run each time and
/// another than the seed's swarm; a scenario that does not swarm refuses it by name.
#[test]
fn chaos_runs_its_fixed_shape_with_swarm_off() {
    let trace_of = |out: &str| {
        let last = out.lines().last().unwrap_or_default().to_string();
        assert!(last.starts_with("ok scenario=chaos seed=2 "), "{out}");
        last.rsplit("trace=").next().unwrap_or_default().to_string()
    };
    let off = ["run", "chaos", "--seed", "2", "--swarm", "off"];
    let (code, first, err) = canon_sim(&[&off[..], &["--events", "all"]].concat());
    assert_eq!(code, Some(0), "{err}");
    assert!(
        first.contains("swarm: off, the fixed shape"),
        "no fixed shape in the trace"
    );
    assert!(!first.contains("swarm: nodes="), "drew a swarm");
    let (_, second, _) = canon_sim(&off);
    assert_eq!(trace_of(&first), trace_of(&second));
    let (_, swarmed, _) = canon_sim(&["run", "chaos", "--seed", "2"]);
    assert_ne!(trace_of(&first), trace_of(&swarmed));
    let (code, _, err) = canon_sim(&["run", "leader-failover", "--seed", "1", "--swarm", "off"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("--swarm off: leader-failover does not swarm; scenarios that do: chaos"),
        "{err}"
    );
}

#[test]
fn a_violation_reports_invariant_events_and_replay_command() {
    let (code, _, err) = canon_sim(&["run", "sabotage-lying-disk", "--seed", "4"]);
    assert_eq!(code, Some(1), "{err}");
    // Lost synced data shows first as a lost vote (term backwards) or a lost commit.
    assert!(
        err.contains("invariant violated: term never goes backwards on n")
            || err.contains(
                "invariant violated: a canonized block is never lost across restarts on n"
            ),
        "{err}"
    );
    assert!(err.contains("at sim "), "{err}");
    assert!(
        err.contains("faults injected in the last 10 s before the end:"),
        "{err}"
    );
    // The sabotage that caused it is named among them.
    assert!(err.contains("-- sabotage: n"), "{err}");
    assert!(
        err.contains(
            "last 40 events (more: canon-sim run sabotage-lying-disk --seed 4 --events all --node <n>):"
        ),
        "{err}"
    );
    assert!(
        err.lines().last().unwrap_or_default()
            == "replay: cargo run --profile sim -p canon-sim -- run sabotage-lying-disk --seed 4",
        "{err}"
    );
}

#[test]
fn run_shows_one_nodes_last_lines_when_asked() {
    let (code, out, err) = canon_sim(&[
        "run",
        "quorum-loss",
        "--seed",
        "10",
        "--events",
        "5",
        "--node",
        "n2",
    ]);
    assert_eq!(code, Some(0), "{err}");
    let shown: Vec<&str> = out
        .lines()
        .filter(|l| !l.starts_with("fact ") && !l.starts_with("ok "))
        .collect();
    assert_eq!(shown.len(), 5, "{out}");
    assert!(shown.iter().all(|l| l.contains(" n2 ")), "{out}");
    let (code, _, err) = canon_sim(&["run", "quorum-loss", "--seed", "10", "--node", "z2"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--node \"z2\""), "{err}");
}

#[test]
fn explore_summarises_and_stops_at_the_first_failure() {
    let (code, out, _) = canon_sim(&["explore", "quorum-loss", "--seeds", "3", "--start", "10"]);
    assert_eq!(code, Some(0));
    let summary = out
        .lines()
        .find(|l| l.starts_with("explored "))
        .unwrap_or_else(|| panic!("no summary:\n{out}"));
    assert!(
        summary.starts_with("explored scenario=quorum-loss seeds=3 failures=0 jobs="),
        "{summary}"
    );
    assert!(
        summary.contains("speedup=") && summary.ends_with('x'),
        "{summary}"
    );
    // What the scenario measured, summed up over the seeds.
    assert!(
        out.lines()
            .any(|l| l.starts_with("fact advanced_without_quorum: n=3 p50=0 p99=0 max=0")),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("fact recovery_ms: n=3 ")),
        "{out}"
    );

    let (code, out, err) = canon_sim(&[
        "explore",
        "sabotage-lying-disk",
        "--seeds",
        "5",
        "--jobs",
        "1",
    ]);
    assert_eq!(code, Some(1));
    assert!(out.contains("seeds=1 failures=1"), "{out}");
    assert!(
        err.contains(
            "replay: cargo run --profile sim -p canon-sim -- run sabotage-lying-disk --seed 0"
        ),
        "{err}"
    );
}

#[test]
fn explore_keep_going_runs_every_seed_and_lists_the_failures() {
    let (code, out, err) = canon_sim(&[
        "explore",
        "sabotage-lying-disk",
        "--seeds",
        "3",
        "--start",
        "4",
        "--jobs",
        "2",
        "--keep-going",
    ]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("seeds=3 failures=3 jobs=2"), "{out}");
    assert!(out.lines().any(|l| l == "failing seeds: 4 5 6"), "{out}");
    for seed in 4..7 {
        assert!(
            err.contains(&format!("run sabotage-lying-disk --seed {seed}")),
            "{err}"
        );
    }
}

#[test]
fn unknown_scenario_names_the_known_ones() {
    let (code, _, err) = canon_sim(&["run", "nope", "--seed", "1"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("unknown scenario \"nope\"") && err.contains("chaos"),
        "{err}"
    );
}

#[test]
fn sweep_runs_every_scenario_and_prints_its_table() {
    let (code, out, err) =
        canon_sim(&["sweep", "--minutes", "0.01", "--start", "5", "--jobs", "2"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(err.contains("from seed 5"), "{err}");
    assert!(out.starts_with("scenario "), "{out}");
    assert!(out.contains(" of 45 scenarios, "), "{out}");
    assert!(out.contains(" 0 failures in "), "{out}");
    let (code, _, err) = canon_sim(&["sweep", "--minutes", "0"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--minutes 0"), "{err}");
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("canon-sim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir.join(name)
}

fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}

#[test]
fn a_printed_schedule_runs_again_to_the_identical_run_and_an_edited_one_differs() {
    let file = scratch("chaos-4.schedule");
    let path = file.to_str().expect("utf-8 path");
    let (code, drawn, err) = canon_sim(&["run", "chaos", "--seed", "4", "--print-schedule", path]);
    assert_eq!(code, Some(0), "{drawn}{err}");
    let text = std::fs::read_to_string(&file).expect("schedule written");
    assert!(text.lines().count() > 20, "{text}");
    let (code, given, err) = canon_sim(&["run", "chaos", "--seed", "4", "--schedule", path]);
    assert_eq!(code, Some(0), "{given}{err}");
    let trace = |out: &str| field(out.lines().last().unwrap_or(""), "trace").to_string();
    assert_eq!(trace(&drawn), trace(&given));
    // Without its first fault the same seed is another run.
    let mut lines: Vec<&str> = text.lines().collect();
    lines.remove(1);
    std::fs::write(&file, lines.join("\n")).expect("edit");
    let (code, edited, err) = canon_sim(&["run", "chaos", "--seed", "4", "--schedule", path]);
    assert_eq!(code, Some(0), "{edited}{err}");
    assert_ne!(trace(&drawn), trace(&edited));
}

#[test]
fn a_bad_schedule_is_refused_naming_the_file_and_line() {
    let file = scratch("bad.schedule");
    std::fs::write(&file, "# x\n100 crash n1 power-loss\nend 200\n").expect("write");
    let path = file.to_str().expect("utf-8 path");
    let (code, _, err) = canon_sim(&["run", "chaos", "--seed", "1", "--schedule", path]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains(path) && err.contains("line 2") && err.contains("keep="),
        "{err}"
    );
    std::fs::write(&file, "100 crash n7 process keep=0\nend 200\n").expect("write");
    let (code, out, err) = canon_sim(&["run", "chaos", "--seed", "1", "--schedule", path]);
    assert_eq!(code, Some(1), "{out}");
    assert!(err.contains("n7") && err.contains("n0..n2"), "{err}");
    let (code, _, err) = canon_sim(&["run", "leader-failover", "--seed", "1", "--schedule", path]);
    assert_eq!(code, Some(2));
    assert!(err.contains("chaos, disk-corruption, kv-chaos"), "{err}");
}

/// The planted bug (`forget-gap`: a node never downloads the blocks a snapshot jumped over)
/// fails chaos seed 1 among 70 faults; the shrink finds the one that matters, the same one
/// however many candidates run at once, and its replay command fails the same check.
#[test]
fn shrink_finds_the_fault_a_planted_bug_needs_the_same_way_every_time() {
    let shrink = |jobs: &str, out: &std::path::Path| {
        let o = Command::new(env!("CARGO_BIN_EXE_canon-sim"))
            .args(["shrink", "chaos", "--seed", "1", "--jobs", jobs, "--out"])
            .arg(out)
            .env("CANON_SIM_PLANT", "forget-gap")
            .env_remove("CANON_SIM_TRACE")
            .output()
            .expect("run canon-sim shrink");
        let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{stdout}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        (
            stdout,
            std::fs::read_to_string(out).expect("minimal schedule written"),
        )
    };
    let (said, one) = shrink("1", &scratch("shrunk-1.schedule"));
    let (_, two) = shrink("2", &scratch("shrunk-2.schedule"));
    assert_eq!(one, two);
    let faults: Vec<&str> = one.lines().filter(|l| !l.starts_with(['#', 'e'])).collect();
    assert!(
        (1..=3).contains(&faults.len()),
        "a handful of faults: {one}"
    );
    assert!(
        said.contains("faults ->") && said.contains("simulated seconds"),
        "{said}"
    );
    assert!(
        said.contains("check: liveness: a snapshot's gap is still open"),
        "{said}"
    );
    let replay = said
        .lines()
        .find_map(|l| l.strip_prefix("replay: "))
        .unwrap_or_else(|| panic!("no replay line: {said}"));
    assert!(replay.contains("CANON_SIM_PLANT=forget-gap") && replay.contains("--schedule"));
    let file = scratch("shrunk-1.schedule");
    let o = Command::new(env!("CARGO_BIN_EXE_canon-sim"))
        .args(["run", "chaos", "--seed", "1", "--schedule"])
        .arg(&file)
        .env("CANON_SIM_PLANT", "forget-gap")
        .output()
        .expect("replay");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1));
    assert!(err.contains("a snapshot's gap is still open"), "{err}");
    // Without the plant the minimal schedule passes: the bug, not the faults, fails it.
    let (code, out, _) = canon_sim(&[
        "run",
        "chaos",
        "--seed",
        "1",
        "--schedule",
        file.to_str().expect("utf-8"),
    ]);
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn shrink_refuses_a_passing_seed_and_a_scripted_scenario() {
    let (code, _, err) = canon_sim(&["shrink", "chaos", "--seed", "1"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("passes"), "{err}");
    let (code, _, err) = canon_sim(&["shrink", "quorum-loss", "--seed", "1"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("scripts its faults"), "{err}");
}

/// A run of chaos's fixed shape replays with `--swarm off`; a child run so says it in its
/// report, so explore's and shrink's replay commands carry it.
#[test]
fn the_replay_command_keeps_swarm_off() {
    use canon_sim::scenario;
    use canon_sim::schedule::Swarming;
    let chaos = canon_sim::scenarios::find("chaos").expect("chaos");
    let mut r = scenario::run_in_child(Command::new("/nonexistent/canon-sim"), chaos, 9);
    assert!(!r.ok(), "a child that cannot start is a failure");
    assert_eq!(
        r.replay_command(),
        "cargo run --profile sim -p canon-sim -- run chaos --seed 9"
    );
    r.swarm = Swarming::Off;
    assert_eq!(
        r.replay_command(),
        "cargo run --profile sim -p canon-sim -- run chaos --seed 9 --swarm off"
    );
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_canon-sim"));
    for (swarm, tail) in [(Swarming::Off, " --swarm off"), (Swarming::On, "")] {
        let cmd = scenario::run_command(exe, chaos, 2, swarm);
        let child = scenario::run_in_child(cmd, chaos, 2);
        assert!(child.ok(), "{}", child.failure_text());
        assert_eq!(child.swarm, swarm);
        assert_eq!(
            child.replay_command(),
            format!("cargo run --profile sim -p canon-sim -- run chaos --seed 2{tail}")
        );
    }
}

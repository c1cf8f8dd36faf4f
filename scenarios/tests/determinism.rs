//! Same seed, same trace hash: twice in this process and once in a fresh one.

use std::process::Command;

use canon_sim::scenario;
use canon_sim::scenarios;

const PROBE_ENV: &str = "CANON_TRACE_PROBE";
const CASES: &[(&str, u64)] = &[
    ("chaos", 3),
    ("leader-failover", 5),
    ("asymmetric-partition", 2),
];

fn trace_of(name: &str, seed: u64) -> String {
    let s = scenarios::find(name).expect("scenario exists");
    let r = scenario::run(s, seed);
    assert!(r.ok(), "{}", r.failure_text());
    r.trace
}

/// Run by the parent test in a child process: prints the trace hash of one case.
#[test]
#[ignore = "helper: run by same_seed_same_trace_in_another_process"]
fn trace_probe() {
    let Ok(spec) = std::env::var(PROBE_ENV) else {
        return;
    };
    let (name, seed) = spec.split_once(':').expect("probe spec is name:seed");
    println!("TRACE={}", trace_of(name, seed.parse().expect("seed")));
}

#[test]
fn same_seed_same_trace_in_this_process() {
    for (name, seed) in CASES {
        let a = trace_of(name, *seed);
        let b = trace_of(name, *seed);
        assert_eq!(a, b, "scenario {name} seed {seed}: trace {a} then {b}");
    }
}

#[test]
fn same_seed_same_trace_in_another_process() {
    let exe = std::env::current_exe().expect("test binary path");
    for (name, seed) in CASES {
        let here = trace_of(name, *seed);
        let out = Command::new(&exe)
            .args([
                "--exact",
                "trace_probe",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(PROBE_ENV, format!("{name}:{seed}"))
            .env_remove("MADSIM_TEST_SEED")
            .output()
            .expect("run the probe");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let there = stdout
            .lines()
            .find_map(|l| l.split_once("TRACE=").map(|(_, h)| h.trim()))
            .unwrap_or_else(|| {
                panic!(
                    "probe printed no trace: {stdout}\n{}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        assert_eq!(
            here, there,
            "scenario {name} seed {seed}: trace {here} here, {there} in a fresh process"
        );
    }
}

#[test]
fn different_seeds_differ() {
    assert_ne!(trace_of("chaos", 1), trace_of("chaos", 2));
}

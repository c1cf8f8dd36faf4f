//! Traces pinned across machines: every (scenario, seed) in `scenarios/pinned-traces.txt`
//! must give the trace hash written there. Determinism within one machine is
//! `determinism.rs`'s; this catches a change that alters a run without meaning to (the file
//! must be updated on purpose, in the same commit) and a machine or toolchain that computes a
//! different run from the same seed.
//!
//! To update after a change that is meant to alter runs:
//! `CANON_PIN_TRACES=update cargo test -p canon-scenarios --test pinned`, then review the diff
//! of `scenarios/pinned-traces.txt` (which scenarios changed is itself worth a look).

use std::collections::BTreeSet;
use std::path::PathBuf;

use canon_scenarios::run_seed;
use canon_sim::scenarios::SCENARIOS;

canon_scenarios::seed_probe!();

const UPDATE_ENV: &str = "CANON_PIN_TRACES";

fn pinned_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("pinned-traces.txt")
}

/// One pinned run.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pin {
    scenario: String,
    seed: u64,
    trace: String,
}

/// The file's comment lines (kept on update) and its pins, in order; a malformed line is
/// named with its number.
fn parse(text: &str) -> Result<(Vec<String>, Vec<Pin>), String> {
    let mut comments = Vec::new();
    let mut pins = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            if pins.is_empty() {
                comments.push(line.to_string());
            }
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [scenario, seed, trace] = fields[..] else {
            return Err(format!(
                "line {}: expected `<scenario> <seed> <trace hash>`, got {line:?}",
                i + 1
            ));
        };
        let seed = seed
            .parse()
            .map_err(|e| format!("line {}: seed {seed:?}: {e}", i + 1))?;
        pins.push(Pin {
            scenario: scenario.to_string(),
            seed,
            trace: trace.to_string(),
        });
    }
    Ok((comments, pins))
}

fn render(comments: &[String], pins: &[Pin]) -> String {
    let mut out = String::new();
    for c in comments {
        out.push_str(c);
        out.push('\n');
    }
    for p in pins {
        out.push_str(&format!("{} {} {}\n", p.scenario, p.seed, p.trace));
    }
    out
}

#[test]
fn the_pinned_file_parses_and_names_its_bad_lines() {
    let (comments, pins) = parse("# a\n\nchaos 3 00ff\nkv-chaos 7 abcd\n").unwrap();
    assert_eq!(comments, vec!["# a".to_string(), String::new()]);
    assert_eq!(
        pins,
        vec![
            Pin {
                scenario: "chaos".into(),
                seed: 3,
                trace: "00ff".into()
            },
            Pin {
                scenario: "kv-chaos".into(),
                seed: 7,
                trace: "abcd".into()
            }
        ]
    );
    assert_eq!(
        render(&comments, &pins),
        "# a\n\nchaos 3 00ff\nkv-chaos 7 abcd\n"
    );
    let err = parse("chaos 3 00ff\nchaos three 00ff\n").unwrap_err();
    assert!(err.starts_with("line 2: seed \"three\""), "{err}");
    let err = parse("chaos 3\n").unwrap_err();
    assert!(err.starts_with("line 1: expected"), "{err}");
}

#[test]
fn every_scenario_gives_its_pinned_trace() {
    let path = pinned_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let (comments, pins) = parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let pinned: BTreeSet<&str> = pins.iter().map(|p| p.scenario.as_str()).collect();
    let unpinned: Vec<&str> = SCENARIOS
        .iter()
        .map(|s| s.name)
        .filter(|n| !pinned.contains(n))
        .collect();
    assert!(
        unpinned.is_empty(),
        "{}: no pinned seed for {unpinned:?}; add a line `<scenario> <seed> -` for each and run \
         {UPDATE_ENV}=update cargo test -p canon-scenarios --test pinned",
        path.display()
    );
    let mut computed = Vec::new();
    let mut changed = Vec::new();
    for pin in &pins {
        let r = run_seed(&pin.scenario, pin.seed);
        assert!(r.ok(), "{}", r.failure_text());
        if r.trace != pin.trace {
            changed.push(format!(
                "{} seed {}: pinned {}, computed {} (replay: cargo run --profile sim -p canon-sim -- run {} --seed {})",
                pin.scenario, pin.seed, pin.trace, r.trace, pin.scenario, pin.seed
            ));
        }
        computed.push(Pin {
            trace: r.trace,
            ..pin.clone()
        });
    }
    if std::env::var(UPDATE_ENV).as_deref() == Ok("update") {
        std::fs::write(&path, render(&comments, &computed))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        eprintln!(
            "{}: {} of {} pins updated",
            path.display(),
            changed.len(),
            pins.len()
        );
        return;
    }
    assert!(
        changed.is_empty(),
        "{} of {} pinned runs changed:\n{}\nIf the change is meant to alter these runs, update the \
         file on purpose: {UPDATE_ENV}=update cargo test -p canon-scenarios --test pinned",
        changed.len(),
        pins.len(),
        changed.join("\n")
    );
}

//! canon-scenarios: runs the simulator's named scenarios over fixed seed sets from `cargo test`.
//!
//! Environment (madsim's conventions), all optional:
//! - `MADSIM_TEST_SEED=<n>` runs only seed `n` (and `MADSIM_TEST_NUM=<k>` seeds from there);
//! - `MADSIM_TEST_CHECK_DETERMINISM=1` runs every seed twice and compares trace hashes.

use std::ops::Range;

use canon_sim::scenario::{self, RunReport};
use canon_sim::scenarios;

/// Seeds that once failed, kept as named regressions once fixed. Each runs in its scenario's
/// test on top of the fixed range.
pub const REGRESSIONS: &[(&str, u64, &str)] = &[
    (
        "leader-failover",
        0,
        "restart lost untouched genesis accounts: state roots diverged after a crash",
    ),
    (
        "asymmetric-partition",
        0,
        "a send-only leader stepped down but kept campaigning and won every vote it could not hear",
    ),
    (
        "chaos",
        9,
        "a restarted node rejected every block after a crash (genesis accounts missing)",
    ),
];

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// The seeds a test runs: `MADSIM_TEST_SEED` (and `MADSIM_TEST_NUM`) when set, else the
/// scenario's fixed range plus its regression seeds.
pub fn seeds_for(name: &str, fixed: Range<u64>) -> Vec<u64> {
    if let Some(seed) = env_u64("MADSIM_TEST_SEED") {
        let num = env_u64("MADSIM_TEST_NUM").unwrap_or(1).max(1);
        return (seed..seed.saturating_add(num)).collect();
    }
    let mut seeds: Vec<u64> = fixed.clone().collect();
    for (scenario, seed, _) in REGRESSIONS {
        if *scenario == name && !fixed.contains(seed) {
            seeds.push(*seed);
        }
    }
    seeds
}

fn fail(r: &RunReport, test: &str) -> ! {
    panic!(
        "{}\nor: MADSIM_TEST_SEED={} cargo test -p canon-scenarios --test scenarios {test}",
        r.failure_text(),
        r.seed
    );
}

/// Runs scenario `name` over its seeds; panics with the failure report (and both replay
/// commands) at the first failing seed. Returns the reports.
pub fn run_scenario(name: &str, fixed: Range<u64>, test: &str) -> Vec<RunReport> {
    let s = scenarios::find(name).unwrap_or_else(|| panic!("no scenario named {name}"));
    let check = std::env::var_os("MADSIM_TEST_CHECK_DETERMINISM").is_some();
    let mut reports = Vec::new();
    for seed in seeds_for(name, fixed) {
        let r = scenario::run(s, seed);
        if !r.ok() {
            fail(&r, test);
        }
        if check {
            let again = scenario::run(s, seed);
            assert_eq!(
                r.trace, again.trace,
                "nondeterminism: scenario {name} seed {seed} gave trace {} then {}",
                r.trace, again.trace
            );
        }
        reports.push(r);
    }
    reports
}

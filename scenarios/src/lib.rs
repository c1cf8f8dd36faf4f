//! canon-scenarios: runs the simulator's named scenarios over fixed seed sets from `cargo test`.
//!
//! Each seed runs in a child process (the test binary itself, through its `seed_probe` test),
//! the way `canon-sim run` does, so a seed replays identically from either.
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
        "leader-failover",
        1,
        "split votes repeated in lockstep: election checks ride ticks aligned across nodes",
    ),
    (
        "leader-failover",
        774,
        "the two survivors split six votes in a row: openraft's per-node election timeout never re-randomizes",
    ),
    (
        "bootstrap-race",
        15,
        "all three bootstrapped at once and split every vote for ten seconds",
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
    (
        "chaos",
        1114,
        "after the heal a node with a stale log campaigned every timeout; its ever-higher term deposed each new leader (no pre-vote)",
    ),
    (
        "chaos",
        61,
        "two leaders in term 93: openraft's default leader ids allow one leader per (term, node)",
    ),
    (
        "redundancy-crash-while-signing",
        53,
        "a main whose guard held a block it never stored waited for its own height in the handover",
    ),
    (
        "redundancy-chaos",
        3,
        "the main's blocks lost a fork; its guard barred it from the heights it signed, yet its announcements kept the standbys waiting",
    ),
    (
        "redundancy-crash-while-signing",
        686,
        "a standby republished its guarded block after that block lost a fork and was rolled back",
    ),
    (
        "redundancy-chaos",
        195,
        "the same republication under chaos: a second rollback of one fork",
    ),
    (
        "redundancy-chaos",
        40032,
        "a crash kept a standby's published block but lost the guard's buffered note that it was published; after the block lost a fork the standby published it again",
    ),
    (
        "redundancy-chaos",
        40064,
        "the same lost note of publication, rolled back twenty blocks",
    ),
    (
        "redundancy-chaos",
        41124,
        "the identity signed three branches at one height; the follower remembered one loser per height, forgot the first, and was led back onto it",
    ),
    (
        "chaos",
        70337,
        "L1 losses set while L1 was down were never spent before the heal and fired after it, one 2 s backoff each: L1 lagged 30 s",
    ),
    (
        "chaos",
        70377,
        "the same losses outliving the heal: twelve lost transactions in a row after it",
    ),
    (
        "chaos",
        71892,
        "the same losses outliving the heal: eight lost transactions, then seven lost receipts",
    ),
    (
        "chaos",
        20190,
        "a node restarted onto a failing disk could not store its backfill's recut, and reported its own disk fault as a source serving a bad block",
    ),
    (
        "hostile-network",
        950039,
        "the replayed handshake was taken off a connection still in its handshake: one message, so the victim timed out instead of refusing it",
    ),
    (
        "hostile-network",
        950164,
        "the same: a handshake recorded before it finished, replayed",
    ),
    (
        "snapshot-catchup",
        972003,
        "catching up took a second snapshot after the first gap was filled; its gap was still open when the scenario checked the chain",
    ),
    (
        "chaos",
        974529,
        "two nodes had jumped over blocks with snapshots: the third held them but no majority did, so none could certify them, and peers served each other only certified blocks: the gaps never filled",
    ),
    (
        "chaos",
        976544,
        "the same, 108 and 145 blocks missing",
    ),
    (
        "kv-chaos",
        991890,
        "under kv-chaos's first fault plan (before it drew chaos's own), 38 operations in 40 s, all linearizable, failed a floor of 50: a run with nothing wrong in it",
    ),
    (
        "disk-corruption",
        3100529,
        "a misdirected write took the first log entry after a snapshot's purge elsewhere; the log was whole from its lowest key, so the scrub passed it and openraft refused to start on it at every restart",
    ),
    (
        "disk-corruption",
        3100685,
        "the same with nothing purged: log entry 0 went elsewhere after a rejoin",
    ),
    (
        "slow-disk",
        3300477,
        "a stalled leader stepped down; openraft's shutdown returned while the old state machine was still applying entries 156-159, and the fresh instance read applied index 155 and applied them again: the applied index went backwards",
    ),
    (
        "redundancy-chaos",
        3600162,
        "the disk failed the guard's note that a signed block was published; the block then lost a fork and was rolled back, and the next sign published it again from the guard as if a crash had left it unsent: a rollback with no new equivocation",
    ),
    (
        "chaos",
        3714334,
        "a follower's log truncation failed on a failing disk after the cache of recent entries had dropped 182-183; the entries stayed stored, the cache answered none for them, and every reopen failed: 'try to get log at index 182 but got None'",
    ),
    (
        "chaos",
        3713292,
        "the same cache fault on a five-node swarm: n4 never reopened Raft and stayed at height 129",
    ),
    (
        "membership-chaos",
        3900437,
        "an external node checked a range fetched ahead of its head against the signers it knew, before the block declaring the fresh member was applied: the member's vote in a certificate was taken for a forgery and an honest source dropped",
    ),
    (
        "membership-chaos",
        3900569,
        "the leader removing itself crashed between the joint and the final configuration; re-elected, it refused every change while a joint configuration stood, so the half-done removal could never be finished",
    ),
    (
        "lying-backfill",
        972074,
        "only the leader lied, and the node, not knowing the leader yet, backfilled from the honest follower: no lie was ever told it",
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

const PROBE_ENV: &str = "CANON_SEED_PROBE";

/// Defines the hidden `seed_probe` test that runs one seed for [`run_seed`] in a child
/// process. Every test binary that calls [`run_scenario`] invokes this once.
#[macro_export]
macro_rules! seed_probe {
    () => {
        #[test]
        #[ignore = "helper: runs one seed in a child process for run_scenario"]
        fn seed_probe() {
            $crate::probe_main();
        }
    };
}

/// The child's side: runs the seed named in the environment and prints its report.
pub fn probe_main() {
    let Ok(spec) = std::env::var(PROBE_ENV) else {
        return;
    };
    let Some((name, seed)) = spec.split_once(':') else {
        panic!("{PROBE_ENV} must be <scenario>:<seed>, got {spec:?}");
    };
    let s = scenarios::find(name).unwrap_or_else(|| panic!("no scenario named {name}"));
    let seed: u64 = seed
        .parse()
        .unwrap_or_else(|_| panic!("bad seed in {spec:?}"));
    let r = scenario::run(s, seed);
    print!("{}", scenario::machine_report(&r));
}

/// Runs one seed of `name` in a fresh child process of this test binary.
pub fn run_seed(name: &str, seed: u64) -> RunReport {
    run_seed_with(name, seed, None)
}

/// [`run_seed`] with a bug planted in every node (`CANON_SIM_PLANT`), to show a checker
/// catches it.
pub fn run_seed_planted(name: &str, seed: u64, plant: &str) -> RunReport {
    run_seed_with(name, seed, Some(plant))
}

fn run_seed_with(name: &str, seed: u64, plant: Option<&str>) -> RunReport {
    let s = scenarios::find(name).unwrap_or_else(|| panic!("no scenario named {name}"));
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("test binary path: {e}"));
    let mut cmd = std::process::Command::new(exe);
    cmd.args([
        "--exact",
        "seed_probe",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(PROBE_ENV, format!("{name}:{seed}"));
    match plant {
        Some(p) => cmd.env("CANON_SIM_PLANT", p),
        None => cmd.env_remove("CANON_SIM_PLANT"),
    };
    scenario::run_in_child(cmd, s, seed)
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
    let check = std::env::var_os("MADSIM_TEST_CHECK_DETERMINISM").is_some();
    let mut reports = Vec::new();
    for seed in seeds_for(name, fixed) {
        let r = run_seed(name, seed);
        if !r.ok() {
            fail(&r, test);
        }
        if check {
            let again = run_seed(name, seed);
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

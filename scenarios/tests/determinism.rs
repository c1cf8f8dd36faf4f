//! Same seed, same trace hash, in separate processes (as `canon-sim run --seed` replays it).

use canon_scenarios::run_seed;

canon_scenarios::seed_probe!();

const CASES: &[(&str, u64)] = &[
    ("chaos", 3),
    ("chaos", 1001),
    ("hostile-network", 3),
    ("leader-failover", 5),
    ("asymmetric-partition", 2),
    ("slow-links", 8),
    ("snapshot-catchup", 6),
    ("lying-backfill", 2),
    ("lying-source", 8),
    ("kv-linearizable", 3),
    ("kv-chaos", 7),
    ("quorum-loss", 4),
    ("redundancy-main-returns", 7),
    ("redundancy-partition", 3),
    ("redundancy-crash-while-signing", 10),
    ("redundancy-partition-fenced", 4),
    ("redundancy-chaos-fenced", 5),
    ("batcher-crash", 3),
    ("batcher-zombie", 6),
    ("batcher-l1-partition", 2),
];

fn trace_of(name: &str, seed: u64) -> String {
    let r = run_seed(name, seed);
    assert!(r.ok(), "{}", r.failure_text());
    assert!(r.trace_lines > 0);
    r.trace
}

#[test]
fn same_seed_same_trace_in_two_processes() {
    for (name, seed) in CASES {
        let a = trace_of(name, *seed);
        let b = trace_of(name, *seed);
        assert_eq!(a, b, "scenario {name} seed {seed}: trace {a} then {b}");
    }
}

#[test]
fn different_seeds_differ() {
    assert_ne!(trace_of("chaos", 1), trace_of("chaos", 2));
}

//! Every named scenario over a fixed seed set; the invariant checker watches each run.

use canon_scenarios::run_scenario;

canon_scenarios::seed_probe!();

fn assert_progress(reports: &[canon_sim::scenario::RunReport]) {
    for r in reports {
        assert!(r.blocks > 0, "seed {} canonized no block", r.seed);
        assert!(r.trace_lines > 0, "seed {} recorded no trace", r.seed);
    }
}

#[test]
fn leader_failover() {
    assert_progress(&run_scenario("leader-failover", 0..20, "leader_failover"));
}

#[test]
fn bootstrap_race() {
    assert_progress(&run_scenario("bootstrap-race", 0..20, "bootstrap_race"));
}

#[test]
fn quorum_loss() {
    assert_progress(&run_scenario("quorum-loss", 0..20, "quorum_loss"));
}

#[test]
fn follower_restart() {
    assert_progress(&run_scenario("follower-restart", 0..20, "follower_restart"));
}

#[test]
fn asymmetric_partition() {
    assert_progress(&run_scenario(
        "asymmetric-partition",
        0..30,
        "asymmetric_partition",
    ));
}

#[test]
fn chaos() {
    assert_progress(&run_scenario("chaos", 0..100, "chaos"));
}

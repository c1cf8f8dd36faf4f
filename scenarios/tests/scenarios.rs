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

#[test]
fn external_catchup() {
    assert_progress(&run_scenario("external-catchup", 0..5, "external_catchup"));
}

#[test]
fn external_restart() {
    assert_progress(&run_scenario("external-restart", 0..10, "external_restart"));
}

#[test]
fn external_partition() {
    assert_progress(&run_scenario(
        "external-partition",
        0..10,
        "external_partition",
    ));
}

#[test]
fn external_failover() {
    assert_progress(&run_scenario(
        "external-failover",
        0..10,
        "external_failover",
    ));
}

#[test]
fn lying_source() {
    // Seeds cycle through the three kinds of lie (signature, state root, parent).
    assert_progress(&run_scenario("lying-source", 0..12, "lying_source"));
}

#[test]
fn external_chain() {
    assert_progress(&run_scenario("external-chain", 0..10, "external_chain"));
}

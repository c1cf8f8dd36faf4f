//! `canon-node load` against a real node: a closed loop that runs out of its pre-signed
//! transactions before the duration ends reports its rate over the span it had work, not over
//! a duration in which nothing was left to send (which made a peak look like half of itself).
#![cfg(feature = "production")]

mod common;

use std::time::Duration;

use canon_node::devnet::Devnet;
use canon_node::load::{self, LoadConfig, Pace};
use common::*;

const PORT_OFFSET: u16 = 21_900;

#[test]
fn a_closed_loop_that_runs_out_is_measured_over_the_span_it_had_work() {
    let dir = scratch("load");
    let mut net = Devnet::start(exe(), 1, dir.path(), PORT_OFFSET).expect("devnet starts");
    wait_for("the dev chain to lead", Duration::from_secs(20), || {
        agreed_leader(&net)
    });
    let rpc = net.clients[0]
        .rpc_url
        .trim_start_matches("http://")
        .to_string();
    let duration_secs = 60;
    let cfg = LoadConfig {
        rpc: vec![rpc],
        accounts: 8,
        duration_secs,
        pace: Pace::Window(400),
        batch: 100,
        max_txs: 2_000,
        senders: 2,
        progress: false,
        app: canon_node::genesis::Application::Ledger,
        token: None,
        kv_keys: 1,
        kv_value_bytes: 0,
    };
    let r = load::run(&cfg).expect("load runs");
    assert_eq!(r.prepared, 2_000);
    assert_eq!(r.canonized_in_run, r.prepared, "{r}");
    let ran_out = r
        .ran_out_after_secs
        .expect("2,000 transfers run out well inside 60 s");
    assert!(ran_out < duration_secs as f64, "{r}");
    assert_eq!(r.run_secs, ran_out);
    // The rate is the work over the span it took, restated here.
    let expected = r.prepared as f64 / ran_out;
    assert!((r.tx_per_sec - expected).abs() < 1e-6, "{r}");
    assert!(r
        .to_string()
        .contains("prepared transactions were canonized after"));
    net.stop_all();
}

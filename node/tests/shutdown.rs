//! SIGTERM and SIGINT stop a node cleanly (exit 0, well inside the grace period), and it
//! restarts from its database with everything it had applied.
#![cfg(feature = "production")]

mod common;

use std::time::Duration;

use canon_node::devnet::Devnet;
use common::*;
use nix::sys::signal::Signal;

const PORT_OFFSET: u16 = 21_400;

#[test]
fn sigterm_and_sigint_stop_cleanly_and_keep_the_chain() {
    let dir = scratch("shutdown");
    let mut net = Devnet::start(exe(), 1, dir.path(), PORT_OFFSET).expect("devnet starts");
    let mut last = 0;
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let h = wait_for("blocks", Duration::from_secs(20), || {
            height(&net, 0).filter(|h| *h >= last + 3)
        });
        let status = net
            .signal_and_wait(0, signal, Duration::from_secs(10))
            .unwrap_or_else(|| panic!("{signal} did not stop the node within 10 s"));
        assert!(status.success(), "{signal}: exit {status}");
        let log = std::fs::read_to_string(net.log_path(0)).expect("log");
        assert!(
            log.contains("stopped"),
            "{signal}: no clean stop in the log"
        );
        net.start_node(0).expect("restart");
        let back = wait_for("the node back", Duration::from_secs(20), || height(&net, 0));
        assert!(back >= h, "{signal}: restarted at {back}, had applied {h}");
        last = back;
    }
    net.stop_all();
}

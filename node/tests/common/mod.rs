//! Shared helpers for the real-process tests: a devnet of `canon-node` processes on loopback,
//! polling with deadlines, and chain comparison over JSON-RPC.
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use canon_engine::keys::SecretKey;
use canon_engine::settlement::batch::attester_addresses;
use canon_node::devnet::{node_key, Devnet};
use canon_node::http::StatusView;
use canon_node::l1::{AnvilProcess, ANVIL_DEV_KEY, L1};

pub fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_canon-node"))
}

/// Polls `f` every 100 ms until it returns `Some`, or fails the test after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn status(net: &Devnet, i: usize) -> Option<StatusView> {
    net.children[i].as_ref()?;
    net.clients[i].status().ok()
}

/// The node every live node names as leader, once they agree and it says it leads.
pub fn agreed_leader(net: &Devnet) -> Option<usize> {
    let live: Vec<(usize, StatusView)> = (0..net.consensus)
        .filter_map(|i| status(net, i).map(|s| (i, s)))
        .collect();
    let up = net.children[..net.consensus]
        .iter()
        .filter(|c| c.is_some())
        .count();
    if live.len() < up {
        return None;
    }
    let leader = live.first()?.1.current_leader?;
    if live.iter().any(|(_, s)| s.current_leader != Some(leader)) {
        return None;
    }
    let i = net.index_of(&leader)?;
    live.iter().find(|(j, s)| *j == i && s.is_leader).map(|_| i)
}

pub fn height(net: &Devnet, i: usize) -> Option<u64> {
    status(net, i).map(|s| s.last_applied_height)
}

/// Block hashes 1..=to as node `i` serves them.
pub fn hashes(net: &Devnet, i: usize, to: u64) -> Vec<String> {
    (1..=to)
        .map(|h| {
            let b = net.clients[i]
                .block(h)
                .unwrap_or_else(|e| panic!("n{i} block {h}: {e}"))
                .unwrap_or_else(|| panic!("n{i} has no block {h}"));
            b["hash"].as_str().unwrap_or_default().to_string()
        })
        .collect()
}

/// Every node serves the same hash at every height up to the lowest head.
pub fn assert_same_chain(net: &Devnet) -> u64 {
    let to = (0..net.size())
        .map(|i| height(net, i).expect("every node answers /status"))
        .min()
        .unwrap_or(0);
    let reference = hashes(net, 0, to);
    for i in 1..net.size() {
        let other = hashes(net, i, to);
        for (h, (a, b)) in reference.iter().zip(&other).enumerate() {
            assert_eq!(a, b, "n0 and n{i} differ at height {}", h + 1);
        }
    }
    to
}

/// A scratch directory that is removed afterwards unless the test failed.
pub fn scratch(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("canon-{name}-"))
        .tempdir()
        .expect("temp dir")
}

/// A real anvil (0.25 s blocks) with the settlement contract deployed, registering the
/// devnet's three genesis consensus nodes: the anvil process (dropping it stops anvil), a
/// client paying from anvil's development account, and the contract's address.
pub fn anvil_with_settlement(
    rt: &tokio::runtime::Runtime,
) -> (AnvilProcess, L1, alloy_primitives::Address) {
    let anvil = AnvilProcess::start(0, Some(0.25), None)
        .expect("anvil (the README's test command installs it)");
    let l1 = L1::connect(&anvil.url, &SecretKey::from_hex(ANVIL_DEV_KEY).unwrap()).unwrap();
    rt.block_on(l1.wait_ready(Duration::from_secs(20)))
        .expect("anvil answers");
    let genesis: Vec<_> = (0..3).map(|i| node_key(i).node_id()).collect();
    let address = rt
        .block_on(l1.deploy(attester_addresses(&genesis)))
        .expect("deploy");
    (anvil, l1, address)
}

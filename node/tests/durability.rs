//! Acknowledged means durable: transactions the cluster acknowledged as canonized survive a
//! `kill -9` of the leader under load, and then of every node at once (a power cut), with
//! nothing left anywhere that was not on a disk.
#![cfg(feature = "production")]

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use canon_engine::app::ledger::{Payload, Transaction};
use canon_node::client::NodeClient;
use canon_node::devnet::Devnet;
use canon_node::genesis::dev_account_key;
use common::*;

const PORT_OFFSET: u16 = 21_100;
const SENDERS: usize = 4;

/// One sender: submits its next transfer to some node, waits until the sender's nonce is
/// canonized past it (then it is acknowledged), and goes on. Bounded by `stop` and a count.
fn sender(
    account: usize,
    clients: Vec<NodeClient>,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<BTreeSet<String>>>,
) {
    let key = dev_account_key(account);
    let to = dev_account_key(account + 100).address();
    let mut nonce = 0u64;
    for attempt in 0..100_000usize {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let client = &clients[attempt % clients.len()];
        let tx = Transaction {
            sender: key.address(),
            nonce,
            payload: Payload::Transfer { to, amount: 1 },
        }
        .sign(&key)
        .expect("sign");
        let Ok(hash) = client.send_transaction(&tx) else {
            // Down, leaderless or rejected (a resubmission after an unacknowledged attempt):
            // learn where the chain stands and continue from there.
            std::thread::sleep(Duration::from_millis(100));
            if let Ok((_, chain_nonce, _)) = client.account(&key.address()) {
                nonce = chain_nonce;
            }
            continue;
        };
        // Acknowledged once the node that took it has canonized the nonce.
        for _ in 0..50 {
            match client.account(&key.address()) {
                Ok((_, chain_nonce, _)) if chain_nonce > nonce => {
                    acked.lock().unwrap().insert(hash.clone());
                    nonce = chain_nonce;
                    break;
                }
                Ok(_) => std::thread::sleep(Duration::from_millis(50)),
                Err(_) => break,
            }
        }
    }
}

fn chain_transactions(net: &Devnet, i: usize) -> BTreeSet<String> {
    let head = height(net, i).expect("status");
    let mut out = BTreeSet::new();
    for h in 1..=head {
        let b = net.clients[i].block(h).expect("rpc").expect("block");
        for tx in b["transactions"].as_array().expect("transactions") {
            out.insert(tx["hash"].as_str().expect("hash").to_string());
        }
    }
    out
}

#[test]
fn acknowledged_transactions_survive_kill_9() {
    let dir = scratch("durability");
    let mut net = Devnet::start(exe(), 3, dir.path(), PORT_OFFSET).expect("devnet starts");
    let leader = wait_for("a leader", Duration::from_secs(30), || agreed_leader(&net));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let senders: Vec<_> = (0..SENDERS)
        .map(|a| {
            let (clients, stop, acked) = (net.clients.clone(), stop.clone(), acked.clone());
            std::thread::spawn(move || sender(a, clients, stop, acked))
        })
        .collect();
    let acked_count = |n: usize| {
        let acked = acked.clone();
        move || (acked.lock().unwrap().len() >= n).then_some(())
    };
    wait_for(
        "20 acknowledged transactions",
        Duration::from_secs(30),
        acked_count(20),
    );

    // The leader dies under load; the cluster carries on.
    net.kill(leader);
    let before = acked.lock().unwrap().len();
    wait_for(
        "progress without the old leader",
        Duration::from_secs(30),
        acked_count(before + 20),
    );
    net.start_node(leader).expect("restart");
    wait_for(
        "progress with all three",
        Duration::from_secs(30),
        acked_count(before + 40),
    );

    // Power cut: every node at once, mid-load.
    for i in 0..net.size() {
        net.kill(i);
    }
    let acked_before_cut: BTreeSet<String> = acked.lock().unwrap().clone();
    for i in 0..net.size() {
        net.start_node(i).expect("restart");
    }
    wait_for(
        "a leader after the power cut",
        Duration::from_secs(30),
        || agreed_leader(&net),
    );
    let after = acked.lock().unwrap().len();
    wait_for(
        "progress after the power cut",
        Duration::from_secs(30),
        acked_count(after + 10),
    );
    stop.store(true, Ordering::SeqCst);
    for s in senders {
        s.join().expect("sender");
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= acked_before_cut.len());
    // Every acknowledged transaction is at or below this height; wait for all to apply it.
    let target = (0..net.size())
        .filter_map(|i| height(&net, i))
        .max()
        .unwrap_or(0);
    wait_for(
        "every node at the final height",
        Duration::from_secs(30),
        || {
            (0..net.size())
                .all(|i| height(&net, i).is_some_and(|h| h >= target))
                .then_some(())
        },
    );
    assert_same_chain(&net);
    for i in 0..net.size() {
        let on_chain = chain_transactions(&net, i);
        let lost: Vec<_> = acked.difference(&on_chain).collect();
        assert!(
            lost.is_empty(),
            "n{i} lost {} of {} acknowledged transactions, e.g. {:?}",
            lost.len(),
            acked.len(),
            lost.first()
        );
    }
    eprintln!(
        "{} acknowledged transactions, all on every node",
        acked.len()
    );
    net.stop_all();
}

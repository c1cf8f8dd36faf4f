//! A simulated client: submits signed transfers to random consensus nodes over the simulated
//! network, plus transactions that must never be canonized (unfunded sender, forged signature).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use canon_engine::app::ledger::{Payload, Transaction};
use canon_engine::consensus::mempool::AdmitError;
use canon_engine::events::NoEvents;
use canon_engine::keys::SecretKey;
use canon_engine::net::peer;
use canon_engine::net::wire::{Request, Response, SubmitOutcome, SubmitRejection};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::cluster::{pauper_key, SimCluster};
use crate::net::{SimTransport, PORT};

#[derive(Default)]
pub struct ClientStats {
    pub submitted: AtomicU64,
    pub accepted: AtomicU64,
}

/// Starts the client on its own simulated host; it runs until the simulation ends.
pub fn spawn_client(cluster: &SimCluster, seed: u64, interval: Duration) -> Arc<ClientStats> {
    let stats = Arc::new(ClientStats::default());
    let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1));
    let client_key = crate::cluster::account_key(10_000);
    let me = cluster
        .net
        .add_member(client_key.node_id(), SocketAddr::new(ip, PORT));
    let accounts = cluster.accounts.clone();
    let peers = cluster.peers().to_vec();
    let net = cluster.net.clone();
    let st = stats.clone();
    madsim::runtime::Handle::current()
        .create_node()
        .name("client")
        .ip(ip)
        .build()
        .spawn(async move {
            let transport = net.transport(me, &client_key, Arc::new(NoEvents), None);
            run(transport, accounts, peers, seed, interval, st).await;
        });
    stats
}

async fn run(
    transport: SimTransport,
    accounts: Vec<SecretKey>,
    peers: Vec<canon_engine::NodeId>,
    seed: u64,
    interval: Duration,
    stats: Arc<ClientStats>,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x00C1_1E47);
    let mut nonces = vec![0u64; accounts.len()];
    let pauper = pauper_key();
    let mut pauper_nonce = 0u64;
    let mut last_seen_chain_nonce = vec![0u64; accounts.len()];
    for n in 0u64.. {
        madsim::time::sleep(interval).await;
        if n % 64 == 63 {
            // Transactions accepted into a mempool that died with its leader never land; a
            // nonce the chain has not moved past since the last look is one to resend.
            for (a, key) in accounts.iter().enumerate() {
                let target = peers[rng.gen_range(0..peers.len())];
                if let Some(chain) = query_nonce(&transport, target, key.address()).await {
                    if chain == last_seen_chain_nonce[a] && nonces[a] > chain {
                        nonces[a] = chain;
                    }
                    last_seen_chain_nonce[a] = chain;
                }
            }
        }
        let target = peers[rng.gen_range(0..peers.len())];
        // Every eighth submission is a batch (`ClientSubmitBatch`, as `canon_sendTransactions`
        // sends) of up to 16 transactions with consecutive nonces, the odd invalid one among
        // them.
        let batch_len = if n % 8 == 5 { rng.gen_range(2..=16) } else { 1 };
        let mut batch = Vec::with_capacity(batch_len);
        let mut next_nonce = nonces.clone();
        for k in 0..batch_len as u64 {
            let (tx, account) = match (n + k) % 16 {
                // Unfunded: admitted to a mempool perhaps, but never into a block.
                7 => (
                    Transaction {
                        sender: pauper.address(),
                        nonce: pauper_nonce,
                        payload: Payload::Transfer {
                            to: accounts[0].address(),
                            amount: 1,
                        },
                    }
                    .sign(&pauper),
                    None,
                ),
                // Forged: signed by one account in the name of another, at the victim's next
                // nonce, so only the signature check keeps it out of a block.
                13 => {
                    let v = rng.gen_range(0..accounts.len());
                    let victim = &accounts[v];
                    (
                        Transaction {
                            sender: victim.address(),
                            nonce: next_nonce[v],
                            payload: Payload::Data(b"forged".to_vec()),
                        }
                        .sign(&pauper),
                        None,
                    )
                }
                _ => {
                    let a = rng.gen_range(0..accounts.len());
                    let to = accounts
                        [(a + 1 + rng.gen_range(0..accounts.len() - 1)) % accounts.len()]
                    .address();
                    let nonce = next_nonce[a];
                    next_nonce[a] += 1;
                    (
                        Transaction {
                            sender: accounts[a].address(),
                            nonce,
                            payload: Payload::Transfer {
                                to,
                                amount: rng.gen_range(1..1_000),
                            },
                        }
                        .sign(&accounts[a]),
                        Some(a),
                    )
                }
            };
            if let Ok(tx) = tx {
                batch.push((tx, account));
            }
        }
        if batch.is_empty() {
            continue;
        }
        stats
            .submitted
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let outcomes = if batch.len() == 1 {
            let Ok(tx) = batch[0].0.to_tx() else {
                continue;
            };
            let req = Request::ClientSubmit(tx);
            match peer::call(&transport, target, &req, Duration::from_millis(500)).await {
                Ok(Response::SubmitTransaction(o)) => vec![o],
                _ => continue,
            }
        } else {
            let Ok(txs) = batch.iter().map(|(t, _)| t.to_tx()).collect() else {
                continue;
            };
            let req = Request::ClientSubmitBatch(txs);
            match peer::call(&transport, target, &req, Duration::from_millis(500)).await {
                Ok(Response::SubmitTransactions(o)) if o.len() == batch.len() => o,
                _ => continue,
            }
        };
        for ((tx, account), outcome) in batch.iter().zip(outcomes) {
            match (outcome, account) {
                (SubmitOutcome::Accepted { .. }, Some(a)) => {
                    stats.accepted.fetch_add(1, Ordering::Relaxed);
                    nonces[*a] = nonces[*a].max(tx.tx.nonce + 1);
                }
                (
                    SubmitOutcome::Rejected(SubmitRejection::Mempool(AdmitError::Stale {
                        expected,
                        ..
                    })),
                    Some(a),
                ) => {
                    nonces[*a] = expected;
                }
                (
                    SubmitOutcome::Rejected(SubmitRejection::Mempool(AdmitError::Stale {
                        expected,
                        ..
                    })),
                    None,
                ) => {
                    pauper_nonce = expected;
                }
                _ => {}
            }
        }
    }
}

async fn query_nonce(
    transport: &SimTransport,
    target: canon_engine::NodeId,
    address: alloy_primitives::Address,
) -> Option<u64> {
    let req = Request::Query(canon_engine::app::ledger::account_query(&address));
    match peer::call(transport, target, &req, Duration::from_millis(500)).await {
        Ok(Response::Query {
            answer: Ok(answer), ..
        }) => canon_engine::app::ledger::decode_account(&answer)
            .ok()
            .map(|a| a.nonce),
        _ => None,
    }
}

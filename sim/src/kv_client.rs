//! Key-value clients: each a sequential process on its own simulated host that puts, deletes,
//! compares-and-sets and reads a few keys through random consensus nodes, and records every
//! operation's invocation and completion for the linearizability check (`linearizable.rs`).
//!
//! An operation whose outcome the client cannot know (a timeout, a forward that failed after it
//! may have reached the leader) is recorded without a completion, and the client goes on as a
//! new process, as Jepsen's clients do: one process never has two operations open. An operation
//! known not to have happened (refused, no leader, a read that was not served) is left out.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use canon_engine::app::kv::{KvAnswer, KvOp, KvOutcome, KvQuery, KvTx};
use canon_engine::events::NoEvents;
use canon_engine::net::peer;
use canon_engine::net::wire::{
    Awaited, ReadConsistency, Request, Response, SubmitOutcome, SubmitRejection,
};
use canon_engine::NodeId;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::cluster::SimCluster;
use crate::linearizable::{KvCall, KvReturn, Operation};
use crate::net::{SimTransport, PORT};

/// How long a write is waited on at the node, and the request's own timeout beyond it.
const WRITE_WAIT_MS: u32 = 2_000;
const REQUEST_SLACK: Duration = Duration::from_millis(500);
const READ_TIMEOUT: Duration = Duration::from_millis(1_500);

/// The clients' shared record, and the switch that stops them.
#[derive(Default)]
pub struct KvHistory {
    pub operations: Mutex<Vec<Operation>>,
    stop: AtomicBool,
}

impl KvHistory {
    /// Stops every client before its next operation.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Vec<Operation> {
        canon_engine::sync::lock(&self.operations).clone()
    }
}

/// Starts `clients` clients over `keys` keys; they run until [`KvHistory::stop`].
pub fn spawn_kv_clients(
    cluster: &SimCluster,
    seed: u64,
    clients: usize,
    keys: usize,
) -> Arc<KvHistory> {
    let history = Arc::new(KvHistory::default());
    let epoch = madsim::time::Instant::now();
    for c in 0..clients {
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 2, 1 + c as u8));
        let key = crate::cluster::account_key(20_000 + c);
        let me = cluster
            .net
            .add_member(key.node_id(), SocketAddr::new(ip, PORT));
        let peers = cluster.peers().to_vec();
        let net = cluster.net.clone();
        let h = history.clone();
        madsim::runtime::Handle::current()
            .create_node()
            .name(format!("kv-client-{c}"))
            .ip(ip)
            .build()
            .spawn(async move {
                let transport = net.transport(me, &key, Arc::new(NoEvents), None);
                let rng = ChaCha8Rng::seed_from_u64(seed ^ 0x4b56_0000 ^ c as u64);
                let client = Client {
                    transport,
                    peers,
                    rng,
                    keys,
                    process: c as u64 * 1_000_000,
                    request: 0,
                    epoch,
                    history: h,
                };
                client.run().await;
            });
    }
    history
}

struct Client {
    transport: SimTransport,
    peers: Vec<NodeId>,
    rng: ChaCha8Rng,
    keys: usize,
    /// This process's id; a new one after every operation left open.
    process: u64,
    request: u64,
    epoch: madsim::time::Instant,
    history: Arc<KvHistory>,
}

/// What came of one operation.
enum Ended {
    Completed(KvReturn),
    /// It may or may not have happened.
    Unknown,
    /// It did not happen.
    NotDone,
}

impl Client {
    async fn run(mut self) {
        while !self.history.stop.load(Ordering::Relaxed) {
            let pause = self.rng.gen_range(0..40);
            madsim::time::sleep(Duration::from_millis(pause)).await;
            let key = format!("k{}", self.rng.gen_range(0..self.keys)).into_bytes();
            let call = self.pick_call();
            let node = self.peers[self.rng.gen_range(0..self.peers.len())];
            let invoked = self.epoch.elapsed();
            let ended = match &call {
                KvCall::Get => self.read(node, &key).await,
                write => self.write(node, &key, write).await,
            };
            let completed = match ended {
                Ended::NotDone => continue,
                Ended::Completed(ret) => Some((self.epoch.elapsed(), ret)),
                Ended::Unknown => None,
            };
            let open = completed.is_none();
            canon_engine::sync::lock(&self.history.operations).push(Operation {
                client: self.process,
                request: self.request,
                key,
                call,
                invoked,
                completed,
            });
            if open {
                self.process += 1;
            }
        }
    }

    fn pick_call(&mut self) -> KvCall {
        self.request += 1;
        // Every written value is unique, so a read names the write it saw.
        let value = format!("p{}r{}", self.process, self.request).into_bytes();
        match self.rng.gen_range(0..20) {
            0..=7 => KvCall::Get,
            8..=13 => KvCall::Put(value),
            14..=15 => KvCall::Delete,
            16..=17 => KvCall::CompareAndSet {
                expected: None,
                new: Some(value),
            },
            _ => {
                // Expect a value this client wrote recently; often stale, sometimes current.
                let back = self.rng.gen_range(1..=3);
                let guess = format!("p{}r{}", self.process, self.request.saturating_sub(back));
                KvCall::CompareAndSet {
                    expected: Some(guess.into_bytes()),
                    new: Some(value),
                }
            }
        }
    }

    async fn read(&mut self, node: NodeId, key: &[u8]) -> Ended {
        let Ok(query) = (KvQuery::Get { key: key.to_vec() }).encode() else {
            return Ended::NotDone;
        };
        let req = Request::Read {
            query,
            consistency: ReadConsistency::Linearizable,
            forwarded: false,
        };
        // A read changes nothing: one not answered is as if never made.
        match peer::call(&self.transport, node, &req, READ_TIMEOUT).await {
            Ok(Response::Read(Ok(answer))) => match KvAnswer::decode(&answer.answer) {
                Ok(KvAnswer::Value(v)) => Ended::Completed(KvReturn::Value(v)),
                _ => Ended::NotDone,
            },
            _ => Ended::NotDone,
        }
    }

    async fn write(&mut self, node: NodeId, key: &[u8], call: &KvCall) -> Ended {
        let op = match call.clone() {
            KvCall::Put(value) => KvOp::Put {
                key: key.to_vec(),
                value,
            },
            KvCall::Delete => KvOp::Delete { key: key.to_vec() },
            KvCall::CompareAndSet { expected, new } => KvOp::CompareAndSet {
                key: key.to_vec(),
                expected,
                new,
            },
            KvCall::Get => return Ended::NotDone,
        };
        let tx = KvTx {
            client: self.process,
            request: self.request,
            op,
        };
        let Ok(tx) = tx.to_tx() else {
            return Ended::NotDone;
        };
        let req = Request::SubmitAndWait {
            tx,
            wait_ms: WRITE_WAIT_MS,
        };
        let timeout = Duration::from_millis(u64::from(WRITE_WAIT_MS)) + REQUEST_SLACK;
        match peer::call(&self.transport, node, &req, timeout).await {
            Ok(Response::Awaited(Awaited::Applied { output, .. })) => {
                match KvOutcome::decode(&output) {
                    Ok(KvOutcome::Put) => Ended::Completed(KvReturn::Put),
                    Ok(KvOutcome::Deleted(existed)) => Ended::Completed(KvReturn::Deleted(existed)),
                    Ok(KvOutcome::Swapped(swapped)) => Ended::Completed(KvReturn::Swapped(swapped)),
                    Err(_) => Ended::Unknown,
                }
            }
            // A forward that failed may have reached the leader before it failed.
            Ok(Response::Awaited(Awaited::NotAdmitted(SubmitOutcome::Rejected(
                SubmitRejection::Forward(_),
            )))) => Ended::Unknown,
            Ok(Response::Awaited(Awaited::NotAdmitted(_))) => Ended::NotDone,
            _ => Ended::Unknown,
        }
    }
}

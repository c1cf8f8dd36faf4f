//! External nodes and lying block sources on simulated hosts. An external node has its own
//! disk (crashes keep synced data and a prefix of buffered batches), its own network address
//! (partitions apply to it like to any node), and reports to the checker under index
//! `consensus nodes + e`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy_primitives::{keccak256, B256};
use canon_engine::chain::block::transactions_root;
use canon_engine::chain::tx::{Payload, Transaction};
use canon_engine::codec;
use canon_engine::external::node::ExternalConfig;
use canon_engine::keys::{derived_key, SecretKey};
use canon_engine::net::peer;
use canon_engine::net::transport::BoxFuture;
use canon_engine::net::wire::{Request, Response};
use canon_engine::seams::Seams;
use canon_engine::storage::MemDisk;
use canon_engine::NodeId;
use rand::Rng;

use crate::cluster::{node_key, SimCluster};
pub use crate::host::SimExternal;
use crate::host::{ExternalSlot, LiveExternal, NetHost, Serves, SimClock};
use crate::net::{SimNet, SimTransport, PORT};
use crate::observer::SharedObserver;

impl Serves for SimExternal {
    fn answer(&self, from: NodeId, bytes: Vec<u8>) -> BoxFuture<'_, Vec<u8>> {
        Box::pin(async move { self.handle_request(from, &bytes).await })
    }
}

fn external_ip(e: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 2, (e + 1) as u8))
}

fn liar_ip(k: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 3, (k + 1) as u8))
}

/// How a lying source corrupts what it relays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tamper {
    /// A flipped signature byte.
    Signature,
    /// A wrong state root, re-signed with the proposer's (stolen) key: only re-execution
    /// can tell.
    StateRoot,
    /// A wrong parent hash, re-signed with the proposer's key.
    Parent,
    /// A transaction whose signature is not its sender's (an existing one's amount raised, or
    /// a forged one where the block had none), the transactions root recomputed and the
    /// header re-signed with the proposer's key: only checking every transaction's signature
    /// can tell, since consensus nodes trust their leader's admission check.
    Transaction,
}

impl SimCluster {
    /// Starts external node `e` (returned) downloading from `sources`.
    pub fn add_external(&mut self, sources: Vec<NodeId>) -> usize {
        let e = self.externals.len();
        let key = derived_key("canon-sim/external", e);
        let ip = external_ip(e);
        let member = self
            .net
            .add_member(key.node_id(), SocketAddr::new(ip, PORT));
        let mut cfg = ExternalConfig::new(
            key.clone(),
            sources,
            self.block_signers(),
            self.spec.clone(),
        );
        cfg.batch_blocks = 64;
        cfg.request_timeout_ms = 1_000;
        let disk = MemDisk::new();
        let live: LiveExternal = Arc::new(Mutex::new(None));
        let index = self.size() + e;
        let (d, l, n, o) = (
            disk.clone(),
            live.clone(),
            self.net.clone(),
            self.observer.clone(),
        );
        let handle = self
            .handle
            .create_node()
            .name(format!("x{e}"))
            .ip(ip)
            .init(move || {
                run_external(
                    index,
                    member,
                    cfg.clone(),
                    d.clone(),
                    n.clone(),
                    o.clone(),
                    l.clone(),
                )
            })
            .build();
        self.externals.push(ExternalSlot {
            key,
            disk,
            handle,
            live,
            up: true,
            member,
        });
        self.note(format!("start external x{e} (checker index {index})"));
        e
    }

    pub fn externals_len(&self) -> usize {
        self.externals.len()
    }

    pub fn external_id(&self, e: usize) -> NodeId {
        self.externals[e].key.node_id()
    }

    /// The external node's index in the network, for partitions.
    pub fn external_member(&self, e: usize) -> usize {
        self.externals[e].member
    }

    pub fn external(&self, e: usize) -> Option<Arc<SimExternal>> {
        let slot = self.externals.get(e)?;
        if !slot.up {
            return None;
        }
        canon_engine::sync::lock(&slot.live).clone()
    }

    pub fn external_height(&self, e: usize) -> u64 {
        self.external(e).map(|x| x.head().height).unwrap_or(0)
    }

    /// Crashes external `e`: synced data and a random prefix of buffered batches survive.
    pub fn crash_external(&mut self, e: usize) {
        if !self.externals[e].up {
            return;
        }
        self.handle.kill(self.externals[e].handle.id());
        let pending = self.externals[e].disk.pending_batches();
        let keep = if pending == 0 {
            0
        } else {
            self.rng.gen_range(0..=pending)
        };
        let lost = self.externals[e].disk.crash(keep);
        let slot = &mut self.externals[e];
        *canon_engine::sync::lock(&slot.live) = None;
        slot.up = false;
        self.note(format!(
            "fault: crash external x{e} ({lost} unsynced batches lost)"
        ));
    }

    pub fn restart_external(&mut self, e: usize) {
        if self.externals[e].up {
            return;
        }
        self.handle.restart(self.externals[e].handle.id());
        self.externals[e].up = true;
        self.note(format!("fault: restart external x{e}"));
    }

    /// Waits until external `e` has replayed `height`.
    pub async fn wait_for_external(
        &self,
        e: usize,
        height: u64,
        bound: Duration,
    ) -> Result<Duration, String> {
        let start = Instant::now();
        loop {
            if self.external_height(e) >= height {
                return Ok(start.elapsed());
            }
            if start.elapsed() > bound {
                return Err(format!(
                    "liveness: external x{e} did not reach height {height} within {:.1}s (at {})",
                    bound.as_secs_f64(),
                    self.external_height(e)
                ));
            }
            madsim::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every live external node's head is a canonical block.
    pub fn check_externals(&self) -> Result<(), String> {
        let obs = self.observer.lock();
        for e in 0..self.externals.len() {
            let Some(x) = self.external(e) else { continue };
            let head = x.head();
            if obs.checker.canonical_hash(head.height) != Some(head.hash) {
                return Err(format!(
                    "external x{e} head {} at {} is not canonical",
                    head.hash, head.height
                ));
            }
        }
        Ok(())
    }

    /// Starts a lying source: it relays consensus nodes' blocks, corrupted by `tamper`.
    /// Returns its id, to be listed among an external node's sources.
    pub fn add_liar(&mut self, tamper: Tamper) -> NodeId {
        let k = 0;
        let key = derived_key("canon-sim/liar", k);
        let ip = liar_ip(k);
        let member = self
            .net
            .add_member(key.node_id(), SocketAddr::new(ip, PORT));
        let keys: Vec<SecretKey> = (0..self.size()).map(node_key).collect();
        let (net, id, observer) = (self.net.clone(), key.node_id(), self.observer.clone());
        self.handle
            .create_node()
            .name("liar")
            .ip(ip)
            .init(move || {
                let (net, keys) = (net.clone(), keys.clone());
                let (observer, key) = (observer.clone(), key.clone());
                async move {
                    let host = NetHost {
                        me: member,
                        key: key.clone(),
                        net,
                        observer: observer.clone(),
                        node: None,
                    };
                    let listener = host.listen();
                    let liar = Arc::new(Liar {
                        transport: host.transport(),
                        keys,
                        tamper,
                    });
                    host.serve(listener, liar).await;
                }
            })
            .build();
        self.note(format!("start lying source ({tamper:?})"));
        id
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_external(
    index: usize,
    member: usize,
    cfg: ExternalConfig,
    disk: MemDisk,
    net: SimNet,
    observer: SharedObserver,
    live: LiveExternal,
) {
    let host = NetHost {
        me: member,
        key: cfg.key.clone(),
        net,
        observer: observer.clone(),
        node: Some(index),
    };
    let listener = host.listen();
    let seams = Seams {
        storage: Arc::new(disk),
        transport: host.transport(),
        // External nodes stamp nothing; the clock is never read.
        clock: Arc::new(SimClock {
            skew_ms: Arc::new(AtomicI64::new(0)),
        }),
        events: host.events(),
        verifier: Arc::new(canon_engine::chain::signatures::Sequential),
    };
    let node = loop {
        match SimExternal::start(cfg.clone(), seams.clone()).await {
            Ok(n) => break n,
            Err(e) => {
                observer
                    .lock()
                    .note(format!("external {index} failed to start: {e}"));
                madsim::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    *canon_engine::sync::lock(&live) = Some(node.clone());
    host.serve(listener, node).await;
}

/// Relays `GetHead`/`GetBlocks` to the consensus nodes and corrupts every block it hands out.
struct Liar {
    transport: Arc<SimTransport>,
    keys: Vec<SecretKey>,
    tamper: Tamper,
}

impl Liar {
    fn corrupt(&self, block: &mut canon_engine::chain::block::Block) {
        let reseal = |b: &mut canon_engine::chain::block::Block, keys: &[SecretKey]| {
            if let Some(k) = keys.iter().find(|k| k.node_id() == b.header.proposer) {
                if let Ok(h) = b.header.hash() {
                    b.signature = k.sign_hash(&h);
                }
            }
        };
        match self.tamper {
            Tamper::Signature => block.signature.0[5] ^= 0x40,
            Tamper::StateRoot => {
                block.header.state_root = keccak256(block.header.state_root);
                reseal(block, &self.keys);
            }
            Tamper::Parent => {
                block.header.parent_hash = B256::repeat_byte(0x11);
                reseal(block, &self.keys);
            }
            Tamper::Transaction => {
                match block.transactions.first_mut() {
                    Some(stx) => match &mut stx.tx.payload {
                        Payload::Transfer { amount, .. } => *amount = amount.saturating_add(1),
                        Payload::Data(d) => d.push(0),
                    },
                    None => {
                        // In the name of a funded account, signed by another key.
                        let victim = crate::cluster::account_key(0);
                        let forged = Transaction {
                            sender: victim.address(),
                            nonce: 0,
                            payload: Payload::Data(b"forged by a source".to_vec()),
                        }
                        .sign(&crate::cluster::pauper_key());
                        if let Ok(forged) = forged {
                            block.transactions.push(forged);
                        }
                    }
                }
                if let Ok(root) = transactions_root(&block.transactions) {
                    block.header.transactions_root = root;
                }
                reseal(block, &self.keys);
            }
        }
    }
}

impl Serves for Liar {
    fn answer(&self, _from: NodeId, bytes: Vec<u8>) -> BoxFuture<'_, Vec<u8>> {
        Box::pin(async move {
            let resp = match codec::decode::<Request>(&bytes) {
                Ok(req @ (Request::GetHead | Request::GetBlocks { .. })) => {
                    let mut answer = Response::Refused("no source reachable".into());
                    for k in &self.keys {
                        let wait = Duration::from_secs(3);
                        if let Ok(r) = peer::call(&*self.transport, k.node_id(), &req, wait).await {
                            answer = r;
                            break;
                        }
                    }
                    if let Response::Blocks(ref mut blocks) = answer {
                        for b in blocks.iter_mut() {
                            self.corrupt(b);
                        }
                    }
                    answer
                }
                _ => Response::Refused("not served".into()),
            };
            codec::encode(&resp).unwrap_or_default()
        })
    }
}

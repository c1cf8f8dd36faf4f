//! The simulated network: madsim endpoints carry the bytes; loss, extra delay and (one-way)
//! partitions are ours, because madsim's reliable channels never drop a message.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use canon_engine::net::transport::{BoxFuture, Transport, TransportError};
use canon_engine::NodeId;
use madsim::net::Endpoint;
use rand::Rng;

use crate::runtime::MadsimRuntime;
use openraft::AsyncRuntime;

/// Tag of request datagrams; responses use a random per-request tag.
pub const TAG_REQUEST: u64 = 1;
pub const PORT: u16 = 7000;

/// A request datagram: who claims to send it (the production transport authenticates this;
/// the simulator trusts it) and where to answer.
pub struct Envelope {
    pub from: NodeId,
    pub reply_tag: u64,
    pub payload: Vec<u8>,
}

#[derive(Default)]
struct Faults {
    /// Directed links (from, to) by node index that deliver nothing.
    blocked: BTreeSet<(usize, usize)>,
    loss_permille: u32,
    extra_delay_ms: (u64, u64),
}

struct NetState {
    faults: Faults,
    members: Vec<(NodeId, SocketAddr)>,
}

/// Shared network conditions and the address book, by node index.
#[derive(Clone)]
pub struct SimNet {
    state: Arc<Mutex<NetState>>,
}

pub enum Fate {
    Deliver(Duration),
    Lost,
}

impl SimNet {
    pub fn new(members: Vec<(NodeId, SocketAddr)>) -> SimNet {
        SimNet {
            state: Arc::new(Mutex::new(NetState {
                faults: Faults::default(),
                members,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, NetState> {
        canon_engine::sync::lock(&self.state)
    }

    pub fn add_member(&self, id: NodeId, addr: SocketAddr) -> usize {
        let mut s = self.lock();
        s.members.push((id, addr));
        s.members.len() - 1
    }

    pub fn lookup(&self, id: &NodeId) -> Option<(usize, SocketAddr)> {
        let s = self.lock();
        s.members
            .iter()
            .position(|(m, _)| m == id)
            .map(|i| (i, s.members[i].1))
    }

    pub fn block(&self, from: usize, to: usize) {
        self.lock().faults.blocked.insert((from, to));
    }

    /// Cuts `node` off in both directions from every other member.
    pub fn isolate(&self, node: usize) {
        let n = self.lock().members.len();
        for other in (0..n).filter(|o| *o != node) {
            self.block(node, other);
            self.block(other, node);
        }
    }

    pub fn set_loss_permille(&self, permille: u32) {
        self.lock().faults.loss_permille = permille.min(1000);
    }

    pub fn set_extra_delay_ms(&self, min: u64, max: u64) {
        self.lock().faults.extra_delay_ms = (min, max.max(min));
    }

    /// Removes every partition, loss and delay.
    pub fn heal(&self) {
        self.lock().faults = Faults::default();
    }

    pub fn is_faulty(&self) -> bool {
        let s = self.lock();
        !s.faults.blocked.is_empty() || s.faults.loss_permille > 0 || s.faults.extra_delay_ms.1 > 0
    }

    /// Decides one message's fate with the simulator's seeded RNG.
    pub fn fate(&self, from: usize, to: usize) -> Fate {
        let s = self.lock();
        if s.faults.blocked.contains(&(from, to)) {
            return Fate::Lost;
        }
        let mut rng = madsim::rand::thread_rng();
        if s.faults.loss_permille > 0 && rng.gen_range(0..1000) < s.faults.loss_permille {
            return Fate::Lost;
        }
        let (lo, hi) = s.faults.extra_delay_ms;
        let delay = if hi > 0 { rng.gen_range(lo..=hi) } else { 0 };
        Fate::Deliver(Duration::from_millis(delay))
    }
}

/// One node's side of the simulated network.
pub struct SimTransport {
    pub me: usize,
    pub id: NodeId,
    pub endpoint: Arc<Endpoint>,
    pub net: SimNet,
}

impl Transport for SimTransport {
    fn request(
        &self,
        to: NodeId,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Vec<u8>, TransportError>> {
        Box::pin(async move {
            let Some((to_idx, addr)) = self.net.lookup(&to) else {
                return Err(TransportError::Unreachable(to));
            };
            let reply_tag = madsim::rand::random::<u64>() | (1 << 63);
            let fate = self.net.fate(self.me, to_idx);
            let exchange = async {
                match fate {
                    Fate::Lost => std::future::pending::<()>().await,
                    Fate::Deliver(delay) => {
                        if !delay.is_zero() {
                            madsim::time::sleep(delay).await;
                        }
                        let env = Envelope {
                            from: self.id,
                            reply_tag,
                            payload,
                        };
                        self.endpoint
                            .send_to_raw(addr, TAG_REQUEST, Box::new(env))
                            .await
                            .map_err(|_| TransportError::Unreachable(to))?;
                    }
                }
                let (reply, _) = self
                    .endpoint
                    .recv_from_raw(reply_tag)
                    .await
                    .map_err(|e| TransportError::Other(e.to_string()))?;
                reply
                    .downcast::<Vec<u8>>()
                    .map(|b| *b)
                    .map_err(|_| TransportError::Other("reply of the wrong type".into()))
            };
            match MadsimRuntime::timeout(timeout, exchange).await {
                Ok(r) => r,
                Err(_) => Err(TransportError::Timeout(to, timeout)),
            }
        })
    }
}

//! What every simulated host shares, whatever runs on it (a consensus node, an external node,
//! a lying source): the event sink that reports to the run's observer, a wall clock of its
//! own, and the loop that answers requests from the simulated network.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use canon_engine::clock::Clock;
use canon_engine::events::{Event, EventSink};
use canon_engine::external::node::ExternalNode;
use canon_engine::keys::SecretKey;
use canon_engine::storage::MemDisk;
use canon_engine::NodeId;
use madsim::net::Endpoint;
use madsim::runtime::NodeHandle;

use crate::net::{Envelope, Fate, SimNet, TAG_REQUEST};
use crate::observer::SharedObserver;
use crate::runtime::MadsimRuntime;

pub type SimExternal = ExternalNode<MadsimRuntime>;
pub(crate) type LiveExternal = Arc<Mutex<Option<Arc<SimExternal>>>>;

/// An external node's host, as the cluster keeps it across crashes and restarts.
pub(crate) struct ExternalSlot {
    pub(crate) key: SecretKey,
    pub(crate) disk: MemDisk,
    pub(crate) handle: NodeHandle,
    pub(crate) live: LiveExternal,
    pub(crate) up: bool,
    /// Its index in the simulated network.
    pub(crate) member: usize,
}

pub(crate) struct SimEvents {
    pub(crate) node: usize,
    pub(crate) observer: SharedObserver,
}

impl EventSink for SimEvents {
    fn emit(&self, _node: &NodeId, event: Event) {
        self.observer.lock().event(self.node, &event);
    }
}

/// A node's wall clock: simulated time plus a skew that scenarios can jump.
pub(crate) struct SimClock {
    pub(crate) skew_ms: Arc<AtomicI64>,
}

impl Clock for SimClock {
    fn now_ms(&self) -> u64 {
        // madsim virtualises the system clock; skew makes each node's wall time its own.
        let real = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        (real + self.skew_ms.load(Ordering::Relaxed)).max(0) as u64
    }
}

/// Whatever answers requests on a simulated host: a consensus node, an external node, a liar.
pub trait Serves: Send + Sync + 'static {
    fn answer(
        &self,
        from: NodeId,
        bytes: Vec<u8>,
    ) -> canon_engine::net::transport::BoxFuture<'_, Vec<u8>>;
}

/// Answers requests until the host is killed. Each request runs in its own task so a slow
/// handler never blocks heartbeats. `me` is the host's index in the network.
pub(crate) async fn serve<S: Serves>(
    me: usize,
    node: Arc<S>,
    endpoint: Arc<Endpoint>,
    net: SimNet,
) {
    loop {
        let Ok((payload, src)) = endpoint.recv_from_raw(TAG_REQUEST).await else {
            return;
        };
        let Ok(env) = payload.downcast::<Envelope>() else {
            continue;
        };
        let from = net.lookup(&env.from).map(|(i, _)| i);
        let (node, endpoint, net) = (node.clone(), endpoint.clone(), net.clone());
        madsim::task::spawn(async move {
            let resp = node.answer(env.from, env.payload).await;
            let fate = match from {
                Some(f) => net.fate(me, f),
                None => Fate::Deliver(Duration::ZERO),
            };
            if let Fate::Deliver(delay) = fate {
                if !delay.is_zero() {
                    madsim::time::sleep(delay).await;
                }
                let _ = endpoint
                    .send_to_raw(src, env.reply_tag, Box::new(resp))
                    .await;
            }
        });
    }
}

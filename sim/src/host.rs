//! What every simulated host shares, whatever runs on it (a consensus node, an external node,
//! a lying source): the event sink that reports to the run's observer, a wall clock of its
//! own, and its place on the simulated network (the production p2p transport and listener).

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use canon_engine::clock::Clock;
use canon_engine::events::{Event, EventSink, NoEvents};
use canon_engine::external::node::ExternalNode;
use canon_engine::keys::SecretKey;
use canon_engine::net::p2p::{self, Delivery, DeliveryWatch, Handler, InboundLimits, Local};
use canon_engine::net::transport::BoxFuture;
use canon_engine::storage::MemDisk;
use canon_engine::NodeId;
use madsim::runtime::NodeHandle;
use tokio_util::sync::CancellationToken;

use crate::net::{SimListener, SimNet, SimTransport, CHAIN_ID};
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

/// One simulated host's place on the network: its index there, the key its connections
/// prove, and (for a node the checker watches) its index in the run.
#[derive(Clone)]
pub(crate) struct NetHost {
    pub(crate) me: usize,
    pub(crate) key: SecretKey,
    pub(crate) net: SimNet,
    pub(crate) observer: SharedObserver,
    /// The node's index in the run's events; `None` for a client or an attacker.
    pub(crate) node: Option<usize>,
}

impl NetHost {
    pub(crate) fn events(&self) -> Arc<dyn EventSink> {
        match self.node {
            Some(node) => Arc::new(SimEvents {
                node,
                observer: self.observer.clone(),
            }),
            None => Arc::new(NoEvents),
        }
    }

    fn watch(&self) -> Arc<dyn DeliveryWatch> {
        Arc::new(NetWatch { host: self.clone() })
    }

    /// This host's production p2p transport over the simulated network.
    pub(crate) fn transport(&self) -> Arc<SimTransport> {
        Arc::new(
            self.net
                .transport(self.me, &self.key, self.events(), Some(self.watch())),
        )
    }

    /// Binds the host's port: dialers queue from now on, as on a real listening socket.
    pub(crate) fn listen(&self) -> SimListener {
        self.net.listen(self.me, self.key.node_id())
    }

    /// Answers with the production p2p listener until the host is killed.
    pub(crate) async fn serve<S: Serves>(&self, listener: SimListener, node: Arc<S>) {
        let local = Local::new(
            self.key.clone(),
            CHAIN_ID,
            self.events(),
            Some(self.watch()),
        );
        p2p::serve::<MadsimRuntime, _>(
            listener,
            local,
            Arc::new(Answering { node }),
            InboundLimits::default(),
            CancellationToken::new(),
        )
        .await;
    }
}

struct Answering<S> {
    node: Arc<S>,
}

impl<S: Serves> Handler for Answering<S> {
    fn handle(self: Arc<Self>, delivery: Delivery, body: Vec<u8>) -> BoxFuture<'static, Vec<u8>> {
        Box::pin(async move { self.node.answer(delivery.from, body).await })
    }
}

/// The checker's eye on the p2p layer: every frame handed to the engine is judged against
/// what the network knows (who holds the key at the other end, what an attacker touched).
struct NetWatch {
    host: NetHost,
}

impl DeliveryWatch for NetWatch {
    fn delivered(&self, delivery: Delivery) {
        if let Some(why) = self.host.net.judge_delivery(self.host.me, delivery) {
            let mut o = self.host.observer.lock();
            let at = o.now();
            o.checker.fail(
                "no frame an attacker altered or forged reaches the engine",
                self.host.node.unwrap_or(self.host.me),
                None,
                at,
                why,
            );
        }
    }
}

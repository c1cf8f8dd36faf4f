//! The simulated network under the production p2p layer. Hosts dial and listen through it;
//! what they get are [`stream::SimStream`]s, ordered byte streams that behave as TCP does under
//! the faults drawn here: partitions (one-way or both), loss (a retransmission delay), extra
//! delay, resets, half-open connections, stalls, hosts that lose power, and an attacker on the
//! path who flips, replays, drops or splices segments. The dialer, the listener, the Noise
//! handshake, the channel, framing, reconnects and backoff above it are the node's own
//! (`canon_engine::net::p2p`).

pub mod stream;

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::Waker;
use std::time::{Duration, Instant};

use canon_engine::events::EventSink;
use canon_engine::keys::SecretKey;
use canon_engine::net::p2p::{
    Accepted, Connected, Delivery, DeliveryWatch, Dialer, Listener, Local, P2pTransport,
};
use canon_engine::net::transport::BoxFuture;
use canon_engine::NodeId;
use rand::Rng;
use tokio::sync::mpsc;

use crate::runtime::MadsimRuntime;
use stream::{ConnState, SharedConn, SimStream, Tamper, ACCEPTOR, DIALER};

pub const PORT: u16 = 7000;
/// The chain every simulated host runs (the cluster's genesis spec uses it too).
pub const CHAIN_ID: u64 = 7;
/// What one segment lost on the wire costs: TCP's retransmission timeout (Linux's minimum is
/// 200 ms), drawn up to twice that.
const RETRANSMIT_MS: (u64, u64) = (200, 400);
/// One-way latency of every segment, as madsim's own network draws it.
const LATENCY_MS: (u64, u64) = (1, 10);

pub type SimTransport = P2pTransport<MadsimRuntime, SimDialer>;

#[derive(Default)]
struct Faults {
    /// Directed links (from, to) by host index that deliver nothing until healed.
    blocked: BTreeSet<(usize, usize)>,
    loss_permille: u32,
    extra_delay_ms: (u64, u64),
}

struct NetState {
    faults: Faults,
    members: Vec<(NodeId, SocketAddr)>,
    /// Each listening host's queue of accepted connections and the id its key proves.
    listeners: BTreeMap<usize, (NodeId, mpsc::UnboundedSender<Accepted<SimStream>>)>,
    conns: BTreeMap<u64, Weak<Mutex<ConnState>>>,
    next_conn: u64,
    /// Hosts without power: their connections vanish without a word.
    unpowered: BTreeSet<usize>,
    /// Readers held by a partition, woken when the faults change.
    waiting: Vec<Waker>,
}

/// Shared network conditions, the address book and every connection, by host index.
#[derive(Clone)]
pub struct SimNet {
    state: Arc<Mutex<NetState>>,
}

impl SimNet {
    pub fn new(members: Vec<(NodeId, SocketAddr)>) -> SimNet {
        SimNet {
            state: Arc::new(Mutex::new(NetState {
                faults: Faults::default(),
                members,
                listeners: BTreeMap::new(),
                conns: BTreeMap::new(),
                next_conn: 0,
                unpowered: BTreeSet::new(),
                waiting: Vec::new(),
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

    fn host_at(&self, address: &str) -> Option<usize> {
        let addr: SocketAddr = address.parse().ok()?;
        self.lock().members.iter().position(|(_, a)| *a == addr)
    }

    /// Changes the faults and wakes every reader a partition held.
    fn change_faults(&self, f: impl FnOnce(&mut Faults)) {
        let waiting = {
            let mut s = self.lock();
            f(&mut s.faults);
            std::mem::take(&mut s.waiting)
        };
        for w in waiting {
            w.wake();
        }
    }

    pub fn block(&self, from: usize, to: usize) {
        self.change_faults(|f| {
            f.blocked.insert((from, to));
        });
    }

    /// Cuts `node` off in both directions from every other member.
    pub fn isolate(&self, node: usize) {
        let n = self.lock().members.len();
        self.change_faults(|f| {
            for other in (0..n).filter(|o| *o != node) {
                f.blocked.insert((node, other));
                f.blocked.insert((other, node));
            }
        });
    }

    pub fn set_loss_permille(&self, permille: u32) {
        self.change_faults(|f| f.loss_permille = permille.min(1000));
    }

    pub fn set_extra_delay_ms(&self, min: u64, max: u64) {
        self.change_faults(|f| f.extra_delay_ms = (min, max.max(min)));
    }

    /// Removes every partition, loss and delay.
    pub fn heal(&self) {
        self.change_faults(|f| *f = Faults::default());
    }

    pub fn is_faulty(&self) -> bool {
        let s = self.lock();
        !s.faults.blocked.is_empty() || s.faults.loss_permille > 0 || s.faults.extra_delay_ms.1 > 0
    }

    pub(crate) fn blocked(&self, from: usize, to: usize) -> bool {
        self.lock().faults.blocked.contains(&(from, to))
    }

    pub(crate) fn wake_on_fault_change(&self, waker: Waker) {
        self.lock().waiting.push(waker);
    }

    /// How long the next segment takes on any link (faults are network-wide; a partition is
    /// held at the reader), drawn with the simulator's RNG.
    pub(crate) fn segment_delay(&self) -> Duration {
        let (loss, (lo, hi)) = {
            let s = self.lock();
            (s.faults.loss_permille, s.faults.extra_delay_ms)
        };
        let mut rng = madsim::rand::thread_rng();
        let mut ms = rng.gen_range(LATENCY_MS.0..=LATENCY_MS.1);
        if hi > 0 {
            ms += rng.gen_range(lo..=hi);
        }
        if loss > 0 && rng.gen_range(0..1000) < loss {
            ms += rng.gen_range(RETRANSMIT_MS.0..=RETRANSMIT_MS.1);
        }
        Duration::from_millis(ms)
    }

    /// Host `host` loses power (`true`) or gets it back: while off, its connections vanish
    /// without a word; once back, a peer writing to one of them is reset.
    pub fn set_powered(&self, host: usize, powered: bool) {
        let mut s = self.lock();
        if powered {
            s.unpowered.remove(&host);
        } else {
            s.unpowered.insert(host);
        }
    }

    pub(crate) fn is_powered(&self, host: usize) -> bool {
        !self.lock().unpowered.contains(&host)
    }

    /// The open connections between hosts `a` and `b`, in either direction, oldest first.
    fn connections_between(&self, a: usize, b: usize) -> Vec<SharedConn> {
        let mut s = self.lock();
        s.conns.retain(|_, c| c.strong_count() > 0);
        s.conns
            .values()
            .filter_map(Weak::upgrade)
            .filter(|c| {
                let c = stream::lock(c);
                c.is_open() && (c.hosts == [a, b] || c.hosts == [b, a])
            })
            .collect()
    }

    /// Resets every connection between `a` and `b` (a middlebox, a keepalive that gave up).
    pub fn reset_between(&self, a: usize, b: usize) -> usize {
        let conns = self.connections_between(a, b);
        for c in &conns {
            stream::lock(c).reset();
        }
        conns.len()
    }

    /// Every connection between `a` and `b` goes silent both ways and nobody is told.
    pub fn half_open_between(&self, a: usize, b: usize) -> usize {
        let conns = self.connections_between(a, b);
        for c in &conns {
            stream::lock(c).black_hole();
        }
        conns.len()
    }

    /// `reader` stops reading what `writer` sends on their connections for `for_ms`.
    pub fn stall_reading(&self, reader: usize, writer: usize, for_ms: u64) -> usize {
        let until = Instant::now() + Duration::from_millis(for_ms);
        let conns = self.connections_between(reader, writer);
        for c in &conns {
            let mut c = stream::lock(c);
            let side = c.side_of(reader);
            c.stall(side, until);
        }
        conns.len()
    }

    /// An attacker on the path between `from` and `to` does `attack` to the next segment
    /// `from` writes on each of their connections. A splice uses segments recorded off another
    /// connection of `from`'s.
    pub fn tamper(&self, from: usize, to: usize, attack: Tamper) -> usize {
        let conns = self.connections_between(from, to);
        let foreign: Vec<Vec<u8>> = if attack == Tamper::Splice {
            let s = self.lock();
            s.conns
                .values()
                .filter_map(Weak::upgrade)
                .filter(|c| !conns.iter().any(|o| Arc::ptr_eq(o, c)))
                .filter_map(|c| {
                    let c = stream::lock(&c);
                    let side = c.hosts.iter().position(|h| *h == from)?;
                    Some(c.recorded(side))
                })
                .find(|r| r.len() > 3)
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        for c in &conns {
            let mut c = stream::lock(c);
            let side = c.side_of(from);
            c.tamper(side, attack, foreign.clone());
        }
        conns.len()
    }

    /// The first segments `from` sent on its most recent connection to `to` that got past the
    /// handshake (both of the dialer's messages and more): a recorded handshake, for an
    /// attacker to replay.
    pub fn recorded_dial(&self, from: usize, to: usize) -> Vec<Vec<u8>> {
        let s = self.lock();
        s.conns
            .values()
            .rev()
            .filter_map(Weak::upgrade)
            .find_map(|c| {
                let c = stream::lock(&c);
                let recorded = c.recorded(DIALER);
                (c.hosts == [from, to] && recorded.len() > 2).then_some(recorded)
            })
            .unwrap_or_default()
    }

    /// Starts listening on host `me`, whose key proves `id`. A restarted host listens anew.
    pub fn listen(&self, me: usize, id: NodeId) -> SimListener {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().listeners.insert(me, (id, tx));
        SimListener { incoming: rx }
    }

    /// Opens a connection from host `me` (whose key proves `id`) to `address`: waits for a
    /// path both ways and a powered host (SYNs are retried; the dialer's timeout ends it),
    /// then one round trip, then refused if nothing listens there.
    pub async fn connect(
        &self,
        me: usize,
        id: NodeId,
        address: &str,
    ) -> io::Result<Connected<SimStream>> {
        let Some(target) = self.host_at(address) else {
            return Err(io::ErrorKind::AddrNotAvailable.into());
        };
        while self.blocked(me, target) || self.blocked(target, me) || !self.is_powered(target) {
            madsim::time::sleep(Duration::from_millis(100)).await;
        }
        let rtt = self.segment_delay() + self.segment_delay();
        madsim::time::sleep(rtt).await;
        let conn = {
            let mut s = self.lock();
            let listener = s
                .listeners
                .get(&target)
                .filter(|(_, tx)| !tx.is_closed())
                .map(|(id, tx)| (*id, tx.clone()));
            let Some((target_id, tx)) = listener else {
                return Err(io::ErrorKind::ConnectionRefused.into());
            };
            s.next_conn += 1;
            let id_of_conn = s.next_conn;
            let conn = Arc::new(Mutex::new(ConnState::new(
                id_of_conn,
                [me, target],
                [id, target_id],
            )));
            s.conns.insert(id_of_conn, Arc::downgrade(&conn));
            let remote = s
                .members
                .get(me)
                .map(|(_, a)| a.to_string())
                .unwrap_or_default();
            let accepted = Accepted {
                stream: SimStream::new(conn.clone(), ACCEPTOR, self.clone()),
                remote,
                connection: id_of_conn,
            };
            if tx.send(accepted).is_err() {
                return Err(io::ErrorKind::ConnectionRefused.into());
            }
            conn
        };
        let connection = stream::lock(&conn).id;
        Ok(Connected {
            stream: SimStream::new(conn, DIALER, self.clone()),
            connection,
        })
    }

    /// Why a frame delivered to the engine on host `host` breaks the network's promise, if it
    /// does: it was read after bytes an attacker altered or injected, or it claims a sender
    /// other than the one whose key dialed (or answered) the connection.
    pub fn judge_delivery(&self, host: usize, delivery: Delivery) -> Option<String> {
        let conn = self.lock().conns.get(&delivery.connection)?.upgrade()?;
        let c = stream::lock(&conn);
        let side = c.hosts.iter().position(|h| *h == host)?;
        if c.tainted(side) {
            return Some(format!(
                "connection {} delivered a frame after bytes an attacker altered or injected",
                c.id
            ));
        }
        let sender = c.ids[1 - side];
        (delivery.from != sender).then(|| {
            format!(
                "connection {} delivered a frame as from {}, but its other end holds the key of {}",
                c.id, delivery.from, sender
            )
        })
    }

    /// This host's p2p transport: dials with `key`, reports to `events`, watched by `watch`.
    pub fn transport(
        &self,
        me: usize,
        key: &SecretKey,
        events: Arc<dyn EventSink>,
        watch: Option<Arc<dyn DeliveryWatch>>,
    ) -> SimTransport {
        let local = Local::new(key.clone(), CHAIN_ID, events, watch);
        P2pTransport::new(
            local,
            SimDialer {
                me,
                id: key.node_id(),
                net: self.clone(),
            },
        )
    }
}

/// Dials from one host through the simulated network, to any member by id.
pub struct SimDialer {
    me: usize,
    id: NodeId,
    net: SimNet,
}

impl Dialer for SimDialer {
    type Stream = SimStream;
    fn address_of(&self, peer: &NodeId) -> Option<String> {
        self.net.lookup(peer).map(|(_, a)| a.to_string())
    }
    fn connect<'a>(&'a self, address: &'a str) -> BoxFuture<'a, io::Result<Connected<SimStream>>> {
        Box::pin(self.net.connect(self.me, self.id, address))
    }
}

/// A host's listening socket: the connections dialed to it, in order.
pub struct SimListener {
    incoming: mpsc::UnboundedReceiver<Accepted<SimStream>>,
}

impl Listener for SimListener {
    type Stream = SimStream;
    fn accept(&mut self) -> BoxFuture<'_, io::Result<Accepted<SimStream>>> {
        Box::pin(async move {
            self.incoming
                .recv()
                .await
                .ok_or_else(|| io::ErrorKind::NotConnected.into())
        })
    }
}

#[cfg(test)]
mod tests {
    //! The checker's network rule against planted violations: a delivery on a connection after
    //! its reader consumed tampered bytes, and one under an id the other end does not hold.
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn member(i: u8) -> (SecretKey, SocketAddr) {
        (
            canon_engine::keys::derived_key("net-test", i as usize),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 9, 0, i)), PORT),
        )
    }

    #[test]
    fn deliveries_after_tampered_bytes_or_under_a_foreign_id_are_violations() {
        let rt = madsim::runtime::Runtime::with_seed_and_config(1, madsim::Config::default());
        rt.block_on(async {
            let ((ka, aa), (kb, ab)) = (member(1), member(2));
            let (a, b) = (ka.node_id(), kb.node_id());
            let net = SimNet::new(vec![(a, aa), (b, ab)]);
            let mut listener = net.listen(1, b);
            let dialed = net.connect(0, a, &ab.to_string()).await.expect("connect");
            let accepted = listener.accept().await.expect("accept");
            let (mut d, mut r) = (dialed.stream, accepted.stream);
            let connection = dialed.connection;
            let judge = |from| net.judge_delivery(1, Delivery { from, connection });

            let mut buf = [0u8; 5];
            d.write_all(b"hello").await.expect("write");
            r.read_exact(&mut buf).await.expect("read");
            assert_eq!(&buf, b"hello");
            assert_eq!(
                judge(a),
                None,
                "genuine bytes from the dialer's id are fine"
            );
            assert!(
                judge(b).is_some(),
                "an id the dialer does not hold is a violation"
            );

            assert_eq!(net.tamper(0, 1, Tamper::FlipBit), 1);
            d.write_all(b"world").await.expect("write");
            r.read_exact(&mut buf).await.expect("read");
            assert_ne!(&buf, b"world", "the attacker altered the segment");
            assert!(
                judge(a).is_some(),
                "anything delivered after tampered bytes is a violation"
            );
        });
    }

    #[test]
    fn a_stream_keeps_order_blocks_a_writer_that_fills_the_window_and_ends_with_eof() {
        let rt = madsim::runtime::Runtime::with_seed_and_config(2, madsim::Config::default());
        rt.block_on(async {
            let ((ka, aa), (kb, ab)) = (member(1), member(2));
            let net = SimNet::new(vec![(ka.node_id(), aa), (kb.node_id(), ab)]);
            net.set_extra_delay_ms(0, 40);
            let mut listener = net.listen(1, kb.node_id());
            let dialed = net
                .connect(0, ka.node_id(), &ab.to_string())
                .await
                .expect("connect");
            let mut r = listener.accept().await.expect("accept").stream;
            let mut d = dialed.stream;
            let writer = madsim::task::spawn(async move {
                for i in 0..200u32 {
                    d.write_all(&i.to_be_bytes().repeat(1024))
                        .await
                        .expect("write");
                }
                d.shutdown().await.expect("shutdown");
            });
            // Nobody reads for a while: the writer fills the window and waits.
            madsim::time::sleep(Duration::from_secs(1)).await;
            assert!(!writer.is_finished(), "a full window must block the writer");
            let mut all = Vec::new();
            r.read_to_end(&mut all).await.expect("read to EOF");
            assert_eq!(all.len(), 200 * 4 * 1024);
            for (i, chunk) in all.chunks(4 * 1024).enumerate() {
                assert!(
                    chunk.chunks(4).all(|w| w == (i as u32).to_be_bytes()),
                    "chunk {i} out of order"
                );
            }
        });
    }
}

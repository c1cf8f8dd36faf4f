//! Outbound side: one authenticated connection per peer, dialed on first use, requests
//! multiplexed by id. A peer that cannot be reached is retried with exponential backoff; until
//! then requests to it fail at once as unreachable, which is what Raft expects of a down peer.
//! A link on which a request timed out and nothing at all was heard for [`SILENT_LINK`] is
//! taken for dead (a half-open connection: the peer's machine lost power, a middlebox forgot
//! the flow) and closed, so the next request dials afresh.

use std::collections::BTreeMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::{self, Either};
use openraft::{AsyncRuntime, Instant};
use rand::RngCore;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::channel::Channel;
use super::frame::Frame;
use super::handshake::{dial_over, HandshakeError};
use super::{address_label, ConnectionFault, Delivery, Dialer, Local};
use crate::ids::NodeId;
use crate::net::transport::{BoxFuture, Transport, TransportError};
use crate::sync::lock;

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
const OUTBOX_FRAMES: usize = 1024;
/// How long a link may stay silent, with a request timing out on it, before it is closed.
pub const SILENT_LINK: Duration = Duration::from_secs(2);

type Pending = Arc<Mutex<BTreeMap<u64, oneshot::Sender<Vec<u8>>>>>;

/// An open, authenticated connection to one peer.
struct Link<I> {
    outbox: mpsc::Sender<Frame>,
    pending: Pending,
    /// Cancelled when the link closes, by either task or by a silent-link verdict.
    closed: CancellationToken,
    /// When a frame last arrived (or the link opened).
    heard: Mutex<I>,
}

impl<I: Instant> Link<I> {
    /// `peer`: whom the engine asked for (an address's label for a peer dialed by address);
    /// `proven`: the id the peer proved in the handshake, which every response comes from.
    fn spawn<R, S>(
        peer: NodeId,
        proven: NodeId,
        remote: String,
        connection: u64,
        conn: Channel<S>,
        local: Local,
    ) -> Arc<Self>
    where
        R: AsyncRuntime<Instant = I>,
        S: super::Stream,
    {
        let (sink, mut stream) = conn.split();
        let (outbox, rx) = mpsc::channel::<Frame>(OUTBOX_FRAMES);
        let link = Arc::new(Link {
            outbox,
            pending: Arc::default(),
            closed: CancellationToken::new(),
            heard: Mutex::new(I::now()),
        });
        let reader = link.clone();
        let _detached = R::spawn(async move {
            loop {
                let received = match future::select(
                    Box::pin(stream.recv()),
                    Box::pin(reader.closed.cancelled()),
                )
                .await
                {
                    Either::Left((r, _)) => r,
                    Either::Right(_) => break,
                };
                match received {
                    Ok(Frame::Response { id, body }) => {
                        *lock(&reader.heard) = I::now();
                        local.delivered(Delivery {
                            from: proven,
                            connection,
                        });
                        if let Some(tx) = lock(&reader.pending).remove(&id) {
                            let _ = tx.send(body);
                        }
                    }
                    Ok(Frame::Request { .. }) => {
                        local.refused(
                            Some(peer),
                            &remote,
                            ConnectionFault::Malformed,
                            "a request on a link that only carries responses".into(),
                        );
                        break;
                    }
                    Err(e) => {
                        if let Some(fault) = ConnectionFault::of_frame(&e) {
                            local.refused(Some(peer), &remote, fault, e.to_string());
                        } else {
                            tracing::debug!(%peer, "link closed: {e}");
                        }
                        break;
                    }
                }
            }
            reader.closed.cancel();
            // Dropping the senders fails every request still waiting on this link.
            lock(&reader.pending).clear();
        });
        let _detached = R::spawn(sink.drain(rx, link.closed.clone()));
        link
    }

    fn is_open(&self) -> bool {
        !self.closed.is_cancelled()
    }

    fn silent_for(&self) -> Duration {
        lock(&self.heard).elapsed()
    }
}

struct PeerState<I> {
    link: Option<Arc<Link<I>>>,
    failures: u32,
    retry_at: Option<I>,
}

impl<I> Default for PeerState<I> {
    fn default() -> Self {
        PeerState {
            link: None,
            failures: 0,
            retry_at: None,
        }
    }
}

struct Peer<I> {
    address: String,
    /// The id the peer must prove; `None` for a peer known by address alone, whose id
    /// ([`address_label`]) only names the address.
    expected: Option<NodeId>,
    state: tokio::sync::Mutex<PeerState<I>>,
}

impl<I> Peer<I> {
    fn new(id: NodeId, address: String) -> Peer<I> {
        Peer {
            expected: (id != address_label(&address)).then_some(id),
            address,
            state: tokio::sync::Mutex::new(PeerState::default()),
        }
    }
}

/// Removes a request's waiter however the request ends (answered, timed out, dropped).
struct Waiting {
    pending: Pending,
    id: u64,
}

impl Drop for Waiting {
    fn drop(&mut self) {
        lock(&self.pending).remove(&self.id);
    }
}

/// The [`Transport`] over authenticated p2p links, on runtime `R`, dialing with `D`.
pub struct P2pTransport<R: AsyncRuntime, D: Dialer> {
    local: Local,
    dialer: D,
    /// Every peer dialed so far, created on first use from the dialer's addresses.
    peers: Mutex<BTreeMap<NodeId, Arc<Peer<R::Instant>>>>,
    next_request: AtomicU64,
    _runtime: PhantomData<R>,
}

impl<R: AsyncRuntime, D: Dialer> P2pTransport<R, D> {
    pub fn new(local: Local, dialer: D) -> Self {
        P2pTransport {
            local,
            dialer,
            peers: Mutex::default(),
            next_request: AtomicU64::new(1),
            _runtime: PhantomData,
        }
    }

    fn peer(&self, id: NodeId) -> Option<Arc<Peer<R::Instant>>> {
        if id == self.local.key.node_id() {
            return None;
        }
        let mut peers = lock(&self.peers);
        if let Some(p) = peers.get(&id) {
            return Some(p.clone());
        }
        let peer = Arc::new(Peer::new(id, self.dialer.address_of(&id)?));
        peers.insert(id, peer.clone());
        Some(peer)
    }

    /// Peers with an open, authenticated outbound connection.
    pub fn connected_peers(&self) -> Vec<NodeId> {
        lock(&self.peers)
            .iter()
            .filter(|(_, p)| {
                p.state
                    .try_lock()
                    .map(|s| s.link.as_ref().is_some_and(|l| l.is_open()))
                    // Locked: a dial or a reuse check is under way; count it as not yet there.
                    .unwrap_or(false)
            })
            .map(|(id, _)| *id)
            .collect()
    }

    async fn link(&self, to: NodeId) -> Result<Arc<Link<R::Instant>>, TransportError> {
        let peer = self.peer(to).ok_or(TransportError::Unreachable(to))?;
        let mut st = peer.state.lock().await;
        if let Some(link) = &st.link {
            if link.is_open() {
                return Ok(link.clone());
            }
            st.link = None;
        }
        if st.retry_at.is_some_and(|t| R::Instant::now() < t) {
            return Err(TransportError::Unreachable(to));
        }
        let mut seed = [0u8; 32];
        R::thread_rng().fill_bytes(&mut seed);
        let attempt = async {
            let connected = self
                .dialer
                .connect(&peer.address)
                .await
                .map_err(DialError::Connect)?;
            let identity = self.local.identity(seed).map_err(DialError::Handshake)?;
            dial_over(
                connected.stream,
                identity,
                peer.expected,
                self.local.chain_id,
                seed,
            )
            .await
            .map(|(proven, conn)| (proven, connected.connection, conn))
            .map_err(DialError::Handshake)
        };
        let outcome = match R::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(r) => r,
            Err(_) => Err(DialError::TimedOut),
        };
        match outcome {
            Ok((proven, connection, conn)) => {
                if peer.expected.is_none() {
                    tracing::debug!(address = %peer.address, %proven, "connected by address");
                }
                if st.failures > 0 {
                    tracing::info!(peer = %to, "connected after {} failed attempts", st.failures);
                }
                st.failures = 0;
                st.retry_at = None;
                let link = Link::spawn::<R, _>(
                    to,
                    proven,
                    peer.address.clone(),
                    connection,
                    conn,
                    self.local.clone(),
                );
                st.link = Some(link.clone());
                Ok(link)
            }
            Err(e) => {
                if let DialError::Handshake(h) = &e {
                    if let Some(fault) = ConnectionFault::of_handshake(h) {
                        self.local
                            .refused(Some(to), &peer.address, fault, h.to_string());
                    }
                }
                st.failures = st.failures.saturating_add(1);
                let backoff = BACKOFF_MIN
                    .saturating_mul(1u32 << st.failures.min(16).saturating_sub(1))
                    .min(BACKOFF_MAX);
                st.retry_at = Some(R::Instant::now() + backoff);
                if st.failures == 1 || st.failures % 32 == 0 {
                    tracing::info!(peer = %to, address = %peer.address, "unreachable ({e}); retrying in {backoff:?}");
                }
                Err(TransportError::Unreachable(to))
            }
        }
    }

    async fn exchange(
        &self,
        to: NodeId,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        // One deadline for the whole request, dialing included.
        let deadline = R::Instant::now() + timeout;
        let link = match R::timeout_at(deadline, self.link(to)).await {
            Ok(link) => link?,
            Err(_) => return Err(TransportError::Timeout(to, timeout)),
        };
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&link.pending).insert(id, tx);
        let _waiting = Waiting {
            pending: link.pending.clone(),
            id,
        };
        let exchange = async {
            if link
                .outbox
                .send(Frame::Request { id, body: payload })
                .await
                .is_err()
            {
                return Err(TransportError::Unreachable(to));
            }
            rx.await.map_err(|_| TransportError::Unreachable(to))
        };
        match R::timeout_at(deadline, exchange).await {
            Ok(r) => r,
            Err(_) => {
                if link.silent_for() >= SILENT_LINK.max(timeout) {
                    tracing::info!(peer = %to, "closing a silent link; the next request dials again");
                    link.closed.cancel();
                }
                Err(TransportError::Timeout(to, timeout))
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum DialError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("handshake: {0}")]
    Handshake(HandshakeError),
    #[error("connect and handshake timed out")]
    TimedOut,
}

impl<R: AsyncRuntime, D: Dialer> Transport for P2pTransport<R, D> {
    fn request(
        &self,
        to: NodeId,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Vec<u8>, TransportError>> {
        Box::pin(self.exchange(to, payload, timeout))
    }
}

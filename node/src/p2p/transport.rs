//! Outbound side: one authenticated connection per peer, dialed on first use, requests
//! multiplexed by id. A peer that cannot be reached is retried with exponential backoff; until
//! then requests to it fail at once as unreachable, which is what Raft expects of a down peer.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use canon_engine::keys::SecretKey;
use canon_engine::net::transport::{BoxFuture, Transport, TransportError};
use canon_engine::sync::lock;
use canon_engine::NodeId;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

pub use crate::config::address_label;

use super::frame::{Frame, FrameError};
use super::handshake::{dial, Conn};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
const OUTBOX_FRAMES: usize = 1024;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Vec<u8>>>>>;

/// An open, authenticated connection to one peer.
struct Link {
    outbox: mpsc::Sender<Frame>,
    pending: Pending,
    closed: Arc<AtomicBool>,
}

impl Link {
    fn spawn(peer: NodeId, conn: Conn) -> Arc<Link> {
        let (mut sink, mut stream) = conn.split();
        let (outbox, mut rx) = mpsc::channel::<Frame>(OUTBOX_FRAMES);
        let pending: Pending = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        let (p, c) = (pending.clone(), closed.clone());
        tokio::spawn(async move {
            loop {
                match stream.recv().await {
                    Ok(Frame::Response { id, body }) => {
                        if let Some(tx) = lock(&p).remove(&id) {
                            let _ = tx.send(body);
                        }
                    }
                    Ok(other) => {
                        tracing::warn!(%peer, "closing link: unexpected frame {other:?}");
                        break;
                    }
                    Err(FrameError::Closed) => break,
                    Err(e @ FrameError::Unauthentic(_)) => {
                        tracing::warn!(%peer, "closing link: {e}");
                        break;
                    }
                    Err(e) => {
                        tracing::debug!(%peer, "closing link: {e}");
                        break;
                    }
                }
            }
            c.store(true, Ordering::SeqCst);
            // Dropping the senders fails every request still waiting on this link.
            lock(&p).clear();
        });
        let c = closed.clone();
        tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                if sink.send(&frame).await.is_err() {
                    break;
                }
            }
            c.store(true, Ordering::SeqCst);
        });
        Arc::new(Link {
            outbox,
            pending,
            closed,
        })
    }

    fn is_open(&self) -> bool {
        !self.closed.load(Ordering::SeqCst)
    }
}

#[derive(Default)]
struct PeerState {
    link: Option<Arc<Link>>,
    failures: u32,
    retry_at: Option<Instant>,
}

struct Peer {
    address: String,
    /// The id the peer must prove; `None` for a peer known by address alone, whose id
    /// ([`address_label`]) only names the address.
    expected: Option<NodeId>,
    state: tokio::sync::Mutex<PeerState>,
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

pub struct TcpTransport {
    key: SecretKey,
    chain_id: u64,
    peers: BTreeMap<NodeId, Peer>,
    next_request: AtomicU64,
}

impl TcpTransport {
    /// `addresses`: every peer this node may dial, from `network_boot_nodes`. A peer whose id is
    /// the [`address_label`] of its address is dialed by address and may prove any id.
    pub fn new(key: SecretKey, chain_id: u64, addresses: &[(NodeId, String)]) -> TcpTransport {
        let me = key.node_id();
        let peers = addresses
            .iter()
            .filter(|(id, _)| *id != me)
            .map(|(id, address)| {
                (
                    *id,
                    Peer {
                        address: address.clone(),
                        expected: (*id != address_label(address)).then_some(*id),
                        state: tokio::sync::Mutex::new(PeerState::default()),
                    },
                )
            })
            .collect();
        TcpTransport {
            key,
            chain_id,
            peers,
            next_request: AtomicU64::new(1),
        }
    }

    /// Peers with an open, authenticated outbound connection.
    pub fn connected_peers(&self) -> Vec<NodeId> {
        self.peers
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

    async fn link(&self, to: NodeId) -> Result<Arc<Link>, TransportError> {
        let peer = self.peers.get(&to).ok_or(TransportError::Unreachable(to))?;
        let mut st = peer.state.lock().await;
        if let Some(link) = &st.link {
            if link.is_open() {
                return Ok(link.clone());
            }
            st.link = None;
        }
        if st.retry_at.is_some_and(|t| Instant::now() < t) {
            return Err(TransportError::Unreachable(to));
        }
        let attempt = async {
            let stream = TcpStream::connect(&peer.address)
                .await
                .map_err(|e| format!("connect {}: {e}", peer.address))?;
            dial(stream, &self.key, peer.expected, self.chain_id)
                .await
                .map_err(|e| format!("handshake with {}: {e}", peer.address))
        };
        let outcome = match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(r) => r,
            Err(_) => Err(format!("connect {}: timed out", peer.address)),
        };
        match outcome {
            Ok((proven, conn)) => {
                if peer.expected.is_none() {
                    tracing::debug!(address = %peer.address, %proven, "connected by address");
                }
                if st.failures > 0 {
                    tracing::info!(peer = %to, "connected after {} failed attempts", st.failures);
                }
                st.failures = 0;
                st.retry_at = None;
                let link = Link::spawn(to, conn);
                st.link = Some(link.clone());
                Ok(link)
            }
            Err(e) => {
                st.failures = st.failures.saturating_add(1);
                let backoff = BACKOFF_MIN
                    .saturating_mul(1u32 << st.failures.min(16).saturating_sub(1))
                    .min(BACKOFF_MAX);
                st.retry_at = Some(Instant::now() + backoff);
                if st.failures == 1 || st.failures % 32 == 0 {
                    tracing::info!(peer = %to, "unreachable ({e}); retrying in {backoff:?}");
                }
                Err(TransportError::Unreachable(to))
            }
        }
    }

    async fn exchange(&self, to: NodeId, payload: Vec<u8>) -> Result<Vec<u8>, TransportError> {
        let link = self.link(to).await?;
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&link.pending).insert(id, tx);
        let _waiting = Waiting {
            pending: link.pending.clone(),
            id,
        };
        if link
            .outbox
            .send(Frame::Request { id, body: payload })
            .await
            .is_err()
        {
            return Err(TransportError::Unreachable(to));
        }
        rx.await.map_err(|_| TransportError::Unreachable(to))
    }
}

impl Transport for TcpTransport {
    fn request(
        &self,
        to: NodeId,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Vec<u8>, TransportError>> {
        Box::pin(async move {
            match tokio::time::timeout(timeout, self.exchange(to, payload)).await {
                Ok(r) => r,
                Err(_) => Err(TransportError::Timeout(to, timeout)),
            }
        })
    }
}

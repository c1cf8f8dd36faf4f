//! Inbound side: authenticate each connection, then answer its requests through the
//! [`Handler`]. A connection that fails authentication, breaks the protocol or trickles a frame
//! is closed and reported; nothing it carried after the failure reaches the engine. What one
//! peer, or anyone who can connect, may cost is bounded ([`InboundLimits`]).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::{self, Either};
use openraft::AsyncRuntime;
use rand::RngCore;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use super::channel::Channel;
use super::frame::Frame;
use super::handshake::accept_over;
use super::{Accepted, ConnectionFault, Delivery, Listener, Local, Stream};
use crate::ids::NodeId;
use crate::net::transport::BoxFuture;
use crate::sync::lock;

/// Answers one request from an authenticated peer. `handle` is called in the connection's
/// reading order, before the next frame is read (the moment the request reaches the engine);
/// the answer it returns is awaited in a task of its own.
pub trait Handler: Send + Sync + 'static {
    fn handle(self: Arc<Self>, delivery: Delivery, body: Vec<u8>) -> BoxFuture<'static, Vec<u8>>;
}

/// What anyone who can reach the port may cost this node.
#[derive(Clone, Copy, Debug)]
pub struct InboundLimits {
    /// Connections still in their handshake; more are closed at once.
    pub handshaking: usize,
    /// Connections still in their handshake from one address (IP); more are closed at once, so
    /// one host opening connections and saying nothing cannot lock the others out.
    pub handshaking_per_address: usize,
    /// A handshake must finish within this.
    pub handshake_timeout: Duration,
    /// Authenticated connections in total; more are closed at once.
    pub connections: usize,
    /// Authenticated connections per peer id; a newer one closes the oldest (a peer that
    /// redials after a half-open connection must not be locked out by its own ghost).
    pub per_peer: usize,
    /// Once a frame's first piece arrived, the rest must within this.
    pub frame_deadline: Duration,
    /// Requests answered concurrently per connection; more wait (back-pressure on the peer).
    pub in_flight: usize,
}

/// Once a frame began, it must complete within this (16 MiB at 0.5 MiB/s).
pub const FRAME_DEADLINE: Duration = Duration::from_secs(32);

impl Default for InboundLimits {
    fn default() -> Self {
        InboundLimits {
            handshaking: 32,
            handshaking_per_address: 4,
            handshake_timeout: Duration::from_secs(5),
            connections: 128,
            per_peer: 4,
            frame_deadline: FRAME_DEADLINE,
            in_flight: 256,
        }
    }
}

/// The authenticated connections, by peer, oldest first.
#[derive(Default)]
struct Connections {
    by_peer: BTreeMap<NodeId, VecDeque<(u64, CancellationToken)>>,
    total: usize,
}

impl Connections {
    /// Admits `connection` from `peer`, closing that peer's oldest beyond the limit; `false`
    /// when the node holds its total already.
    fn admit(
        &mut self,
        peer: NodeId,
        connection: u64,
        limits: &InboundLimits,
    ) -> Option<CancellationToken> {
        if self.total >= limits.connections {
            return None;
        }
        let token = CancellationToken::new();
        let queue = self.by_peer.entry(peer).or_default();
        queue.push_back((connection, token.clone()));
        self.total += 1;
        while queue.len() > limits.per_peer {
            if let Some((_, oldest)) = queue.pop_front() {
                oldest.cancel();
                self.total -= 1;
            }
        }
        Some(token)
    }

    fn remove(&mut self, peer: NodeId, connection: u64) {
        if let Some(queue) = self.by_peer.get_mut(&peer) {
            if let Some(at) = queue.iter().position(|(c, _)| *c == connection) {
                queue.remove(at);
                self.total -= 1;
            }
            if queue.is_empty() {
                self.by_peer.remove(&peer);
            }
        }
    }
}

struct Shared {
    local: Local,
    handler: Arc<dyn Handler>,
    limits: InboundLimits,
    handshaking: Arc<Semaphore>,
    /// Handshakes under way by remote address.
    handshaking_from: Arc<Mutex<BTreeMap<String, usize>>>,
    connections: Mutex<Connections>,
}

/// Accepts until `stop` is cancelled.
pub async fn serve<R: AsyncRuntime, L: Listener>(
    mut listener: L,
    local: Local,
    handler: Arc<dyn Handler>,
    limits: InboundLimits,
    stop: CancellationToken,
) {
    let shared = Arc::new(Shared {
        local,
        handler,
        limits,
        handshaking: Arc::new(Semaphore::new(limits.handshaking)),
        handshaking_from: Arc::default(),
        connections: Mutex::default(),
    });
    loop {
        let accepted = match future::select(Box::pin(stop.cancelled()), listener.accept()).await {
            Either::Left(_) => return,
            Either::Right((Ok(accepted), _)) => accepted,
            Either::Right((Err(e), _)) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::warn!("accept failed: {e}");
                R::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = shared.handshaking.clone().try_acquire_owned() else {
            shared.local.refused(
                None,
                &accepted.remote,
                ConnectionFault::OverLimit,
                format!("{} handshakes already under way", limits.handshaking),
            );
            continue;
        };
        let Some(from_address) = crate::net::address_slot::AddressSlot::take(
            &shared.handshaking_from,
            &accepted.remote,
            limits.handshaking_per_address,
        ) else {
            shared.local.refused(
                None,
                &accepted.remote,
                ConnectionFault::OverLimit,
                format!(
                    "{} handshakes from this address already under way",
                    limits.handshaking_per_address
                ),
            );
            continue;
        };
        let mut seed = [0u8; 32];
        R::thread_rng().fill_bytes(&mut seed);
        let (shared, stop) = (shared.clone(), stop.clone());
        let _detached = R::spawn(async move {
            let Accepted {
                stream,
                remote,
                connection,
            } = accepted;
            let local = &shared.local;
            let handshake =
                async { accept_over(stream, local.identity(seed)?, local.chain_id, seed).await };
            let (peer, conn) = match R::timeout(shared.limits.handshake_timeout, handshake).await {
                Ok(Ok(x)) => x,
                Ok(Err(e)) => {
                    match ConnectionFault::of_handshake(&e) {
                        Some(fault) => shared.local.refused(None, &remote, fault, e.to_string()),
                        None => tracing::debug!(%remote, "handshake ended: {e}"),
                    }
                    return;
                }
                Err(_) => {
                    shared.local.refused(
                        None,
                        &remote,
                        ConnectionFault::HandshakeTimedOut,
                        format!("no handshake within {:?}", shared.limits.handshake_timeout),
                    );
                    return;
                }
            };
            drop((permit, from_address));
            let admitted = lock(&shared.connections).admit(peer, connection, &shared.limits);
            let Some(closed) = admitted else {
                shared.local.refused(
                    Some(peer),
                    &remote,
                    ConnectionFault::OverLimit,
                    format!("{} connections already open", shared.limits.connections),
                );
                return;
            };
            tracing::debug!(%remote, %peer, "peer connected");
            let served = answer::<R, _>(
                &shared,
                Delivery {
                    from: peer,
                    connection,
                },
                &remote,
                conn,
            );
            match future::select(
                Box::pin(served),
                Box::pin(future::select(
                    Box::pin(stop.cancelled()),
                    Box::pin(closed.cancelled()),
                )),
            )
            .await
            {
                Either::Left(((), _)) => {}
                Either::Right(_) => {
                    tracing::debug!(%remote, %peer, "connection closed by this node")
                }
            }
            lock(&shared.connections).remove(peer, connection);
        });
    }
}

/// Reads requests until the connection ends or breaks, answering each in a task of its own.
async fn answer<R: AsyncRuntime, S: Stream>(
    shared: &Shared,
    delivery: Delivery,
    remote: &str,
    conn: Channel<S>,
) {
    let peer = delivery.from;
    let (sink, mut stream) = conn.split();
    let (outbox, rx) = mpsc::channel::<Frame>(shared.limits.in_flight);
    let writer_done = CancellationToken::new();
    let _detached = R::spawn(sink.drain(rx, writer_done.clone()));
    let slots = Arc::new(Semaphore::new(shared.limits.in_flight));
    let deadline = shared.limits.frame_deadline;
    loop {
        match stream.recv_bounded(|| R::sleep(deadline)).await {
            Ok(Frame::Request { id, body }) => {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    break;
                };
                // Handed over in reading order, before the next frame is read.
                shared.local.delivered(delivery);
                let reply = shared.handler.clone().handle(delivery, body);
                let outbox = outbox.clone();
                let _detached = R::spawn(async move {
                    let body = reply.await;
                    let _ = outbox.send(Frame::Response { id, body }).await;
                    drop(permit);
                });
            }
            Ok(Frame::Response { .. }) => {
                shared.local.refused(
                    Some(peer),
                    remote,
                    ConnectionFault::Malformed,
                    "a response on a connection that only carries requests".into(),
                );
                break;
            }
            Err(e) => {
                match ConnectionFault::of_frame(&e) {
                    Some(fault) => shared
                        .local
                        .refused(Some(peer), remote, fault, e.to_string()),
                    None => tracing::debug!(%remote, %peer, "connection ended: {e}"),
                }
                break;
            }
        }
    }
    drop(outbox);
    writer_done.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId([n; 64])
    }

    #[test]
    fn a_peers_newest_connection_closes_its_oldest_and_the_total_is_a_cap() {
        let limits = InboundLimits {
            connections: 3,
            per_peer: 2,
            ..InboundLimits::default()
        };
        let mut c = Connections::default();
        let first = c.admit(id(1), 1, &limits).expect("room");
        let second = c.admit(id(1), 2, &limits).expect("room");
        let third = c.admit(id(1), 3, &limits).expect("room");
        assert!(
            first.is_cancelled(),
            "the oldest of the peer's three closes"
        );
        assert!(!second.is_cancelled() && !third.is_cancelled());
        assert_eq!(c.total, 2);
        c.admit(id(2), 4, &limits).expect("room for another peer");
        assert!(c.admit(id(3), 5, &limits).is_none(), "the total is full");
        c.remove(id(1), 2);
        c.remove(id(1), 1); // already closed and gone: no double count
        assert_eq!(c.total, 2);
        assert!(c.admit(id(3), 6, &limits).is_some());
    }

    #[test]
    fn handshakes_per_address_are_counted_by_host_and_given_back() {
        let counts = Arc::default();
        let a: Vec<_> = (0..2)
            .filter_map(|p| {
                crate::net::address_slot::AddressSlot::take(&counts, &format!("10.0.0.1:{p}"), 2)
            })
            .collect();
        assert_eq!(a.len(), 2);
        assert!(
            crate::net::address_slot::AddressSlot::take(&counts, "10.0.0.1:9", 2).is_none(),
            "same host, other port"
        );
        assert!(
            crate::net::address_slot::AddressSlot::take(&counts, "10.0.0.2:9", 2).is_some(),
            "another host"
        );
        drop(a);
        assert!(
            crate::net::address_slot::AddressSlot::take(&counts, "10.0.0.1:9", 2).is_some(),
            "given back"
        );
        assert!(
            lock(&counts).is_empty(),
            "every slot given back: {:?}",
            lock(&counts)
        );
    }
}

//! The p2p layer, as it runs in production and in the simulator alike: a Noise XX handshake in
//! which both sides prove they hold the secret key of the node id they claim ([`handshake`]),
//! then multiplexed request/response frames, every one encrypted and authenticated
//! ([`channel`]). It is generic over the byte stream underneath and over the async runtime:
//! the production shell hands it TCP sockets and tokio, the simulator its own faulty streams
//! and madsim, so the dialer, the listener, the handshake, framing, reconnects and backoff that
//! ship are the ones every seeded scenario runs.
//!
//! Each side dials its own connection to a peer and sends its requests on it; the accepting
//! side only answers. Raft decides who may do what: the transport authenticates the sender's
//! id, and the engine refuses Raft traffic from ids outside `consensus_peer_ids`.

pub mod channel;
pub mod frame;
pub mod handshake;
pub mod inbound;
pub mod outbound;

use std::io;
use std::sync::{Arc, OnceLock};

use tokio::io::{AsyncRead, AsyncWrite};

use crate::events::{Event, EventSink};
use crate::ids::NodeId;
use crate::keys::SecretKey;
use crate::net::transport::BoxFuture;

pub use inbound::{serve, Handler, InboundLimits};
pub use outbound::P2pTransport;

/// A byte stream the p2p layer can run on: a TCP socket, or a simulated connection.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// Opens connections (`TcpStream::connect` in production, the simulated network's connect)
/// and knows where peers are.
pub trait Dialer: Send + Sync + 'static {
    type Stream: Stream;
    /// Where `peer` listens, if this node may dial it at all.
    fn address_of(&self, peer: &NodeId) -> Option<String>;
    fn connect<'a>(
        &'a self,
        address: &'a str,
    ) -> BoxFuture<'a, io::Result<Connected<Self::Stream>>>;
}

/// A connection a [`Dialer`] opened, before any authentication.
pub struct Connected<S> {
    pub stream: S,
    /// Unique among this node's outbound connections; reported with every response.
    pub connection: u64,
}

/// This node's side of every connection: who it is, on which chain, where it reports.
#[derive(Clone)]
pub struct Local {
    pub key: SecretKey,
    pub chain_id: u64,
    pub events: Arc<dyn EventSink>,
    /// Sees every frame handed to the engine; the simulator's checker, `None` in production.
    pub watch: Option<Arc<dyn DeliveryWatch>>,
    /// Its handshake identity, made at its first handshake and shared by its clones.
    identity: Arc<OnceLock<handshake::Identity>>,
}

/// A frame as it reaches the engine: who proved to have sent it, on which connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub from: NodeId,
    pub connection: u64,
}

/// Sees every frame the p2p layer hands to the engine (requests on inbound connections,
/// responses on outbound ones), at the moment it does, in reading order.
pub trait DeliveryWatch: Send + Sync + 'static {
    fn delivered(&self, delivery: Delivery);
}

impl Local {
    pub fn new(
        key: SecretKey,
        chain_id: u64,
        events: Arc<dyn EventSink>,
        watch: Option<Arc<dyn DeliveryWatch>>,
    ) -> Local {
        Local {
            key,
            chain_id,
            events,
            watch,
            identity: Arc::default(),
        }
    }

    /// The handshake identity, made from `seed` the first time (later seeds are not used).
    fn identity(&self, seed: [u8; 32]) -> Result<&handshake::Identity, handshake::HandshakeError> {
        if let Some(made) = self.identity.get() {
            return Ok(made);
        }
        let made = handshake::Identity::new(&self.key, self.chain_id, seed)?;
        // Another handshake may have made one meanwhile: the first one stays.
        Ok(self.identity.get_or_init(|| made))
    }

    fn delivered(&self, delivery: Delivery) {
        if let Some(w) = &self.watch {
            w.delivered(delivery);
        }
    }

    /// Reported as an event only: an outsider can cause this a thousand times a second, so the
    /// node's event log says it once per address and fault and then summarises.
    fn refused(&self, peer: Option<NodeId>, remote: &str, fault: ConnectionFault, detail: String) {
        self.events.emit(
            &self.key.node_id(),
            Event::ConnectionRefused {
                peer,
                remote: remote.to_string(),
                fault,
                detail,
            },
        );
    }
}

/// One connection a listener accepted, before any authentication.
pub struct Accepted<S> {
    pub stream: S,
    /// Where it came from, for logs and events: the remote socket address.
    pub remote: String,
    /// Unique among this listener's connections; handed to the [`Handler`] with every request.
    pub connection: u64,
}

/// Accepts connections: a `TcpListener` in production, the simulated host's listener.
pub trait Listener: Send + 'static {
    type Stream: Stream;
    fn accept(&mut self) -> BoxFuture<'_, io::Result<Accepted<Self::Stream>>>;
}

/// The id under which the engine addresses a peer known only by its address (a group member,
/// whose network identity is new at every start). Derived from the address by hashing, it is no
/// public key anyone holds, so it can never be confused with a real peer's id.
pub fn address_label(address: &str) -> NodeId {
    let mut out = [0u8; 64];
    out[..32]
        .copy_from_slice(&alloy_primitives::keccak256(format!("canon/p2p/address/{address}")).0);
    out[32..].copy_from_slice(
        &alloy_primitives::keccak256(format!("canon/p2p/address-tail/{address}")).0,
    );
    NodeId(out)
}

/// Why a connection was closed against the peer's will, as events and metrics name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConnectionFault {
    /// The handshake failed: a bad identity proof, the wrong chain or protocol, a Noise error
    /// (an altered or replayed handshake message).
    Handshake,
    /// The peer proved an id other than the one dialed.
    WrongPeer,
    /// No handshake within the limit.
    HandshakeTimedOut,
    /// A frame failed authentication: altered, replayed, reordered or spliced.
    Unauthentic,
    /// A frame that authenticated but breaks the protocol (too large, undecodable, the wrong
    /// direction).
    Malformed,
    /// A frame began and did not complete within its deadline.
    TooSlow,
    /// The node holds as many connections (or handshakes) as it allows.
    OverLimit,
}

impl ConnectionFault {
    /// The fault a handshake error shows, or `None` for a connection that merely ended.
    pub fn of_handshake(e: &handshake::HandshakeError) -> Option<ConnectionFault> {
        use handshake::HandshakeError as H;
        match e {
            H::Closed | H::Io(_) => None,
            H::WrongPeer(_) => Some(ConnectionFault::WrongPeer),
            H::Noise(_) | H::Protocol(_) => Some(ConnectionFault::Handshake),
        }
    }

    /// The fault a frame error shows, or `None` for a connection that merely ended.
    pub fn of_frame(e: &frame::FrameError) -> Option<ConnectionFault> {
        use frame::FrameError as F;
        match e {
            F::Closed | F::Io(_) => None,
            F::Unauthentic(_) => Some(ConnectionFault::Unauthentic),
            F::Malformed(_) => Some(ConnectionFault::Malformed),
            F::TooSlow => Some(ConnectionFault::TooSlow),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionFault::Handshake => "handshake",
            ConnectionFault::WrongPeer => "wrong_peer",
            ConnectionFault::HandshakeTimedOut => "handshake_timed_out",
            ConnectionFault::Unauthentic => "unauthentic",
            ConnectionFault::Malformed => "malformed",
            ConnectionFault::TooSlow => "too_slow",
            ConnectionFault::OverLimit => "over_limit",
        }
    }
}

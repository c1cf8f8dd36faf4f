//! The p2p layer on real sockets: the engine's [`canon_engine::net::p2p`] (the Noise channel,
//! the dialer with reconnects and backoff, the bounded listener), run on tokio over TCP. The
//! simulator runs the same code over its own streams.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use canon_engine::net::p2p::{Accepted, Connected, Dialer, Listener, P2pTransport};
use canon_engine::net::transport::BoxFuture;
use canon_engine::NodeId;
use openraft::TokioRuntime;
use tokio::net::TcpStream;

pub use canon_engine::net::p2p::{address_label, frame, handshake, Delivery, Handler, Local};

/// Dials the configured peers over TCP, with Nagle off: frames are small and latency matters
/// more than packet count.
pub struct TcpDialer {
    addresses: BTreeMap<NodeId, String>,
    learned: LearnedAddresses,
    dialed: AtomicU64,
}

/// Where members added after genesis listen, as Raft's membership recorded it when a leader
/// added them (`canon-node admin add-learner`); set once the node runs.
pub type LearnedAddresses = Arc<OnceLock<Box<dyn Fn(&NodeId) -> Option<String> + Send + Sync>>>;

impl TcpDialer {
    /// `addresses`: every peer this node may dial, from `network_boot_nodes`. A peer whose id is
    /// the [`address_label`] of its address is dialed by address and may prove any id.
    pub fn new(addresses: &[(NodeId, String)]) -> TcpDialer {
        TcpDialer {
            addresses: addresses.iter().cloned().collect(),
            learned: LearnedAddresses::default(),
            dialed: AtomicU64::new(0),
        }
    }

    /// Where to set how members added later are found.
    pub fn learned(&self) -> LearnedAddresses {
        self.learned.clone()
    }
}

impl Dialer for TcpDialer {
    type Stream = TcpStream;
    fn address_of(&self, peer: &NodeId) -> Option<String> {
        self.addresses
            .get(peer)
            .cloned()
            .or_else(|| self.learned.get().and_then(|find| find(peer)))
    }
    fn connect<'a>(&'a self, address: &'a str) -> BoxFuture<'a, io::Result<Connected<TcpStream>>> {
        Box::pin(async move {
            let stream = TcpStream::connect(address).await?;
            let _ = stream.set_nodelay(true);
            Ok(Connected {
                stream,
                connection: self.dialed.fetch_add(1, Ordering::Relaxed) + 1,
            })
        })
    }
}

/// A bound TCP listener, numbering the connections it accepts.
pub struct TcpAcceptor {
    listener: tokio::net::TcpListener,
    accepted: u64,
}

impl TcpAcceptor {
    pub fn new(listener: tokio::net::TcpListener) -> TcpAcceptor {
        TcpAcceptor {
            listener,
            accepted: 0,
        }
    }
}

impl Listener for TcpAcceptor {
    type Stream = TcpStream;
    fn accept(&mut self) -> BoxFuture<'_, io::Result<Accepted<TcpStream>>> {
        Box::pin(async move {
            let (stream, remote) = self.listener.accept().await?;
            let _ = stream.set_nodelay(true);
            self.accepted += 1;
            Ok(Accepted {
                stream,
                remote: remote.to_string(),
                connection: self.accepted,
            })
        })
    }
}

/// The production transport: authenticated p2p links over TCP on tokio.
pub type TcpTransport = P2pTransport<TokioRuntime, TcpDialer>;

//! The p2p layer: a Noise XX handshake over TCP in which both sides prove they hold the secret
//! key of the node id they claim ([`handshake`]), then multiplexed request/response frames,
//! every one encrypted and authenticated ([`channel`]).
//!
//! Each side dials its own connection to a peer and sends its requests on it; the accepting
//! side only answers. Raft decides who may do what: the transport authenticates the sender's
//! id, and the engine refuses Raft traffic from ids outside `consensus_peer_ids`.

pub mod channel;
pub mod frame;
pub mod handshake;
pub mod listener;
pub mod transport;

pub use listener::{serve, Handler};
pub use transport::{address_label, TcpTransport};

//! The p2p layer: length-delimited frames over TCP, a handshake in which both sides prove they
//! hold the secret key of the node id they claim, then multiplexed request/response.
//!
//! Each side dials its own connection to a peer and sends its requests on it; the accepting
//! side only answers. Raft decides who may do what: the transport authenticates the sender's
//! id, and the engine refuses Raft traffic from ids outside `consensus_peer_ids`.

pub mod frame;
pub mod handshake;
pub mod listener;
pub mod transport;

pub use listener::{serve, Handler};
pub use transport::{address_label, TcpTransport};

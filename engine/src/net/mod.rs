//! The network as the engine sees it: the transport seam, the wire messages and typed calls,
//! and the p2p layer (authenticated, encrypted links over any byte stream) that carries them.
pub mod address_slot;
pub mod p2p;
pub mod peer;
pub mod transport;
pub mod wire;

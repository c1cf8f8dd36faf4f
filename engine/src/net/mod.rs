//! The network as the engine sees it: the transport seam, the wire messages and typed calls.
pub mod peer;
pub mod transport;
pub mod wire;

//! The transport seam: one request, one response, between node ids. madsim's network in the
//! simulator (with our own loss, delay and partitions), authenticated TCP in production.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::ids::NodeId;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// No route or connection to the peer; Raft backs off.
    #[error("peer {0:?} is unreachable")]
    Unreachable(NodeId),
    /// Sent, but no response within the deadline: lost, slow, or the peer is down.
    #[error("no response from {0:?} within {1:?}")]
    Timeout(NodeId, Duration),
    #[error("transport: {0}")]
    Other(String),
}

pub trait Transport: Send + Sync + 'static {
    /// Sends `payload` to `to` and waits at most `timeout` for its response.
    fn request(
        &self,
        to: NodeId,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Vec<u8>, TransportError>>;
}

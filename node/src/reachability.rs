//! The transport as the node uses it, watched: every request's outcome feeds
//! [`Reachability`], whose reports become one warning when a peer goes quiet, a summary every
//! minute while it stays quiet, and a line when it answers again; and two metrics
//! (`canon_peers_unreachable`, `canon_peer_request_failures_total`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use canon_engine::net::transport::{BoxFuture, Transport, TransportError};
use canon_engine::policy::reachability::{Reachability, Report};
use canon_engine::NodeId;

use crate::metrics::Metrics;

pub struct WatchedTransport {
    inner: Arc<dyn Transport>,
    started: Instant,
    reach: Mutex<Reachability>,
    metrics: Arc<Metrics>,
}

impl WatchedTransport {
    pub fn new(inner: Arc<dyn Transport>, metrics: Arc<Metrics>) -> WatchedTransport {
        WatchedTransport {
            inner,
            started: Instant::now(),
            reach: Mutex::new(Reachability::default()),
            metrics,
        }
    }

    fn observe(&self, to: NodeId, outcome: &Result<Vec<u8>, TransportError>) {
        let now = self.started.elapsed().as_millis() as u64;
        let (report, unreachable) = {
            let mut reach = canon_engine::sync::lock(&self.reach);
            let report = match outcome {
                Ok(_) => reach.answered(now, to),
                // An answer that came back as an error still came back.
                Err(TransportError::Other(_)) => reach.answered(now, to),
                Err(TransportError::Unreachable(_) | TransportError::Timeout(..)) => {
                    self.metrics.peer_request_failures.inc();
                    reach.failed(now, to)
                }
            };
            (report, reach.unreachable())
        };
        self.metrics.peers_unreachable.set(unreachable as i64);
        match (report, outcome) {
            (Some(Report::Unreachable { peer }), Err(e)) => {
                tracing::warn!(peer = %peer.short(), error = %e, "peer unreachable; retrying, summarised every minute")
            }
            (
                Some(Report::StillUnreachable {
                    peer,
                    failures,
                    down_ms,
                }),
                _,
            ) => tracing::warn!(
                peer = %peer.short(), failed_requests = failures,
                down_for = ?Duration::from_millis(down_ms), "peer still unreachable"
            ),
            (
                Some(Report::Reachable {
                    peer,
                    failures,
                    down_ms,
                }),
                _,
            ) => tracing::info!(
                peer = %peer.short(), failed_requests = failures,
                down_for = ?Duration::from_millis(down_ms), "peer reachable again"
            ),
            _ => {}
        }
    }
}

impl Transport for WatchedTransport {
    fn request(
        &self,
        to: NodeId,
        payload: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<Vec<u8>, TransportError>> {
        Box::pin(async move {
            let outcome = self.inner.request(to, payload, timeout).await;
            self.observe(to, &outcome);
            outcome
        })
    }
}

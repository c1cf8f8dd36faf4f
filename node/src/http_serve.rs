//! Serving the status and metrics routers with bounds an outsider cannot stretch: at most
//! `http_max_connections` connections at once (the next ones wait in the kernel's backlog), at
//! most `http_max_connections_per_ip` from one address (more are closed at once, so one host's
//! slow clients cannot take every slot), and a connection that takes longer than
//! `http_header_timeout_ms` to send a request's headers (slowloris), or sits idle that long
//! between requests, is closed. `axum::serve` has none of these.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use canon_engine::net::address_slot::{AddressCounts, AddressSlot};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Bounds of one HTTP server.
#[derive(Clone, Copy, Debug)]
pub struct HttpBounds {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub header_timeout: Duration,
}

impl HttpBounds {
    pub fn of(s: &crate::config::Settings) -> HttpBounds {
        HttpBounds {
            max_connections: s.http_max_connections.max(1),
            max_connections_per_ip: s.http_max_connections_per_ip.max(1),
            header_timeout: Duration::from_millis(s.http_header_timeout_ms.max(1)),
        }
    }
}

/// Serves `app` on `listener` until `stop`, within `bounds`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    bounds: HttpBounds,
    stop: CancellationToken,
    what: &'static str,
) {
    serve_with(listener, move |_| app.clone(), bounds, stop, what).await
}

/// Serves on `listener` until `stop`, within `bounds`, with the service `make` gives for each
/// connection's remote address.
pub async fn serve_with<S, B>(
    listener: TcpListener,
    make: impl Fn(IpAddr) -> S,
    bounds: HttpBounds,
    stop: CancellationToken,
    what: &'static str,
) where
    S: tower::Service<hyper::Request<hyper::body::Incoming>, Response = hyper::Response<B>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let slots = Arc::new(Semaphore::new(bounds.max_connections));
    let per_ip: AddressCounts = Arc::default();
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => return,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
        };
        let (stream, remote) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!("{what} server: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let held = AddressSlot::take(&per_ip, &remote.to_string(), bounds.max_connections_per_ip);
        let Some(held) = held else {
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(make(remote.ip()));
        let stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let _held = held;
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(bounds.header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
                }
            }
        });
    }
}

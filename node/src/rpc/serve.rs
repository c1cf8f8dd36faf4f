//! The JSON-RPC server on our own accept loop ([`crate::http_serve`]), so that every bound
//! knows the client's address: connections in all and per address, a time limit on sending a
//! request's headers, and requests per second per address (over it: HTTP 429). jsonrpsee's
//! own loop sees no address past accepting the connection. jsonrpsee still bounds bodies and
//! batches.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use canon_engine::policy::rate_limit::{RateLimit, MAX_CLIENTS};
use jsonrpsee::server::{
    stop_channel, BatchRequestConfig, HttpBody, HttpRequest, HttpResponse, Methods, Server,
    ServerConfig, ServerHandle,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{module, ClientAuthorized};
use crate::context::NodeContext;
use crate::http_serve::{serve_with, HttpBounds};

/// What clients can make the RPC server hold, from the `rpc_max_*` settings.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: u32,
    pub max_connections_per_ip: usize,
    pub max_request_bytes: u32,
    pub max_batch_calls: u32,
    pub first_request_timeout_ms: u64,
    pub max_requests_per_second_per_ip: u64,
}

impl Limits {
    pub fn of(s: &crate::config::Settings) -> Limits {
        Limits {
            max_connections: s.rpc_max_connections,
            max_connections_per_ip: s.rpc_max_connections_per_ip,
            max_request_bytes: s.rpc_max_request_bytes,
            max_batch_calls: s.rpc_max_batch_calls,
            first_request_timeout_ms: s.rpc_first_request_timeout_ms,
            max_requests_per_second_per_ip: s.rpc_max_requests_per_second_per_ip,
        }
    }
}

/// Binds and starts the RPC server; stop it through the handle.
pub async fn start(
    addr: std::net::SocketAddr,
    limits: Limits,
    ctx: Arc<NodeContext>,
) -> Result<ServerHandle, String> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot bind {addr}: {e}"))?;
    let methods: Methods = module(ctx.clone())?.into();
    let token = ctx.client_token.clone();
    // Marks each call that presented the token; the methods refuse the rest.
    let mark = tower::ServiceBuilder::new().map_request(move |mut req: HttpRequest<_>| {
        let header = req.headers().get("authorization").map(|h| h.as_bytes());
        if token.as_ref().is_none_or(|t| t.admits(header)) {
            req.extensions_mut().insert(ClientAuthorized);
        }
        req
    });
    let config = ServerConfig::builder()
        .max_connections(limits.max_connections)
        .max_request_body_size(limits.max_request_bytes)
        .set_batch_request_config(BatchRequestConfig::Limit(limits.max_batch_calls))
        .build();
    let builder = Server::builder()
        .set_config(config)
        .set_http_middleware(mark)
        .to_service_builder();
    let (stop_handle, server_handle) = stop_channel();
    let stop = CancellationToken::new();
    {
        let (stop, stopping) = (stop.clone(), stop_handle.clone());
        tokio::spawn(async move {
            stopping.shutdown().await;
            stop.cancel();
        });
    }
    let rate = limits.max_requests_per_second_per_ip.max(1);
    let limiter = Arc::new(Mutex::new(RateLimit::new(rate, rate, MAX_CLIENTS)));
    let started = Instant::now();
    let bounds = HttpBounds {
        max_connections: limits.max_connections.max(1) as usize,
        max_connections_per_ip: limits.max_connections_per_ip.max(1),
        header_timeout: Duration::from_millis(limits.first_request_timeout_ms.max(1)),
    };
    tokio::spawn(serve_with(
        listener,
        move |ip| RateLimited {
            inner: builder.clone().build(methods.clone(), stop_handle.clone()),
            ip,
            limiter: limiter.clone(),
            started,
        },
        bounds,
        stop,
        "rpc",
    ));
    Ok(server_handle)
}

/// One connection's service: a request over its address's rate is answered 429 and never
/// reaches a method.
#[derive(Clone)]
struct RateLimited<S> {
    inner: S,
    ip: IpAddr,
    limiter: Arc<Mutex<RateLimit<IpAddr>>>,
    started: Instant,
}

impl<S, B> tower::Service<HttpRequest<B>> for RateLimited<S>
where
    S: tower::Service<HttpRequest<B>, Response = HttpResponse<HttpBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = HttpResponse<HttpBody>;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: HttpRequest<B>) -> Self::Future {
        let now = self.started.elapsed().as_millis() as u64;
        let allowed = canon_engine::sync::lock(&self.limiter).allow(now, self.ip);
        if !allowed {
            let mut refused = HttpResponse::new(HttpBody::from(
                "too many requests from this address (rpc_max_requests_per_second_per_ip)",
            ));
            *refused.status_mut() = hyper::StatusCode::TOO_MANY_REQUESTS;
            return Box::pin(std::future::ready(Ok(refused)));
        }
        Box::pin(self.inner.call(req))
    }
}

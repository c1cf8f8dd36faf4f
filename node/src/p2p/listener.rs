//! Inbound side: authenticate each connection, then answer its requests through the
//! [`Handler`]. A malformed frame closes that connection and nothing else.

use std::sync::Arc;
use std::time::Duration;

use canon_engine::keys::SecretKey;
use canon_engine::net::transport::BoxFuture;
use canon_engine::NodeId;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

use super::frame::{Frame, FrameError};
use super::handshake::accept;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests answered concurrently per connection; more wait (back-pressure on the peer).
const IN_FLIGHT_PER_CONNECTION: usize = 256;

/// Answers one request from an authenticated peer.
pub trait Handler: Send + Sync + 'static {
    fn handle(&self, from: NodeId, body: Vec<u8>) -> BoxFuture<'_, Vec<u8>>;
}

/// Accepts until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    key: SecretKey,
    chain_id: u64,
    handler: Arc<dyn Handler>,
    stop: CancellationToken,
) {
    loop {
        let (stream, addr) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let (key, handler, stop) = (key.clone(), handler.clone(), stop.clone());
        tokio::spawn(async move {
            let (peer, conn) =
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, accept(stream, &key, chain_id)).await
                {
                    Ok(Ok(x)) => x,
                    Ok(Err(e)) => {
                        tracing::info!(%addr, "handshake failed: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::info!(%addr, "handshake timed out");
                        return;
                    }
                };
            tracing::debug!(%addr, %peer, "peer connected");
            tokio::select! {
                _ = stop.cancelled() => {}
                reason = answer(peer, conn, handler) => {
                    tracing::debug!(%addr, %peer, "connection closed: {reason}");
                }
            }
        });
    }
}

async fn answer(peer: NodeId, conn: super::handshake::Conn, handler: Arc<dyn Handler>) -> String {
    let (mut sink, mut stream) = conn.split();
    let (outbox, mut rx) = mpsc::channel::<Frame>(IN_FLIGHT_PER_CONNECTION);
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if sink.send(&frame).await.is_err() {
                break;
            }
        }
    });
    let slots = Arc::new(Semaphore::new(IN_FLIGHT_PER_CONNECTION));
    let reason = loop {
        match stream.recv().await {
            Ok(Frame::Request { id, body }) => {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    break "shutting down".to_string();
                };
                let (handler, outbox) = (handler.clone(), outbox.clone());
                tokio::spawn(async move {
                    let body = handler.handle(peer, body).await;
                    let _ = outbox.send(Frame::Response { id, body }).await;
                    drop(permit);
                });
            }
            Ok(other) => {
                tracing::warn!(%peer, "closing connection: unexpected frame {other:?}");
                break "unexpected frame".to_string();
            }
            Err(FrameError::Closed) => break "closed by peer".to_string(),
            Err(e @ (FrameError::Malformed(_) | FrameError::Unauthentic(_))) => {
                tracing::warn!(%peer, "closing connection: {e}");
                break e.to_string();
            }
            Err(e) => break e.to_string(),
        }
    };
    drop(outbox);
    writer.abort();
    reason
}

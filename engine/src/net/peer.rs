//! One call to a peer: encode the request, send it through the transport, decode the answer,
//! and turn a refusal into an error. Written once; each caller matches the answer it expects.

use std::time::Duration;

use crate::codec;
use crate::ids::NodeId;
use crate::net::transport::{Transport, TransportError};
use crate::net::wire::{Request, Response};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("cannot encode the request: {0}")]
    Encode(String),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("undecodable answer from {peer}: {why}")]
    Decode { peer: NodeId, why: String },
    #[error("{peer} refused: {why}")]
    Refused { peer: NodeId, why: String },
    #[error("{peer} answered a different request")]
    Unexpected { peer: NodeId },
}

/// [`call`], expecting one kind of answer: `expect` takes what the caller wants out of the
/// response, and anything else is [`CallError::Unexpected`], written here once.
pub async fn ask<T>(
    transport: &dyn Transport,
    peer: NodeId,
    req: &Request,
    timeout: Duration,
    expect: impl FnOnce(Response) -> Option<T>,
) -> Result<T, CallError> {
    let resp = call(transport, peer, req, timeout).await?;
    expect(resp).ok_or(CallError::Unexpected { peer })
}

/// Sends `req` to `peer` and waits at most `timeout` for its answer.
pub async fn call(
    transport: &dyn Transport,
    peer: NodeId,
    req: &Request,
    timeout: Duration,
) -> Result<Response, CallError> {
    let bytes = codec::encode(req).map_err(|e| CallError::Encode(e.to_string()))?;
    let answer = transport.request(peer, bytes, timeout).await?;
    match codec::decode::<Response>(&answer) {
        Ok(Response::Refused(why)) => Err(CallError::Refused { peer, why }),
        Ok(resp) => Ok(resp),
        Err(e) => Err(CallError::Decode {
            peer,
            why: e.to_string(),
        }),
    }
}
/// Serves one request from a peer: decodes it, lets `answer` answer it, encodes the answer.
/// Undecodable bytes get a refusal that says why, never a panic. Every role's
/// `handle_request` is this with its own `answer`.
pub async fn serve<F, Fut>(bytes: &[u8], answer: F) -> Vec<u8>
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let resp = match codec::decode::<Request>(bytes) {
        Err(e) => Response::Refused(format!("undecodable request: {e}")),
        Ok(req) => answer(req).await,
    };
    codec::encode(&resp).unwrap_or_default()
}

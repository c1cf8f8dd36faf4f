//! Frames on the wire: a 4-byte big-endian length, then one bincode-encoded [`Frame`].

use bytes::{Bytes, BytesMut};
use canon_engine::codec;
use canon_engine::ids::Sig65;
use canon_engine::NodeId;
use futures::{Sink, SinkExt, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio_util::codec::LengthDelimitedCodec;

/// Bumped on any incompatible change to frames or the handshake.
pub const PROTOCOL_VERSION: u32 = 1;
/// The engine's codec refuses anything larger; a bigger length prefix closes the connection.
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
pub enum Frame {
    /// Dialer to acceptor: who I claim to be, and a fresh challenge for you.
    Hello {
        protocol: u32,
        chain_id: u64,
        id: NodeId,
        nonce: [u8; 32],
    },
    /// Acceptor to dialer: who I am, proof over the dialer's challenge, a challenge back.
    Welcome {
        protocol: u32,
        id: NodeId,
        nonce: [u8; 32],
        proof: Sig65,
    },
    /// Dialer to acceptor: proof over the acceptor's challenge.
    Prove {
        proof: Sig65,
    },
    /// Acceptor to dialer: the dialer is authenticated; requests may follow.
    Ready,
    /// Either side: why the handshake failed, before closing.
    Refuse {
        reason: String,
    },
    Request {
        id: u64,
        body: Vec<u8>,
    },
    Response {
        id: u64,
        body: Vec<u8>,
    },
}

pub fn length_codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME_BYTES)
        .new_codec()
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed frame: {0}")]
    Malformed(String),
}

pub async fn send<S>(sink: &mut S, frame: &Frame) -> Result<(), FrameError>
where
    S: Sink<Bytes, Error = std::io::Error> + Unpin,
{
    let bytes = codec::encode(frame).map_err(|e| FrameError::Malformed(e.to_string()))?;
    sink.send(Bytes::from(bytes)).await?;
    Ok(())
}

pub async fn recv<S>(stream: &mut S) -> Result<Frame, FrameError>
where
    S: Stream<Item = Result<BytesMut, std::io::Error>> + Unpin,
{
    match stream.next().await {
        None => Err(FrameError::Closed),
        // An oversized length prefix surfaces here as InvalidData.
        Some(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
            Err(FrameError::Malformed(e.to_string()))
        }
        Some(Err(e)) => Err(FrameError::Io(e)),
        Some(Ok(buf)) => {
            codec::decode::<Frame>(&buf).map_err(|e| FrameError::Malformed(e.to_string()))
        }
    }
}

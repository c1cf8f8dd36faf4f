//! What travels over an authenticated channel ([`super::channel`]): requests and their
//! responses, multiplexed by id, each one bincode-encoded [`Frame`].

use crate::chain::store::MAX_RESPONSE_BYTES;
use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change to frames or the handshake (2: the Noise channel).
pub const PROTOCOL_VERSION: u32 = 2;

/// The largest frame either side accepts, sized from what the protocol sends: the largest
/// message is a block download (`MAX_RESPONSE_BYTES` of blocks) or an InstallSnapshot chunk
/// (openraft's default 3 MiB), plus the envelope. A peer announcing more is cut off before
/// anything is allocated for it; one sending it slowly is cut off when the frame's deadline passes
/// ([`super::inbound::FRAME_DEADLINE`]).
pub const MAX_FRAME_BYTES: usize = MAX_RESPONSE_BYTES * 2;

#[derive(Debug, Serialize, Deserialize)]
pub enum Frame {
    Request {
        id: u64,
        /// Byte strings encode as a length and the bytes, the same bytes a vector gave, but
        /// without a serde visit per byte (a block download is megabytes).
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
    },
    Response {
        id: u64,
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("connection closed")]
    Closed,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// A piece failed authentication: flipped, replayed, reordered, or from another connection.
    #[error("a frame failed authentication (altered, replayed, reordered or spliced): {0}")]
    Unauthentic(String),
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// A frame began but did not complete within its deadline: a peer trickling bytes.
    #[error("a frame did not complete within its deadline")]
    TooSlow,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bodies encode as byte strings: the same bytes the element-wise vector gave, so peers
    /// of either build understand each other.
    #[test]
    fn frame_bodies_encode_as_they_did() {
        #[derive(serde::Serialize)]
        enum ElementWise {
            #[allow(dead_code)]
            Request {
                id: u64,
                body: Vec<u8>,
            },
            Response {
                id: u64,
                body: Vec<u8>,
            },
        }
        let body: Vec<u8> = (0..=255).collect();
        let now = crate::codec::encode(&Frame::Response {
            id: 300,
            body: body.clone(),
        })
        .unwrap();
        let before = crate::codec::encode(&ElementWise::Response { id: 300, body }).unwrap();
        assert_eq!(now, before);
        let back: Frame = crate::codec::decode(&now).unwrap();
        assert!(matches!(back, Frame::Response { id: 300, ref body } if body.len() == 256));
    }
}

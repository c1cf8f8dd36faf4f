//! Mutual proof of key possession. Each side signs the other's fresh 32-byte challenge together
//! with both ids and the chain id; the signature must recover to the id the signer claims
//! (a node id is its public key). A replayed proof fails: the challenge is new per connection.

use alloy_primitives::{keccak256, B256};
use canon_engine::keys::{recover_node_id, SecretKey};
use canon_engine::NodeId;
use rand::RngCore;
use tokio::net::TcpStream;
use tokio_util::codec::Framed;
use tokio_util::codec::LengthDelimitedCodec;

use super::frame::{length_codec, recv, send, Frame, FrameError, PROTOCOL_VERSION};

pub type Conn = Framed<TcpStream, LengthDelimitedCodec>;

#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("peer refused: {0}")]
    Refused(String),
    #[error("protocol violation: {0}")]
    Protocol(String),
}

fn challenge_hash(chain_id: u64, nonce: &[u8; 32], prover: &NodeId, verifier: &NodeId) -> B256 {
    let mut buf = Vec::with_capacity(16 + 8 + 32 + 128);
    buf.extend_from_slice(b"canon/p2p/v1");
    buf.extend_from_slice(&chain_id.to_be_bytes());
    buf.extend_from_slice(nonce);
    buf.extend_from_slice(&prover.0);
    buf.extend_from_slice(&verifier.0);
    keccak256(&buf)
}

fn fresh_nonce() -> [u8; 32] {
    let mut n = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut n);
    n
}

fn proves(
    chain_id: u64,
    nonce: &[u8; 32],
    prover: &NodeId,
    verifier: &NodeId,
    proof: &canon_engine::ids::Sig65,
) -> bool {
    let h = challenge_hash(chain_id, nonce, prover, verifier);
    matches!(recover_node_id(&h, proof), Ok(id) if id == *prover)
}

async fn refuse(conn: &mut Conn, reason: String) -> HandshakeError {
    // Best effort: the peer learns why; the connection closes either way.
    let _ = send(
        conn,
        &Frame::Refuse {
            reason: reason.clone(),
        },
    )
    .await;
    HandshakeError::Protocol(reason)
}

/// Dials side: authenticates the peer (as `expected`, when the dialer knows its id) and proves
/// this node's key. Without `expected` any id that proves its key is accepted: a group member's
/// network identity is new at every start, and what the group trusts is signed by the shared
/// identity, not by the connection.
pub async fn dial(
    stream: TcpStream,
    key: &SecretKey,
    expected: Option<NodeId>,
    chain_id: u64,
) -> Result<(NodeId, Conn), HandshakeError> {
    let _ = stream.set_nodelay(true);
    let mut conn = Framed::new(stream, length_codec());
    let me = key.node_id();
    let nonce = fresh_nonce();
    send(
        &mut conn,
        &Frame::Hello {
            protocol: PROTOCOL_VERSION,
            chain_id,
            id: me,
            nonce,
        },
    )
    .await?;
    let (their_nonce, id) = match recv(&mut conn).await? {
        Frame::Welcome {
            protocol,
            id,
            nonce: their_nonce,
            proof,
        } => {
            if protocol != PROTOCOL_VERSION {
                return Err(refuse(
                    &mut conn,
                    format!("protocol {protocol}, expected {PROTOCOL_VERSION}"),
                )
                .await);
            }
            if let Some(expected) = expected.filter(|e| *e != id) {
                return Err(
                    refuse(&mut conn, format!("answered as {id}, dialed {expected}")).await,
                );
            }
            if !proves(chain_id, &nonce, &id, &me, &proof) {
                return Err(refuse(&mut conn, format!("{id} did not prove its key")).await);
            }
            (their_nonce, id)
        }
        Frame::Refuse { reason } => return Err(HandshakeError::Refused(reason)),
        other => {
            return Err(HandshakeError::Protocol(format!(
                "expected Welcome, got {other:?}"
            )))
        }
    };
    let proof = key.sign_hash(&challenge_hash(chain_id, &their_nonce, &me, &id));
    send(&mut conn, &Frame::Prove { proof }).await?;
    match recv(&mut conn).await? {
        Frame::Ready => Ok((id, conn)),
        Frame::Refuse { reason } => Err(HandshakeError::Refused(reason)),
        other => Err(HandshakeError::Protocol(format!(
            "expected Ready, got {other:?}"
        ))),
    }
}

/// Accepting side: returns the dialer's proven id.
pub async fn accept(
    stream: TcpStream,
    key: &SecretKey,
    chain_id: u64,
) -> Result<(NodeId, Conn), HandshakeError> {
    let _ = stream.set_nodelay(true);
    let mut conn = Framed::new(stream, length_codec());
    let me = key.node_id();
    let (id, their_nonce) = match recv(&mut conn).await? {
        Frame::Hello {
            protocol,
            chain_id: theirs,
            id,
            nonce,
        } => {
            if protocol != PROTOCOL_VERSION {
                return Err(refuse(
                    &mut conn,
                    format!("protocol {protocol}, expected {PROTOCOL_VERSION}"),
                )
                .await);
            }
            if theirs != chain_id {
                return Err(refuse(
                    &mut conn,
                    format!("chain id {theirs}, this node runs {chain_id}"),
                )
                .await);
            }
            (id, nonce)
        }
        other => {
            return Err(HandshakeError::Protocol(format!(
                "expected Hello, got {other:?}"
            )))
        }
    };
    let nonce = fresh_nonce();
    let proof = key.sign_hash(&challenge_hash(chain_id, &their_nonce, &me, &id));
    send(
        &mut conn,
        &Frame::Welcome {
            protocol: PROTOCOL_VERSION,
            id: me,
            nonce,
            proof,
        },
    )
    .await?;
    match recv(&mut conn).await? {
        Frame::Prove { proof } if proves(chain_id, &nonce, &id, &me, &proof) => {
            send(&mut conn, &Frame::Ready).await?;
            Ok((id, conn))
        }
        Frame::Prove { .. } => Err(refuse(&mut conn, format!("{id} did not prove its key")).await),
        Frame::Refuse { reason } => Err(HandshakeError::Refused(reason)),
        other => Err(HandshakeError::Protocol(format!(
            "expected Prove, got {other:?}"
        ))),
    }
}

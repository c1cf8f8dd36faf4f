//! The p2p channel: Noise XX (`Noise_XX_25519_ChaChaPoly_BLAKE2s`, from the `snow` crate) with
//! each side's node key bound to its Noise static key, the way libp2p's Noise handshake binds
//! identity keys.
//!
//! Each node draws one X25519 static key per start (an [`Identity`], made at its first
//! connection), as a libp2p node keeps one for its lifetime. In the handshake each side sends,
//! encrypted, an [`IdentityProof`]: its node id and its secp256k1 signature over the chain id
//! and its own Noise static key. The other side checks that the signature recovers to the
//! claimed id and covers the static key Noise authenticated. A proof is useless to anyone
//! without that static key's secret, which never leaves the process, so replaying a recorded
//! handshake fails. (A fresh static key and proof per connection bought nothing more and cost
//! a key generation and a secp256k1 signature per connection, which any stranger who opens
//! connections could make a node pay at will.)
//!
//! Three messages (one and a half round trips); after them every frame is encrypted and
//! authenticated with ChaCha20-Poly1305 under per-direction counters ([`super::channel`]), so a
//! flipped, replayed, reordered, truncated or spliced frame fails to decrypt and closes the
//! connection.
//!
//! Randomness (the static and ephemeral keys) comes from a ChaCha20 generator over a 32-byte
//! seed the caller draws: from the OS-seeded thread generator in production, from the run's
//! seed in the simulator, so a simulated run draws the same keys every time.

use alloy_primitives::{keccak256, B256};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{CryptoResolver, DefaultResolver, FallbackResolver};
use snow::types::{Cipher, Dh, Hash, Random};

use crate::codec;
use crate::ids::{NodeId, Sig65};
use crate::keys::{recover_node_id, SecretKey};
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use super::channel::{wire_codec, Channel, NOISE_MAX_MESSAGE};
use super::frame::PROTOCOL_VERSION;

/// The Noise protocol every canon node speaks.
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("connection closed during the handshake")]
    Closed,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("noise: {0}")]
    Noise(#[from] snow::Error),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("answered as {}, dialed {}", .0.proven, .0.expected)]
    WrongPeer(Box<WrongPeer>),
}

/// Whom a dialer expected and who answered.
#[derive(Debug)]
pub struct WrongPeer {
    pub expected: NodeId,
    pub proven: NodeId,
}

/// What each side proves inside the handshake.
#[derive(Debug, Serialize, Deserialize)]
struct IdentityProof {
    protocol: u32,
    chain_id: u64,
    id: NodeId,
    /// The node key's signature over [`binding_hash`] of the sender's Noise static key.
    signature: Sig65,
}

fn binding_hash(chain_id: u64, noise_static: &[u8]) -> B256 {
    let mut buf = Vec::with_capacity(32 + 8 + noise_static.len());
    buf.extend_from_slice(b"canon/p2p/noise-static-key/v2");
    buf.extend_from_slice(&chain_id.to_be_bytes());
    buf.extend_from_slice(noise_static);
    keccak256(&buf)
}

/// Randomness for one builder: a ChaCha20 stream from a 32-byte seed.
struct SeededRandom(ChaCha20Rng);

impl Random for SeededRandom {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.0.fill_bytes(dest);
        Ok(())
    }
}

/// snow's own primitives, with randomness from a seed instead of the OS.
struct SeededResolver(std::sync::Mutex<Option<[u8; 32]>>);

impl CryptoResolver for SeededResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        let seed = crate::sync::lock(&self.0).take()?;
        Some(Box::new(SeededRandom(ChaCha20Rng::from_seed(seed))))
    }
    fn resolve_dh(&self, _: &DHChoice) -> Option<Box<dyn Dh>> {
        None
    }
    fn resolve_hash(&self, _: &HashChoice) -> Option<Box<dyn Hash>> {
        None
    }
    fn resolve_cipher(&self, _: &CipherChoice) -> Option<Box<dyn Cipher>> {
        None
    }
}

/// A builder whose randomness is `rng`'s next 32 bytes; each builder gets its own seed, so the
/// static key and the ephemeral key never share a stream.
fn builder(rng: &mut dyn RngCore) -> Result<snow::Builder<'static>, HandshakeError> {
    let params = NOISE_PARAMS
        .parse()
        .map_err(|e| HandshakeError::Protocol(format!("noise parameters: {e}")))?;
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    let resolver = FallbackResolver::new(
        Box::new(SeededResolver(std::sync::Mutex::new(Some(seed)))),
        Box::new(DefaultResolver),
    );
    Ok(snow::Builder::with_resolver(params, Box::new(resolver)))
}

/// This node's side of its handshakes: a Noise static key and the proof that binds it to the
/// node key.
pub struct Identity {
    keypair: snow::Keypair,
    proof: Vec<u8>,
}

impl Identity {
    /// A static key drawn from `seed` (separated from the connection seeds it may be one of,
    /// so it never equals an ephemeral key drawn from the same seed), and `key`'s proof over
    /// it for `chain_id`.
    pub fn new(key: &SecretKey, chain_id: u64, seed: [u8; 32]) -> Result<Self, HandshakeError> {
        let separated = keccak256([b"canon/p2p/static-key/".as_slice(), &seed].concat());
        let rng = &mut ChaCha20Rng::from_seed(separated.0);
        let keypair = builder(rng)?.generate_keypair()?;
        let proof = IdentityProof {
            protocol: PROTOCOL_VERSION,
            chain_id,
            id: key.node_id(),
            signature: key.sign_hash(&binding_hash(chain_id, &keypair.public)),
        };
        let proof = codec::encode(&proof).map_err(|e| HandshakeError::Protocol(e.to_string()))?;
        Ok(Identity { keypair, proof })
    }
}

fn verify(
    payload: &[u8],
    remote_static: Option<&[u8]>,
    chain_id: u64,
) -> Result<NodeId, HandshakeError> {
    let proof: IdentityProof = codec::decode(payload)
        .map_err(|e| HandshakeError::Protocol(format!("identity proof: {e}")))?;
    if proof.protocol != PROTOCOL_VERSION {
        return Err(HandshakeError::Protocol(format!(
            "protocol {}, expected {PROTOCOL_VERSION}",
            proof.protocol
        )));
    }
    if proof.chain_id != chain_id {
        return Err(HandshakeError::Protocol(format!(
            "chain id {}, this node runs {chain_id}",
            proof.chain_id
        )));
    }
    let remote_static = remote_static
        .ok_or_else(|| HandshakeError::Protocol("no static key after the handshake".into()))?;
    let hash = binding_hash(chain_id, remote_static);
    match recover_node_id(&hash, &proof.signature) {
        Ok(id) if id == proof.id => Ok(proof.id),
        _ => Err(HandshakeError::Protocol(format!(
            "{} did not prove its key",
            proof.id
        ))),
    }
}

async fn read_message<S>(
    framed: &mut Framed<S, LengthDelimitedCodec>,
) -> Result<Vec<u8>, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match framed.next().await {
        None => Err(HandshakeError::Closed),
        // A length prefix above a Noise message: not a handshake at all.
        Some(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => Err(
            HandshakeError::Protocol(format!("malformed handshake message: {e}")),
        ),
        Some(Err(e)) => Err(HandshakeError::Io(e)),
        Some(Ok(bytes)) => Ok(bytes.to_vec()),
    }
}

/// A handshake about to start on `stream`: the Noise state (initiator or responder) with the
/// node's static key and an ephemeral key drawn from `seed`, and the framing the channel
/// continues on.
struct Start<S> {
    noise: snow::HandshakeState,
    framed: Framed<S, LengthDelimitedCodec>,
}

fn start<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    identity: &Identity,
    initiator: bool,
    seed: [u8; 32],
) -> Result<Start<S>, HandshakeError> {
    let rng = &mut ChaCha20Rng::from_seed(seed);
    let builder = builder(rng)?.local_private_key(&identity.keypair.private)?;
    let noise = if initiator {
        builder.build_initiator()?
    } else {
        builder.build_responder()?
    };
    Ok(Start {
        noise,
        framed: Framed::new(stream, wire_codec()),
    })
}

/// What a Noise XX handshake message adds to its payload at most: an ephemeral key, a static key
/// and its tag, and the payload's tag (32 + 48 + 16), rounded up.
const HANDSHAKE_OVERHEAD: usize = 128;

/// Writes the next handshake message, carrying `payload`.
async fn write_message<S: AsyncRead + AsyncWrite + Unpin>(
    noise: &mut snow::HandshakeState,
    framed: &mut Framed<S, LengthDelimitedCodec>,
    payload: &[u8],
) -> Result<(), HandshakeError> {
    // A handshake message is its payload plus at most two keys and two tags (Noise XX).
    let mut buf = vec![0u8; (payload.len() + HANDSHAKE_OVERHEAD).min(NOISE_MAX_MESSAGE)];
    let n = noise.write_message(payload, &mut buf)?;
    framed
        .send(bytes::Bytes::copy_from_slice(&buf[..n]))
        .await?;
    Ok(())
}

/// Reads the next handshake message; its payload.
async fn read_payload<S: AsyncRead + AsyncWrite + Unpin>(
    noise: &mut snow::HandshakeState,
    framed: &mut Framed<S, LengthDelimitedCodec>,
) -> Result<Vec<u8>, HandshakeError> {
    let msg = read_message(framed).await?;
    // The payload is shorter than the message that carries it.
    let mut payload = vec![0u8; msg.len()];
    let n = noise.read_message(&msg, &mut payload)?;
    payload.truncate(n);
    Ok(payload)
}

/// Dialing side (the Noise initiator): authenticates the peer (as `expected`, when the dialer
/// knows its id) and proves this node's key. Without `expected` any id that proves its key is
/// accepted: a group member's network identity is new at every start, and what the group
/// trusts is signed by the shared identity, not by the connection.
pub async fn dial_over<S>(
    stream: S,
    identity: &Identity,
    expected: Option<NodeId>,
    chain_id: u64,
    seed: [u8; 32],
) -> Result<(NodeId, Channel<S>), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Start {
        mut noise,
        mut framed,
    } = start(stream, identity, true, seed)?;
    // -> e
    write_message(&mut noise, &mut framed, &[]).await?;
    // <- e, ee, s, es (+ the responder's proof)
    let payload = read_payload(&mut noise, &mut framed).await?;
    let id = verify(&payload, noise.get_remote_static(), chain_id)?;
    if let Some(expected) = expected.filter(|e| *e != id) {
        return Err(HandshakeError::WrongPeer(Box::new(WrongPeer {
            expected,
            proven: id,
        })));
    }
    // -> s, se (+ this node's proof)
    write_message(&mut noise, &mut framed, &identity.proof).await?;
    let transport = noise.into_transport_mode()?;
    Ok((id, Channel::new(framed, transport)))
}

/// The accepting side (the Noise responder): proves `identity` and learns the dialer's
/// proven id.
pub async fn accept_over<S>(
    stream: S,
    identity: &Identity,
    chain_id: u64,
    seed: [u8; 32],
) -> Result<(NodeId, Channel<S>), HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Start {
        mut noise,
        mut framed,
    } = start(stream, identity, false, seed)?;
    // -> e
    read_payload(&mut noise, &mut framed).await?;
    // <- e, ee, s, es (+ this node's proof)
    write_message(&mut noise, &mut framed, &identity.proof).await?;
    // -> s, se (+ the dialer's proof)
    let payload = read_payload(&mut noise, &mut framed).await?;
    let id = verify(&payload, noise.get_remote_static(), chain_id)?;
    let transport = noise.into_transport_mode()?;
    Ok((id, Channel::new(framed, transport)))
}

/// Test support for the channel's tests: two channels at either end of an in-memory stream,
/// after a real handshake between two test keys, each side's keys drawn from its seed.
#[cfg(test)]
pub(crate) async fn duplex_pair(
    seeds: ([u8; 32], [u8; 32]),
) -> (
    Channel<tokio::io::DuplexStream>,
    Channel<tokio::io::DuplexStream>,
) {
    use crate::keys::derived_key;
    let (a, b) = tokio::io::duplex(1 << 22);
    let (k0, k1) = (derived_key("ch", 0), derived_key("ch", 1));
    let i0 = Identity::new(&k0, 7, seeds.0).expect("an identity");
    let i1 = Identity::new(&k1, 7, seeds.1).expect("an identity");
    let (d, s) = futures::join!(
        dial_over(a, &i0, None, 7, seeds.0),
        accept_over(b, &i1, 7, seeds.1)
    );
    let ((_, dialer), (_, acceptor)) = (d.expect("dial"), s.expect("accept"));
    (dialer, acceptor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::derived_key;
    use crate::net::p2p::frame::Frame;

    const CHAIN: u64 = 7;

    async fn pair(
        dialer: SecretKey,
        acceptor: SecretKey,
        expected: Option<NodeId>,
        chain_ids: (u64, u64),
    ) -> (
        Result<(NodeId, Channel<tokio::io::DuplexStream>), HandshakeError>,
        Result<(NodeId, Channel<tokio::io::DuplexStream>), HandshakeError>,
    ) {
        let dialer = Identity::new(&dialer, chain_ids.0, [3; 32]).unwrap();
        let acceptor = Identity::new(&acceptor, chain_ids.1, [4; 32]).unwrap();
        connect(&dialer, &acceptor, expected, chain_ids, ([1; 32], [2; 32])).await
    }

    /// One connection between two identities, each side's ephemeral key from its seed.
    async fn connect(
        dialer: &Identity,
        acceptor: &Identity,
        expected: Option<NodeId>,
        chain_ids: (u64, u64),
        seeds: ([u8; 32], [u8; 32]),
    ) -> (
        Result<(NodeId, Channel<tokio::io::DuplexStream>), HandshakeError>,
        Result<(NodeId, Channel<tokio::io::DuplexStream>), HandshakeError>,
    ) {
        let (a, b) = tokio::io::duplex(1 << 20);
        futures::join!(
            dial_over(a, dialer, expected, chain_ids.0, seeds.0),
            accept_over(b, acceptor, chain_ids.1, seeds.1)
        )
    }

    /// A node's one identity serves every connection it makes: the same two nodes connect
    /// twice, each time with fresh ephemeral keys, and both channels carry frames.
    #[tokio::test]
    async fn one_identity_serves_every_connection() {
        let (k0, k1) = (derived_key("hs", 0), derived_key("hs", 1));
        let dialer = Identity::new(&k0, CHAIN, [3; 32]).unwrap();
        let acceptor = Identity::new(&k1, CHAIN, [4; 32]).unwrap();
        for round in 0u8..2 {
            let seeds = ([10 + round; 32], [20 + round; 32]);
            let expected = Some(k1.node_id());
            let (d, s) = connect(&dialer, &acceptor, expected, (CHAIN, CHAIN), seeds).await;
            let (id_d, mut cd) = d.unwrap();
            let (id_s, mut cs) = s.unwrap();
            assert_eq!((id_d, id_s), (k1.node_id(), k0.node_id()), "round {round}");
            let frame = Frame::Request {
                id: u64::from(round),
                body: vec![7; 32],
            };
            cd.send(&frame).await.unwrap();
            let got = cs.recv().await.unwrap();
            assert!(
                matches!(got, Frame::Request { id, .. } if id == u64::from(round)),
                "round {round}: {got:?}"
            );
        }
    }

    #[tokio::test]
    async fn both_sides_learn_the_others_proven_id_and_frames_flow() {
        let (k0, k1) = (derived_key("hs", 0), derived_key("hs", 1));
        let (d, s) = pair(k0.clone(), k1.clone(), Some(k1.node_id()), (CHAIN, CHAIN)).await;
        let (id_d, mut cd) = d.unwrap();
        let (id_s, mut cs) = s.unwrap();
        assert_eq!((id_d, id_s), (k1.node_id(), k0.node_id()));
        let body = vec![9u8; 200_000];
        cd.send(&Frame::Request {
            id: 3,
            body: body.clone(),
        })
        .await
        .unwrap();
        match cs.recv().await.unwrap() {
            Frame::Request { id: 3, body: got } => assert_eq!(got, body),
            other => panic!("got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_frame_sent_with_the_last_handshake_message_is_not_lost() {
        let (k0, k1) = (derived_key("hs", 0), derived_key("hs", 1));
        let (a, b) = tokio::io::duplex(1 << 20);
        // The dialer's first frame goes out at once behind its last handshake message; the
        // acceptor reads both in one go and must keep the frame it buffered.
        let (i0, i1) = (
            Identity::new(&k0, CHAIN, [3; 32]).unwrap(),
            Identity::new(&k1, CHAIN, [4; 32]).unwrap(),
        );
        let d = tokio::spawn(async move {
            let (_, mut conn) = dial_over(a, &i0, None, CHAIN, [1; 32]).await.unwrap();
            conn.send(&Frame::Request {
                id: 1,
                body: vec![1; 10],
            })
            .await
            .unwrap();
            conn
        });
        tokio::task::yield_now().await;
        let (_, mut acceptor) = accept_over(b, &i1, CHAIN, [2; 32]).await.unwrap();
        let _dialer = d.await.unwrap();
        assert!(matches!(
            acceptor.recv().await,
            Ok(Frame::Request { id: 1, .. })
        ));
    }

    #[tokio::test]
    async fn a_wrong_expected_id_or_chain_fails_the_handshake() {
        let (k0, k1, k2) = (
            derived_key("hs", 0),
            derived_key("hs", 1),
            derived_key("hs", 2),
        );
        let (d, _) = pair(k0.clone(), k1.clone(), Some(k2.node_id()), (CHAIN, CHAIN)).await;
        let err = d
            .err()
            .expect("dialing n1 while expecting n2 must fail")
            .to_string();
        assert!(err.contains("dialed"), "{err}");
        let (d, s) = pair(k0, k1, None, (CHAIN, CHAIN + 1)).await;
        assert!(
            d.is_err() || s.is_err(),
            "different chains must not connect"
        );
    }

    #[test]
    fn a_proof_must_cover_the_static_key_and_recover_to_the_claimed_id() {
        let (k0, k1) = (derived_key("hs", 0), derived_key("hs", 1));
        let static_key = [5u8; 32];
        let proof = |claimed: NodeId, signer: &SecretKey, over: &[u8]| {
            codec::encode(&IdentityProof {
                protocol: PROTOCOL_VERSION,
                chain_id: CHAIN,
                id: claimed,
                signature: signer.sign_hash(&binding_hash(CHAIN, over)),
            })
            .unwrap()
        };
        let good = proof(k0.node_id(), &k0, &static_key);
        assert_eq!(
            verify(&good, Some(&static_key), CHAIN).unwrap(),
            k0.node_id()
        );
        // Claiming another node's id with one's own key.
        let impostor = proof(k0.node_id(), &k1, &static_key);
        assert!(verify(&impostor, Some(&static_key), CHAIN).is_err());
        // A real proof replayed over another static key (a recorded handshake).
        assert!(verify(&good, Some(&[6u8; 32]), CHAIN).is_err());
        assert!(verify(&good, Some(&static_key), CHAIN + 1).is_err());
        assert!(verify(b"garbage", Some(&static_key), CHAIN).is_err());
    }
}

//! secp256k1 keys through alloy: node keys (whose public key is the [`NodeId`]) and account keys
//! (whose address is a transaction's sender).

use alloy_primitives::{Address, Signature, B256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;

use crate::ids::{NodeId, Sig65};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("secret key: {0}")]
    BadHex(String),
    #[error("secret key is not a valid secp256k1 scalar (zero or above the curve order)")]
    OutOfRange,
    #[error("signature is malformed or does not recover to a public key")]
    BadSignature,
}

/// The network secret keys of the seed document's three consensus nodes; the simulator and `canon-node devnet`
/// run with the same ids as the seed's cluster. Nodes beyond three get [`derived_key`]s.
pub const SEED_SECRET_KEYS: [&str; 3] = [
    "0af6153646bbf600f55ce455e1995283542b1ae25ce2622ce1fda443927c5308",
    "c2c8042b03801e2e14b395ed24f970ead7646a9ff315b54f747bcefdb99afda7",
    "8b50ece5c94762fb0b8dcd2f859fb0132b86c0540c388806b6a03e0b1c25978d",
];

/// A public, reproducible key for `label` and `i` (dev accounts, simulated nodes beyond the
/// seed's three). Never use one where a secret is needed.
pub fn derived_key(label: &str, i: usize) -> SecretKey {
    let mut counter = 0u32;
    loop {
        let h = alloy_primitives::keccak256(format!("{label}/{i}/{counter}"));
        if let Ok(k) = SecretKey::from_bytes(h.0) {
            return k;
        }
        counter += 1;
    }
}

/// A secp256k1 secret key used to sign blocks (node key) or transactions (account key).
///
/// Signing goes through libsecp256k1, as recovery does: several times faster than k256 at
/// both, with the same RFC 6979 deterministic nonces, so the same key signs the same bytes
/// either way (a test holds the two to that). libsecp256k1 derives the public key and with it
/// the address; alloy's signer (k256) is made only when a signature needs it (an R above the
/// group order, odds about 2^-128), since deriving k256's own public key cost a simulated run
/// more than its signing ever did.
#[derive(Clone)]
pub struct SecretKey {
    /// `None` only if k256 refused a scalar libsecp256k1 accepted (it accepts the same ones).
    signer: std::sync::OnceLock<Option<PrivateKeySigner>>,
    secp: secp256k1::SecretKey,
    /// The public key, uncompressed SEC1 (0x04 || X || Y), derived once.
    public: [u8; 65],
    /// keccak256 of the public key's X || Y, last 20 bytes: the account address.
    address: Address,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret itself.
        write!(f, "SecretKey({})", self.node_id().short())
    }
}

/// The key leaves memory with its owner: alloy's signer (k256's `SigningKey`) zeroizes its
/// scalar on drop, and libsecp256k1's copy is overwritten here the same way (a volatile write,
/// as the `zeroize` crate does). Copies the compiler made on moves are beyond reach.
impl Drop for SecretKey {
    fn drop(&mut self) {
        self.secp.non_secure_erase();
    }
}

impl SecretKey {
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, KeyError> {
        let secp =
            secp256k1::SecretKey::from_byte_array(bytes).map_err(|_| KeyError::OutOfRange)?;
        let public = secp
            .public_key(secp256k1::SECP256K1)
            .serialize_uncompressed();
        Ok(SecretKey {
            signer: std::sync::OnceLock::new(),
            secp,
            address: Address::from_raw_public_key(&public[1..]),
            public,
        })
    }

    /// Parses 32 bytes of hex, `0x` optional, as the seed's `network_secret_key`.
    /// Errors say what is wrong without quoting any of the text (it may be a real key).
    pub fn from_hex(s: &str) -> Result<Self, KeyError> {
        let digits = s.trim();
        let digits = digits.strip_prefix("0x").unwrap_or(digits);
        if digits.len() != 64 {
            return Err(KeyError::BadHex(format!(
                "expected 64 hex digits (32 bytes), got {}",
                digits.len()
            )));
        }
        let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(digits, bytes.as_mut_slice())
            .map_err(|_| KeyError::BadHex("not hex digits".into()))?;
        Self::from_bytes(*bytes)
    }

    /// The 64-byte uncompressed public key, which is the Raft node id.
    /// The raw secret, for handing a key to a child process's environment.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.secp.secret_bytes()
    }

    pub fn node_id(&self) -> NodeId {
        let mut id = [0u8; 64];
        // Uncompressed SEC1 is 0x04 || X || Y; the id drops the tag byte.
        id.copy_from_slice(&self.public[1..65]);
        NodeId(id)
    }

    pub fn address(&self) -> Address {
        self.address
    }

    /// alloy's signer for this key, made at first use.
    fn signer(&self) -> Option<&PrivateKeySigner> {
        self.signer
            .get_or_init(|| {
                PrivateKeySigner::from_bytes(&B256::from(self.secp.secret_bytes())).ok()
            })
            .as_ref()
    }

    pub fn sign_hash(&self, hash: &B256) -> Sig65 {
        let sig = self.sign_hash_unremembered(hash);
        remember(hash, &sig, &self.public);
        sig
    }

    fn sign_hash_unremembered(&self, hash: &B256) -> Sig65 {
        let sig = secp256k1::SECP256K1
            .sign_ecdsa_recoverable(secp256k1::Message::from_digest(hash.0), &self.secp);
        let (recovery_id, rs) = sig.serialize_compact();
        match i32::from(recovery_id) {
            // libsecp256k1 signs with low s, as k256 does; the id is the parity of R's y.
            id @ (0 | 1) => Sig65(Signature::from_bytes_and_parity(&rs, id == 1).as_bytes()),
            // R's x above the group order (odds about 2^-128): k256 says how to encode it.
            _ => self.sign_hash_k256(hash),
        }
    }

    fn sign_hash_k256(&self, hash: &B256) -> Sig65 {
        // Signing a 32-byte prehash with a valid key cannot fail in k256; the Result is
        // alloy's generic signer interface.
        match self.signer().map(|s| s.sign_hash_sync(hash)) {
            Some(Ok(sig)) => Sig65(sig.as_bytes()),
            Some(Err(e)) => unreachable_sign(&e),
            None => unreachable_sign(&"k256 refused the secret"),
        }
    }
}

#[cold]
fn unreachable_sign(e: &dyn std::fmt::Display) -> Sig65 {
    tracing::error!("local signing failed: {e}");
    Sig65([0u8; 65])
}

fn parse_sig(sig: &Sig65) -> Result<Signature, KeyError> {
    Signature::from_raw(&sig.0).map_err(|_| KeyError::BadSignature)
}

/// Whether recovered keys are remembered (see [`remember_recoveries`]).
static REMEMBERING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// (hash, signature) to the uncompressed key recovered from them.
type Recovered = std::collections::HashMap<(B256, [u8; 65]), [u8; 65]>;
static REMEMBERED: std::sync::Mutex<Option<Recovered>> = std::sync::Mutex::new(None);
/// Remembered recoveries at most; then the memory starts again empty.
const REMEMBER_MAX: usize = 1 << 16;

/// From now on this process remembers the keys it recovers, and the key behind every
/// signature it makes. For the simulator: its nodes and clients share one process, so almost
/// every signature a node recovers (transactions, votes, certificates, block seals,
/// handshake proofs) was made in the same process, and the others recover it again.
/// Recovery is a pure function of (hash, signature), and a signature made by a key recovers
/// to that key, so a run is the same with or without it, only faster (a test holds the two
/// to that). A tampered signature has other bytes and is recovered afresh. Production nodes
/// never call it (one node per process, and a node recovers others' signatures).
pub fn remember_recoveries() {
    *crate::sync::lock(&REMEMBERED) = Some(Recovered::new());
    REMEMBERING.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// The uncompressed SEC1 key (0x04 || X || Y) whose key produced `sig` over `hash`.
fn recover_point(hash: &B256, sig: &Sig65) -> Result<[u8; 65], KeyError> {
    let remembering = REMEMBERING.load(std::sync::atomic::Ordering::Relaxed);
    if remembering {
        if let Some(point) = crate::sync::lock(&REMEMBERED)
            .as_ref()
            .and_then(|m| m.get(&(*hash, sig.0)))
        {
            return Ok(*point);
        }
    }
    let point = parse_sig(sig)?
        .recover_from_prehash_secp256k1(hash)
        .map_err(|_| KeyError::BadSignature)?
        .serialize_uncompressed();
    remember(hash, sig, &point);
    Ok(point)
}

/// Notes that `sig` over `hash` recovers to `point`, when remembering.
fn remember(hash: &B256, sig: &Sig65, point: &[u8; 65]) {
    if !REMEMBERING.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    if let Some(m) = crate::sync::lock(&REMEMBERED).as_mut() {
        if m.len() >= REMEMBER_MAX {
            m.clear();
        }
        m.insert((*hash, sig.0), *point);
    }
}

/// The node id whose key produced `sig` over `hash`.
pub fn recover_node_id(hash: &B256, sig: &Sig65) -> Result<NodeId, KeyError> {
    let point = recover_point(hash, sig)?;
    let mut id = [0u8; 64];
    // Uncompressed SEC1 is 0x04 || X || Y; the id drops the tag byte.
    id.copy_from_slice(&point[1..65]);
    Ok(NodeId(id))
}

/// The account address whose key produced `sig` over `hash` (recovered by libsecp256k1).
pub fn recover_address(hash: &B256, sig: &Sig65) -> Result<Address, KeyError> {
    let point = recover_point(hash, sig)?;
    Ok(Address::from_raw_public_key(&point[1..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::keccak256;

    /// The seed's three network secret keys and the ids it lists in `consensus_peer_ids`.
    pub const SEED_KEYS: [(&str, &str); 3] = [
        (
            "0af6153646bbf600f55ce455e1995283542b1ae25ce2622ce1fda443927c5308",
            "0x246e07030b4c48b8f28ab1fdf797a02308b0ca724696b695aabee48ea48298ff221144a0c0f14ebf030aea6d5fb6b31bd3a02676204bb13e78336bb824e32f1d",
        ),
        (
            "c2c8042b03801e2e14b395ed24f970ead7646a9ff315b54f747bcefdb99afda7",
            "0xd2db8005d59694a5b79b7c58d4d375c60c9323837e852bbbfd05819621c48a4218cefa37baf39a164e2a6f6c1b34c379c4a72c7480b5fbcc379d1befb881e8fc",
        ),
        (
            "8b50ece5c94762fb0b8dcd2f859fb0132b86c0540c388806b6a03e0b1c25978d",
            "0x2991880ae3ff81b881c86f54d2af0ee85a325231bb75f903f06f432020101614dbfbc75ddec885f5e101fed272bee661f492fb6dd80147b656da990635a7e581",
        ),
    ];

    #[test]
    fn seed_secret_keys_derive_seed_node_ids() {
        for (secret, id) in SEED_KEYS {
            let key = SecretKey::from_hex(secret).unwrap();
            assert_eq!(key.node_id().to_string(), id);
        }
    }

    #[test]
    fn signature_recovers_signer() {
        let key = SecretKey::from_hex(SEED_KEYS[0].0).unwrap();
        let hash = keccak256(b"block");
        let sig = key.sign_hash(&hash);
        assert_eq!(recover_node_id(&hash, &sig).unwrap(), key.node_id());
        assert_eq!(recover_address(&hash, &sig).unwrap(), key.address());
        let other = keccak256(b"other");
        assert_ne!(recover_node_id(&other, &sig).unwrap(), key.node_id());
    }

    proptest::proptest! {
        /// libsecp256k1 and k256 sign every hash with every key to the same bytes.
        #[test]
        fn signing_backends_agree(secret in proptest::array::uniform32(1u8..), msg in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let key = SecretKey::from_bytes(secret).unwrap();
            let hash = keccak256(&msg);
            proptest::prop_assert_eq!(key.sign_hash(&hash), key.sign_hash_k256(&hash));
        }

        /// What a signature is remembered to recover to is what recovery computes: the
        /// signer's key, for every key and hash.
        #[test]
        fn a_signature_recovers_to_the_key_remembered_for_it(secret in proptest::array::uniform32(1u8..), msg in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let key = SecretKey::from_bytes(secret).unwrap();
            let hash = keccak256(&msg);
            let sig = key.sign_hash_unremembered(&hash);
            let computed = parse_sig(&sig).unwrap().recover_from_prehash_secp256k1(&hash).unwrap().serialize_uncompressed();
            proptest::prop_assert_eq!(computed, key.public);
            let by_k256 = key.signer().unwrap().credential().verifying_key().to_encoded_point(false);
            proptest::prop_assert_eq!(by_k256.as_bytes(), &key.public[..]);
            proptest::prop_assert_eq!(key.signer().unwrap().address(), key.address());
            let k256_bytes: [u8; 32] = key.signer().unwrap().credential().to_bytes().into();
            proptest::prop_assert_eq!(k256_bytes, key.to_bytes());
        }

        /// Recovery by libsecp256k1 and by k256 must agree on every signature,
        /// tampered ones included (a byte flipped anywhere, the recovery id too).
        #[test]
        fn recovery_backends_agree(secret in proptest::array::uniform32(1u8..), msg in proptest::collection::vec(proptest::num::u8::ANY, 0..64), flip in 0usize..66, bit in 0u8..8) {
            let key = SecretKey::from_bytes(secret).unwrap();
            let hash = keccak256(&msg);
            let mut sig = key.sign_hash(&hash);
            if flip < 65 {
                sig.0[flip] ^= 1 << bit;
            }
            let by_k256 = parse_sig(&sig).ok().and_then(|s| s.recover_from_prehash(&hash).ok()).map(|vk| {
                let mut id = [0u8; 64];
                id.copy_from_slice(&vk.to_encoded_point(false).as_bytes()[1..65]);
                NodeId(id)
            });
            proptest::prop_assert_eq!(recover_node_id(&hash, &sig).ok(), by_k256);
            let address_by_k256 = parse_sig(&sig).ok().and_then(|s| s.recover_address_from_prehash(&hash).ok());
            proptest::prop_assert_eq!(recover_address(&hash, &sig).ok(), address_by_k256);
            if flip == 65 {
                proptest::prop_assert_eq!(recover_address(&hash, &sig).unwrap(), key.address());
            }
        }
    }

    /// Remembering is invisible but for speed: the second recovery of a signature answers
    /// what the first did, and another signature over the same hash is recovered afresh.
    #[test]
    fn remembered_recoveries_answer_as_fresh_ones() {
        remember_recoveries();
        let key = SecretKey::from_bytes([7u8; 32]).unwrap();
        let hash = keccak256(b"remembered");
        let sig = key.sign_hash(&hash);
        let first = recover_node_id(&hash, &sig).unwrap();
        assert_eq!(first, key.node_id());
        assert_eq!(recover_node_id(&hash, &sig).unwrap(), first);
        assert_eq!(recover_address(&hash, &sig).unwrap(), key.address());
        let other = SecretKey::from_bytes([8u8; 32]).unwrap().sign_hash(&hash);
        assert_ne!(recover_node_id(&hash, &other).unwrap(), first);
        let mut tampered = sig;
        tampered.0[64] ^= 1;
        assert_ne!(recover_node_id(&hash, &tampered).ok(), Some(first));
    }

    #[test]
    fn bad_secret_keys_are_named() {
        assert!(matches!(
            SecretKey::from_hex("xyz"),
            Err(KeyError::BadHex(_))
        ));
        assert_eq!(
            SecretKey::from_hex(&"00".repeat(32)).unwrap_err(),
            KeyError::OutOfRange
        );
    }
}

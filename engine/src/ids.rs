//! Node identity: the uncompressed secp256k1 public key (64 bytes, no `0x04` prefix) of a
//! node's network secret key, shown `0x`-prefixed as in the seed's `consensus_peer_ids`.

use std::fmt;
use std::str::FromStr;

/// Serde for fixed-size byte arrays longer than serde's built-in 32: raw bytes for binary
/// formats, `0x` hex for human-readable ones (JSON status, YAML config).
macro_rules! fixed_bytes_serde {
    ($ty:ident, $len:expr) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                if s.is_human_readable() {
                    s.serialize_str(&format!("0x{}", hex::encode(self.0)))
                } else {
                    s.serialize_bytes(&self.0)
                }
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> serde::de::Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "{} bytes or a 0x-prefixed hex string", $len)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$ty, E> {
                        $crate::ids::parse_hex_fixed::<$len>(v)
                            .map($ty)
                            .map_err(E::custom)
                    }
                    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<$ty, E> {
                        let arr: [u8; $len] = v
                            .try_into()
                            .map_err(|_| E::invalid_length(v.len(), &self))?;
                        Ok($ty(arr))
                    }
                    fn visit_seq<A: serde::de::SeqAccess<'de>>(
                        self,
                        mut seq: A,
                    ) -> Result<$ty, A::Error> {
                        let mut arr = [0u8; $len];
                        for (i, b) in arr.iter_mut().enumerate() {
                            *b = seq
                                .next_element()?
                                .ok_or_else(|| serde::de::Error::invalid_length(i, &self))?;
                        }
                        Ok($ty(arr))
                    }
                }
                if d.is_human_readable() {
                    d.deserialize_str(V)
                } else {
                    d.deserialize_bytes(V)
                }
            }
        }
    };
}

/// Parses exactly `N` bytes of hex, with or without a `0x` prefix.
pub fn parse_hex_fixed<const N: usize>(s: &str) -> Result<[u8; N], String> {
    let digits = s.strip_prefix("0x").unwrap_or(s);
    if digits.len() != N * 2 {
        return Err(format!(
            "expected {} hex digits ({} bytes), got {}",
            N * 2,
            N,
            digits.len()
        ));
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(digits, &mut out).map_err(|e| format!("bad hex: {e}"))?;
    Ok(out)
}

/// A Raft node id: the 64-byte uncompressed secp256k1 public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub [u8; 64]);

fixed_bytes_serde!(NodeId, 64);

impl Default for NodeId {
    fn default() -> Self {
        NodeId([0u8; 64])
    }
}

impl NodeId {
    /// The first four bytes in hex, for logs and tables where the whole id is noise.
    pub fn short(&self) -> String {
        format!("0x{}", hex::encode(&self.0[..4]))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(self.0))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.short())
    }
}

impl FromStr for NodeId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_hex_fixed::<64>(s.trim()).map(NodeId)
    }
}

/// A 65-byte recoverable secp256k1 signature (r, s, y-parity).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sig65(pub [u8; 65]);

fixed_bytes_serde!(Sig65, 65);

impl fmt::Debug for Sig65 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}…", hex::encode(&self.0[..6]))
    }
}

/// A node id for tests: `n` in its first byte, zeros after; no key behind it.
#[cfg(test)]
pub(crate) fn test_id(n: u8) -> NodeId {
    let mut b = [0u8; 64];
    b[0] = n;
    NodeId(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_round_trips_through_text() {
        let id = NodeId([7u8; 64]);
        let parsed: NodeId = id.to_string().parse().unwrap();
        assert_eq!(parsed, id);
    }

    #[test]
    fn bad_node_id_text_says_why() {
        let err = "0x1234".parse::<NodeId>().unwrap_err();
        assert!(err.contains("expected 128 hex digits"), "{err}");
        let err = format!("0x{}", "zz".repeat(64))
            .parse::<NodeId>()
            .unwrap_err();
        assert!(err.contains("bad hex"), "{err}");
    }
}

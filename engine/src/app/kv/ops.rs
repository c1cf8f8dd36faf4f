//! What a key-value client sends and reads: operations on byte keys, queries of committed
//! state, and what each answers. All travel through the codec.

use serde::{Deserialize, Serialize};

use super::super::{Rejection, Tx};
use crate::codec;

/// Longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Most pairs one range read returns.
pub const MAX_RANGE_PAIRS: u32 = 10_000;

/// One write. `client` and `request` are the client's own numbering: they make every operation
/// a distinct transaction (two puts of the same value are two writes), and name it in traces.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvTx {
    pub client: u64,
    pub request: u64,
    pub op: KvOp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvOp {
    Put {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    Delete {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Sets `key` to `new` (`None`: deletes it) only if it now holds `expected` (`None`: absent).
    CompareAndSet {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "serde_bytes")]
        expected: Option<Vec<u8>>,
        #[serde(with = "serde_bytes")]
        new: Option<Vec<u8>>,
    },
}

impl KvOp {
    pub fn key(&self) -> &[u8] {
        match self {
            KvOp::Put { key, .. } | KvOp::Delete { key } | KvOp::CompareAndSet { key, .. } => key,
        }
    }
}

/// What an applied operation answers its client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvOutcome {
    Put,
    /// Whether the key existed.
    Deleted(bool),
    /// Whether the key held the expected value (and so now holds the new one).
    Swapped(bool),
}

/// A read of committed state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvQuery {
    Get {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Pairs with `start <= key < end` (`end` `None`: to the last key), in key order, at most
    /// `limit` (and never more than [`MAX_RANGE_PAIRS`]).
    Range {
        #[serde(with = "serde_bytes")]
        start: Vec<u8>,
        #[serde(with = "serde_bytes")]
        end: Option<Vec<u8>>,
        limit: u32,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvAnswer {
    Value(#[serde(with = "serde_bytes")] Option<Vec<u8>>),
    /// The pairs, and whether more lay in the range past the limit.
    Pairs {
        pairs: Vec<(Vec<u8>, Vec<u8>)>,
        more: bool,
    },
}

/// The rule label of a key or value over its limit, or an empty key.
pub const RULE_SIZE: &str = "size";

impl KvTx {
    pub fn to_tx(&self) -> Result<Tx, codec::CodecError> {
        Ok(Tx::new(codec::encode(self)?))
    }

    /// Reads a key-value transaction, refusing any encoding but the canonical one.
    pub fn from_tx(tx: &Tx) -> Result<KvTx, Rejection> {
        super::super::decode_canonical(tx)
    }

    /// Sizes: a key of 1 to [`MAX_KEY_BYTES`] bytes, values up to [`MAX_VALUE_BYTES`].
    pub fn check_sizes(&self) -> Result<(), Rejection> {
        let key = self.op.key();
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(Rejection::new(
                RULE_SIZE,
                format!("key of {} bytes (1 to {MAX_KEY_BYTES})", key.len()),
            ));
        }
        let values: [Option<&Vec<u8>>; 2] = match &self.op {
            KvOp::Put { value, .. } => [Some(value), None],
            KvOp::Delete { .. } => [None, None],
            KvOp::CompareAndSet { expected, new, .. } => [expected.as_ref(), new.as_ref()],
        };
        match values
            .into_iter()
            .flatten()
            .find(|v| v.len() > MAX_VALUE_BYTES)
        {
            Some(v) => Err(Rejection::new(
                RULE_SIZE,
                format!("value of {} bytes (at most {MAX_VALUE_BYTES})", v.len()),
            )),
            None => Ok(()),
        }
    }
}

impl KvQuery {
    pub fn encode(&self) -> Result<Vec<u8>, codec::CodecError> {
        codec::encode(self)
    }
}

impl KvAnswer {
    pub fn decode(bytes: &[u8]) -> Result<KvAnswer, codec::CodecError> {
        codec::decode(bytes)
    }
}

impl KvOutcome {
    pub fn decode(bytes: &[u8]) -> Result<KvOutcome, codec::CodecError> {
        codec::decode(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Byte strings encode as a length and the bytes: the same bytes a vector of `u8` gave
    /// element by element, so transaction ids did not move when they became byte strings.
    #[test]
    fn the_encoding_is_pinned() {
        let tx = KvTx {
            client: 1,
            request: 2,
            op: KvOp::CompareAndSet {
                key: vec![0xaa],
                expected: None,
                new: Some(vec![1, 2]),
            },
        };
        let bytes = codec::encode(&tx).unwrap();
        assert_eq!(bytes, [1, 2, 2, 1, 0xaa, 0, 1, 2, 1, 2]);
        #[derive(Serialize)]
        struct ElementWise(u64, u64, u32, Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>);
        let old = ElementWise(1, 2, 2, vec![0xaa], None, Some(vec![1, 2]));
        assert_eq!(codec::encode(&old).unwrap(), bytes);
        assert_eq!(KvTx::from_tx(&tx.to_tx().unwrap()).unwrap(), tx);
    }
}

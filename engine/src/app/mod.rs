//! The application seam: the engine orders and replicates opaque transactions; an application
//! says what they mean.
//!
//! In the manner of CometBFT's ABCI, an [`Application`] owns validity and state:
//! - [`Application::verify`] checks one transaction on its own (encoding, size, signature). It
//!   is pure, so the engine runs it in parallel, off the leader's lock, at admission and when a
//!   replayer checks a downloaded block.
//! - [`Application::lane`] says where a transaction queues in the mempool: in its lane, in
//!   sequence order (the ledger's lane is the sender and its sequence the nonce), or first come
//!   first served (`None`).
//! - [`Application::execute`] applies one transaction to a working copy of the state (the
//!   leader when it builds a block, every node when it applies or replays one). A transaction it
//!   refuses is left out of the block; in a block it makes the block invalid.
//! - [`Application::commit`] ends a block: the state root every node must agree on, and the
//!   key-value writes the engine persists beside the block.
//! - [`Application::query`] answers a read from committed state.
//! - [`Application::export`] and [`Application::import`] move a whole state through Raft
//!   snapshots and storage.
//!
//! The engine holds an application as an [`App`] and its state as an [`AppState`], both type
//! erased, so nothing else in the engine is generic over it.

use alloy_primitives::{keccak256, B256};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

mod erased;
pub mod kv;
mod lattice;
pub mod ledger;

pub use erased::{App, AppState};

/// A transaction as the engine carries it: bytes only the application reads. Its id is the
/// keccak hash of those bytes, computed once per copy a node holds: admission, the mempool,
/// the transactions root, block checks and the client waiters all ask for it, and hashing was
/// a sixth of a node's time under a key-value load. It encodes as the bytes alone.
#[derive(Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tx {
    bytes: Bytes,
    #[serde(skip)]
    id: std::sync::OnceLock<B256>,
}

impl Tx {
    pub fn new(bytes: impl Into<Bytes>) -> Tx {
        Tx {
            bytes: bytes.into(),
            id: std::sync::OnceLock::new(),
        }
    }

    pub fn hash(&self) -> B256 {
        *self.id.get_or_init(|| keccak256(&self.bytes))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl PartialEq for Tx {
    fn eq(&self, other: &Tx) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for Tx {}

impl std::hash::Hash for Tx {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.bytes.hash(state)
    }
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tx({} bytes, {})", self.bytes.len(), self.hash())
    }
}

/// Decodes `tx` as one `T` through the codec, refusing any encoding but the canonical one, so
/// one transaction has one id (the codec would accept a non-minimal varint).
///
/// The check compares lengths, not bytes: the bytes decoded to the value with nothing left
/// over, every part of an encoding (varint, tag, length) has exactly one shortest form, and
/// the canonical encoding uses it everywhere, so any other encoding of the value is longer.
/// Counting the canonical length allocates nothing.
pub fn decode_canonical<T: serde::Serialize + serde::de::DeserializeOwned>(
    tx: &Tx,
) -> Result<T, Rejection> {
    let value: T = crate::codec::decode(tx.as_bytes()).map_err(Rejection::encoding)?;
    match crate::codec::encoded_len(&value) {
        Ok(canonical) if canonical == tx.as_bytes().len() => Ok(value),
        Ok(_) => Err(Rejection::encoding("not the canonical encoding")),
        Err(e) => Err(Rejection::encoding(e)),
    }
}

/// Why an application refused a transaction or a query. The engine cannot know an
/// application's error type, and the refusal crosses the wire and reaches events and metrics, so
/// it travels as the rule broken (a short stable label, for metrics and tests) and the
/// application's message for people. Applications keep their own typed errors inside and convert
/// at the seam (see the ledger's `TxError`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[error("{rule}: {detail}")]
pub struct Rejection {
    pub rule: String,
    pub detail: String,
}

impl Rejection {
    pub fn new(rule: impl Into<String>, detail: impl std::fmt::Display) -> Rejection {
        Rejection {
            rule: rule.into(),
            detail: detail.to_string(),
        }
    }

    /// The transaction's bytes are not one the application can read.
    pub fn encoding(detail: impl std::fmt::Display) -> Rejection {
        Rejection::new(RULE_ENCODING, detail)
    }
}

/// The rule label of a transaction that does not decode.
pub const RULE_ENCODING: &str = "encoding";
/// The rule label of a transaction whose signature does not verify.
pub const RULE_SIGNATURE: &str = "signature";
/// The rule label of a transaction whose lane has not reached its sequence number yet. Unlike
/// every other refusal it is not final: the sequencer keeps such a transaction queued, since the
/// ones before it may still come.
pub const RULE_SEQUENCE_AHEAD: &str = "sequence_ahead";

/// Where a transaction waits in the mempool: lanes are served in turn, and within a lane only
/// the run of consecutive sequence numbers from the lane's next one is a candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lane {
    pub id: B256,
    pub sequence: u64,
}

/// A key's value after a block (`None`: deleted): what storage persists beside the block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

/// What ending a block gives: the root of the state, and the keys the block changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    pub state_root: B256,
    pub writes: Vec<Write>,
}

/// One key-value pair of a whole exported state.
pub type Entry = (Vec<u8>, Vec<u8>);

/// What an application implements. See the module documentation for the life of a transaction.
///
/// Everything must be deterministic: the same transactions on the same state give the same
/// results, root and writes on every node.
pub trait Application: Send + Sync + 'static {
    /// The state a block executes on. The engine clones it for every block's working copy, so
    /// make a clone cheap (a persistent map, an `Arc`).
    type State: Clone + Send + Sync + 'static;

    /// A short name for status and logs.
    fn kind(&self) -> &'static str;

    /// The state at height 0.
    fn genesis(&self) -> Self::State;

    /// Checks one transaction on its own: everything that does not depend on state.
    fn verify(&self, _tx: &Tx) -> Result<(), Rejection> {
        Ok(())
    }

    /// Where `tx` queues in the mempool; `None` is first come, first served.
    fn lane(&self, _tx: &Tx) -> Result<Option<Lane>, Rejection> {
        Ok(None)
    }

    /// The sequence number `lane` expects next in `state` (lower ones are spent).
    fn next_in_lane(&self, _state: &Self::State, _lane: &B256) -> u64 {
        0
    }

    /// Applies one transaction whose [`Application::verify`] passed. On error, `state` must be
    /// as it was. Returns what the transaction answers its client (empty for none).
    fn execute(&self, state: &mut Self::State, tx: &Tx) -> Result<Vec<u8>, Rejection>;

    /// Ends a block: the state root, and the keys written since the last commit.
    fn commit(&self, state: &mut Self::State) -> Committed;

    /// Answers a read of `state`.
    fn query(&self, state: &Self::State, query: &[u8]) -> Result<Vec<u8>, Rejection>;

    /// Every key-value pair of `state`, in any order.
    fn export(&self, state: &Self::State) -> Vec<Entry>;

    /// The state `export` gave these pairs for.
    fn import(&self, entries: Vec<Entry>) -> Result<Self::State, Rejection>;
}

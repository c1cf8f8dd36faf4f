//! One chain store: the chain's layout in storage (blocks by height, the application keys
//! blocks wrote, the applied position), the applied state in memory, and the wait for new blocks.
//!
//! Raft's state machine and an external node's replica write through [`ChainStore::commit`];
//! RPC, status, serving blocks, the sequencer and the simulator read through the same store.
//! `commit` writes the batch, then publishes the new state, and only then wakes long-polling
//! readers, so a woken reader always sees the block it was woken for.

use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::app::{AppState, Entry, Rejection, Write};
use crate::chain::backfill::Backfill;
use crate::chain::block::{Block, BlockHeader, ChainSpec};
use crate::chain::members::{MemberHistory, Signers};
use crate::chain::rules::{BuildBase, Executed, Head};
use crate::codec::{self, CodecError};
use crate::consensus::raft::types::{LogId, Membership};
use crate::ids::NodeId;
use crate::settlement::batch::{Attestation, BatchCursor, BatchHeader};
use crate::settlement::role::BatcherRole;
use crate::storage::{Column, Durability, Storage, StorageError, WriteBatch};

mod built;
pub(crate) mod certified;
mod outcomes;
mod recent;
#[cfg(test)]
pub(crate) mod testing;
pub(crate) use certified::stage_certificate;
pub use certified::{certificate_key, Serve};
pub use outcomes::Applied;

pub(crate) const KEY_APPLIED: &[u8] = b"sm/applied";
/// The blocks a snapshot jumped over, while any are missing (see [`crate::chain::backfill`]).
pub(crate) const KEY_BACKFILL: &[u8] = b"sm/backfill";
/// The last snapshot built: written synced, so everything applied before it is durable.
pub(crate) const KEY_SNAPSHOT: &[u8] = b"sm/snapshot";
/// Every application key is stored under this prefix, so one range `[STATE_PREFIX,
/// STATE_END)` holds them all whatever their length.
const STATE_PREFIX: u8 = 0;
const STATE_END: [u8; 1] = [STATE_PREFIX + 1];

fn state_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(STATE_PREFIX);
    k.extend_from_slice(key);
    k
}

/// A stored key's value: `None` records that the block deleted a key genesis may hold.
fn stage_write(batch: &mut WriteBatch, write: &Write) -> Result<(), CodecError> {
    batch.put(
        Column::State,
        state_key(&write.key),
        // As bytes, not element by element: the same encoding, written at every block.
        codec::encode(&write.value.as_deref().map(serde_bytes::Bytes::new))?,
    );
    Ok(())
}

/// Replaces every stored application key with `entries` (a whole state).
fn stage_whole_state(batch: &mut WriteBatch, entries: Vec<Entry>) -> Result<(), CodecError> {
    batch.delete_range(Column::State, vec![STATE_PREFIX], STATE_END);
    for (key, value) in entries {
        let value = Some(serde_bytes::Bytes::new(&value));
        batch.put(Column::State, state_key(&key), codec::encode(&value)?);
    }
    Ok(())
}

/// Most blocks one long-poll answer carries, and about how many bytes.
pub const MAX_BLOCKS_PER_RESPONSE: u32 = 256;
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;
/// Longest a long-poll is held.
pub const MAX_WAIT_MS: u32 = 5_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The disk failed the read or write.
    #[error("chain store: {0}")]
    Storage(#[from] StorageError),
    /// A stored value does not decode, or one to store does not encode.
    #[error("chain store: {0}")]
    Codec(#[from] CodecError),
    /// A stored key has the wrong length for what it indexes.
    #[error("chain store: {what} key of {len} bytes")]
    CorruptKey { what: &'static str, len: usize },
    /// The stored state is not the one the applied head committed to: storage lost or
    /// changed a write.
    #[error("chain store: stored state has root {stored}, the applied head committed to {head}")]
    StateRoot {
        head: alloy_primitives::B256,
        stored: alloy_primitives::B256,
    },
    /// The application refused the state stored for it.
    #[error("chain store: stored application state: {0}")]
    State(Rejection),
}

/// What a node has applied.
#[derive(Clone, Debug)]
pub struct ChainState {
    pub head: Head,
    /// The application's state after `head`.
    pub state: AppState,
    /// The Raft entry the state includes (consensus nodes only).
    pub last_applied: Option<LogId>,
    pub membership: Membership,
    /// The signer sets the chain's blocks declared up to `head` (consensus nodes only; see
    /// [`crate::chain::members`]).
    pub members: MemberHistory,
    /// Where cutting L1 batches stands after `head` (consensus nodes only).
    pub batches: BatchCursor,
    /// Who holds the batcher role (consensus nodes only).
    pub batcher_role: BatcherRole,
}

impl ChainState {
    /// What the sequencer builds on when nothing it proposed is in flight.
    pub fn build_base(&self, genesis_members: &[NodeId]) -> BuildBase {
        BuildBase {
            head: self.head,
            state: self.state.clone(),
            batches: self.batches.clone(),
            members: self.signers(genesis_members).current().to_vec(),
        }
    }

    /// The signer set at every height up to the head's next, given the genesis set.
    pub fn signers(&self, genesis_members: &[NodeId]) -> Signers {
        Signers::new(genesis_members, &self.members)
    }
}

/// The applied position, stored next to the chain it describes.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct AppliedMeta {
    pub(crate) head: Head,
    pub(crate) last_applied: Option<LogId>,
    pub(crate) membership: Membership,
    pub(crate) members: MemberHistory,
    pub(crate) batches: BatchCursor,
    pub(crate) batcher_role: BatcherRole,
}

impl AppliedMeta {
    pub(crate) fn of(state: &ChainState) -> AppliedMeta {
        AppliedMeta {
            head: state.head,
            last_applied: state.last_applied,
            membership: state.membership.clone(),
            members: state.members.clone(),
            batches: state.batches.clone(),
            batcher_role: state.batcher_role,
        }
    }
}

pub fn block_key(height: u64) -> [u8; 8] {
    height.to_be_bytes()
}

pub fn batch_key(number: u64) -> [u8; 8] {
    number.to_be_bytes()
}

pub(crate) fn attestation_key(number: u64, signer: &NodeId) -> Vec<u8> {
    let mut k = number.to_be_bytes().to_vec();
    k.extend_from_slice(&signer.0);
    k
}

/// Stages a sealed batch's header, and attestations of it (this node's own as it seals it,
/// or peers' as the batcher collects them).
pub(crate) fn stage_batch(
    batch: &mut WriteBatch,
    header: &BatchHeader,
    attestations: &[Attestation],
) -> Result<(), CodecError> {
    batch.put(
        Column::Batch,
        batch_key(header.number),
        codec::encode(header)?,
    );
    stage_attestations(batch, header.number, attestations)
}

/// Stages a batch this node sealed, with its own attestation (the same signature again if it
/// seals the batch twice: signatures are deterministic), and returns the event that reports it.
pub(crate) fn stage_sealed_batch(
    batch: &mut WriteBatch,
    header: &BatchHeader,
    key: &crate::keys::SecretKey,
) -> Result<crate::events::Event, CodecError> {
    stage_batch(batch, header, &[Attestation::sign(header, key)])?;
    Ok(crate::events::Event::BatchSealed {
        number: header.number,
        first_height: header.first_height,
        last_height: header.last_height,
        state_root: header.state_root,
        commitment: header.commitment(),
    })
}

/// Stages attestations of batch `number`.
pub(crate) fn stage_attestations(
    batch: &mut WriteBatch,
    number: u64,
    attestations: &[Attestation],
) -> Result<(), CodecError> {
    for a in attestations {
        batch.put(
            Column::Attestation,
            attestation_key(number, &a.signer),
            codec::encode(&a.signature)?,
        );
    }
    Ok(())
}

/// Stages a verified block's writes (the application's, the block) and returns its head. One
/// function for consensus apply and external replay, so both store a block identically.
pub(crate) fn stage_block(
    batch: &mut WriteBatch,
    block: &Block,
    executed: &Executed,
) -> Result<Head, CodecError> {
    for write in &executed.writes {
        stage_write(batch, write)?;
    }
    stage_block_alone(batch, block)?;
    Head::of(&block.header)
}

/// Stages the applied position of `state`, to be written in the same batch as its blocks.
pub(crate) fn stage_applied(batch: &mut WriteBatch, state: &ChainState) -> Result<(), CodecError> {
    batch.put(
        Column::Meta,
        KEY_APPLIED,
        codec::encode(&AppliedMeta::of(state))?,
    );
    Ok(())
}

/// Stages the applied state of an installed snapshot: every application key replaced by
/// `state`'s, the applied position moved to `state`. Stored blocks stay: they are a prefix of
/// the chain the snapshot's head ends (the gap between is backfilled).
pub(crate) fn stage_snapshot_state(
    batch: &mut WriteBatch,
    state: &ChainState,
) -> Result<(), CodecError> {
    stage_whole_state(batch, state.state.export())?;
    stage_applied(batch, state)
}

/// Stages a block without the state it wrote: a backfilled one (checked by the hash chain;
/// its state came with the snapshot), or as part of [`stage_block`].
pub(crate) fn stage_block_alone(batch: &mut WriteBatch, block: &Block) -> Result<(), CodecError> {
    batch.put(
        Column::Block,
        block_key(block.header.height),
        codec::encode(block)?,
    );
    Ok(())
}

fn stage_backfill(batch: &mut WriteBatch, backfill: Option<&Backfill>) -> Result<(), CodecError> {
    match backfill {
        Some(b) => batch.put(Column::Meta, KEY_BACKFILL, codec::encode(b)?),
        None => batch.delete(Column::Meta, KEY_BACKFILL),
    }
    Ok(())
}

/// Stages cutting the chain back to `height`: blocks above it deleted, every application key
/// rewritten as `state` holds it, the applied position moved to `state`'s head.
pub(crate) fn stage_truncation(
    batch: &mut WriteBatch,
    height: u64,
    state: &ChainState,
) -> Result<(), CodecError> {
    batch.delete_range(Column::Block, block_key(height + 1), [0xff; 9]);
    stage_whole_state(batch, state.state.export())?;
    stage_applied(batch, state)
}

/// Stored blocks `from..=to` of a bare storage, at most `max` of them and about `max_bytes`
/// in all (at least one).
pub fn read_blocks(
    storage: &dyn Storage,
    from: u64,
    to: u64,
    max: usize,
    max_bytes: usize,
) -> Result<Vec<Block>, StoreError> {
    read_stored(storage, from, to, max, max_bytes, codec::decode::<Block>)
}

/// The headers of the stored blocks `from..=to` (at most `max`), decoded from the front of
/// each stored block without its transactions: what hashes and heights need.
pub fn read_headers(
    storage: &dyn Storage,
    from: u64,
    to: u64,
    max: usize,
) -> Result<Vec<BlockHeader>, StoreError> {
    read_stored(
        storage,
        from,
        to,
        max,
        usize::MAX,
        codec::decode_prefix::<BlockHeader>,
    )
}

/// A contiguous run of stored blocks from `from`, each decoded by `decode`.
fn read_stored<T>(
    storage: &dyn Storage,
    from: u64,
    to: u64,
    max: usize,
    max_bytes: usize,
    decode: fn(&[u8]) -> Result<T, CodecError>,
) -> Result<Vec<T>, StoreError> {
    if from > to || max == 0 {
        return Ok(Vec::new());
    }
    let rows = storage.scan(
        Column::Block,
        &block_key(from),
        &block_key(to.saturating_add(1)),
        max,
    )?;
    let mut out = Vec::with_capacity(rows.len());
    let mut bytes = 0usize;
    for (expected, (k, v)) in (from..).zip(rows) {
        // A snapshot leaves a gap until it is backfilled: an answer stops at the first
        // missing height, so every reader gets a contiguous run.
        if k.as_slice() != block_key(expected) {
            break;
        }
        if !out.is_empty() && bytes + v.len() > max_bytes {
            break;
        }
        bytes += v.len();
        out.push(decode(&v)?);
    }
    Ok(out)
}

/// Loads the applied state from storage, or genesis for an empty store.
fn load(storage: &dyn Storage, spec: &ChainSpec) -> Result<ChainState, StoreError> {
    let meta = storage
        .get(Column::Meta, KEY_APPLIED)?
        .map(|bytes| codec::decode::<AppliedMeta>(&bytes))
        .transpose()?;
    let Some(meta) = meta else {
        let genesis = spec.genesis_header()?;
        return Ok(ChainState {
            head: Head::of(&genesis)?,
            state: spec.genesis_state(),
            last_applied: None,
            membership: Membership::default(),
            members: MemberHistory::default(),
            batches: BatchCursor::default(),
            batcher_role: BatcherRole::default(),
        });
    };
    // Storage holds only keys a block wrote (or a snapshot installed); the rest are as genesis
    // left them.
    let mut entries: std::collections::BTreeMap<Vec<u8>, Vec<u8>> =
        spec.genesis_state().export().into_iter().collect();
    for (k, v) in storage.scan(Column::State, &[STATE_PREFIX], &STATE_END, usize::MAX)? {
        let Some(key) = k.get(1..) else {
            return Err(StoreError::CorruptKey {
                what: "state",
                len: k.len(),
            });
        };
        match codec::decode::<Option<serde_bytes::ByteBuf>>(&v)? {
            Some(value) => entries.insert(key.to_vec(), value.into_vec()),
            None => entries.remove(key),
        };
    }
    let state = spec
        .app
        .import(entries.into_iter().collect())
        .map_err(StoreError::State)?;
    let stored = state.root();
    if stored != meta.head.state_root {
        return Err(StoreError::StateRoot {
            head: meta.head.state_root,
            stored,
        });
    }
    Ok(ChainState {
        head: meta.head,
        state,
        last_applied: meta.last_applied,
        membership: meta.membership,
        members: meta.members,
        batches: meta.batches,
        batcher_role: meta.batcher_role,
    })
}

pub struct ChainStore {
    storage: Arc<dyn Storage>,
    blocks_per_batch: u64,
    state: RwLock<ChainState>,
    /// Woken after each commit is published.
    published: Notify,
    /// The gap a snapshot left, while any block of it is missing. Held across the write that
    /// changes it: the state machine (installing) and the backfill task (filling) both do.
    backfill: Mutex<Option<Backfill>>,
    /// Signalled when a snapshot leaves a gap to fill.
    backfill_due: Notify,
    /// See [`ChainStore::certified_through`].
    certified: Mutex<u64>,
    /// Clients waiting for their transactions' answers (see [`ChainStore::await_applied`]).
    waiters: outcomes::Waiters,
    /// What this node's own blocks executed to (see [`ChainStore::take_built`]).
    built: built::BuiltBlocks,
    /// The newest stored blocks' hashes (see [`ChainStore::held_hashes`]).
    recent: recent::RecentHashes,
}

impl ChainStore {
    /// Opens the chain stored in `storage` (genesis for an empty store).
    pub fn open(storage: Arc<dyn Storage>, spec: &ChainSpec) -> Result<ChainStore, StoreError> {
        let state = load(&*storage, spec)?;
        let backfill = storage
            .get(Column::Meta, KEY_BACKFILL)?
            .map(|bytes| codec::decode::<Backfill>(&bytes))
            .transpose()?;
        let backfill_due = Notify::new();
        if backfill.is_some() {
            backfill_due.notify_one();
        }
        let certified = Mutex::new(ChainStore::load_certified(&*storage)?);
        Ok(ChainStore {
            certified,
            storage,
            blocks_per_batch: spec.blocks_per_batch,
            state: RwLock::new(state),
            published: Notify::new(),
            backfill: Mutex::new(backfill),
            backfill_due,
            waiters: outcomes::Waiters::default(),
            built: built::BuiltBlocks::default(),
            recent: recent::RecentHashes::default(),
        })
    }

    /// Attestations of batch `number` collected from peers. Buffered: a crash loses them and
    /// they are collected again.
    pub fn add_attestations(
        &self,
        number: u64,
        attestations: &[Attestation],
    ) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        stage_attestations(&mut batch, number, attestations)?;
        self.storage.write(batch, Durability::Buffered)?;
        Ok(())
    }

    /// Records the snapshot about to be built (its last applied entry and height), synced. A
    /// synced write flushes every buffered one before it, as fsync does, so everything applied
    /// so far is durable before openraft purges the log that was its write-ahead log.
    pub fn sync_for_snapshot(
        &self,
        last_applied: Option<LogId>,
        height: u64,
    ) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        batch.put(
            Column::Meta,
            KEY_SNAPSHOT,
            codec::encode(&(last_applied, height))?,
        );
        self.storage.write(batch, Durability::Synced)?;
        Ok(())
    }

    /// Stored blocks `from..=to`, at most `max` and about `max_bytes`, stopping at the first
    /// missing height. Unlike [`ChainStore::blocks`] it may read below an open gap's top.
    pub fn blocks_between(
        &self,
        from: u64,
        to: u64,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<Block>, StoreError> {
        read_blocks(&*self.storage, from.max(1), to, max, max_bytes)
    }

    /// The chain's rule for cutting L1 batches.
    pub fn blocks_per_batch(&self) -> u64 {
        self.blocks_per_batch
    }

    /// The sealed batch `number`, if this node sealed it.
    pub fn batch(&self, number: u64) -> Result<Option<BatchHeader>, StoreError> {
        Ok(self
            .storage
            .get(Column::Batch, &batch_key(number))?
            .map(|v| codec::decode::<BatchHeader>(&v))
            .transpose()?)
    }

    /// The attestations of batch `number` this node holds (its own and those it collected),
    /// in signer order.
    pub fn attestations(&self, number: u64) -> Result<Vec<Attestation>, StoreError> {
        let rows = self.storage.scan(
            Column::Attestation,
            &batch_key(number),
            &batch_key(number.saturating_add(1)),
            usize::MAX,
        )?;
        let mut out = Vec::with_capacity(rows.len());
        for (k, v) in rows {
            let id: [u8; 64] =
                k.get(8..)
                    .and_then(|s| s.try_into().ok())
                    .ok_or(StoreError::CorruptKey {
                        what: "attestation",
                        len: k.len(),
                    })?;
            out.push(Attestation {
                signer: NodeId(id),
                signature: codec::decode(&v)?,
            });
        }
        Ok(out)
    }

    /// The store underneath (to report damage found above it).
    pub(crate) fn storage(&self) -> &dyn Storage {
        &*self.storage
    }

    fn backfill_guard(&self) -> MutexGuard<'_, Option<Backfill>> {
        crate::sync::lock(&self.backfill)
    }

    /// The gap a snapshot left, while any block of it is missing or its batches are not cut.
    pub fn backfill(&self) -> Option<Backfill> {
        self.backfill_guard().clone()
    }

    /// Blocks below the head this node does not hold yet (a snapshot's gap).
    pub fn blocks_missing(&self) -> u64 {
        self.backfill_guard()
            .as_ref()
            .map_or(0, Backfill::missing_blocks)
    }

    /// Resolves once a gap may be waiting (at once if one was left before the last wait).
    pub async fn backfill_due(&self) {
        self.backfill_due.notified().await
    }

    /// Installs a snapshot's state: `batch` (which must stage `next`'s state and applied
    /// position) is written synced along with the gap it leaves between the applied head and
    /// `next`'s, which it returns. The gap is worked out under the lock the backfill task
    /// writes under, so a step it takes meanwhile is never overwritten.
    pub(crate) fn install(
        &self,
        mut batch: WriteBatch,
        next: ChainState,
    ) -> Result<Option<Backfill>, StoreError> {
        let mut gap = self.backfill_guard();
        let backfill = {
            let old = self.state();
            Backfill::after_snapshot(
                gap.as_ref(),
                &old.head,
                &old.batches,
                &next.head,
                &next.batches,
            )
        };
        stage_backfill(&mut batch, backfill.as_ref())?;
        self.commit(batch, next, Durability::Synced)?;
        *gap = backfill.clone();
        drop(gap);
        if backfill.is_some() {
            self.backfill_due.notify_one();
        }
        Ok(backfill)
    }

    /// Writes `batch` (backfilled blocks, re-cut batches) with the gap's record moved from
    /// `expected` to `next`, unless a snapshot installed meanwhile changed it: then nothing is
    /// written and `false` comes back (the work is redone against the new gap).
    pub(crate) fn commit_backfill(
        &self,
        mut batch: WriteBatch,
        expected: &Backfill,
        next: Option<Backfill>,
    ) -> Result<bool, StoreError> {
        let mut gap = self.backfill_guard();
        if gap.as_ref() != Some(expected) {
            return Ok(false);
        }
        stage_backfill(&mut batch, next.as_ref())?;
        // Buffered: a crash loses the blocks and the record's move together.
        self.storage.write(batch, Durability::Buffered)?;
        *gap = next;
        drop(gap);
        self.published.notify_waiters();
        Ok(true)
    }

    /// The applied state; hold the guard briefly (writers wait for it).
    pub fn state(&self) -> RwLockReadGuard<'_, ChainState> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn head(&self) -> Head {
        self.state().head
    }

    /// The application's answer to `query` from the applied state, with the height it was
    /// read at. The state is cloned out of the lock first, so a long read holds up no writer.
    pub fn query(&self, query: &[u8]) -> (Result<Vec<u8>, Rejection>, u64) {
        let (state, height) = {
            let s = self.state();
            (s.state.clone(), s.head.height)
        };
        (state.query(query), height)
    }

    /// The stored block at `height`; `None` above the head and for genesis (height 0, which
    /// has a header but no stored block: see [`ChainSpec::genesis_header`]).
    pub fn block(&self, height: u64) -> Result<Option<Block>, StoreError> {
        if height == 0 || height > self.head().height {
            return Ok(None);
        }
        Ok(read_blocks(&*self.storage, height, height, 1, usize::MAX)?.pop())
    }

    /// Stored blocks from `from` up to the head, at most `max` and about `max_bytes`.
    pub fn blocks(
        &self,
        from: u64,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<Block>, StoreError> {
        self.blocks_between(from, self.head().height, max, max_bytes)
    }

    /// Writes `batch` (which must stage `next`'s applied position along with its blocks),
    /// makes `next` the state every reader sees, then wakes long-polling readers. Nothing
    /// changes in memory if the write fails.
    pub(crate) fn commit(
        &self,
        batch: WriteBatch,
        next: ChainState,
        durability: Durability,
    ) -> Result<(), StorageError> {
        let staged = recent::RecentHashes::staged(&batch)
            .map_err(|e| StorageError::Failed(format!("a block staged by this node: {e}")))?;
        self.storage.write(batch, durability)?;
        self.recent.written(staged);
        *self.state.write().unwrap_or_else(|p| p.into_inner()) = next;
        self.published.notify_waiters();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    /// State values encode as byte strings: the bytes stored before (element by element)
    /// read back, and a tombstone stays a tombstone.
    #[test]
    fn stored_state_values_encode_as_they_did() {
        let value = vec![7u8; 300];
        let now = codec::encode(&Some(serde_bytes::Bytes::new(&value))).unwrap();
        assert_eq!(now, codec::encode(&Some(value.clone())).unwrap());
        let back: Option<serde_bytes::ByteBuf> = codec::decode(&now).unwrap();
        assert_eq!(back.map(|b| b.into_vec()), Some(value));
        let gone = codec::encode(&None::<&serde_bytes::Bytes>).unwrap();
        assert_eq!(gone, codec::encode(&None::<Vec<u8>>).unwrap());
    }

    use std::future::Future;
    use std::time::Duration;

    use super::testing::grow;
    use super::*;
    use crate::keys::derived_key;
    use crate::storage::MemDisk;

    /// A waker that reads the store's head at the moment it is woken.
    struct HeadAtWake {
        store: Arc<ChainStore>,
        seen: std::sync::Mutex<Vec<u64>>,
    }

    impl std::task::Wake for HeadAtWake {
        fn wake(self: Arc<Self>) {
            let h = self.store.head().height;
            crate::sync::lock(&self.seen).push(h);
        }
    }

    /// A long-poll woken by a commit must see the block it was woken for. On tokio's
    /// multi-threaded runtime a woken reader may run on another worker before the committing
    /// thread takes its next step; when waiters were woken before the new head was published,
    /// such a reader re-read the old head and slept out its whole wait. The probe reads the
    /// head inside `wake` itself, the earliest any woken reader can, so the order is checked
    /// every time rather than when the race happens to be lost.
    #[test]
    fn a_woken_long_poll_sees_the_new_head_on_a_multi_threaded_runtime() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let spec = ChainSpec {
                chain_id: 7,
                app: crate::app::App::new(crate::app::ledger::LedgerApp::default()),
                blocks_per_batch: crate::chain::block::DEFAULT_BLOCKS_PER_BATCH,
            };
            let store = Arc::new(ChainStore::open(Arc::new(MemDisk::new()), &spec).expect("open"));
            let key = derived_key("chain-store-test", 0);
            for height in 1..=20u64 {
                let probe = Arc::new(HeadAtWake {
                    store: store.clone(),
                    seen: std::sync::Mutex::new(Vec::new()),
                });
                let waker = std::task::Waker::from(probe.clone());
                let mut cx = std::task::Context::from_waker(&waker);
                let mut polled = Box::pin(store.wait_for_served::<openraft::TokioRuntime>(
                    height,
                    1,
                    1_000,
                    Serve::All,
                ));
                assert!(polled.as_mut().poll(&mut cx).is_pending());
                // Real readers parked on other workers, as block downloads are.
                let readers: Vec<_> = (0..4)
                    .map(|_| {
                        let store = store.clone();
                        tokio::spawn(async move {
                            store
                                .wait_for_served::<openraft::TokioRuntime>(
                                    height,
                                    1,
                                    1_000,
                                    Serve::All,
                                )
                                .await
                                .expect("read")
                                .len()
                        })
                    })
                    .collect();
                tokio::time::sleep(Duration::from_millis(2)).await;
                let (s, k) = (store.clone(), key.clone());
                tokio::task::spawn_blocking(move || grow(&s, &k))
                    .await
                    .expect("commit");
                let seen = crate::sync::lock(&probe.seen).clone();
                assert_eq!(
                    seen.first(),
                    Some(&height),
                    "a reader woken for height {height} saw the head at {seen:?}"
                );
                match polled.as_mut().poll(&mut cx) {
                    std::task::Poll::Ready(Ok(blocks)) => assert_eq!(blocks.len(), 1),
                    other => panic!("the woken reader did not get block {height}: {other:?}"),
                }
                for r in readers {
                    assert_eq!(r.await.expect("reader"), 1, "height {height}");
                }
            }
        });
    }
}

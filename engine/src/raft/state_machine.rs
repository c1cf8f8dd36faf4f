//! The replicated state machine: applies canonized blocks with the deterministic executor and
//! stores block, touched accounts and the applied position in one atomic batch, so a node's
//! chain and state can never disagree after a crash.
//!
//! Applied batches are buffered, not synced: the synced Raft log and commit index are the
//! write-ahead log. A crash may lose the newest applied blocks from this store; on restart
//! openraft re-applies them from the log, deterministically, to the same hashes.

use std::io::Cursor;
use std::marker::PhantomData;
use std::sync::{Arc, RwLock};

use alloy_primitives::Address;
use openraft::storage::RaftStateMachine;
use openraft::{
    AsyncRuntime, EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, Snapshot,
    SnapshotMeta, StorageError,
};
use serde::{Deserialize, Serialize};

use super::{io_err, ApplyOutcome, Canon, LogId, Membership};
use crate::block::{Block, ChainSpec};
use crate::chain::{self, BlockError, Head};
use crate::codec;
use crate::events::{Event, EventSink};
use crate::ids::NodeId;
use crate::ledger::{Account, Executed, Ledger};
use crate::storage::{Column, Durability, Storage, WriteBatch};

const KEY_APPLIED: &[u8] = b"sm/applied";

/// What a node has applied, shared read-only with the sequencer and status endpoints.
#[derive(Clone, Debug)]
pub struct ChainState {
    pub head: Head,
    pub ledger: Ledger,
    pub last_applied: Option<LogId>,
    pub membership: Membership,
}

/// The applied position, stored next to the chain it describes.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct AppliedMeta {
    head: Head,
    last_applied: Option<LogId>,
    membership: Membership,
}

/// A full snapshot: every block, the ledger and the applied position.
#[derive(Serialize, Deserialize)]
struct SnapshotPayload {
    meta: AppliedMeta,
    accounts: Vec<(Address, Account)>,
    blocks: Vec<Block>,
}

pub fn block_key(height: u64) -> [u8; 8] {
    height.to_be_bytes()
}

/// Stages a verified block's writes (touched accounts, the block) and returns its head. One
/// function for consensus apply and external replay, so both store a block identically.
pub fn stage_block(
    batch: &mut WriteBatch,
    block: &Block,
    executed: &Executed,
) -> Result<Head, codec::CodecError> {
    for (addr, acc) in executed.touched_accounts() {
        batch.put(Column::Account, addr.as_slice(), codec::encode(&acc)?);
    }
    batch.put(
        Column::Block,
        block_key(block.header.height),
        codec::encode(block)?,
    );
    Head::of(&block.header)
}

/// The stored applied position of `state`, written in the same batch as its blocks.
pub fn stage_applied(batch: &mut WriteBatch, state: &ChainState) -> Result<(), codec::CodecError> {
    let meta = codec::encode(&AppliedMeta {
        head: state.head,
        last_applied: state.last_applied,
        membership: state.membership.clone(),
    })?;
    batch.put(Column::Meta, KEY_APPLIED, meta);
    Ok(())
}

/// Stored blocks `from..=to`, at most `max` of them and about `max_bytes` in all (at least one).
pub fn read_blocks(
    storage: &dyn Storage,
    from: u64,
    to: u64,
    max: usize,
    max_bytes: usize,
) -> Result<Vec<Block>, String> {
    if from > to || max == 0 {
        return Ok(Vec::new());
    }
    let rows = storage
        .scan(
            Column::Block,
            &block_key(from),
            &block_key(to.saturating_add(1)),
            max,
        )
        .map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(rows.len());
    let mut bytes = 0usize;
    for (_, v) in rows {
        if !out.is_empty() && bytes + v.len() > max_bytes {
            break;
        }
        bytes += v.len();
        out.push(codec::decode::<Block>(&v).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

pub type SharedChain = Arc<RwLock<ChainState>>;

pub fn read_chain(shared: &SharedChain) -> std::sync::RwLockReadGuard<'_, ChainState> {
    shared.read().unwrap_or_else(|p| p.into_inner())
}

fn write_chain(shared: &SharedChain) -> std::sync::RwLockWriteGuard<'_, ChainState> {
    shared.write().unwrap_or_else(|p| p.into_inner())
}

/// Loads the applied chain state from storage, or genesis for an empty store.
pub fn load_chain_state(
    storage: &dyn Storage,
    spec: &ChainSpec,
) -> Result<ChainState, StorageError<NodeId>> {
    let err = |e: String| io_err(ErrorSubject::StateMachine, ErrorVerb::Read, e);
    let meta = match storage
        .get(Column::Meta, KEY_APPLIED)
        .map_err(|e| err(e.to_string()))?
    {
        Some(bytes) => Some(codec::decode::<AppliedMeta>(&bytes).map_err(|e| err(e.to_string()))?),
        None => None,
    };
    let Some(meta) = meta else {
        let genesis = spec.genesis_header().map_err(|e| err(e.to_string()))?;
        return Ok(ChainState {
            head: Head::of(&genesis).map_err(|e| err(e.to_string()))?,
            ledger: spec.genesis_ledger(),
            last_applied: None,
            membership: Membership::default(),
        });
    };
    let rows = storage
        .scan(Column::Account, &[], &[0xff; 21], usize::MAX)
        .map_err(|e| err(e.to_string()))?;
    // Storage holds only accounts a block wrote; the rest are as genesis left them.
    let mut accounts: std::collections::BTreeMap<Address, Account> = spec
        .genesis_ledger()
        .accounts()
        .map(|(a, acc)| (*a, *acc))
        .collect();
    for (k, v) in rows {
        let addr = Address::try_from(k.as_slice()).map_err(|e| err(e.to_string()))?;
        accounts.insert(
            addr,
            codec::decode::<Account>(&v).map_err(|e| err(e.to_string()))?,
        );
    }
    Ok(ChainState {
        head: meta.head,
        ledger: Ledger::from_accounts(accounts),
        last_applied: meta.last_applied,
        membership: meta.membership,
    })
}

pub struct StateMachine<RT> {
    storage: Arc<dyn Storage>,
    node: NodeId,
    peers: Vec<NodeId>,
    events: Arc<dyn EventSink>,
    shared: SharedChain,
    /// Woken after every applied entry: long-polling block downloads wait on it.
    applied: Arc<tokio::sync::Notify>,
    _rt: PhantomData<fn() -> RT>,
}

impl<RT> Clone for StateMachine<RT> {
    fn clone(&self) -> Self {
        StateMachine {
            storage: self.storage.clone(),
            node: self.node,
            peers: self.peers.clone(),
            events: self.events.clone(),
            shared: self.shared.clone(),
            applied: self.applied.clone(),
            _rt: PhantomData,
        }
    }
}

type C<RT> = Canon<RT>;
type Entry<RT> = openraft::Entry<Canon<RT>>;

impl<RT: AsyncRuntime> StateMachine<RT> {
    /// `shared` must already hold what [`load_chain_state`] read from `storage`.
    pub fn new(
        storage: Arc<dyn Storage>,
        node: NodeId,
        peers: Vec<NodeId>,
        events: Arc<dyn EventSink>,
        shared: SharedChain,
        applied: Arc<tokio::sync::Notify>,
    ) -> Self {
        StateMachine {
            storage,
            node,
            peers,
            events,
            shared,
            applied,
            _rt: PhantomData,
        }
    }

    fn write(&self, batch: WriteBatch, durability: Durability) -> Result<(), StorageError<NodeId>> {
        self.storage.write(batch, durability).map_err(|e| {
            self.events.emit(
                &self.node,
                Event::StorageFailed {
                    reason: e.to_string(),
                },
            );
            io_err(ErrorSubject::StateMachine, ErrorVerb::Write, e)
        })
    }

    fn apply_one(&self, entry: Entry<RT>) -> Result<Option<ApplyOutcome>, StorageError<NodeId>> {
        let log_id = entry.log_id;
        let mut next = read_chain(&self.shared).clone();
        next.last_applied = Some(log_id);
        let mut batch = WriteBatch::default();
        let outcome = match entry.payload {
            EntryPayload::Blank => None,
            EntryPayload::Membership(m) => {
                next.membership = Membership::new(Some(log_id), m);
                None
            }
            EntryPayload::Normal(block) => {
                Some(self.execute(&mut next, &mut batch, log_id, block)?)
            }
        };
        stage_applied(&mut batch, &next)
            .map_err(|e| io_err(ErrorSubject::StateMachine, ErrorVerb::Write, e))?;
        self.write(batch, Durability::Buffered)?;
        self.applied.notify_waiters();
        *write_chain(&self.shared) = next;
        if outcome.is_none() {
            self.events.emit(
                &self.node,
                Event::EntryApplied {
                    index: log_id.index,
                },
            );
        }
        Ok(outcome)
    }

    fn execute(
        &self,
        next: &mut ChainState,
        batch: &mut WriteBatch,
        log_id: LogId,
        block: Block,
    ) -> Result<ApplyOutcome, StorageError<NodeId>> {
        let h = &block.header;
        // A block must come from the leader that appended it: with one leader per term
        // (openraft's `single-term-leader`), the entry's term names that leader, so a stale
        // proposal carried into a later term cannot masquerade as the new leader's.
        let verdict = if h.term != log_id.leader_id.term {
            Err(BlockError::WrongLeader {
                header: h.term,
                log: log_id.leader_id.term,
                proposer: h.proposer,
            })
        } else {
            chain::verify_block(&next.head, &next.ledger, &self.peers, &block)
        };
        let executed = match verdict {
            Ok(x) => x,
            Err(e) => {
                self.events.emit(
                    &self.node,
                    Event::EntryRejected {
                        index: log_id.index,
                        height: h.height,
                        reason: e.to_string(),
                    },
                );
                return Ok(ApplyOutcome::Rejected(e));
            }
        };
        let enc_err =
            |e: codec::CodecError| io_err(ErrorSubject::Apply(log_id), ErrorVerb::Write, e);
        let head = stage_block(batch, &block, &executed).map_err(enc_err)?;
        self.events.emit(
            &self.node,
            Event::BlockApplied {
                index: log_id.index,
                height: h.height,
                hash: head.hash,
                parent_hash: h.parent_hash,
                state_root: h.state_root,
                timestamp_ms: h.timestamp_ms,
                term: h.term,
                proposer: h.proposer,
                transactions: block.transactions.len(),
            },
        );
        next.head = head;
        next.ledger = executed.ledger;
        Ok(ApplyOutcome::Applied {
            height: head.height,
            hash: head.hash,
        })
    }

    fn snapshot_now(&self) -> Result<Snapshot<C<RT>>, StorageError<NodeId>> {
        let state = read_chain(&self.shared).clone();
        let err = |e: String| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, e);
        let mut blocks = Vec::new();
        let rows = self
            .storage
            .scan(
                Column::Block,
                &block_key(1),
                &block_key(state.head.height + 1),
                usize::MAX,
            )
            .map_err(|e| err(e.to_string()))?;
        for (_, v) in rows {
            blocks.push(codec::decode::<Block>(&v).map_err(|e| err(e.to_string()))?);
        }
        let payload = SnapshotPayload {
            meta: AppliedMeta {
                head: state.head,
                last_applied: state.last_applied,
                membership: state.membership.clone(),
            },
            accounts: state.ledger.accounts().map(|(a, acc)| (*a, *acc)).collect(),
            blocks,
        };
        let data = codec::encode(&payload).map_err(|e| err(e.to_string()))?;
        let snapshot_id = match state.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, state.head.height),
            None => format!("empty-{}", state.head.height),
        };
        Ok(Snapshot {
            meta: SnapshotMeta {
                last_log_id: state.last_applied,
                last_membership: state.membership,
                snapshot_id,
            },
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl<RT: AsyncRuntime> RaftSnapshotBuilder<C<RT>> for StateMachine<RT> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<C<RT>>, StorageError<NodeId>> {
        self.snapshot_now()
    }
}

impl<RT: AsyncRuntime> RaftStateMachine<C<RT>> for StateMachine<RT> {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError<NodeId>> {
        let s = read_chain(&self.shared);
        Ok((s.last_applied, s.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<ApplyOutcome>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<RT>> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        for entry in entries {
            out.push(self.apply_one(entry)?.unwrap_or(ApplyOutcome::Control));
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, openraft::EmptyNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let err = |e: String| {
            io_err(
                ErrorSubject::Snapshot(Some(meta.signature())),
                ErrorVerb::Write,
                e,
            )
        };
        let payload: SnapshotPayload =
            codec::decode(snapshot.get_ref()).map_err(|e| err(e.to_string()))?;
        let mut batch = WriteBatch::default();
        batch.delete_range(Column::Block, block_key(0), [0xff; 9]);
        batch.delete_range(Column::Account, Vec::new(), [0xff; 21]);
        for block in &payload.blocks {
            batch.put(
                Column::Block,
                block_key(block.header.height),
                codec::encode(block).map_err(|e| err(e.to_string()))?,
            );
        }
        for (addr, acc) in &payload.accounts {
            batch.put(
                Column::Account,
                addr.as_slice(),
                codec::encode(acc).map_err(|e| err(e.to_string()))?,
            );
        }
        let state = ChainState {
            head: payload.meta.head,
            ledger: Ledger::from_accounts(payload.accounts.iter().copied()),
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
        };
        stage_applied(&mut batch, &state).map_err(|e| err(e.to_string()))?;
        // A snapshot may stand in for purged log entries: it must be durable on its own.
        self.write(batch, Durability::Synced)?;
        *write_chain(&self.shared) = state;
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<C<RT>>>, StorageError<NodeId>> {
        self.snapshot_now().map(Some)
    }
}

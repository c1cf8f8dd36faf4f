//! The replicated state machine: applies canonized blocks with the deterministic executor and
//! commits block, touched accounts and the applied position to the [`ChainStore`] in one
//! atomic batch, so a node's chain and state can never disagree after a crash.
//!
//! Applied batches are buffered, not synced: the synced Raft log and commit index are the
//! write-ahead log. A crash may lose the newest applied blocks from this store; on restart
//! openraft re-applies them from the log, deterministically, to the same hashes.

use std::io::Cursor;
use std::marker::PhantomData;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    AsyncRuntime, EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, Snapshot,
    SnapshotMeta, StorageError,
};
use serde::{Deserialize, Serialize};

use super::types::{io_err, ApplyOutcome, Canon, Command, LogId, Membership, PeerNode};
use crate::app::Entry as StateEntry;
use crate::chain::backfill::Backfill;
use crate::chain::block::Block;
use crate::chain::members;
use crate::chain::rules::{self, BlockError};
use crate::chain::signatures::Signatures;
use crate::chain::store::{
    stage_applied, stage_block, stage_sealed_batch, stage_snapshot_state, AppliedMeta, ChainState,
    ChainStore,
};
use crate::codec;
use crate::events::{Event, EventSink};
use crate::ids::NodeId;
use crate::keys::SecretKey;
use crate::settlement::batch::BatchHeader;
use crate::storage::{Durability, WriteBatch};

/// A snapshot is the applied state without the blocks: the head, the application's every
/// key-value pair, the batch
/// cursor and the batcher role. A node that installs one fetches the blocks it lacks by the
/// block-download protocol ([`crate::chain::backfill`]), so a snapshot's size follows the state, not
/// the chain.
#[derive(Serialize, Deserialize)]
struct SnapshotPayload {
    meta: AppliedMeta,
    state: Vec<StateEntry>,
}

/// What each transaction of an applied block answered, in order.
type Outputs = Vec<Vec<u8>>;

pub struct StateMachine<RT> {
    chain: Arc<ChainStore>,
    node: NodeId,
    /// Signs each batch this node seals: its attestation.
    key: SecretKey,
    /// The chain's signer set at genesis (`consensus_peer_ids`).
    genesis_members: Vec<NodeId>,
    events: Arc<dyn EventSink>,
    /// Held by every clone of this instance (openraft's state machine worker, its snapshot
    /// builders): gone once the last of them is (see [`StateMachine::instance`]).
    instance: Arc<()>,
    _rt: PhantomData<fn() -> RT>,
}

impl<RT> Clone for StateMachine<RT> {
    fn clone(&self) -> Self {
        StateMachine {
            chain: self.chain.clone(),
            node: self.node,
            key: self.key.clone(),
            genesis_members: self.genesis_members.clone(),
            events: self.events.clone(),
            instance: self.instance.clone(),
            _rt: PhantomData,
        }
    }
}

type C<RT> = Canon<RT>;
type Entry<RT> = openraft::Entry<Canon<RT>>;

impl<RT: AsyncRuntime> StateMachine<RT> {
    pub fn new(
        chain: Arc<ChainStore>,
        key: SecretKey,
        genesis_members: Vec<NodeId>,
        events: Arc<dyn EventSink>,
    ) -> Self {
        StateMachine {
            chain,
            node: key.node_id(),
            key,
            genesis_members,
            events,
            instance: Arc::new(()),
            _rt: PhantomData,
        }
    }

    /// Whether this instance, or any clone of it, still exists. `Raft::shutdown` in openraft
    /// 0.9 waits for the Raft core only: its state machine worker goes on applying what was
    /// queued, and a snapshot build goes on, after it returns. A fresh instance over the same
    /// chain must not start before they end, or it reads the applied index they are moving
    /// and applies the same entries again.
    pub fn instance(&self) -> std::sync::Weak<()> {
        Arc::downgrade(&self.instance)
    }

    fn commit(
        &self,
        batch: WriteBatch,
        next: ChainState,
        durability: Durability,
    ) -> Result<(), StorageError<NodeId>> {
        self.chain.commit(batch, next, durability).map_err(|e| {
            io_err(
                ErrorSubject::StateMachine,
                ErrorVerb::Write,
                self.storage_failed(e),
            )
        })
    }

    fn apply_one(&self, entry: Entry<RT>) -> Result<Option<ApplyOutcome>, StorageError<NodeId>> {
        let log_id = entry.log_id;
        let mut next = self.chain.state().clone();
        next.last_applied = Some(log_id);
        let mut batch = WriteBatch::default();
        // An applied block and what its transactions answered, for waiting clients.
        let mut answered = None;
        let outcome = match entry.payload {
            EntryPayload::Blank => None,
            EntryPayload::Membership(m) => {
                next.membership = Membership::new(Some(log_id), m);
                None
            }
            EntryPayload::Normal(Command::Block(block)) => {
                let (outcome, outputs) = self.execute(&mut next, &mut batch, log_id, &block)?;
                answered = outputs.map(|o| (block, o));
                Some(outcome)
            }
            EntryPayload::Normal(Command::ClaimBatcher(claim)) => {
                let outcome = match next.batcher_role.apply(&claim) {
                    Ok(()) => ApplyOutcome::Claimed { epoch: claim.epoch },
                    Err(lost) => ApplyOutcome::ClaimLost(lost),
                };
                self.events.emit(
                    &self.node,
                    Event::BatcherClaimApplied {
                        index: log_id.index,
                        epoch: claim.epoch,
                        claimant: claim.node,
                        level: claim.level,
                        won: matches!(outcome, ApplyOutcome::Claimed { .. }),
                    },
                );
                Some(outcome)
            }
        };
        stage_applied(&mut batch, &next)
            .map_err(|e| io_err(ErrorSubject::StateMachine, ErrorVerb::Write, e))?;
        self.commit(batch, next, Durability::Buffered)?;
        if let Some((block, outputs)) = answered {
            self.chain.resolve_applied(&block, &outputs);
        }
        if outcome.is_none() {
            self.events.emit(
                &self.node,
                Event::EntryApplied {
                    index: log_id.index,
                    term: log_id.leader_id.term,
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
        block: &Block,
    ) -> Result<(ApplyOutcome, Option<Outputs>), StorageError<NodeId>> {
        let h = &block.header;
        // A block must come from the leader that appended it: with one leader per term
        // (openraft's `single-term-leader`), the entry's term names that leader, so a stale
        // proposal carried into a later term cannot masquerade as the new leader's.
        // The voters in effect where this entry sits in the log decide what the block must
        // declare: every node applies the same log, so every node expects the same.
        let mut signers = next.signers(&self.genesis_members);
        let voters: Vec<NodeId> = next.membership.membership().voter_ids().collect();
        let expected = members::declaration(signers.current(), &voters);
        let may_propose = members::proposers(signers.current(), h.members.as_ref());
        let verdict = if h.term != log_id.leader_id.term {
            Err(BlockError::WrongLeader {
                header: h.term,
                log: log_id.leader_id.term,
                proposer: h.proposer,
            })
        } else if h.members != expected {
            Err(BlockError::Members {
                declared: h.members.clone(),
                expected,
            })
        } else {
            // This node's own block: what building it executed (see `rules::check_built`).
            let built = h.hash().ok().and_then(|hash| self.chain.take_built(&hash));
            match built {
                Some(executed) => rules::check_built(&next.head, &may_propose, block, executed),
                // Signatures were checked by the leader at admission: members trust each other.
                None => rules::verify_block(
                    &next.head,
                    &next.state,
                    &may_propose,
                    block,
                    Signatures::Trusted,
                ),
            }
        };
        let executed = match verdict {
            Ok(x) => x,
            Err(e) => {
                self.events.emit(
                    &self.node,
                    Event::EntryRejected {
                        index: log_id.index,
                        term: log_id.leader_id.term,
                        height: h.height,
                        reason: e.to_string(),
                    },
                );
                return Ok((ApplyOutcome::Rejected(e), None));
            }
        };
        let enc_err =
            |e: codec::CodecError| io_err(ErrorSubject::Apply(log_id), ErrorVerb::Write, e);
        let head = stage_block(batch, block, &executed).map_err(enc_err)?;
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
        next.state = executed.state;
        if let Some(declared) = &h.members {
            signers.declare(h.height, declared.clone());
            next.members = signers.history().clone();
            self.events.emit(
                &self.node,
                Event::MembersDeclared {
                    height: h.height,
                    members: declared.clone(),
                },
            );
        }
        let outputs = executed.outputs;
        if let Some(sealed) =
            next.batches
                .on_block(&block.header, head.hash, self.chain.blocks_per_batch())
        {
            self.seal(batch, &sealed).map_err(enc_err)?;
        }
        Ok((
            ApplyOutcome::Applied {
                height: head.height,
                hash: head.hash,
            },
            Some(outputs),
        ))
    }

    /// Stages a batch this node just sealed with its own attestation, signed as it applies the
    /// batch's last block (the same signature again if a crash makes it apply the block twice:
    /// signatures are deterministic).
    fn seal(&self, batch: &mut WriteBatch, sealed: &BatchHeader) -> Result<(), codec::CodecError> {
        let event = stage_sealed_batch(batch, sealed, &self.key)?;
        self.events.emit(&self.node, event);
        Ok(())
    }

    /// Reports a failed storage write (status and metrics count them) and passes it on.
    fn storage_failed<E: std::fmt::Display>(&self, e: E) -> E {
        self.events.emit(
            &self.node,
            Event::StorageFailed {
                reason: e.to_string(),
            },
        );
        e
    }

    fn snapshot_of(state: &ChainState) -> Result<Snapshot<C<RT>>, StorageError<NodeId>> {
        let err = |e: String| io_err(ErrorSubject::Snapshot(None), ErrorVerb::Read, e);
        let payload = SnapshotPayload {
            meta: AppliedMeta::of(state),
            state: state.state.export(),
        };
        let data = codec::encode(&payload).map_err(|e| err(e.to_string()))?;
        let snapshot_id = match state.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, state.head.height),
            None => format!("empty-{}", state.head.height),
        };
        Ok(Snapshot {
            meta: SnapshotMeta {
                last_log_id: state.last_applied,
                last_membership: state.membership.clone(),
                snapshot_id,
            },
            snapshot: Box::new(Cursor::new(data)),
        })
    }

    /// A snapshot of the applied state, made durable first: openraft purges the log up to a
    /// snapshot it built, and applied state is written buffered (the log was its write-ahead
    /// log), so everything the snapshot includes must be on disk before that log goes.
    fn build_durable(&self) -> Result<Snapshot<C<RT>>, StorageError<NodeId>> {
        let state = self.chain.state().clone();
        self.chain
            .sync_for_snapshot(state.last_applied, state.head.height)
            .map_err(|e| {
                io_err(
                    ErrorSubject::Snapshot(None),
                    ErrorVerb::Write,
                    self.storage_failed(e),
                )
            })?;
        let snapshot = Self::snapshot_of(&state)?;
        self.events.emit(
            &self.node,
            Event::SnapshotBuilt {
                index: state.last_applied.map(|l| l.index),
                height: state.head.height,
            },
        );
        Ok(snapshot)
    }
}

impl<RT: AsyncRuntime> RaftSnapshotBuilder<C<RT>> for StateMachine<RT> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<C<RT>>, StorageError<NodeId>> {
        self.build_durable()
    }
}

impl<RT: AsyncRuntime> RaftStateMachine<C<RT>> for StateMachine<RT> {
    type SnapshotBuilder = Self;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError<NodeId>> {
        let s = self.chain.state();
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
        meta: &SnapshotMeta<NodeId, PeerNode>,
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
        let old = self.chain.state().clone();
        let app_state = old
            .state
            .app()
            .import(payload.state)
            .map_err(|e| err(format!("snapshot state: {e}")))?;
        // The state must be the one the head commits to, whoever sent it.
        let root = app_state.root();
        if root != payload.meta.head.state_root {
            return Err(err(format!(
                "snapshot state commits to {root}, its head at height {} to {}",
                payload.meta.head.height, payload.meta.head.state_root
            )));
        }
        let head = payload.meta.head;
        // openraft installs only snapshots beyond what this node committed, and it applied
        // no more than it committed: a snapshot below the applied head, or another block at
        // the same height, is a chain this node never followed.
        if head.height < old.head.height
            || (head.height == old.head.height && head.hash != old.head.hash)
        {
            return Err(err(format!(
                "snapshot head {} at height {} does not extend the applied head {} at height {}",
                head.hash, head.height, old.head.hash, old.head.height
            )));
        }
        let state = ChainState {
            head,
            state: app_state,
            last_applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            members: payload.meta.members,
            batches: payload.meta.batches,
            batcher_role: payload.meta.batcher_role,
        };
        let mut batch = WriteBatch::default();
        stage_snapshot_state(&mut batch, &state).map_err(|e| err(e.to_string()))?;
        // A snapshot stands in for purged log entries: it is written synced.
        let backfill = self
            .chain
            .install(batch, state)
            .map_err(|e| err(self.storage_failed(e).to_string()))?;
        let missing_blocks = backfill.as_ref().map_or(0, Backfill::missing_blocks);
        self.events.emit(
            &self.node,
            Event::SnapshotInstalled {
                index: meta.last_log_id.map(|l| l.index),
                term: meta.last_log_id.map_or(0, |l| l.leader_id.term),
                height: head.height,
                hash: head.hash,
                state_root: head.state_root,
                missing_blocks,
            },
        );
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<C<RT>>>, StorageError<NodeId>> {
        // Always the applied state as it stands: at least as new as the last one built.
        let state = self.chain.state().clone();
        Self::snapshot_of(&state).map(Some)
    }
}

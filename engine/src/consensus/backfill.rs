//! The backfill's work on a consensus node, as its driver carries it out: while an installed
//! snapshot left a gap, fetch missing blocks from a peer, keep what [`Backfill::accept`]
//! verifies, and once every block is stored cut the gap's L1 batches again and attest them.
//! The rules are in [`crate::chain::backfill`]; which peer to ask for what, and when, is the
//! core's ([`crate::policy::backfill_cursor`]). Storing and recutting are synchronous over the
//! chain store, so a test drives them without a runtime (and crashes between them).

use std::time::Duration;

use openraft::AsyncRuntime;

use crate::chain::backfill::{Backfill, BackfillError};
use crate::chain::block::Block;
use crate::chain::certificate::ServedBlock;
use crate::chain::store::{
    stage_block_alone, stage_certificate, stage_sealed_batch, ChainStore, StoreError,
    MAX_BLOCKS_PER_RESPONSE, MAX_RESPONSE_BYTES,
};
use crate::consensus::node::ConsensusNode;
use crate::events::Event;
use crate::ids::NodeId;
use crate::keys::SecretKey;
use crate::net::peer;
use crate::net::wire::{Request, Response};
use crate::policy::backfill_cursor::Step;
use crate::storage::WriteBatch;

/// Why a filled gap could not be closed.
#[derive(Debug)]
pub enum RecutError {
    /// This node's storage failed (a disk fault): retried until it works again.
    Storage(StoreError),
    /// The stored gap does not cut again to the snapshot's batches: it never will.
    Inconsistent(BackfillError),
    /// A block of the filled gap is missing from this node's disk.
    Lost { height: u64 },
}

impl From<StoreError> for RecutError {
    fn from(e: StoreError) -> Self {
        RecutError::Storage(e)
    }
}

/// Asks `source` for `count` blocks from `from` up and stores what verifies against `gap`.
pub(crate) async fn fetch<RT: AsyncRuntime>(
    node: &ConsensusNode<RT>,
    gap: &Backfill,
    source: NodeId,
    from: u64,
    count: u64,
) -> Step {
    let req = Request::GetBlocks {
        from,
        max: u32::try_from(count).unwrap_or(MAX_BLOCKS_PER_RESPONSE),
        wait_ms: 0,
    };
    let timeout = Duration::from_millis(node.config().rpc_timeout_ms);
    let answer = peer::ask(&**node.transport(), source, &req, timeout, |r| match r {
        Response::Blocks(b) => Some(b),
        _ => None,
    });
    let cfg = node.config();
    let signers = node.signers();
    let certified = Certifiers {
        chain_id: cfg.chain.chain_id,
        signers: &signers,
    };
    match answer.await {
        Ok(served) => store_fetched(
            node.chain(),
            gap,
            Fetched {
                source,
                from,
                served: &served,
            },
            &certified,
            &mut |e| node.emit(e),
        ),
        Err(_) => Step::NextPeer,
    }
}

/// Whose certificates a backfilled block must come with: it is stored with its certificate,
/// so this node serves it on as it serves what it applied.
pub struct Certifiers<'a> {
    pub chain_id: u64,
    pub signers: &'a crate::chain::members::Signers,
}

/// What `source` answered when asked for blocks from `from` up.
pub struct Fetched<'a> {
    pub source: NodeId,
    pub from: u64,
    pub served: &'a [ServedBlock],
}

/// Verifies what was `fetched` against `gap` (each block with a certificate by
/// `certifiers`) and stores what verifies, moving the gap's record in the same write.
pub fn store_fetched(
    chain: &ChainStore,
    gap: &Backfill,
    fetched: Fetched<'_>,
    certifiers: &Certifiers<'_>,
    emit: &mut dyn FnMut(Event),
) -> Step {
    let Fetched {
        source,
        from,
        served,
    } = fetched;
    let blocks: Vec<Block> = served.iter().map(|s| s.block.clone()).collect();
    let mut next = gap.clone();
    let accepted = match next.accept(&blocks) {
        Ok(a) => a,
        // A peer holds blocks only up to its own gap or head: nothing wrong with it.
        Err(BackfillError::Short { .. }) if blocks.is_empty() => return Step::NextPeer,
        Err(BackfillError::Short { .. })
            if blocks.first().map(|b| b.header.height) == Some(from) =>
        {
            return Step::Short {
                got: blocks.len() as u64,
            }
        }
        Err(BackfillError::Short { .. }) => return Step::NextPeer,
        Err(e) => {
            emit(Event::BackfillRefused {
                source,
                kind: e.kind().to_string(),
                reason: e.to_string(),
            });
            return Step::NextPeer;
        }
    };
    let mut batch = WriteBatch::default();
    for (block, hash) in &accepted {
        let height = block.header.height;
        // The hash chain proved the block canonical. A certificate that came with it must be
        // for it too, or this node would serve on what does not verify; one that did not come
        // is gathered later, this node voting for the block it now holds.
        let certificate = served
            .iter()
            .find(|s| s.block.header.height == height)
            .and_then(|s| s.certificate.as_ref());
        let checked = match certificate {
            None => Ok(None),
            Some(c) => c
                .verify(
                    certifiers.chain_id,
                    certifiers.signers.of(height),
                    height,
                    hash,
                )
                .map(|()| Some(c))
                .map_err(|e| {
                    (
                        e.kind(),
                        format!("block {height}'s commit certificate: {e}"),
                    )
                }),
        };
        let certificate = match checked {
            Ok(c) => c,
            Err((kind, reason)) => {
                let kind = kind.to_string();
                emit(Event::BackfillRefused {
                    source,
                    kind,
                    reason,
                });
                return Step::NextPeer;
            }
        };
        let staged = stage_block_alone(&mut batch, block)
            .and_then(|()| certificate.map_or(Ok(()), |c| stage_certificate(&mut batch, c)));
        if staged.is_err() {
            return Step::NextPeer;
        }
    }
    match chain.commit_backfill(batch, gap, Some(next)) {
        Ok(true) => {
            for (block, hash) in &accepted {
                emit(Event::BlockBackfilled {
                    height: block.header.height,
                    hash: *hash,
                    parent_hash: block.header.parent_hash,
                });
            }
            Step::Progress
        }
        // A snapshot moved the gap meanwhile: the next request reads the new one.
        Ok(false) => Step::Progress,
        Err(e) => {
            emit(Event::StorageFailed {
                reason: e.to_string(),
            });
            Step::StorageFailed
        }
    }
}

/// With the gap's blocks stored: cuts its batches again from the cursor at its base, by the
/// chain's rule, attests them with `key`, and closes the gap if the cursor reached is the
/// snapshot's. `Ok` also when a snapshot moved the gap meanwhile (nothing was written).
pub fn recut(
    chain: &ChainStore,
    key: &SecretKey,
    gap: &Backfill,
    emit: &mut dyn FnMut(Event),
) -> Result<(), RecutError> {
    let per_batch = chain.blocks_per_batch();
    let mut cursor = gap.base_batches.clone();
    let mut sealed: Vec<Event> = Vec::new();
    let mut batch = WriteBatch::default();
    let mut height = gap.base_height + 1;
    while height <= gap.top_height {
        let blocks = chain.blocks_between(
            height,
            gap.top_height,
            MAX_BLOCKS_PER_RESPONSE as usize,
            MAX_RESPONSE_BYTES,
        )?;
        if blocks.is_empty() {
            // The gap's blocks were stored and checked as they came: one missing now is a
            // write the disk lost or put elsewhere, not a source's fault.
            return Err(RecutError::Lost { height });
        }
        for block in &blocks {
            let hash = block.hash().map_err(|e| {
                RecutError::Inconsistent(BackfillError::Unhashable {
                    height: block.header.height,
                    reason: e.to_string(),
                })
            })?;
            if let Some(s) = cursor.on_block(&block.header, hash, per_batch) {
                sealed.push(stage_sealed_batch(&mut batch, &s, key).map_err(StoreError::from)?);
            }
            height = block.header.height + 1;
        }
    }
    gap.check_recut(&cursor).map_err(RecutError::Inconsistent)?;
    if !chain.commit_backfill(batch, gap, None)? {
        return Ok(());
    }
    let batches_sealed = sealed.len() as u64;
    for event in sealed {
        emit(event);
    }
    emit(Event::BackfillDone {
        from_height: gap.base_height + 1,
        to_height: gap.top_height,
        batches_sealed,
    });
    Ok(())
}

/// [`recut`], reporting a failure: this node's own, never a source's, so no peer is blamed.
/// Returns whether the gap is closed (or moved on).
pub(crate) fn recut_reported(
    chain: &ChainStore,
    key: &SecretKey,
    gap: &Backfill,
    emit: &mut dyn FnMut(Event),
) -> bool {
    match recut(chain, key, gap, emit) {
        Ok(()) => true,
        Err(e) => {
            emit(match e {
                RecutError::Storage(e) => Event::StorageFailed {
                    reason: e.to_string(),
                },
                RecutError::Lost { height } => {
                    let damage = crate::storage::StorageError::Corrupt {
                        column: crate::storage::Column::Block,
                        key: crate::chain::store::block_key(height).to_vec(),
                        why: crate::storage::Corruption::Missing,
                    };
                    // The node stops on it and its start-up scrub repairs (see the driver).
                    chain.storage().note_damage(damage.clone());
                    Event::CorruptRead { error: damage }
                }
                RecutError::Inconsistent(e) => Event::BackfillRecutFailed {
                    from_height: gap.base_height + 1,
                    to_height: gap.top_height,
                    reason: e.to_string(),
                },
            });
            false
        }
    }
}

#[cfg(test)]
mod tests {
    //! A consensus node's backfill as its core and driver run it, with no runtime and no
    //! network: the cursor decides, the fetch is answered from a source's store, and the node
    //! crashes (losing its unsynced writes, or keeping them) after every step in turn.
    use std::sync::Arc;

    use super::*;
    use crate::chain::block::ChainSpec;
    use crate::chain::rules::{build_block, verify_block, Proposal};
    use crate::chain::signatures::Signatures;
    use crate::chain::store::{stage_applied, stage_block, stage_snapshot_state};
    use crate::keys::derived_key;
    use crate::policy::backfill_cursor::{BackfillAction, BackfillCursor, Gap};
    use crate::settlement::batch::BatchHeader;
    use crate::storage::{Durability, MemDisk};

    const BLOCKS: u64 = 30;
    const OLD_HEAD: u64 = 6;
    /// Small, so the gap takes several requests.
    const PER_REQUEST: u64 = 7;

    fn spec() -> ChainSpec {
        ChainSpec {
            chain_id: 7,
            app: crate::app::App::new(crate::app::ledger::LedgerApp::default()),
            blocks_per_batch: 4,
        }
    }

    fn key() -> SecretKey {
        derived_key("backfill-test", 0)
    }

    /// Applies `block` as the state machine does: the block, its state, and the batch it seals.
    fn apply(store: &ChainStore, block: &Block) {
        let mut next = store.state().clone();
        let executed = verify_block(
            &next.head,
            &next.state,
            &[key().node_id()],
            block,
            Signatures::Trusted,
        )
        .unwrap();
        let mut batch = WriteBatch::default();
        next.head = stage_block(&mut batch, block, &executed).unwrap();
        next.state = executed.state;
        if let Some(sealed) =
            next.batches
                .on_block(&block.header, next.head.hash, store.blocks_per_batch())
        {
            stage_sealed_batch(&mut batch, &sealed, &key()).unwrap();
        }
        stage_applied(&mut batch, &next).unwrap();
        store.commit(batch, next, Durability::Synced).unwrap();
    }

    /// The source: a chain of `BLOCKS` blocks, batches sealed every 4.
    fn source() -> (ChainStore, Vec<Block>) {
        let store = ChainStore::open(Arc::new(MemDisk::new()), &spec()).unwrap();
        let mut blocks = Vec::new();
        for _ in 0..BLOCKS {
            let s = store.state().clone();
            let proposal = Proposal {
                head: &s.head,
                state: &s.state,
                key: &key(),
                term: 1,
                slot: None,
                seals_batch: false,
                members: None,
                timestamp_ms: s.head.timestamp_ms + 1,
                max_transactions: 0,
            };
            let built = build_block(proposal, Vec::new()).unwrap();
            apply(&store, &built.block);
            blocks.push(built.block);
        }
        (store, blocks)
    }

    /// `block` with its certificate: the only consensus peer's vote.
    fn certified(block: Block) -> ServedBlock {
        let hash = block.hash().unwrap();
        let height = block.header.height;
        let vote =
            crate::chain::certificate::CommitVote::sign(spec().chain_id, height, &hash, &key());
        ServedBlock {
            block,
            certificate: Some(crate::chain::certificate::Certificate {
                height,
                block_hash: hash,
                votes: vec![vote],
            }),
        }
    }

    /// A node that applied blocks up to `OLD_HEAD`, then installed the source's snapshot.
    fn node_after_snapshot(source: &ChainStore, blocks: &[Block]) -> MemDisk {
        let disk = MemDisk::new();
        let store = ChainStore::open(Arc::new(disk.clone()), &spec()).unwrap();
        for block in &blocks[..OLD_HEAD as usize] {
            apply(&store, block);
        }
        let state = source.state().clone();
        let mut batch = WriteBatch::default();
        stage_snapshot_state(&mut batch, &state).unwrap();
        let gap = store.install(batch, state).unwrap();
        assert_eq!(gap.map(|g| g.missing_blocks()), Some(BLOCKS - OLD_HEAD));
        disk
    }

    /// Runs the backfill on `store` for at most `steps` steps (fetch or recut); returns
    /// the steps taken and whether it finished, and collects its events.
    fn run(
        store: &ChainStore,
        source: &ChainStore,
        steps: usize,
        events: &mut Vec<Event>,
    ) -> (usize, bool) {
        let mut cursor = BackfillCursor::new(PER_REQUEST);
        let peer = derived_key("backfill-test", 1).node_id();
        for taken in 0..steps {
            let Some(gap) = store.backfill() else {
                return (taken, true);
            };
            let next = gap.next_request(cursor.ask_for());
            let state = if next.is_some() {
                Gap::Missing
            } else {
                Gap::Filled
            };
            // Time stands still: every answer makes the cursor due again at once.
            match cursor.poll(0, state, next, &[peer]) {
                Some(BackfillAction::Fetch { from, count, .. }) => {
                    let to = (from + count - 1).min(BLOCKS);
                    let served: Vec<ServedBlock> = source
                        .blocks_between(from, to, count as usize, usize::MAX)
                        .unwrap()
                        .into_iter()
                        .map(certified)
                        .collect();
                    let fetched = Fetched {
                        source: peer,
                        from,
                        served: &served,
                    };
                    let signers = crate::chain::members::Signers::fixed(&[key().node_id()]);
                    let certifiers = Certifiers {
                        chain_id: spec().chain_id,
                        signers: &signers,
                    };
                    let step =
                        store_fetched(store, &gap, fetched, &certifiers, &mut |e| events.push(e));
                    cursor.on_step(0, step, 1);
                }
                Some(BackfillAction::Recut) => {
                    let closed = recut_reported(store, &key(), &gap, &mut |e| events.push(e));
                    cursor.on_recut(0, closed);
                }
                None => panic!("the cursor asked for nothing with a gap left"),
            }
        }
        (steps, store.backfill().is_none())
    }

    fn assert_whole(store: &ChainStore, source: &ChainStore, blocks: &[Block]) {
        assert_eq!(store.backfill(), None);
        for (i, block) in blocks.iter().enumerate() {
            let height = i as u64 + 1;
            assert_eq!(
                store.block(height).unwrap().as_ref(),
                Some(block),
                "block {height}"
            );
            // Stored with its certificate, so it is served on.
            if height > OLD_HEAD {
                assert_eq!(
                    store.certificate(height).unwrap(),
                    certified(block.clone()).certificate,
                    "certificate {height}"
                );
            }
        }
        for number in 1..=BLOCKS / 4 {
            let ours: Option<BatchHeader> = store.batch(number).unwrap();
            assert_eq!(ours, source.batch(number).unwrap(), "batch {number}");
            assert!(
                !store.attestations(number).unwrap().is_empty(),
                "batch {number} attested"
            );
        }
    }

    #[test]
    fn backfill_without_a_crash_fills_downward_then_recuts_once() {
        let (source, blocks) = source();
        let disk = node_after_snapshot(&source, &blocks);
        let store = ChainStore::open(Arc::new(disk), &spec()).unwrap();
        let mut events = Vec::new();
        let (steps, done) = run(&store, &source, 100, &mut events);
        assert!(done);
        // 24 missing blocks, 7 a request: four fetches, then the recut.
        assert_eq!(steps, 5);
        assert_whole(&store, &source, &blocks);
        let done_events = events
            .iter()
            .filter(|e| matches!(e, Event::BackfillDone { .. }))
            .count();
        assert_eq!(done_events, 1);
    }

    #[test]
    fn backfill_resumes_after_a_crash_at_each_step() {
        let (source, blocks) = source();
        for crash_after in 0..=5 {
            for keep_unsynced in [false, true] {
                let disk = node_after_snapshot(&source, &blocks);
                let store = ChainStore::open(Arc::new(disk.clone()), &spec()).unwrap();
                let mut events = Vec::new();
                run(&store, &source, crash_after, &mut events);
                drop(store);
                disk.crash(if keep_unsynced { usize::MAX } else { 0 });
                // Restarted: the gap as the disk kept it, a fresh cursor.
                let store = ChainStore::open(Arc::new(disk.clone()), &spec()).unwrap();
                let (_, done) = run(&store, &source, 100, &mut events);
                let case =
                    format!("crash after {crash_after} steps, unsynced kept: {keep_unsynced}");
                assert!(done, "{case}");
                assert_whole(&store, &source, &blocks);
                // Its writes are buffered like every apply's: a crash now may undo them, and
                // the restarted node redoes what was lost from the disk's record.
                drop(store);
                disk.crash(0);
                let store = ChainStore::open(Arc::new(disk), &spec()).unwrap();
                let (_, done) = run(&store, &source, 100, &mut events);
                assert!(done, "{case}, then a crash after it finished");
                assert_whole(&store, &source, &blocks);
            }
        }
    }

    #[test]
    fn a_backfilled_block_with_a_bad_certificate_is_refused_and_one_without_is_kept_without() {
        let (source, blocks) = source();
        let disk = node_after_snapshot(&source, &blocks);
        let store = ChainStore::open(Arc::new(disk), &spec()).unwrap();
        let gap = store.backfill().unwrap();
        let (from, count) = gap.next_request(PER_REQUEST).unwrap();
        let honest: Vec<ServedBlock> = blocks[(from - 1) as usize..(from - 1 + count) as usize]
            .iter()
            .cloned()
            .map(certified)
            .collect();
        let stranger = derived_key("backfill-test/stranger", 0);
        let signers = crate::chain::members::Signers::fixed(&[key().node_id()]);
        let certifiers = Certifiers {
            chain_id: spec().chain_id,
            signers: &signers,
        };
        // (what the lying source does to one block of the range, the reason it is refused)
        type Lie = fn(&mut ServedBlock, &SecretKey);
        let lies: [(Lie, &str); 2] = [
            (
                |s, k| {
                    let c = s.certificate.as_mut().unwrap();
                    c.votes = vec![crate::chain::certificate::CommitVote::sign(
                        spec().chain_id,
                        c.height,
                        &c.block_hash,
                        k,
                    )];
                },
                "is not one of the members that certify this height",
            ),
            (
                |s, _| s.certificate.as_mut().unwrap().height += 1,
                "for height",
            ),
        ];
        for (lie, reason) in lies {
            let mut served = honest.clone();
            lie(&mut served[1], &stranger);
            let mut events = Vec::new();
            let fetched = Fetched {
                source: stranger.node_id(),
                from,
                served: &served,
            };
            let step = store_fetched(&store, &gap, fetched, &certifiers, &mut |e| events.push(e));
            assert_eq!(step, Step::NextPeer, "{reason}");
            assert!(
                matches!(&events[..], [Event::BackfillRefused { reason: r, .. }] if r.contains(reason)),
                "{reason}: {events:?}"
            );
            assert_eq!(store.backfill().as_ref(), Some(&gap), "nothing stored");
            assert_eq!(store.block(from).unwrap(), None);
        }
        // A peer that holds a block no majority certified yet serves it without: it is kept,
        // without a certificate (this node votes for it once it holds it).
        let mut served = honest.clone();
        served[1].certificate = None;
        let fetched = Fetched {
            source: stranger.node_id(),
            from,
            served: &served,
        };
        let step = store_fetched(&store, &gap, fetched, &certifiers, &mut |_| {});
        assert_eq!(step, Step::Progress);
        assert_eq!(
            store.block(from + 1).unwrap().as_ref(),
            Some(&served[1].block)
        );
        assert_eq!(store.certificate(from + 1).unwrap(), None);
        assert_eq!(store.certificate(from).unwrap(), served[0].certificate);
    }

    /// A node that applied the whole chain finds blocks rotten below its head at start: the
    /// repair deletes them and opens a gap over their batches; the backfill fetches the gap
    /// again from a peer, checked against the hash chain, and cuts the same batches again. Its
    /// applied state, Raft records and every other block stay. A crash in the middle resumes
    /// without another repair: the deleted blocks are holes on purpose.
    #[test]
    fn rotten_blocks_below_the_head_are_fetched_again_from_a_peer() {
        use crate::chain::store::block_key;
        use crate::consensus::repair::{scrub_and_repair, Member};
        use crate::policy::repair::Repair;
        use crate::storage::{Checksummed, Column};

        let (source, blocks) = source();
        let key = key();
        let member = Member {
            key: &key,
            genesis_hash: spec().genesis_header().unwrap().hash().unwrap(),
        };
        // Batches of four end at 4, 8, ..., 28; the head is 30. (rotten heights, the gap's
        // base and top)
        let table: [(&[u64], (u64, u64)); 4] = [
            (&[1], (0, 4)),
            (&[13], (12, 16)),
            (&[6, 14, 15], (4, 16)),
            (&[29], (28, 30)),
        ];
        for (rotten, span) in table {
            for crash_after in [None, Some(1)] {
                let case = format!("rotten {rotten:?}, crash after {crash_after:?} steps");
                let disk = MemDisk::new();
                let checked = Arc::new(Checksummed::new(disk.clone()));
                let store = ChainStore::open(checked.clone(), &spec()).unwrap();
                for block in &blocks {
                    apply(&store, block);
                }
                let head = store.state().head;
                let batches: Vec<_> = (1..=7).map(|n| store.batch(n).unwrap()).collect();
                drop(store);
                for h in rotten {
                    let flipped = disk.flip_at_rest(Column::Block, (*h - 1) as usize, 77);
                    assert_eq!(flipped, Some(block_key(*h).to_vec()), "{case}");
                }
                let repaired = scrub_and_repair(&*checked, Some(member)).unwrap();
                let refetch = Repair::Refetch {
                    heights: rotten.to_vec(),
                };
                assert_eq!(repaired.repair, refetch, "{case}");
                let mut store = ChainStore::open(checked.clone(), &spec()).unwrap();
                let gap = store.backfill().expect("a gap is open");
                assert_eq!((gap.base_height, gap.top_height), span, "{case}");
                for h in span.0 + 1..=span.1 {
                    assert_eq!(store.block(h).unwrap(), None, "{case}: {h} deleted");
                }
                let mut events = Vec::new();
                if let Some(steps) = crash_after {
                    run(&store, &source, steps, &mut events);
                    drop(store);
                    disk.crash(0);
                    let again = scrub_and_repair(&*checked, Some(member)).unwrap();
                    assert_eq!(
                        again.repair,
                        Repair::Nothing,
                        "{case}: the gap is on purpose"
                    );
                    store = ChainStore::open(checked.clone(), &spec()).unwrap();
                }
                let (_, done) = run(&store, &source, 100, &mut events);
                assert!(done, "{case}");
                for (i, block) in blocks.iter().enumerate() {
                    let h = i as u64 + 1;
                    assert_eq!(store.block(h).unwrap().as_ref(), Some(block), "{case}: {h}");
                }
                assert_eq!(store.state().head, head, "{case}");
                let after: Vec<_> = (1..=7).map(|n| store.batch(n).unwrap()).collect();
                assert_eq!(after, batches, "{case}: the same batches cut again");
                // What came back is the span, each block checked on its way in.
                let mut fetched: Vec<u64> = events
                    .iter()
                    .filter_map(|e| match e {
                        Event::BlockBackfilled { height, .. } => Some(*height),
                        _ => None,
                    })
                    .collect();
                fetched.sort_unstable();
                fetched.dedup();
                let (base, top) = span;
                assert_eq!(fetched, (base + 1..=top).collect::<Vec<_>>(), "{case}");
                drop(store);
                let clean = scrub_and_repair(&*checked, Some(member)).unwrap();
                assert_eq!(
                    clean.repair,
                    Repair::Nothing,
                    "{case}: the store checks clean"
                );
            }
        }
    }
}

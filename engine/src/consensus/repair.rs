//! A consensus node's repair at start: scrub the store, hand what was damaged to the repair
//! policy ([`crate::policy::repair`]), and carry out its decision before anything else reads
//! the store. The abstention it may leave behind is enforced by the election policy (no
//! pre-vote asked or granted) and by [`crate::consensus::node`] (no vote granted).

use alloy_primitives::B256;

use crate::chain::backfill::{refetch_span, Backfill};
use crate::chain::store::certified::KEY_CERTIFIED;
use crate::chain::store::{
    batch_key, block_key, read_blocks, stage_attestations, AppliedMeta, KEY_APPLIED, KEY_BACKFILL,
    KEY_SNAPSHOT,
};
use crate::codec;
use crate::consensus::raft::log_store::{KEY_COMMITTED, KEY_PURGED, KEY_VOTE};
use crate::consensus::raft::types::{LogId, Vote};
use crate::keys::SecretKey;
use crate::policy::election::LogPos;
use crate::policy::repair::{decide, Damaged, Findings, Mark, Repair};
use crate::settlement::batch::{Attestation, BatchCursor, BatchHeader};
use crate::storage::checksum::KEY_JOURNAL;
use crate::storage::{
    Column, Durability, Scrub, Storage, StorageError, WriteBatch, PAST_EVERY_KEY,
};

/// Where a repair's abstention bound is kept: the applied index a node must reach before it
/// takes part in elections again.
pub(crate) const KEY_ABSTAIN: &[u8] = b"repair/abstain_until";

/// Keys the chain store keeps beside the applied state.
const CHAIN_MARKS: [&[u8]; 4] = [KEY_APPLIED, KEY_BACKFILL, KEY_SNAPSHOT, KEY_CERTIFIED];

/// Every column that holds what Raft replicated or what the node derived from it.
fn replicated() -> impl Iterator<Item = Column> {
    Column::ALL.into_iter().filter(|c| *c != Column::Meta)
}

/// What a damaged record held, from where it sits.
pub fn classify(column: Column, key: &[u8]) -> Damaged {
    let u64_key = || <[u8; 8]>::try_from(key).ok().map(u64::from_be_bytes);
    match column {
        Column::Log => match u64_key() {
            Some(index) => Damaged::LogEntry { index },
            None => Damaged::Unknown {
                column,
                key: key.to_vec(),
            },
        },
        Column::Block => match u64_key() {
            Some(height) => Damaged::Block { height },
            None => Damaged::Unknown {
                column,
                key: key.to_vec(),
            },
        },
        Column::State => Damaged::State,
        Column::Batch => Damaged::Batch,
        Column::Certificate => Damaged::Certificate,
        Column::Attestation => Damaged::Attestation { key: key.to_vec() },
        Column::Meta => match key {
            k if k == KEY_VOTE => Damaged::Vote,
            k if k == KEY_COMMITTED || k == KEY_PURGED => Damaged::RaftMark,
            k if CHAIN_MARKS.contains(&k) || k == KEY_ABSTAIN || k == KEY_JOURNAL => {
                Damaged::Applied
            }
            k if k.starts_with(b"signing_guard/") => Damaged::SigningGuard,
            k if k.starts_with(b"fence_acceptor/") => Damaged::FenceAcceptor,
            k if k.starts_with(b"canon/") => Damaged::Identity,
            _ => Damaged::Unknown {
                column,
                key: key.to_vec(),
            },
        },
    }
}

/// A mark read through the checked store: absent, a `u64` it decodes to, or corrupt.
fn mark<T: serde::de::DeserializeOwned>(
    store: &dyn Storage,
    key: &[u8],
    index: impl Fn(T) -> u64,
) -> Result<Mark, StorageError> {
    match store.get(Column::Meta, key) {
        Ok(None) => Ok(Mark::Absent),
        Ok(Some(bytes)) => {
            Ok(codec::decode::<T>(&bytes).map_or(Mark::Corrupt, |v| Mark::At(index(v))))
        }
        Err(StorageError::Corrupt { .. }) => Ok(Mark::Corrupt),
        Err(e) => Err(e),
    }
}

/// The policy's view of what `scrub` found in `store`; `consensus_member` for a consensus
/// node (see [`Findings::consensus_member`]).
pub fn findings(
    store: &dyn Storage,
    scrub: &Scrub,
    consensus_member: bool,
) -> Result<Findings, StorageError> {
    // Blocks a snapshot jumped over (or a refetch deleted) and the backfill has not fetched
    // yet are absent on purpose; every other block from the lowest to the highest must be
    // there. The same for a snapshot gap's batches, cut again only once every block is there.
    let gap = store.get(Column::Meta, KEY_BACKFILL);
    let gap_open = !matches!(gap, Ok(None));
    let (unfilled, uncut) = match gap {
        Ok(Some(bytes)) => codec::decode::<Backfill>(&bytes).map_or((0..0, 0..0), |gap| {
            (
                gap.base_height.saturating_add(1)..gap.filled_from,
                gap.base_batches.sealed_number.saturating_add(1)
                    ..gap.top_batches.sealed_number.saturating_add(1),
            )
        }),
        // Damaged: the policy rejoins over it anyway.
        _ => (0..0, 0..0),
    };
    let purged_index = mark(store, KEY_PURGED, |l: LogId| l.index)?;
    // openraft reads its log from the entry after the purged one (from 0 when nothing was
    // purged) to the last: an entry missing anywhere in that span, the first included, is a
    // hole it cannot start over. A purge deletes entries and moves the mark in one batch.
    let log_first = match purged_index {
        Mark::At(index) => index.saturating_add(1),
        Mark::Absent => 0,
        // The policy rejoins over a damaged mark whatever the log holds.
        Mark::Corrupt => u64::MAX,
    };
    Ok(Findings {
        damaged: scrub
            .corrupt
            .iter()
            .map(|c| classify(c.column, &c.key))
            .collect(),
        log_contiguous: scrub.complete_u64_except(Column::Log, log_first, 0..0),
        // A snapshot's gap has none of its batches until they are cut again; a refetch's
        // keeps every one the node sealed. Either way all or none: a recut writes them at once.
        blocks_contiguous: scrub.complete_u64_except(Column::Block, 1, unfilled)
            && (scrub.complete_u64_except(Column::Batch, 1, uncut)
                || scrub.complete_u64_except(Column::Batch, 1, 0..0)),
        log_last_index: scrub.last_u64(Column::Log),
        purged_index,
        vote_term: match mark(store, KEY_VOTE, |v: Vote| v.leader_id().term)? {
            Mark::At(t) => t,
            // A damaged vote halts the node whatever else is found.
            Mark::Absent | Mark::Corrupt => 0,
        },
        abstain_until: match store.get(Column::Meta, KEY_ABSTAIN) {
            Ok(None) => None,
            Ok(Some(bytes)) => Some(codec::decode::<LogPos>(&bytes).ok()),
            Err(StorageError::Corrupt { .. }) => Some(None),
            Err(e) => return Err(e),
        },
        applied_height: applied(store).ok().flatten().map(|m| m.head.height),
        gap_open,
        consensus_member,
    })
}

/// The applied position, if one is stored and reads back sound.
fn applied(store: &dyn Storage) -> Result<Option<AppliedMeta>, StorageError> {
    store
        .get(Column::Meta, KEY_APPLIED)?
        .map(|bytes| codec::decode::<AppliedMeta>(&bytes))
        .transpose()
        .map_err(|e| StorageError::Failed(format!("the applied position: {e}")))
}

/// What a consensus member's repair needs besides its store.
#[derive(Clone, Copy)]
pub struct Member<'a> {
    /// Its key: it signs its attestations again.
    pub key: &'a SecretKey,
    /// The genesis header's hash: what block 1 of a refetch must name as its parent.
    pub genesis_hash: B256,
}

/// Stages what a refetch of the damaged `heights` (ascending, below the applied head) writes:
/// a gap opened over them, widened to whole batches ([`refetch_span`]), with the blocks it
/// spans deleted; the backfill fills it from peers and closes it by cutting the same batches
/// again. Returns the gap.
fn stage_refetch(
    store: &dyn Storage,
    heights: &[u64],
    genesis_hash: B256,
    batch: &mut WriteBatch,
) -> Result<Backfill, StorageError> {
    let failed = |what: String| StorageError::Failed(format!("refetching blocks: {what}"));
    let (Some(&lowest), Some(&highest)) = (heights.first(), heights.last()) else {
        return Err(failed("no heights".into()));
    };
    let meta = applied(store)?.ok_or_else(|| failed("no applied position".into()))?;
    let sealed = batch_headers(store)?;
    let last_heights: Vec<u64> = sealed.iter().map(|(_, h)| h.last_height).collect();
    let (base, top) = refetch_span(lowest, highest, &last_heights, meta.head.height);
    let cursor_after = |height: u64| -> Result<BatchCursor, StorageError> {
        if height == 0 {
            return Ok(BatchCursor::default());
        }
        sealed
            .iter()
            .find(|(_, h)| h.last_height == height)
            .map(|(_, h)| BatchCursor::after(h))
            .ok_or_else(|| failed(format!("no batch sealed at height {height}")))
    };
    // A sound stored block (the scrub checked it): below the lowest damaged height, or above
    // the highest.
    let stored = |height: u64| {
        read_blocks(store, height, height, 1, usize::MAX)
            .map_err(|e| failed(e.to_string()))?
            .pop()
            .ok_or_else(|| failed(format!("block {height} is not stored")))
    };
    let base_hash = match base {
        0 => genesis_hash,
        h => stored(h)?.hash().map_err(|e| failed(e.to_string()))?,
    };
    let top_end = if top == meta.head.height {
        (top, meta.head.hash, meta.batches.clone())
    } else {
        (top, stored(top + 1)?.header.parent_hash, cursor_after(top)?)
    };
    let gap = Backfill::over((base, base_hash, cursor_after(base)?), top_end);
    // Every block of the span goes, the sound ones too: a gap holds no block below where it
    // is filled from, which is how the scrub tells a hole on purpose from a lost record.
    batch.delete_range(
        Column::Block,
        block_key(base + 1).to_vec(),
        block_key(top + 1).to_vec(),
    );
    batch.put(
        Column::Meta,
        KEY_BACKFILL,
        codec::encode(&gap).map_err(|e| failed(e.to_string()))?,
    );
    Ok(gap)
}

/// What a start-up repair did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Repaired {
    pub repair: Repair,
    pub corrupt_records: usize,
}

/// Scrubs `store` and carries out what the policy decides about it: nothing, attestations
/// dropped, or every replicated record forgotten with the abstention bound written first
/// (one synced batch: a crash leaves the store before or after, never between). A halt is
/// returned for the caller to refuse to start with.
///
/// `member` is a consensus node, which votes, attests and backfills from its peers; `None`
/// for a node outside Raft (an external node, a member of a single-sequencer group). Such a
/// node holds no vote and signs no attestation: it only drops a damaged one, and what it
/// forgets it downloads again from its sources, checked against the hash chain and the
/// certificates.
pub fn scrub_and_repair(
    store: &dyn Storage,
    member: Option<Member<'_>>,
) -> Result<Repaired, StorageError> {
    // First the last batch a crash may have torn, completed from its journal.
    store.complete_torn_batch()?;
    let scrub = store.scrub()?;
    let repair = decide(&findings(store, &scrub, member.is_some())?);
    let mut batch = WriteBatch::default();
    match &repair {
        Repair::Nothing | Repair::Halt(_) => {}
        Repair::Refetch { heights } => {
            let genesis_hash = member.map_or(B256::ZERO, |m| m.genesis_hash);
            stage_refetch(store, heights, genesis_hash, &mut batch)?;
        }
        Repair::DropAttestations(keys) => {
            for k in keys {
                batch.delete(Column::Attestation, k.clone());
            }
            // Peers' attestations are collected again. A member signs its own again (the
            // same signature: they are deterministic) for every batch it holds without one:
            // a damaged one, or one whose write went under another key.
            if let Some(key) = member.map(|m| m.key) {
                let me = key.node_id();
                for (number, header) in batch_headers(store)? {
                    let own_key = crate::chain::store::attestation_key(number, &me);
                    let dropped = keys.contains(&own_key);
                    if dropped || store.get(Column::Attestation, &own_key)?.is_none() {
                        stage_attestations(&mut batch, number, &[Attestation::sign(&header, key)])
                            .map_err(|e| StorageError::Failed(e.to_string()))?;
                    }
                }
            }
        }
        Repair::Rejoin { abstain_until } => {
            let bound =
                codec::encode(abstain_until).map_err(|e| StorageError::Failed(e.to_string()))?;
            batch.put(Column::Meta, KEY_ABSTAIN, bound);
            for column in replicated() {
                batch.delete_range(column, Vec::new(), PAST_EVERY_KEY.to_vec());
            }
            // The journal too: completing a batch from before the wipe would undo it.
            for key in CHAIN_MARKS
                .into_iter()
                .chain([KEY_COMMITTED, KEY_PURGED, KEY_JOURNAL])
            {
                batch.delete(Column::Meta, key);
            }
            // openraft restores leadership from a committed vote of its own at start, and
            // would lead with an empty log. The same vote, uncommitted, is what a candidate
            // holds: it votes for nobody else in that term and starts a follower.
            let me = member.map(|m| m.key.node_id());
            if let (Some(me), Ok(Some(bytes))) = (me, store.get(Column::Meta, KEY_VOTE)) {
                if let Ok(vote) = codec::decode::<Vote>(&bytes) {
                    if vote.is_committed() && vote.leader_id().voted_for() == Some(me) {
                        let held = Vote::new(vote.leader_id().term, me);
                        if let Ok(bytes) = codec::encode(&held) {
                            batch.put(Column::Meta, KEY_VOTE, bytes);
                        }
                    }
                }
            }
        }
    }
    if !batch.ops.is_empty() {
        store.write(batch, Durability::Synced)?;
    }
    Ok(Repaired {
        repair,
        corrupt_records: scrub.corrupt.len(),
    })
}

/// What a node does first at every start, before anything reads its store:
/// [`scrub_and_repair`], the repair announced as [`Event::Scrubbed`] when there was one, and
/// a halt returned as the error the node refuses to start with.
pub fn repair_at_start(
    seams: &crate::seams::Seams,
    id: &crate::ids::NodeId,
    member: Option<Member<'_>>,
) -> Result<Repair, crate::seams::NodeError> {
    let repaired =
        scrub_and_repair(&*seams.storage, member).map_err(crate::chain::store::StoreError::from)?;
    if repaired.repair != Repair::Nothing {
        seams.events.emit(
            id,
            crate::events::Event::Scrubbed {
                corrupt_records: repaired.corrupt_records,
                repair: repaired.repair.clone(),
            },
        );
    }
    match repaired.repair {
        Repair::Halt(why) => Err(crate::seams::NodeError::Halted(why)),
        repair => Ok(repair),
    }
}

/// Every batch header held, by number (a scrub found them sound).
fn batch_headers(store: &dyn Storage) -> Result<Vec<(u64, BatchHeader)>, StorageError> {
    let mut out = Vec::new();
    let mut from = 0u64;
    loop {
        let page = store.scan(Column::Batch, &batch_key(from), &PAST_EVERY_KEY, 1_024)?;
        let Some(last) = page
            .last()
            .and_then(|(k, _)| <[u8; 8]>::try_from(&k[..]).ok())
        else {
            return Ok(out);
        };
        for (_, bytes) in &page {
            if let Ok(header) = codec::decode::<BatchHeader>(bytes) {
                out.push((header.number, header));
            }
        }
        from = u64::from_be_bytes(last).saturating_add(1);
        if page.len() < 1_024 || from == 0 {
            return Ok(out);
        }
    }
}

/// The abstention bound a repair left. An unreadable one was found by this start's scrub,
/// which halted the node; so `None` is none.
pub fn abstain_until(store: &dyn Storage) -> Option<LogPos> {
    store
        .get(Column::Meta, KEY_ABSTAIN)
        .ok()
        .flatten()
        .and_then(|bytes| codec::decode::<LogPos>(&bytes).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::repair::Halt;
    use crate::storage::{Checksummed, MemDisk};

    fn key() -> SecretKey {
        SecretKey::from_bytes([9; 32]).unwrap()
    }

    fn me() -> crate::ids::NodeId {
        key().node_id()
    }

    fn member(key: &SecretKey) -> Member<'_> {
        Member {
            key,
            genesis_hash: B256::repeat_byte(0x6e),
        }
    }

    /// A node's store: a log 5..=9 (4 purged), blocks 1..=3, state, a vote it leads with.
    fn store() -> (MemDisk, Checksummed<MemDisk>) {
        let disk = MemDisk::new();
        let store = Checksummed::new(disk.clone());
        let mut b = WriteBatch::default();
        for i in 5u64..=9 {
            b.put(Column::Log, i.to_be_bytes().to_vec(), vec![1; 30]);
        }
        for h in 1u64..=3 {
            b.put(Column::Block, h.to_be_bytes().to_vec(), vec![2; 30]);
        }
        b.put(Column::State, b"k".to_vec(), b"v".to_vec());
        b.put(Column::Attestation, vec![0, 1], vec![3; 10]);
        let purged = LogId::new(openraft::CommittedLeaderId::new(1, me()), 4);
        b.put(Column::Meta, KEY_PURGED, codec::encode(&purged).unwrap());
        b.put(Column::Meta, KEY_APPLIED, vec![5; 8]);
        let vote = Vote::new_committed(3, me());
        b.put(Column::Meta, KEY_VOTE, codec::encode(&vote).unwrap());
        store.write(b, Durability::Synced).unwrap();
        (disk, store)
    }

    #[test]
    fn a_sound_store_is_left_alone() {
        let (_, s) = store();
        let r = scrub_and_repair(&s, Some(member(&key()))).unwrap();
        assert_eq!(r.repair, Repair::Nothing);
        assert_eq!(
            s.get(Column::Block, &1u64.to_be_bytes()).unwrap(),
            Some(vec![2; 30])
        );
    }

    /// The store's applied position is not one the chain store wrote, so the block cannot be
    /// placed below a head: the node forgets everything (a refetch is tested with a real chain
    /// in `consensus::backfill`).
    #[test]
    fn a_rotten_block_makes_the_node_forget_and_abstain_keeping_its_vote_uncommitted() {
        let (disk, s) = store();
        disk.flip_at_rest(Column::Block, 1, 7);
        let r = scrub_and_repair(&s, Some(member(&key()))).unwrap();
        let bound = LogPos { term: 3, index: 9 };
        assert_eq!(
            r.repair,
            Repair::Rejoin {
                abstain_until: bound
            }
        );
        for column in replicated() {
            assert!(
                s.scan(column, &[], &PAST_EVERY_KEY, 10).unwrap().is_empty(),
                "{column:?}"
            );
        }
        assert_eq!(s.get(Column::Meta, KEY_PURGED).unwrap(), None);
        assert_eq!(s.get(Column::Meta, KEY_APPLIED).unwrap(), None);
        assert_eq!(abstain_until(&s), Some(bound));
        let vote: Vote = codec::decode(&s.get(Column::Meta, KEY_VOTE).unwrap().unwrap()).unwrap();
        assert_eq!(vote, Vote::new(3, me()));
        assert!(!vote.is_committed());
        // The next start finds nothing to repair, and the bound stays.
        let again = scrub_and_repair(&s, Some(member(&key()))).unwrap();
        assert_eq!(again.repair, Repair::Nothing);
        assert_eq!(abstain_until(&s), Some(bound));
    }

    /// Seeds 3100529 and 3100685 of `disk-corruption`: a misdirected write took the first
    /// entry after the purge (or entry 0, with nothing purged) elsewhere. The log was
    /// contiguous from its lowest key, so the scrub passed it, and openraft then refused to
    /// start on it at every restart. A hole at the bottom is a hole.
    #[test]
    fn a_log_missing_its_first_entry_is_a_hole() {
        /// The first and last log entry held; `None`: the log is empty.
        type Held = Option<(u64, u64)>;
        // (purged mark, entries held, whether the log is whole)
        let table: [(Option<u64>, Held, bool); 6] = [
            (Some(4), Some((5, 9)), true),
            (Some(4), Some((6, 9)), false),
            (Some(4), Some((3, 9)), true),
            (None, Some((0, 9)), true),
            (None, Some((1, 9)), false),
            (Some(9), None, true),
        ];
        for (purged, held, whole) in table {
            let store = Checksummed::new(MemDisk::new());
            let mut b = WriteBatch::default();
            for i in held.map_or(0..0, |(first, last)| first..last + 1) {
                b.put(Column::Log, i.to_be_bytes().to_vec(), vec![1; 30]);
            }
            if let Some(p) = purged {
                let purged = LogId::new(openraft::CommittedLeaderId::new(1, me()), p);
                b.put(Column::Meta, KEY_PURGED, codec::encode(&purged).unwrap());
            }
            let vote = Vote::new_committed(3, me());
            b.put(Column::Meta, KEY_VOTE, codec::encode(&vote).unwrap());
            store.write(b, Durability::Synced).unwrap();
            let scrub = store.scrub().unwrap();
            let found = findings(&store, &scrub, true).unwrap();
            assert_eq!(
                found.log_contiguous, whole,
                "purged {purged:?}, held {held:?}"
            );
            let rejoins = matches!(decide(&found), Repair::Rejoin { .. });
            assert_eq!(rejoins, !whole, "purged {purged:?}, held {held:?}");
        }
    }

    #[test]
    fn a_rotten_vote_halts() {
        let (disk, s) = store();
        // Meta in key order: raft/purged, raft/vote, sm/applied.
        assert_eq!(
            disk.flip_at_rest(Column::Meta, 1, 3),
            Some(KEY_VOTE.to_vec())
        );
        let r = scrub_and_repair(&s, Some(member(&key()))).unwrap();
        assert_eq!(r.repair, Repair::Halt(Halt::VoteUnreadable));
        // Nothing changed: the operator gets the store as it was.
        assert!(!s
            .scan(Column::Block, &[], &PAST_EVERY_KEY, 10)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_rotten_attestation_is_dropped_alone() {
        let (disk, s) = store();
        disk.flip_at_rest(Column::Attestation, 0, 1);
        let r = scrub_and_repair(&s, Some(member(&key()))).unwrap();
        assert_eq!(r.repair, Repair::DropAttestations(vec![vec![0, 1]]));
        assert!(s
            .scan(Column::Attestation, &[], &PAST_EVERY_KEY, 10)
            .unwrap()
            .is_empty());
        assert!(!s
            .scan(Column::Log, &[], &PAST_EVERY_KEY, 10)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn its_own_rotten_attestation_is_signed_again() {
        let (disk, s) = store();
        let header = BatchHeader {
            number: 1,
            previous: alloy_primitives::B256::ZERO,
            first_height: 1,
            last_height: 10,
            state_root: alloy_primitives::B256::repeat_byte(4),
            block_hashes_hash: alloy_primitives::B256::repeat_byte(5),
            next_attesters: Vec::new(),
        };
        let mut b = WriteBatch::default();
        crate::chain::store::stage_sealed_batch(&mut b, &header, &key()).unwrap();
        s.write(b, Durability::Synced).unwrap();
        let own_key = {
            let mut k = 1u64.to_be_bytes().to_vec();
            k.extend_from_slice(&me().0);
            k
        };
        let sound = s.get(Column::Attestation, &own_key).unwrap().unwrap();
        // Attestations in key order: batch 1's own (eight bytes of number first), then [0, 1].
        assert_eq!(
            disk.flip_at_rest(Column::Attestation, 0, 5),
            Some(own_key.clone())
        );
        let r = scrub_and_repair(&s, Some(member(&key()))).unwrap();
        assert_eq!(r.repair, Repair::DropAttestations(vec![own_key.clone()]));
        assert_eq!(s.get(Column::Attestation, &own_key).unwrap(), Some(sound));
    }

    #[test]
    fn every_meta_key_the_engine_writes_is_known() {
        for key in [
            KEY_VOTE,
            KEY_COMMITTED,
            KEY_PURGED,
            KEY_ABSTAIN,
            KEY_JOURNAL,
        ]
        .into_iter()
        .chain(CHAIN_MARKS)
        {
            assert!(
                !matches!(classify(Column::Meta, key), Damaged::Unknown { .. }),
                "{}",
                String::from_utf8_lossy(key)
            );
        }
        assert!(matches!(
            classify(Column::Meta, b"raft/votf"),
            Damaged::Unknown { .. }
        ));
    }
}

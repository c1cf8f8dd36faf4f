//! Commit certificates in the chain store: stored by height beside the blocks they certify,
//! the certified cursor the certifier works from, and blocks served with their certificates.
//!
//! A consensus node serves a block only once it holds its certificate, so whoever downloads
//! from it (an external node, a peer filling a snapshot's gap) gets only what a majority
//! applied. An external node stores each block together with the certificate it checked, in
//! one write, and serves both on.

use alloy_primitives::B256;
use openraft::{AsyncRuntime, Instant as _};
use std::time::Duration;

use super::{ChainStore, StoreError, MAX_BLOCKS_PER_RESPONSE, MAX_RESPONSE_BYTES};
use crate::chain::certificate::{Certificate, ServedBlock};
use crate::codec::{self, CodecError};
use crate::storage::{Column, Durability, WriteBatch};

/// Every block at or below the stored height has its certificate here.
pub(crate) const KEY_CERTIFIED: &[u8] = b"sm/certified";

pub fn certificate_key(height: u64) -> [u8; 8] {
    height.to_be_bytes()
}

/// Stages `certificate` beside the block it certifies.
pub(crate) fn stage_certificate(
    batch: &mut WriteBatch,
    certificate: &Certificate,
) -> Result<(), CodecError> {
    batch.put(
        Column::Certificate,
        certificate_key(certificate.height),
        codec::encode(certificate)?,
    );
    Ok(())
}

/// Which blocks a store serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Serve {
    /// Only blocks it holds a certificate for (a chain committed through Raft): an answer
    /// stops at the first block without one.
    Certified,
    /// Every stored block, with a certificate where one is stored (a redundancy group's
    /// chain, which its identity's signature alone makes canonical).
    All,
}

impl ChainStore {
    /// The stored certificate of the block at `height`.
    pub fn certificate(&self, height: u64) -> Result<Option<Certificate>, StoreError> {
        Ok(self
            .storage
            .get(Column::Certificate, &certificate_key(height))?
            .map(|v| codec::decode::<Certificate>(&v))
            .transpose()?)
    }

    /// The stored certificates of heights `from..=to`, one per height (`None` where missing).
    fn certificates_between(
        &self,
        from: u64,
        to: u64,
    ) -> Result<Vec<Option<Certificate>>, StoreError> {
        if from > to {
            return Ok(Vec::new());
        }
        let rows = self.storage.scan(
            Column::Certificate,
            &certificate_key(from),
            &certificate_key(to.saturating_add(1)),
            usize::try_from(to - from + 1).unwrap_or(usize::MAX),
        )?;
        let mut out: Vec<Option<Certificate>> = vec![None; (to - from + 1) as usize];
        for (k, v) in rows {
            let height = <[u8; 8]>::try_from(k.as_slice())
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::CorruptKey {
                    what: "certificate",
                    len: k.len(),
                })?;
            if let Some(slot) = out.get_mut((height - from) as usize) {
                *slot = Some(codec::decode::<Certificate>(&v)?);
            }
        }
        Ok(out)
    }

    /// Every block at or below this height has its certificate here (see [`KEY_CERTIFIED`]).
    pub fn certified_through(&self) -> u64 {
        *crate::sync::lock(&self.certified)
    }

    /// Stores certificates this node gathered or received (each already verified against
    /// the block it holds at that height), moves the certified cursor over them, and wakes
    /// long-polling readers. Buffered: a crash loses them and they are gathered again.
    pub fn add_certificates(&self, certificates: &[Certificate]) -> Result<u64, StoreError> {
        let mut cursor = crate::sync::lock(&self.certified);
        let mut batch = WriteBatch::default();
        for c in certificates {
            stage_certificate(&mut batch, c)?;
        }
        let have = |h: u64| -> Result<bool, StoreError> {
            Ok(certificates.iter().any(|c| c.height == h)
                || self
                    .storage
                    .get(Column::Certificate, &certificate_key(h))?
                    .is_some())
        };
        let next = self.advance(*cursor, have)?;
        if next != *cursor {
            batch.put(Column::Meta, KEY_CERTIFIED, codec::encode(&next)?);
        }
        self.storage.write(batch, Durability::Buffered)?;
        *cursor = next;
        drop(cursor);
        self.published.notify_waiters();
        Ok(next)
    }

    /// Moves the cursor past every height that holds a certificate. It stops at a snapshot's
    /// gap: the gap's blocks may come from a peer without certificates (peers serve each
    /// other every block they hold), and once backfilled they are held, so this node votes
    /// for them and gathers their certificates like any other.
    fn advance(
        &self,
        mut cursor: u64,
        have: impl Fn(u64) -> Result<bool, StoreError>,
    ) -> Result<u64, StoreError> {
        let head = self.head().height;
        while cursor < head && have(cursor + 1)? {
            cursor += 1;
        }
        Ok(cursor)
    }

    /// The cursor as a store opened with `storage` left it.
    pub(crate) fn load_certified(storage: &dyn crate::storage::Storage) -> Result<u64, StoreError> {
        Ok(storage
            .get(Column::Meta, KEY_CERTIFIED)?
            .map(|v| codec::decode::<u64>(&v))
            .transpose()?
            .unwrap_or(0))
    }

    /// The hashes of the blocks this node holds from `from` up to `to` (at most `max`), for
    /// the certifier to vote on: a contiguous run, stopping at a snapshot's gap.
    pub fn held_hashes(
        &self,
        from: u64,
        to: u64,
        max: usize,
    ) -> Result<Vec<(u64, B256)>, StoreError> {
        let from = from.max(1);
        let to = to.min(self.head().height);
        let mut held = self.recent.run(from, to, max);
        let next = from + held.len() as u64;
        if held.len() < max && next <= to {
            // Older than what is remembered, or past a gap in it: what storage holds.
            for h in super::read_headers(&*self.storage, next, to, max - held.len())? {
                held.push((h.height, h.hash()?));
            }
        }
        Ok(held)
    }

    /// Stored blocks from `from` up to the head, at most `max` and about `max_bytes`, each with
    /// its certificate; by [`Serve::Certified`], stopping at the first without one.
    pub fn served_blocks(
        &self,
        from: u64,
        max: usize,
        max_bytes: usize,
        serve: Serve,
    ) -> Result<Vec<ServedBlock>, StoreError> {
        let blocks = self.blocks(from, max, max_bytes)?;
        let Some(last) = blocks.last().map(|b| b.header.height) else {
            return Ok(Vec::new());
        };
        let certificates = self.certificates_between(from.max(1), last)?;
        let mut out = Vec::with_capacity(blocks.len());
        for (block, certificate) in blocks.into_iter().zip(certificates) {
            if certificate.is_none() && serve == Serve::Certified {
                break;
            }
            out.push(ServedBlock { block, certificate });
        }
        Ok(out)
    }

    /// [`ChainStore::served_blocks`] as a long-poll: at once if there are any, else the first
    /// ones within `wait_ms` (capped at [`crate::chain::store::MAX_WAIT_MS`]), else none.
    pub async fn wait_for_served<RT: AsyncRuntime>(
        &self,
        from: u64,
        max: u32,
        wait_ms: u32,
        serve: Serve,
    ) -> Result<Vec<ServedBlock>, StoreError> {
        let max = max.clamp(1, MAX_BLOCKS_PER_RESPONSE) as usize;
        let wait = Duration::from_millis(u64::from(wait_ms.min(super::MAX_WAIT_MS)));
        let deadline = RT::Instant::now() + wait;
        loop {
            // Registered before the store is read, so a commit in between is not missed.
            let published = self.published.notified();
            if from <= self.head().height || wait_ms == 0 {
                let served = self.served_blocks(from, max, MAX_RESPONSE_BYTES, serve)?;
                // Empty below the head: `from` is in a snapshot's gap or not yet certified,
                // which the wait may see change.
                if !served.is_empty() || wait_ms == 0 {
                    return Ok(served);
                }
            }
            let now = RT::Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let _ = RT::timeout(deadline - now, published).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::chain::block::{Block, ChainSpec};
    use crate::chain::certificate::CommitVote;
    use crate::chain::store::{stage_snapshot_state, testing};
    use crate::keys::{derived_key, SecretKey};
    use crate::storage::MemDisk;

    fn spec() -> ChainSpec {
        ChainSpec {
            chain_id: 7,
            app: crate::app::App::new(crate::app::ledger::LedgerApp::default()),
            blocks_per_batch: 1_000,
        }
    }

    fn key() -> SecretKey {
        derived_key("certified-store", 0)
    }

    fn store() -> ChainStore {
        ChainStore::open(Arc::new(MemDisk::new()), &spec()).unwrap()
    }

    fn grow(store: &ChainStore) -> Block {
        testing::grow(store, &key())
    }

    fn apply(store: &ChainStore, block: &Block) {
        testing::apply_trusted(store, block, &key());
    }

    /// `node`, having applied some of `source`'s blocks, installs `source`'s state as a
    /// snapshot (leaving a gap up to its head) and applies the block `source` grows next,
    /// which it returns.
    fn across_a_snapshot(node: &ChainStore, source: &ChainStore) -> Block {
        let state = source.state().clone();
        let mut batch = WriteBatch::default();
        stage_snapshot_state(&mut batch, &state).unwrap();
        node.install(batch, state).unwrap();
        let next = grow(source);
        apply(node, &next);
        next
    }

    /// `block`'s certificate by the only consensus peer.
    fn certificate(block: &Block) -> Certificate {
        let (height, hash) = (block.header.height, block.hash().unwrap());
        Certificate {
            height,
            block_hash: hash,
            votes: vec![CommitVote::sign(spec().chain_id, height, &hash, &key())],
        }
    }

    fn heights(served: &[ServedBlock]) -> Vec<u64> {
        served.iter().map(|s| s.block.header.height).collect()
    }

    #[test]
    fn only_certified_blocks_are_served_and_the_cursor_stops_at_the_first_gap() {
        let s = store();
        let blocks: Vec<Block> = (0..5).map(|_| grow(&s)).collect();
        let served = |from| {
            s.served_blocks(from, 100, usize::MAX, Serve::Certified)
                .unwrap()
        };
        assert!(served(1).is_empty(), "nothing certified yet");
        let all = s.served_blocks(1, 100, usize::MAX, Serve::All).unwrap();
        assert_eq!(heights(&all), vec![1, 2, 3, 4, 5]);
        assert!(all.iter().all(|b| b.certificate.is_none()));
        // Certificates for 1, 2 and 4: served up to 2, the cursor at 2.
        let some: Vec<Certificate> = [0, 1, 3].iter().map(|i| certificate(&blocks[*i])).collect();
        assert_eq!(s.add_certificates(&some).unwrap(), 2);
        assert_eq!(heights(&served(1)), vec![1, 2]);
        assert_eq!(served(1)[1].certificate.as_ref(), Some(&some[1]));
        assert!(served(3).is_empty());
        assert_eq!(heights(&served(4)), vec![4]);
        // 3 arrives: the cursor moves over it and the 4 already stored.
        assert_eq!(s.add_certificates(&[certificate(&blocks[2])]).unwrap(), 4);
        assert_eq!(heights(&served(1)), vec![1, 2, 3, 4]);
        assert_eq!(s.certified_through(), 4);
        // The cursor survives a restart.
        let reopened = ChainStore::open(s.storage.clone(), &spec()).unwrap();
        assert_eq!(reopened.certified_through(), 4);
    }

    #[test]
    fn the_cursor_stops_at_a_snapshots_gap_until_its_blocks_are_certified() {
        let source = store();
        let blocks: Vec<Block> = (0..10).map(|_| grow(&source)).collect();
        let node = store();
        for b in &blocks[..3] {
            apply(&node, b);
        }
        assert_eq!(
            node.add_certificates(&[certificate(&blocks[0])]).unwrap(),
            1
        );
        // A snapshot at 10 leaves 4..=10 missing; 2 and 3 stay uncertified.
        let next = across_a_snapshot(&node, &source);
        assert_eq!(node.add_certificates(&[certificate(&next)]).unwrap(), 1);
        let low: Vec<Certificate> = blocks[1..3].iter().map(certificate).collect();
        assert_eq!(
            node.add_certificates(&low).unwrap(),
            3,
            "up to the gap, not over it"
        );
        // The gap's blocks certified (as they are once backfilled and voted on): on to 11.
        let gap: Vec<Certificate> = blocks[3..].iter().map(certificate).collect();
        assert_eq!(node.add_certificates(&gap).unwrap(), 11);
    }

    /// The hashes a commit-vote round reads come from memory for the newest blocks; they must
    /// be what storage holds: the same run, stopping at a snapshot's gap, and the same from a
    /// reopened store that remembers nothing.
    #[test]
    fn held_hashes_from_memory_match_storage() {
        let hashes = |blocks: &[Block]| -> Vec<(u64, B256)> {
            blocks
                .iter()
                .map(|b| (b.header.height, b.hash().unwrap()))
                .collect()
        };
        let source = store();
        let blocks: Vec<Block> = (0..10).map(|_| grow(&source)).collect();
        assert_eq!(source.held_hashes(0, 99, 100).unwrap(), hashes(&blocks));
        assert_eq!(source.held_hashes(3, 6, 2).unwrap(), hashes(&blocks[2..4]));
        let reopened = ChainStore::open(source.storage.clone(), &spec()).unwrap();
        assert_eq!(reopened.held_hashes(0, 99, 100).unwrap(), hashes(&blocks));
        assert_eq!(
            reopened.held_hashes(3, 6, 2).unwrap(),
            hashes(&blocks[2..4])
        );
        for (from, to) in [(11, 99), (7, 3), (u64::MAX, u64::MAX), (5, 5)] {
            assert_eq!(
                source.held_hashes(from, to, 100).unwrap(),
                reopened.held_hashes(from, to, 100).unwrap(),
                "{from}..={to}: past the head or backwards asks for nothing, never panics"
            );
        }

        let node = store();
        for b in &blocks[..3] {
            apply(&node, b);
        }
        let next = across_a_snapshot(&node, &source);
        assert_eq!(
            node.held_hashes(1, 11, 100).unwrap(),
            hashes(&blocks[..3]),
            "up to the snapshot's gap"
        );
        assert_eq!(node.held_hashes(11, 11, 100).unwrap(), hashes(&[next]));
    }
}

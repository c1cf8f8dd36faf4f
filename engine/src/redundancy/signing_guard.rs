//! The double-sign guard: per signing identity, the last block this machine signed (height, round,
//! hash, and the block itself) is written and synced before the signature exists, and nothing
//! below that watermark, nor a different block at its height or round, is ever signed again.
//!
//! Crash points, and why each is safe:
//! - before the write: nothing was signed; the block is built again later, for a later round;
//! - between the write and the signature, or between the signature and the send: the guard holds
//!   the block, so the restarted node can only sign that same block (its signature is
//!   deterministic, RFC 6979) and publishes it ([`SigningGuard::pending`]), or moves past it when
//!   the chain already did.
//!
//! Moving an identity between machines goes through [`Interchange`] (after EIP-3076's
//! interchange format): export on the old machine, import on the new one. An import only ever
//! raises the watermark.

use std::sync::{Arc, Mutex, MutexGuard};

use alloy_primitives::B256;
use serde::{Deserialize, Serialize};

use crate::chain::block::Block;
use crate::codec::{self, CodecError};
use crate::ids::NodeId;
use crate::storage::{Column, Durability, Storage, StorageError, WriteBatch};

const KEY_PREFIX: &[u8] = b"signing_guard/";

/// What the guard remembers of the last block signed for one identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    pub height: u64,
    pub round: u64,
    pub block_hash: B256,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    mark: Watermark,
    /// The block (signature included once made) so a node that crashed before sending it can
    /// still publish exactly that block. Absent after an import.
    block: Option<Block>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GuardError {
    #[error(
        "refused: height {height} round {round} is at or below the last signed height {} round {}",
        last.height,
        last.round
    )]
    BelowWatermark {
        height: u64,
        round: u64,
        last: Watermark,
    },
    #[error(
        "refused: a different block {signed} was already signed at height {height} / round {round}"
    )]
    Conflicting {
        height: u64,
        round: u64,
        signed: B256,
    },
    #[error("guard storage: {0}")]
    Storage(#[from] StorageError),
    #[error("guard codec: {0}")]
    Codec(String),
}

impl From<CodecError> for GuardError {
    fn from(e: CodecError) -> Self {
        GuardError::Codec(e.to_string())
    }
}

/// The guard of one signing identity on one machine.
pub struct SigningGuard {
    storage: Arc<dyn Storage>,
    identity: NodeId,
    last: Mutex<Option<Record>>,
}

fn key(identity: &NodeId) -> Vec<u8> {
    let mut k = KEY_PREFIX.to_vec();
    k.extend_from_slice(&identity.0);
    k
}

impl SigningGuard {
    pub fn open(storage: Arc<dyn Storage>, identity: NodeId) -> Result<SigningGuard, GuardError> {
        let last = storage
            .get(Column::Meta, &key(&identity))?
            .map(|b| codec::decode::<Record>(&b))
            .transpose()?;
        Ok(SigningGuard {
            storage,
            identity,
            last: Mutex::new(last),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Option<Record>> {
        crate::sync::lock(&self.last)
    }

    pub fn identity(&self) -> NodeId {
        self.identity
    }

    pub fn watermark(&self) -> Option<Watermark> {
        self.lock().as_ref().map(|r| r.mark.clone())
    }

    /// The last block this machine decided to sign, if the chain holds only up to its parent
    /// (`head_height + 1 == its height`): what a node that crashed before publishing it must
    /// publish, and nothing else at that height.
    pub fn pending(&self, head_height: u64) -> Option<Block> {
        self.lock()
            .as_ref()
            .filter(|r| r.mark.height == head_height + 1)
            .and_then(|r| r.block.clone())
    }

    /// Whether the block of `round` at `height` with `hash` may be signed. The same block again
    /// is allowed (an idempotent retry); anything else at or below the watermark is refused.
    pub fn check(&self, height: u64, round: u64, hash: B256) -> Result<(), GuardError> {
        match self.lock().as_ref() {
            Some(r) => verdict(&r.mark, height, round, hash),
            None => Ok(()),
        }
    }

    /// Records `block` (of `round`) as signed, synced, before its signature leaves the node.
    /// Call with the block already sealed: the signature is made in memory only, and nothing
    /// reaches the network until this returns `Ok`.
    pub fn record(&self, round: u64, block: &Block) -> Result<(), GuardError> {
        let height = block.header.height;
        let hash = block.hash()?;
        let mut last = self.lock();
        if let Some(r) = last.as_ref() {
            verdict(&r.mark, height, round, hash)?;
        }
        let record = Record {
            mark: Watermark {
                height,
                round,
                block_hash: hash,
            },
            block: Some(block.clone()),
        };
        let mut batch = WriteBatch::default();
        batch.put(Column::Meta, key(&self.identity), codec::encode(&record)?);
        self.storage.write(batch, Durability::Synced)?;
        *last = Some(record);
        Ok(())
    }

    /// The recorded block reached the chain: it is no longer pending. Without this, a block
    /// that later lost a fork would extend the rolled-back head again and be published twice.
    /// Buffered: the synced writes that follow (the next record, a rollback) flush it. A crash
    /// may still keep the stored block and lose this note; [`Self::reconcile`] at start-up
    /// restores it.
    pub fn published(&self, height: u64) -> Result<(), GuardError> {
        self.mark_published(height, Durability::Buffered)
    }

    /// At start-up, with `stored` the hash of the block the chain holds at the watermark's
    /// height: if that is the recorded block, it was published before the crash, which kept the
    /// block but lost the buffered note that said so. It is pending no more, synced, so that a
    /// rollback below it (the block lost a fork) can never bring it back for publishing.
    pub fn reconcile(&self, stored: Option<B256>) -> Result<(), GuardError> {
        let Some(mark) = self.watermark() else {
            return Ok(());
        };
        if stored != Some(mark.block_hash) {
            return Ok(());
        }
        self.mark_published(mark.height, Durability::Synced)
    }

    fn mark_published(&self, height: u64, durability: Durability) -> Result<(), GuardError> {
        let mut last = self.lock();
        let Some(r) = last
            .as_mut()
            .filter(|r| r.mark.height == height && r.block.is_some())
        else {
            return Ok(());
        };
        let record = Record {
            mark: r.mark.clone(),
            block: None,
        };
        let mut batch = WriteBatch::default();
        batch.put(Column::Meta, key(&self.identity), codec::encode(&record)?);
        // The block is on the chain whether or not the note reaches the disk, so memory says
        // so first: with the write failed and the note in memory still pending, a rollback of
        // the block (it lost a fork) would let the next sign publish it again (seed 3600162 of
        // redundancy-chaos). On disk the note stays pending until the next write of this
        // record; `reconcile` covers a restart that finds the block on the chain.
        *r = record;
        self.storage.write(batch, durability)?;
        Ok(())
    }

    pub fn export(&self, chain_id: u64) -> Interchange {
        Interchange::of(chain_id, self.identity, self.watermark())
    }

    /// Raises the watermark to what `file` holds for this identity (never lowers it).
    pub fn import(&self, file: &Interchange, chain_id: u64) -> Result<Option<Watermark>, String> {
        let incoming = file.watermark_for(chain_id, &self.identity)?;
        let mut last = self.lock();
        let current = last.as_ref().map(|r| r.mark.clone());
        let merged = match (current, incoming) {
            (Some(c), Some(i)) if (i.height, i.round) > (c.height, c.round) => Some(Watermark {
                height: i.height.max(c.height),
                round: i.round.max(c.round),
                block_hash: i.block_hash,
            }),
            (Some(c), Some(i)) => Some(Watermark {
                height: c.height.max(i.height),
                round: c.round.max(i.round),
                block_hash: c.block_hash,
            }),
            (c, i) => c.or(i),
        };
        if let Some(mark) = &merged {
            let keep_block = last
                .as_ref()
                .filter(|r| r.mark == *mark)
                .and_then(|r| r.block.clone());
            let record = Record {
                mark: mark.clone(),
                block: keep_block,
            };
            let mut batch = WriteBatch::default();
            let bytes = codec::encode(&record).map_err(|e| e.to_string())?;
            batch.put(Column::Meta, key(&self.identity), bytes);
            self.storage
                .write(batch, Durability::Synced)
                .map_err(|e| e.to_string())?;
            *last = Some(record);
        }
        Ok(merged)
    }
}

fn verdict(last: &Watermark, height: u64, round: u64, hash: B256) -> Result<(), GuardError> {
    if height == last.height || round == last.round {
        if height == last.height && round == last.round && hash == last.block_hash {
            return Ok(());
        }
        if height >= last.height && round >= last.round {
            return Err(GuardError::Conflicting {
                height,
                round,
                signed: last.block_hash,
            });
        }
    }
    if height <= last.height || round <= last.round {
        return Err(GuardError::BelowWatermark {
            height,
            round,
            last: last.clone(),
        });
    }
    Ok(())
}

/// The guard's export, shaped after EIP-3076 (slots are our rounds; `height` is ours).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interchange {
    pub metadata: InterchangeMetadata,
    pub data: Vec<InterchangeEntry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterchangeMetadata {
    pub interchange_format_version: String,
    /// The chain the watermark belongs to (EIP-3076's `genesis_validators_root` role).
    pub chain_id: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterchangeEntry {
    /// The signing identity, `0x`-prefixed.
    pub pubkey: String,
    pub signed_blocks: Vec<InterchangeBlock>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterchangeBlock {
    /// The round, as a decimal string like EIP-3076's slots.
    pub slot: String,
    pub height: String,
    pub signing_root: B256,
}

pub const INTERCHANGE_VERSION: &str = "5";

impl Interchange {
    pub fn of(chain_id: u64, identity: NodeId, mark: Option<Watermark>) -> Interchange {
        Interchange {
            metadata: InterchangeMetadata {
                interchange_format_version: INTERCHANGE_VERSION.into(),
                chain_id,
            },
            data: vec![InterchangeEntry {
                pubkey: identity.to_string(),
                signed_blocks: mark
                    .into_iter()
                    .map(|m| InterchangeBlock {
                        slot: m.round.to_string(),
                        height: m.height.to_string(),
                        signing_root: m.block_hash,
                    })
                    .collect(),
            }],
        }
    }

    /// The highest (height, round) the file holds for `identity`; errors name what is wrong.
    pub fn watermark_for(
        &self,
        chain_id: u64,
        identity: &NodeId,
    ) -> Result<Option<Watermark>, String> {
        if self.metadata.interchange_format_version != INTERCHANGE_VERSION {
            return Err(format!(
                "interchange_format_version {:?} is not {INTERCHANGE_VERSION:?}",
                self.metadata.interchange_format_version
            ));
        }
        if self.metadata.chain_id != chain_id {
            return Err(format!(
                "the file is for chain {}, this node runs chain {chain_id}",
                self.metadata.chain_id
            ));
        }
        let wanted = identity.to_string();
        let mut best: Option<Watermark> = None;
        for entry in self.data.iter().filter(|e| e.pubkey == wanted) {
            for b in &entry.signed_blocks {
                let round = b
                    .slot
                    .parse::<u64>()
                    .map_err(|e| format!("slot {:?}: {e}", b.slot))?;
                let height = b
                    .height
                    .parse::<u64>()
                    .map_err(|e| format!("height {:?}: {e}", b.height))?;
                if best
                    .as_ref()
                    .is_none_or(|m| (height, round) > (m.height, m.round))
                {
                    best = Some(Watermark {
                        height: height.max(best.as_ref().map_or(0, |m| m.height)),
                        round: round.max(best.as_ref().map_or(0, |m| m.round)),
                        block_hash: b.signing_root,
                    });
                }
            }
        }
        Ok(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::block::{BlockHeader, ChainSpec};
    use crate::keys::derived_key;
    use crate::storage::MemDisk;

    fn block(height: u64, salt: u64) -> Block {
        let key = derived_key("guard-test", 0);
        let spec = ChainSpec {
            chain_id: 7,
            app: crate::app::App::new(crate::app::ledger::LedgerApp::default()),
            blocks_per_batch: crate::chain::block::DEFAULT_BLOCKS_PER_BATCH,
        };
        let mut header: BlockHeader = spec.genesis_header().unwrap();
        header.height = height;
        header.timestamp_ms = salt;
        header.proposer = key.node_id();
        Block::seal(header, vec![], &key).unwrap()
    }

    fn open(disk: &MemDisk) -> SigningGuard {
        SigningGuard::open(Arc::new(disk.clone()), NodeId([3; 64])).unwrap()
    }

    #[test]
    fn verdicts() {
        let last = Watermark {
            height: 10,
            round: 20,
            block_hash: B256::repeat_byte(1),
        };
        let other = B256::repeat_byte(2);
        // (height, round, hash, allowed)
        let cases = [
            (10, 20, last.block_hash, true),
            (11, 21, other, true),
            (10, 20, other, false),
            (10, 21, other, false),
            (11, 20, other, false),
            (9, 25, other, false),
            (12, 19, other, false),
            (10, 19, other, false),
            (11, 21, last.block_hash, true),
        ];
        for (h, r, hash, ok) in cases {
            assert_eq!(
                verdict(&last, h, r, hash).is_ok(),
                ok,
                "height {h} round {r}"
            );
        }
    }

    #[test]
    fn refuses_a_second_block_for_a_signed_height_across_a_crash() {
        let disk = MemDisk::new();
        let guard = open(&disk);
        let a = block(5, 1);
        guard.record(12, &a).unwrap();
        // Crash right after the write, before anything was sent.
        disk.crash(0);
        let guard = open(&disk);
        let b = block(5, 2);
        assert!(matches!(
            guard.record(13, &b),
            Err(GuardError::Conflicting { height: 5, .. })
        ));
        assert!(matches!(
            guard.record(11, &block(6, 1)),
            Err(GuardError::BelowWatermark { .. })
        ));
        // What it may do instead: publish exactly the guarded block, or move on.
        assert_eq!(guard.pending(4), Some(a.clone()));
        assert_eq!(guard.pending(5), None);
        guard.record(12, &a).unwrap();
        guard.record(13, &block(6, 1)).unwrap();
    }

    /// A guard whose record rotted on disk is never opened, so nothing is signed from it: the
    /// error names the record, and the repair policy's verdict on it is a halt.
    #[test]
    fn a_rotten_guard_is_refused_by_name_and_halts() {
        use crate::consensus::repair::{classify, findings};
        use crate::policy::repair::{decide, Damaged, Halt, Repair};
        use crate::storage::Checksummed;
        let disk = MemDisk::new();
        let store = Arc::new(Checksummed::new(disk.clone()));
        let identity = NodeId([3; 64]);
        let guard = SigningGuard::open(store.clone(), identity).unwrap();
        guard.record(12, &block(5, 1)).unwrap();
        let rotted = disk.flip_at_rest(Column::Meta, 0, 77).unwrap();
        assert_eq!(rotted, key(&identity));
        match SigningGuard::open(store.clone(), identity) {
            Err(GuardError::Storage(StorageError::Corrupt {
                column: Column::Meta,
                key,
                ..
            })) => assert_eq!(key, rotted),
            Err(other) => panic!("opened with {other}"),
            Ok(_) => panic!("a rotten guard opened"),
        }
        // The start-up scrub finds it, and the policy halts the node on it.
        let scrub = store.scrub().unwrap();
        assert_eq!(scrub.corrupt.len(), 1);
        assert_eq!(
            classify(Column::Meta, &scrub.corrupt[0].key),
            Damaged::SigningGuard
        );
        let findings = findings(&*store, &scrub, false).unwrap();
        assert_eq!(decide(&findings), Repair::Halt(Halt::SigningGuard));
    }

    #[test]
    fn a_published_block_is_never_pending_again() {
        let disk = MemDisk::new();
        let guard = open(&disk);
        let a = block(5, 1);
        guard.record(12, &a).unwrap();
        assert_eq!(guard.pending(4), Some(a.clone()));
        guard.published(5).unwrap();
        // The chain later rolled back below it (a lost fork): still nothing to publish, and
        // the height stays signed.
        assert_eq!(guard.pending(4), None);
        assert!(guard.record(13, &block(5, 2)).is_err());
        // Across a crash the record may lose the mark of publication, never the watermark.
        disk.crash(0);
        let guard = open(&disk);
        assert_eq!(guard.watermark().map(|w| w.height), Some(5));
    }

    #[test]
    fn a_block_published_while_the_disk_fails_is_not_pending_again() {
        let disk = MemDisk::new();
        let guard = open(&disk);
        let a = block(5, 1);
        guard.record(12, &a).unwrap();
        disk.set_write_fault(Some("disk on fire".into()));
        assert!(matches!(guard.published(5), Err(GuardError::Storage(_))));
        disk.set_write_fault(None);
        // The block lost a fork and the chain rolled back to 4: it must not come back.
        assert_eq!(guard.pending(4), None);
        assert!(guard.record(13, &block(5, 2)).is_err());
    }

    #[test]
    fn a_block_the_chain_kept_is_published_after_a_crash() {
        let a = block(5, 1);
        let hash = a.hash().unwrap();
        // (what the chain holds at height 5 after the crash) -> pending after reconciling
        let table = [
            (Some(hash), None),
            (None, Some(a.clone())),
            (Some(block(5, 2).hash().unwrap()), Some(a.clone())),
        ];
        for (stored, expect) in table {
            let disk = MemDisk::new();
            let guard = open(&disk);
            guard.record(12, &a).unwrap();
            // The crash lost the buffered note of publication (none was written here).
            disk.crash(0);
            let guard = open(&disk);
            assert_eq!(guard.pending(4), Some(a.clone()));
            guard.reconcile(stored).unwrap();
            assert_eq!(guard.pending(4), expect, "{stored:?}");
            // Reconciled is synced: a crash right after keeps it.
            disk.crash(0);
            assert_eq!(open(&disk).pending(4), expect, "{stored:?} after a crash");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Whatever is asked, with crashes anywhere: per height and per round, at most one block
        /// is ever let through (its retries aside), and the watermark only rises.
        #[test]
        fn never_two_blocks_for_one_height_or_round(
            asks in proptest::collection::vec((0u64..6, 0u64..6, 0u64..3, proptest::bool::ANY), 1..40)
        ) {
            use std::collections::BTreeMap;
            let disk = MemDisk::new();
            let mut guard = open(&disk);
            let mut by_height: BTreeMap<u64, B256> = BTreeMap::new();
            let mut by_round: BTreeMap<u64, B256> = BTreeMap::new();
            let mut high = (0u64, 0u64);
            for (height, round, salt, crash) in asks {
                let b = block(height, salt);
                let hash = b.hash().unwrap();
                if guard.record(round, &b).is_ok() {
                    proptest::prop_assert!(by_height.get(&height).is_none_or(|h| *h == hash));
                    proptest::prop_assert!(by_round.get(&round).is_none_or(|h| *h == hash));
                    proptest::prop_assert!((height, round) >= high);
                    by_height.insert(height, hash);
                    by_round.insert(round, hash);
                    high = (height, round);
                }
                if crash {
                    disk.crash(0);
                    guard = open(&disk);
                }
            }
        }
    }

    #[test]
    fn a_failed_write_means_no_signature_may_leave() {
        let disk = MemDisk::new();
        let guard = open(&disk);
        disk.set_write_fault(Some("disk on fire".into()));
        assert!(matches!(
            guard.record(1, &block(1, 1)),
            Err(GuardError::Storage(_))
        ));
        assert_eq!(guard.watermark(), None);
        disk.set_write_fault(None);
        guard.record(1, &block(1, 1)).unwrap();
    }

    #[test]
    fn interchange_moves_a_watermark_and_never_lowers_one() {
        let from = MemDisk::new();
        let g = open(&from);
        g.record(40, &block(30, 1)).unwrap();
        let file = g.export(7);
        assert_eq!(file.data[0].signed_blocks[0].slot, "40");

        let to = MemDisk::new();
        let h = open(&to);
        h.record(10, &block(8, 1)).unwrap();
        let merged = h.import(&file, 7).unwrap().unwrap();
        assert_eq!((merged.height, merged.round), (30, 40));
        assert!(h.record(41, &block(30, 9)).is_err());
        assert!(h.record(41, &block(31, 9)).is_ok());
        // An older file leaves it where it is; a wrong chain is named.
        let old = Interchange::of(
            7,
            NodeId([3; 64]),
            Some(Watermark {
                height: 2,
                round: 3,
                block_hash: B256::ZERO,
            }),
        );
        assert_eq!(h.import(&old, 7).unwrap().unwrap().height, 31);
        assert!(h.import(&file, 8).unwrap_err().contains("chain 7"));
        // Survives a crash: it was synced.
        to.crash(0);
        assert_eq!(open(&to).watermark().unwrap().height, 31);
    }
}

//! The fenced group's messages and each member's acceptor, on disk. The decisions are
//! [`policy::fence`]'s; this module authenticates the messages (signed with the identity's key, so
//! nothing that merely claims the key is promised anything) and keeps the acceptor's record
//! synced before any answer leaves.

use std::sync::{Arc, Mutex, MutexGuard};

use alloy_primitives::B256;
use serde::{Deserialize, Serialize};

use crate::chain::block::Block;
use crate::chain::store::ChainStore;
use crate::chain::store::StoreError;
use crate::codec::{self, CodecError};
use crate::ids::{NodeId, Sig65};
use crate::keys::{self, SecretKey};
use crate::policy::fence::{Accepted, Acceptor, AcceptorRecord, Ballot, Promise, Refusal};
use crate::storage::{Column, Durability, Storage, WriteBatch};

const KEY_PREFIX: &[u8] = b"fence_acceptor/";

/// At most this many of its chain's blocks go into a promise; a proposer further behind syncs
/// first.
pub const CHAIN_BLOCKS_IN_PROMISE: u64 = 16;

/// A promise or accept request, signed with the identity's key by the member asking.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedBallot {
    pub member: NodeId,
    pub round: u64,
    pub level: i64,
    pub height: u64,
    /// Step 2 only: the header hash of the block to accept.
    pub block_hash: Option<B256>,
    pub signature: Sig65,
}

#[derive(Serialize)]
struct BallotBody {
    domain: &'static str,
    member: NodeId,
    round: u64,
    level: i64,
    height: u64,
    block_hash: Option<B256>,
}

impl SignedBallot {
    fn body_hash(&self) -> Result<B256, CodecError> {
        let body = BallotBody {
            // Never confusable with a block header or an announcement.
            domain: "canon/fence-ballot",
            member: self.member,
            round: self.round,
            level: self.level,
            height: self.height,
            block_hash: self.block_hash,
        };
        Ok(alloy_primitives::keccak256(codec::encode(&body)?))
    }

    pub fn sign(
        member: NodeId,
        b: &Ballot,
        block_hash: Option<B256>,
        identity: &SecretKey,
    ) -> Result<SignedBallot, CodecError> {
        let mut s = SignedBallot {
            member,
            round: b.round,
            level: b.level,
            height: b.height,
            block_hash,
            signature: Sig65([0u8; 65]),
        };
        s.signature = identity.sign_hash(&s.body_hash()?);
        Ok(s)
    }

    /// The ballot, if `identity` signed it.
    pub fn verify(&self, identity: &NodeId) -> Result<Ballot, String> {
        let hash = self.body_hash().map_err(|e| e.to_string())?;
        match keys::recover_node_id(&hash, &self.signature) {
            Ok(id) if id == *identity => Ok(Ballot {
                round: self.round,
                level: self.level,
                height: self.height,
            }),
            _ => Err(format!(
                "fence ballot from {} is not signed by the group's identity",
                self.member
            )),
        }
    }
}

/// What travels for acceptance: the block without its signature (the signature is made only
/// once the block is chosen).
pub fn unsigned(block: &Block) -> Block {
    Block {
        signature: Sig65([0u8; 65]),
        ..block.clone()
    }
}

/// One member's acceptor, its record synced to disk before every answer.
pub struct FencedAcceptor {
    storage: Arc<dyn Storage>,
    key: Vec<u8>,
    acceptor: Mutex<Acceptor<Block>>,
}

impl FencedAcceptor {
    pub fn open(
        storage: Arc<dyn Storage>,
        identity: NodeId,
        max_missed_rounds: u64,
    ) -> Result<FencedAcceptor, StoreError> {
        let mut key = KEY_PREFIX.to_vec();
        key.extend_from_slice(&identity.0);
        let record = storage
            .get(Column::Meta, &key)?
            .map(|b| codec::decode::<AcceptorRecord<Block>>(&b))
            .transpose()?
            .unwrap_or_default();
        Ok(FencedAcceptor {
            storage,
            key,
            acceptor: Mutex::new(Acceptor::new(record, max_missed_rounds)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Acceptor<Block>> {
        crate::sync::lock(&self.acceptor)
    }

    pub fn on_round(&self, round: u64) {
        self.lock().on_round(round);
    }

    pub fn observe(&self, level: i64, round: u64) {
        self.lock().observe(level, round);
    }

    /// Forgets what the chain now holds (persisted with the next answer).
    pub fn prune(&self, head_height: u64) {
        self.lock().prune(head_height);
    }

    fn persist(&self, a: &Acceptor<Block>) -> Result<(), String> {
        let mut batch = WriteBatch::default();
        let bytes = codec::encode(a.record()).map_err(|e| e.to_string())?;
        batch.put(Column::Meta, self.key.clone(), bytes);
        self.storage
            .write(batch, Durability::Synced)
            .map_err(|e| format!("fence acceptor could not persist: {e}"))
    }

    /// Step 1, persisted before the answer. A member whose chain already holds the ballot's
    /// height adds those blocks (chosen, so they win over anything accepted), up to
    /// [`CHAIN_BLOCKS_IN_PROMISE`]: a standby a block or two behind takes over at once,
    /// finishing them first. A failed write answers with a refusal: the promise may stand in
    /// memory (stricter than the disk), but it was never given.
    pub fn prepare(
        &self,
        b: &Ballot,
        now_round: u64,
        chain: &ChainStore,
    ) -> Result<Promise<Block>, String> {
        let head = chain.head().height;
        if head >= b.height.saturating_add(CHAIN_BLOCKS_IN_PROMISE) {
            return Err(Refusal::Behind { head }.to_string());
        }
        let mut known = Vec::new();
        for h in b.height..=head {
            match chain.block(h) {
                Ok(Some(block)) => known.push((
                    h,
                    Accepted {
                        round: u64::MAX,
                        value: unsigned(&block),
                    },
                )),
                _ => return Err(format!("this member cannot read its block {h}")),
            }
        }
        let mut a = self.lock();
        let accepted = a.prepare(b, now_round).map_err(|e| e.to_string())?;
        self.persist(&a)?;
        known.extend(accepted.into_iter().filter(|(h, _)| *h > head));
        Ok(known)
    }

    /// Step 2, persisted before the answer. `block` arrives unsigned and must be what the
    /// ballot's signature names. A block this member's chain already holds is acknowledged
    /// (nothing to store); a different one at such a height is refused.
    pub fn accept(
        &self,
        b: &Ballot,
        block_hash: Option<B256>,
        block: Block,
        now_round: u64,
        chain: &ChainStore,
    ) -> Result<(), String> {
        let hash = block.hash().map_err(|e| e.to_string())?;
        if block_hash != Some(hash) || block.header.height != b.height {
            return Err("the block is not the one the ballot names".into());
        }
        let Some(slot) = block.header.slot else {
            return Err("a group's block carries its round and level".into());
        };
        let head = chain.head().height;
        if b.height <= head {
            let held = chain.block(b.height).ok().flatten().map(|c| c.hash());
            return match held {
                Some(Ok(h)) if h == hash => Ok(()),
                _ => Err(Refusal::Behind { head }.to_string()),
            };
        }
        let mut a = self.lock();
        a.accept(b, unsigned(&block), now_round, head)
            .map_err(|e| e.to_string())?;
        // A block accepted here is the identity's signed word that its level was alive in its
        // round, even if it never reaches the chain: no level above may skip its patience.
        a.observe(slot.level, slot.round);
        self.persist(&a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::derived_key;

    #[test]
    fn ballots_verify_only_with_the_identity() {
        let identity = derived_key("fence-test", 0);
        let b = Ballot {
            round: 9,
            level: 1,
            height: 4,
        };
        let member = derived_key("fence-test", 2).node_id();
        let signed = SignedBallot::sign(member, &b, None, &identity).unwrap();
        assert_eq!(signed.verify(&identity.node_id()), Ok(b));
        let forged = SignedBallot::sign(member, &b, None, &derived_key("fence-test", 1)).unwrap();
        assert!(forged.verify(&identity.node_id()).is_err());
        let mut altered = signed.clone();
        altered.level = 0;
        assert!(altered.verify(&identity.node_id()).is_err());
        let mut retargeted = signed;
        retargeted.block_hash = Some(B256::repeat_byte(7));
        assert!(retargeted.verify(&identity.node_id()).is_err());
    }

    #[test]
    fn the_record_survives_a_crash() {
        let disk = Arc::new(crate::storage::MemDisk::new());
        let id = derived_key("fence-test", 0).node_id();
        let a = FencedAcceptor::open(disk.clone(), id, 5).unwrap();
        a.on_round(0);
        let b = Ballot {
            round: 10,
            level: 0,
            height: 1,
        };
        let mut a2 = Acceptor::<Block>::new(AcceptorRecord::default(), 5);
        a2.on_round(0);
        a.lock().prepare(&b, 10).unwrap();
        a.persist(&a.lock()).unwrap();
        disk.crash(0);
        let again = FencedAcceptor::open(disk, id, 5).unwrap();
        again.on_round(10);
        assert!(
            again.lock().prepare(&b, 10).is_err(),
            "round 10 promised twice"
        );
        // A fresh acceptor would have promised it.
        assert!(a2.prepare(&b, 10).is_ok());
    }
}

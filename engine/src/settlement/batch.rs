//! L1 batches: a run of canonized blocks committed to L1 as one link of a hash chain. The
//! commitment is exactly what `contracts/Settlement.sol` computes (`commitment(...)`:
//! keccak256 over the ABI encoding of its seven fields), and what each consensus node signs to
//! attest the batch.
//!
//! L1's attester set follows the chain's membership: a block that declares new members
//! ([`crate::chain::members`]) ends its batch, and that batch names the new set's addresses.
//! The set L1 holds (the old one) attests it, as the old set certified every block in it; L1
//! then switches, and the new set attests the batches after it, whose blocks it certified. So a
//! batch's attesters are always the signers of its blocks, and L1 never trusts a set the
//! chain's own certificates did not hand over.

use alloy_primitives::{keccak256, Address, B256};
use serde::{Deserialize, Serialize};

use crate::chain::block::BlockHeader;
use crate::ids::{NodeId, Sig65};
use crate::keys::{self, SecretKey};

/// One sealed batch, as L1 sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchHeader {
    /// 1 for the first batch; each next one is exactly one more.
    pub number: u64,
    /// The commitment of batch `number - 1` (zero before the first).
    pub previous: B256,
    pub first_height: u64,
    pub last_height: u64,
    /// The ledger's state root after `last_height`.
    pub state_root: B256,
    /// keccak256 over the batch's block hashes, in height order.
    pub block_hashes_hash: B256,
    /// The L1 addresses of the members its last block declares, ascending: L1's attester set
    /// from the next batch on. Empty: the set stays.
    pub next_attesters: Vec<Address>,
}

/// What a batch commits to of its next attesters: keccak256 over their addresses, each
/// left-padded to a 32-byte word (Solidity's `abi.encodePacked(address[])`); the hash of
/// nothing when the set stays.
pub fn attesters_hash(addresses: &[Address]) -> B256 {
    let mut buf = Vec::with_capacity(32 * addresses.len());
    for a in addresses {
        buf.extend_from_slice(&[0u8; 12]);
        buf.extend_from_slice(a.as_slice());
    }
    keccak256(&buf)
}

/// The L1 attester set of a signer set: their addresses, ascending (the order the contract
/// demands, so none counts twice).
pub fn attester_addresses(members: &[NodeId]) -> Vec<Address> {
    let mut addresses: Vec<Address> = members.iter().map(address_of).collect();
    addresses.sort();
    addresses.dedup();
    addresses
}

/// keccak256 over the concatenated block hashes, in height order.
pub fn block_hashes_hash(hashes: &[B256]) -> B256 {
    let mut buf = Vec::with_capacity(32 * hashes.len());
    for h in hashes {
        buf.extend_from_slice(h.as_slice());
    }
    keccak256(&buf)
}

fn word_u64(v: u64) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[24..].copy_from_slice(&v.to_be_bytes());
    w
}

impl BatchHeader {
    /// `keccak256(abi.encode(number, previous, first_height, last_height, state_root,
    /// block_hashes_hash, attesters_hash(next_attesters)))`: every field is a static ABI type,
    /// one 32-byte word each.
    pub fn commitment(&self) -> B256 {
        let mut buf = Vec::with_capacity(7 * 32);
        buf.extend_from_slice(&word_u64(self.number));
        buf.extend_from_slice(self.previous.as_slice());
        buf.extend_from_slice(&word_u64(self.first_height));
        buf.extend_from_slice(&word_u64(self.last_height));
        buf.extend_from_slice(self.state_root.as_slice());
        buf.extend_from_slice(self.block_hashes_hash.as_slice());
        buf.extend_from_slice(attesters_hash(&self.next_attesters).as_slice());
        keccak256(&buf)
    }
}

/// Where the cutting of batches stands after the applied head: the last sealed batch and the
/// blocks of the open one. Part of the applied state, written atomically with each block, so
/// every node that applied the same chain holds the same cursor and seals the same batches.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchCursor {
    /// The last sealed batch's number (0 before the first).
    pub sealed_number: u64,
    /// Its commitment (zero before the first): the next batch's `previous`.
    pub sealed_commitment: B256,
    /// The height of its last block (0 before the first).
    pub sealed_height: u64,
    /// The timestamp of the open batch's first block, when it has one.
    pub open_since_ms: Option<u64>,
    /// The open batch's block hashes, in height order (fewer than `blocks_per_batch`).
    pub open_hashes: Vec<B256>,
}

impl BatchCursor {
    /// The cursor right after `sealed` was sealed: what [`BatchCursor::on_block`] leaves when
    /// it closes a batch.
    pub fn after(sealed: &BatchHeader) -> BatchCursor {
        BatchCursor {
            sealed_number: sealed.number,
            sealed_commitment: sealed.commitment(),
            sealed_height: sealed.last_height,
            open_since_ms: None,
            open_hashes: Vec::new(),
        }
    }

    /// Takes the next applied block (`hash` is its header's hash). Returns the batch it closes:
    /// the block carries the leader's seal mark, declares new members, or the batch reached
    /// `blocks_per_batch` blocks (at least 1).
    pub fn on_block(
        &mut self,
        header: &BlockHeader,
        hash: B256,
        blocks_per_batch: u64,
    ) -> Option<BatchHeader> {
        if self.open_hashes.is_empty() {
            self.open_since_ms = Some(header.timestamp_ms);
        }
        self.open_hashes.push(hash);
        let full = self.open_hashes.len() as u64 >= blocks_per_batch.max(1);
        if !(full || header.seals_batch || header.members.is_some()) {
            return None;
        }
        let sealed = BatchHeader {
            number: self.sealed_number + 1,
            previous: self.sealed_commitment,
            first_height: self.sealed_height + 1,
            last_height: header.height,
            state_root: header.state_root,
            block_hashes_hash: block_hashes_hash(&self.open_hashes),
            next_attesters: header
                .members
                .as_deref()
                .map(attester_addresses)
                .unwrap_or_default(),
        };
        self.sealed_number = sealed.number;
        self.sealed_commitment = sealed.commitment();
        self.sealed_height = sealed.last_height;
        self.open_since_ms = None;
        self.open_hashes.clear();
        Some(sealed)
    }

    /// Whether the leader marks the block it builds at `timestamp_ms` as sealing: the open batch
    /// has waited `batch_timeout_ms` (0: never by time, only by count).
    pub fn seal_due(&self, timestamp_ms: u64, batch_timeout_ms: u64) -> bool {
        batch_timeout_ms > 0
            && self
                .open_since_ms
                .is_some_and(|since| timestamp_ms.saturating_sub(since) >= batch_timeout_ms)
    }
}

/// A consensus node's signature over a batch commitment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    pub signer: NodeId,
    pub signature: Sig65,
}

impl Attestation {
    pub fn sign(header: &BatchHeader, key: &SecretKey) -> Attestation {
        Attestation {
            signer: key.node_id(),
            signature: key.sign_hash(&header.commitment()),
        }
    }

    /// Whether the signature is `signer`'s over `header`'s commitment.
    pub fn verify(&self, header: &BatchHeader) -> bool {
        keys::recover_node_id(&header.commitment(), &self.signature)
            .is_ok_and(|id| id == self.signer)
    }
}

/// The L1 account address of a node id: the last 20 bytes of keccak256 over its public key.
pub fn address_of(id: &NodeId) -> Address {
    Address::from_raw_public_key(&id.0)
}

/// The signatures `commitBatch` takes: valid attestations from distinct signers, in ascending
/// order of their addresses (how the contract rules out counting one twice).
pub fn ordered_signatures(header: &BatchHeader, attestations: &[Attestation]) -> Vec<Sig65> {
    let mut by_address: Vec<(Address, Sig65)> = attestations
        .iter()
        .filter(|a| a.verify(header))
        .map(|a| (address_of(&a.signer), a.signature))
        .collect();
    by_address.sort_by_key(|(a, _)| *a);
    by_address.dedup_by_key(|(a, _)| *a);
    by_address.into_iter().map(|(_, s)| s).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::derived_key;

    fn header() -> BatchHeader {
        BatchHeader {
            number: 1,
            previous: B256::ZERO,
            first_height: 1,
            last_height: 10,
            state_root: B256::repeat_byte(3),
            block_hashes_hash: block_hashes_hash(&[B256::repeat_byte(1), B256::repeat_byte(2)]),
            next_attesters: Vec::new(),
        }
    }

    #[test]
    fn every_field_moves_the_commitment() {
        let base = header();
        let c = base.commitment();
        let variants = [
            BatchHeader {
                number: 2,
                ..base.clone()
            },
            BatchHeader {
                previous: B256::repeat_byte(9),
                ..base.clone()
            },
            BatchHeader {
                first_height: 2,
                ..base.clone()
            },
            BatchHeader {
                last_height: 11,
                ..base.clone()
            },
            BatchHeader {
                state_root: B256::ZERO,
                ..base.clone()
            },
            BatchHeader {
                block_hashes_hash: B256::ZERO,
                ..base.clone()
            },
            BatchHeader {
                next_attesters: vec![Address::repeat_byte(1)],
                ..base.clone()
            },
        ];
        for v in variants {
            assert_ne!(v.commitment(), c, "{v:?}");
        }
    }

    fn block(height: u64, timestamp_ms: u64, seals_batch: bool) -> (BlockHeader, B256) {
        let h = BlockHeader {
            height,
            parent_hash: B256::ZERO,
            timestamp_ms,
            transactions_root: B256::ZERO,
            state_root: B256::with_last_byte(height as u8),
            proposer: NodeId::default(),
            term: 1,
            slot: None,
            seals_batch,
            members: None,
        };
        (h, B256::repeat_byte(height as u8))
    }

    /// Feeds blocks 1..=n (sealing marks at `marks`) and returns the batches they seal.
    fn cut(n: u64, per_batch: u64, marks: &[u64]) -> (BatchCursor, Vec<BatchHeader>) {
        let mut c = BatchCursor::default();
        let mut sealed = Vec::new();
        for height in 1..=n {
            let (h, hash) = block(height, height * 100, marks.contains(&height));
            sealed.extend(c.on_block(&h, hash, per_batch));
        }
        (c, sealed)
    }

    #[test]
    fn batches_are_cut_by_count_and_by_mark() {
        // (blocks, per batch, marks) -> the sealed ranges, and what stays open.
        type Case = (u64, u64, &'static [u64], &'static [(u64, u64)], usize);
        let table: [Case; 6] = [
            (9, 10, &[], &[], 9),
            (10, 10, &[], &[(1, 10)], 0),
            (25, 10, &[], &[(1, 10), (11, 20)], 5),
            (12, 10, &[3], &[(1, 3)], 9),
            (13, 10, &[3], &[(1, 3), (4, 13)], 0),
            (3, 0, &[], &[(1, 1), (2, 2), (3, 3)], 0),
        ];
        for (n, per, marks, ranges, open) in table {
            let (c, sealed) = cut(n, per, marks);
            let got: Vec<(u64, u64)> = sealed
                .iter()
                .map(|b| (b.first_height, b.last_height))
                .collect();
            assert_eq!(got, ranges, "{n} blocks, {per} per batch, marks {marks:?}");
            assert_eq!(c.open_hashes.len(), open);
            for (i, b) in sealed.iter().enumerate() {
                assert_eq!(b.number, i as u64 + 1);
                assert_eq!(b.state_root, B256::with_last_byte(b.last_height as u8));
                let prev = if i == 0 {
                    B256::ZERO
                } else {
                    sealed[i - 1].commitment()
                };
                assert_eq!(
                    b.previous, prev,
                    "batch {} links to the one before",
                    b.number
                );
                let hashes: Vec<B256> = (b.first_height..=b.last_height)
                    .map(|h| B256::repeat_byte(h as u8))
                    .collect();
                assert_eq!(b.block_hashes_hash, block_hashes_hash(&hashes));
            }
        }
    }

    #[test]
    fn a_block_declaring_members_ends_its_batch_and_names_their_addresses() {
        let keys: Vec<_> = (0..3).map(|i| derived_key("batch-members", i)).collect();
        let declared: Vec<NodeId> = keys.iter().map(|k| k.node_id()).collect();
        let mut c = BatchCursor::default();
        let mut sealed = Vec::new();
        for height in 1..=6 {
            let (mut h, hash) = block(height, height * 100, false);
            if height == 2 {
                h.members = Some(declared.clone());
            }
            sealed.extend(c.on_block(&h, hash, 4));
        }
        let ranges: Vec<(u64, u64)> = sealed
            .iter()
            .map(|b| (b.first_height, b.last_height))
            .collect();
        assert_eq!(ranges, [(1, 2), (3, 6)]);
        // Restated here: each key's address, ascending.
        let mut want: Vec<Address> = keys.iter().map(|k| k.address()).collect();
        want.sort();
        assert_eq!(sealed[0].next_attesters, want);
        assert!(sealed[1].next_attesters.is_empty(), "the set stays");
        let mut packed = Vec::new();
        for a in &want {
            packed.extend_from_slice(B256::left_padding_from(a.as_slice()).as_slice());
        }
        assert_eq!(attesters_hash(&want), keccak256(&packed));
    }

    #[test]
    fn the_leader_marks_a_seal_once_the_open_batch_waited_its_timeout() {
        let (c, _) = cut(12, 10, &[]); // open: blocks 11 (t=1100) and 12
                                       // (timestamp, timeout) -> due
        for (t, timeout, due) in [
            (1_100, 500, false),
            (1_599, 500, false),
            (1_600, 500, true),
            (9_999, 0, false),
            (900, 500, false), // a clock behind the batch's start is no reason to seal
        ] {
            assert_eq!(c.seal_due(t, timeout), due, "t={t} timeout={timeout}");
        }
        assert!(
            !BatchCursor::default().seal_due(u64::MAX, 1),
            "nothing open"
        );
    }

    #[test]
    fn attestations_verify_and_order_by_address() {
        let h = header();
        let keys: Vec<_> = (0..4).map(|i| derived_key("batch-test", i)).collect();
        let mut atts: Vec<Attestation> = keys.iter().map(|k| Attestation::sign(&h, k)).collect();
        assert!(atts.iter().all(|a| a.verify(&h)));
        assert_eq!(address_of(&keys[0].node_id()), keys[0].address());
        // A forged one (another key's signature under a signer's name) and a duplicate drop out.
        atts.push(Attestation {
            signer: keys[0].node_id(),
            signature: keys[1].sign_hash(&h.commitment()),
        });
        atts.push(atts[2].clone());
        let sigs = ordered_signatures(&h, &atts);
        assert_eq!(sigs.len(), 4);
        let addrs: Vec<Address> = sigs
            .iter()
            .map(|s| keys::recover_address(&h.commitment(), s).unwrap())
            .collect();
        assert!(addrs.windows(2).all(|w| w[0] < w[1]), "{addrs:?}");
        let other = BatchHeader {
            number: 2,
            ..h.clone()
        };
        assert!(!atts[0].verify(&other));
    }
}

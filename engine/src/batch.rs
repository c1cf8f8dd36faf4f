//! L1 batches: a run of canonized blocks committed to L1 as one link of a hash chain. The
//! commitment is exactly what `contracts/Settlement.sol` computes (`commitment(...)`:
//! keccak256 over the ABI encoding of its six fields), and what each consensus node signs to
//! attest the batch.

use alloy_primitives::{keccak256, Address, B256};
use serde::{Deserialize, Serialize};

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
    /// block_hashes_hash))`: every field is a static ABI type, one 32-byte word each.
    pub fn commitment(&self) -> B256 {
        let mut buf = Vec::with_capacity(6 * 32);
        buf.extend_from_slice(&word_u64(self.number));
        buf.extend_from_slice(self.previous.as_slice());
        buf.extend_from_slice(&word_u64(self.first_height));
        buf.extend_from_slice(&word_u64(self.last_height));
        buf.extend_from_slice(self.state_root.as_slice());
        buf.extend_from_slice(self.block_hashes_hash.as_slice());
        keccak256(&buf)
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
        ];
        for v in variants {
            assert_ne!(v.commitment(), c, "{v:?}");
        }
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

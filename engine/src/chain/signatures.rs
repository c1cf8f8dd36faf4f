//! Who checks transaction signatures, and how many cores they use.
//!
//! A signature is recovered once per transaction per node: a consensus node checks it at
//! admission (the leader's mempool holds only checked transactions, and a replica checks before
//! forwarding), and Raft members trust each other's blocks the way they trust each other's
//! votes (the crash-fault model): neither the proposer's signature nor the transactions' is
//! recovered again on apply. External nodes and standbys trust nobody: every signature of a downloaded
//! block is checked, through a [`SignatureVerifier`] the host supplies (the production node
//! spreads one block's transactions across cores; the engine itself never starts a thread).

use crate::chain::certificate::{CertificateCheck, CertificateError};
use crate::chain::tx::SignedTransaction;

pub trait SignatureVerifier: Send + Sync {
    /// The index of the first transaction whose signature does not recover to its sender.
    fn first_invalid(&self, txs: &[&SignedTransaction]) -> Option<usize>;

    /// Whether each transaction's signature recovers to its sender (a batched submission).
    fn each_valid(&self, txs: &[SignedTransaction]) -> Vec<bool> {
        txs.iter().map(SignedTransaction::signature_valid).collect()
    }

    /// The first of `checks` whose certificate does not verify, and why: a downloaded range's
    /// certificates in one call, so a verifier can spread them across cores.
    fn first_bad_certificate(
        &self,
        checks: &[CertificateCheck<'_>],
    ) -> Option<(usize, CertificateError)> {
        checks
            .iter()
            .enumerate()
            .find_map(|(i, c)| c.run().err().map(|e| (i, e)))
    }
}

/// The first transaction of `blocks` whose signature is bad, as (block index, transaction
/// index), checked in one call so a verifier can spread a whole downloaded range across cores
/// even when each block is small.
pub fn first_invalid_in<'a>(
    verifier: &dyn SignatureVerifier,
    blocks: impl IntoIterator<Item = &'a crate::chain::block::Block> + Clone,
) -> Option<(usize, usize)> {
    let txs: Vec<&SignedTransaction> = blocks
        .clone()
        .into_iter()
        .flat_map(|b| &b.transactions)
        .collect();
    let mut at = verifier.first_invalid(&txs)?;
    for (i, b) in blocks.into_iter().enumerate() {
        if at < b.transactions.len() {
            return Some((i, at));
        }
        at -= b.transactions.len();
    }
    None
}

/// One transaction after another on the calling thread (the simulator, tests).
pub struct Sequential;

impl SignatureVerifier for Sequential {
    fn first_invalid(&self, txs: &[&SignedTransaction]) -> Option<usize> {
        txs.iter().position(|t| !t.signature_valid())
    }
}

/// How [`crate::chain::rules::verify_block`] treats the signatures of a block: its proposer's and its
/// transactions'.
#[derive(Clone, Copy)]
pub enum Signatures<'a> {
    /// The block came through the Raft log from a member's leader, or from this node's own
    /// store: the proposer signed it and checked every transaction at admission. Members
    /// trust each other's blocks as they trust each other's votes (the crash-fault model);
    /// only the proposer's membership is checked.
    Trusted,
    /// A downloaded block whose transactions' signatures were just checked with the rest of
    /// its range: the proposer's signature is checked.
    TransactionsChecked,
    /// A downloaded block with a verified commit certificate: a majority of consensus peers
    /// applied it, having trusted the leader that built it as members do (see `Trusted`), so
    /// its transactions' signatures are not recovered again. The proposer's is (one recovery
    /// a block): the certificate covers the header's hash, which the signature is not part
    /// of, and a node must not store and serve on a signature that does not verify.
    Certified,
    /// A downloaded block: every signature is checked.
    Check(&'a dyn SignatureVerifier),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::block::{Block, BlockHeader};
    use crate::chain::tx::{Payload, Transaction};
    use crate::keys::derived_key;

    /// `k`'s data transactions at `nonces`, validly signed.
    fn signed(k: &crate::keys::SecretKey, nonces: std::ops::Range<u64>) -> Vec<SignedTransaction> {
        nonces
            .map(|nonce| {
                Transaction {
                    sender: k.address(),
                    nonce,
                    payload: Payload::Data(vec![]),
                }
                .sign(k)
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn sequential_names_the_first_forgery() {
        let txs = signed(&derived_key("sigs", 0), 0..4);
        let refs: Vec<&SignedTransaction> = txs.iter().collect();
        assert_eq!(Sequential.first_invalid(&refs), None);
        let mut forged = txs.clone();
        forged[2].tx.nonce = 9;
        forged[3].tx.nonce = 10;
        let refs: Vec<&SignedTransaction> = forged.iter().collect();
        assert_eq!(Sequential.first_invalid(&refs), Some(2));
    }

    #[test]
    fn a_range_names_the_block_and_index_of_the_first_forgery() {
        let k = derived_key("sigs", 1);
        let block = |nonces: std::ops::Range<u64>| {
            let txs = signed(&k, nonces);
            let header = BlockHeader {
                height: 1,
                parent_hash: Default::default(),
                timestamp_ms: 0,
                transactions_root: Default::default(),
                state_root: Default::default(),
                proposer: Default::default(),
                term: 0,
                slot: None,
                seals_batch: false,
            };
            Block::seal(header, txs, &k).unwrap()
        };
        let mut blocks = vec![block(0..2), block(2..2), block(2..5)];
        assert_eq!(first_invalid_in(&Sequential, &blocks), None);
        blocks[2].transactions[1].tx.nonce = 99;
        assert_eq!(first_invalid_in(&Sequential, &blocks), Some((2, 1)));
        blocks[0].transactions[1].tx.nonce = 99;
        assert_eq!(first_invalid_in(&Sequential, &blocks), Some((0, 1)));
    }
}

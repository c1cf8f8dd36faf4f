//! Checks a downloaded range's signatures on every core (rayon's global pool, one thread per
//! core): its commit certificates, and every transaction's where the node verifies everything
//! (a standby, or an external node set to trust no majority). Recovery is what replay spends
//! its time on.

use canon_engine::chain::certificate::{CertificateCheck, CertificateError};
use canon_engine::chain::signatures::{Sequential, SignatureVerifier};
use canon_engine::chain::tx::SignedTransaction;
use rayon::prelude::*;

/// Below this many transactions a block is checked on the calling thread: handing work to
/// the pool costs more than it saves.
const PARALLEL_FROM_TRANSACTIONS: usize = 32;

pub struct ParallelVerifier;

impl SignatureVerifier for ParallelVerifier {
    fn first_invalid(&self, txs: &[&SignedTransaction]) -> Option<usize> {
        if txs.len() < PARALLEL_FROM_TRANSACTIONS {
            return Sequential.first_invalid(txs);
        }
        txs.par_iter().position_first(|t| !t.signature_valid())
    }

    fn each_valid(&self, txs: &[SignedTransaction]) -> Vec<bool> {
        if txs.len() < PARALLEL_FROM_TRANSACTIONS {
            return Sequential.each_valid(txs);
        }
        txs.par_iter()
            .map(SignedTransaction::signature_valid)
            .collect()
    }

    /// Every certificate of the range at once, one per task (each is a majority of
    /// recoveries, so even a short range is worth spreading).
    fn first_bad_certificate(
        &self,
        checks: &[CertificateCheck<'_>],
    ) -> Option<(usize, CertificateError)> {
        let results: Vec<Result<(), CertificateError>> =
            checks.par_iter().map(CertificateCheck::run).collect();
        results
            .into_iter()
            .enumerate()
            .find_map(|(i, r)| r.err().map(|e| (i, e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use canon_engine::chain::tx::{Payload, Transaction};
    use canon_engine::keys::derived_key;

    #[test]
    fn finds_the_first_forgery_like_the_sequential_check() {
        let k = derived_key("parallel-verifier", 0);
        let mut txs: Vec<SignedTransaction> = (0..200)
            .map(|nonce| {
                Transaction {
                    sender: k.address(),
                    nonce,
                    payload: Payload::Data(vec![]),
                }
                .sign(&k)
                .unwrap()
            })
            .collect();
        let refs: Vec<&SignedTransaction> = txs.iter().collect();
        assert_eq!(ParallelVerifier.first_invalid(&refs), None);
        for i in [150, 40, 199] {
            txs[i].tx.nonce += 1_000;
        }
        let refs: Vec<&SignedTransaction> = txs.iter().collect();
        assert_eq!(ParallelVerifier.first_invalid(&refs), Some(40));
        assert_eq!(Sequential.first_invalid(&refs), Some(40));
        assert_eq!(ParallelVerifier.first_invalid(&refs[..10]), None);
        let each = ParallelVerifier.each_valid(&txs);
        assert_eq!(each, Sequential.each_valid(&txs));
        assert_eq!(each.iter().filter(|ok| !**ok).count(), 3);
        assert!(!each[40] && !each[150] && !each[199]);
    }
}

//! Checks a downloaded range's signatures on every core (rayon's global pool, one thread per
//! core): its commit certificates, and every transaction's where the node verifies everything
//! (a standby, or an external node set to trust no majority). Recovery is what replay spends
//! its time on.

use canon_engine::app::{App, Rejection, Tx};
use canon_engine::chain::certificate::{CertificateCheck, CertificateError};
use canon_engine::chain::signatures::{Sequential, TxVerifier};
use rayon::prelude::*;

/// Below this many transactions a block is checked on the calling thread: handing work to
/// the pool costs more than it saves.
const PARALLEL_FROM_TRANSACTIONS: usize = 32;

pub struct ParallelVerifier;

impl TxVerifier for ParallelVerifier {
    fn first_invalid(&self, app: &App, txs: &[&Tx]) -> Option<(usize, Rejection)> {
        if txs.len() < PARALLEL_FROM_TRANSACTIONS {
            return Sequential.first_invalid(app, txs);
        }
        txs.par_iter()
            .enumerate()
            .find_map_first(|(i, t)| app.verify(t).err().map(|e| (i, e)))
    }

    fn each_valid(&self, app: &App, txs: &[Tx]) -> Vec<Result<(), Rejection>> {
        if txs.len() < PARALLEL_FROM_TRANSACTIONS {
            return Sequential.each_valid(app, txs);
        }
        txs.par_iter().map(|t| app.verify(t)).collect()
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
    use canon_engine::app::ledger::{LedgerApp, Payload, SignedTransaction, Transaction};
    use canon_engine::keys::derived_key;

    #[test]
    fn finds_the_first_forgery_like_the_sequential_check() {
        let app = App::new(LedgerApp::default());
        let k = derived_key("parallel-verifier", 0);
        let mut signed: Vec<SignedTransaction> = (0..200)
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
        let encode =
            |s: &[SignedTransaction]| -> Vec<Tx> { s.iter().map(|t| t.to_tx().unwrap()).collect() };
        let txs = encode(&signed);
        let refs: Vec<&Tx> = txs.iter().collect();
        assert_eq!(ParallelVerifier.first_invalid(&app, &refs), None);
        for i in [150, 40, 199] {
            signed[i].tx.nonce += 1_000;
        }
        let txs = encode(&signed);
        let refs: Vec<&Tx> = txs.iter().collect();
        let at = |r: Option<(usize, Rejection)>| r.map(|(i, _)| i);
        assert_eq!(at(ParallelVerifier.first_invalid(&app, &refs)), Some(40));
        assert_eq!(at(Sequential.first_invalid(&app, &refs)), Some(40));
        assert_eq!(ParallelVerifier.first_invalid(&app, &refs[..10]), None);
        let each = ParallelVerifier.each_valid(&app, &txs);
        assert_eq!(each, Sequential.each_valid(&app, &txs));
        assert_eq!(each.iter().filter(|ok| ok.is_err()).count(), 3);
        assert!(each[40].is_err() && each[150].is_err() && each[199].is_err());
    }
}

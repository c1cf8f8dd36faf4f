//! Who checks transaction signatures, and how many cores they use.
//!
//! A signature is recovered once per transaction per node: a consensus node checks it at
//! admission (the leader's mempool holds only checked transactions, and a replica checks before
//! forwarding), and Raft members trust each other's blocks the way they trust each other's
//! votes (the crash-fault model): neither the proposer's signature nor the transactions' is
//! recovered again on apply. External nodes and standbys trust nobody: every signature of a downloaded
//! block is checked, through a [`TxVerifier`] the host supplies (which runs the application's
//! [`crate::app::Application::verify`]) (the production node
//! spreads one block's transactions across cores; the engine itself never starts a thread).

use crate::app::{App, Rejection, Tx};
use crate::chain::certificate::{CertificateCheck, CertificateError};

pub trait TxVerifier: Send + Sync {
    /// The index of the first transaction the application's stateless check refuses, and why.
    fn first_invalid(&self, app: &App, txs: &[&Tx]) -> Option<(usize, Rejection)>;

    /// The application's stateless check of each transaction (a batched submission).
    fn each_valid(&self, app: &App, txs: &[Tx]) -> Vec<Result<(), Rejection>> {
        txs.iter().map(|tx| app.verify(tx)).collect()
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

/// The first transaction of `blocks` the application refuses on its own, as (block index,
/// transaction index, why), checked in one call so a verifier can spread a whole downloaded
/// range across cores even when each block is small.
pub fn first_invalid_in<'a>(
    verifier: &dyn TxVerifier,
    app: &App,
    blocks: impl IntoIterator<Item = &'a crate::chain::block::Block> + Clone,
) -> Option<(usize, usize, Rejection)> {
    let txs: Vec<&Tx> = blocks
        .clone()
        .into_iter()
        .flat_map(|b| &b.transactions)
        .collect();
    let (mut at, why) = verifier.first_invalid(app, &txs)?;
    for (i, b) in blocks.into_iter().enumerate() {
        if at < b.transactions.len() {
            return Some((i, at, why));
        }
        at -= b.transactions.len();
    }
    None
}

/// One transaction after another on the calling thread (the simulator, tests).
pub struct Sequential;

impl TxVerifier for Sequential {
    fn first_invalid(&self, app: &App, txs: &[&Tx]) -> Option<(usize, Rejection)> {
        txs.iter()
            .enumerate()
            .find_map(|(i, t)| app.verify(t).err().map(|e| (i, e)))
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
    Check(&'a dyn TxVerifier),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::ledger::{LedgerApp, Payload, SignedTransaction, Transaction};
    use crate::chain::block::{Block, BlockHeader};
    use crate::keys::derived_key;

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

    fn txs(signed: &[SignedTransaction]) -> Vec<Tx> {
        signed.iter().map(|s| s.to_tx().unwrap()).collect()
    }

    fn app() -> App {
        App::new(LedgerApp::default())
    }

    #[test]
    fn sequential_names_the_first_forgery() {
        let good = signed(&derived_key("sigs", 0), 0..4);
        let all = txs(&good);
        let refs: Vec<&Tx> = all.iter().collect();
        assert_eq!(Sequential.first_invalid(&app(), &refs), None);
        let mut forged = good.clone();
        forged[2].tx.nonce = 9;
        forged[3].tx.nonce = 10;
        let all = txs(&forged);
        let refs: Vec<&Tx> = all.iter().collect();
        let (at, why) = Sequential.first_invalid(&app(), &refs).unwrap();
        assert_eq!((at, why.rule.as_str()), (2, crate::app::RULE_SIGNATURE));
    }

    #[test]
    fn a_range_names_the_block_and_index_of_the_first_forgery() {
        let k = derived_key("sigs", 1);
        let block = |nonces: std::ops::Range<u64>, forge: Option<usize>| {
            let mut s = signed(&k, nonces);
            if let Some(i) = forge {
                s[i].tx.nonce = 99;
            }
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
                members: None,
            };
            Block::seal(header, txs(&s), &k).unwrap()
        };
        let at = |blocks: &[Block]| {
            first_invalid_in(&Sequential, &app(), blocks).map(|(b, t, _)| (b, t))
        };
        let mut blocks = vec![block(0..2, None), block(2..2, None), block(2..5, None)];
        assert_eq!(at(&blocks), None);
        blocks[2] = block(2..5, Some(1));
        assert_eq!(at(&blocks), Some((2, 1)));
        blocks[0] = block(0..2, Some(1));
        assert_eq!(at(&blocks), Some((0, 1)));
    }
}

//! Pending transactions, ordered by sender and nonce so the sequencer can take each sender's
//! next runnable nonces in order.

use std::collections::BTreeMap;

use alloy_primitives::Address;
use serde::{Deserialize, Serialize};

use crate::chain::ledger::Ledger;
use crate::chain::tx::SignedTransaction;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum AdmitError {
    #[error("mempool is full ({0} transactions)")]
    Full(usize),
    #[error("nonce {got} already used (account nonce is {expected})")]
    Stale { expected: u64, got: u64 },
    #[error("a transaction with this sender and nonce is already pending")]
    Duplicate,
}

pub struct Mempool {
    by_sender: BTreeMap<(Address, u64), SignedTransaction>,
    capacity: usize,
}

impl Mempool {
    pub fn new(capacity: usize) -> Mempool {
        Mempool {
            by_sender: BTreeMap::new(),
            capacity,
        }
    }

    pub fn len(&self) -> usize {
        self.by_sender.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_sender.is_empty()
    }

    pub fn admit(&mut self, tx: SignedTransaction, ledger: &Ledger) -> Result<(), AdmitError> {
        let expected = ledger.account(&tx.tx.sender).nonce;
        if tx.tx.nonce < expected {
            return Err(AdmitError::Stale {
                expected,
                got: tx.tx.nonce,
            });
        }
        let key = (tx.tx.sender, tx.tx.nonce);
        if self.by_sender.contains_key(&key) {
            return Err(AdmitError::Duplicate);
        }
        if self.by_sender.len() >= self.capacity {
            return Err(AdmitError::Full(self.capacity));
        }
        self.by_sender.insert(key, tx);
        Ok(())
    }

    /// Drops transactions whose nonce the chain has already used.
    pub fn prune(&mut self, ledger: &Ledger) {
        self.by_sender
            .retain(|(sender, nonce), _| *nonce >= ledger.account(sender).nonce);
    }

    pub fn remove(&mut self, tx: &SignedTransaction) {
        self.by_sender.remove(&(tx.tx.sender, tx.tx.nonce));
    }

    /// Each sender's consecutive nonces starting at its account nonce, taken round-robin
    /// across senders (each one's next nonce in turn, senders in address order within a
    /// round), up to `limit`. Taking whole runs sender by sender let the lowest addresses fill
    /// every block while the rest waited for seconds under load.
    pub fn candidates(&self, ledger: &Ledger, limit: usize) -> Vec<SignedTransaction> {
        let mut runs: Vec<Vec<&SignedTransaction>> = Vec::new();
        let mut sender: Option<(Address, u64)> = None;
        for ((addr, nonce), tx) in &self.by_sender {
            let next = match sender {
                Some((a, n)) if a == *addr => n,
                _ => {
                    runs.push(Vec::new());
                    ledger.account(addr).nonce
                }
            };
            let run_full = runs.last().is_some_and(|r| r.len() >= limit);
            if *nonce < next {
                // Already used on chain; `prune` will drop it.
                sender = Some((*addr, next));
            } else if *nonce == next && !run_full {
                if let Some(run) = runs.last_mut() {
                    run.push(tx);
                }
                sender = Some((*addr, next + 1));
            } else {
                // A gap (or enough from this sender): nothing later of it goes this time.
                sender = Some((*addr, u64::MAX));
            }
        }
        let mut out = Vec::new();
        let longest = runs.iter().map(Vec::len).max().unwrap_or(0);
        'rounds: for round in 0..longest {
            for run in &runs {
                if out.len() >= limit {
                    break 'rounds;
                }
                if let Some(tx) = run.get(round) {
                    out.push((*tx).clone());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::tx::{Payload, Transaction};
    use crate::keys::SecretKey;

    fn tx(k: &SecretKey, nonce: u64) -> SignedTransaction {
        Transaction {
            sender: k.address(),
            nonce,
            payload: Payload::Data(vec![]),
        }
        .sign(k)
        .unwrap()
    }

    #[test]
    fn candidates_are_consecutive_nonces_per_sender() {
        let a = SecretKey::from_bytes([1; 32]).unwrap();
        let ledger = Ledger::default();
        let mut mp = Mempool::new(10);
        for n in [0, 1, 3] {
            mp.admit(tx(&a, n), &ledger).unwrap();
        }
        assert_eq!(mp.admit(tx(&a, 1), &ledger), Err(AdmitError::Duplicate));
        let nonces: Vec<u64> = mp
            .candidates(&ledger, 10)
            .iter()
            .map(|t| t.tx.nonce)
            .collect();
        assert_eq!(nonces, vec![0, 1]);
        assert_eq!(mp.candidates(&ledger, 1).len(), 1);
    }

    #[test]
    fn candidates_take_turns_across_senders() {
        let a = SecretKey::from_bytes([1; 32]).unwrap();
        let b = SecretKey::from_bytes([2; 32]).unwrap();
        let ledger = Ledger::default();
        let mut mp = Mempool::new(100);
        for n in 0..10 {
            mp.admit(tx(&a, n), &ledger).unwrap();
        }
        for n in 0..2 {
            mp.admit(tx(&b, n), &ledger).unwrap();
        }
        let (lo, hi) = if a.address() < b.address() {
            (a.address(), b.address())
        } else {
            (b.address(), a.address())
        };
        let picked: Vec<(Address, u64)> = mp
            .candidates(&ledger, 5)
            .iter()
            .map(|t| (t.tx.sender, t.tx.nonce))
            .collect();
        // Both senders get a turn every round, whoever has more pending.
        let expect_b_in_first_four = picked[..4]
            .iter()
            .filter(|(s, _)| *s == b.address())
            .count();
        assert_eq!(expect_b_in_first_four, 2, "{picked:?}");
        assert_eq!(picked[0].0, lo);
        assert_eq!(picked[1].0, hi);
        // Each sender's nonces stay in order.
        for s in [a.address(), b.address()] {
            let nonces: Vec<u64> = picked
                .iter()
                .filter(|(x, _)| *x == s)
                .map(|(_, n)| *n)
                .collect();
            assert!(nonces.windows(2).all(|w| w[1] == w[0] + 1), "{nonces:?}");
        }
        assert_eq!(picked.len(), 5);
    }

    #[test]
    fn full_and_stale_are_refused_and_prune_drops_used_nonces() {
        let a = SecretKey::from_bytes([1; 32]).unwrap();
        let mut ledger = Ledger::default();
        let mut mp = Mempool::new(2);
        mp.admit(tx(&a, 0), &ledger).unwrap();
        mp.admit(tx(&a, 1), &ledger).unwrap();
        assert_eq!(mp.admit(tx(&a, 2), &ledger), Err(AdmitError::Full(2)));
        ledger.apply_signed(&tx(&a, 0)).unwrap();
        assert_eq!(
            mp.admit(tx(&a, 0), &ledger),
            Err(AdmitError::Stale {
                expected: 1,
                got: 0
            })
        );
        mp.prune(&ledger);
        assert_eq!(mp.len(), 1);
    }
}

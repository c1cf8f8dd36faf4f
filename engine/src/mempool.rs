//! Pending transactions, ordered by sender and nonce so the sequencer can take each sender's
//! next runnable nonces in order.

use std::collections::BTreeMap;

use alloy_primitives::Address;
use serde::{Deserialize, Serialize};

use crate::ledger::Ledger;
use crate::tx::SignedTransaction;

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

    /// Each sender's consecutive nonces starting at its account nonce, senders in address order.
    pub fn candidates(&self, ledger: &Ledger, limit: usize) -> Vec<SignedTransaction> {
        let mut out = Vec::new();
        let mut sender: Option<(Address, u64)> = None;
        for ((addr, nonce), tx) in &self.by_sender {
            if out.len() >= limit {
                break;
            }
            let next = match sender {
                Some((a, n)) if a == *addr => n,
                _ => ledger.account(addr).nonce,
            };
            if *nonce < next {
                // Already used on chain; `prune` will drop it.
                sender = Some((*addr, next));
            } else if *nonce == next {
                out.push(tx.clone());
                sender = Some((*addr, next + 1));
            } else {
                // A gap: nothing later from this sender can run yet.
                sender = Some((*addr, u64::MAX));
            }
        }
        out
    }
}

//! The deterministic reference executor: an account ledger of balances and nonces with a state
//! root. The same blocks give the same root on every node.

use std::collections::{BTreeMap, BTreeSet};

use alloy_primitives::{keccak256, Address, B256};
use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};
use crate::tx::{Payload, SignedTransaction};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub balance: u64,
    pub nonce: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum TxError {
    #[error("signature does not recover to the sender")]
    BadSignature,
    #[error("nonce {got} already used (account nonce is {expected})")]
    NonceTooLow { expected: u64, got: u64 },
    #[error("nonce {got} is ahead of the account nonce {expected}")]
    NonceGap { expected: u64, got: u64 },
    #[error("balance {balance} is less than the transfer of {amount}")]
    InsufficientBalance { balance: u64, amount: u64 },
    #[error("recipient balance would overflow")]
    Overflow,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ledger {
    accounts: BTreeMap<Address, Account>,
}

impl Ledger {
    pub fn from_alloc(alloc: &[(Address, u64)]) -> Ledger {
        let mut accounts = BTreeMap::new();
        for (addr, balance) in alloc {
            accounts.entry(*addr).or_insert(Account::default()).balance += balance;
        }
        Ledger { accounts }
    }

    pub fn from_accounts(accounts: impl IntoIterator<Item = (Address, Account)>) -> Ledger {
        Ledger {
            accounts: accounts.into_iter().collect(),
        }
    }

    pub fn account(&self, addr: &Address) -> Account {
        self.accounts.get(addr).copied().unwrap_or_default()
    }

    pub fn accounts(&self) -> impl Iterator<Item = (&Address, &Account)> {
        self.accounts.iter()
    }

    /// Applies one transaction whose signature the caller has checked (or is about to reject).
    /// On error nothing changes. Returns the accounts it wrote.
    pub fn apply(&mut self, stx: &SignedTransaction) -> Result<[Address; 2], TxError> {
        let tx = &stx.tx;
        let mut from = self.account(&tx.sender);
        if tx.nonce < from.nonce {
            return Err(TxError::NonceTooLow {
                expected: from.nonce,
                got: tx.nonce,
            });
        }
        if tx.nonce > from.nonce {
            return Err(TxError::NonceGap {
                expected: from.nonce,
                got: tx.nonce,
            });
        }
        from.nonce += 1;
        match &tx.payload {
            Payload::Data(_) => {
                self.accounts.insert(tx.sender, from);
                Ok([tx.sender, tx.sender])
            }
            Payload::Transfer { to, amount } => {
                if from.balance < *amount {
                    return Err(TxError::InsufficientBalance {
                        balance: from.balance,
                        amount: *amount,
                    });
                }
                if *to == tx.sender {
                    // A self-transfer only spends the nonce.
                    self.accounts.insert(tx.sender, from);
                    return Ok([tx.sender, tx.sender]);
                }
                from.balance -= amount;
                let mut dest = self.account(to);
                dest.balance = dest.balance.checked_add(*amount).ok_or(TxError::Overflow)?;
                self.accounts.insert(tx.sender, from);
                self.accounts.insert(*to, dest);
                Ok([tx.sender, *to])
            }
        }
    }

    /// Checks the signature, then applies.
    pub fn apply_signed(&mut self, stx: &SignedTransaction) -> Result<[Address; 2], TxError> {
        if !stx.signature_valid() {
            return Err(TxError::BadSignature);
        }
        self.apply(stx)
    }

    /// keccak over the canonical encoding of every account in address order.
    pub fn state_root(&self) -> Result<B256, CodecError> {
        let entries: Vec<(&Address, &Account)> = self.accounts.iter().collect();
        Ok(keccak256(codec::encode(&entries)?))
    }
}

/// The ledger after a block, and which accounts the block wrote (what storage must persist).
#[derive(Clone, Debug)]
pub struct Executed {
    pub ledger: Ledger,
    pub touched: BTreeSet<Address>,
}

impl Executed {
    pub fn touched_accounts(&self) -> impl Iterator<Item = (Address, Account)> + '_ {
        self.touched.iter().map(|a| (*a, self.ledger.account(a)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::SecretKey;
    use crate::tx::Transaction;

    fn key(n: u8) -> SecretKey {
        SecretKey::from_bytes([n; 32]).unwrap()
    }

    fn transfer(k: &SecretKey, nonce: u64, to: Address, amount: u64) -> SignedTransaction {
        Transaction {
            sender: k.address(),
            nonce,
            payload: Payload::Transfer { to, amount },
        }
        .sign(k)
        .unwrap()
    }

    #[test]
    fn transfers_move_balance_and_bump_nonce() {
        let (a, b) = (key(1), key(2));
        let mut l = Ledger::from_alloc(&[(a.address(), 100)]);
        l.apply_signed(&transfer(&a, 0, b.address(), 30)).unwrap();
        assert_eq!(
            l.account(&a.address()),
            Account {
                balance: 70,
                nonce: 1
            }
        );
        assert_eq!(l.account(&b.address()).balance, 30);
    }

    #[test]
    fn invalid_transactions_change_nothing() {
        let (a, b) = (key(1), key(2));
        let mut l = Ledger::from_alloc(&[(a.address(), 100)]);
        let before = l.state_root().unwrap();
        assert_eq!(
            l.apply_signed(&transfer(&a, 1, b.address(), 1)),
            Err(TxError::NonceGap {
                expected: 0,
                got: 1
            })
        );
        assert_eq!(
            l.apply_signed(&transfer(&a, 0, b.address(), 101)),
            Err(TxError::InsufficientBalance {
                balance: 100,
                amount: 101
            })
        );
        let mut forged = transfer(&a, 0, b.address(), 1);
        forged.tx.sender = b.address();
        assert_eq!(l.apply_signed(&forged), Err(TxError::BadSignature));
        assert_eq!(l.state_root().unwrap(), before);
    }

    #[test]
    fn self_transfer_keeps_balance() {
        let a = key(1);
        let mut l = Ledger::from_alloc(&[(a.address(), 100)]);
        l.apply_signed(&transfer(&a, 0, a.address(), 40)).unwrap();
        assert_eq!(
            l.account(&a.address()),
            Account {
                balance: 100,
                nonce: 1
            }
        );
    }

    #[test]
    fn same_transactions_same_root_independent_of_history_objects() {
        let (a, b) = (key(1), key(2));
        let alloc = [(a.address(), 100), (b.address(), 5)];
        let txs = [
            transfer(&a, 0, b.address(), 10),
            transfer(&b, 0, a.address(), 3),
        ];
        let mut l1 = Ledger::from_alloc(&alloc);
        let mut l2 = Ledger::from_alloc(&alloc);
        for t in &txs {
            l1.apply_signed(t).unwrap();
            l2.apply_signed(t).unwrap();
        }
        assert_eq!(l1.state_root().unwrap(), l2.state_root().unwrap());
        let rebuilt = Ledger::from_accounts(l1.accounts().map(|(a, acc)| (*a, *acc)));
        assert_eq!(rebuilt.state_root().unwrap(), l1.state_root().unwrap());
    }
}

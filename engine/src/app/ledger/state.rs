//! The deterministic reference executor: an account ledger of balances and nonces with a state
//! root. The same blocks give the same root on every node.

use alloy_primitives::{Address, B256};
use imbl::OrdMap;
use serde::{Deserialize, Serialize};
use solana_lattice_hash::lt_hash::LtHash;

use super::super::lattice::{Element, LatticeMap};
use super::tx::{Payload, SignedTransaction};

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

impl TxError {
    /// The rule broken, as the seam's [`super::super::Rejection`] names it.
    pub fn rule(&self) -> &'static str {
        match self {
            TxError::BadSignature => super::super::RULE_SIGNATURE,
            TxError::NonceTooLow { .. } => "nonce_too_low",
            TxError::NonceGap { .. } => super::super::RULE_SEQUENCE_AHEAD,
            TxError::InsufficientBalance { .. } => "insufficient_balance",
            TxError::Overflow => "overflow",
        }
    }
}

/// blake3's key-derivation context for an account's lattice element: the commitment's version.
const ACCOUNT_CONTEXT: &str = "canon 2026-11 ledger account v1";

/// The hasher with [`ACCOUNT_CONTEXT`] taken in (deriving it costs a compression per element).
static ACCOUNT_HASHER: std::sync::LazyLock<blake3::Hasher> =
    std::sync::LazyLock::new(|| blake3::Hasher::new_derive_key(ACCOUNT_CONTEXT));

/// An account's element of the state commitment. An account at its default (no balance, no
/// nonce) contributes nothing, so the commitment depends only on what the accounts hold, not on
/// whether an untouched default entry happens to be stored.
impl Element<Address> for Account {
    fn element(&self, addr: &Address) -> Option<LtHash> {
        if *self == Account::default() {
            return None;
        }
        let mut h = ACCOUNT_HASHER.clone();
        h.update(addr.as_slice());
        h.update(&self.balance.to_le_bytes());
        h.update(&self.nonce.to_le_bytes());
        Some(LtHash::with(&h))
    }
}

/// The account ledger: balances and nonces in a [`LatticeMap`], whose root is the state root.
#[derive(Clone, Default, PartialEq)]
pub struct Ledger {
    accounts: LatticeMap<Address, Account>,
}

impl Eq for Ledger {}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("accounts", &self.len())
            .field("state_root", &self.state_root())
            .finish()
    }
}

impl Ledger {
    pub fn from_alloc(alloc: &[(Address, u64)]) -> Ledger {
        let mut accounts = OrdMap::new();
        for (addr, balance) in alloc {
            accounts.entry(*addr).or_insert(Account::default()).balance += balance;
        }
        Ledger {
            accounts: LatticeMap::from_entries(accounts),
        }
    }

    pub fn from_accounts(accounts: impl IntoIterator<Item = (Address, Account)>) -> Ledger {
        Ledger {
            accounts: LatticeMap::from_entries(accounts.into_iter().collect()),
        }
    }

    pub fn account(&self, addr: &Address) -> Account {
        self.accounts.get(addr).copied().unwrap_or_default()
    }

    /// Every stored account, in address order.
    pub fn accounts(&self) -> impl Iterator<Item = (&Address, &Account)> {
        self.accounts.entries().iter()
    }

    pub fn len(&self) -> usize {
        self.accounts.entries().len()
    }

    pub fn is_empty(&self) -> bool {
        self.accounts.entries().is_empty()
    }

    fn write(&mut self, addr: Address, acc: Account) {
        self.accounts.set(addr, Some(acc));
    }

    /// Applies one transaction whose signature has been checked (at admission, or by
    /// [`crate::chain::rules::verify_block`]). On error nothing changes. Returns the accounts it wrote.
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
                self.write(tx.sender, from);
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
                    self.write(tx.sender, from);
                    return Ok([tx.sender, tx.sender]);
                }
                from.balance -= amount;
                let mut dest = self.account(to);
                dest.balance = dest.balance.checked_add(*amount).ok_or(TxError::Overflow)?;
                self.write(tx.sender, from);
                self.write(*to, dest);
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

    /// The state root: the checksum of the accounts' lattice hash.
    pub fn state_root(&self) -> B256 {
        self.accounts.root()
    }

    /// Folds the pending writes into the commitment (O(accounts written since the last call))
    /// and returns the state root, so later roots start from here.
    pub fn commit_root(&mut self) -> B256 {
        self.commit().0
    }

    /// [`Ledger::commit_root`], and the accounts whose content changed since the last call.
    pub fn commit(&mut self) -> (B256, Vec<Address>) {
        self.accounts.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tx::Transaction;
    use super::*;
    use crate::keys::SecretKey;

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
        let before = l.state_root();
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
        assert_eq!(l.state_root(), before);
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
        assert_eq!(l1.state_root(), l2.state_root());
        let rebuilt = Ledger::from_accounts(l1.accounts().map(|(a, acc)| (*a, *acc)));
        assert_eq!(rebuilt.state_root(), l1.state_root());
    }

    #[test]
    fn default_accounts_contribute_nothing_to_the_root() {
        let a = Address::repeat_byte(1);
        let with_default = Ledger::from_accounts([
            (a, Account::default()),
            (
                Address::repeat_byte(2),
                Account {
                    balance: 3,
                    nonce: 0,
                },
            ),
        ]);
        let without = Ledger::from_alloc(&[(Address::repeat_byte(2), 3)]);
        assert_eq!(with_default.state_root(), without.state_root());
        assert_ne!(Ledger::default().state_root(), without.state_root());
    }

    proptest::proptest! {
        /// The incremental root, folded at any points, is the root computed from scratch over
        /// the same accounts; and it moves whenever any account's content does.
        #[test]
        fn incremental_root_is_the_from_scratch_root(
            ops in proptest::collection::vec((0u8..4, 0u8..4, 0u64..40, proptest::bool::ANY), 0..40)
        ) {
            let keys: Vec<SecretKey> = (1..=4).map(key).collect();
            let mut l = Ledger::from_alloc(&[(keys[0].address(), 100), (keys[1].address(), 50)]);
            for (from, to, amount, fold) in ops {
                let k = &keys[from as usize];
                let nonce = l.account(&k.address()).nonce;
                let before = l.state_root();
                let applied = l.apply(&transfer(k, nonce, keys[to as usize].address(), amount));
                let scratch = Ledger::from_accounts(l.accounts().map(|(a, acc)| (*a, *acc)));
                proptest::prop_assert_eq!(l.state_root(), scratch.state_root());
                proptest::prop_assert_eq!(applied.is_ok(), l.state_root() != before);
                if fold {
                    proptest::prop_assert_eq!(l.commit_root(), scratch.state_root());
                }
            }
        }
    }
}

//! The account ledger as an application: signed transfers between accounts with balances and
//! nonces. A transaction is a bincode-encoded [`SignedTransaction`]; its lane is the sender, its
//! sequence the nonce. Storage keeps one 16-byte record (balance, nonce, little-endian) per
//! address; a query is a 20-byte address and its answer that account's record.

use alloy_primitives::{Address, B256};

use super::{Application, Committed, Entry, Lane, Rejection, Tx, Write};
use crate::codec;

mod state;
pub mod tx;

pub use state::{Account, Ledger, TxError};
pub use tx::{Payload, SignedTransaction, Transaction};

/// The ledger application: its genesis allocation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LedgerApp {
    pub genesis_alloc: Vec<(Address, u64)>,
}

impl LedgerApp {
    pub fn new(genesis_alloc: Vec<(Address, u64)>) -> LedgerApp {
        LedgerApp { genesis_alloc }
    }
}

/// The stored record of an account.
pub fn encode_account(account: &Account) -> Vec<u8> {
    let mut v = Vec::with_capacity(16);
    v.extend_from_slice(&account.balance.to_le_bytes());
    v.extend_from_slice(&account.nonce.to_le_bytes());
    v
}

pub fn decode_account(bytes: &[u8]) -> Result<Account, Rejection> {
    let (balance, nonce) = match bytes.len() {
        16 => bytes.split_at(8),
        n => {
            return Err(Rejection::encoding(format!(
                "account record of {n} bytes, not 16"
            )))
        }
    };
    let word = |b: &[u8]| {
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        u64::from_le_bytes(a)
    };
    Ok(Account {
        balance: word(balance),
        nonce: word(nonce),
    })
}

fn address_of(bytes: &[u8], what: &str) -> Result<Address, Rejection> {
    Address::try_from(bytes)
        .map_err(|_| Rejection::encoding(format!("{what} of {} bytes, not 20", bytes.len())))
}

/// `address`'s account in `state`, if `state` is a ledger's.
pub fn account_in(state: &super::AppState, address: &Address) -> Option<Account> {
    state.downcast_ref::<Ledger>().map(|l| l.account(address))
}

/// The query for `address`'s account.
pub fn account_query(address: &Address) -> Vec<u8> {
    address.to_vec()
}

/// A sender's lane: its address, right-aligned.
pub fn lane_of(sender: &Address) -> B256 {
    sender.into_word()
}

impl SignedTransaction {
    /// The transaction as the engine carries it.
    pub fn to_tx(&self) -> Result<Tx, codec::CodecError> {
        Ok(Tx::new(codec::encode(self)?))
    }

    /// Reads a ledger transaction, refusing any encoding but the canonical one, so one
    /// transaction has one id.
    pub fn from_tx(tx: &Tx) -> Result<SignedTransaction, Rejection> {
        super::decode_canonical(tx)
    }
}

impl From<TxError> for Rejection {
    fn from(e: TxError) -> Rejection {
        Rejection::new(e.rule(), &e)
    }
}

impl Application for LedgerApp {
    type State = Ledger;

    fn kind(&self) -> &'static str {
        "ledger"
    }

    fn genesis(&self) -> Ledger {
        Ledger::from_alloc(&self.genesis_alloc)
    }

    fn verify(&self, tx: &Tx) -> Result<(), Rejection> {
        if SignedTransaction::from_tx(tx)?.signature_valid() {
            Ok(())
        } else {
            Err(TxError::BadSignature.into())
        }
    }

    fn lane(&self, tx: &Tx) -> Result<Option<Lane>, Rejection> {
        let stx = SignedTransaction::from_tx(tx)?;
        Ok(Some(Lane {
            id: lane_of(&stx.tx.sender),
            sequence: stx.tx.nonce,
        }))
    }

    fn next_in_lane(&self, state: &Ledger, lane: &B256) -> u64 {
        state.account(&Address::from_word(*lane)).nonce
    }

    fn execute(&self, state: &mut Ledger, tx: &Tx) -> Result<Vec<u8>, Rejection> {
        state.apply(&SignedTransaction::from_tx(tx)?)?;
        Ok(Vec::new())
    }

    fn commit(&self, state: &mut Ledger) -> Committed {
        let (state_root, written) = state.commit();
        let writes = written
            .into_iter()
            .map(|addr| {
                let account = state.account(&addr);
                Write {
                    key: addr.to_vec(),
                    value: (account != Account::default()).then(|| encode_account(&account)),
                }
            })
            .collect();
        Committed { state_root, writes }
    }

    fn query(&self, state: &Ledger, query: &[u8]) -> Result<Vec<u8>, Rejection> {
        let address = address_of(query, "account query")?;
        Ok(encode_account(&state.account(&address)))
    }

    fn export(&self, state: &Ledger) -> Vec<Entry> {
        state
            .accounts()
            .map(|(a, acc)| (a.to_vec(), encode_account(acc)))
            .collect()
    }

    fn import(&self, entries: Vec<Entry>) -> Result<Ledger, Rejection> {
        let mut accounts = Vec::with_capacity(entries.len());
        for (k, v) in entries {
            accounts.push((address_of(&k, "account key")?, decode_account(&v)?));
        }
        Ok(Ledger::from_accounts(accounts))
    }
}

#[cfg(test)]
mod tests {
    use super::super::App;
    use super::*;
    use crate::keys::SecretKey;

    fn key(n: u8) -> SecretKey {
        SecretKey::from_bytes([n; 32]).unwrap()
    }

    fn pay(k: &SecretKey, nonce: u64, to: Address, amount: u64) -> Tx {
        Transaction {
            sender: k.address(),
            nonce,
            payload: Payload::Transfer { to, amount },
        }
        .sign(k)
        .unwrap()
        .to_tx()
        .unwrap()
    }

    #[test]
    fn through_the_seam_a_block_commits_its_writes_and_imports_to_the_same_root() {
        let (a, b) = (key(1), key(2));
        let app = App::new(LedgerApp::new(vec![(a.address(), 100)]));
        let mut state = app.genesis();
        let genesis_root = app.genesis_root();
        state.execute(&pay(&a, 0, b.address(), 30)).unwrap();
        let committed = state.commit();
        assert_ne!(committed.state_root, genesis_root);
        let mut keys: Vec<Vec<u8>> = committed.writes.iter().map(|w| w.key.clone()).collect();
        keys.sort();
        let mut expected = vec![a.address().to_vec(), b.address().to_vec()];
        expected.sort();
        assert_eq!(keys, expected);
        let answer = state.query(&account_query(&b.address())).unwrap();
        assert_eq!(decode_account(&answer).unwrap().balance, 30);
        let imported = app.import(state.export()).unwrap();
        assert_eq!(imported.root(), committed.state_root);
    }

    #[test]
    fn refusals_name_their_rule_and_leave_the_state() {
        let (a, b) = (key(1), key(2));
        let app = App::new(LedgerApp::new(vec![(a.address(), 100)]));
        let mut state = app.genesis();
        let gap = state.execute(&pay(&a, 1, b.address(), 1)).unwrap_err();
        assert_eq!(gap.rule, super::super::RULE_SEQUENCE_AHEAD);
        let poor = state.execute(&pay(&a, 0, b.address(), 101)).unwrap_err();
        assert_eq!(poor.rule, "insufficient_balance");
        assert_eq!(state.root(), app.genesis_root());
        let mut forged = SignedTransaction::from_tx(&pay(&a, 0, b.address(), 1)).unwrap();
        forged.tx.sender = b.address();
        let forged = forged.to_tx().unwrap();
        assert_eq!(
            app.verify(&forged).unwrap_err().rule,
            super::super::RULE_SIGNATURE
        );
        let mut padded = pay(&a, 0, b.address(), 1).as_bytes().to_vec();
        padded.push(0);
        assert_eq!(
            app.verify(&Tx::new(padded)).unwrap_err().rule,
            super::super::RULE_ENCODING
        );
        let lane = app.lane(&pay(&a, 7, b.address(), 1)).unwrap().unwrap();
        assert_eq!((lane.id, lane.sequence), (lane_of(&a.address()), 7));
        assert_eq!(state.next_in_lane(&lane.id), 0);
    }
}

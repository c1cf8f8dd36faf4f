//! Transactions: a sender's numbered, signed instruction to the ledger.

use alloy_primitives::{keccak256, Address, B256};
use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};
use crate::ids::Sig65;
use crate::keys::{self, SecretKey};

/// What a transaction does once its nonce is accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Payload {
    /// Move `amount` from the sender to `to`.
    Transfer { to: Address, amount: u64 },
    /// Record bytes on chain; only the nonce changes.
    Data(Vec<u8>),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    pub sender: Address,
    pub nonce: u64,
    pub payload: Payload,
}

impl Transaction {
    pub fn hash(&self) -> Result<B256, CodecError> {
        Ok(keccak256(codec::encode(self)?))
    }

    pub fn sign(self, key: &SecretKey) -> Result<SignedTransaction, CodecError> {
        let signature = key.sign_hash(&self.hash()?);
        Ok(SignedTransaction {
            tx: self,
            signature,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTransaction {
    pub tx: Transaction,
    pub signature: Sig65,
}

impl SignedTransaction {
    /// The id of a signed transaction covers its signature, so a resubmission is recognised.
    pub fn hash(&self) -> Result<B256, CodecError> {
        Ok(keccak256(codec::encode(self)?))
    }

    /// True when the signature was made by the key of `tx.sender`.
    pub fn signature_valid(&self) -> bool {
        let Ok(hash) = self.tx.hash() else {
            return false;
        };
        matches!(keys::recover_address(&hash, &self.signature), Ok(a) if a == self.tx.sender)
    }
}

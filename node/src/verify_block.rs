//! `canon-node verify-block`: a light proof. Checks one block a node serves over JSON-RPC,
//! trusting only the chain id and the consensus peer ids it is given, never the node: the
//! block's own bytes give its hash, which a majority of the peers must have signed for that
//! height of that chain (its commit certificate); its transactions must hash to its
//! transactions root, and its proposer must be a peer that signed it. What it cannot check
//! without re-executing the chain from genesis is the state root: the certificate vouches for
//! it, as it does for an external node.

use alloy_primitives::B256;
use canon_engine::chain::block::{transactions_root, Block};
use canon_engine::chain::certificate::{majority, Certificate, CertificateError, CommitVote};
use canon_engine::chain::rules::{verify_signature, BlockError};
use canon_engine::codec;
use canon_engine::ids::Sig65;
use canon_engine::NodeId;
use serde_json::Value;

use crate::client::{ClientError, NodeClient};

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}")]
    Client(#[from] ClientError),
    #[error("the node has no block at height {0}")]
    NoBlock(u64),
    #[error("the node's answer has no valid `{field}`: {reason}")]
    Field { field: &'static str, reason: String },
    #[error("block {height} is not certified yet: no majority of consensus peers signed it")]
    Uncertified { height: u64 },
    #[error("asked for height {asked}, the block's bytes say {got}")]
    OtherHeight { asked: u64, got: u64 },
    #[error("the commit certificate does not prove block {hash}: {error}")]
    Certificate { hash: B256, error: CertificateError },
    #[error("the block's transactions do not hash to its transactions root: {0}")]
    Body(BlockError),
    #[error("the block's proposer signature: {0}")]
    Proposer(BlockError),
}

/// A block that checked out.
#[derive(Debug)]
pub struct Verified {
    pub height: u64,
    pub hash: B256,
    pub transactions: usize,
    /// Who certified it, in the certificate's order.
    pub signers: Vec<NodeId>,
}

fn field<'a>(v: &'a Value, name: &'static str) -> Result<&'a str, VerifyError> {
    v.get(name)
        .and_then(Value::as_str)
        .ok_or(VerifyError::Field {
            field: name,
            reason: "missing or not a string".into(),
        })
}

fn hex_bytes(s: &str, name: &'static str) -> Result<Vec<u8>, VerifyError> {
    hex::decode(s.trim_start_matches("0x")).map_err(|e| VerifyError::Field {
        field: name,
        reason: e.to_string(),
    })
}

/// The certificate in a `canon_getBlockByNumber` answer (`null` when there is none).
pub fn parse_certificate(v: &Value) -> Result<Option<Certificate>, VerifyError> {
    if v.is_null() {
        return Ok(None);
    }
    let bad = |reason: String| VerifyError::Field {
        field: "certificate",
        reason,
    };
    let height = v
        .get("height")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("no height".into()))?;
    let block_hash: B256 = field(v, "blockHash")?
        .parse()
        .map_err(|e| bad(format!("blockHash: {e}")))?;
    let votes = v
        .get("votes")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no votes".into()))?
        .iter()
        .map(|vote| {
            let signer: NodeId = field(vote, "signer")?
                .parse()
                .map_err(|e| bad(format!("signer: {e}")))?;
            let signature: [u8; 65] = hex_bytes(field(vote, "signature")?, "signature")?
                .try_into()
                .map_err(|_| bad("a signature is not 65 bytes".into()))?;
            Ok(CommitVote {
                signer,
                signature: Sig65(signature),
            })
        })
        .collect::<Result<Vec<_>, VerifyError>>()?;
    Ok(Some(Certificate {
        height,
        block_hash,
        votes,
    }))
}

/// Checks the block at `height` that `client`'s node serves against `chain_id` and `peers`.
pub fn verify_block(
    client: &NodeClient,
    height: u64,
    chain_id: u64,
    peers: &[NodeId],
) -> Result<Verified, VerifyError> {
    let answer = client.block(height)?.ok_or(VerifyError::NoBlock(height))?;
    let raw = hex_bytes(field(&answer, "raw")?, "raw")?;
    let block: Block = codec::decode(&raw).map_err(|e| VerifyError::Field {
        field: "raw",
        reason: e.to_string(),
    })?;
    let certificate = parse_certificate(answer.get("certificate").unwrap_or(&Value::Null))?
        .ok_or(VerifyError::Uncertified { height })?;
    check(&block, &certificate, height, chain_id, peers)
}

/// The checks themselves, on a decoded block and certificate.
pub fn check(
    block: &Block,
    certificate: &Certificate,
    height: u64,
    chain_id: u64,
    peers: &[NodeId],
) -> Result<Verified, VerifyError> {
    if block.header.height != height {
        return Err(VerifyError::OtherHeight {
            asked: height,
            got: block.header.height,
        });
    }
    let hash = block.hash().map_err(|e| VerifyError::Field {
        field: "raw",
        reason: e.to_string(),
    })?;
    certificate
        .verify(chain_id, peers, height, &hash)
        .map_err(|error| VerifyError::Certificate { hash, error })?;
    let computed = transactions_root(&block.transactions);
    if computed != block.header.transactions_root {
        return Err(VerifyError::Body(BlockError::TransactionsRoot {
            got: block.header.transactions_root,
            computed,
        }));
    }
    verify_signature(peers, block).map_err(VerifyError::Proposer)?;
    Ok(Verified {
        height,
        hash,
        transactions: block.transactions.len(),
        signers: certificate.votes.iter().map(|v| v.signer).collect(),
    })
}

/// What `verify-block` prints for a block that checked out.
pub fn report(v: &Verified, peers: usize) -> String {
    let signers: Vec<String> = v
        .signers
        .iter()
        .map(|s| {
            let hex = s.to_string();
            hex.chars().take(10).collect()
        })
        .collect();
    format!(
        "block {} {} ({} transactions) is certified by {} of {peers} consensus peers \
         (a majority is {}): {}",
        v.height,
        v.hash,
        v.transactions,
        v.signers.len(),
        majority(peers),
        signers.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use canon_engine::chain::block::BlockHeader;
    use canon_engine::keys::derived_key;

    const CHAIN: u64 = 7;

    fn fixture() -> (Vec<canon_engine::keys::SecretKey>, Block, Certificate) {
        let keys: Vec<_> = (0..3).map(|i| derived_key("verify-block", i)).collect();
        let header = BlockHeader {
            height: 5,
            parent_hash: B256::repeat_byte(4),
            timestamp_ms: 1,
            transactions_root: transactions_root(&[]),
            state_root: B256::repeat_byte(9),
            proposer: keys[0].node_id(),
            term: 1,
            slot: None,
            seals_batch: false,
            members: None,
        };
        let block = Block::seal(header, Vec::new(), &keys[0]).unwrap();
        let hash = block.hash().unwrap();
        let certificate = Certificate {
            height: 5,
            block_hash: hash,
            votes: keys[..2]
                .iter()
                .map(|k| CommitVote::sign(CHAIN, 5, &hash, k))
                .collect(),
        };
        (keys, block, certificate)
    }

    #[test]
    fn a_certified_block_checks_out_and_each_lie_is_named() {
        let (keys, block, cert) = fixture();
        let peers: Vec<NodeId> = keys.iter().map(|k| k.node_id()).collect();
        let ok = check(&block, &cert, 5, CHAIN, &peers).unwrap();
        assert_eq!((ok.height, ok.signers.len()), (5, 2));
        assert!(report(&ok, 3).contains("certified by 2 of 3 consensus peers (a majority is 2)"));
        // Another chain id, another peer set, another height, a changed block.
        assert!(matches!(
            check(&block, &cert, 5, CHAIN + 1, &peers),
            Err(VerifyError::Certificate { .. })
        ));
        assert!(matches!(
            check(&block, &cert, 5, CHAIN, &peers[1..]),
            Err(VerifyError::Certificate {
                error: CertificateError::UnknownSigner(_),
                ..
            })
        ));
        assert!(matches!(
            check(&block, &cert, 6, CHAIN, &peers),
            Err(VerifyError::OtherHeight { .. })
        ));
        let mut changed = block.clone();
        changed.header.state_root = B256::repeat_byte(8);
        assert!(matches!(
            check(&changed, &cert, 5, CHAIN, &peers),
            Err(VerifyError::Certificate {
                error: CertificateError::OtherBlock { .. },
                ..
            })
        ));
    }

    #[test]
    fn the_json_certificate_round_trips() {
        let (_, _, cert) = fixture();
        let json = crate::rpc::certificate_json(&cert);
        assert_eq!(parse_certificate(&json).unwrap(), Some(cert));
        assert_eq!(parse_certificate(&Value::Null).unwrap(), None);
        let mut broken = json.clone();
        broken["votes"][0]["signature"] = Value::String("0x1234".into());
        assert!(matches!(
            parse_certificate(&broken),
            Err(VerifyError::Field {
                field: "certificate",
                ..
            })
        ));
    }
}

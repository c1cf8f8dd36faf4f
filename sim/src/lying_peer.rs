//! A consensus node made to lie in the block ranges it serves (to a peer filling a
//! snapshot's gap, or to anyone), its Raft and everything else honest: what a compromised
//! peer could serve. Each lie is refused by a rule of the backfill or the certificate.

use std::sync::{Arc, Mutex};

use alloy_primitives::keccak256;
use canon_engine::app::ledger::{Payload, SignedTransaction, Transaction};
use canon_engine::chain::certificate::{Certificate, CommitVote, ServedBlock};
use canon_engine::codec;
use canon_engine::consensus::node::ConsensusNode;
use canon_engine::keys::{derived_key, SecretKey};
use canon_engine::net::transport::BoxFuture;
use canon_engine::net::wire::{Request, Response};
use canon_engine::NodeId;

use crate::host::Serves;
use crate::runtime::MadsimRuntime;

/// How a consensus node made to lie corrupts the block ranges it serves (to a peer filling a
/// snapshot's gap, or to anyone): each is refused by a rule of the backfill or the certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServingLie {
    /// A transaction changed in the second block, header untouched: the hash chain holds, the
    /// transactions root does not (`wrong_body`).
    Tampered,
    /// The first two blocks swapped (`not_contiguous`).
    Reordered,
    /// The last block replaced by one of another chain at that height, certified by that
    /// chain's majority: its hash is not the one the chain down from the snapshot needs
    /// (`wrong_hash`).
    Foreign,
    /// The real blocks, the second with the first's certificate
    /// (`certificate_other_height`).
    OtherCertificate,
}

impl ServingLie {
    pub const ALL: [ServingLie; 4] = [
        ServingLie::Tampered,
        ServingLie::Reordered,
        ServingLie::Foreign,
        ServingLie::OtherCertificate,
    ];

    /// The rule a backfilling node must refuse the lie by (`Event::BackfillRefused::kind`).
    pub fn rule(self) -> &'static str {
        match self {
            ServingLie::Tampered => "wrong_body",
            ServingLie::Reordered => "not_contiguous",
            ServingLie::Foreign => "wrong_hash",
            ServingLie::OtherCertificate => "certificate_other_height",
        }
    }

    fn apply(self, served: &mut [ServedBlock], chain_id: u64) {
        if served.len() < 2 {
            return; // Too short to lie about this way: served as it is.
        }
        match self {
            ServingLie::Tampered => match served[1]
                .block
                .transactions
                .first()
                .and_then(|raw| SignedTransaction::from_tx(raw).ok())
            {
                Some(mut stx) => {
                    stx.tx.nonce = stx.tx.nonce.wrapping_add(1);
                    if let Ok(raw) = stx.to_tx() {
                        served[1].block.transactions[0] = raw;
                    }
                }
                None => {
                    let k = derived_key("canon-sim/lying-peer", 0);
                    let tx = Transaction {
                        sender: k.address(),
                        nonce: 0,
                        payload: Payload::Data(b"slipped in".to_vec()),
                    };
                    if let Ok(tx) = tx.sign(&k).and_then(|t| t.to_tx()) {
                        served[1].block.transactions.push(tx);
                    }
                }
            },
            ServingLie::Reordered => served.swap(0, 1),
            ServingLie::Foreign => {
                let last = served.len() - 1;
                let b = &mut served[last].block;
                // Another chain's block at this height: its own parent, its own majority.
                b.header.parent_hash = keccak256(b.header.parent_hash);
                let foreign: Vec<SecretKey> = (0..3)
                    .map(|i| derived_key("canon-sim/foreign-chain", i))
                    .collect();
                b.header.proposer = foreign[0].node_id();
                if let Ok(h) = b.header.hash() {
                    b.signature = foreign[0].sign_hash(&h);
                    let height = b.header.height;
                    served[last].certificate = Some(Certificate {
                        height,
                        block_hash: h,
                        votes: foreign[..2]
                            .iter()
                            .map(|k| CommitVote::sign(chain_id, height, &h, k))
                            .collect(),
                    });
                }
            }
            ServingLie::OtherCertificate => {
                served[1].certificate = served[0].certificate.clone();
            }
        }
    }
}

/// Where a node's serving lie is set, shared with its host.
pub type ServingLieSlot = Arc<Mutex<Option<ServingLie>>>;

/// A consensus node whose block serving lies as its slot says (its Raft and everything else
/// stay honest): what a compromised peer could serve a node filling a snapshot's gap.
pub(crate) struct LyingPeer {
    pub(crate) node: Arc<ConsensusNode<MadsimRuntime>>,
    pub(crate) lie: ServingLieSlot,
}

impl Serves for LyingPeer {
    fn answer(&self, from: NodeId, bytes: Vec<u8>) -> BoxFuture<'_, Vec<u8>> {
        Box::pin(async move {
            let lie = *canon_engine::sync::lock(&self.lie);
            let Some(lie) = lie else {
                return self.node.handle_request(from, &bytes).await;
            };
            let Ok(req @ Request::GetBlocks { .. }) = codec::decode::<Request>(&bytes) else {
                return self.node.handle_request(from, &bytes).await;
            };
            let mut answer = self.node.answer(from, req).await;
            if let Response::Blocks(served) = &mut answer {
                lie.apply(served, self.node.chain_spec().chain_id);
            }
            codec::encode(&answer).unwrap_or_default()
        })
    }
}

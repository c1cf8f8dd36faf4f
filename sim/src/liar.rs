//! Lying block sources on simulated hosts. A liar relays consensus nodes' `GetHead` and
//! `GetBlocks` answers to whoever asks and lies about the blocks in one seeded way ([`Lie`]).
//! It holds stolen consensus keys: it re-signs tampered headers with the proposer's, and forges
//! at most one consensus node's commit vote per certificate, except in the one lie that stands
//! for a Byzantine majority ([`Lie::ByzantineMajority`]), where only re-checking every
//! transaction signature can tell.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use alloy_primitives::{keccak256, B256};
use canon_engine::app::ledger::{Payload, SignedTransaction, Transaction};
use canon_engine::chain::block::{transactions_root, Block};
use canon_engine::chain::certificate::{majority, Certificate, CommitVote, ServedBlock};
use canon_engine::codec;
use canon_engine::consensus::raft::types::Command;
use canon_engine::keys::{derived_key, SecretKey};
use canon_engine::net::peer;
use canon_engine::net::transport::BoxFuture;
use canon_engine::net::wire::{LogEntry, LogPayload, Request, Response};
use canon_engine::storage::{Column, Storage};
use canon_engine::NodeId;

use crate::cluster::{node_key, SimCluster};
use crate::host::{NetHost, Serves};
use crate::net::{SimTransport, PORT};

fn liar_ip(k: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 3, (k + 1) as u8))
}

/// How a lying source lies about the blocks it relays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lie {
    /// A flipped byte of the proposer's signature. The header, and so the certificate, is
    /// unchanged: only the proposer's signature check can tell.
    Signature,
    /// A wrong state root, re-signed with the proposer's key; the real certificate kept.
    StateRoot,
    /// A wrong parent hash, re-signed with the proposer's key; the real certificate kept.
    Parent,
    /// A transaction not signed by its sender, the roots recomputed and the header re-signed
    /// with the proposer's key; the real certificate kept.
    Transaction,
    /// The real block with its certificate withheld.
    Uncertified,
    /// A tampered block (a wrong state root, re-signed) certified by one consensus node: the
    /// proposer's stolen key, a minority.
    MinorityCertificate,
    /// The real block and certificate, plus a vote by a key outside `consensus_peer_ids`.
    StrangerSignature,
    /// The real block with the real certificate of another height.
    OtherHeight,
    /// A deposed leader's real proposal that was never committed, served in place of the
    /// canonical block at its height, certified by the deposed leader's own vote.
    DeposedProposal,
    /// A transaction not signed by its sender, certified by a majority of stolen keys: what a
    /// Byzantine majority could serve. Only an external node set to verify every signature
    /// refuses it.
    ByzantineMajority,
}

impl Lie {
    pub const ALL: [Lie; 10] = [
        Lie::Signature,
        Lie::StateRoot,
        Lie::Parent,
        Lie::Transaction,
        Lie::Uncertified,
        Lie::MinorityCertificate,
        Lie::StrangerSignature,
        Lie::OtherHeight,
        Lie::DeposedProposal,
        Lie::ByzantineMajority,
    ];

    /// The rule an external node must refuse the lie by (`BlockError::kind`).
    pub fn rule(self) -> &'static str {
        match self {
            Lie::Signature => "signature",
            Lie::StateRoot | Lie::Parent | Lie::Transaction => "certificate_other_block",
            Lie::Uncertified => "uncertified",
            Lie::MinorityCertificate | Lie::DeposedProposal => "certificate_too_few",
            Lie::StrangerSignature => "certificate_unknown_signer",
            Lie::OtherHeight => "certificate_other_height",
            Lie::ByzantineMajority => "transaction",
        }
    }
}

/// A started liar: its id, and where the scenario hands it a deposed leader's proposals.
pub struct LiarHandle {
    pub id: NodeId,
    deposed: Arc<Mutex<Vec<Block>>>,
}

impl LiarHandle {
    /// From now on, the liar serves `blocks` in place of the canonical ones at their heights.
    pub fn serve_deposed(&self, blocks: Vec<Block>) {
        *canon_engine::sync::lock(&self.deposed) = blocks;
    }
}

impl SimCluster {
    /// The blocks node `i`'s Raft log holds on its disk now: proposals that lost among them
    /// until a newer leader's entries overwrite them, so a scenario can hand a liar a real
    /// deposed leader's proposal.
    pub fn logged_blocks(&self, i: usize) -> Vec<Block> {
        let rows = canon_engine::storage::Checksummed::new(self.disk(i).clone())
            .scan(Column::Log, &[], &[0xff; 9], usize::MAX)
            .unwrap_or_default();
        rows.iter()
            .filter_map(|(_, v)| codec::decode::<LogEntry>(v).ok())
            .filter_map(|e| match e.payload {
                LogPayload::Normal(Command::Block(b)) => Some(b),
                _ => None,
            })
            .collect()
    }

    /// Starts a lying source that tells `lie`. List its id among an external node's sources.
    pub fn add_liar(&mut self, lie: Lie) -> LiarHandle {
        let k = 0;
        let key = derived_key("canon-sim/liar", k);
        let ip = liar_ip(k);
        let member = self
            .net
            .add_member(key.node_id(), SocketAddr::new(ip, PORT));
        let keys: Vec<SecretKey> = (0..self.size()).map(node_key).collect();
        let chain_id = self.spec.chain_id;
        let deposed: Arc<Mutex<Vec<Block>>> = Arc::new(Mutex::new(Vec::new()));
        let (net, id, observer) = (self.net.clone(), key.node_id(), self.observer.clone());
        // Its refusals are expected: the checker's "never serves a corrupt record" is about
        // sound nodes.
        observer.lock().checker.expect_serving_lies_from(id);
        let shared = deposed.clone();
        self.handle
            .create_node()
            .name("liar")
            .ip(ip)
            .init(move || {
                let (net, keys, deposed) = (net.clone(), keys.clone(), shared.clone());
                let (observer, key) = (observer.clone(), key.clone());
                async move {
                    let host = NetHost {
                        me: member,
                        key: key.clone(),
                        net,
                        observer: observer.clone(),
                        node: None,
                    };
                    let listener = host.listen();
                    let liar = Arc::new(Liar {
                        transport: host.transport(),
                        keys,
                        own: key,
                        chain_id,
                        lie,
                        deposed,
                    });
                    host.serve(listener, liar).await;
                }
            })
            .build();
        self.note(format!("start lying source ({lie:?})"));
        LiarHandle { id, deposed }
    }
}

struct Liar {
    transport: Arc<SimTransport>,
    /// Every consensus node's key, stolen.
    keys: Vec<SecretKey>,
    /// Its own key: not a consensus peer's.
    own: SecretKey,
    chain_id: u64,
    lie: Lie,
    deposed: Arc<Mutex<Vec<Block>>>,
}

impl Liar {
    fn key_of(&self, id: &NodeId) -> Option<&SecretKey> {
        self.keys.iter().find(|k| k.node_id() == *id)
    }

    /// Re-signs `b`'s header with its proposer's stolen key.
    fn reseal(&self, b: &mut Block) {
        if let (Some(k), Ok(h)) = (self.key_of(&b.header.proposer), b.header.hash()) {
            b.signature = k.sign_hash(&h);
        }
    }

    /// A certificate of `b` signed by `signers` (stolen keys).
    fn forge(&self, b: &Block, signers: &[&SecretKey]) -> Option<Certificate> {
        let hash = b.hash().ok()?;
        let height = b.header.height;
        Some(Certificate {
            height,
            block_hash: hash,
            votes: signers
                .iter()
                .map(|k| CommitVote::sign(self.chain_id, height, &hash, k))
                .collect(),
        })
    }

    fn wrong_state_root(&self, b: &mut Block) {
        b.header.state_root = keccak256(b.header.state_root);
        self.reseal(b);
    }

    fn forged_transaction(&self, b: &mut Block) {
        let first = b
            .transactions
            .first()
            .and_then(|raw| SignedTransaction::from_tx(raw).ok());
        match first {
            Some(mut stx) => {
                match &mut stx.tx.payload {
                    Payload::Transfer { amount, .. } => *amount = amount.saturating_add(1),
                    Payload::Data(d) => d.push(0),
                }
                if let Ok(raw) = stx.to_tx() {
                    b.transactions[0] = raw;
                }
            }
            None => {
                // In the name of a funded account, signed by another key.
                let victim = crate::cluster::account_key(0);
                let forged = Transaction {
                    sender: victim.address(),
                    nonce: 0,
                    payload: Payload::Data(b"forged by a source".to_vec()),
                }
                .sign(&crate::cluster::pauper_key())
                .and_then(|f| f.to_tx());
                if let Ok(forged) = forged {
                    b.transactions.push(forged);
                }
            }
        }
        b.header.transactions_root = transactions_root(&b.transactions);
        self.reseal(b);
    }

    fn lie_about(&self, served: &mut [ServedBlock]) {
        let certificates: Vec<Option<Certificate>> =
            served.iter().map(|s| s.certificate.clone()).collect();
        let n = served.len();
        for (i, s) in served.iter_mut().enumerate() {
            let b = &mut s.block;
            match self.lie {
                Lie::Signature => b.signature.0[5] ^= 0x40,
                Lie::StateRoot => self.wrong_state_root(b),
                Lie::Parent => {
                    b.header.parent_hash = B256::repeat_byte(0x11);
                    self.reseal(b);
                }
                Lie::Transaction => self.forged_transaction(b),
                Lie::Uncertified => s.certificate = None,
                Lie::MinorityCertificate => {
                    self.wrong_state_root(b);
                    let proposer = self.key_of(&b.header.proposer);
                    s.certificate = self.forge(b, &proposer.into_iter().collect::<Vec<_>>());
                }
                Lie::StrangerSignature => {
                    let hash = b.hash().unwrap_or_default();
                    let stranger =
                        CommitVote::sign(self.chain_id, b.header.height, &hash, &self.own);
                    if let Some(c) = s.certificate.as_mut() {
                        c.votes.push(stranger);
                    }
                }
                Lie::OtherHeight => {
                    s.certificate = if n >= 2 {
                        certificates[(i + 1) % n].clone()
                    } else {
                        s.certificate.take().map(|mut c| {
                            c.height += 1;
                            c
                        })
                    };
                }
                Lie::DeposedProposal => {
                    let height = b.header.height;
                    let deposed = canon_engine::sync::lock(&self.deposed)
                        .iter()
                        .find(|d| d.header.height == height)
                        .cloned();
                    if let Some(d) = deposed {
                        let leader = self.key_of(&d.header.proposer);
                        s.certificate = self.forge(&d, &leader.into_iter().collect::<Vec<_>>());
                        *b = d;
                    }
                }
                Lie::ByzantineMajority => {
                    self.forged_transaction(b);
                    let need = majority(self.keys.len());
                    let signers: Vec<&SecretKey> = self.keys.iter().take(need).collect();
                    s.certificate = self.forge(b, &signers);
                }
            }
        }
    }
}

impl Serves for Liar {
    fn answer(&self, _from: NodeId, bytes: Vec<u8>) -> BoxFuture<'_, Vec<u8>> {
        Box::pin(async move {
            let resp = match codec::decode::<Request>(&bytes) {
                Ok(req @ (Request::GetHead | Request::GetBlocks { .. })) => {
                    let mut answer = Response::Refused("no source reachable".into());
                    for k in &self.keys {
                        let wait = Duration::from_secs(3);
                        if let Ok(r) = peer::call(&*self.transport, k.node_id(), &req, wait).await {
                            answer = r;
                            break;
                        }
                    }
                    if let Response::Blocks(ref mut served) = answer {
                        self.lie_about(served);
                    }
                    answer
                }
                _ => Response::Refused("not served".into()),
            };
            codec::encode(&resp).unwrap_or_default()
        })
    }
}

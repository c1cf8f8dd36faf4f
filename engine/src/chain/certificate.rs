//! Commit certificates: a majority of `consensus_peer_ids` signed that they applied one block.
//!
//! Raft gives no proof that an entry was committed: a deposed leader's signed proposal that
//! lost verifies like one that won. After applying a block a consensus node signs (chain id,
//! height, block hash) with its node key when it is one of the majority [`designated`] for the
//! height, or when asked by a round that needs everyone; a majority of those signatures is a
//! [`Certificate`]. An external node applies a block only with one, so a source can serve it
//! only what a majority applied. The majority is the batcher's attestation quorum
//! ([`majority`]), shared.

use alloy_primitives::{keccak256, B256};
use serde::{Deserialize, Serialize};

use crate::chain::block::Block;
use crate::chain::members::Signers;
use crate::ids::{NodeId, Sig65};
use crate::keys::{recover_node_id, SecretKey};

/// Signatures a majority of `peers` consensus peers makes: what commits a Raft entry, attests
/// an L1 batch, and certifies a block.
pub fn majority(peers: usize) -> usize {
    peers / 2 + 1
}

/// Whether `me` is one of the majority of `signers` designated to sign the block at `height`:
/// the majority that starts at position `height mod n` of the set and wraps around. Every
/// member holds the same set for a height, so every member agrees on who signs. One majority
/// is all a certificate needs, so the rest of the members sign only when a round asks everyone
/// ([`crate::policy::certifier`]), and a 3-member cluster makes two signatures a height instead
/// of three (a 5-member one three instead of five): signing was a fifth of a simulated run.
pub fn designated(height: u64, me: &NodeId, signers: &[NodeId]) -> bool {
    let n = signers.len();
    let Some(at) = signers.iter().position(|s| s == me) else {
        return false;
    };
    let first = (height % n as u64) as usize;
    (at + n - first) % n < majority(n)
}

/// What a consensus node signs once it applied the block `block_hash` at `height`.
pub fn commit_hash(chain_id: u64, height: u64, block_hash: &B256) -> B256 {
    let mut buf = Vec::with_capacity(27 + 8 + 8 + 32);
    buf.extend_from_slice(b"canon/commit-certificate/v1");
    buf.extend_from_slice(&chain_id.to_be_bytes());
    buf.extend_from_slice(&height.to_be_bytes());
    buf.extend_from_slice(block_hash.as_slice());
    keccak256(&buf)
}

/// One consensus node's signature that it applied a block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitVote {
    pub signer: NodeId,
    pub signature: Sig65,
}

impl CommitVote {
    pub fn sign(chain_id: u64, height: u64, block_hash: &B256, key: &SecretKey) -> CommitVote {
        CommitVote {
            signer: key.node_id(),
            signature: key.sign_hash(&commit_hash(chain_id, height, block_hash)),
        }
    }

    /// Whether the vote's signature over (chain, height, block) recovers to its signer.
    pub fn verifies(&self, chain_id: u64, height: u64, block_hash: &B256) -> bool {
        recover_node_id(&commit_hash(chain_id, height, block_hash), &self.signature)
            .is_ok_and(|id| id == self.signer)
    }
}

/// One certificate to check, as a range of downloaded blocks is checked: in one call, so a
/// verifier can spread the recoveries across cores
/// ([`crate::chain::signatures::TxVerifier::first_bad_certificate`]).
pub struct CertificateCheck<'a> {
    pub chain_id: u64,
    pub peers: &'a [NodeId],
    pub height: u64,
    pub block_hash: B256,
    pub certificate: &'a Certificate,
}

impl CertificateCheck<'_> {
    pub fn run(&self) -> Result<(), CertificateError> {
        self.certificate
            .verify(self.chain_id, self.peers, self.height, &self.block_hash)
    }
}

/// A block as a source serves it: with the certificate that shows a majority applied it
/// (`None` only on a redundancy group's chain, which needs none).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedBlock {
    pub block: Block,
    pub certificate: Option<Certificate>,
}

/// What a consensus peer answers for one height of a `GetCommitVotes` range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VoteAnswer {
    /// The height is certified already.
    Certified(Certificate),
    /// The peer's own vote: it applied `block_hash` at `height`.
    Vote {
        height: u64,
        block_hash: B256,
        vote: CommitVote,
    },
}

/// One gathering round's votes, for the blocks this node holds: each vote counts only if it
/// is by a peer, for this node's block at that height, and verifies; a certificate offered
/// whole counts if it verifies against this node's block.
/// Whether a vote's signature is still to be checked.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Checked {
    /// This node's own, signed for the round.
    Own,
    /// A peer's answer.
    Received,
}

pub struct Tally<'a> {
    chain_id: u64,
    /// Whose majority certifies each height.
    signers: &'a Signers,
    /// Per height this node holds: its block hash and the distinct votes for it so far.
    heights: std::collections::BTreeMap<u64, (B256, Vec<CommitVote>)>,
    /// Certificates complete (offered whole, or reached a majority), by height.
    done: std::collections::BTreeMap<u64, Certificate>,
    /// This node's own vote for a height, where it is to sign one. Asked for only once the
    /// peers' votes leave the height one short of a majority: a height a peer offers whole
    /// needs no signature of this node's (a node catching up signed every height it applied,
    /// for certificates its peers held long since).
    own: &'a (dyn Fn(u64, &B256) -> Option<CommitVote> + Sync),
}

impl<'a> Tally<'a> {
    /// A round over `held` (height, block hash) pairs, with this node's own votes where
    /// `own` gives one (where it is to sign), asked for when they complete a certificate.
    pub fn new(
        chain_id: u64,
        signers: &'a Signers,
        held: &[(u64, B256)],
        own: &'a (dyn Fn(u64, &B256) -> Option<CommitVote> + Sync),
    ) -> Tally<'a> {
        let mut tally = Tally {
            chain_id,
            signers,
            heights: held
                .iter()
                .map(|(h, hash)| (*h, (*hash, Vec::new())))
                .collect(),
            done: std::collections::BTreeMap::new(),
            own,
        };
        // A member alone is its own majority.
        for (h, _) in held {
            tally.sign_if_it_completes(*h);
        }
        tally
    }

    /// Adds this node's own vote for the block it holds at `height` if it is to sign one and
    /// the vote completes the majority.
    fn sign_if_it_completes(&mut self, height: u64) {
        let Some((hash, votes)) = self.heights.get(&height) else {
            return;
        };
        let hash = *hash;
        let short = majority(self.signers.of(height).len()).saturating_sub(votes.len());
        if short == 1 && !self.done.contains_key(&height) {
            if let Some(vote) = (self.own)(height, &hash) {
                // This node's own signature, just made: recovering it again only costs.
                self.add_vote(height, &hash, vote, Checked::Own);
            }
        }
    }

    fn add_vote(&mut self, height: u64, block_hash: &B256, vote: CommitVote, checked: Checked) {
        let peers = self.signers.of(height);
        if self.done.contains_key(&height) || !peers.contains(&vote.signer) {
            return;
        }
        let Some((hash, votes)) = self.heights.get_mut(&height) else {
            return;
        };
        if hash != block_hash
            || votes.iter().any(|v| v.signer == vote.signer)
            || (checked == Checked::Received && !vote.verifies(self.chain_id, height, hash))
        {
            return;
        }
        votes.push(vote);
        if votes.len() >= majority(peers.len()) {
            // Signers in the order of their set: the same certificate whoever gathers the
            // same votes.
            let mut votes = std::mem::take(votes);
            votes.sort_by_key(|v| peers.iter().position(|p| *p == v.signer));
            let certificate = Certificate {
                height,
                block_hash: *hash,
                votes,
            };
            self.done.insert(height, certificate);
        }
    }

    /// Takes one peer's answer; what does not hold for this node's blocks is ignored (a peer
    /// that has not applied a height yet has nothing to say about it).
    pub fn offer(&mut self, answer: VoteAnswer) {
        match answer {
            VoteAnswer::Vote {
                height,
                block_hash,
                vote,
            } => {
                self.add_vote(height, &block_hash, vote, Checked::Received);
                self.sign_if_it_completes(height);
            }
            VoteAnswer::Certified(c) => {
                let Some((hash, _)) = self.heights.get(&c.height) else {
                    return;
                };
                if !self.done.contains_key(&c.height)
                    && c.verify(self.chain_id, self.signers.of(c.height), c.height, hash)
                        .is_ok()
                {
                    self.done.insert(c.height, c);
                }
            }
        }
    }

    /// Whether every height of the round is certified: answers still out cannot add anything.
    pub fn complete(&self) -> bool {
        self.done.len() == self.heights.len()
    }

    /// The certificates complete after the answers offered, lowest height first.
    pub fn certificates(self) -> Vec<Certificate> {
        self.done.into_values().collect()
    }
}

/// A majority's votes for the block `block_hash` at `height`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    pub height: u64,
    pub block_hash: B256,
    pub votes: Vec<CommitVote>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum CertificateError {
    #[error("a certificate for height {certified} offered with the block at {block}")]
    OtherHeight { certified: u64, block: u64 },
    #[error("a certificate for block {certified} offered with block {block}")]
    OtherBlock { certified: B256, block: B256 },
    #[error("{0} signed the certificate twice")]
    Duplicate(NodeId),
    #[error("{0} is not one of the members that certify this height")]
    UnknownSigner(NodeId),
    #[error("{0}'s signature does not cover this chain, height and block")]
    BadSignature(NodeId),
    #[error("{have} distinct signatures; a majority of {peers} peers is {need}")]
    TooFew {
        have: usize,
        need: usize,
        peers: usize,
    },
}

impl CertificateError {
    /// A short label for metrics and reports: which rule the certificate broke.
    pub fn kind(&self) -> &'static str {
        match self {
            CertificateError::OtherHeight { .. } => "certificate_other_height",
            CertificateError::OtherBlock { .. } => "certificate_other_block",
            CertificateError::Duplicate(_) => "certificate_duplicate",
            CertificateError::UnknownSigner(_) => "certificate_unknown_signer",
            CertificateError::BadSignature(_) => "certificate_bad_signature",
            CertificateError::TooFew { .. } => "certificate_too_few",
        }
    }
}

impl Certificate {
    /// Checks that a majority of `peers` signed that they applied the block `block_hash` at
    /// `height` of chain `chain_id`. Every vote must verify (a bad one refuses the whole
    /// certificate: whoever assembled it passed on what it should have checked).
    pub fn verify(
        &self,
        chain_id: u64,
        peers: &[NodeId],
        height: u64,
        block_hash: &B256,
    ) -> Result<(), CertificateError> {
        if self.height != height {
            return Err(CertificateError::OtherHeight {
                certified: self.height,
                block: height,
            });
        }
        if self.block_hash != *block_hash {
            return Err(CertificateError::OtherBlock {
                certified: self.block_hash,
                block: *block_hash,
            });
        }
        let hash = commit_hash(chain_id, height, block_hash);
        let mut seen: Vec<NodeId> = Vec::with_capacity(self.votes.len());
        for vote in &self.votes {
            if seen.contains(&vote.signer) {
                return Err(CertificateError::Duplicate(vote.signer));
            }
            if !peers.contains(&vote.signer) {
                return Err(CertificateError::UnknownSigner(vote.signer));
            }
            match recover_node_id(&hash, &vote.signature) {
                Ok(id) if id == vote.signer => seen.push(vote.signer),
                _ => return Err(CertificateError::BadSignature(vote.signer)),
            }
        }
        let need = majority(peers.len());
        if seen.len() < need {
            return Err(CertificateError::TooFew {
                have: seen.len(),
                need,
                peers: peers.len(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::derived_key;

    const CHAIN: u64 = 7;

    fn keys() -> Vec<SecretKey> {
        (0..5).map(|i| derived_key("cert", i)).collect()
    }

    fn peers(keys: &[SecretKey]) -> Vec<NodeId> {
        keys.iter().map(|k| k.node_id()).collect()
    }

    fn cert(signers: &[SecretKey], height: u64, hash: B256) -> Certificate {
        Certificate {
            height,
            block_hash: hash,
            votes: signers
                .iter()
                .map(|k| CommitVote::sign(CHAIN, height, &hash, k))
                .collect(),
        }
    }

    #[test]
    fn a_majority_is_more_than_half() {
        // Restated: the smallest count strictly above half.
        for (peers, need) in [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4)] {
            assert_eq!(majority(peers), need, "{peers} peers");
        }
    }

    #[test]
    fn a_majority_of_peers_certifies_and_nothing_less_or_else_does() {
        let k = keys();
        let p = peers(&k);
        let hash = B256::repeat_byte(1);
        assert_eq!(cert(&k[..3], 10, hash).verify(CHAIN, &p, 10, &hash), Ok(()));
        assert_eq!(
            cert(&k[..2], 10, hash).verify(CHAIN, &p, 10, &hash),
            Err(CertificateError::TooFew {
                have: 2,
                need: 3,
                peers: 5
            })
        );
        // The same signer twice is one signer.
        let mut twice = cert(&k[..2], 10, hash);
        twice.votes.push(twice.votes[0].clone());
        assert_eq!(
            twice.verify(CHAIN, &p, 10, &hash),
            Err(CertificateError::Duplicate(k[0].node_id()))
        );
        // A stranger's vote.
        let stranger = derived_key("cert/stranger", 0);
        let mut foreign = cert(&k[..3], 10, hash);
        foreign
            .votes
            .push(CommitVote::sign(CHAIN, 10, &hash, &stranger));
        assert_eq!(
            foreign.verify(CHAIN, &p, 10, &hash),
            Err(CertificateError::UnknownSigner(stranger.node_id()))
        );
        // Votes over another chain, height or block do not count.
        let mut other_chain = cert(&k[..3], 10, hash);
        other_chain.votes[1] = CommitVote::sign(CHAIN + 1, 10, &hash, &k[1]);
        assert_eq!(
            other_chain.verify(CHAIN, &p, 10, &hash),
            Err(CertificateError::BadSignature(k[1].node_id()))
        );
        let mut other_height = cert(&k[..3], 10, hash);
        other_height.votes[2] = CommitVote::sign(CHAIN, 11, &hash, &k[2]);
        assert_eq!(
            other_height.verify(CHAIN, &p, 10, &hash),
            Err(CertificateError::BadSignature(k[2].node_id()))
        );
        // A vote claiming another signer than the key that made it.
        let mut claimed = cert(&k[..3], 10, hash);
        claimed.votes[0].signer = k[4].node_id();
        assert_eq!(
            claimed.verify(CHAIN, &p, 10, &hash),
            Err(CertificateError::BadSignature(k[4].node_id()))
        );
        // A good certificate offered with another block or height.
        let other = B256::repeat_byte(2);
        assert!(matches!(
            cert(&k[..3], 10, hash).verify(CHAIN, &p, 10, &other),
            Err(CertificateError::OtherBlock { .. })
        ));
        assert!(matches!(
            cert(&k[..3], 10, hash).verify(CHAIN, &p, 11, &hash),
            Err(CertificateError::OtherHeight { .. })
        ));
    }

    /// Who signs which height, written out: the majority starting at `height mod n`.
    #[test]
    fn a_majority_designated_by_the_height_signs() {
        let k = keys();
        let three = peers(&k[..3]);
        let five = peers(&k);
        // (set, height, the positions that sign)
        let table: [(&[NodeId], u64, &[usize]); 7] = [
            (&three, 0, &[0, 1]),
            (&three, 1, &[1, 2]),
            (&three, 2, &[0, 2]),
            (&three, 3, &[0, 1]),
            (&five, 3, &[0, 3, 4]),
            (&five, 7, &[2, 3, 4]),
            (&five[..1], 9, &[0]),
        ];
        for (set, height, signing) in table {
            for (i, id) in set.iter().enumerate() {
                assert_eq!(
                    designated(height, id, set),
                    signing.contains(&i),
                    "{} members, height {height}, position {i}",
                    set.len()
                );
            }
        }
        assert!(!designated(0, &k[4].node_id(), &three), "not a member");
        assert!(!designated(0, &k[0].node_id(), &[]), "no members");
        for height in 0..40 {
            let count = five
                .iter()
                .filter(|id| designated(height, id, &five))
                .count();
            assert_eq!(count, 3, "height {height}");
        }
    }

    /// This node signs a height only when its vote completes the majority: not for a height a
    /// peer offers whole, not before a peer's vote leaves it one short.
    #[test]
    fn the_own_vote_is_asked_for_only_when_it_completes_a_certificate() {
        let k = keys();
        let p = peers(&k[..5]);
        let (a, b) = (B256::repeat_byte(0xa), B256::repeat_byte(0xb));
        let signers = Signers::fixed(&p);
        let asked = std::sync::Mutex::new(Vec::new());
        let own = |h: u64, hash: &B256| {
            asked.lock().expect("unpoisoned").push(h);
            Some(CommitVote::sign(CHAIN, h, hash, &k[0]))
        };
        let vote = |i: usize, h: u64, hash: B256| VoteAnswer::Vote {
            height: h,
            block_hash: hash,
            vote: CommitVote::sign(CHAIN, h, &hash, &k[i]),
        };
        let mut t = Tally::new(CHAIN, &signers, &[(5, a), (6, a)], &own);
        assert!(
            asked.lock().expect("unpoisoned").is_empty(),
            "3 of 5 needed, none offered yet"
        );
        t.offer(VoteAnswer::Certified(cert(&k[1..4], 5, a)));
        t.offer(vote(1, 6, a));
        t.offer(vote(2, 6, b));
        assert!(
            asked.lock().expect("unpoisoned").is_empty(),
            "one vote for our block at 6: two short"
        );
        t.offer(vote(2, 6, a));
        assert_eq!(
            *asked.lock().expect("unpoisoned"),
            vec![6],
            "one short: our vote completes 6"
        );
        assert!(t.complete());
        t.offer(vote(3, 6, a));
        assert_eq!(*asked.lock().expect("unpoisoned"), vec![6], "asked once");
        let certs = t.certificates();
        assert_eq!(certs[1], cert(&k[..3], 6, a));
    }

    /// A member not designated for a height adds no vote of its own; the designated pair's
    /// votes certify it.
    #[test]
    fn the_designated_votes_certify_without_the_others() {
        let k = keys();
        let p = peers(&k[..3]);
        let a = B256::repeat_byte(0xa);
        let signers = Signers::fixed(&p);
        // Height 1 is for positions 1 and 2; this node is position 0.
        let mut t = Tally::new(CHAIN, &signers, &[(1, a)], &|_, _| None);
        t.offer(VoteAnswer::Vote {
            height: 1,
            block_hash: a,
            vote: CommitVote::sign(CHAIN, 1, &a, &k[1]),
        });
        assert!(!t.complete(), "one vote of three");
        t.offer(VoteAnswer::Vote {
            height: 1,
            block_hash: a,
            vote: CommitVote::sign(CHAIN, 1, &a, &k[2]),
        });
        assert!(t.complete());
        let c = t.certificates();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].verify(CHAIN, &p, 1, &a), Ok(()));
    }

    #[test]
    fn a_tally_counts_only_distinct_peer_votes_for_the_blocks_held() {
        let k = keys();
        let p = peers(&k[..3]);
        let (a, b) = (B256::repeat_byte(0xa), B256::repeat_byte(0xb));
        let held = [(5, a), (6, b)];
        let own = |h: u64, hash: &B256| Some(CommitVote::sign(CHAIN, h, hash, &k[0]));
        let own: &(dyn Fn(u64, &B256) -> Option<CommitVote> + Sync) = &own;
        let vote = |i: usize, h: u64, hash: B256| VoteAnswer::Vote {
            height: h,
            block_hash: hash,
            vote: CommitVote::sign(CHAIN, h, &hash, &k[i]),
        };
        let signers = Signers::fixed(&p);
        let mut t = Tally::new(CHAIN, &signers, &held, own);
        // None of these certifies 5: a vote for another block at 5, a height not held, a
        // non-member, our own vote relayed (it counts once, and our own signature then adds
        // nothing), a vote claiming another signer.
        t.offer(vote(1, 5, b));
        t.offer(vote(1, 7, a));
        t.offer(vote(3, 5, a));
        t.offer(vote(0, 5, a));
        let mut claimed = CommitVote::sign(CHAIN, 5, &a, &k[3]);
        claimed.signer = k[2].node_id();
        t.offer(VoteAnswer::Vote {
            height: 5,
            block_hash: a,
            vote: claimed,
        });
        assert!(!t.complete());
        // A real peer's vote completes 5 (2 of 3), in the peers' order whoever came first.
        t.offer(vote(2, 5, a));
        assert!(!t.complete(), "6 is not certified yet");
        // A certificate offered whole completes 6 if it verifies against our block.
        t.offer(VoteAnswer::Certified(cert(&k[1..3], 6, a)));
        assert!(!t.complete(), "a certificate of another block at 6");
        t.offer(VoteAnswer::Certified(cert(&k[1..3], 6, b)));
        assert!(t.complete());
        let certs = t.certificates();
        assert_eq!(certs.len(), 2);
        assert_eq!(certs[0], cert(&[k[0].clone(), k[2].clone()], 5, a));
        assert_eq!(certs[0].verify(CHAIN, &p, 5, &a), Ok(()));
        assert_eq!(certs[1].verify(CHAIN, &p, 6, &b), Ok(()));
    }
}

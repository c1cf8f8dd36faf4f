//! Commit certificates on a consensus node, as its driver carries them out: a round asks every
//! peer for its votes on the blocks this node applied past its certified cursor and stores the
//! certificates a majority completes; and a peer's answer to that question. When a round runs
//! is the core's ([`crate::policy::certifier`]); what counts is [`Tally`]'s.
//!
//! A node signs a vote only for a block it holds: one it applied, or one it backfilled below a
//! snapshot along the hash chain down from the snapshot's head (committed either way). Votes
//! are signed when asked, not stored: signatures are deterministic, so a vote asked twice is
//! the same vote, and a restarted node loses nothing it cannot sign again.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use alloy_primitives::B256;

use futures::stream::{FuturesUnordered, StreamExt};
use openraft::AsyncRuntime;

use crate::chain::certificate::{designated, CommitVote, Tally, VoteAnswer};
use crate::chain::members::Signers;
use crate::chain::store::StoreError;
use crate::consensus::node::ConsensusNode;
use crate::events::Event;
use crate::ids::NodeId;
use crate::net::peer;
use crate::net::wire::{Request, Response};
use crate::policy::certifier::{Round, ROUND_HEIGHTS};

/// Heights whose own vote a node keeps: a few rounds' worth.
const VOTES_REMEMBERED: usize = 4 * ROUND_HEIGHTS as usize;

/// This node's own votes, each signed once. A vote is asked for by every peer's rounds and
/// counted in this node's own until the height is certified, and each time it was signed
/// again: signatures were half of the simulator's time (`explore chaos`). Signatures are
/// deterministic, so a remembered vote is the vote signing would give.
#[derive(Default)]
pub(crate) struct OwnVotes(Mutex<BTreeMap<u64, (B256, CommitVote)>>);

impl OwnVotes {
    /// This node's vote for `block_hash` at `height`.
    pub(crate) fn vote(
        &self,
        chain_id: u64,
        height: u64,
        block_hash: &B256,
        key: &crate::keys::SecretKey,
    ) -> CommitVote {
        if let Some((hash, vote)) = crate::sync::lock(&self.0).get(&height) {
            if hash == block_hash {
                return vote.clone();
            }
        }
        let vote = CommitVote::sign(chain_id, height, block_hash, key);
        let mut votes = crate::sync::lock(&self.0);
        votes.insert(height, (*block_hash, vote.clone()));
        while votes.len() > VOTES_REMEMBERED {
            votes.pop_first();
        }
        vote
    }
}

/// Runs one gathering round over `round`'s heights; whether it moved the certified cursor.
pub(crate) async fn round<RT: AsyncRuntime>(node: &ConsensusNode<RT>, round: Round) -> bool {
    let chain = node.chain();
    let before = chain.certified_through();
    let cfg = node.config();
    let chain_id = cfg.chain.chain_id;
    let held = match chain.held_hashes(round.from, round.to, ROUND_HEIGHTS as usize) {
        Ok(h) => h,
        Err(e) => return storage_failed(node, e),
    };
    let signers = node.signers();
    let me = cfg.key.node_id();
    let own = |height: u64, hash: &B256| {
        signs(height, &me, &signers, round.everyone)
            .then(|| node.own_votes().vote(chain_id, height, hash, &cfg.key))
    };
    let mut tally = Tally::new(chain_id, &signers, &held, &own);
    if let Some((to, _)) = held.last() {
        let req = Request::GetCommitVotes {
            from: round.from,
            to: *to,
            everyone: round.everyone,
        };
        let timeout = Duration::from_millis(cfg.rpc_timeout_ms);
        let mut asked: FuturesUnordered<_> = node
            .other_peers()
            .map(|p| {
                peer::ask(&**node.transport(), p, &req, timeout, |r| match r {
                    Response::CommitVotes(v) => Some(v),
                    _ => None,
                })
            })
            .collect();
        // Answers as they come: a round ends once every height is certified, so a peer that
        // is cut off (its answer held until the timeout) does not hold up the majority's.
        while let Some(answer) = asked.next().await {
            for vote in answer.into_iter().flatten() {
                tally.offer(vote);
            }
            if tally.complete() {
                break;
            }
        }
    }
    // Stored even when empty: the cursor also moves over a snapshot's gap.
    match chain.add_certificates(&tally.certificates()) {
        Ok(after) if after > before => {
            node.emit(Event::Certified { through: after });
            true
        }
        Ok(_) => false,
        Err(e) => storage_failed(node, e),
    }
}

/// Whether this node (`me`) signs its vote for `height`: it is designated to, or a round
/// asks `everyone`.
fn signs(height: u64, me: &NodeId, signers: &Signers, everyone: bool) -> bool {
    everyone || designated(height, me, signers.of(height))
}

fn storage_failed<RT: AsyncRuntime>(node: &ConsensusNode<RT>, e: StoreError) -> bool {
    node.emit(Event::StorageFailed {
        reason: e.to_string(),
    });
    false
}

/// This node's answer to a peer's `GetCommitVotes`: for each block it holds at heights
/// `from..=to` (at most [`ROUND_HEIGHTS`]), its certificate if stored, else this node's vote
/// where it is designated to sign the height or the round asks `everyone`.
pub(crate) fn answer<RT: AsyncRuntime>(
    node: &ConsensusNode<RT>,
    from: u64,
    to: u64,
    everyone: bool,
) -> Response {
    let chain = node.chain();
    let cfg = node.config();
    let me = cfg.key.node_id();
    let signers = node.signers();
    let to = to.min(from.saturating_add(ROUND_HEIGHTS - 1));
    let answered = chain
        .held_hashes(from, to, ROUND_HEIGHTS as usize)
        .and_then(|held| {
            let mut answers = Vec::with_capacity(held.len());
            for (height, block_hash) in held {
                match chain.certificate(height)? {
                    Some(c) if c.block_hash == block_hash => {
                        answers.push(VoteAnswer::Certified(c));
                    }
                    _ if signs(height, &me, &signers, everyone) => {
                        answers.push(VoteAnswer::Vote {
                            height,
                            block_hash,
                            vote: node.own_votes().vote(
                                cfg.chain.chain_id,
                                height,
                                &block_hash,
                                &cfg.key,
                            ),
                        });
                    }
                    _ => {}
                }
            }
            Ok::<_, StoreError>(answers)
        });
    match answered {
        Ok(votes) => Response::CommitVotes(votes),
        Err(e) => Response::Refused(format!("cannot read blocks: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::derived_key;

    /// A remembered vote is the vote signing gives; another block at a height is signed
    /// afresh; the oldest heights are forgotten past the bound.
    #[test]
    fn own_votes_are_the_signed_votes() {
        let key = derived_key("own-votes", 0);
        let votes = OwnVotes::default();
        let (a, b) = (B256::repeat_byte(1), B256::repeat_byte(2));
        let signed = CommitVote::sign(7, 10, &a, &key);
        assert_eq!(votes.vote(7, 10, &a, &key), signed);
        assert_eq!(votes.vote(7, 10, &a, &key), signed);
        let other = votes.vote(7, 10, &b, &key);
        assert_eq!(other, CommitVote::sign(7, 10, &b, &key));
        assert_ne!(other, signed);
        assert!(other.verifies(7, 10, &b));
        for h in 0..(VOTES_REMEMBERED as u64 + 20) {
            votes.vote(7, 100 + h, &a, &key);
        }
        assert_eq!(crate::sync::lock(&votes.0).len(), VOTES_REMEMBERED);
        assert!(!crate::sync::lock(&votes.0).contains_key(&10));
    }
}

//! The batcher's work on a consensus node, as the node's driver carries it out: L1 reads and
//! submissions, gathering peers' attestations, putting a claim of the role through Raft, and
//! answering peers' requests for attestations. What to do when is decided by the node's core
//! ([`crate::settlement::batcher_core`]).

use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use openraft::AsyncRuntime;

use crate::consensus::node::ConsensusNode;
use crate::consensus::raft::types::ApplyOutcome;
use crate::events::Event;
use crate::net::peer;
use crate::net::wire::{Request, Response};
use crate::settlement::batch::Attestation;
use crate::settlement::batcher_core::{BatcherEffect, BatcherInput};
use crate::settlement::l1::L1;
use crate::settlement::role::BatcherClaim;

/// Carries out one piece of the batcher's work; its answer goes back to the core.
pub(crate) async fn carry_out<RT: AsyncRuntime>(
    node: &ConsensusNode<RT>,
    l1: &dyn L1,
    effect: BatcherEffect,
) -> BatcherInput {
    match effect {
        BatcherEffect::ReadHead => BatcherInput::HeadRead(l1.head().await),
        BatcherEffect::ReadRound => BatcherInput::RoundRead(l1.head().await),
        BatcherEffect::Collect { number } => {
            collect_attestations(node, number).await;
            BatcherInput::Collected
        }
        BatcherEffect::Submit {
            header,
            signatures,
            epoch,
        } => BatcherInput::Submitted(l1.submit(header, signatures, epoch).await),
        BatcherEffect::Claim(claim) => {
            BatcherInput::Claimed(claim_batcher(node, claim).await.map(|_| ()))
        }
    }
}

/// Puts `claim` through Raft: written here when this node leads, else sent to the leader.
async fn claim_batcher<RT: AsyncRuntime>(
    node: &ConsensusNode<RT>,
    claim: BatcherClaim,
) -> Result<ApplyOutcome, String> {
    let leader = node.raft().metrics().borrow().current_leader;
    match leader {
        Some(l) if l == node.id() => node.write_claim(claim).await,
        Some(l) => {
            let timeout = Duration::from_millis(node.claim_timeout_ms());
            let req = Request::ClaimBatcher(claim);
            peer::ask(&**node.transport(), l, &req, timeout, |r| match r {
                Response::Claim(r) => Some(r),
                _ => None,
            })
            .await
            .map_err(|e| e.to_string())?
        }
        None => Err("no leader known".into()),
    }
}

/// Asks the batch's other attesters (the signers of its blocks) for their attestations of
/// batch `number`, all at once,
/// and keeps the valid ones as soon as those held and those answered make a quorum: a peer
/// that is down costs nothing once the others answered. Asked one after another, a dead
/// peer cost every batch a whole `rpc_timeout_ms`, and a takeover's backlog drained at a
/// batch per three L1 blocks (batcher-l1-partition, 750 ms a batch).
async fn collect_attestations<RT: AsyncRuntime>(node: &ConsensusNode<RT>, number: u64) {
    let Some(header) = node.chain().batch(number).ok().flatten() else {
        return;
    };
    let have: Vec<_> = node
        .chain()
        .attestations(number)
        .unwrap_or_default()
        .into_iter()
        .map(|a| a.signer)
        .collect();
    let attesters = node.signers().of(header.first_height).to_vec();
    let timeout = Duration::from_millis(node.config().rpc_timeout_ms);
    let req = Request::GetAttestations { number };
    let mut asking: FuturesUnordered<_> = attesters
        .iter()
        .filter(|p| **p != node.id() && !have.contains(p))
        .map(|peer| {
            let req = &req;
            async move {
                let answer = peer::ask(&**node.transport(), *peer, req, timeout, |r| match r {
                    Response::Attestations(atts) => Some(atts),
                    _ => None,
                });
                (*peer, answer.await)
            }
        })
        .collect();
    let quorum = crate::chain::certificate::majority(attesters.len());
    let mut got: Vec<Attestation> = Vec::new();
    while let Some((peer, answer)) = asking.next().await {
        if let Ok(atts) = answer {
            got.extend(
                atts.into_iter()
                    .filter(|a| a.signer == peer && a.verify(&header))
                    .take(1),
            );
        }
        if have.len() + got.len() >= quorum {
            break;
        }
    }
    if got.is_empty() {
        return;
    }
    if let Err(e) = node.chain().add_attestations(number, &got) {
        node.emit(Event::StorageFailed {
            reason: e.to_string(),
        });
    }
}

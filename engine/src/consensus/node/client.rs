//! What a client of a replicated store asks a consensus node beyond submitting: to wait for a
//! transaction's answer, and to read committed state with the consistency it needs.
//!
//! A linearizable read is a read index, not a lease: openraft's `ensure_linearizable` has the
//! leader confirm with a quorum that it still leads and waits until the state machine applied
//! everything committed before the read arrived, then the read is served from the applied
//! state. Leases would save the quorum round but trust bounded clock drift, and the simulator
//! skews and jumps clocks. A follower passes a linearizable read to the leader once; a local
//! read is served from whatever this node has applied, which may be stale.

use std::time::Duration;

use openraft::error::{CheckIsLeaderError, RaftError};
use openraft::AsyncRuntime;

use super::ConsensusNode;
use crate::app::Tx;
use crate::ids::NodeId;
use crate::net::peer;
use crate::net::wire::{
    Awaited, ReadAnswer, ReadConsistency, ReadError, Request, Response, SubmitOutcome,
};

impl<RT: AsyncRuntime> ConsensusNode<RT> {
    /// Submits `tx` and waits up to `wait` for the block that applies it on this node.
    pub async fn submit_and_wait(&self, tx: Tx, wait: Duration) -> Awaited {
        let id = tx.hash();
        // Registered first, so an answer cannot come before the wait.
        let applied = self.chain.await_applied(id);
        let outcome = self.submit_transaction(tx).await;
        if !matches!(outcome, SubmitOutcome::Accepted { .. }) {
            drop(applied);
            self.chain.stop_awaiting(&id);
            return Awaited::NotAdmitted(outcome);
        }
        let heard = RT::timeout(wait, applied).await;
        match heard {
            Ok(Ok(a)) => Awaited::Applied {
                height: a.height,
                output: a.output,
            },
            _ => {
                self.chain.stop_awaiting(&id);
                Awaited::TimedOut
            }
        }
    }

    /// Reads `query` from committed state as `consistency` says. `forwarded`: a follower
    /// passed the read here; it is not passed on again.
    pub async fn read(
        &self,
        query: Vec<u8>,
        consistency: ReadConsistency,
        forwarded: bool,
    ) -> Result<ReadAnswer, ReadError> {
        let planted = self.cfg.plant == crate::consensus::config::Plant::StaleReads;
        if consistency == ReadConsistency::Linearizable && !planted {
            let timeout = Duration::from_millis(self.cfg.rpc_timeout_ms);
            match RT::timeout(timeout, self.raft().ensure_linearizable()).await {
                Ok(Ok(_)) => {}
                Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                    return match f.leader_id {
                        Some(leader) if !forwarded && leader != self.id => {
                            self.forward_read(leader, query).await
                        }
                        leader => Err(ReadError::NotLeader { leader }),
                    };
                }
                Ok(Err(e)) => return Err(ReadError::Unconfirmed(e.to_string())),
                Err(_) => {
                    return Err(ReadError::Unconfirmed(format!(
                        "no quorum confirmed the leadership within {} ms",
                        self.cfg.rpc_timeout_ms
                    )))
                }
            }
        }
        let (answer, height) = self.chain.query(&query);
        answer
            .map(|answer| ReadAnswer { answer, height })
            .map_err(ReadError::Refused)
    }

    async fn forward_read(&self, leader: NodeId, query: Vec<u8>) -> Result<ReadAnswer, ReadError> {
        let timeout = Duration::from_millis(self.cfg.rpc_timeout_ms * 2);
        let req = Request::Read {
            query,
            consistency: ReadConsistency::Linearizable,
            forwarded: true,
        };
        peer::ask(&*self.seams.transport, leader, &req, timeout, |r| match r {
            Response::Read(answer) => Some(answer),
            _ => None,
        })
        .await
        .unwrap_or_else(|e| Err(ReadError::Unconfirmed(format!("forward to {leader}: {e}"))))
    }
}

//! Transaction admission on a consensus node: a client's transaction is checked and admitted
//! to the mempool when this node leads, or forwarded once to the leader; one a replica
//! forwarded is admitted or refused, never forwarded again. Where it goes is
//! [`policy::admission`](crate::policy::admission)'s decision.

use std::time::Duration;

use openraft::AsyncRuntime;

use super::ConsensusNode;
use crate::app::{Rejection, Tx};
use crate::ids::NodeId;
use crate::net::peer;
use crate::net::wire::{
    fill_checked, refuse_over_limit, Request, Response, SubmitOutcome, SubmitRejection,
};
use crate::policy::admission::{self, Route};

impl<RT: AsyncRuntime> ConsensusNode<RT> {
    /// A client's transaction: admitted here when leader, else forwarded once to the leader
    /// (`policy::admission`).
    pub async fn submit_transaction(&self, tx: Tx) -> SubmitOutcome {
        if let Err(why) = self.chain_spec().app.verify(&tx) {
            return SubmitOutcome::Rejected(SubmitRejection::Invalid(why));
        }
        match admission::route(self.id, &self.raft_view(), false) {
            Route::Admit => self.admit(tx),
            Route::Forward(leader) => self.forward(leader, tx).await,
            Route::NotLeader { leader } => SubmitOutcome::NotLeader { leader },
        }
    }

    /// Many client transactions at once (a batched RPC call): the signatures are checked
    /// together (across cores in production), the route is decided once, and the valid ones
    /// go into the mempool under one lock or on to the leader in one request. One outcome
    /// per transaction, in order.
    pub async fn submit_transactions(&self, txs: Vec<Tx>) -> Vec<SubmitOutcome> {
        if let Some(refused) = refuse_over_limit(txs.len()) {
            return refused;
        }
        let valid = self.seams.verifier.each_valid(&self.chain_spec().app, &txs);
        match admission::route(self.id, &self.raft_view(), false) {
            Route::Admit => self.admit_checked(txs, &valid),
            Route::Forward(leader) => {
                let forwarded: Vec<Tx> = txs
                    .into_iter()
                    .zip(&valid)
                    .filter_map(|(tx, ok)| ok.is_ok().then_some(tx))
                    .collect();
                let n = forwarded.len();
                let mut answers = self.forward_batch(leader, forwarded).await.into_iter();
                let lost = SubmitOutcome::Rejected(SubmitRejection::Forward(format!(
                    "{leader} answered fewer than {n} outcomes"
                )));
                fill_checked(&valid, || answers.next().unwrap_or(lost.clone()))
            }
            Route::NotLeader { leader } => {
                fill_checked(&valid, || SubmitOutcome::NotLeader { leader })
            }
        }
    }

    async fn forward_batch(&self, leader: NodeId, txs: Vec<Tx>) -> Vec<SubmitOutcome> {
        let n = txs.len();
        if n == 0 {
            return Vec::new();
        }
        let timeout = Duration::from_millis(self.cfg.rpc_timeout_ms);
        let req = Request::ForwardedBatch(txs);
        let failed = |why: String| vec![SubmitOutcome::Rejected(SubmitRejection::Forward(why)); n];
        peer::ask(&*self.seams.transport, leader, &req, timeout, |r| match r {
            Response::SubmitTransactions(o) if o.len() == n => Some(o),
            _ => None,
        })
        .await
        .unwrap_or_else(|e| failed(e.to_string()))
    }

    /// A batch a replica forwarded: like [`Self::admit_forwarded`] for each transaction.
    pub(super) fn admit_forwarded_batch(
        &self,
        txs: Vec<Tx>,
        from_member: bool,
    ) -> Vec<SubmitOutcome> {
        if let Some(refused) = refuse_over_limit(txs.len()) {
            return refused;
        }
        let valid = if from_member {
            vec![Ok(()); txs.len()]
        } else {
            self.seams.verifier.each_valid(&self.chain_spec().app, &txs)
        };
        match admission::route(self.id, &self.raft_view(), true) {
            Route::Admit => self.admit_checked(txs, &valid),
            Route::Forward(leader) => fill_checked(&valid, || SubmitOutcome::NotLeader {
                leader: Some(leader),
            }),
            Route::NotLeader { leader } => {
                fill_checked(&valid, || SubmitOutcome::NotLeader { leader })
            }
        }
    }

    /// Admits the transactions whose signature checked out, under one lock of the mempool.
    fn admit_checked(&self, txs: Vec<Tx>, valid: &[Result<(), Rejection>]) -> Vec<SubmitOutcome> {
        let mut core = self.core.lock();
        let mut txs = txs
            .into_iter()
            .zip(valid)
            .filter_map(|(tx, ok)| ok.is_ok().then_some(tx));
        fill_checked(valid, || match txs.next() {
            Some(tx) => match core.admit(tx) {
                Ok(()) => SubmitOutcome::Accepted { leader: self.id },
                Err(e) => SubmitOutcome::Rejected(SubmitRejection::Mempool(e)),
            },
            None => SubmitOutcome::Rejected(SubmitRejection::Forward(
                "fewer transactions than checks".into(),
            )),
        })
    }

    async fn forward(&self, leader: NodeId, tx: Tx) -> SubmitOutcome {
        let timeout = Duration::from_millis(self.cfg.rpc_timeout_ms);
        let req = Request::Forwarded(tx);
        peer::ask(&*self.seams.transport, leader, &req, timeout, |r| match r {
            Response::SubmitTransaction(o) => Some(o),
            _ => None,
        })
        .await
        .unwrap_or_else(|e| SubmitOutcome::Rejected(SubmitRejection::Forward(e.to_string())))
    }

    /// A transaction a replica forwarded: admitted if this node leads, never forwarded again.
    /// A member checked its signature before forwarding it; anyone else's is checked here.
    pub(super) fn admit_forwarded(&self, tx: Tx, from_member: bool) -> SubmitOutcome {
        if !from_member {
            if let Err(why) = self.chain_spec().app.verify(&tx) {
                return SubmitOutcome::Rejected(SubmitRejection::Invalid(why));
            }
        }
        match admission::route(self.id, &self.raft_view(), true) {
            Route::Admit => self.admit(tx),
            Route::Forward(leader) => SubmitOutcome::NotLeader {
                leader: Some(leader),
            },
            Route::NotLeader { leader } => SubmitOutcome::NotLeader { leader },
        }
    }

    fn admit(&self, tx: Tx) -> SubmitOutcome {
        match self.core.lock().admit(tx) {
            Ok(()) => SubmitOutcome::Accepted { leader: self.id },
            Err(e) => SubmitOutcome::Rejected(SubmitRejection::Mempool(e)),
        }
    }
}

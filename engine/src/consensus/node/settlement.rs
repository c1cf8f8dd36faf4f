//! A consensus node's side of settlement: the L1 it reads and, once its batcher starts,
//! submits to, and the batcher role claimed through Raft.

use std::sync::Arc;
use std::time::Duration;

use openraft::AsyncRuntime;

use super::ConsensusNode;
use crate::consensus::core::Input;
use crate::consensus::raft::types::{ApplyOutcome, Command};
use crate::settlement::batcher_core::{BatcherCore, BatcherSetup};
use crate::settlement::l1::L1;
use crate::settlement::role::BatcherClaim;

impl<RT: AsyncRuntime> ConsensusNode<RT> {
    /// Starts the batcher: from now on the core runs it and the driver carries out its L1
    /// work. Once per node, and not after [`Self::read_l1`]; a second call is refused and
    /// says so.
    pub fn start_batcher(&self, setup: BatcherSetup) {
        if self.l1.set(setup.l1.clone()).is_err() {
            tracing::error!(node = ?self.id, "L1 is set already (a batcher runs, or read_l1): the batcher is not started");
            return;
        }
        let now = self.core.now_ms();
        let batcher = BatcherCore::new(self.id, self.cfg.peers.clone(), &setup, now);
        self.core.lock().start_batcher(batcher);
        let _ = self.wake.unbounded_send(Input::Tick);
    }

    /// Gives a node that runs no batcher L1 to read: as leader it reads the settlement
    /// contract's head before it removes a voter, so that no batch loses an attester it needs
    /// (see [`crate::policy::membership`]). A batcher's L1 serves for that already.
    pub fn read_l1(&self, l1: Arc<dyn L1>) {
        if self.l1.set(l1).is_err() {
            tracing::error!(node = ?self.id, "L1 is set already (a batcher runs, or read_l1): kept");
        }
    }

    /// The L1 this node reads and, once its batcher started, submits to.
    pub(crate) fn l1(&self) -> Option<&Arc<dyn L1>> {
        self.l1.get()
    }

    /// The leader's side of a batcher claim: one Raft entry, applied as a compare-and-set.
    pub(crate) async fn write_claim(&self, claim: BatcherClaim) -> Result<ApplyOutcome, String> {
        let within = Duration::from_millis(self.claim_timeout_ms());
        match RT::timeout(
            within,
            self.raft().client_write(Command::ClaimBatcher(claim)),
        )
        .await
        {
            Ok(Ok(resp)) => Ok(resp.data),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("not committed within {} ms", within.as_millis())),
        }
    }

    /// How long a batcher claim may take to be committed.
    pub(crate) fn claim_timeout_ms(&self) -> u64 {
        self.cfg.election_timeout_ms_max * 4
    }
}

//! The L1 seam: read the settlement contract's head, submit a batch. The simulator's L1
//! enforces the contract's rules itself, with latency, outages and lost transactions; in
//! production it is alloy against anvil or a real chain.

use alloy_primitives::B256;

use crate::ids::Sig65;
use crate::net::transport::BoxFuture;
use crate::policy::batcher::SubmitOutcome;
use crate::settlement::batch::BatchHeader;

/// What the settlement contract holds: where a (re)starting batcher resumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L1Head {
    pub batch_number: u64,
    pub height: u64,
    pub state_root: B256,
    pub commitment: B256,
    pub epoch: u64,
    /// Transactions of this batcher's account sent but not yet mined (in production the
    /// account's pending nonce minus its mined nonce): a restarted batcher waits for them
    /// rather than send a batch that may already be on its way.
    pub in_flight: u64,
}

pub trait L1: Send + Sync + 'static {
    /// The contract's head; `Err` names why L1 could not be read.
    fn head(&self) -> BoxFuture<'_, Result<L1Head, String>>;

    /// Sends `commitBatch(header, epoch, signatures)` and waits for its receipt.
    /// `signatures`: in the order the contract demands (`batch::ordered_signatures`).
    fn submit(
        &self,
        header: BatchHeader,
        signatures: Vec<Sig65>,
        epoch: u64,
    ) -> BoxFuture<'_, SubmitOutcome>;
}

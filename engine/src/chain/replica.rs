//! Canonized blocks outside Raft. A [`Replica`] is an external node's chain: each downloaded
//! block is verified with the same chain rules and executor consensus nodes apply (continuity,
//! proposer signature by a consensus peer, transactions root, re-executed state root), then
//! block, touched accounts and head are stored in one atomic batch. Serving blocks to others
//! ([`answer_get_blocks`]) is shared by consensus and external nodes.

use std::sync::Arc;

use openraft::AsyncRuntime;

use crate::chain::block::{Block, ChainSpec};
use crate::chain::certificate::{Certificate, CertificateCheck, ServedBlock};
use crate::chain::members::{MemberHistory, Signers};
use crate::chain::rules::{self, BlockError, Head};
use crate::chain::signatures::{Signatures, TxVerifier};
use crate::chain::store::{
    stage_applied, stage_block, stage_certificate, stage_truncation, ChainState, ChainStore, Serve,
    StoreError,
};
use crate::ids::NodeId;
use crate::net::wire::Response;
use crate::storage::{Durability, WriteBatch};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The block fails a chain rule: whoever served it is not to be trusted.
    #[error("rejected: {0}")]
    Rejected(#[from] BlockError),
    #[error("storage: {0}")]
    Storage(#[from] StoreError),
    /// A block this store holds below its head is gone (a disk that lost it).
    #[error("storage: block {height} is missing while rolling back to {rolling_back_to}")]
    Missing { height: u64, rolling_back_to: u64 },
}

pub struct Replica {
    validators: Vec<NodeId>,
    /// Checks the signatures of every downloaded block's transactions.
    verifier: Arc<dyn TxVerifier>,
    spec: ChainSpec,
    chain: Arc<ChainStore>,
    /// One writer at a time: a rollback never overwrites a block applied while it rebuilt.
    writer: std::sync::Mutex<()>,
}

/// Blocks re-executed per read while rolling back.
const ROLLBACK_READ_BLOCKS: usize = 256;

impl Replica {
    /// Opens the chain stored in `storage` (genesis when empty). `validators` are the ids
    /// allowed to propose: `consensus_peer_ids`.
    pub fn open(
        storage: Arc<dyn crate::storage::Storage>,
        spec: &ChainSpec,
        validators: Vec<NodeId>,
        verifier: Arc<dyn TxVerifier>,
    ) -> Result<Replica, ReplayError> {
        let chain = ChainStore::open(storage, spec)?;
        Ok(Replica {
            validators,
            verifier,
            spec: spec.clone(),
            chain: Arc::new(chain),
            writer: std::sync::Mutex::new(()),
        })
    }

    pub fn head(&self) -> Head {
        self.chain.head()
    }

    /// The signer sets the blocks up to the head declared.
    pub fn members(&self) -> MemberHistory {
        self.chain.state().members.clone()
    }

    pub fn chain(&self) -> &Arc<ChainStore> {
        &self.chain
    }

    /// Verifies a downloaded `block` (every signature too) on top of the head and stores it;
    /// nothing changes if it fails. Buffered: a crash may lose the newest blocks, never part
    /// of one; they are downloaded again from the head that survived.
    pub fn apply(&self, block: &Block) -> Result<Head, ReplayError> {
        self.apply_with(
            block,
            Durability::Buffered,
            Signatures::Check(&*self.verifier),
            None,
        )
    }

    /// The first transaction in a downloaded range the application refuses on its own (a bad
    /// signature), as (block index, transaction index, why): the whole range is checked in one
    /// call, on every core the host's verifier uses.
    pub fn first_bad_signature<'a>(
        &self,
        blocks: impl IntoIterator<Item = &'a Block> + Clone,
    ) -> Option<(usize, usize, crate::app::Rejection)> {
        crate::chain::signatures::first_invalid_in(&*self.verifier, &self.spec.app, blocks)
    }

    /// The application this replica replays.
    pub fn app(&self) -> &crate::app::App {
        &self.spec.app
    }

    /// [`Replica::apply`] for a block whose signatures [`Replica::first_bad_signature`] has
    /// just checked; everything else is verified as usual.
    pub fn apply_signatures_checked(&self, block: &Block) -> Result<Head, ReplayError> {
        self.apply_with(
            block,
            Durability::Buffered,
            Signatures::TransactionsChecked,
            None,
        )
    }

    /// Stores a block this machine built and signed from transactions it admitted (their
    /// signatures already checked), synced: a signer never forgets what it signed.
    pub fn apply_own(&self, block: &Block) -> Result<Head, ReplayError> {
        self.apply_with(block, Durability::Synced, Signatures::Trusted, None)
    }

    /// The certificates of a downloaded range checked at once (on every core the host's
    /// verifier uses): the first that fails, by index, with why. A block without one fails.
    ///
    /// Each block's certificate is checked against the signer set at its height: the one
    /// `members` (this replica's declarations up to the block before the range) leave in
    /// effect, changed by any block of the range that declares a new one (see
    /// [`crate::chain::members`]). A range checked ahead of the head is checked again if a
    /// block before it declared new members meanwhile ([`Replica::members`]).
    pub fn first_bad_certificate(
        &self,
        served: &[ServedBlock],
        members: &MemberHistory,
    ) -> Option<(usize, BlockError)> {
        let mut signers = Signers::new(&self.validators, members);
        let mut sets = Vec::with_capacity(served.len());
        for s in served {
            let h = &s.block.header;
            sets.push(signers.of(h.height).to_vec());
            if let Some(members) = &h.members {
                signers.declare(h.height, members.clone());
            }
        }
        let mut checks = Vec::with_capacity(served.len());
        for (i, (s, peers)) in served.iter().zip(&sets).enumerate() {
            let hash = match s.block.hash() {
                Ok(h) => h,
                Err(e) => return Some((i, BlockError::from(e))),
            };
            let Some(certificate) = &s.certificate else {
                return self
                    .first_bad_in(&checks)
                    .or(Some((i, BlockError::Uncertified)));
            };
            checks.push(CertificateCheck {
                chain_id: self.spec.chain_id,
                peers,
                height: s.block.header.height,
                block_hash: hash,
                certificate,
            });
        }
        self.first_bad_in(&checks)
    }

    fn first_bad_in(&self, checks: &[CertificateCheck<'_>]) -> Option<(usize, BlockError)> {
        self.verifier
            .first_bad_certificate(checks)
            .map(|(i, e)| (i, BlockError::Certificate(e)))
    }

    /// Stores a downloaded block whose `certificate` [`Replica::first_bad_certificate`] has
    /// just checked, with the certificate, so it is served on. The block's signatures are not
    /// recovered (a majority applied it) unless `signatures_checked` says the range's
    /// transactions were checked anyway (a node set to verify everything): then the proposer's
    /// is checked too.
    pub fn apply_certified(
        &self,
        block: &Block,
        certificate: &Certificate,
        signatures_checked: bool,
    ) -> Result<Head, ReplayError> {
        let signatures = if signatures_checked {
            Signatures::TransactionsChecked
        } else {
            Signatures::Certified
        };
        self.apply_with(block, Durability::Buffered, signatures, Some(certificate))
    }

    fn apply_with(
        &self,
        block: &Block,
        durability: Durability,
        signatures: Signatures<'_>,
        certificate: Option<&Certificate>,
    ) -> Result<Head, ReplayError> {
        let _writer = crate::sync::lock(&self.writer);
        let mut next = self.chain.state().clone();
        let mut signers = next.signers(&self.validators);
        let declared = block.header.members.as_ref();
        let may_propose = crate::chain::members::proposers(signers.current(), declared);
        let executed =
            rules::verify_block(&next.head, &next.state, &may_propose, block, signatures)?;
        if let Some(members) = declared {
            signers.declare(block.header.height, members.clone());
            next.members = signers.history().clone();
        }
        let mut batch = WriteBatch::default();
        let head = stage_block(&mut batch, block, &executed).map_err(StoreError::from)?;
        if let Some(c) = certificate {
            stage_certificate(&mut batch, c).map_err(StoreError::from)?;
        }
        next.head = head;
        next.state = executed.state;
        stage_applied(&mut batch, &next).map_err(StoreError::from)?;
        self.chain
            .commit(batch, next, durability)
            .map_err(StoreError::from)?;
        Ok(head)
    }
}

impl Replica {
    /// Drops every block above `height` (a losing branch after an equivocation) without wiping
    /// the database: blocks `1..=height` are re-executed from genesis to rebuild the state at
    /// `height`, then blocks above it are deleted and the state rewritten in one synced
    /// batch. A crash leaves either the old chain or the new one.
    pub fn rollback_to(&self, height: u64) -> Result<Head, ReplayError> {
        let _writer = crate::sync::lock(&self.writer);
        let current = self.chain.state().clone();
        if height >= current.head.height {
            return Ok(current.head);
        }
        let genesis = self.spec.genesis_header().map_err(StoreError::from)?;
        let mut head = Head::of(&genesis).map_err(StoreError::from)?;
        let mut state = self.spec.genesis_state();
        let mut signers = Signers::fixed(&self.validators);
        while head.height < height {
            let blocks = self.chain.blocks_between(
                head.height + 1,
                height,
                ROLLBACK_READ_BLOCKS,
                usize::MAX,
            )?;
            if blocks.is_empty() {
                return Err(ReplayError::Missing {
                    height: head.height + 1,
                    rolling_back_to: height,
                });
            }
            for block in &blocks {
                // Blocks this store accepted before: their signatures were checked then.
                let declared = block.header.members.as_ref();
                let may_propose = crate::chain::members::proposers(signers.current(), declared);
                let executed =
                    rules::verify_block(&head, &state, &may_propose, block, Signatures::Trusted)?;
                if let Some(members) = declared {
                    signers.declare(block.header.height, members.clone());
                }
                head = Head::of(&block.header).map_err(StoreError::from)?;
                state = executed.state;
            }
        }
        let next = ChainState {
            head,
            state,
            members: signers.history().clone(),
            ..current
        };
        let mut batch = WriteBatch::default();
        stage_truncation(&mut batch, height, &next).map_err(StoreError::from)?;
        self.chain
            .commit(batch, next, Durability::Synced)
            .map_err(StoreError::from)?;
        Ok(head)
    }
}

/// Answers `GetBlocks` from a chain: blocks from `from` up to the head (with their
/// certificates, as `serve` says), or, if there are none yet, waits up to `wait_ms` for one.
pub async fn answer_get_blocks<RT: AsyncRuntime>(
    chain: &ChainStore,
    from: u64,
    max: u32,
    wait_ms: u32,
    serve: Serve,
) -> Response {
    // A device slow to read holds the download up.
    let stall = chain.storage().read_stall();
    if !stall.is_zero() {
        RT::sleep(stall).await;
    }
    match chain.wait_for_served::<RT>(from, max, wait_ms, serve).await {
        Ok(blocks) => Response::Blocks(blocks),
        Err(e) => Response::Refused(format!("cannot read blocks: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::ledger::{Payload, Transaction};
    use crate::chain::block::Slot;
    use crate::chain::rules::{build_block, Proposal};
    use crate::keys::{derived_key, SecretKey};
    use crate::storage::MemDisk;

    fn spec(funded: &SecretKey) -> ChainSpec {
        ChainSpec {
            chain_id: 9,
            app: crate::app::App::new(crate::app::ledger::LedgerApp::new(vec![(
                funded.address(),
                1_000,
            )])),
            blocks_per_batch: crate::chain::block::DEFAULT_BLOCKS_PER_BATCH,
        }
    }

    /// An account's balance read through the store's query, as RPC reads it.
    fn balance(chain: &ChainStore, address: &alloy_primitives::Address) -> u64 {
        let answer = chain.query(&crate::app::ledger::account_query(address)).0;
        crate::app::ledger::decode_account(&answer.unwrap())
            .unwrap()
            .balance
    }

    /// The next block on `replica`'s head: a transfer of `amount` (if any), signed for `round`.
    fn next(
        replica: &Replica,
        identity: &SecretKey,
        payer: &SecretKey,
        amount: u64,
        round: u64,
    ) -> Block {
        let state = replica.chain().state().clone();
        let txs = if amount > 0 {
            vec![Transaction {
                sender: payer.address(),
                nonce: crate::app::ledger::account_in(&state.state, &payer.address())
                    .unwrap()
                    .nonce,
                payload: Payload::Transfer {
                    to: derived_key("rollback-test", 9).address(),
                    amount,
                },
            }
            .sign(payer)
            .unwrap()
            .to_tx()
            .unwrap()]
        } else {
            Vec::new()
        };
        build_block(
            Proposal {
                head: &state.head,
                state: &state.state,
                key: identity,
                term: 0,
                slot: Some(Slot { round, level: 0 }),
                seals_batch: false,
                members: None,
                timestamp_ms: round,
                max_transactions: 10,
            },
            txs,
        )
        .unwrap()
        .block
    }

    #[test]
    fn rolls_back_to_a_shared_block_and_follows_another_branch_without_a_wipe() {
        let identity = derived_key("rollback-test", 0);
        let payer = derived_key("rollback-test", 1);
        let disk = MemDisk::new();
        let open = || {
            Replica::open(
                Arc::new(disk.clone()),
                &spec(&payer),
                vec![identity.node_id()],
                Arc::new(crate::chain::signatures::Sequential),
            )
            .unwrap()
        };
        let replica = open();
        let mut heads = Vec::new();
        for round in 1..=5 {
            let b = next(&replica, &identity, &payer, round * 10, round);
            heads.push(replica.apply(&b).unwrap());
        }
        let at_2 = heads[1];
        let balance_at_2 = 1_000 - 10 - 20;
        let head = replica.rollback_to(2).unwrap();
        assert_eq!(head, at_2);
        assert_eq!(replica.head(), at_2);
        assert_eq!(balance(replica.chain(), &payer.address()), balance_at_2);
        assert!(replica.chain().block(3).unwrap().is_none());
        // The other branch extends the shared block, with its own rounds.
        let other = next(&replica, &identity, &payer, 7, 9);
        let h3 = replica.apply(&other).unwrap();
        assert_eq!(h3.height, 3);
        assert_eq!(balance(replica.chain(), &payer.address()), balance_at_2 - 7);
        // What survives a reopen is the new branch, accounts and all.
        drop(replica);
        let again = open();
        assert_eq!(again.head(), h3);
        assert_eq!(balance(again.chain(), &payer.address()), balance_at_2 - 7);
        assert_eq!(again.chain().block(3).unwrap().unwrap(), other);
        // Rolling back to the head or above changes nothing.
        assert_eq!(again.rollback_to(7).unwrap(), h3);
        // Back to genesis.
        assert_eq!(again.rollback_to(0).unwrap().height, 0);
        assert_eq!(balance(again.chain(), &payer.address()), 1_000);
    }
}

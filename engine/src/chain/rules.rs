//! Chain rules shared by consensus nodes (when applying a canonized block) and replayers (when
//! verifying a downloaded one): continuity, proposer signature, transactions root, and the output
//! state root after re-execution.

use alloy_primitives::B256;
use serde::{Deserialize, Serialize};

use crate::app::{AppState, Rejection, Tx, Write};
use crate::chain::block::{transactions_root, Block, BlockHeader, Slot};
use crate::chain::signatures::Signatures;
use crate::codec::CodecError;
use crate::ids::NodeId;
use crate::keys::{self, SecretKey};
use crate::settlement::batch::BatchCursor;

/// The tip a node has applied: what the next block must extend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    pub height: u64,
    pub hash: B256,
    pub timestamp_ms: u64,
    pub state_root: B256,
    /// Single-sequencer mode: the round of the head block (`None` at genesis and in Raft mode).
    pub round: Option<u64>,
}

impl Head {
    pub fn of(header: &BlockHeader) -> Result<Head, CodecError> {
        Ok(Head {
            height: header.height,
            hash: header.hash()?,
            timestamp_ms: header.timestamp_ms,
            state_root: header.state_root,
            round: header.slot.map(|s| s.round),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum BlockError {
    #[error("height {got} does not follow head {head}")]
    Height { head: u64, got: u64 },
    #[error("parent hash {got} is not the head hash {head}")]
    Parent { head: B256, got: B256 },
    #[error("timestamp {got} ms is before the parent's {parent} ms")]
    Timestamp { parent: u64, got: u64 },
    #[error("round {got:?} does not come after the head's round {head}")]
    Round { head: u64, got: Option<u64> },
    #[error("proposer {0:?} is not a consensus peer")]
    UnknownProposer(NodeId),
    #[error("proposer signature does not recover to the proposer")]
    Signature,
    #[error("transactions root {got} does not match the transactions ({computed})")]
    TransactionsRoot { got: B256, computed: B256 },
    #[error("transaction {index} is invalid: {error}")]
    Transaction { index: usize, error: Rejection },
    #[error("state root {got} does not match re-execution ({computed})")]
    StateRoot { got: B256, computed: B256 },
    #[error(
        "block proposed in term {header} by {proposer:?} but appended by the term-{log} leader"
    )]
    WrongLeader {
        header: u64,
        log: u64,
        proposer: NodeId,
    },
    /// The block does not declare the Raft voters in effect where it was appended (it was
    /// built before a membership change reached the log): see [`crate::chain::members`].
    #[error("block declares members {declared:?}, the voters in effect call for {expected:?}")]
    Members {
        declared: Option<Vec<NodeId>>,
        expected: Option<Vec<NodeId>>,
    },
    #[error("encoding: {0}")]
    Codec(String),
    /// Served without the certificate that shows a majority of consensus peers applied it.
    #[error("served without a commit certificate")]
    Uncertified,
    #[error("commit certificate: {0}")]
    Certificate(#[from] crate::chain::certificate::CertificateError),
}

impl BlockError {
    /// A short label for metrics: which rule the block broke.
    pub fn kind(&self) -> &'static str {
        match self {
            BlockError::Height { .. } => "height",
            BlockError::Parent { .. } => "parent",
            BlockError::Timestamp { .. } => "timestamp",
            BlockError::Round { .. } => "round",
            BlockError::UnknownProposer(_) => "proposer",
            BlockError::Signature => "signature",
            BlockError::TransactionsRoot { .. } => "transactions_root",
            BlockError::Transaction { .. } => "transaction",
            BlockError::StateRoot { .. } => "state_root",
            BlockError::WrongLeader { .. } => "wrong_leader",
            BlockError::Members { .. } => "members",
            BlockError::Codec(_) => "codec",
            BlockError::Uncertified => "uncertified",
            BlockError::Certificate(e) => e.kind(),
        }
    }
}

impl From<CodecError> for BlockError {
    fn from(e: CodecError) -> Self {
        BlockError::Codec(e.to_string())
    }
}

/// The block's proposer is one of `peers` and its signature is that proposer's: whatever else
/// is wrong with it, nobody but the proposer can have made it.
pub fn verify_signature(peers: &[NodeId], block: &Block) -> Result<(), BlockError> {
    let h = &block.header;
    if !peers.contains(&h.proposer) {
        return Err(BlockError::UnknownProposer(h.proposer));
    }
    match keys::recover_node_id(&h.hash()?, &block.signature) {
        Ok(id) if id == h.proposer => Ok(()),
        _ => Err(BlockError::Signature),
    }
}

/// The state after a block, what storage must persist, and what each transaction answered.
#[derive(Clone, Debug)]
pub struct Executed {
    pub state: AppState,
    pub writes: Vec<Write>,
    pub outputs: Vec<Vec<u8>>,
}

/// Verifies `block` against the current head and state and re-executes it, checking the
/// transactions on their own (signatures) as `signatures` says. Nothing is mutated: the caller
/// persists the returned state only if it accepts the result.
pub fn verify_block(
    head: &Head,
    state: &AppState,
    peers: &[NodeId],
    block: &Block,
    signatures: Signatures<'_>,
) -> Result<Executed, BlockError> {
    check_header(head, peers, block, signatures)?;
    let h = &block.header;
    if let Signatures::Check(verifier) = signatures {
        let txs: Vec<&Tx> = block.transactions.iter().collect();
        if let Some((index, error)) = verifier.first_invalid(state.app(), &txs) {
            return Err(BlockError::Transaction { index, error });
        }
    }
    let mut next = state.clone();
    let mut outputs = Vec::with_capacity(block.transactions.len());
    for (index, tx) in block.transactions.iter().enumerate() {
        let output = next
            .execute(tx)
            .map_err(|error| BlockError::Transaction { index, error })?;
        outputs.push(output);
    }
    let committed = next.commit();
    if committed.state_root != h.state_root {
        return Err(BlockError::StateRoot {
            got: h.state_root,
            computed: committed.state_root,
        });
    }
    Ok(Executed {
        state: next,
        writes: committed.writes,
        outputs,
    })
}

/// [`verify_block`] for a block this node built itself, given what building it executed: the
/// same checks of the header, proposer and transactions root against the current head, and
/// the execution taken from the build instead of run again. Sound because execution is a
/// function of the parent state and the transactions: the parent is the head (its hash is
/// checked), the transactions are the ones the root commits to, and the build's state root
/// is the header's.
pub fn check_built(
    head: &Head,
    peers: &[NodeId],
    block: &Block,
    executed: Executed,
) -> Result<Executed, BlockError> {
    check_header(head, peers, block, Signatures::Trusted)?;
    let computed = executed.state.root();
    if computed != block.header.state_root {
        return Err(BlockError::StateRoot {
            got: block.header.state_root,
            computed,
        });
    }
    Ok(executed)
}

/// What [`verify_block`] checks before executing: height, parent, time, round, the proposer
/// (and its signature unless `signatures` trusts it) and the transactions root.
fn check_header(
    head: &Head,
    peers: &[NodeId],
    block: &Block,
    signatures: Signatures<'_>,
) -> Result<(), BlockError> {
    let h = &block.header;
    if h.height != head.height + 1 {
        return Err(BlockError::Height {
            head: head.height,
            got: h.height,
        });
    }
    if h.parent_hash != head.hash {
        return Err(BlockError::Parent {
            head: head.hash,
            got: h.parent_hash,
        });
    }
    if h.timestamp_ms < head.timestamp_ms {
        return Err(BlockError::Timestamp {
            parent: head.timestamp_ms,
            got: h.timestamp_ms,
        });
    }
    // Single-sequencer rounds only move forward: no round is ever signed twice on one chain.
    if let Some(head_round) = head.round {
        let got = h.slot.map(|s| s.round);
        if got.is_none_or(|r| r <= head_round) {
            return Err(BlockError::Round {
                head: head_round,
                got,
            });
        }
    }
    match signatures {
        Signatures::Trusted if !peers.contains(&h.proposer) => {
            return Err(BlockError::UnknownProposer(h.proposer));
        }
        Signatures::Trusted => {}
        Signatures::Certified | Signatures::TransactionsChecked | Signatures::Check(_) => {
            verify_signature(peers, block)?
        }
    }
    let computed = transactions_root(&block.transactions);
    if computed != h.transactions_root {
        return Err(BlockError::TransactionsRoot {
            got: h.transactions_root,
            computed,
        });
    }
    Ok(())
}

/// What the sequencer builds a block on: a head, the state after it and where cutting L1
/// batches stands. Either the applied state or the tip of the leader's proposals in flight.
#[derive(Clone, Debug)]
pub struct BuildBase {
    pub head: Head,
    pub state: AppState,
    pub batches: BatchCursor,
    /// The set that certifies the next block (see [`crate::chain::members`]).
    pub members: Vec<NodeId>,
}

impl BuildBase {
    /// What `built`, proposed on this base, leads to once canonized: the head, the state and
    /// the batch cursor exactly as applying it will make them.
    pub fn after(&self, built: &Built, blocks_per_batch: u64) -> Result<BuildBase, CodecError> {
        let head = Head::of(&built.block.header)?;
        let mut batches = self.batches.clone();
        batches.on_block(&built.block.header, head.hash, blocks_per_batch);
        Ok(BuildBase {
            head,
            state: built.state.clone(),
            batches,
            members: built
                .block
                .header
                .members
                .clone()
                .unwrap_or_else(|| self.members.clone()),
        })
    }
}

/// A block the sequencer built, and the candidates it left out with the reason.
pub struct Built {
    pub block: Block,
    pub excluded: Vec<(Tx, Rejection)>,
    /// The state after the block: what a pipelined next block builds on.
    pub state: AppState,
    /// What applying the block on its parent's state gives: the state, the writes to store
    /// and each transaction's answer. The builder ran every transaction already; applying
    /// its own block later need not run them again (see [`check_built`]).
    pub executed: Executed,
}

/// What the sequencer needs to build on top of `head`.
pub struct Proposal<'a> {
    pub head: &'a Head,
    pub state: &'a AppState,
    pub key: &'a SecretKey,
    pub term: u64,
    /// Single-sequencer mode's round and level; `None` in Raft mode.
    pub slot: Option<Slot>,
    /// Close the open L1 batch with this block (see [`BlockHeader::seals_batch`]).
    pub seals_batch: bool,
    /// The voters this block declares (see [`BlockHeader::members`]).
    pub members: Option<Vec<NodeId>>,
    pub timestamp_ms: u64,
    pub max_transactions: usize,
}

/// Builds and signs the next block from `candidates` in order: each is executed on a working
/// state and kept only if valid, so an invalid transaction never reaches a block. The
/// candidates passed the application's stateless check when they were admitted.
pub fn build_block(
    p: Proposal<'_>,
    candidates: impl IntoIterator<Item = Tx>,
) -> Result<Built, CodecError> {
    let mut state = p.state.clone();
    let mut included = Vec::new();
    let mut outputs = Vec::new();
    let mut excluded = Vec::new();
    for tx in candidates {
        if included.len() >= p.max_transactions {
            break;
        }
        match state.execute(&tx) {
            Ok(output) => {
                included.push(tx);
                outputs.push(output);
            }
            Err(e) => excluded.push((tx, e)),
        }
    }
    let committed = state.commit();
    let header = BlockHeader {
        height: p.head.height + 1,
        parent_hash: p.head.hash,
        // A leader's clock may run behind its predecessor's: time never goes backwards on chain.
        timestamp_ms: p.timestamp_ms.max(p.head.timestamp_ms),
        transactions_root: transactions_root(&included),
        state_root: committed.state_root,
        proposer: p.key.node_id(),
        term: p.term,
        slot: p.slot,
        seals_batch: p.seals_batch,
        members: p.members,
    };
    Ok(Built {
        block: Block::seal(header, included, p.key)?,
        excluded,
        executed: Executed {
            state: state.clone(),
            writes: committed.writes,
            outputs,
        },
        state,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::ledger::{account_in, Payload, SignedTransaction, Transaction};
    use crate::chain::block::ChainSpec;
    use crate::chain::signatures::Sequential;
    use alloy_primitives::Address;

    const CHECK: Signatures<'static> = Signatures::Check(&Sequential);

    fn key(n: u8) -> SecretKey {
        SecretKey::from_bytes([n; 32]).unwrap()
    }

    struct Fixture {
        spec: ChainSpec,
        leader: SecretKey,
        peers: Vec<NodeId>,
        alice: SecretKey,
    }

    fn fixture() -> Fixture {
        let alice = key(10);
        let leader = key(1);
        Fixture {
            spec: ChainSpec {
                chain_id: 1,
                app: crate::app::App::new(crate::app::ledger::LedgerApp::new(vec![(
                    alice.address(),
                    1_000,
                )])),
                blocks_per_batch: crate::chain::block::DEFAULT_BLOCKS_PER_BATCH,
            },
            peers: vec![leader.node_id(), key(2).node_id()],
            leader,
            alice,
        }
    }

    fn pay_signed(from: &SecretKey, nonce: u64, amount: u64) -> SignedTransaction {
        Transaction {
            sender: from.address(),
            nonce,
            payload: Payload::Transfer {
                to: Address::repeat_byte(9),
                amount,
            },
        }
        .sign(from)
        .unwrap()
    }

    fn pay(from: &SecretKey, nonce: u64, amount: u64) -> Tx {
        pay_signed(from, nonce, amount).to_tx().unwrap()
    }

    fn build(f: &Fixture, txs: Vec<Tx>) -> (Head, AppState, Built) {
        let head = Head::of(&f.spec.genesis_header().unwrap()).unwrap();
        let ledger = f.spec.genesis_state();
        let built = build_block(
            Proposal {
                head: &head,
                state: &ledger,
                key: &f.leader,
                term: 1,
                slot: None,
                seals_batch: false,
                members: None,
                timestamp_ms: 5,
                max_transactions: 10,
            },
            txs,
        )
        .unwrap();
        (head, ledger, built)
    }

    #[test]
    fn sequencer_excludes_invalid_transactions_and_block_verifies() {
        let f = fixture();
        let pauper = key(11);
        let (head, ledger, built) = build(
            &f,
            vec![
                pay(&f.alice, 0, 10),
                pay(&pauper, 0, 1),
                pay(&f.alice, 5, 1),
                pay(&f.alice, 1, 2_000),
            ],
        );
        assert_eq!(built.block.transactions.len(), 1);
        assert_eq!(built.excluded.len(), 3);
        let out = verify_block(&head, &ledger, &f.peers, &built.block, CHECK).unwrap();
        assert_eq!(
            account_in(&out.state, &f.alice.address()).unwrap().balance,
            990
        );
    }

    #[test]
    fn a_built_block_checks_to_what_running_it_again_gives() {
        let f = fixture();
        let (head, ledger, built) = build(&f, vec![pay(&f.alice, 0, 10), pay(&f.alice, 1, 7)]);
        let again = verify_block(&head, &ledger, &f.peers, &built.block, CHECK).unwrap();
        let reused = check_built(&head, &f.peers, &built.block, built.executed.clone()).unwrap();
        assert_eq!(reused.state.root(), again.state.root());
        assert_eq!(reused.outputs, again.outputs);
        assert_eq!(reused.writes, again.writes);
        // The header is still checked against the head: a block on another parent, or whose
        // root the execution does not give, is refused as before.
        let mut h = built.block.header.clone();
        h.parent_hash = B256::repeat_byte(7);
        let other = Block::seal(h, built.block.transactions.clone(), &f.leader).unwrap();
        assert!(matches!(
            check_built(&head, &f.peers, &other, built.executed.clone()),
            Err(BlockError::Parent { .. })
        ));
        let mut h = built.block.header.clone();
        h.state_root = B256::repeat_byte(1);
        let lying = Block::seal(h, built.block.transactions.clone(), &f.leader).unwrap();
        assert!(matches!(
            check_built(&head, &f.peers, &lying, built.executed),
            Err(BlockError::StateRoot { .. })
        ));
    }

    #[test]
    fn replay_rejects_tampered_blocks() {
        let f = fixture();
        let (head, ledger, built) = build(&f, vec![pay(&f.alice, 0, 10)]);
        let good = built.block;

        let mut b = good.clone();
        b.header.state_root = B256::repeat_byte(1);
        assert!(matches!(
            verify_block(&head, &ledger, &f.peers, &b, CHECK),
            Err(BlockError::Signature)
        ));
        let b = Block::seal(b.header, b.transactions, &f.leader).unwrap();
        assert!(matches!(
            verify_block(&head, &ledger, &f.peers, &b, CHECK),
            Err(BlockError::StateRoot { .. })
        ));

        let mut h = good.header.clone();
        h.parent_hash = B256::repeat_byte(7);
        let b = Block::seal(h, good.transactions.clone(), &f.leader).unwrap();
        assert!(matches!(
            verify_block(&head, &ledger, &f.peers, &b, CHECK),
            Err(BlockError::Parent { .. })
        ));

        let mut h = good.header.clone();
        h.height = 2;
        let b = Block::seal(h, good.transactions.clone(), &f.leader).unwrap();
        assert!(matches!(
            verify_block(&head, &ledger, &f.peers, &b, CHECK),
            Err(BlockError::Height { .. })
        ));

        let mut h = good.header.clone();
        h.proposer = key(3).node_id();
        let b = Block::seal(h, good.transactions.clone(), &key(3)).unwrap();
        assert!(matches!(
            verify_block(&head, &ledger, &f.peers, &b, CHECK),
            Err(BlockError::UnknownProposer(_))
        ));

        let mut b = good.clone();
        b.transactions.push(pay(&f.alice, 1, 1));
        assert!(matches!(
            verify_block(&head, &ledger, &f.peers, &b, CHECK),
            Err(BlockError::TransactionsRoot { .. })
        ));

        let mut b = good.clone();
        b.transactions[0] = pay(&f.alice, 0, 11);
        let b = Block::seal(b.header, b.transactions, &f.leader).unwrap();
        assert!(matches!(
            verify_block(&head, &ledger, &f.peers, &b, CHECK),
            Err(BlockError::TransactionsRoot { .. })
        ));
    }

    #[test]
    fn a_forged_transaction_signature_is_caught_only_where_signatures_are_checked() {
        let f = fixture();
        let (head, ledger, built) = build(&f, vec![]);
        let mut forged = pay_signed(&f.alice, 0, 1);
        forged.tx.payload = Payload::Transfer {
            to: Address::repeat_byte(9),
            amount: 500,
        };
        let txs = vec![forged.to_tx().unwrap()];
        let mut h = built.block.header.clone();
        h.transactions_root = transactions_root(&txs);
        let mut trial = ledger.clone();
        trial.execute(&txs[0]).unwrap();
        h.state_root = trial.commit().state_root;
        let b = Block::seal(h, txs, &f.leader).unwrap();
        assert!(matches!(
            verify_block(&head, &ledger, &f.peers, &b, CHECK),
            Err(BlockError::Transaction { index: 0, error }) if error.rule == crate::app::RULE_SIGNATURE
        ));
        // A Raft member's block is trusted: its leader checked the signature at admission.
        assert!(verify_block(&head, &ledger, &f.peers, &b, Signatures::Trusted).is_ok());
        // So is its proposer's signature, but not a proposer outside the members.
        let mut unsigned = b.clone();
        unsigned.signature.0[0] ^= 1;
        assert!(verify_block(&head, &ledger, &f.peers, &unsigned, Signatures::Trusted).is_ok());
        assert!(matches!(
            verify_block(
                &head,
                &ledger,
                &f.peers,
                &unsigned,
                Signatures::TransactionsChecked
            ),
            Err(BlockError::Signature)
        ));
        assert!(matches!(
            verify_block(&head, &ledger, &[], &b, Signatures::Trusted),
            Err(BlockError::UnknownProposer(_))
        ));
    }

    #[test]
    fn a_block_with_an_invalid_transaction_is_rejected_on_replay() {
        let f = fixture();
        let (head, ledger, built) = build(&f, vec![]);
        let mut h = built.block.header.clone();
        let txs = vec![pay(&f.alice, 3, 1)];
        h.transactions_root = transactions_root(&txs);
        let b = Block::seal(h, txs, &f.leader).unwrap();
        assert!(matches!(
            verify_block(&head, &ledger, &f.peers, &b, CHECK),
            Err(BlockError::Transaction { index: 0, error }) if error.rule == crate::app::RULE_SEQUENCE_AHEAD
        ));
    }

    #[test]
    fn timestamps_never_go_backwards() {
        let f = fixture();
        let head = Head {
            timestamp_ms: 100,
            ..Head::of(&f.spec.genesis_header().unwrap()).unwrap()
        };
        let built = build_block(
            Proposal {
                head: &head,
                state: &f.spec.genesis_state(),
                key: &f.leader,
                term: 1,
                seals_batch: false,
                members: None,
                slot: None,
                timestamp_ms: 5,
                max_transactions: 1,
            },
            vec![],
        )
        .unwrap();
        assert_eq!(built.block.header.timestamp_ms, 100);
    }

    #[test]
    fn single_sequencer_rounds_only_move_forward() {
        let f = fixture();
        let genesis = Head::of(&f.spec.genesis_header().unwrap()).unwrap();
        let ledger = f.spec.genesis_state();
        let at = |head: &Head, round: Option<u64>| {
            build_block(
                Proposal {
                    head,
                    state: &ledger,
                    key: &f.leader,
                    term: 0,
                    slot: round.map(|round| Slot { round, level: 0 }),
                    seals_batch: false,
                    members: None,
                    timestamp_ms: 5,
                    max_transactions: 1,
                },
                vec![],
            )
            .unwrap()
            .block
        };
        // (head round, block round, accepted)
        let cases = [
            (None, Some(0), true),
            (Some(5), Some(6), true),
            (Some(5), Some(5), false),
            (Some(5), Some(4), false),
            (Some(5), None, false),
        ];
        for (head_round, round, ok) in cases {
            let head = Head {
                round: head_round,
                ..genesis
            };
            let got = verify_block(&head, &ledger, &f.peers, &at(&head, round), CHECK);
            assert_eq!(
                got.is_ok(),
                ok,
                "head {head_round:?} block {round:?}: {:?}",
                got.err()
            );
        }
        let b = at(&genesis, Some(9));
        assert_eq!(Head::of(&b.header).unwrap().round, Some(9));
    }

    #[test]
    fn a_pipelined_block_builds_on_exactly_what_applying_the_last_one_gives() {
        let f = fixture();
        let genesis = BuildBase {
            head: Head::of(&f.spec.genesis_header().unwrap()).unwrap(),
            state: f.spec.genesis_state(),
            batches: BatchCursor::default(),
            members: f.peers.clone(),
        };
        // (blocks per batch, seal mark) -> the cursor after one block
        for (per_batch, seals) in [(10, false), (10, true), (1, false)] {
            let mut base = genesis.clone();
            for nonce in 0..3 {
                let built = build_block(
                    Proposal {
                        head: &base.head,
                        state: &base.state,
                        key: &f.leader,
                        term: 1,
                        slot: None,
                        seals_batch: seals,
                        members: None,
                        timestamp_ms: 5 + nonce,
                        max_transactions: 10,
                    },
                    vec![pay(&f.alice, nonce, 10)],
                )
                .unwrap();
                let tip = base.after(&built, per_batch).unwrap();
                // What applying it does: verify, execute, cut batches.
                let executed =
                    verify_block(&base.head, &base.state, &f.peers, &built.block, CHECK).unwrap();
                let mut cursor = base.batches.clone();
                let hash = built.block.hash().unwrap();
                cursor.on_block(&built.block.header, hash, per_batch);
                assert_eq!(tip.head, Head::of(&built.block.header).unwrap());
                assert_eq!(tip.head.hash, hash);
                assert_eq!(tip.state.root(), executed.state.root());
                assert_eq!(tip.batches, cursor, "per batch {per_batch}, seals {seals}");
                base = tip;
            }
            assert_eq!(base.head.height, 3);
            assert_eq!(
                account_in(&base.state, &f.alice.address()).unwrap().nonce,
                3
            );
        }
    }
}

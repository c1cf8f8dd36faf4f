//! Executing appended blocks ahead of their commit on a follower (the decision:
//! [`crate::policy::speculation`]). The log store hands each block another node proposed to
//! one task once the block is durable in the log; the task executes it on its parent's state
//! and leaves the result where applying the block looks for it
//! ([`ChainStore::remember_built`]), so a follower's apply, like the leader's, only checks and
//! stores. A task of its own, not the append: Raft acknowledges the append without waiting
//! for it, so the commit round and the execution run side by side.

use std::sync::Arc;

use futures::channel::mpsc::{self, UnboundedReceiver, UnboundedSender};
use futures::StreamExt;
use openraft::AsyncRuntime;

use crate::app::AppState;
use crate::chain::block::{transactions_root, Block};
use crate::chain::rules;
use crate::chain::store::ChainStore;
use crate::ids::NodeId;
use crate::policy::speculation::{base_for, Appended, Base, Place};

/// The sending end: cheap to clone with the log store; the task ends when every clone is gone.
#[derive(Clone)]
pub(super) struct Speculator {
    node: NodeId,
    blocks: UnboundedSender<Block>,
}

impl Speculator {
    /// Starts the task for `node` over `chain`.
    pub(super) fn start<RT: AsyncRuntime>(chain: Arc<ChainStore>, node: NodeId) -> Speculator {
        let (blocks, appended) = mpsc::unbounded();
        let _detached = RT::spawn(run(chain, node, appended));
        Speculator { node, blocks }
    }

    /// `block` is durable in the log. This node's own blocks are not sent: building them left
    /// their execution behind already.
    pub(super) fn appended(&self, block: &Block) {
        if block.header.proposer != self.node {
            // Gone only once the node stops: nothing is owed to a task that ended.
            let _ = self.blocks.unbounded_send(block.clone());
        }
    }
}

/// The last block executed ahead: its place and the state after it.
struct Tip {
    place: Place,
    state: AppState,
}

async fn run(chain: Arc<ChainStore>, node: NodeId, mut appended: UnboundedReceiver<Block>) {
    let mut tip: Option<Tip> = None;
    while let Some(block) = appended.next().await {
        let Ok(hash) = block.hash() else {
            tip = None;
            continue;
        };
        let h = &block.header;
        let this = Appended {
            height: h.height,
            parent: h.parent_hash,
            own: h.proposer == node,
        };
        // The applied head and its state read together: apply may move them meanwhile.
        let (base, applied_state) = {
            let applied = chain.state();
            let place = Place {
                height: applied.head.height,
                hash: applied.head.hash,
            };
            let base = base_for(this, tip.as_ref().map(|t| t.place), place);
            let state = (base == Base::Applied).then(|| applied.state.clone());
            (base, state)
        };
        // The memo is found by the header's hash: it must be of the transactions the header
        // commits to, whatever a later entry under the same header carries.
        if transactions_root(&block.transactions) != h.transactions_root {
            tip = None;
            continue;
        }
        let executed = match (base, &tip, applied_state) {
            (Base::Tip, Some(t), _) => Some(rules::execute_block(&t.state, &block)),
            (Base::Applied, _, Some(state)) => Some(rules::execute_block(&state, &block)),
            _ => None,
        };
        tip = match executed {
            Some(Ok(executed)) => {
                let next = Tip {
                    place: Place {
                        height: h.height,
                        hash,
                    },
                    state: executed.state.clone(),
                };
                chain.remember_built(hash, executed);
                Some(next)
            }
            // A block that fails to execute is rejected on apply; nothing builds on it.
            Some(Err(_)) | None => None,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::kv::{KvApp, KvOp, KvTx};
    use crate::app::{App, Tx};
    use crate::chain::block::ChainSpec;
    use crate::chain::rules::{build_block, Proposal};
    use crate::chain::store::testing::apply_trusted;
    use crate::keys::{derived_key, SecretKey};
    use crate::storage::MemDisk;

    type Rt = openraft::TokioRuntime;

    fn store() -> Arc<ChainStore> {
        let spec = ChainSpec {
            chain_id: 7,
            app: App::new(KvApp),
            blocks_per_batch: 4,
        };
        Arc::new(ChainStore::open(Arc::new(MemDisk::new()), &spec).unwrap())
    }

    fn put(request: u64, key: &[u8]) -> Tx {
        KvTx {
            client: 1,
            request,
            op: KvOp::Put {
                key: key.to_vec(),
                value: request.to_le_bytes().to_vec(),
            },
        }
        .to_tx()
        .unwrap()
    }

    /// The next block on `store`'s head by `key`, with puts, applied there.
    fn grow(store: &ChainStore, key: &SecretKey, first_request: u64) -> Block {
        let s = store.state().clone();
        let txs: Vec<Tx> = (first_request..first_request + 5)
            .map(|r| put(r, &[(r % 3) as u8 + 1]))
            .collect();
        let proposal = Proposal {
            head: &s.head,
            state: &s.state,
            key,
            term: 1,
            slot: None,
            seals_batch: false,
            members: None,
            timestamp_ms: s.head.timestamp_ms + 1,
            max_transactions: 100,
        };
        let block = build_block(proposal, txs).unwrap().block;
        apply_trusted(store, &block, key);
        block
    }

    /// Lets the task take everything sent so far (one thread: it runs while this yields).
    async fn settle() {
        for _ in 0..16 {
            tokio::task::yield_now().await;
        }
    }

    /// A follower executes each block another node proposed on its parent, the applied head
    /// or the block before it, and leaves what apply would compute; it leaves nothing for its
    /// own block, a block on a parent it never executed, or transactions the header does not
    /// commit to.
    #[test]
    fn a_follower_executes_appended_blocks_on_their_parents_ahead_of_apply() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let leader = derived_key("speculate-test", 0);
            let follower = derived_key("speculate-test", 1);
            let source = store();
            let blocks: Vec<Block> = (0..4).map(|i| grow(&source, &leader, i * 10)).collect();
            let chain = store();
            let speculator = Speculator::start::<Rt>(chain.clone(), follower.node_id());

            // Three blocks ahead of the applied genesis: the first on it, the rest on the tip.
            for b in &blocks[..3] {
                speculator.appended(b);
            }
            settle().await;
            for b in &blocks[..3] {
                let executed = chain
                    .take_built(&b.hash().unwrap())
                    .expect("executed ahead");
                assert_eq!(executed.state.root(), b.header.state_root);
                assert_eq!(executed.outputs.len(), b.transactions.len());
            }
            // Apply caught up with two of them; the fourth extends the tip.
            apply_trusted(&chain, &blocks[0], &leader);
            apply_trusted(&chain, &blocks[1], &leader);
            speculator.appended(&blocks[3]);
            settle().await;
            assert!(chain.take_built(&blocks[3].hash().unwrap()).is_some());

            // Its own block: building it left the memo, nothing is executed again.
            apply_trusted(&chain, &blocks[2], &leader);
            apply_trusted(&chain, &blocks[3], &leader);
            let own = grow(&store_at(&chain, &leader), &follower, 100);
            speculator.appended(&own);
            // A block on a parent this node never saw.
            let elsewhere = grow(&store(), &leader, 200);
            speculator.appended(&elsewhere);
            // Transactions other than those the header commits to, though to the same state
            // (a put repeated): only the transactions root tells them apart.
            let next = grow(&store_at(&chain, &leader), &leader, 300);
            let mut forged = next.clone();
            let last = forged.transactions.last().unwrap().clone();
            forged.transactions.push(last);
            speculator.appended(&forged);
            settle().await;
            for b in [&own, &elsewhere, &forged] {
                assert!(chain.take_built(&b.hash().unwrap()).is_none());
            }
            // The honest block on the applied head is executed as ever.
            speculator.appended(&next);
            settle().await;
            assert!(chain.take_built(&next.hash().unwrap()).is_some());
        });
    }

    /// A scratch store holding the same chain as `chain`, all of it `leader`'s.
    fn store_at(chain: &ChainStore, leader: &SecretKey) -> Arc<ChainStore> {
        let copy = store();
        for height in 1..=chain.head().height {
            let block = chain.block(height).unwrap().expect("stored");
            apply_trusted(&copy, &block, leader);
        }
        copy
    }
}

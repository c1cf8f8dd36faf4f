//! Clients waiting for what their transactions answered (a key-value write's outcome, say):
//! each waits on its transaction's id, and applying a block resolves the waiters of the
//! transactions in it once the block is published. Nothing is kept for a transaction nobody
//! waits on, so a chain without such clients pays one uncontended lock per block.

use std::collections::BTreeMap;
use std::sync::Mutex;

use alloy_primitives::B256;
use futures::channel::oneshot;

use super::ChainStore;
use crate::chain::block::Block;
use crate::sync::lock;

/// What an applied transaction answered, and the height of the block that applied it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub height: u64,
    pub output: Vec<u8>,
}

/// The waiters, by transaction id.
#[derive(Default)]
pub(super) struct Waiters(Mutex<BTreeMap<B256, Vec<oneshot::Sender<Applied>>>>);

impl ChainStore {
    /// Resolves with what transaction `id` answered once a block applying it is published.
    /// Register before submitting, so the answer cannot come first. A waiter given up on is
    /// dropped by [`ChainStore::stop_awaiting`].
    pub fn await_applied(&self, id: B256) -> oneshot::Receiver<Applied> {
        let (tx, rx) = oneshot::channel();
        lock(&self.waiters.0).entry(id).or_default().push(tx);
        rx
    }

    /// Forgets the waiters of `id` whose receiver is gone (a client that timed out).
    pub fn stop_awaiting(&self, id: &B256) {
        let mut waiters = lock(&self.waiters.0);
        if let Some(list) = waiters.get_mut(id) {
            list.retain(|w| !w.is_canceled());
            if list.is_empty() {
                waiters.remove(id);
            }
        }
    }

    /// How many transactions are waited on.
    pub fn awaited(&self) -> usize {
        lock(&self.waiters.0).len()
    }

    /// Answers the waiters of `block`'s transactions with `outputs` (one per transaction, in
    /// order). Call after the block is published.
    pub(crate) fn resolve_applied(&self, block: &Block, outputs: &[Vec<u8>]) {
        let mut waiters = lock(&self.waiters.0);
        if waiters.is_empty() {
            return;
        }
        for (tx, output) in block.transactions.iter().zip(outputs) {
            for w in waiters.remove(&tx.hash()).into_iter().flatten() {
                // A receiver dropped meanwhile just misses the answer.
                let _ = w.send(Applied {
                    height: block.header.height,
                    output: output.clone(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::app::ledger::{LedgerApp, Payload, Transaction};
    use crate::app::App;
    use crate::chain::block::ChainSpec;
    use crate::keys::derived_key;
    use crate::storage::MemDisk;

    #[test]
    fn a_waiter_hears_its_transaction_once_and_a_lapsed_one_is_forgotten() {
        let spec = ChainSpec {
            chain_id: 1,
            app: App::new(LedgerApp::default()),
            blocks_per_batch: crate::chain::block::DEFAULT_BLOCKS_PER_BATCH,
        };
        let store = ChainStore::open(Arc::new(MemDisk::new()), &spec).unwrap();
        let k = derived_key("outcomes", 0);
        let tx = |nonce| {
            Transaction {
                sender: k.address(),
                nonce,
                payload: Payload::Data(vec![]),
            }
            .sign(&k)
            .unwrap()
            .to_tx()
            .unwrap()
        };
        let (a, b, c) = (tx(0), tx(1), tx(2));
        let mut heard_a = store.await_applied(a.hash());
        let mut heard_a_twice = store.await_applied(a.hash());
        let lapsed = store.await_applied(b.hash());
        drop(lapsed);
        store.stop_awaiting(&b.hash());
        let mut never = store.await_applied(c.hash());
        assert_eq!(store.awaited(), 2);
        let header = crate::chain::block::BlockHeader {
            height: 4,
            parent_hash: B256::ZERO,
            timestamp_ms: 0,
            transactions_root: B256::ZERO,
            state_root: B256::ZERO,
            proposer: k.node_id(),
            term: 1,
            slot: None,
            seals_batch: false,
            members: None,
        };
        let block = Block::seal(header, vec![b.clone(), a.clone()], &k).unwrap();
        store.resolve_applied(&block, &[vec![1], vec![2]]);
        let expected = Applied {
            height: 4,
            output: vec![2],
        };
        assert_eq!(heard_a.try_recv().unwrap(), Some(expected.clone()));
        assert_eq!(heard_a_twice.try_recv().unwrap(), Some(expected));
        assert_eq!(never.try_recv().unwrap(), None);
        assert_eq!(store.awaited(), 1);
    }
}

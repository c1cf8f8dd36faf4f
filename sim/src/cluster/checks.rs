//! What scenarios wait for (a leader, a height, progress, L1, a backfill) and what they check
//! at the end of a run (complete chains, a bounded log, the final state, signatures).

use std::time::{Duration, Instant};

use alloy_primitives::Address;
use canon_engine::app::ledger::{account_in, SignedTransaction};

use super::{pauper_key, SimApp, SimCluster};

impl SimCluster {
    /// Waits until one of `among` leads with a quorum behind it (it has canonized a block in its
    /// term). Returns the leader and how long it took.
    pub async fn wait_for_leader(
        &self,
        among: &[usize],
        bound: Duration,
    ) -> Result<(usize, Duration), String> {
        let start = Instant::now();
        loop {
            if let Some(l) = self.leader().filter(|l| among.contains(l)) {
                let height = self.height_of(l);
                if height > 0 && self.node(l).is_some_and(|n| n.status().is_leader) {
                    return Ok((l, start.elapsed()));
                }
            }
            if start.elapsed() > bound {
                return Err(format!(
                    "liveness: no leader among {among:?} within {:.1}s",
                    bound.as_secs_f64()
                ));
            }
            madsim::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn height_of(&self, i: usize) -> u64 {
        self.node(i).map(|n| n.head().height).unwrap_or(0)
    }

    /// The highest batch any node sealed, and the last batch on L1.
    pub fn batch_progress(&self) -> (u64, u64) {
        let o = self.observer.lock();
        let sealed = o
            .checker
            .sealed_batches()
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0);
        (sealed, o.checker.l1_head().0)
    }

    /// Waits until L1 holds every batch sealed by now (the batcher's liveness); returns how
    /// long it took.
    pub async fn wait_for_l1(&self, bound: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        let (target, _) = self.batch_progress();
        loop {
            let (_, on_l1) = self.batch_progress();
            if on_l1 >= target {
                return Ok(start.elapsed());
            }
            if start.elapsed() > bound {
                return Err(format!(
                    "L1 holds batch {on_l1}, {:.1}s after batch {target} was sealed",
                    bound.as_secs_f64()
                ));
            }
            madsim::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// L1's attester set must be nodes `members`: their addresses (the last 20 bytes of
    /// keccak over each public key), ascending.
    pub fn check_l1_attesters(
        &self,
        members: &std::collections::BTreeSet<usize>,
    ) -> Result<(), String> {
        let mut want: Vec<Address> = members
            .iter()
            .map(|&i| Address::from_raw_public_key(&self.node_id(i).0))
            .collect();
        want.sort();
        let mut held = self.l1.validators();
        held.sort();
        if held != want {
            return Err(format!(
                "L1 holds attesters {held:?}; nodes {members:?} are {want:?}"
            ));
        }
        Ok(())
    }

    pub fn canonical_height(&self) -> u64 {
        self.observer.lock().checker.canonical_height()
    }

    /// Waits until every node in `nodes` has applied `height`.
    pub async fn wait_for_height(
        &self,
        nodes: &[usize],
        height: u64,
        bound: Duration,
    ) -> Result<Duration, String> {
        let start = Instant::now();
        loop {
            if nodes.iter().all(|i| self.height_of(*i) >= height) {
                return Ok(start.elapsed());
            }
            if start.elapsed() > bound {
                let heads: Vec<String> = nodes
                    .iter()
                    .map(|i| format!("n{i}={}", self.height_of(*i)))
                    .collect();
                return Err(format!(
                    "liveness: nodes did not reach height {height} within {:.1}s ({})",
                    bound.as_secs_f64(),
                    heads.join(" ")
                ));
            }
            madsim::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the canonical chain grows by `blocks` on every live node.
    pub async fn wait_for_progress(
        &self,
        blocks: u64,
        bound: Duration,
    ) -> Result<Duration, String> {
        let target = self.canonical_height() + blocks;
        self.wait_for_height(&self.up_nodes(), target, bound).await
    }

    /// Waits until no node in `nodes` has a snapshot's gap left to fill.
    pub async fn wait_for_backfill(&self, nodes: &[usize], bound: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let pending: Vec<String> = nodes
                .iter()
                .filter_map(|i| {
                    let gap = self.node(*i)?.chain().backfill()?;
                    Some(format!("n{i} misses {} blocks", gap.missing_blocks()))
                })
                .collect();
            if pending.is_empty() {
                return Ok(());
            }
            if start.elapsed() > bound {
                return Err(format!(
                    "liveness: a snapshot's gap is still open after {:.1}s ({})",
                    bound.as_secs_f64(),
                    pending.join(", ")
                ));
            }
            madsim::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every live node holds every block from 1 to its head, each the canonical one, and every
    /// batch it counts as sealed, each as the checker saw it sealed, with its own attestation:
    /// what a snapshot jumped over was backfilled and cut again.
    pub fn check_complete_chains(&self) -> Result<(), String> {
        let obs = self.observer.lock();
        for i in self.up_nodes() {
            let Some(node) = self.node(i) else { continue };
            let chain = node.chain();
            let state = chain.state().clone();
            for_each_block(chain, |b| {
                let (h, hash) = (b.header.height, b.hash().map_err(|e| e.to_string())?);
                if obs.checker.canonical_hash(h) != Some(hash) {
                    return Err(format!("stores {hash} at height {h}, not canonical"));
                }
                Ok(())
            })
            .map_err(|e| format!("n{i}: {e}"))?;
            let sealed = obs.checker.sealed_batches();
            for n in 1..=state.batches.sealed_number {
                let header = chain.batch(n).map_err(|e| e.to_string())?.ok_or_else(|| {
                    format!(
                        "n{i} lacks batch {n} of its {} sealed",
                        state.batches.sealed_number
                    )
                })?;
                if sealed.get(&n).map(|b| b.commitment) != Some(header.commitment()) {
                    return Err(format!("n{i} holds batch {n} unlike the one sealed"));
                }
                let own = chain
                    .attestations(n)
                    .map_err(|e| e.to_string())?
                    .iter()
                    .any(|a| a.signer == node.id() && a.verify(&header));
                if !own {
                    return Err(format!("n{i} has no attestation of its own for batch {n}"));
                }
            }
        }
        Ok(())
    }

    /// Every live node's Raft log holds at most `max` entries: compaction keeps up.
    pub fn check_log_bounded(&self, max: u64) -> Result<(), String> {
        for i in self.up_nodes() {
            let Some(node) = self.node(i) else { continue };
            let entries = node.status().log_entries;
            if entries > max {
                return Err(format!(
                    "n{i}'s Raft log holds {entries} entries, compaction should keep it to {max}"
                ));
            }
        }
        Ok(())
    }

    /// Every live node's head is canonical and the pauper account never had a transaction
    /// included. Run at the end of a scenario, once nodes have converged.
    pub fn check_final_state(&self) -> Result<(), String> {
        let pauper = pauper_key().address();
        let obs = self.observer.lock();
        if let Some((i, head, max)) = obs.checker.nodes_behind_their_past().first() {
            return Err(format!(
                "a canonized block is never lost across restarts: n{i} is at height {head}, it had applied {max}"
            ));
        }
        for i in self.up_nodes() {
            let Some(node) = self.node(i) else { continue };
            let chain = node.chain().state().clone();
            let expected = obs.checker.canonical_hash(chain.head.height);
            if expected != Some(chain.head.hash) {
                return Err(format!(
                    "n{i} head {} at height {} is not canonical ({expected:?})",
                    chain.head.hash, chain.head.height
                ));
            }
            if self.cfg.app == SimApp::Ledger
                && account_in(&chain.state, &pauper).unwrap_or_default().nonce != 0
            {
                return Err(format!(
                    "n{i}: an invalid (unfunded) transaction was canonized"
                ));
            }
        }
        drop(obs);
        self.check_canonized_signatures()
    }

    /// Every canonized transaction was signed by its sender. Followers trust the leader's
    /// admission check, so this is where a transaction that skipped it would show; recovered
    /// here directly from the transaction's hash, not through the engine's predicate.
    fn check_canonized_signatures(&self) -> Result<(), String> {
        if self.cfg.app != SimApp::Ledger {
            return Ok(());
        }
        let Some(node) = self
            .up_nodes()
            .into_iter()
            .filter_map(|i| self.node(i))
            .max_by_key(|n| n.chain().head().height)
        else {
            return Ok(());
        };
        let chain = node.chain();
        for_each_block(chain, |b| {
            for (k, raw) in b.transactions.iter().enumerate() {
                let stx = SignedTransaction::from_tx(raw).map_err(|e| {
                    format!(
                        "transaction {k} of canonized block {} is not a ledger transaction: {e}",
                        b.header.height
                    )
                })?;
                let signer = stx
                    .tx
                    .hash()
                    .ok()
                    .and_then(|h| canon_engine::keys::recover_address(&h, &stx.signature).ok());
                if signer != Some(stx.tx.sender) {
                    return Err(format!(
                        "transaction {k} of canonized block {} names sender {} but was signed by {signer:?}",
                        b.header.height, stx.tx.sender
                    ));
                }
            }
            Ok(())
        })
    }

    /// Canonical nonce of `addr` as the most advanced live node sees it (the client's oracle,
    /// like a wallet's eth_getTransactionCount).
    pub fn account_nonce(&self, addr: &Address) -> u64 {
        self.up_nodes()
            .into_iter()
            .filter_map(|i| self.node(i))
            .map(|n| {
                account_in(&n.chain().state().state, addr)
                    .unwrap_or_default()
                    .nonce
            })
            .max()
            .unwrap_or(0)
    }
}

/// Calls `f` on every stored block from 1 to the head, in order; a missing one is an error.
fn for_each_block(
    chain: &canon_engine::chain::store::ChainStore,
    mut f: impl FnMut(&canon_engine::chain::block::Block) -> Result<(), String>,
) -> Result<(), String> {
    let head = chain.head().height;
    let mut from = 1;
    while from <= head {
        let blocks = chain
            .blocks(from, 256, usize::MAX)
            .map_err(|e| format!("reading blocks from {from}: {e}"))?;
        if blocks.is_empty() {
            return Err(format!("block {from} below the head {head} is missing"));
        }
        for b in &blocks {
            f(b)?;
            from = b.header.height + 1;
        }
    }
    Ok(())
}

//! Replay throughput: an external node's work, on one core and on all. A stored chain of canonized blocks
//! (default 100,000 blocks of 4 transfers) is read back in 128-block ranges, decoded, verified
//! (continuity, proposer signature, transactions root, re-execution and state root) and stored
//! by a `Replica`, exactly as an external node does after download.
//!
//! `cargo bench -p canon-benches --bench replay`
//! Knobs (env): REPLAY_BLOCKS (100000), REPLAY_TXS_PER_BLOCK (4); CLUSTER_TPS and
//! CLUSTER_BLOCKS_PER_SEC: the production rate to compare with (from the loopback bench).

use std::sync::Arc;
use std::time::Instant;

use canon_benches::fixture;
use canon_engine::chain::replica::Replica;
use canon_engine::chain::rules::{build_block, Head, Proposal};
use canon_engine::chain::signatures::{Sequential, SignatureVerifier};
use canon_engine::chain::store::{block_key, read_blocks};
use canon_engine::chain::tx::{Payload, Transaction};
use canon_engine::codec;
use canon_engine::storage::{Column, Durability, MemDisk, Storage, WriteBatch};
use canon_node::verifier::ParallelVerifier;

fn env_or<T: std::str::FromStr>(k: &str, default: T) -> T {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs a small smoke instead.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let blocks: u64 = if smoke {
        500
    } else {
        env_or("REPLAY_BLOCKS", 100_000)
    };
    let per_block: usize = env_or("REPLAY_TXS_PER_BLOCK", 4);
    let f = fixture(64);
    let source = MemDisk::new();

    // The stored chain, built as a leader would.
    let started = Instant::now();
    let mut head = Head::of(&f.spec.genesis_header().expect("genesis")).expect("head");
    let mut ledger = f.spec.genesis_ledger();
    let mut nonces = vec![0u64; f.accounts.len()];
    let mut next_sender = 0usize;
    for h in 1..=blocks {
        let txs: Vec<_> = (0..per_block)
            .map(|_| {
                let s = next_sender % f.accounts.len();
                next_sender += 1;
                let key = &f.accounts[s];
                let tx = Transaction {
                    sender: key.address(),
                    nonce: nonces[s],
                    payload: Payload::Transfer {
                        to: f.accounts[(s + 1) % f.accounts.len()].address(),
                        amount: 1,
                    },
                };
                nonces[s] += 1;
                tx.sign(key).expect("sign")
            })
            .collect();
        let built = build_block(
            Proposal {
                head: &head,
                ledger: &ledger,
                key: &f.leader,
                term: 1,
                slot: None,
                seals_batch: false,
                timestamp_ms: h,
                max_transactions: usize::MAX,
            },
            txs,
        )
        .expect("build");
        assert!(
            built.excluded.is_empty(),
            "every generated transfer is valid"
        );
        for tx in &built.block.transactions {
            ledger.apply(tx).expect("apply");
        }
        head = Head::of(&built.block.header).expect("head");
        let mut batch = WriteBatch::default();
        batch.put(
            Column::Block,
            block_key(h),
            codec::encode(&built.block).expect("encode"),
        );
        source.write(batch, Durability::Buffered).expect("store");
    }
    let generated = started.elapsed().as_secs_f64();

    // Replay as an external node does: each downloaded range's signatures checked in one call
    // (on one thread, then spread over every core), then each block verified and stored.
    let mut rates = Vec::new();
    for (name, verifier) in [
        (
            "one core",
            Arc::new(Sequential) as Arc<dyn SignatureVerifier>,
        ),
        (
            "all cores",
            Arc::new(ParallelVerifier) as Arc<dyn SignatureVerifier>,
        ),
    ] {
        let target: Arc<dyn Storage> = Arc::new(MemDisk::new());
        let replica =
            Replica::open(target, &f.spec, vec![f.leader.node_id()], verifier).expect("replica");
        let started = Instant::now();
        let mut txs = 0u64;
        let mut from = 1;
        while from <= blocks {
            let range = read_blocks(&source, from, blocks, 128, 8 << 20).expect("read");
            assert_eq!(replica.first_bad_signature(&range), None);
            for b in &range {
                replica
                    .apply_signatures_checked(b)
                    .expect("every stored block verifies");
                txs += b.transactions.len() as u64;
            }
            from += range.len() as u64;
        }
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(
            replica.head().hash,
            head.hash,
            "replay ends on the stored head"
        );
        let bps = blocks as f64 / secs;
        let tps = txs as f64 / secs;
        println!(
            "replay ({name}): blocks={blocks} txs={txs} secs={secs:.1} blocks_per_sec={bps:.0} tx_per_sec={tps:.0} (chain generated in {generated:.1}s)"
        );
        rates.push((tps, bps));
    }
    let (tps, bps) = rates[rates.len() - 1];
    // A ratio only from a cluster figure measured the same day on this machine: the loopback
    // bench's peak, passed in. A constant from an old run made a ratio that meant nothing.
    let cluster = std::env::var("CLUSTER_TPS")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| *v > 0.0);
    match cluster {
        Some(cluster_tps) => {
            println!(
                "against the cluster: {:.2}x its peak canonized tx/s ({cluster_tps:.0}, as given in CLUSTER_TPS)",
                tps / cluster_tps
            );
            if !smoke {
                assert!(tps > cluster_tps, "replay must outrun the cluster it follows");
            }
        }
        None => println!(
            "no ratio: set CLUSTER_TPS to the loopback bench's peak measured on this machine ({bps:.0} blocks/s replayed)"
        ),
    }
}

//! Replay throughput: an external node's work, on one core and on all. A stored chain of
//! canonized, certified blocks (default 100,000 blocks of 4 transfers among 64 accounts, each
//! block certified by 2 of 3 consensus keys) is read back in 128-block ranges and replayed by a
//! `Replica` exactly as an external node does after download: the range's certificates checked
//! in one call, then each block's continuity, proposer signature, transactions root and state
//! root by re-execution, stored with its certificate. Then the same with every transaction's
//! signature recovered too (`external_verify_every_signature`), the cost certificates save.
//!
//! `cargo bench -p canon-benches --bench replay`
//! Knobs (env): REPLAY_BLOCKS (100000), REPLAY_TXS_PER_BLOCK (4); CLUSTER_TPS: the loopback
//! bench's peak measured the same day, for a ratio (the loopback bench itself measures an
//! external node catching up on the cluster's own chain, in the same run as its peak).

use std::sync::Arc;
use std::time::Instant;

use canon_benches::fixture;
use canon_engine::app::ledger::{Payload, Transaction};
use canon_engine::chain::certificate::{majority, Certificate, CommitVote, ServedBlock};
use canon_engine::chain::replica::Replica;
use canon_engine::chain::rules::{build_block, Head, Proposal};
use canon_engine::chain::signatures::{Sequential, TxVerifier};
use canon_engine::chain::store::{block_key, read_blocks};
use canon_engine::codec;
use canon_engine::keys::{derived_key, SecretKey};
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
    // Three consensus nodes, the fixture's leader among them; a majority certifies each block.
    let consensus: Vec<SecretKey> = std::iter::once(f.leader.clone())
        .chain((1..3).map(|i| derived_key("replay-bench/consensus", i)))
        .collect();
    let peers: Vec<_> = consensus.iter().map(|k| k.node_id()).collect();
    let signers = &consensus[..majority(consensus.len())];
    let mut certificates: Vec<Certificate> = Vec::with_capacity(blocks as usize);

    // The stored chain, built as a leader would.
    let started = Instant::now();
    let mut head = Head::of(&f.spec.genesis_header().expect("genesis")).expect("head");
    let mut state = f.spec.genesis_state();
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
                tx.sign(key).expect("sign").to_tx().expect("encode")
            })
            .collect();
        let built = build_block(
            Proposal {
                head: &head,
                state: &state,
                key: &f.leader,
                term: 1,
                slot: None,
                seals_batch: false,
                members: None,
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
        state = built.state.clone();
        head = Head::of(&built.block.header).expect("head");
        certificates.push(Certificate {
            height: h,
            block_hash: head.hash,
            votes: signers
                .iter()
                .map(|k| CommitVote::sign(f.spec.chain_id, h, &head.hash, k))
                .collect(),
        });
        let mut batch = WriteBatch::default();
        batch.put(
            Column::Block,
            block_key(h),
            codec::encode(&built.block).expect("encode"),
        );
        source.write(batch, Durability::Buffered).expect("store");
    }
    let generated = started.elapsed().as_secs_f64();

    // Replay as an external node does: each downloaded range's certificates checked in one
    // call (on one thread, then spread over every core), then each block verified and stored
    // with its certificate; last, with every transaction signature recovered as well.
    let mut rates = Vec::new();
    let modes: [(&str, Arc<dyn TxVerifier>, bool); 3] = [
        ("certified, one core", Arc::new(Sequential), false),
        ("certified, all cores", Arc::new(ParallelVerifier), false),
        (
            "every signature, all cores",
            Arc::new(ParallelVerifier),
            true,
        ),
    ];
    for (name, verifier, every_signature) in modes {
        let target: Arc<dyn Storage> = Arc::new(MemDisk::new());
        let replica = Replica::open(target, &f.spec, peers.clone(), verifier).expect("replica");
        let started = Instant::now();
        let mut txs = 0u64;
        let mut from = 1;
        while from <= blocks {
            let range: Vec<ServedBlock> = read_blocks(&source, from, blocks, 128, 8 << 20)
                .expect("read")
                .into_iter()
                .map(|block| {
                    let certificate = Some(certificates[block.header.height as usize - 1].clone());
                    ServedBlock { block, certificate }
                })
                .collect();
            assert!(replica
                .first_bad_certificate(&range, &replica.members())
                .is_none());
            if every_signature {
                assert_eq!(
                    replica.first_bad_signature(range.iter().map(|s| &s.block)),
                    None
                );
            }
            for s in &range {
                let certificate = s.certificate.as_ref().expect("certified");
                replica
                    .apply_certified(&s.block, certificate, every_signature)
                    .expect("every stored block verifies");
                txs += s.block.transactions.len() as u64;
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
    let bytes = codec::encode(&certificates[0]).expect("encode").len();
    println!(
        "certificate: {bytes} bytes a block ({} signatures of {} consensus keys)",
        certificates[0].votes.len(),
        consensus.len()
    );
    let (tps, bps) = rates[1];
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

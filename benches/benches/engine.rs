//! Engine hot paths: block verification (signatures + execution + state root) and the codec.

use canon_benches::{block_of, fixture, transfers};
use canon_engine::chain::rules::verify_block;
use canon_engine::chain::signatures::{Sequential, Signatures};
use canon_engine::codec;
use canon_node::verifier::ParallelVerifier;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

/// A block applied three ways: as a Raft member applies it (signatures trusted: the leader
/// checked them at admission), and as an external node verifies it on one core and on all.
fn verify(c: &mut Criterion) {
    for (group, signatures) in [
        ("verify_block_trusted", Signatures::Trusted),
        (
            "verify_block_checked_one_core",
            Signatures::Check(&Sequential),
        ),
        (
            "verify_block_checked_all_cores",
            Signatures::Check(&ParallelVerifier),
        ),
    ] {
        let mut g = c.benchmark_group(group);
        for txs in [0usize, 100, 1000] {
            let f = fixture(64);
            let (head, built) = block_of(&f, transfers(&f, txs));
            let peers = vec![f.leader.node_id()];
            let state = f.spec.genesis_state();
            g.throughput(Throughput::Elements(txs.max(1) as u64));
            g.bench_with_input(
                BenchmarkId::from_parameter(txs),
                &built.block,
                |b, block| {
                    b.iter(|| {
                        verify_block(&head, &state, &peers, block, signatures)
                            .map(|e| e.writes.len())
                    })
                },
            );
        }
        g.finish();
    }
}

/// The cost of a block's state is what it touches, not the ledger's size: 1,000 transfers on
/// ledgers of 1,000 and 100,000 accounts (signatures trusted, so only state work is timed).
fn state_cost(c: &mut Criterion) {
    let mut g = c.benchmark_group("apply_1000_transfers_by_ledger_accounts");
    g.sample_size(20);
    for accounts in [1_000u32, 100_000] {
        let f = canon_benches::fixture_with_bystanders(64, accounts);
        let (head, built) = block_of(&f, transfers(&f, 1000));
        let peers = vec![f.leader.node_id()];
        let state = f.spec.genesis_state();
        g.throughput(Throughput::Elements(1000));
        g.bench_with_input(
            BenchmarkId::from_parameter(accounts),
            &built.block,
            |b, block| {
                b.iter(|| {
                    verify_block(&head, &state, &peers, block, Signatures::Trusted)
                        .map(|e| e.writes.len())
                })
            },
        );
    }
    g.finish();
}

/// One core's signature recoveries per second: the ceiling the throughput target is set
/// against (times the cores).
fn recover(c: &mut Criterion) {
    let f = fixture(1);
    let txs = transfers(&f, 1);
    let signed = match canon_engine::app::ledger::SignedTransaction::from_tx(&txs[0]) {
        Ok(s) => s,
        Err(e) => panic!("fixture transaction: {e}"),
    };
    let mut g = c.benchmark_group("recover_one_signature");
    g.throughput(Throughput::Elements(1));
    g.bench_function("libsecp256k1", |b| b.iter(|| signed.signature_valid()));
    // What admission pays per transaction through the application seam: decoding, the
    // canonical-encoding check and the recovery.
    g.bench_function("ledger_app_verify", |b| {
        b.iter(|| f.spec.app.verify(&txs[0]).is_ok())
    });
    g.finish();
}

fn codec_roundtrip(c: &mut Criterion) {
    let f = fixture(64);
    let (_, built) = block_of(&f, transfers(&f, 1000));
    let bytes = codec::encode(&built.block).unwrap_or_default();
    let mut g = c.benchmark_group("codec_block_1000tx");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("encode", |b| {
        b.iter(|| codec::encode(&built.block).map(|v| v.len()))
    });
    g.bench_function("decode", |b| {
        b.iter(|| {
            codec::decode::<canon_engine::chain::block::Block>(&bytes).map(|b| b.transactions.len())
        })
    });
    g.finish();
}

/// What one batch costs in attestation: each node signs its commitment once as it seals it;
/// the batcher verifies every peer's signature and orders them for the contract.
fn attestation(c: &mut Criterion) {
    use canon_engine::settlement::batch::{
        block_hashes_hash, ordered_signatures, Attestation, BatchHeader,
    };
    use canon_engine::B256;
    let keys: Vec<_> = (0..3)
        .map(|i| canon_engine::keys::derived_key("bench-attest", i))
        .collect();
    let hashes: Vec<B256> = (0..10u8).map(B256::repeat_byte).collect();
    let header = BatchHeader {
        number: 7,
        previous: B256::repeat_byte(1),
        first_height: 61,
        last_height: 70,
        state_root: B256::repeat_byte(2),
        block_hashes_hash: block_hashes_hash(&hashes),
        next_attesters: Vec::new(),
    };
    let atts: Vec<Attestation> = keys.iter().map(|k| Attestation::sign(&header, k)).collect();
    let mut g = c.benchmark_group("attestation_per_batch");
    g.bench_function("commitment_of_10_blocks", |b| {
        b.iter(|| block_hashes_hash(&hashes) ^ header.commitment())
    });
    g.bench_function("sign_one_node", |b| {
        b.iter(|| Attestation::sign(&header, &keys[0]).signature.0[0])
    });
    g.bench_function("verify_and_order_3_nodes", |b| {
        b.iter(|| ordered_signatures(&header, &atts).len())
    });
    g.finish();
}

criterion_group!(
    benches,
    recover,
    verify,
    state_cost,
    codec_roundtrip,
    attestation
);
criterion_main!(benches);

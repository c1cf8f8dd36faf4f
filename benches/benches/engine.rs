//! Engine hot paths: block verification (signatures + execution + state root) and the codec.

use canon_benches::{block_of, fixture, transfers};
use canon_engine::chain::verify_block;
use canon_engine::codec;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn verify(c: &mut Criterion) {
    let mut g = c.benchmark_group("verify_block");
    for txs in [0usize, 100, 1000] {
        let f = fixture(64);
        let (head, built) = block_of(&f, transfers(&f, txs));
        let peers = vec![f.leader.node_id()];
        let ledger = f.spec.genesis_ledger();
        g.throughput(Throughput::Elements(txs.max(1) as u64));
        g.bench_with_input(
            BenchmarkId::from_parameter(txs),
            &built.block,
            |b, block| {
                b.iter(|| verify_block(&head, &ledger, &peers, block).map(|e| e.touched.len()))
            },
        );
    }
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
        b.iter(|| codec::decode::<canon_engine::block::Block>(&bytes).map(|b| b.transactions.len()))
    });
    g.finish();
}

criterion_group!(benches, verify, codec_roundtrip);
criterion_main!(benches);

//! The wire and storage format as a whole: golden vectors that change only when the format
//! changes on purpose, round trips, and decoders fed hostile bytes. An integration test, since
//! it spans the codec and every type it carries (blocks, transactions, requests, answers).

use alloy_primitives::{keccak256, Address, B256};
use canon_engine::app::ledger::{LedgerApp, Payload, SignedTransaction, Transaction};
use canon_engine::app::App;
use canon_engine::chain::block::{Block, BlockHeader, ChainSpec};
use canon_engine::codec::{decode, encode, CodecError};
use canon_engine::keys::SecretKey;
use canon_engine::net::wire::{Request, Response};
use proptest::prelude::*;

fn key(n: u8) -> SecretKey {
    SecretKey::from_bytes([n; 32]).unwrap()
}

fn sample_tx() -> SignedTransaction {
    Transaction {
        sender: key(1).address(),
        nonce: 7,
        payload: Payload::Transfer {
            to: Address::repeat_byte(0x22),
            amount: 1_000,
        },
    }
    .sign(&key(1))
    .unwrap()
}

fn sample_block() -> Block {
    let header = BlockHeader {
        height: 42,
        parent_hash: B256::repeat_byte(0xab),
        timestamp_ms: 1_700_000_000_000,
        transactions_root: B256::repeat_byte(0x01),
        state_root: B256::repeat_byte(0x02),
        proposer: key(3).node_id(),
        term: 9,
        slot: None,
        seals_batch: false,
        members: Some(vec![key(3).node_id(), key(4).node_id()]),
    };
    Block::seal(header, vec![sample_tx().to_tx().unwrap()], &key(3)).unwrap()
}

/// Golden vectors: these change only when the wire or storage format changes on purpose.
/// ECDSA signatures here are RFC 6979 deterministic, so the bytes are stable.
#[test]
fn golden_transaction_encoding() {
    let tx = sample_tx();
    let unsigned = encode(&tx.tx).unwrap();
    // sender (len 20 + bytes), nonce 7, variant 0 (Transfer), to, amount 1000 as a u16 varint.
    assert_eq!(
        hex::encode(&unsigned),
        "141a642f0e3c3af545e7acbd38b07251b3990914f10700142222222222222222222222222222222222222222fbe803"
    );
    assert_eq!(
        keccak256(encode(&tx).unwrap()).to_string(),
        GOLDEN_SIGNED_TX_HASH,
    );
}

#[test]
fn golden_block_encoding() {
    assert_eq!(
        keccak256(encode(&sample_block()).unwrap()).to_string(),
        GOLDEN_BLOCK_HASH
    );
    let spec = ChainSpec {
        chain_id: 7,
        app: App::new(LedgerApp::new(vec![(Address::repeat_byte(0x33), 5)])),
        blocks_per_batch: canon_engine::chain::block::DEFAULT_BLOCKS_PER_BATCH,
    };
    assert_eq!(
        spec.genesis_header().unwrap().hash().unwrap().to_string(),
        GOLDEN_GENESIS_HASH
    );
}

const GOLDEN_SIGNED_TX_HASH: &str =
    "0x96da2f907a3f6ce5d6b04528c90d182a53954e4bc6eb83a7d1b571c45605020f";
const GOLDEN_BLOCK_HASH: &str =
    "0xa1826a55ac51b4bf72f57d3cd7f9061efd656840039a5de9b52215c25df29dd3";
const GOLDEN_GENESIS_HASH: &str =
    "0xc8259eadd928e1fb33348afd0a75f9670bc5e0ee525712f786377a2c06a33f63";

#[test]
fn round_trips() {
    let b = sample_block();
    assert_eq!(decode::<Block>(&encode(&b).unwrap()).unwrap(), b);
}

#[test]
fn trailing_bytes_are_rejected() {
    let mut bytes = encode(&sample_block()).unwrap();
    bytes.push(0);
    assert!(matches!(
        decode::<Block>(&bytes),
        Err(CodecError::Trailing(1))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode::<Block>(&bytes);
        let _ = decode::<SignedTransaction>(&bytes);
        let _ = decode::<Request>(&bytes);
        let _ = decode::<Response>(&bytes);
    }

    #[test]
    fn mutated_blocks_never_panic(pos in 0usize..4096, byte in any::<u8>()) {
        let mut bytes = encode(&sample_block()).unwrap();
        let i = pos % bytes.len();
        bytes[i] = byte;
        if let Ok(b) = decode::<Block>(&bytes) {
            // bincode accepts non-minimal varints, so bytes may differ; hashes are always
            // taken over the canonical re-encoding, which must round-trip to the same value.
            prop_assert_eq!(decode::<Block>(&encode(&b).unwrap()).unwrap(), b);
        }
    }
}

//! Fixtures shared by canon's benches: a funded ledger and signed transfer blocks.

use alloy_primitives::Address;
use canon_engine::app::ledger::{LedgerApp, Payload, Transaction};
use canon_engine::app::{App, Tx};
use canon_engine::chain::block::ChainSpec;
use canon_engine::chain::rules::{build_block, Built, Head, Proposal};
use canon_engine::keys::SecretKey;

pub fn key(i: u32) -> SecretKey {
    let mut b = [0u8; 32];
    b[28..].copy_from_slice(&(i + 1).to_be_bytes());
    b[0] = 1;
    match SecretKey::from_bytes(b) {
        Ok(k) => k,
        Err(e) => panic!("fixture key {i}: {e}"),
    }
}

pub struct Fixture {
    pub spec: ChainSpec,
    /// The ledger's genesis allocation (what `spec`'s application was made from).
    pub alloc: Vec<(Address, u64)>,
    pub accounts: Vec<SecretKey>,
    pub leader: SecretKey,
}

pub fn fixture(accounts: u32) -> Fixture {
    let accounts: Vec<SecretKey> = (0..accounts).map(key).collect();
    let alloc: Vec<(Address, u64)> = accounts
        .iter()
        .map(|a| (a.address(), 1_000_000_000))
        .collect();
    Fixture {
        spec: spec_of(alloc.clone()),
        alloc,
        accounts,
        leader: key(1_000_000),
    }
}

fn spec_of(alloc: Vec<(Address, u64)>) -> ChainSpec {
    ChainSpec {
        chain_id: 1,
        app: App::new(LedgerApp::new(alloc)),
        blocks_per_batch: canon_engine::chain::block::DEFAULT_BLOCKS_PER_BATCH,
    }
}

/// [`fixture`] plus `bystanders` funded accounts no transaction touches (ledger size).
pub fn fixture_with_bystanders(accounts: u32, bystanders: u32) -> Fixture {
    let mut f = fixture(accounts);
    f.alloc.extend((0..bystanders).map(|i| {
        let mut a = [0u8; 20];
        a[0] = 0xbb;
        a[16..].copy_from_slice(&i.to_be_bytes());
        (Address::from(a), 1)
    }));
    f.spec = spec_of(f.alloc.clone());
    f
}

/// `n` transfers, one per account (round robin), all valid on genesis.
pub fn transfers(f: &Fixture, n: usize) -> Vec<Tx> {
    (0..n)
        .map(|i| {
            let from = &f.accounts[i % f.accounts.len()];
            let tx = Transaction {
                sender: from.address(),
                nonce: (i / f.accounts.len()) as u64,
                payload: Payload::Transfer {
                    to: Address::repeat_byte(7),
                    amount: 1,
                },
            };
            match tx.sign(from).and_then(|t| t.to_tx()) {
                Ok(t) => t,
                Err(e) => panic!("fixture tx: {e}"),
            }
        })
        .collect()
}

pub fn block_of(f: &Fixture, txs: Vec<Tx>) -> (Head, Built) {
    let head = match f.spec.genesis_header().and_then(|h| Head::of(&h)) {
        Ok(h) => h,
        Err(e) => panic!("genesis: {e}"),
    };
    let state = f.spec.genesis_state();
    let built = build_block(
        Proposal {
            head: &head,
            state: &state,
            key: &f.leader,
            term: 1,
            slot: None,
            seals_batch: false,
            members: None,
            timestamp_ms: 1,
            max_transactions: usize::MAX,
        },
        txs,
    );
    match built {
        Ok(b) => (head, b),
        Err(e) => panic!("build: {e}"),
    }
}

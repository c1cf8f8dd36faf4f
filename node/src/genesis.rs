//! The chain a node starts from: chain id and funded accounts. The default is a dev chain whose
//! funded accounts have public keys (derived from a fixed label), so a devnet, the tests and
//! the load generator can sign transactions without any setup.

use alloy_primitives::Address;
use canon_engine::app::ledger::LedgerApp;
use canon_engine::app::App;
use canon_engine::chain::block::ChainSpec;
use canon_engine::keys::SecretKey;

pub const DEV_CHAIN_ID: u64 = 270;
pub const DEV_ACCOUNTS: usize = 64;
pub const DEV_BALANCE: u64 = 1_000_000_000_000;

/// The `i`th public dev account. Never fund these on a chain that matters.
pub fn dev_account_key(i: usize) -> SecretKey {
    canon_engine::keys::derived_key("canon/dev-account", i)
}

pub fn dev_alloc() -> Vec<String> {
    (0..DEV_ACCOUNTS)
        .map(|i| format!("{}:{DEV_BALANCE}", dev_account_key(i).address()))
        .collect()
}

/// Parses `0x<address>:<balance>` entries; the message names the entry at fault.
pub fn chain_spec(
    chain_id: u64,
    alloc: &[String],
    blocks_per_batch: u64,
) -> Result<ChainSpec, String> {
    let mut genesis_alloc = Vec::with_capacity(alloc.len());
    for (i, entry) in alloc.iter().enumerate() {
        let (addr, balance) = entry
            .split_once(':')
            .ok_or_else(|| format!("entry {i} ({entry:?}) is not <address>:<balance>"))?;
        let addr: Address = addr
            .trim()
            .parse()
            .map_err(|e| format!("entry {i} ({entry:?}): address: {e}"))?;
        let balance: u64 = balance
            .trim()
            .parse()
            .map_err(|e| format!("entry {i} ({entry:?}): balance: {e}"))?;
        if genesis_alloc.iter().any(|(a, _)| *a == addr) {
            return Err(format!("entry {i} ({entry:?}): address listed twice"));
        }
        genesis_alloc.push((addr, balance));
    }
    Ok(ChainSpec {
        chain_id,
        app: App::new(LedgerApp::new(genesis_alloc)),
        blocks_per_batch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_alloc_round_trips_through_the_parser() {
        let spec = chain_spec(DEV_CHAIN_ID, &dev_alloc(), 10).expect("dev alloc parses");
        let alloc = &spec.app.downcast_ref::<LedgerApp>().unwrap().genesis_alloc;
        assert_eq!(alloc.len(), DEV_ACCOUNTS);
        assert_eq!(alloc[3].0, dev_account_key(3).address());
        assert_eq!(alloc[3].1, DEV_BALANCE);
    }

    #[test]
    fn bad_entries_are_named() {
        let e = chain_spec(1, &["0x12:5".into()], 10).unwrap_err();
        assert!(e.contains("entry 0") && e.contains("address"), "{e}");
        let a = dev_account_key(0).address();
        let e = chain_spec(1, &[format!("{a}:x")], 10).unwrap_err();
        assert!(e.contains("balance"), "{e}");
        let e = chain_spec(1, &[format!("{a}:1"), format!("{a}:2")], 10).unwrap_err();
        assert!(e.contains("twice"), "{e}");
    }
}

//! The chain a node starts from: chain id, the application it runs and, for the account ledger,
//! the funded accounts. The default is a ledger dev chain whose funded accounts have public keys
//! (derived from a fixed label), so a devnet, the tests and the load generator can sign
//! transactions without any setup.

use alloy_primitives::Address;
use canon_engine::app::kv::KvApp;
use canon_engine::app::ledger::LedgerApp;
use canon_engine::app::App;
use canon_engine::chain::block::ChainSpec;
use canon_engine::keys::SecretKey;

pub const DEV_CHAIN_ID: u64 = 270;
pub const DEV_ACCOUNTS: usize = 64;
pub const DEV_BALANCE: u64 = 1_000_000_000_000;

/// The application a chain runs (the `application` setting). A rule of the chain: every node of
/// one chain runs the same one, or their state roots never agree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Application {
    /// Accounts, balances and signed transfers (`genesis_alloc` funds the accounts).
    #[default]
    Ledger,
    /// A replicated key-value store: put, delete, compare-and-set, get and range reads. Its
    /// clients authenticate to the node (`rpc_auth_token_file`), not per transaction.
    Kv,
}

impl Application {
    pub fn name(self) -> &'static str {
        match self {
            Application::Ledger => "ledger",
            Application::Kv => "kv",
        }
    }
}

impl std::str::FromStr for Application {
    type Err = String;

    fn from_str(s: &str) -> Result<Application, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ledger" => Ok(Application::Ledger),
            "kv" => Ok(Application::Kv),
            other => Err(format!("{other:?} is not an application: ledger or kv")),
        }
    }
}

/// The `i`th public dev account. Never fund these on a chain that matters.
pub fn dev_account_key(i: usize) -> SecretKey {
    canon_engine::keys::derived_key("canon/dev-account", i)
}

/// The default genesis: every dev account funded. Derived once per process: deriving 64 keys
/// took 10-18 ms, and the settings' defaults (read whenever a configuration is layered) hold it.
pub fn dev_alloc() -> Vec<String> {
    static ALLOC: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    ALLOC
        .get_or_init(|| {
            (0..DEV_ACCOUNTS)
                .map(|i| format!("{}:{DEV_BALANCE}", dev_account_key(i).address()))
                .collect()
        })
        .clone()
}

/// The chain spec of `application`. A ledger's `alloc` holds `0x<address>:<balance>` entries (the
/// message names the entry at fault); a key-value chain starts empty and ignores it.
pub fn chain_spec(
    application: Application,
    chain_id: u64,
    alloc: &[String],
    blocks_per_batch: u64,
) -> Result<ChainSpec, String> {
    let app = match application {
        Application::Ledger => App::new(LedgerApp::new(parse_alloc(alloc)?)),
        Application::Kv => App::new(KvApp),
    };
    Ok(ChainSpec {
        chain_id,
        app,
        blocks_per_batch,
    })
}

fn parse_alloc(alloc: &[String]) -> Result<Vec<(Address, u64)>, String> {
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
    Ok(genesis_alloc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_alloc_round_trips_through_the_parser() {
        let spec = chain_spec(Application::Ledger, DEV_CHAIN_ID, &dev_alloc(), 10)
            .expect("dev alloc parses");
        let alloc = &spec.app.downcast_ref::<LedgerApp>().unwrap().genesis_alloc;
        assert_eq!(alloc.len(), DEV_ACCOUNTS);
        assert_eq!(alloc[3].0, dev_account_key(3).address());
        assert_eq!(alloc[3].1, DEV_BALANCE);
    }

    #[test]
    fn bad_entries_are_named() {
        let e = chain_spec(Application::Ledger, 1, &["0x12:5".into()], 10).unwrap_err();
        assert!(e.contains("entry 0") && e.contains("address"), "{e}");
        let a = dev_account_key(0).address();
        let e = chain_spec(Application::Ledger, 1, &[format!("{a}:x")], 10).unwrap_err();
        assert!(e.contains("balance"), "{e}");
        let e = chain_spec(
            Application::Ledger,
            1,
            &[format!("{a}:1"), format!("{a}:2")],
            10,
        )
        .unwrap_err();
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn a_kv_chain_starts_empty_whatever_the_alloc() {
        let spec = chain_spec(Application::Kv, 7, &["not an entry".into()], 10).unwrap();
        assert_eq!(spec.app.kind(), "kv");
        assert_ne!(
            spec.genesis_header().unwrap().hash().unwrap(),
            chain_spec(Application::Ledger, 7, &dev_alloc(), 10)
                .unwrap()
                .genesis_header()
                .unwrap()
                .hash()
                .unwrap(),
            "the dev ledger and a key-value chain of one chain id must not share a genesis"
        );
        assert_eq!("KV".parse::<Application>(), Ok(Application::Kv));
        let e = "etcd".parse::<Application>().unwrap_err();
        assert!(e.contains("ledger or kv"), "{e}");
    }
}

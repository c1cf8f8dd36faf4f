//! The L1 side: canon's settlement contract (`contracts/Settlement.sol`, its compiled artifact
//! embedded by `sol!`) on a real chain (anvil in development) through alloy's provider and local
//! signer. Deploys it, reads its head, submits attested batches, and finds the anvil binary.

use std::path::PathBuf;
use std::time::Duration;

use alloy::network::EthereumWallet;
use alloy::primitives::{Address, Bytes};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::signers::local::PrivateKeySigner;
use canon_engine::keys::SecretKey;

use crate::settlement_events::{self, SettlementEvent};
use canon_engine::policy::batcher::SubmitOutcome;
use canon_engine::settlement::batch::{
    attesters_hash, ordered_signatures, Attestation, BatchHeader,
};

// The generated call builders take one argument per contract parameter.
#[allow(clippy::too_many_arguments)]
mod bindings {
    alloy::sol!(
        #[sol(rpc)]
        #[derive(Debug)]
        Settlement,
        "../contracts/Settlement.json"
    );
}
use bindings::Settlement;

/// How long a submitted transaction may wait for its receipt before the caller retries (a
/// dropped transaction, or an L1 that stopped mining).
pub const RECEIPT_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a receipt is looked for.
pub const RECEIPT_POLL_INTERVAL: Duration = Duration::from_millis(50);

/// anvil's first prefunded development account (public knowledge; never for a real chain).
pub const ANVIL_DEV_KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

/// anvil's first four public development accounts (its default mnemonic), for devnets whose
/// batchers each pay from their own account: public, for local use only.
pub const ANVIL_DEV_KEYS: [&str; 4] = [
    ANVIL_DEV_KEY,
    "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
];

#[derive(Debug, thiserror::Error)]
pub enum L1Error {
    #[error("L1 at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The contract refused the call; `reason` is its decoded error.
    #[error("the settlement contract refused: {reason}")]
    Rejected { reason: String },
    #[error("L1 transaction {tx} reverted")]
    Reverted { tx: String },
    #[error("{0}")]
    Other(String),
}

pub use canon_engine::settlement::l1::L1Head;

/// A connection to L1 with a signing account.
#[derive(Clone)]
pub struct L1 {
    url: String,
    provider: DynProvider,
    account: Address,
}

impl L1 {
    /// `key`: the account that pays for transactions.
    pub fn connect(url: &str, key: &SecretKey) -> Result<L1, L1Error> {
        let signer = PrivateKeySigner::from_slice(&key.to_bytes())
            .map_err(|e| L1Error::Other(format!("the L1 key: {e}")))?;
        let account = signer.address();
        let parsed = url.parse().map_err(|e| L1Error::Unreachable {
            url: url.into(),
            reason: format!("not a URL: {e}"),
        })?;
        // The nonce is read from L1 for every transaction rather than cached: a cached nonce is
        // spent even when gas estimation refuses the call, and goes stale when another client
        // (a second batcher) or an anvil restart moves the account on; either leaves the next
        // transaction waiting forever behind a gap.
        let provider = ProviderBuilder::new()
            .disable_recommended_fillers()
            .with_gas_estimation()
            .with_simple_nonce_management()
            .fetch_chain_id()
            .wallet(EthereumWallet::from(signer))
            .connect_client(
                // Receipts are polled for; at alloy's 250 ms a receipt came up to a whole
                // anvil block after the batch landed, and the next batch waited for it.
                alloy::rpc::client::RpcClient::new_http(parsed)
                    .with_poll_interval(RECEIPT_POLL_INTERVAL),
            )
            .erased();
        Ok(L1 {
            url: url.into(),
            provider,
            account,
        })
    }

    fn unreachable(&self, e: impl std::fmt::Display) -> L1Error {
        L1Error::Unreachable {
            url: self.url.clone(),
            reason: e.to_string(),
        }
    }

    /// Waits up to `bound` for L1 to answer.
    pub async fn wait_ready(&self, bound: Duration) -> Result<u64, L1Error> {
        let start = std::time::Instant::now();
        loop {
            match self.provider.get_block_number().await {
                Ok(n) => return Ok(n),
                Err(e) if start.elapsed() >= bound => return Err(self.unreachable(e)),
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Deploys the settlement contract registering `validators` (the consensus nodes'
    /// addresses); returns its address.
    pub async fn deploy(&self, validators: Vec<Address>) -> Result<Address, L1Error> {
        let c = Settlement::deploy(&self.provider, validators)
            .await
            .map_err(|e| decode(e, &self.url))?;
        Ok(*c.address())
    }

    pub async fn head(&self, settlement: Address) -> Result<L1Head, L1Error> {
        let c = Settlement::new(settlement, &self.provider);
        let h = c.head().call().await.map_err(|e| decode(e, &self.url))?;
        let pending = self
            .provider
            .get_transaction_count(self.account)
            .pending()
            .await
            .map_err(|e| self.unreachable(e))?;
        let mined = self
            .provider
            .get_transaction_count(self.account)
            .latest()
            .await
            .map_err(|e| self.unreachable(e))?;
        Ok(L1Head {
            batch_number: h.batchNumber,
            height: h.height,
            state_root: h.stateRoot,
            commitment: h.lastCommit,
            epoch: h.epoch,
            in_flight: pending.saturating_sub(mined),
        })
    }

    /// Every event the contract emitted, in the order L1 took them (decoded by
    /// [`crate::settlement_events`]; a log that does not decode is an error naming it).
    pub async fn events(&self, settlement: Address) -> Result<Vec<SettlementEvent>, L1Error> {
        let filter = alloy::rpc::types::Filter::new()
            .address(settlement)
            .from_block(0u64);
        let logs = self
            .provider
            .get_logs(&filter)
            .await
            .map_err(|e| self.unreachable(e))?;
        logs.iter()
            .map(|log| {
                settlement_events::decode(log.topics(), &log.data().data).map_err(|e| {
                    L1Error::Rejected {
                        reason: format!(
                            "the settlement contract at {settlement} logged what canon cannot read: {e}"
                        ),
                    }
                })
            })
            .collect()
    }

    /// Every batch the contract committed, in the order L1 took them: (number, first height,
    /// last height, epoch), from its `BatchCommitted` events.
    pub async fn committed(
        &self,
        settlement: Address,
    ) -> Result<Vec<(u64, u64, u64, u64)>, L1Error> {
        Ok(self
            .events(settlement)
            .await?
            .into_iter()
            .filter_map(|e| match e {
                SettlementEvent::BatchCommitted {
                    number,
                    first_height,
                    last_height,
                    epoch,
                    ..
                } => Some((number, first_height, last_height, epoch)),
                SettlementEvent::ValidatorsChanged { .. } => None,
            })
            .collect())
    }

    /// The attester set the contract holds now: the deployment's, or the last one a committed
    /// batch named.
    pub async fn validator_set(&self, settlement: Address) -> Result<Vec<Address>, L1Error> {
        let c = Settlement::new(settlement, &self.provider);
        c.validatorSet()
            .call()
            .await
            .map_err(|e| decode(e, &self.url))
    }

    /// The commitment the contract computes for `header` (to check ours against it).
    pub async fn commitment(
        &self,
        settlement: Address,
        header: &BatchHeader,
    ) -> Result<alloy::primitives::B256, L1Error> {
        let c = Settlement::new(settlement, &self.provider);
        c.commitment(
            header.number,
            header.previous,
            header.first_height,
            header.last_height,
            header.state_root,
            header.block_hashes_hash,
            attesters_hash(&header.next_attesters),
        )
        .call()
        .await
        .map_err(|e| decode(e, &self.url))
    }

    /// Submits `header` with `attestations` (any order; invalid ones and duplicates are left
    /// out) at `epoch`, and waits for the receipt.
    pub async fn commit_batch(
        &self,
        settlement: Address,
        header: &BatchHeader,
        attestations: &[Attestation],
        epoch: u64,
    ) -> Result<(), L1Error> {
        let sigs = ordered_signatures(header, attestations)
            .into_iter()
            .map(|s| Bytes::copy_from_slice(&s.0))
            .collect();
        self.commit_raw(settlement, header, sigs, epoch).await
    }

    /// [`L1::commit_batch`] with the signatures exactly as given (tests use it to send what a
    /// faulty batcher would).
    pub async fn commit_raw(
        &self,
        settlement: Address,
        header: &BatchHeader,
        signatures: Vec<Bytes>,
        epoch: u64,
    ) -> Result<(), L1Error> {
        let c = Settlement::new(settlement, &self.provider);
        let pending = c
            .commitBatch(
                header.number,
                header.previous,
                header.first_height,
                header.last_height,
                header.state_root,
                header.block_hashes_hash,
                header.next_attesters.clone(),
                epoch,
                signatures,
            )
            .send()
            .await
            .map_err(|e| decode(e, &self.url))?;
        let receipt = pending
            .with_timeout(Some(RECEIPT_TIMEOUT))
            .get_receipt()
            .await
            .map_err(|e| self.unreachable(e))?;
        if receipt.status() {
            Ok(())
        } else {
            Err(L1Error::Reverted {
                tx: receipt.transaction_hash.to_string(),
            })
        }
    }
}

/// The batcher's view of the settlement contract at `address`: the engine's L1 seam.
pub struct SettlementL1 {
    pub l1: L1,
    pub address: Address,
}

impl canon_engine::settlement::l1::L1 for SettlementL1 {
    fn head(&self) -> canon_engine::net::transport::BoxFuture<'_, Result<L1Head, String>> {
        Box::pin(async move { self.l1.head(self.address).await.map_err(|e| e.to_string()) })
    }

    fn submit(
        &self,
        header: BatchHeader,
        signatures: Vec<canon_engine::ids::Sig65>,
        epoch: u64,
    ) -> canon_engine::net::transport::BoxFuture<'_, SubmitOutcome> {
        Box::pin(async move {
            let sigs = signatures
                .into_iter()
                .map(|s| Bytes::copy_from_slice(&s.0))
                .collect();
            match self.l1.commit_raw(self.address, &header, sigs, epoch).await {
                Ok(()) => SubmitOutcome::Committed,
                Err(e @ (L1Error::Rejected { .. } | L1Error::Reverted { .. })) => {
                    SubmitOutcome::Refused {
                        reason: e.to_string(),
                    }
                }
                Err(e) => SubmitOutcome::Unknown {
                    reason: e.to_string(),
                },
            }
        })
    }
}

/// A contract call's error: the contract's own error decoded by name when it refused.
fn decode(e: alloy::contract::Error, url: &str) -> L1Error {
    if let Some(err) = e.as_decoded_interface_error::<Settlement::SettlementErrors>() {
        return L1Error::Rejected {
            reason: format!("{err:?}"),
        };
    }
    match e {
        alloy::contract::Error::TransportError(t) if t.is_error_resp() => L1Error::Rejected {
            reason: t.to_string(),
        },
        alloy::contract::Error::TransportError(t) => L1Error::Unreachable {
            url: url.into(),
            reason: t.to_string(),
        },
        other => L1Error::Other(other.to_string()),
    }
}

/// The anvil binary the npm package `@foundry-rs/anvil` installs: `$CANON_ANVIL` if set, else the
/// native binary under npm's global root (started directly, so a killed test leaves no node
/// wrapper behind).
pub fn find_anvil() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("CANON_ANVIL") {
        return Ok(PathBuf::from(p));
    }
    let root = std::process::Command::new("npm")
        .args(["root", "-g"])
        .output()
        .map_err(|e| format!("cannot run npm to find anvil: {e}"))?;
    let root = PathBuf::from(String::from_utf8_lossy(&root.stdout).trim());
    let candidates = [
        root.join("@foundry-rs/anvil/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"),
        root.join("@foundry-rs/anvil-linux-amd64/bin/anvil"),
    ];
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        format!(
            "anvil is not installed (looked under {}): run `npm install -g @foundry-rs/anvil@1.7.1`, \
             or set CANON_ANVIL to its binary",
            root.display()
        )
    })
}

/// An anvil child process on loopback, killed when dropped.
pub struct AnvilProcess {
    child: std::process::Child,
    pub url: String,
    pub port: u16,
}

impl AnvilProcess {
    /// Starts anvil on `127.0.0.1:port` (0: a free port), mining every `block_time_secs` if
    /// given (else on each transaction), its output appended to `log` if given.
    pub fn start(
        port: u16,
        block_time_secs: Option<f64>,
        log: Option<&std::path::Path>,
    ) -> Result<AnvilProcess, String> {
        let bin = find_anvil()?;
        let port = if port == 0 { free_port()? } else { port };
        let mut cmd = std::process::Command::new(&bin);
        cmd.args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .stdin(std::process::Stdio::null());
        if let Some(bt) = block_time_secs {
            cmd.args(["--block-time", &bt.to_string()]);
        }
        match log {
            Some(path) => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                let g = f
                    .try_clone()
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                cmd.stdout(f).stderr(g);
            }
            None => {
                cmd.stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null());
            }
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        Ok(AnvilProcess {
            child,
            url: format!("http://127.0.0.1:{port}"),
            port,
        })
    }
}

impl Drop for AnvilProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nothing listens on right now.
fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free loopback port: {e}"))
}

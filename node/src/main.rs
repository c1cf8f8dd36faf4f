//! `canon-node`: the production node (built with `--features production`), a local devnet, and
//! the identity and config tooling.

use std::path::PathBuf;
use std::process::ExitCode;

use canon_engine::keys::SecretKey;
use canon_node::genesis::Application;
use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: see the dependency's note in `Cargo.toml`.
#[cfg(feature = "production")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// No transparent huge pages for this process (and the cluster processes `devnet` starts,
/// which inherit it). mimalloc asks for them, and each time it hands memory back and takes it
/// again the kernel zeroes whole 2 MiB pages: at the key-value peak that was a quarter of every
/// node's time (docs/benchmarks.md). Where the kernel refuses, the node is only slower.
#[cfg(feature = "production")]
fn no_huge_pages() {
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        eprintln!("note: transparent huge pages stay on ({e}); the node runs, somewhat slower");
    }
}

#[cfg(not(feature = "production"))]
fn no_huge_pages() {}

#[derive(Subcommand)]
enum GuardAction {
    /// Print the guard of the identity (validator_secret_key from the config) as JSON.
    Export {
        #[arg(long = "config")]
        configs: Vec<PathBuf>,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Raise this machine's guard to what a JSON export says was signed (never lowers it).
    Import {
        #[arg(long = "config")]
        configs: Vec<PathBuf>,
        /// The JSON file `guard export` wrote.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum L1Action {
    /// Deploy the settlement contract (contracts/Settlement.sol), registering the consensus
    /// nodes whose signatures attest batches; prints `l1_settlement_address: 0x...`.
    Deploy {
        /// YAML config: general_l1_rpc_url and consensus_peer_ids come from it (and the
        /// environment) unless given here.
        #[arg(long = "config")]
        configs: Vec<PathBuf>,
        /// The L1 JSON-RPC endpoint.
        #[arg(long)]
        rpc_url: Option<String>,
        /// A consensus node id to register (repeat); the config's consensus_peer_ids if none.
        #[arg(long = "validator")]
        validators: Vec<String>,
        /// 32-byte hex key of the account that pays for the deployment; anvil's first
        /// development account if omitted (fine for anvil, never for a real chain).
        #[arg(long, env = "L1_DEPLOYER_KEY", hide_env_values = true)]
        deployer_key: Option<String>,
    },
    /// Print the settlement contract's head: last batch, last height, state root, commitment,
    /// epoch.
    Head {
        #[arg(long = "config")]
        configs: Vec<PathBuf>,
        #[arg(long)]
        rpc_url: Option<String>,
        /// The contract's address (what `l1 deploy` printed).
        #[arg(long)]
        address: String,
    },
}

#[derive(Parser)]
#[command(
    name = "canon-node",
    about = "canon consensus node",
    args_conflicts_with_subcommands = true,
    long_about = "canon consensus node.\n\n\
With no command, runs the node: settings come from YAML files (--config, repeatable, later \
files win), then environment variables with the seed's names in upper or lower case \
(NETWORK_SECRET_KEY, CONSENSUS_PEER_IDS__JSON, GENERAL_ROCKS_DB_PATH, ...; `__JSON` for JSON \
values). With nothing configured it runs a single-node dev chain in ./db/node on the default \
ports (RPC 3050, p2p 3060, status 3071, Prometheus 3312). SIGINT or SIGTERM stops it cleanly.\n\n\
With consensus_enabled=false a main node runs single-sequencer mode: one signing identity \
(validator_secret_key) shared by a group of machines, the one at redundancy_level 0 signing a \
block every round and hot standbys at levels 1, 2, ... taking over in that order \
(REDUNDANCY_LEVEL, or --prefs prefs.toml with [Preferences] RedundancyLevel).\n\n\
`devnet` starts a local cluster of such nodes as child processes with a live status table \
(--standbys K: a single-sequencer group instead of Raft). `guard` exports or imports an \
identity's double-sign guard. `l1 deploy` deploys the L1 settlement contract and `l1 head` \
reads it. `id` derives a node's Raft id and enode URL from its network secret key. `check-config` \
prints the effective settings, or the key at fault."
)]
struct Cli {
    /// YAML config file; repeat to layer (later files override earlier ones).
    #[arg(long = "config", global = false)]
    configs: Vec<PathBuf>,
    /// MultiversX-style prefs.toml: `[Preferences] RedundancyLevel = N` sets redundancy_level.
    #[arg(long)]
    prefs: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the node (the default when no command is given).
    Run {
        /// YAML config file; repeat to layer (later files override earlier ones).
        #[arg(long = "config")]
        configs: Vec<PathBuf>,
        /// MultiversX-style prefs.toml: `[Preferences] RedundancyLevel = N` sets
        /// redundancy_level (the environment still overrides it).
        #[arg(long)]
        prefs: Option<PathBuf>,
    },
    /// The L1 settlement contract: deploy it, or read its head.
    L1 {
        #[command(subcommand)]
        action: L1Action,
    },
    /// Export or import a signing identity's double-sign guard (EIP-3076-style JSON), to move
    /// the identity between machines. Refused while a node runs on the database.
    Guard {
        #[command(subcommand)]
        action: GuardAction,
    },
    /// Start a local cluster of consensus nodes (child processes of this binary) configured
    /// like the seed's three-node example, show a live table, stop them all on Ctrl-C.
    Devnet(DevnetArgs),
    /// Check a node's database, read-only: every record's checksum, and RocksDB's own checks
    /// of its files. Prints each corrupt record by column and key and changes nothing. Exits 0
    /// when all is well, 1 when something is corrupt, 2 when the directory cannot be checked
    /// (missing, not a canon database, another format).
    CheckDb {
        /// The database directory (the node's general_rocks_db_path).
        dir: PathBuf,
    },
    /// Load and validate the configuration; print the effective settings (secret redacted).
    CheckConfig {
        /// YAML config file; repeat to layer (later files override earlier ones).
        #[arg(long = "config")]
        configs: Vec<PathBuf>,
        /// MultiversX-style prefs.toml (`[Preferences] RedundancyLevel = N`).
        #[arg(long)]
        prefs: Option<PathBuf>,
    },
    /// Print the node id (uncompressed secp256k1 public key) and enode URL of a secret key.
    Id {
        /// 32-byte hex network secret key (0x optional); NETWORK_SECRET_KEY if omitted.
        #[arg(long, env = "NETWORK_SECRET_KEY")]
        secret_key: String,
        /// Host and port for the enode URL.
        #[arg(long, default_value = "127.0.0.1:3060")]
        address: String,
    },
    /// Put a cluster under load, at a fixed rate or with a window in flight, sending batches to
    /// the given nodes in turn with `canon_sendTransactionsAndWait`. Prints tx/s applied,
    /// latency (p50, p99, max: from submission, or in the open loop from when the batch was
    /// due, until the node answers it applied it) and refusals by reason. Ledger: transfers
    /// between the dev accounts, signed up front; works against any chain whose genesis funds
    /// the dev accounts (the default, `devnet`). kv: puts, made as they are sent.
    Load {
        /// What the chain runs: ledger or kv.
        #[arg(long, default_value = "ledger")]
        app: Application,
        /// A file holding the client token the nodes ask for (their rpc_auth_token_file).
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// kv: distinct keys (8 bytes each) the puts cycle through.
        #[arg(long, default_value_t = 100_000)]
        keys: u64,
        /// kv: bytes in each put's value.
        #[arg(long, default_value_t = 256)]
        value_bytes: usize,
        /// JSON-RPC addresses, comma-separated; batches go to each in turn (replicas forward to
        /// the leader).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "127.0.0.1:3050,127.0.0.1:3051,127.0.0.1:3052"
        )]
        rpc: Vec<String>,
        /// Sending dev accounts (1..=64).
        #[arg(long, default_value_t = 64)]
        accounts: usize,
        /// How long to send; calls still out then get up to 10 s to be answered.
        #[arg(long, default_value_t = 30)]
        duration_secs: u64,
        /// Open loop: transactions per second, on schedule whatever the cluster does.
        #[arg(long, conflicts_with = "window")]
        rate: Option<u64>,
        /// Closed loop (the default): at most this many transactions in flight.
        #[arg(long, default_value_t = 10_000)]
        window: u64,
        /// Transactions per call (at most 10,000); the open loop sends at most 5 ms of its
        /// rate in one.
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Most transactions sent: by default 200,000 for the ledger, which signs them before
        /// the run starts (about 100 µs each per core), and 10,000,000 for kv, which makes
        /// them as it sends. A closed loop that runs out ends there, and its rate is measured
        /// over the time it had work, which the report says.
        #[arg(long)]
        max_txs: Option<usize>,
        /// Fewest threads sending batches; more are started (up to 96) to fill the window,
        /// since each waits for its batch to be applied.
        #[arg(long, default_value_t = 4)]
        senders: usize,
    },
    /// Check one block a node serves, trusting only the chain id and the consensus peer ids,
    /// never the node: its commit certificate (a majority of the peers signed its hash for that
    /// height of that chain), its transactions root and its proposer's signature. A light
    /// proof: no node runs here, nothing is downloaded but the block.
    VerifyBlock {
        /// The height to check.
        height: u64,
        /// The node's JSON-RPC address.
        #[arg(long, default_value = "127.0.0.1:3050")]
        rpc: String,
        /// YAML config: consensus_peer_ids and genesis_chain_id come from it (and the
        /// environment) unless given here.
        #[arg(long = "config")]
        configs: Vec<PathBuf>,
        /// A consensus peer id (repeat); the config's consensus_peer_ids if none.
        #[arg(long = "peer-id")]
        peer_ids: Vec<String>,
        /// The chain id; the config's genesis_chain_id if omitted.
        #[arg(long)]
        chain_id: Option<u64>,
    },
    /// Print the public dev accounts the default genesis funds (address and secret key).
    DevAccounts {
        #[arg(long, default_value_t = 4)]
        count: usize,
    },
}

/// `canon-node devnet`'s options.
#[derive(clap::Args)]
struct DevnetArgs {
    /// Consensus nodes (1..=10). Nodes 0-2 use the seed's keys.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Databases and logs (node-<i>/, node-<i>.log).
    #[arg(long, default_value = "./devnet")]
    pub dir: PathBuf,
    /// Added to every port (RPC 3050+i, p2p 3060+i, status 3071+i, Prometheus 3312+i).
    #[arg(long, default_value_t = 0)]
    pub port_offset: u16,
    /// External nodes (general_node_role=external) that download and replay the
    /// consensus nodes' blocks; they take the port slots after the consensus nodes.
    #[arg(long, default_value_t = 0)]
    pub external: usize,
    /// Instead of Raft: single-sequencer mode, a main (RedundancyLevel 0) and this many hot
    /// standbys at levels 1..=K sharing one signing identity; member i takes port slot i.
    #[arg(long, conflicts_with = "nodes")]
    pub standbys: Option<usize>,
    /// With --standbys: run the group fenced (redundancy_fencing), so no partition makes two
    /// members sign one round or height; needs --standbys 2 or more.
    #[arg(long, requires = "standbys")]
    pub fenced: bool,
    /// Without an L1. By default (Raft mode) the devnet starts anvil on port 8545 (plus
    /// --port-offset, 0.25 s blocks, as in the seed), deploys the settlement contract with
    /// the consensus nodes registered, and node 0's batcher commits batches to it.
    #[arg(long)]
    pub no_l1: bool,
    /// Raft mode: nodes 1..=K run standby batchers at batcher_redundancy_level 1..=K, each
    /// paying L1 from its own anvil development account; a standby claims the batcher role
    /// through Raft once L1 stood still for level x 5 batch rounds. 0: the seed's single
    /// batcher on node 0.
    #[arg(long, default_value_t = 1)]
    pub batcher_standbys: usize,
    /// What the chain runs: ledger (signed transfers between accounts) or kv (a key-value
    /// store; the devnet writes a client token to <dir>/client-token).
    #[arg(long, default_value = "ledger")]
    pub app: Application,
}

fn main() -> ExitCode {
    no_huge_pages();
    let cli = Cli::parse();
    match cli.command {
        None => run_node(&cli.configs, cli.prefs.as_deref()),
        Some(Command::Run { configs, prefs }) => run_node(&configs, prefs.as_deref()),
        Some(Command::Devnet(args)) => devnet(args),
        Some(Command::Guard { action }) => guard(action),
        Some(Command::L1 { action }) => l1(action),
        Some(Command::CheckDb { dir }) => check_db(&dir),
        Some(Command::CheckConfig { configs, prefs }) => check_config(&configs, prefs.as_deref()),
        Some(Command::Id {
            secret_key,
            address,
        }) => match SecretKey::from_hex(&secret_key) {
            Ok(key) => {
                let id = key.node_id();
                println!("node_id: {id}");
                println!(
                    "enode:   enode://{}@{address}",
                    id.to_string().trim_start_matches("0x")
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: network_secret_key: {e}");
                ExitCode::from(2)
            }
        },
        Some(Command::Load {
            app,
            token_file,
            keys,
            value_bytes,
            rpc,
            accounts,
            duration_secs,
            rate,
            window,
            batch,
            max_txs,
            senders,
        }) => {
            let cfg = canon_node::load::LoadConfig {
                rpc,
                accounts,
                duration_secs,
                pace: match rate {
                    Some(r) => canon_node::load::Pace::Rate(r),
                    None => canon_node::load::Pace::Window(window),
                },
                batch,
                max_txs: max_txs.unwrap_or(match app {
                    Application::Ledger => 200_000,
                    Application::Kv => 10_000_000,
                }),
                senders,
                progress: true,
                app,
                token: None,
                kv_keys: keys,
                kv_value_bytes: value_bytes,
            };
            let token = token_file
                .map(|p| canon_node::client_auth::ClientToken::read(&p))
                .transpose()
                .map_err(|e| format!("--token-file: {e}"));
            print_outcome(token.and_then(|token| {
                canon_node::load::run(&canon_node::load::LoadConfig { token, ..cfg })
                    .map(|r| r.to_string())
            }))
        }
        Some(Command::VerifyBlock {
            height,
            rpc,
            configs,
            peer_ids,
            chain_id,
        }) => print_outcome(verify_block(height, &rpc, &configs, peer_ids, chain_id)),
        Some(Command::DevAccounts { count }) => {
            for i in 0..count.min(canon_node::genesis::DEV_ACCOUNTS) {
                let k = canon_node::genesis::dev_account_key(i);
                println!("{i:>3} {} 0x{}", k.address(), hex::encode(k.to_bytes()));
            }
            ExitCode::SUCCESS
        }
    }
}

fn check_config(configs: &[PathBuf], prefs: Option<&std::path::Path>) -> ExitCode {
    match load(configs, prefs) {
        Ok(v) => {
            let mut shown = v.settings.clone();
            shown.network_secret_key = "<redacted>".into();
            if shown.validator_secret_key.is_some() {
                shown.validator_secret_key = Some("<redacted>".into());
            }
            if shown.batcher_l1_secret_key.is_some() {
                shown.batcher_l1_secret_key = Some("<redacted>".into());
            }
            println!("node_id: {}", v.node_id);
            println!("peers: {}", v.peers.len());
            match serde_yaml_ng::to_string(&shown) {
                Ok(text) => print!("{text}"),
                Err(e) => eprintln!("error: cannot print settings: {e}"),
            }
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

#[cfg(feature = "production")]
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("error: cannot start the tokio runtime: {e}");
            ExitCode::FAILURE
        })
}

fn load(
    configs: &[PathBuf],
    prefs: Option<&std::path::Path>,
) -> Result<canon_node::config::Validated, ExitCode> {
    canon_node::config::load_with_prefs(configs, prefs, std::env::vars())
        .and_then(|s| s.validate())
        .map_err(|e| {
            eprintln!("error: config: {e}");
            ExitCode::from(2)
        })
}

#[cfg(feature = "production")]
fn guard(action: GuardAction) -> ExitCode {
    use canon_node::guard_file;
    let result = match action {
        GuardAction::Export { configs, out } => match load(&configs, None) {
            Ok(v) => guard_file::export(&v, out.as_deref()),
            Err(code) => return code,
        },
        GuardAction::Import { configs, file } => match load(&configs, None) {
            Ok(v) => guard_file::import(&v, &file),
            Err(code) => return code,
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(not(feature = "production"))]
fn guard(_action: GuardAction) -> ExitCode {
    run_node(&[], None)
}

#[cfg(not(feature = "production"))]
fn l1(_action: L1Action) -> ExitCode {
    run_node(&[], None)
}

#[cfg(feature = "production")]
fn check_db(dir: &std::path::Path) -> ExitCode {
    match canon_node::check_db::check(dir) {
        Ok(report) => {
            println!("{report}");
            if report.clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(not(feature = "production"))]
fn check_db(_dir: &std::path::Path) -> ExitCode {
    run_node(&[], None)
}

/// A command's report on standard output, or its error on standard error with exit code 2.
#[cfg(feature = "production")]
fn print_outcome(outcome: Result<String, impl std::fmt::Display>) -> ExitCode {
    match outcome {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(feature = "production")]
fn verify_block(
    height: u64,
    rpc: &str,
    configs: &[PathBuf],
    peer_ids: Vec<String>,
    chain_id: Option<u64>,
) -> Result<String, String> {
    use canon_engine::NodeId;
    let settings =
        canon_node::config::load(configs, std::env::vars()).map_err(|e| format!("config: {e}"))?;
    let (ids, origin) = if peer_ids.is_empty() {
        (settings.consensus_peer_ids, "consensus_peer_ids")
    } else {
        (peer_ids, "--peer-id")
    };
    if ids.is_empty() {
        return Err("no consensus peer ids: give --peer-id (repeat) or --config".into());
    }
    let peers = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            id.parse()
                .map_err(|e| format!("{origin} {i} ({id:?}): {e}"))
        })
        .collect::<Result<Vec<NodeId>, String>>()?;
    let chain_id = chain_id.unwrap_or(settings.genesis_chain_id);
    let client = canon_node::client::NodeClient::new(rpc, rpc, std::time::Duration::from_secs(10));
    let verified = canon_node::verify_block::verify_block(&client, height, chain_id, &peers)
        .map_err(|e| e.to_string())?;
    Ok(canon_node::verify_block::report(&verified, peers.len()))
}

#[cfg(feature = "production")]
fn l1(action: L1Action) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match rt.block_on(l1_command(action)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(feature = "production")]
async fn l1_command(action: L1Action) -> Result<(), String> {
    use canon_engine::settlement::batch::address_of;
    use canon_engine::NodeId;
    use canon_node::l1::{ANVIL_DEV_KEY, L1};
    use std::time::Duration;
    let settings = |configs: &[PathBuf]| {
        canon_node::config::load(configs, std::env::vars()).map_err(|e| format!("config: {e}"))
    };
    match action {
        L1Action::Deploy {
            configs,
            rpc_url,
            validators,
            deployer_key,
        } => {
            let s = settings(&configs)?;
            let url = rpc_url.unwrap_or(s.general_l1_rpc_url.clone());
            let ids = if validators.is_empty() {
                s.consensus_peer_ids.clone()
            } else {
                validators
            };
            if ids.is_empty() {
                return Err(
                    "--validator: no consensus node ids given, and the config's \
                            consensus_peer_ids is empty"
                        .into(),
                );
            }
            let mut addrs = Vec::new();
            for (i, id) in ids.iter().enumerate() {
                let id: NodeId = id
                    .parse()
                    .map_err(|e| format!("--validator {i} ({id:?}): {e}"))?;
                addrs.push(address_of(&id));
            }
            let key_hex = match deployer_key {
                Some(k) => k,
                None => {
                    eprintln!("l1 deploy: paying with anvil's first development account");
                    ANVIL_DEV_KEY.to_string()
                }
            };
            let key = SecretKey::from_hex(&key_hex).map_err(|e| format!("--deployer-key: {e}"))?;
            let l1 = L1::connect(&url, &key).map_err(|e| e.to_string())?;
            l1.wait_ready(Duration::from_secs(5))
                .await
                .map_err(|e| format!("{e} (is anvil running? `anvil --port 8545`)"))?;
            let address = l1.deploy(addrs.clone()).await.map_err(|e| e.to_string())?;
            eprintln!(
                "l1 deploy: {} validators registered, a batch needs {} of them",
                addrs.len(),
                addrs.len() / 2 + 1
            );
            println!("l1_settlement_address: {address}");
            Ok(())
        }
        L1Action::Head {
            configs,
            rpc_url,
            address,
        } => {
            let s = settings(&configs)?;
            let url = rpc_url.unwrap_or(s.general_l1_rpc_url.clone());
            let address: alloy_primitives::Address = address
                .parse()
                .map_err(|e| format!("--address {address:?}: {e}"))?;
            let key = SecretKey::from_hex(ANVIL_DEV_KEY).map_err(|e| e.to_string())?;
            let l1 = L1::connect(&url, &key).map_err(|e| e.to_string())?;
            let head = l1.head(address).await.map_err(|e| e.to_string())?;
            println!(
                "batch: {}\nheight: {}\nstate_root: {}\ncommitment: {}\nepoch: {}",
                head.batch_number, head.height, head.state_root, head.commitment, head.epoch
            );
            Ok(())
        }
    }
}

#[cfg(feature = "production")]
fn run_node(configs: &[PathBuf], prefs: Option<&std::path::Path>) -> ExitCode {
    use tracing_subscriber::EnvFilter;
    let v = match load(configs, prefs) {
        Ok(v) => v,
        Err(code) => return code,
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            // openraft narrates every vote and election at info; ours says what matters.
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,openraft=warn")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let stop = tokio_util::sync::CancellationToken::new();
    match rt.block_on(canon_node::service::run(v, stop)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(feature = "production")]
fn devnet(a: DevnetArgs) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    let plan = canon_node::devnet::Plan {
        nodes: a.nodes,
        standbys: a.standbys,
        fenced: a.fenced,
        externals: a.external,
        dir: a.dir,
        offset: a.port_offset,
        no_l1: a.no_l1,
        batcher_standbys: a.batcher_standbys,
        app: a.app,
    };
    match rt.block_on(canon_node::devnet::run(plan)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: devnet: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(not(feature = "production"))]
fn run_node(_configs: &[PathBuf], _prefs: Option<&std::path::Path>) -> ExitCode {
    eprintln!(
        "error: this canon-node was built without the node itself; build it with \
`cargo build --release -p canon-node --features production`"
    );
    ExitCode::from(2)
}

#[cfg(not(feature = "production"))]
fn devnet(_: DevnetArgs) -> ExitCode {
    run_node(&[], None)
}

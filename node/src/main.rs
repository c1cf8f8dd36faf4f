//! `canon-node`: the production node (built with `--features production`), a local devnet, and
//! the identity and config tooling.

use std::path::PathBuf;
use std::process::ExitCode;

mod cli;

use canon_engine::keys::SecretKey;
use canon_node::genesis::Application;
use clap::Parser;
use cli::{AdminAction, Cli, Command, DevnetArgs, GuardAction, L1Action};

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

/// mimalloc keeps the pages it frees. By default it hands them back to the kernel 10 ms after
/// they empty (`madvise`), and the next allocation faults them in again zeroed: at the
/// key-value peak, where every block is megabytes of short-lived buffers, that was over 1,000
/// hand-backs every 4 s per node and 12-16% of its time in the kernel zeroing pages
/// (docs/benchmarks.md). The cost is memory: a node holds its high-water mark. An operator's
/// own `MIMALLOC_PURGE_DELAY` wins. mimalloc reads it at its first purge, after this.
#[cfg(feature = "production")]
/// The log filter without RUST_LOG: ours at info, openraft's warnings but not the ones it
/// repeats for every failed request to an unreachable peer.
const DEFAULT_LOG_FILTER: &str = "info,openraft=warn,openraft::replication=off,\
openraft::engine::handler::replication_handler=error";

fn keep_freed_memory() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        std::env::set_var("MIMALLOC_PURGE_DELAY", "-1");
    }
}

#[cfg(not(feature = "production"))]
fn keep_freed_memory() {}

fn main() -> ExitCode {
    keep_freed_memory();
    no_huge_pages();
    let cli = Cli::parse();
    match cli.command {
        None => run_node(&cli.configs, cli.prefs.as_deref()),
        Some(Command::Run { configs, prefs }) => run_node(&configs, prefs.as_deref()),
        Some(Command::Devnet(args)) => devnet(args),
        Some(Command::Guard { action }) => guard(action),
        Some(Command::L1 { action }) => l1(action),
        Some(Command::Admin {
            action,
            url,
            token_file,
        }) => admin(action, &url, token_file.as_deref()),
        Some(Command::CheckDb { dir }) => check_db(&dir),
        Some(Command::CheckConfig { configs, prefs }) => check_config(&configs, prefs.as_deref()),
        Some(Command::Settings) => {
            print!("{}", canon_node::config::settings_table());
            ExitCode::SUCCESS
        }
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
            let shown = v.settings.redacted();
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
fn admin(action: AdminAction, url: &str, token_file: Option<&std::path::Path>) -> ExitCode {
    use canon_node::admin::{AdminClient, AdminRequest};
    let outcome = (|| {
        let path = token_file.ok_or("--token-file: the admin token is required")?;
        let token = canon_node::client_auth::ClientToken::read(path)
            .map_err(|e| format!("--token-file {e}"))?;
        let client = AdminClient::new(url, token);
        let id = |text: &str| {
            text.parse::<canon_engine::NodeId>()
                .map_err(|e| format!("node id {text:?}: {e}"))
        };
        let status = match action {
            AdminAction::Members => client.members()?,
            AdminAction::AddLearner { enode } => {
                let (id, address) = canon_node::config::parse_enode(&enode)?;
                client.change(&AdminRequest::AddLearner { id, address })?
            }
            AdminAction::Promote { id: text } => {
                client.change(&AdminRequest::Promote { id: id(&text)? })?
            }
            AdminAction::Remove { id: text } => {
                client.change(&AdminRequest::Remove { id: id(&text)? })?
            }
        };
        serde_json::to_string_pretty(&status).map_err(|e| e.to_string())
    })();
    print_outcome(outcome)
}

#[cfg(not(feature = "production"))]
fn admin(_action: AdminAction, _url: &str, _token_file: Option<&std::path::Path>) -> ExitCode {
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
                // openraft logs an error and two warnings per failed replication request
                // (ten a second to a paused follower); `reachability` says it once and then
                // summarises.
                .unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER)),
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

//! `canon-node`: the production shell. This build carries the identity tooling every operator
//! needs before a cluster exists; the tokio + RocksDB node is built with `--features production`.

use std::process::ExitCode;

use canon_engine::keys::SecretKey;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "canon-node",
    about = "canon consensus node",
    long_about = "canon consensus node. `id` derives a node's Raft id and enode URL from its \
network secret key, exactly as consensus_peer_ids and network_boot_nodes expect them. \
`check-config` layers YAML files (--config, later ones win) and environment variables \
(seed names, upper or lower case, `__JSON` for JSON values) and prints the effective \
settings, or the key at fault."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load and validate the configuration; print the effective settings (secret redacted).
    CheckConfig {
        /// YAML config file; repeat to layer (later files override earlier ones).
        #[arg(long = "config")]
        configs: Vec<std::path::PathBuf>,
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
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::CheckConfig { configs } => {
            match canon_node::config::from_sources(&configs, std::env::vars()) {
                Ok(v) => {
                    let mut shown = v.settings.clone();
                    shown.network_secret_key = "<redacted>".into();
                    println!("node_id: {}", v.node_id);
                    println!("peers: {}", v.peers.len());
                    match serde_yaml_ng::to_string(&shown) {
                        Ok(text) => print!("{text}"),
                        Err(e) => eprintln!("error: cannot print settings: {e}"),
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: config: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Id {
            secret_key,
            address,
        } => match SecretKey::from_hex(&secret_key) {
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
    }
}

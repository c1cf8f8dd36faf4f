//! Node configuration: YAML files through repeated `--config` (later files override earlier),
//! then environment variables, with the seed document's names in either case
//! (`NETWORK_PORT` or `network_port`) and JSON values through the `__JSON` suffix
//! (`CONSENSUS_PEER_IDS__JSON`). With nothing set, the embedded defaults describe a
//! single-node dev chain that bootstraps itself in `./db/node` on the default ports.
//!
//! YAML may be flat (`network_port: 3060`) or nested (`network: { port: 3060 }`); nested keys
//! are joined with `_`. Durations are milliseconds.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::secret::SecretText;

/// The dev chain's network key when none is configured. It is public: anything beyond a local
/// dev chain must set `network_secret_key`.
pub const DEV_SECRET_KEY: &str = "0af6153646bbf600f55ce455e1995283542b1ae25ce2622ce1fda443927c5308";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// Takes part in Raft (the seed calls it the main node or ConsensusNode).
    #[serde(alias = "main", alias = "consensus")]
    Main,
    /// Downloads and replays canonized blocks; never joins Raft.
    External,
}

/// Every setting, by its seed name. Unknown keys are an error that names them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    pub network_enabled: bool,
    /// This node's network key (32-byte hex), or `network_secret_key_file`, a file holding
    /// it that only its owner may read.
    pub network_secret_key: SecretText,
    pub network_secret_key_file: Option<PathBuf>,
    pub network_address: String,
    pub network_port: u16,
    /// `enode://<128 hex id>@host:port`, comma separated in the environment.
    pub network_boot_nodes: Vec<String>,
    /// Bounds on what anyone who reaches the p2p port may cost (see the settings table).
    pub network_max_connections: usize,
    pub network_max_connections_per_peer: usize,
    pub network_max_handshakes: usize,
    pub network_max_handshakes_per_address: usize,
    pub network_handshake_timeout_ms: u64,
    pub network_max_requests_per_connection: usize,
    pub consensus_enabled: bool,
    pub consensus_bootstrap: bool,
    /// `0x`-prefixed node ids; empty means just this node.
    pub consensus_peer_ids: Vec<String>,
    /// Milliseconds a follower waits without hearing a leader before it asks for votes: a
    /// fresh draw between min and max each time.
    pub consensus_election_timeout_min: u64,
    pub consensus_election_timeout_max: u64,
    /// Milliseconds between a leader's heartbeats, and (openraft 0.9) the time each
    /// AppendEntries has to come back: 250, since a block of thousands of transactions takes
    /// a follower over 100 ms to store under load, and a leader whose requests time out loses
    /// its quorum (the loopback bench lost its leader at 100 and at 200).
    pub consensus_heartbeat_interval: u64,
    /// A Raft snapshot of the applied state (no blocks) is built every this many log entries,
    /// and the log before it purged but for `consensus_log_keep_entries`.
    pub consensus_snapshot_interval_entries: u64,
    /// Log entries kept behind the last snapshot. A follower lagging by fewer catches up by
    /// replication; one lagging by more installs the snapshot and downloads the blocks between.
    pub consensus_log_keep_entries: u64,
    pub sequencer_block_time: u64,
    pub sequencer_max_block_transactions: usize,
    /// How many of the leader's blocks may wait for canonization at once, each next one built
    /// on the last (1: every block waits for the one before).
    pub sequencer_max_blocks_in_flight: usize,
    pub batcher_enabled: bool,
    /// L1 batches close every this many blocks. A rule of the chain: every consensus node must
    /// use the same value, or their attestations never agree.
    pub batcher_blocks_per_batch: u64,
    /// The leader closes the open batch early once it is this old, in milliseconds (0: only by
    /// count).
    pub batcher_batch_timeout_ms: u64,
    /// With `batcher_enabled`: this node's place in the batcher's takeover order. 0 is the
    /// main batcher (it takes the role at start, and back when it returns); level L > 0 is a
    /// standby that claims the role through Raft after L x `redundancy_max_missed_rounds`
    /// batch rounds (each `batcher_batch_timeout_ms`) in which L1 did not advance while sealed
    /// batches waited. One node per level.
    pub batcher_redundancy_level: u32,
    pub prover_api_enabled: bool,
    pub status_server_enabled: bool,
    pub status_server_address: String,
    /// Bounds of the status and metrics servers (see the settings table).
    pub http_max_connections: usize,
    pub http_max_connections_per_ip: usize,
    pub http_header_timeout_ms: u64,
    pub rpc_address: String,
    /// Bounds on what JSON-RPC clients can make the node hold (see the settings table).
    pub rpc_max_connections: u32,
    pub rpc_max_connections_per_ip: usize,
    pub rpc_max_requests_per_second_per_ip: u64,
    pub rpc_max_request_bytes: u32,
    pub rpc_max_batch_calls: u32,
    pub rpc_max_transactions_per_call: usize,
    pub rpc_first_request_timeout_ms: u64,
    /// The address `/metrics` listens on, with `observability_prometheus_port`.
    pub observability_prometheus_address: String,
    pub observability_prometheus_port: u16,
    pub general_rocks_db_path: PathBuf,
    pub general_node_role: NodeRole,
    /// An external node recovers every transaction's signature of every block it downloads,
    /// instead of trusting the majority that certified the block (see the README's trust
    /// model): for an operator who trusts no majority of the consensus nodes. Slower: replay
    /// is then bound by signature recovery.
    pub external_verify_every_signature: bool,
    pub general_main_node_rpc_url: Option<String>,
    pub general_l1_rpc_url: String,
    /// The settlement contract (`canon-node l1 deploy` prints it). The batcher commits
    /// nothing without it.
    pub l1_settlement_address: Option<String>,
    /// The L1 account the batcher pays from (32-byte hex). Unset: anvil's first public
    /// development account, fit for a local anvil only.
    pub batcher_l1_secret_key: Option<SecretText>,
    pub batcher_l1_secret_key_file: Option<PathBuf>,
    /// What the chain runs: `ledger` (accounts and signed transfers) or `kv` (a replicated
    /// key-value store). A rule of the chain: every node of it must run the same one.
    pub application: crate::genesis::Application,
    /// A file holding the token clients must send (`Authorization: Bearer <token>`) with every
    /// JSON-RPC call; the file must not be readable by group or others. Required with
    /// `application: kv`, whose writes carry no signature; optional for the ledger.
    pub rpc_auth_token_file: Option<PathBuf>,
    /// Where the admin interface (`canon-node admin`: membership changes) listens.
    pub admin_address: String,
    /// A file (owner-only) holding the token the admin interface requires; unset, there is no
    /// admin interface.
    pub admin_token_file: Option<PathBuf>,
    /// Part of every block's genesis parent hash: nodes of different chains never agree.
    pub genesis_chain_id: u64,
    /// Funded accounts at height 0, `0x<address>:<balance>`; comma separated in the
    /// environment. The default funds the public dev accounts (`canon-node dev-accounts`).
    pub genesis_alloc: Vec<String>,
    /// The most transactions the leader's mempool holds.
    pub sequencer_mempool_capacity: usize,
    pub sequencer_mempool_per_sender: usize,
    /// Single-sequencer mode (`consensus_enabled: false`): this machine's place in its group's
    /// takeover order (the seed's `RedundancyLevel`, also read from `--prefs prefs.toml`).
    /// 0 is the main; level L > 0 signs after L x `redundancy_max_missed_rounds` rounds in which
    /// no lower level signed; negative or above 1000 syncs and never signs.
    pub redundancy_level: i64,
    /// Rounds per level a standby waits before it signs (the seed's 5); also the batch rounds
    /// per level a standby batcher waits (`batcher_redundancy_level`).
    pub redundancy_max_missed_rounds: u64,
    /// Fenced takeover: a block is signed only once a majority of the group (this machine and
    /// its `network_boot_nodes`) chose it, so no partition makes two machines sign one round or
    /// height; signing then needs a majority reachable. Needs 3 or more machines. Every member
    /// of a group must set the same value.
    pub redundancy_fencing: bool,
    /// The group's shared signing identity (32-byte hex), single-sequencer mode only; or
    /// `validator_secret_key_file`, a file holding it.
    pub validator_secret_key: Option<SecretText>,
    pub validator_secret_key_file: Option<PathBuf>,
    /// Wall-clock milliseconds (Unix epoch) at which round 0 starts; every member of a group must
    /// use the same value. Rounds are `sequencer_block_time` long.
    pub genesis_timestamp_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            network_enabled: true,
            network_secret_key: DEV_SECRET_KEY.into(),
            network_secret_key_file: None,
            network_address: "0.0.0.0".into(),
            network_port: 3060,
            network_boot_nodes: Vec::new(),
            network_max_connections: 128,
            network_max_connections_per_peer: 4,
            network_max_handshakes: 32,
            network_max_handshakes_per_address: 4,
            network_handshake_timeout_ms: 5_000,
            network_max_requests_per_connection: 256,
            consensus_enabled: true,
            consensus_bootstrap: true,
            consensus_peer_ids: Vec::new(),
            consensus_election_timeout_min: 1_000,
            consensus_election_timeout_max: 2_000,
            consensus_heartbeat_interval: 250,
            consensus_snapshot_interval_entries: 1_024,
            consensus_log_keep_entries: 256,
            sequencer_block_time: 250,
            sequencer_max_block_transactions: 1_000,
            sequencer_max_blocks_in_flight: 4,
            batcher_enabled: true,
            batcher_blocks_per_batch: canon_engine::chain::block::DEFAULT_BLOCKS_PER_BATCH,
            batcher_batch_timeout_ms: 5_000,
            batcher_redundancy_level: 0,
            prover_api_enabled: true,
            status_server_enabled: true,
            // Clients' and operators' listeners answer this machine only until told otherwise:
            // what they serve (writes, status, metrics) is not for whoever reaches the port.
            status_server_address: "127.0.0.1:3071".into(),
            http_max_connections: 64,
            http_max_connections_per_ip: 8,
            http_header_timeout_ms: 5_000,
            rpc_address: "127.0.0.1:3050".into(),
            // `canon-node load` keeps up to 96 connections to each node from one address.
            rpc_max_connections: 256,
            rpc_max_connections_per_ip: 128,
            rpc_max_requests_per_second_per_ip: 1_000,
            rpc_max_request_bytes: 10 << 20,
            rpc_max_batch_calls: 100,
            rpc_max_transactions_per_call: canon_engine::net::wire::MAX_SUBMIT_BATCH,
            // Also the longest a kept-alive connection may idle between requests: a load
            // client's pooled connection idles while its other calls wait (up to 10 s each),
            // and one closed under it fails the call (a broken pipe at 10 s).
            rpc_first_request_timeout_ms: 60_000,
            observability_prometheus_address: "127.0.0.1".into(),
            observability_prometheus_port: 3312,
            general_rocks_db_path: PathBuf::from("./db/node"),
            general_node_role: NodeRole::Main,
            external_verify_every_signature: false,
            general_main_node_rpc_url: None,
            general_l1_rpc_url: "http://localhost:8545".into(),
            l1_settlement_address: None,
            batcher_l1_secret_key: None,
            batcher_l1_secret_key_file: None,
            application: crate::genesis::Application::Ledger,
            rpc_auth_token_file: None,
            admin_address: "127.0.0.1:3090".into(),
            admin_token_file: None,
            genesis_chain_id: crate::genesis::DEV_CHAIN_ID,
            genesis_alloc: crate::genesis::dev_alloc(),
            sequencer_mempool_capacity: 100_000,
            sequencer_mempool_per_sender: 4_096,
            redundancy_level: 0,
            redundancy_max_missed_rounds:
                canon_engine::policy::redundancy::DEFAULT_MAX_MISSED_ROUNDS,
            redundancy_fencing: false,
            validator_secret_key: None,
            validator_secret_key_file: None,
            genesis_timestamp_ms: 0,
        }
    }
}

/// A config problem, always naming the key (or file) at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl std::error::Error for ConfigError {}

fn err(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.into(),
    }
}

mod doc;
mod load;
mod validate;

pub use doc::settings_table;

pub use load::{layer, load, load_with_prefs, prefs_from_text, read_prefs};
pub use validate::{address_label, parse_boot_node, parse_enode, GroupSettings, Validated};

/// Loads and validates in one step, as the binary does.
pub fn from_sources(
    files: &[PathBuf],
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Validated, ConfigError> {
    load(files, env)?.validate()
}

impl Settings {
    /// These settings with every secret replaced by `<redacted>`: what is ever shown.
    pub fn redacted(&self) -> Settings {
        let mut shown = self.clone();
        shown.network_secret_key = SecretText::redacted();
        for secret in [
            &mut shown.validator_secret_key,
            &mut shown.batcher_l1_secret_key,
        ] {
            if secret.is_some() {
                *secret = Some(SecretText::redacted());
            }
        }
        shown
    }
}

/// Where a relative database path lands.
pub fn db_path(settings: &Settings, cwd: &Path) -> PathBuf {
    if settings.general_rocks_db_path.is_absolute() {
        settings.general_rocks_db_path.clone()
    } else {
        cwd.join(&settings.general_rocks_db_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use canon_engine::keys::SecretKey;

    const SEED_PEERS: &str = r#"[
"0x246e07030b4c48b8f28ab1fdf797a02308b0ca724696b695aabee48ea48298ff221144a0c0f14ebf030aea6d5fb6b31bd3a02676204bb13e78336bb824e32f1d",
"0xd2db8005d59694a5b79b7c58d4d375c60c9323837e852bbbfd05819621c48a4218cefa37baf39a164e2a6f6c1b34c379c4a72c7480b5fbcc379d1befb881e8fc",
"0x2991880ae3ff81b881c86f54d2af0ee85a325231bb75f903f06f432020101614dbfbc75ddec885f5e101fed272bee661f492fb6dd80147b656da990635a7e581"
]"#;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn yaml(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// A scratch directory, removed when the test ends.
    fn tempdir(tag: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("canon-config-{tag}-"))
            .tempdir()
            .unwrap()
    }

    #[test]
    fn no_config_is_a_single_node_dev_chain() {
        let v = from_sources(&[], env(&[])).unwrap();
        assert_eq!(v.peers, vec![v.node_id]);
        assert!(v.settings.consensus_bootstrap);
        assert_eq!(v.settings.general_rocks_db_path, PathBuf::from("./db/node"));
        // Every listener but p2p (which peers must reach) answers loopback only by default.
        assert_eq!(v.settings.rpc_address, "127.0.0.1:3050");
        assert_eq!(v.settings.status_server_address, "127.0.0.1:3071");
        assert_eq!(v.settings.observability_prometheus_address, "127.0.0.1");
        assert_eq!(v.settings.network_port, 3060);
        assert_eq!(v.settings.observability_prometheus_port, 3312);
    }

    #[test]
    fn the_seed_node_2_environment_is_understood() {
        let boot = "enode://246e07030b4c48b8f28ab1fdf797a02308b0ca724696b695aabee48ea48298ff221144a0c0f14ebf030aea6d5fb6b31bd3a02676204bb13e78336bb824e32f1d@127.0.0.1:3060,enode://d2db8005d59694a5b79b7c58d4d375c60c9323837e852bbbfd05819621c48a4218cefa37baf39a164e2a6f6c1b34c379c4a72c7480b5fbcc379d1befb881e8fc@127.0.0.1:3061";
        let v = from_sources(
            &[],
            env(&[
                ("NETWORK_ENABLED", "true"),
                (
                    "NETWORK_SECRET_KEY",
                    "c2c8042b03801e2e14b395ed24f970ead7646a9ff315b54f747bcefdb99afda7",
                ),
                ("NETWORK_ADDRESS", "127.0.0.1"),
                ("NETWORK_PORT", "3061"),
                ("NETWORK_BOOT_NODES", boot),
                ("CONSENSUS_ENABLED", "true"),
                ("CONSENSUS_BOOTSTRAP", "true"),
                ("CONSENSUS_PEER_IDS__JSON", SEED_PEERS),
                ("BATCHER_ENABLED", "false"),
                ("PROVER_API_ENABLED", "false"),
                ("STATUS_SERVER_ADDRESS", "0.0.0.0:3072"),
                ("RPC_ADDRESS", "0.0.0.0:3051"),
                ("OBSERVABILITY_PROMETHEUS_PORT", "3313"),
                ("GENERAL_ROCKS_DB_PATH", "db/en-2"),
                ("PATH", "/usr/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(v.node_id.to_string(), "0xd2db8005d59694a5b79b7c58d4d375c60c9323837e852bbbfd05819621c48a4218cefa37baf39a164e2a6f6c1b34c379c4a72c7480b5fbcc379d1befb881e8fc");
        assert_eq!(v.peers.len(), 3);
        assert_eq!(v.boot_nodes.len(), 2);
        assert_eq!(v.boot_nodes[1].1, "127.0.0.1:3061");
        assert!(!v.settings.batcher_enabled);
        assert_eq!(v.settings.network_port, 3061);
        assert_eq!(v.settings.observability_prometheus_port, 3313);
    }

    #[test]
    fn lower_case_names_work_too() {
        let v = load(
            &[],
            env(&[
                ("general_node_role", "external"),
                ("status_server_enabled", "false"),
            ]),
        )
        .unwrap();
        assert_eq!(v.general_node_role, NodeRole::External);
        assert!(!v.status_server_enabled);
    }

    #[test]
    fn later_files_override_earlier_and_env_overrides_files() {
        let d = tempdir("layers");
        let a = yaml(
            d.path(),
            "a.yaml",
            "network_port: 4000\nrpc_address: 127.0.0.1:4050\nsequencer:\n  block_time: 50\n",
        );
        let b = yaml(d.path(), "b.yaml", "network:\n  port: 4001\n");
        let s = load(&[a.clone(), b.clone()], env(&[])).unwrap();
        assert_eq!(
            (
                s.network_port,
                s.rpc_address.as_str(),
                s.sequencer_block_time
            ),
            (4001, "127.0.0.1:4050", 50)
        );
        let s = load(&[a, b], env(&[("NETWORK_PORT", "4002")])).unwrap();
        assert_eq!(s.network_port, 4002);
    }

    #[test]
    fn errors_name_the_key() {
        let bad = |pairs: &[(&str, &str)]| from_sources(&[], env(pairs)).unwrap_err();
        assert_eq!(
            bad(&[("NETWORK_SECRET_KEY", "xyz")]).key,
            "network_secret_key"
        );
        assert_eq!(bad(&[("NETWORK_PORT", "http")]).key, "NETWORK_PORT");
        assert_eq!(
            bad(&[("CONSENSUS_PEER_IDS__JSON", "[1,")]).key,
            "CONSENSUS_PEER_IDS__JSON"
        );
        assert_eq!(
            bad(&[("CONSENSUS_PEER_IDS", "0x1234")]).key,
            "consensus_peer_ids"
        );
        let e = bad(&[
            ("CONSENSUS_PEER_IDS__JSON", SEED_PEERS),
            (
                "NETWORK_SECRET_KEY",
                "8b50ece5c94762fb0b8dcd2f859fb0132b86c0540c388806b6a03e0b1c25978e",
            ),
        ]);
        assert_eq!(e.key, "consensus_peer_ids");
        assert!(e.message.contains("must contain this node's id"), "{e}");
        assert_eq!(
            bad(&[("NETWORK_BOOT_NODES", "enode://xyz@1.2.3.4:1")]).key,
            "network_boot_nodes"
        );
        assert_eq!(
            bad(&[("CONSENSUS_ELECTION_TIMEOUT_MIN", "2000")]).key,
            "consensus_election_timeout_min"
        );
        let d = tempdir("unknown");
        let f = yaml(d.path(), "u.yaml", "netwrok_port: 1\n");
        let e = load(&[f], env(&[])).unwrap_err();
        assert_eq!(e.key, "netwrok_port", "{e}");
        let e = load(&[d.path().join("missing.yaml")], env(&[])).unwrap_err();
        assert!(
            e.key.ends_with("missing.yaml") && e.message.contains("cannot read"),
            "{e}"
        );
    }

    const VALIDATOR_KEY: &str = "7e5bb4b5d9e2c2a0d3ff7b8a47fa8e8b8f0b3e1b1c1d1e1f2021222324252627";

    #[test]
    fn single_sequencer_mode_from_env_yaml_and_prefs() {
        let dir = tempdir("prefs");
        // The environment, negative levels included (they sync and never sign).
        let v = from_sources(
            &[],
            env(&[
                ("CONSENSUS_ENABLED", "false"),
                ("VALIDATOR_SECRET_KEY", VALIDATOR_KEY),
                ("REDUNDANCY_LEVEL", "-1"),
                ("NETWORK_BOOT_NODES", "127.0.0.1:3061,10.0.0.2:3060"),
            ]),
        )
        .unwrap();
        let g = v.group.clone().expect("single-sequencer mode");
        assert_eq!(g.level, -1);
        assert_eq!(g.max_missed_rounds, 5);
        assert_eq!(v.boot_nodes[0].0, address_label("127.0.0.1:3061"));
        assert_eq!(v.boot_nodes[1].1, "10.0.0.2:3060");
        // YAML, with the key in a file.
        let key_file = dir.path().join("validator.key");
        std::fs::write(&key_file, format!("0x{VALIDATOR_KEY}\n")).unwrap();
        owner_only(&key_file);
        let file = yaml(
            dir.path(),
            "group.yaml",
            &format!(
                "consensus:\n  enabled: false\nredundancy_level: 3\nvalidator_secret_key_file: {}\n",
                key_file.display()
            ),
        );
        let v = from_sources(std::slice::from_ref(&file), env(&[])).unwrap();
        assert_eq!(v.group.as_ref().unwrap().level, 3);
        assert_eq!(
            v.group.unwrap().identity.to_bytes(),
            SecretKey::from_hex(VALIDATOR_KEY).unwrap().to_bytes()
        );
        // prefs.toml: a missing value means 0; the environment still wins over it.
        let prefs = dir.path().join("prefs.toml");
        std::fs::write(&prefs, "[Preferences]\nRedundancyLevel = 1000000\n").unwrap();
        let s = load_with_prefs(std::slice::from_ref(&file), Some(&prefs), env(&[])).unwrap();
        assert_eq!(s.redundancy_level, 1_000_000);
        let s = load_with_prefs(&[], Some(&prefs), env(&[("REDUNDANCY_LEVEL", "2")])).unwrap();
        assert_eq!(s.redundancy_level, 2);
        std::fs::write(&prefs, "[Preferences]\nNodeDisplayName = \"x\"\n").unwrap();
        assert_eq!(read_prefs(&prefs).unwrap(), 0);
        std::fs::write(&prefs, "[Preferences]\nRedundancyLevel = \"high\"\n").unwrap();
        assert!(read_prefs(&prefs)
            .unwrap_err()
            .key
            .contains("RedundancyLevel"));
    }

    #[test]
    fn batcher_redundancy_settings_parse_and_errors_name_the_key() {
        let v = from_sources(&[], env(&[("BATCHER_REDUNDANCY_LEVEL", "2")])).unwrap();
        assert_eq!(v.settings.batcher_redundancy_level, 2);
        assert_eq!(
            from_sources(&[], env(&[]))
                .unwrap()
                .settings
                .batcher_redundancy_level,
            0,
            "the seed's single batcher is the main"
        );
        let bad = |pairs: &[(&str, &str)]| from_sources(&[], env(pairs)).unwrap_err();
        assert_eq!(
            bad(&[("BATCHER_REDUNDANCY_LEVEL", "-1")]).key,
            "batcher_redundancy_level"
        );
        assert_eq!(
            bad(&[("REDUNDANCY_MAX_MISSED_ROUNDS", "0")]).key,
            "redundancy_max_missed_rounds"
        );
        // Without a batcher, the round count is the single-sequencer mode's business only.
        assert!(from_sources(
            &[],
            env(&[
                ("BATCHER_ENABLED", "false"),
                ("REDUNDANCY_MAX_MISSED_ROUNDS", "0")
            ])
        )
        .is_ok());
    }

    #[test]
    fn single_sequencer_errors_name_the_key() {
        let bad = |pairs: &[(&str, &str)]| from_sources(&[], env(pairs)).unwrap_err();
        assert_eq!(
            bad(&[("CONSENSUS_ENABLED", "false")]).key,
            "validator_secret_key"
        );
        assert_eq!(
            bad(&[
                ("CONSENSUS_ENABLED", "false"),
                ("VALIDATOR_SECRET_KEY", VALIDATOR_KEY),
                ("REDUNDANCY_LEVEL", "1.5"),
            ])
            .key,
            "REDUNDANCY_LEVEL"
        );
        assert_eq!(
            bad(&[
                ("CONSENSUS_ENABLED", "false"),
                ("VALIDATOR_SECRET_KEY_FILE", "/nonexistent/validator.key"),
            ])
            .key,
            "validator_secret_key_file"
        );
        assert_eq!(
            bad(&[
                ("CONSENSUS_ENABLED", "false"),
                ("VALIDATOR_SECRET_KEY", VALIDATOR_KEY),
                ("REDUNDANCY_MAX_MISSED_ROUNDS", "0"),
            ])
            .key,
            "redundancy_max_missed_rounds"
        );
        assert_eq!(bad(&[("REDUNDANCY_LEVEL", "1")]).key, "redundancy_level");
        assert_eq!(
            bad(&[("REDUNDANCY_FENCING", "true")]).key,
            "redundancy_fencing"
        );
        // Fencing with fewer than 3 machines: named, with the count it saw.
        let two = [
            ("CONSENSUS_ENABLED", "false"),
            ("VALIDATOR_SECRET_KEY", VALIDATOR_KEY),
            ("REDUNDANCY_FENCING", "true"),
            ("NETWORK_BOOT_NODES", "127.0.0.1:4001"),
        ];
        let e = bad(&two);
        assert_eq!(e.key, "redundancy_fencing");
        assert!(e.to_string().contains("knows 2"), "{e}");
        let mut three = two.to_vec();
        three[3].1 = "127.0.0.1:4001,127.0.0.1:4002";
        let v = from_sources(&[], env(&three)).unwrap();
        assert!(v.group.is_some_and(|g| g.fencing));
        assert_eq!(
            bad(&[("NETWORK_BOOT_NODES", "localhost")]).key,
            "network_boot_nodes"
        );
    }
    fn owner_only(path: &Path) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        #[cfg(not(unix))]
        let _ = path;
    }

    #[test]
    fn keys_come_from_owner_only_files_and_errors_never_quote_them() {
        let dir = tempdir("keyfiles");
        let network = dir.path().join("network.key");
        let l1 = dir.path().join("l1.key");
        let seed_key = "c2c8042b03801e2e14b395ed24f970ead7646a9ff315b54f747bcefdb99afda7";
        std::fs::write(&network, format!("{seed_key}\n")).unwrap();
        std::fs::write(&l1, format!("0x{VALIDATOR_KEY}")).unwrap();
        owner_only(&network);
        owner_only(&l1);
        let files = [
            ("NETWORK_SECRET_KEY_FILE", network.to_str().unwrap()),
            ("BATCHER_L1_SECRET_KEY_FILE", l1.to_str().unwrap()),
            ("CONSENSUS_PEER_IDS__JSON", SEED_PEERS),
        ];
        let v = from_sources(&[], env(&files)).unwrap();
        assert_eq!(
            v.key.to_bytes(),
            SecretKey::from_hex(seed_key).unwrap().to_bytes()
        );
        assert_eq!(
            v.batcher_l1_key.unwrap().to_bytes(),
            SecretKey::from_hex(VALIDATOR_KEY).unwrap().to_bytes()
        );
        // The settings as shown, and as Debug, hold no key.
        let shown = format!(
            "{:?} {}",
            v.settings,
            serde_yaml_ng::to_string(&v.settings.redacted()).unwrap()
        );
        assert!(!shown.contains(&seed_key[..16]), "{shown}");

        // (environment, the key the error names)
        let not_hex = "zz".repeat(32);
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (
                vec![
                    ("NETWORK_SECRET_KEY", seed_key),
                    ("NETWORK_SECRET_KEY_FILE", network.to_str().unwrap()),
                ],
                "network_secret_key",
            ),
            (
                vec![
                    ("BATCHER_L1_SECRET_KEY", VALIDATOR_KEY),
                    ("BATCHER_L1_SECRET_KEY_FILE", l1.to_str().unwrap()),
                ],
                "batcher_l1_secret_key",
            ),
            (vec![("NETWORK_SECRET_KEY", &not_hex)], "network_secret_key"),
            (
                vec![("BATCHER_L1_SECRET_KEY", &seed_key[..60])],
                "batcher_l1_secret_key",
            ),
        ];
        for (vars, key) in cases {
            let e = from_sources(&[], env(&vars)).unwrap_err();
            assert_eq!(e.key, key, "{e}");
            let text = e.to_string();
            assert!(
                !text.contains(&seed_key[..8]) && !text.contains("zzzz"),
                "{text}"
            );
        }
    }
    #[test]
    fn an_empty_setting_name_is_refused_naming_the_file() {
        // Found by the config fuzz target: the error named no key at all.
        for text in ["\"\": 1\n", "network:\n  \"\": 2\n"] {
            let e = layer(&[("a.yaml".into(), text.into())], None, env(&[])).unwrap_err();
            assert_eq!(e.key, "a.yaml", "{text:?}: {e}");
            assert!(e.message.contains("empty name"), "{e}");
        }
    }
}

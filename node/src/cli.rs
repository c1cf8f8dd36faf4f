//! `canon-node`'s command line: the commands, their options and the help they print. `main.rs`
//! carries them out.

use std::path::PathBuf;

use canon_node::genesis::Application;
use clap::{Parser, Subcommand};

#[derive(Subcommand)]
pub(crate) enum GuardAction {
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
pub(crate) enum AdminAction {
    /// Print the membership: voters, learners, and during a change the voters it is headed
    /// for.
    Members,
    /// Add a node as a learner: the leader sends it the log (a snapshot and the blocks below
    /// it); it does not vote yet. Start the node first, with `consensus_bootstrap: false`.
    AddLearner {
        /// `enode://<id>@host:port`: the node's id and where it listens for p2p.
        enode: String,
    },
    /// Make a learner a voter. Refused until it has caught up with the leader's log: ask
    /// again.
    Promote {
        /// The learner's node id (`0x` and 128 hex digits).
        id: String,
    },
    /// Remove a voter or learner: a dead machine, or the old one after a replacement.
    /// Refused (ask again) while L1 still lacks a batch the voter attests: shut a removed
    /// machine down only once this succeeded, or a batch may never gather its attesters.
    Remove {
        /// The member's node id.
        id: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum L1Action {
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
pub(crate) struct Cli {
    /// YAML config file; repeat to layer (later files override earlier ones).
    #[arg(long = "config", global = false)]
    pub configs: Vec<PathBuf>,
    /// MultiversX-style prefs.toml: `[Preferences] RedundancyLevel = N` sets redundancy_level.
    #[arg(long)]
    pub prefs: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand)]
pub(crate) enum Command {
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
    /// Membership changes on a running chain, through the leader's admin interface
    /// (`admin_address`, with the token in `admin_token_file`). Replacing a machine: start the
    /// new node, `add-learner` it, `promote` it once caught up, `remove` the old one.
    Admin {
        #[command(subcommand)]
        action: AdminAction,
        /// The admin interface of the node to ask (the leader, for a change).
        #[arg(long, default_value = "http://127.0.0.1:3090", global = true)]
        url: String,
        /// A file (owner-only) holding the admin token: the node's admin_token_file.
        #[arg(long, global = true)]
        token_file: Option<PathBuf>,
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
    /// Print every setting as a Markdown table: its environment name, default and meaning.
    Settings,
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
        #[arg(long, env = "NETWORK_SECRET_KEY", hide_env_values = true)]
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
pub(crate) struct DevnetArgs {
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

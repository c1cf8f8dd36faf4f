//! A consensus node's settings, the checks they must pass before it starts, and the openraft
//! tuning derived from them.

use openraft::SnapshotPolicy;

use crate::chain::block::ChainSpec;
use crate::ids::NodeId;
use crate::keys::SecretKey;
use crate::policy::election::ElectionConfig;
use crate::seams::NodeError;

#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub key: SecretKey,
    /// The genesis members' ids (`consensus_peer_ids`): the chain's first signer set. Later
    /// members come from Raft's membership and the chain's declarations.
    pub peers: Vec<NodeId>,
    /// The peers the operator pointed this node at (`network_boot_nodes`). A node joining a
    /// running chain knows no membership yet: it takes Raft traffic from these as well as from
    /// the genesis members, so a leader added after genesis can add it.
    pub boot_peers: Vec<NodeId>,
    /// May initialize the cluster's membership; safe on every node (the first one wins).
    pub bootstrap: bool,
    pub election_timeout_ms_min: u64,
    pub election_timeout_ms_max: u64,
    pub heartbeat_interval_ms: u64,
    pub block_time_ms: u64,
    pub max_block_transactions: usize,
    /// How many proposals the leader keeps waiting for canonization at once; each next block
    /// builds on the last of them (1: every block waits for the one before).
    pub max_blocks_in_flight: usize,
    pub mempool: crate::consensus::mempool::MempoolBounds,
    /// A Raft snapshot of the applied state is built after this many applied entries; the log
    /// before it is then purged, all but `log_keep_entries`.
    pub snapshot_interval_entries: u64,
    /// Entries kept in the log behind the last snapshot: a follower lagging less catches up by
    /// replication, one lagging more installs the snapshot and backfills the blocks.
    pub log_keep_entries: u64,
    /// Deadline for a forwarded transaction.
    pub rpc_timeout_ms: u64,
    /// The leader marks a block as closing the open L1 batch once the batch is this old (0:
    /// batches close only by count).
    pub batch_timeout_ms: u64,
    pub chain: ChainSpec,
    /// A bug planted on purpose, to show the simulator's checkers catch it: `Plant::None`
    /// everywhere but those runs.
    pub plant: Plant,
}

impl NodeConfig {
    pub fn id(&self) -> NodeId {
        self.key.node_id()
    }

    /// The checks a config must pass before a node starts; messages name the setting.
    pub fn validate(&self) -> Result<(), NodeError> {
        let id = self.id();
        if !self.peers.contains(&id) && self.bootstrap {
            return Err(NodeError::Config(format!(
                "consensus_peer_ids (the genesis membership) must contain this node's id {id} (derived from network_secret_key) when consensus_bootstrap is on; a node joining a running chain sets consensus_bootstrap: false and is added by the leader (canon-node admin add-learner)"
            )));
        }
        if self.election_timeout_ms_min >= self.election_timeout_ms_max {
            return Err(NodeError::Config(format!(
                "consensus_election_timeout_min ({} ms) must be below consensus_election_timeout_max ({} ms)",
                self.election_timeout_ms_min, self.election_timeout_ms_max
            )));
        }
        if self.heartbeat_interval_ms >= self.election_timeout_ms_min {
            return Err(NodeError::Config(format!(
                "consensus_heartbeat_interval ({} ms) must be below consensus_election_timeout_min ({} ms)",
                self.heartbeat_interval_ms, self.election_timeout_ms_min
            )));
        }
        if self.block_time_ms == 0 {
            return Err(NodeError::Config(
                "sequencer_block_time must be above 0 ms".into(),
            ));
        }
        if self.max_blocks_in_flight == 0 {
            return Err(NodeError::Config(
                "sequencer_max_blocks_in_flight must be at least 1".into(),
            ));
        }
        if self.snapshot_interval_entries == 0 {
            return Err(NodeError::Config(
                "consensus_snapshot_interval_entries must be at least 1".into(),
            ));
        }
        Ok(())
    }

    pub fn election_config(&self) -> ElectionConfig {
        ElectionConfig {
            id: self.id(),
            voters: self.peers.clone(),
            election_timeout_ms_min: self.election_timeout_ms_min,
            election_timeout_ms_max: self.election_timeout_ms_max,
            heartbeat_interval_ms: self.heartbeat_interval_ms,
        }
    }

    pub(crate) fn raft_config(&self) -> Result<openraft::Config, NodeError> {
        openraft::Config {
            cluster_name: "canon".into(),
            // With `enable_elect` off, openraft reads its election timeouts only for its leader
            // lease: it refuses votes for `election_timeout_max` after hearing a leader. The
            // pre-vote refuses for `election_timeout_ms_min` (policy::election); the lease is
            // set to the same window, so a pre-vote that passes is a vote openraft grants.
            election_timeout_min: self.heartbeat_interval_ms + 1,
            election_timeout_max: self
                .election_timeout_ms_min
                .max(self.heartbeat_interval_ms + 2),
            heartbeat_interval: self.heartbeat_interval_ms,
            // openraft 0.9 gives one AppendEntries `heartbeat_interval` to complete: with
            // blocks of thousands of transactions, 64 entries (megabytes to decode and fsync)
            // never made it, so a lagging follower never caught up and a leader without quorum
            // stepped down, again and again. A few blocks per request keep each one short.
            max_payload_entries: 4,
            // The chain store keeps the blocks; the log keeps only what some node may still
            // need replicated. A snapshot is the applied state without blocks, so building
            // one costs the state, not the chain (see `raft::state_machine`).
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_interval_entries),
            max_in_snapshot_log_to_keep: self.log_keep_entries,
            // Elections are decided by `policy::election` and started by the node's driver.
            enable_elect: false,
            ..Default::default()
        }
        .validate()
        .map_err(|e| NodeError::Config(e.to_string()))
    }
}

/// Bugs the simulator can plant in a node to prove a checker fires (`CANON_SIM_PLANT`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Plant {
    #[default]
    None,
    /// Linearizable reads skip the read index and answer from this node's applied state.
    StaleReads,
    /// A node that installs a snapshot never downloads the blocks it jumped over: the gap
    /// stays open (a bug `canon-sim shrink` is shown on).
    ForgetGap,
    /// Reads of stored blocks skip the checksum check (the host wraps its store so).
    UncheckedBlockReads,
    /// No journal on a disk that may tear batches (the host wraps its store so).
    NoJournal,
}

//! What a consensus node reports of itself: its Raft state, chain head, pipeline and L1
//! batches, as status endpoints and tables read them.

use serde::{Deserialize, Serialize};

use crate::chain::rules::Head;
use crate::ids::NodeId;

/// A point-in-time view for status endpoints and tables.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: NodeId,
    pub state: RaftState,
    pub is_leader: bool,
    pub current_leader: Option<NodeId>,
    pub term: u64,
    pub last_log_index: Option<u64>,
    pub last_applied_index: Option<u64>,
    pub head: Head,
    pub mempool_len: usize,
    /// The leader's proposals waiting for canonization (0 on a follower).
    pub proposals_in_flight: usize,
    /// Blocks below the head still to be fetched after installing a snapshot.
    pub blocks_missing: u64,
    /// Entries in the Raft log (the rest were compacted into a snapshot and purged).
    pub log_entries: u64,
    /// The last entry the latest Raft snapshot includes.
    pub last_snapshot_index: Option<u64>,
    pub batches: BatchStatus,
    /// The Raft membership in effect, as the log holds it (the configured peers are only the
    /// first one).
    pub membership: MembershipStatus,
}

/// Who votes and who only learns, and the log entry that set it (`None`: the initial one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipStatus {
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    pub log_index: Option<u64>,
    /// During a change (a joint configuration): the voters it is headed for. A change a
    /// leader's crash left here is finished by asking for it again.
    pub changing_to: Option<Vec<NodeId>>,
}

/// A node's place in Raft, as status shows it (openraft's server state, or none at all).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RaftState {
    Leader,
    Follower,
    Candidate,
    Learner,
    Shutdown,
    /// External nodes and group members take no part in Raft.
    NotInRaft,
}

impl RaftState {
    /// The name `/status` gives it.
    pub fn name(self) -> &'static str {
        match self {
            RaftState::Leader => "Leader",
            RaftState::Follower => "Follower",
            RaftState::Candidate => "Candidate",
            RaftState::Learner => "Learner",
            RaftState::Shutdown => "Shutdown",
            RaftState::NotInRaft => "NotInRaft",
        }
    }
}

impl From<openraft::ServerState> for RaftState {
    fn from(s: openraft::ServerState) -> RaftState {
        match s {
            openraft::ServerState::Leader => RaftState::Leader,
            openraft::ServerState::Follower => RaftState::Follower,
            openraft::ServerState::Candidate => RaftState::Candidate,
            openraft::ServerState::Learner => RaftState::Learner,
            openraft::ServerState::Shutdown => RaftState::Shutdown,
        }
    }
}

/// What a node does for L1 batches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BatchDuty {
    /// Holds the batcher role and submits.
    Batcher,
    /// Runs a batcher that stands by while another holds the role.
    Standby,
    /// Runs no batcher: seals and attests only.
    #[default]
    Attester,
}

impl BatchDuty {
    /// The name `/status` gives it.
    pub fn name(self) -> &'static str {
        match self {
            BatchDuty::Batcher => "batcher",
            BatchDuty::Standby => "standby",
            BatchDuty::Attester => "attester",
        }
    }
}

/// Where L1 batches stand on this node.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchStatus {
    /// `batcher` while this node holds the role and submits, `standby` while another does,
    /// `attester` when its batcher is not enabled.
    pub role: BatchDuty,
    /// This node's `batcher_redundancy_level` (batcher enabled only).
    pub level: Option<u32>,
    /// The role as Raft applied it: its epoch (0: never claimed), holder and holder's level.
    pub epoch: u64,
    pub holder: Option<NodeId>,
    pub holder_level: Option<u32>,
    /// A standby's batch rounds in which L1 stood still while batches waited.
    pub missed_rounds: Option<u32>,
    /// Misconfiguration: the node holding the role has this node's level.
    pub same_level_conflict: Option<NodeId>,
    pub last_sealed: u64,
    pub last_sealed_height: u64,
    /// This node's own attestation is written with the batch it seals, so it is always the
    /// last sealed one.
    pub last_attested: u64,
    /// The batcher or standby: the last batch and height it saw on L1 (read or committed).
    pub last_committed_l1: Option<u64>,
    pub last_committed_l1_height: Option<u64>,
    /// The batcher: sealed batches not yet on L1.
    pub l1_lag_batches: Option<u64>,
    /// The batcher: the last L1 error (cleared by the next success).
    pub last_l1_error: Option<String>,
}

/// What a running batcher publishes for status.
#[derive(Clone, Debug, Default)]
pub struct BatcherState {
    pub level: u32,
    /// A standby's count of batch rounds in which L1 stood still while batches waited.
    pub missed_rounds: u32,
    pub l1_batch: Option<u64>,
    pub l1_height: Option<u64>,
    pub last_error: Option<String>,
}

/// Entries between the purge point (exclusive) and the last log index (inclusive).
pub(crate) fn log_entries(last_log_index: Option<u64>, purged_index: Option<u64>) -> u64 {
    match (last_log_index, purged_index) {
        (Some(last), Some(purged)) => last.saturating_sub(purged),
        // Nothing purged: indexes start at 0.
        (Some(last), None) => last + 1,
        (None, _) => 0,
    }
}

//! The status server (`GET /status`) and the Prometheus endpoint (`GET /metrics`).

use std::sync::Arc;

use alloy_primitives::B256;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use canon_engine::consensus::status::RaftState;
use canon_engine::NodeId;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use canon_engine::external::core::{EquivocationSeen, SourceState};
use canon_engine::redundancy::group::GroupStatus;

use crate::context::{NodeContext, Role};
use crate::http_serve::{serve, HttpBounds};

/// A consensus node's Raft log compaction, for `/status`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogView {
    /// Entries in the Raft log: at most about a snapshot interval plus the entries kept.
    pub entries: u64,
    /// The last entry the latest snapshot includes.
    pub last_snapshot_index: Option<u64>,
    /// Blocks below the head not yet downloaded after installing a snapshot (0 normally).
    pub blocks_missing: u64,
}

/// What kind of node answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeKind {
    /// A consensus node.
    Main,
    External,
    /// A member of a hot-standby group.
    SingleSequencer,
}

impl NodeKind {
    /// The name `/status` gives it.
    pub fn name(self) -> &'static str {
        match self {
            NodeKind::Main => "main",
            NodeKind::External => "external",
            NodeKind::SingleSequencer => "single-sequencer",
        }
    }
}

/// What `/status` and `canon_status` answer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StatusView {
    pub node_id: NodeId,
    /// `main` (consensus), `external`, or `single-sequencer` (a member of a hot-standby group).
    pub role: NodeKind,
    /// The application the chain runs: `ledger` or `kv`.
    #[serde(default)]
    pub application: String,
    /// Raft's view of this node: Leader, Follower, Candidate, Learner, Shutdown, or NotInRaft.
    pub raft_state: RaftState,
    pub is_leader: bool,
    pub current_leader: Option<NodeId>,
    pub term: u64,
    pub last_canonized_height: u64,
    pub last_applied_height: u64,
    /// Consensus nodes: every block held up to this height has a commit certificate (what
    /// the node serves); external nodes apply only certified blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certified_height: Option<u64>,
    pub head_hash: B256,
    pub batcher_enabled: bool,
    /// Peers (consensus nodes, or an external node's sources) with an open authenticated
    /// connection from this node.
    pub connected_peers: Vec<NodeId>,
    pub mempool_size: usize,
    /// Consensus nodes: the leader's blocks proposed and not yet canonized (pipelined).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposals_in_flight: Option<usize>,
    pub last_log_index: Option<u64>,
    pub last_applied_index: Option<u64>,
    /// Consensus nodes: Raft log compaction, and the blocks still to download after a snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogView>,
    /// External nodes: blocks behind the best source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_source_height: Option<u64>,
    /// External nodes: each source's head, failures and whether it was dropped (and why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<SourceState>>,
    /// Single-sequencer mode: level, mode (active, standing-by, ...), the active signer's level,
    /// missed-rounds counter, why it stepped in, the signing guard's watermark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redundancy: Option<GroupStatus>,
    /// Followers of a single-sequencer identity: two different blocks it signed at one height,
    /// and which branch the fork rule kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub equivocations: Vec<EquivocationSeen>,
    /// Consensus nodes: L1 batches (role, epoch, last sealed and attested, last committed on
    /// L1 and the lag, the last L1 error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batcher: Option<canon_engine::consensus::status::BatchStatus>,
    /// Consensus nodes: the Raft membership in effect (voters, learners, the entry that set
    /// it), which survives restarts in the log; the configured peers were only the first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership: Option<canon_engine::consensus::status::MembershipStatus>,
}

impl NodeContext {
    pub fn status_view(&self) -> StatusView {
        let connected_peers = self.transport.connected_peers();
        self.metrics
            .connected_peers
            .set(connected_peers.len() as i64);
        match &self.role {
            Role::Consensus(node) => {
                let s = node.status();
                self.metrics.mempool_size.set(s.mempool_len as i64);
                self.metrics.raft_log_entries.set(s.log_entries as i64);
                self.metrics.blocks_missing.set(s.blocks_missing as i64);
                self.metrics
                    .raft_voters
                    .set(s.membership.voters.len() as i64);
                self.metrics
                    .raft_learners
                    .set(s.membership.learners.len() as i64);
                let canonized = node.canonized_height();
                self.metrics.canonized_height.set(canonized as i64);
                StatusView {
                    application: self.spec.app.kind().to_string(),
                    node_id: s.id,
                    role: NodeKind::Main,
                    raft_state: s.state,
                    is_leader: s.is_leader,
                    current_leader: s.current_leader,
                    term: s.term,
                    last_canonized_height: canonized,
                    last_applied_height: s.head.height,
                    certified_height: Some(node.chain().certified_through()),
                    head_hash: s.head.hash,
                    batcher_enabled: self.batcher_enabled,
                    connected_peers,
                    mempool_size: s.mempool_len,
                    proposals_in_flight: Some(s.proposals_in_flight),
                    last_log_index: s.last_log_index,
                    last_applied_index: s.last_applied_index,
                    log: Some(LogView {
                        entries: s.log_entries,
                        last_snapshot_index: s.last_snapshot_index,
                        blocks_missing: s.blocks_missing,
                    }),
                    lag: None,
                    best_source_height: None,
                    sources: None,
                    redundancy: None,
                    equivocations: Vec::new(),
                    batcher: Some(s.batches),
                    membership: Some(s.membership),
                }
            }
            Role::External(x) => {
                let s = x.status();
                self.metrics.replay_lag_blocks.set(s.lag as i64);
                self.metrics.canonized_height.set(s.head.height as i64);
                StatusView {
                    application: self.spec.app.kind().to_string(),
                    node_id: s.id,
                    role: NodeKind::External,
                    raft_state: RaftState::NotInRaft,
                    is_leader: false,
                    current_leader: None,
                    term: 0,
                    last_canonized_height: s.head.height,
                    last_applied_height: s.head.height,
                    certified_height: Some(s.head.height),
                    head_hash: s.head.hash,
                    batcher_enabled: false,
                    connected_peers,
                    mempool_size: 0,
                    proposals_in_flight: None,
                    last_log_index: None,
                    last_applied_index: None,
                    log: None,
                    lag: Some(s.lag),
                    best_source_height: Some(s.best_source_height),
                    sources: Some(s.sources),
                    redundancy: None,
                    equivocations: s.equivocations,
                    batcher: None,
                    membership: None,
                }
            }
            Role::Group(m) => {
                let g = m.status();
                let sync = m.sync().status();
                self.metrics.observe_group(&g);
                self.metrics.mempool_size.set(g.mempool_len as i64);
                self.metrics.canonized_height.set(g.head.height as i64);
                StatusView {
                    application: self.spec.app.kind().to_string(),
                    node_id: g.id,
                    role: NodeKind::SingleSequencer,
                    raft_state: RaftState::NotInRaft,
                    is_leader: g.mode == canon_engine::policy::redundancy::MemberMode::Active,
                    current_leader: None,
                    term: 0,
                    last_canonized_height: g.head.height,
                    last_applied_height: g.head.height,
                    certified_height: None,
                    head_hash: g.head.hash,
                    batcher_enabled: false,
                    connected_peers,
                    mempool_size: g.mempool_len,
                    proposals_in_flight: None,
                    last_log_index: None,
                    last_applied_index: None,
                    log: None,
                    lag: Some(sync.lag),
                    best_source_height: Some(sync.best_source_height),
                    sources: Some(sync.sources),
                    redundancy: Some(g),
                    equivocations: sync.equivocations,
                    batcher: None,
                    membership: None,
                }
            }
        }
    }
}

async fn status(State(ctx): State<Arc<NodeContext>>) -> Json<StatusView> {
    Json(ctx.status_view())
}

async fn metrics(State(ctx): State<Arc<NodeContext>>) -> impl IntoResponse {
    // Refreshes the gauges that describe the present before rendering.
    let _ = ctx.status_view();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        ctx.metrics.render(),
    )
}

pub async fn serve_status(
    listener: TcpListener,
    ctx: Arc<NodeContext>,
    bounds: HttpBounds,
    stop: CancellationToken,
) {
    let app = Router::new().route("/status", get(status)).with_state(ctx);
    serve(listener, app, bounds, stop, "status").await;
}

pub async fn serve_metrics(
    listener: TcpListener,
    ctx: Arc<NodeContext>,
    bounds: HttpBounds,
    stop: CancellationToken,
) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(ctx);
    serve(listener, app, bounds, stop, "metrics").await;
}

//! The production node: the engine on openraft's tokio runtime, RocksDB storage, the TCP
//! transport, and the status, metrics and JSON-RPC servers, until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use canon_engine::clock::Clock;
use canon_engine::consensus::config::NodeConfig;
use canon_engine::consensus::node::ConsensusNode;
use canon_engine::external::node::{ExternalConfig, ExternalNode, Trust};
use canon_engine::keys::SecretKey;
use canon_engine::net::transport::BoxFuture;
use canon_engine::policy::redundancy::{Level, RedundancyConfig};
use canon_engine::redundancy::group::{GroupConfig, GroupMember};
use canon_engine::seams::Seams;
use canon_engine::NodeId;
use openraft::TokioRuntime;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{NodeRole, Validated};
pub use crate::context::{NodeContext, ProductionExternal, ProductionNode, Role};
use crate::event_log::EventLog;
use crate::metrics::{now_ms, Metrics};
use crate::p2p::{Delivery, Handler, Local, TcpAcceptor, TcpDialer, TcpTransport};
use crate::storage::RocksStorage;

struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        now_ms()
    }
}

impl Handler for Role {
    fn handle(self: Arc<Self>, delivery: Delivery, body: Vec<u8>) -> BoxFuture<'static, Vec<u8>> {
        let from = delivery.from;
        Box::pin(async move {
            match &*self {
                Role::Consensus(n) => n.handle_request(from, &body).await,
                Role::External(x) => x.handle_request(from, &body).await,
                Role::Group(m) => m.handle_request(from, &body).await,
            }
        })
    }
}

/// A network key from the OS's randomness (a secp256k1 secret is almost any 32 bytes).
fn fresh_network_key() -> SecretKey {
    loop {
        let mut bytes = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
        if let Ok(key) = SecretKey::from_bytes(bytes) {
            return key;
        }
    }
}

/// A start-up failure, naming the setting (or path) at fault.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct StartError {
    pub key: String,
    pub message: String,
}

fn fail(key: &str, message: impl std::fmt::Display) -> StartError {
    StartError {
        key: key.into(),
        message: message.to_string(),
    }
}

fn inbound_limits(s: &crate::config::Settings) -> canon_engine::net::p2p::InboundLimits {
    canon_engine::net::p2p::InboundLimits {
        handshaking: s.network_max_handshakes.max(1),
        handshaking_per_address: s.network_max_handshakes_per_address.max(1),
        handshake_timeout: std::time::Duration::from_millis(s.network_handshake_timeout_ms.max(1)),
        connections: s.network_max_connections.max(1),
        per_peer: s.network_max_connections_per_peer.max(1),
        in_flight: s.network_max_requests_per_connection.max(1),
        ..canon_engine::net::p2p::InboundLimits::default()
    }
}

fn mempool_bounds(s: &crate::config::Settings) -> canon_engine::consensus::mempool::MempoolBounds {
    canon_engine::consensus::mempool::MempoolBounds {
        total: s.sequencer_mempool_capacity,
        per_lane: s.sequencer_mempool_per_sender,
    }
}

/// `host:port`, with an IPv6 host in brackets.
fn listen_on(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

async fn bind(key: &str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| fail(key, format!("cannot listen on {addr}: {e}")))
}

fn parse_addr(key: &str, s: &str) -> Result<SocketAddr, StartError> {
    s.parse()
        .map_err(|e| fail(key, format!("{s:?} is not ip:port: {e}")))
}

pub fn node_config(v: &Validated) -> NodeConfig {
    let s = &v.settings;
    NodeConfig {
        key: v.key.clone(),
        peers: v.peers.clone(),
        boot_peers: v.boot_nodes.iter().map(|(id, _)| *id).collect(),
        bootstrap: s.consensus_bootstrap,
        election_timeout_ms_min: s.consensus_election_timeout_min,
        election_timeout_ms_max: s.consensus_election_timeout_max,
        heartbeat_interval_ms: s.consensus_heartbeat_interval,
        block_time_ms: s.sequencer_block_time,
        max_block_transactions: s.sequencer_max_block_transactions,
        max_blocks_in_flight: s.sequencer_max_blocks_in_flight,
        snapshot_interval_entries: s.consensus_snapshot_interval_entries,
        log_keep_entries: s.consensus_log_keep_entries,
        mempool: mempool_bounds(s),
        rpc_timeout_ms: 2_000,
        batch_timeout_ms: s.batcher_batch_timeout_ms,
        chain: v.chain.clone(),
        plant: canon_engine::consensus::config::Plant::None,
    }
}

/// Runs the node until SIGINT or SIGTERM (or `stop` is cancelled), then shuts down cleanly:
/// servers stop accepting, Raft stops, RocksDB is closed.
pub async fn run(v: Validated, stop: CancellationToken) -> Result<(), StartError> {
    let s = &v.settings;
    let external = s.general_node_role == NodeRole::External;
    if external && v.boot_nodes.is_empty() {
        return Err(fail(
            "network_boot_nodes",
            "an external node downloads blocks from its boot nodes; name at least one",
        ));
    }
    if !s.network_enabled && v.group.is_some() && !v.boot_nodes.is_empty() {
        return Err(fail(
            "network_enabled",
            "the group's members (network_boot_nodes) are reached over the network; set it to true",
        ));
    }
    if !s.network_enabled && (external || (v.group.is_none() && v.peers.len() > 1)) {
        return Err(fail(
            "network_enabled",
            "Raft traffic between consensus_peer_ids needs the network; set it to true",
        ));
    }
    let cwd = std::env::current_dir().map_err(|e| fail("general_rocks_db_path", e))?;
    let db_path = crate::config::db_path(s, &cwd);
    // Every port first: a clash fails before anything touches the database.
    let p2p_addr = parse_addr(
        "network_port",
        &listen_on(&s.network_address, s.network_port),
    )?;
    let p2p_listener = bind("network_port", p2p_addr).await?;
    let status_listener = if s.status_server_enabled {
        let addr = parse_addr("status_server_address", &s.status_server_address)?;
        Some(bind("status_server_address", addr).await?)
    } else {
        None
    };
    let metrics_addr = parse_addr(
        "observability_prometheus_address",
        &listen_on(
            &s.observability_prometheus_address,
            s.observability_prometheus_port,
        ),
    )?;
    let metrics_listener = bind("observability_prometheus_port", metrics_addr).await?;
    let rpc_addr = parse_addr("rpc_address", &s.rpc_address)?;
    let admin_listener = match &v.admin_token {
        Some(_) if s.general_node_role == NodeRole::Main && s.consensus_enabled => {
            let addr = parse_addr("admin_address", &s.admin_address)?;
            Some(bind("admin_address", addr).await?)
        }
        _ => None,
    };

    // A group member advertises a network identity new at every start (the seed's hot
    // standbys): the identity's key shows only in what it signs. Its database is the identity's.
    let (network_key, owner) = match &v.group {
        Some(g) => (fresh_network_key(), g.identity.node_id()),
        None => (v.key.clone(), v.node_id),
    };
    let storage = Arc::new(RocksStorage::open(&db_path, owner).map_err(|e| fail("storage", e))?);
    let metrics = Arc::new(Metrics::new());
    let events: Arc<dyn canon_engine::events::EventSink> = Arc::new(EventLog::new(metrics.clone()));
    let local = Local::new(network_key.clone(), v.chain.chain_id, events.clone(), None);
    let dialer = TcpDialer::new(&v.boot_nodes);
    let learned_addresses = dialer.learned();
    let transport = Arc::new(TcpTransport::new(local.clone(), dialer));
    let seams = Seams {
        storage: storage.clone(),
        transport: Arc::new(crate::reachability::WatchedTransport::new(
            transport.clone(),
            metrics.clone(),
        )),
        clock: Arc::new(SystemClock),
        events: events.clone(),
        verifier: Arc::new(crate::verifier::ParallelVerifier),
    };
    let role = if let Some(g) = &v.group {
        let cfg = GroupConfig {
            identity: g.identity.clone(),
            network_key: network_key.clone(),
            redundancy: RedundancyConfig {
                level: Level::from_config(g.level),
                max_missed_rounds: g.max_missed_rounds,
            },
            members: v.boot_nodes.iter().map(|(id, _)| *id).collect(),
            chain: v.chain.clone(),
            genesis_ms: s.genesis_timestamp_ms,
            block_time_ms: s.sequencer_block_time,
            max_block_transactions: s.sequencer_max_block_transactions,
            mempool: mempool_bounds(s),
            request_timeout_ms: 2_000,
            fencing: g.fencing,
        };
        Role::Group(
            GroupMember::<TokioRuntime>::start(cfg, seams)
                .await
                .map_err(|e| fail("node", e))?,
        )
    } else if external {
        let mut cfg = ExternalConfig::new(
            v.key.clone(),
            v.boot_nodes.iter().map(|(id, _)| *id).collect(),
            v.peers.clone(),
            v.chain.clone(),
        );
        cfg.request_timeout_ms = 5_000;
        cfg.trust = Trust::Certificates {
            verify_every_signature: v.settings.external_verify_every_signature,
        };
        Role::External(
            ExternalNode::<TokioRuntime>::start(cfg, seams)
                .await
                .map_err(|e| fail("node", e))?,
        )
    } else {
        Role::Consensus(
            ConsensusNode::<TokioRuntime>::start(node_config(&v), seams)
                .await
                .map_err(|e| fail("node", e))?,
        )
    };
    let role_name = match (&v.group, external) {
        (Some(_), _) => "single-sequencer",
        (None, true) => "external",
        (None, false) => "main",
    };
    // The other machines this role talks to: Raft's other voters, an external node's sources,
    // a group member's fellow members.
    let peers = match &role {
        Role::Consensus(_) => v.peers.iter().filter(|p| **p != v.node_id).count(),
        Role::External(_) | Role::Group(_) => v.boot_nodes.len(),
    };
    tracing::info!(
        node_id = %network_key.node_id(), role = role_name, %p2p_addr,
        db = %db_path.display(), peers, application = v.chain.app.kind(),
        client_auth = v.client_token.is_some(), "node started"
    );
    if let Some(g) = &v.group {
        tracing::info!(
            identity = %g.identity.node_id(), level = g.level,
            max_missed_rounds = g.max_missed_rounds, other_members = v.boot_nodes.len(),
            "single-sequencer mode: this network identity is new at every start"
        );
    }
    metrics.set_application(v.chain.app.kind());
    let ctx = Arc::new(NodeContext {
        role: role.clone(),
        spec: v.chain.clone(),
        transport: transport.clone(),
        metrics: metrics.clone(),
        batcher_enabled: s.batcher_enabled && !external,
        client_token: v.client_token.clone(),
        kv_requests: crate::context::RequestIds::new(rand::random()),
        max_transactions_per_call: s.rpc_max_transactions_per_call,
    });
    let servers = stop.child_token();
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(
        canon_engine::net::p2p::serve::<TokioRuntime, _>(
            TcpAcceptor::new(p2p_listener),
            local,
            Arc::new(role.clone()),
            inbound_limits(s),
            servers.clone(),
        ),
    ));
    if let Some(l) = status_listener {
        tasks.push(tokio::spawn(crate::http::serve_status(
            l,
            ctx.clone(),
            crate::http_serve::HttpBounds::of(s),
            servers.clone(),
        )));
    }
    tasks.push(tokio::spawn(crate::http::serve_metrics(
        metrics_listener,
        ctx.clone(),
        crate::http_serve::HttpBounds::of(s),
        servers.clone(),
    )));
    match &role {
        Role::Consensus(node) => tasks.push(tokio::spawn(watch_leader(
            node.clone(),
            metrics.clone(),
            servers.clone(),
        ))),
        Role::External(x) => tasks.push(tokio::spawn(sample_replay(
            x.clone(),
            metrics.clone(),
            servers.clone(),
        ))),
        Role::Group(m) => tasks.push(tokio::spawn(sample_replay(
            m.sync().clone(),
            metrics.clone(),
            servers.clone(),
        ))),
    }
    if let Role::Consensus(node) = &role {
        connect_l1(&v, node)?;
        let weak = Arc::downgrade(node);
        let _ = learned_addresses.set(Box::new(move |id| weak.upgrade()?.member_address(id)));
        if let (Some(listener), Some(token)) = (admin_listener, v.admin_token.clone()) {
            tracing::info!(address = %s.admin_address, "admin interface up");
            tasks.push(tokio::spawn(crate::admin::serve_admin(
                listener,
                node.clone(),
                token,
                crate::http_serve::HttpBounds::of(s),
                servers.clone(),
            )));
        }
    }
    let rpc = crate::rpc::start(rpc_addr, crate::rpc::Limits::of(s), ctx.clone())
        .await
        .map_err(|e| fail("rpc_address", e))?;

    // A consensus node that read a corrupt record stops itself; the process then exits
    // non-zero so its supervisor starts it again, and the start-up scrub repairs.
    let damaged = async {
        match &role {
            Role::Consensus(node) => Some(node.stopped_by_damage().await),
            _ => std::future::pending().await,
        }
    };
    let damage = tokio::select! {
        () = wait_for_signal(&stop) => None,
        d = damaged => d,
    };
    if let Some(d) = &damage {
        tracing::error!("stopping on a corrupt read, to repair at the next start: {d}");
    }
    tracing::info!("shutting down");
    servers.cancel();
    let _ = rpc.stop();
    match &role {
        Role::Consensus(node) => node.shutdown().await,
        Role::External(x) => x.shutdown(),
        Role::Group(m) => m.shutdown(),
    }
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    rpc.stopped().await;
    drop(ctx);
    drop(role);
    tracing::info!("stopped");
    match damage {
        Some(d) => Err(fail(
            "storage",
            format!(
                "a corrupt read ({d}): restart the node; its start-up scrub repairs from peers"
            ),
        )),
        None => Ok(()),
    }
}

/// Connects a consensus node to the settlement contract, when one is configured: with
/// `batcher_enabled` it runs the batcher; without, it only reads L1's head (as leader, before
/// it removes a voter whose attestations L1 may still need).
fn connect_l1(v: &Validated, node: &Arc<ProductionNode>) -> Result<(), StartError> {
    let s = &v.settings;
    let Some(address) = v.l1_settlement else {
        if s.batcher_enabled {
            tracing::warn!(
                "batcher_enabled, but no l1_settlement_address: batches are sealed and attested, \
                 nothing is committed to L1 (deploy the contract with `canon-node l1 deploy`)"
            );
        }
        return Ok(());
    };
    let key = match &v.batcher_l1_key {
        Some(k) => k.clone(),
        None => {
            if s.batcher_enabled {
                tracing::warn!(
                    "no batcher_l1_secret_key: paying L1 from anvil's public development account"
                );
            }
            SecretKey::from_hex(crate::l1::ANVIL_DEV_KEY)
                .map_err(|e| fail("batcher_l1_secret_key", e))?
        }
    };
    let l1 = crate::l1::L1::connect(&s.general_l1_rpc_url, &key)
        .map_err(|e| fail("general_l1_rpc_url", e))?;
    let l1 = Arc::new(crate::l1::SettlementL1 { l1, address });
    if !s.batcher_enabled {
        node.read_l1(l1);
        return Ok(());
    }
    tracing::info!(
        %address,
        url = %s.general_l1_rpc_url,
        level = s.batcher_redundancy_level,
        "batcher started"
    );
    node.start_batcher(canon_engine::settlement::batcher_core::BatcherSetup {
        l1,
        level: s.batcher_redundancy_level,
        max_missed_rounds: u32::try_from(s.redundancy_max_missed_rounds).unwrap_or(u32::MAX),
        round_ms: canon_engine::settlement::batcher_core::batch_round_ms(
            s.batcher_batch_timeout_ms,
            s.batcher_blocks_per_batch,
            s.sequencer_block_time,
        ),
        poll_interval_ms: 100,
        retry_ms_min: 250,
        retry_ms_max: 5_000,
    });
    Ok(())
}

async fn wait_for_signal(stop: &CancellationToken) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("cannot listen for SIGTERM: {e}");
            None
        }
    };
    let sigterm = async {
        match term.as_mut() {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
        _ = sigterm => tracing::info!("SIGTERM"),
    }
}

/// Counts leader changes as Raft reports them (Raft may be reopened, so the watch is renewed).
async fn watch_leader(node: Arc<ProductionNode>, metrics: Arc<Metrics>, stop: CancellationToken) {
    let mut last: Option<NodeId> = None;
    loop {
        let mut rx = node.raft().metrics();
        loop {
            let leader = rx.borrow_and_update().current_leader;
            if leader != last {
                if leader.is_some() {
                    metrics.leader_changed();
                }
                tracing::info!(leader = ?leader.map(|l| l.to_string()), "leader");
                last = leader;
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                changed = rx.changed() => if changed.is_err() { break },
            }
        }
        // This Raft instance ended (reopened); pick up the new one.
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

/// Replay rate and lag for an external node's metrics, sampled once a second.
async fn sample_replay(
    node: Arc<ProductionExternal>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut last = node.head().height;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let status = node.status();
        metrics
            .replay_rate_blocks_per_second
            .set(status.head.height.saturating_sub(last) as i64);
        metrics.replay_lag_blocks.set(status.lag as i64);
        last = status.head.height;
    }
}

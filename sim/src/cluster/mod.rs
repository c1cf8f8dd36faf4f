//! The madsim cluster builder: N consensus nodes with seeded keys on simulated hosts, each with
//! its own disk and clock, plus the fault controls scenarios drive.

use crate::l1::SimL1;
use canon_engine::settlement::batcher_core::BatcherSetup;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy_primitives::B256;
use canon_engine::chain::block::ChainSpec;
use canon_engine::consensus::config::NodeConfig;
use canon_engine::consensus::config::Plant;
use canon_engine::consensus::node::ConsensusNode;
use canon_engine::keys::SecretKey;
use canon_engine::storage::MemDisk;
use canon_engine::NodeId;
use madsim::runtime::{Handle, NodeHandle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::checker::Checker;
use crate::host::ExternalSlot;
use crate::lying_peer::ServingLieSlot;
use crate::net::{SimNet, CHAIN_ID, PORT};
pub use crate::observer::{Observer, SharedObserver};
use crate::runtime::MadsimRuntime;

mod checks;
mod faults;
mod host_node;

use host_node::{run_node, NodeParts};

pub type SimNode = ConsensusNode<MadsimRuntime>;

pub use canon_engine::keys::SEED_SECRET_KEYS;

#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// The consensus nodes at genesis (`consensus_peer_ids`).
    pub nodes: usize,
    /// Machines set up beyond them, not started and in no membership until a scenario starts
    /// one ([`SimCluster::join`]) and a leader adds it: nodes `nodes..nodes + spares`.
    pub spares: usize,
    pub election_timeout_ms_min: u64,
    pub election_timeout_ms_max: u64,
    pub heartbeat_interval_ms: u64,
    pub block_time_ms: u64,
    pub max_block_transactions: usize,
    /// The leader's proposals waiting for canonization at once.
    pub max_blocks_in_flight: usize,
    /// Funded client accounts.
    pub accounts: usize,
    /// Each node's wall clock is off by up to this much, either way.
    pub clock_skew_ms_max: u64,
    /// L1 batches close every this many blocks...
    pub blocks_per_batch: u64,
    /// ...or once the open batch is this old (the leader marks the closing block).
    pub batch_timeout_ms: u64,
    /// The nodes that run a batcher, each with its `batcher_redundancy_level` (the seed:
    /// exactly one, at level 0).
    pub batchers: Vec<(usize, u32)>,
    /// N: a level-L standby claims the role after L x N batch rounds of L1 standing still.
    pub batcher_max_missed_rounds: u32,
    /// The simulated L1's block time (anvil `--block-time 0.25` in the seed).
    pub l1_block_time_ms: u64,
    /// Raft snapshots every this many entries, and the entries kept behind one. Small by
    /// default, so every scenario that stops a node for a few seconds makes it install a
    /// snapshot and backfill blocks.
    pub snapshot_interval_entries: u64,
    pub log_keep_entries: u64,
    /// What the chain runs: the account ledger (the seeds' chain) or the key-value store.
    pub app: SimApp,
    /// A bug planted in every node (`CANON_SIM_PLANT=stale-reads`), to show a checker fires.
    pub plant: Plant,
    /// The nodes' disks may tear a batch at a crash (`crash-torn`): the store journals.
    pub disks_may_tear: bool,
}

/// The application a simulated chain runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SimApp {
    #[default]
    Ledger,
    Kv,
}

/// The bug `CANON_SIM_PLANT` names, if any: `stale-reads`, `forget-gap`,
/// `unchecked-block-reads`, `no-journal`.
pub fn planted() -> Plant {
    match std::env::var("CANON_SIM_PLANT").as_deref() {
        Ok("stale-reads") => Plant::StaleReads,
        Ok("forget-gap") => Plant::ForgetGap,
        Ok("unchecked-block-reads") => Plant::UncheckedBlockReads,
        Ok("no-journal") => Plant::NoJournal,
        _ => Plant::None,
    }
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            nodes: 3,
            spares: 0,
            election_timeout_ms_min: 150,
            election_timeout_ms_max: 300,
            heartbeat_interval_ms: 50,
            block_time_ms: 100,
            max_block_transactions: 256,
            max_blocks_in_flight: 4,
            accounts: 8,
            clock_skew_ms_max: 500,
            blocks_per_batch: canon_engine::chain::block::DEFAULT_BLOCKS_PER_BATCH,
            batch_timeout_ms: 1_500,
            batchers: vec![(0, 0)],
            batcher_max_missed_rounds: 5,
            l1_block_time_ms: 250,
            snapshot_interval_entries: 40,
            log_keep_entries: 10,
            app: SimApp::Ledger,
            plant: planted(),
            disks_may_tear: false,
        }
    }
}

impl ClusterConfig {
    /// How long after losing its leader the cluster must have a new one: a leader's silence is
    /// noticed after the lease plus an election timeout, and a split vote may need a few rounds.
    pub fn election_bound(&self) -> Duration {
        Duration::from_millis(self.election_timeout_ms_max * 8)
    }
}

type LiveSlot = Arc<Mutex<Option<Arc<SimNode>>>>;

struct Slot {
    key: SecretKey,
    skew_ms: Arc<AtomicI64>,
    /// How the node lies when it serves blocks, if it is made to (see `liar.rs`).
    serving_lie: ServingLieSlot,
    disk: MemDisk,
    handle: NodeHandle,
    live: LiveSlot,
    up: bool,
    /// Its start-up repair refused to let it start (see `policy::repair`): it stays out.
    halted: Arc<AtomicBool>,
    /// A spare not yet started, or a node retired for good: down, and no heal restarts it.
    out: bool,
}

pub struct SimCluster {
    pub cfg: ClusterConfig,
    pub net: SimNet,
    pub observer: SharedObserver,
    pub accounts: Vec<SecretKey>,
    pub spec: ChainSpec,
    /// Drives the scenario's own choices (which node to crash, what fault next), separate from
    /// madsim's RNG so the fault plan of a seed does not shift when engine internals change.
    pub rng: ChaCha8Rng,
    pub(crate) handle: Handle,
    slots: Vec<Slot>,
    peers: Vec<NodeId>,
    pub(crate) externals: Vec<ExternalSlot>,
    /// Who signs blocks when it is not the consensus peers: a redundancy group's identity.
    pub(crate) block_signer_override: Option<NodeId>,
    /// The L1 the batchers commit to.
    pub l1: SimL1,
}

fn derived_key(label: &str, i: usize) -> SecretKey {
    canon_engine::keys::derived_key(&format!("canon-sim/{label}"), i)
}

pub fn node_key(i: usize) -> SecretKey {
    SEED_SECRET_KEYS
        .get(i)
        .and_then(|k| SecretKey::from_hex(k).ok())
        .unwrap_or_else(|| derived_key("node", i))
}

pub fn account_key(i: usize) -> SecretKey {
    derived_key("account", i)
}

/// An account with no funds: every transfer it sends must be kept out of blocks.
pub fn pauper_key() -> SecretKey {
    derived_key("pauper", 0)
}

pub const GENESIS_BALANCE: u64 = 1_000_000_000;

pub(crate) fn node_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, (i + 1) as u8))
}

impl SimCluster {
    /// Starts the cluster. Call inside the madsim runtime.
    pub fn start(seed: u64, cfg: ClusterConfig) -> SimCluster {
        let handle = Handle::current();
        let keys: Vec<SecretKey> = (0..cfg.nodes + cfg.spares).map(node_key).collect();
        let all_ids: Vec<NodeId> = keys.iter().map(|k| k.node_id()).collect();
        let peers: Vec<NodeId> = all_ids[..cfg.nodes].to_vec();
        let accounts: Vec<SecretKey> = (0..cfg.accounts).map(account_key).collect();
        let app = match cfg.app {
            SimApp::Ledger => {
                canon_engine::app::App::new(canon_engine::app::ledger::LedgerApp::new(
                    accounts
                        .iter()
                        .map(|a| (a.address(), GENESIS_BALANCE))
                        .collect(),
                ))
            }
            SimApp::Kv => canon_engine::app::App::new(canon_engine::app::kv::KvApp),
        };
        let spec = ChainSpec {
            chain_id: CHAIN_ID,
            app,
            blocks_per_batch: cfg.blocks_per_batch,
        };
        let genesis_hash = spec
            .genesis_header()
            .and_then(|h| h.hash())
            .unwrap_or(B256::ZERO);
        let mut checker = Checker::new(keys.len(), genesis_hash);
        checker.set_genesis_members(cfg.nodes);
        checker.set_blocks_per_batch(cfg.blocks_per_batch);
        checker.set_node_ids(all_ids.clone());
        let mut watching = Observer::new(checker);
        watching.nodes = keys.len();
        let observer = SharedObserver::from(watching);
        let l1 = SimL1::new(
            handle.create_node().name("l1").build(),
            keys[..cfg.nodes].iter().map(|k| k.address()).collect(),
            cfg.l1_block_time_ms,
            observer.clone(),
        );
        let net = SimNet::new(
            all_ids
                .iter()
                .enumerate()
                .map(|(i, id)| (*id, SocketAddr::new(node_ip(i), PORT)))
                .collect(),
        );
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut slots = Vec::new();
        for (i, key) in keys.into_iter().enumerate() {
            let skew = Arc::new(AtomicI64::new(
                rng.gen_range(-(cfg.clock_skew_ms_max as i64)..=cfg.clock_skew_ms_max as i64),
            ));
            let spare = i >= cfg.nodes;
            let node_cfg = NodeConfig {
                key: key.clone(),
                peers: peers.clone(),
                // A genesis node is told of the genesis members; a spare of every machine
                // (its operator lists the current members, whichever they will be).
                boot_peers: if spare {
                    all_ids.clone()
                } else {
                    peers.clone()
                },
                // A spare joins a running chain: the leader adds it.
                bootstrap: !spare,
                election_timeout_ms_min: cfg.election_timeout_ms_min,
                election_timeout_ms_max: cfg.election_timeout_ms_max,
                heartbeat_interval_ms: cfg.heartbeat_interval_ms,
                block_time_ms: cfg.block_time_ms,
                max_block_transactions: cfg.max_block_transactions,
                max_blocks_in_flight: cfg.max_blocks_in_flight,
                mempool: canon_engine::consensus::mempool::MempoolBounds::total(10_000),
                snapshot_interval_entries: cfg.snapshot_interval_entries,
                log_keep_entries: cfg.log_keep_entries,
                rpc_timeout_ms: 500,
                batch_timeout_ms: cfg.batch_timeout_ms,
                chain: spec.clone(),
                plant: cfg.plant,
            };
            let disk = MemDisk::new();
            disk.set_may_tear(cfg.disks_may_tear);
            let live: LiveSlot = Arc::new(Mutex::new(None));
            let serving_lie = ServingLieSlot::default();
            let (d, l, n, o, k, lie) = (
                disk.clone(),
                live.clone(),
                net.clone(),
                observer.clone(),
                skew.clone(),
                serving_lie.clone(),
            );
            let level = cfg.batchers.iter().find(|(n, _)| *n == i).map(|(_, l)| *l);
            let batcher = level.map(|level| BatcherSetup {
                l1: Arc::new(l1.for_sender(i)),
                level,
                max_missed_rounds: cfg.batcher_max_missed_rounds,
                round_ms: canon_engine::settlement::batcher_core::batch_round_ms(
                    cfg.batch_timeout_ms,
                    cfg.blocks_per_batch,
                    cfg.block_time_ms,
                ),
                poll_interval_ms: 50,
                retry_ms_min: 100,
                retry_ms_max: 2_000,
            });
            let l1_reader: Arc<dyn canon_engine::settlement::l1::L1> = Arc::new(l1.for_sender(i));
            let me: Arc<std::sync::OnceLock<madsim::task::NodeId>> = Arc::default();
            let m = me.clone();
            let halted = Arc::new(AtomicBool::new(false));
            let h = halted.clone();
            let node = handle
                .create_node()
                .name(format!("n{i}"))
                .ip(node_ip(i))
                .init(move || {
                    run_node(NodeParts {
                        i,
                        me: m.clone(),
                        halted: h.clone(),
                        cfg: node_cfg.clone(),
                        disk: d.clone(),
                        net: n.clone(),
                        observer: o.clone(),
                        skew_ms: k.clone(),
                        live: l.clone(),
                        batcher: batcher.clone(),
                        l1: l1_reader.clone(),
                        serving_lie: lie.clone(),
                    })
                })
                .build();
            let _ = me.set(node.id());
            if spare {
                // Not started yet: a machine waiting for its operator.
                handle.kill(node.id());
            }
            slots.push(Slot {
                key,
                skew_ms: skew,
                serving_lie,
                disk,
                handle: node,
                live,
                up: !spare,
                halted,
                out: spare,
            });
        }
        SimCluster {
            cfg,
            net,
            observer,
            accounts,
            spec,
            rng,
            handle,
            slots,
            peers,
            externals: Vec::new(),
            block_signer_override: None,
            l1,
        }
    }

    pub fn size(&self) -> usize {
        self.slots.len()
    }

    /// Who may sign blocks: a redundancy group's identity, else the consensus peers.
    pub fn block_signers(&self) -> Vec<NodeId> {
        match self.block_signer_override {
            Some(identity) => vec![identity],
            None => self.peers().to_vec(),
        }
    }

    pub fn peers(&self) -> &[NodeId] {
        &self.peers
    }

    pub fn note(&self, what: impl AsRef<str>) {
        self.observer.lock().note(what);
    }

    /// Waits until node `i` stops leading (steps down or loses to a higher term) at or after
    /// `since` (simulated time since the run started); returns how long after `since`.
    pub async fn wait_for_leadership_end(
        &self,
        i: usize,
        since: Duration,
        bound: Duration,
    ) -> Result<Duration, String> {
        let start = Instant::now();
        loop {
            let ended = self
                .observer
                .lock()
                .leadership_ends
                .iter()
                .find(|(n, at)| *n == i && *at >= since)
                .map(|(_, at)| *at - since);
            if let Some(took) = ended {
                return Ok(took);
            }
            if start.elapsed() > bound {
                return Err(format!(
                    "n{i} still leads {:.3}s after it lost its quorum",
                    bound.as_secs_f64()
                ));
            }
            madsim::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Records what the scenario measured: its test asserts on it and `explore` sums it up.
    pub fn record(&self, name: &str, value: f64) {
        self.observer.lock().facts.push((name.to_string(), value));
    }

    pub fn node(&self, i: usize) -> Option<Arc<SimNode>> {
        let slot = self.slots.get(i)?;
        if !slot.up {
            return None;
        }
        canon_engine::sync::lock(&slot.live).clone()
    }

    pub fn is_up(&self, i: usize) -> bool {
        self.slots.get(i).is_some_and(|s| s.up)
    }

    /// Nodes up and not halted by their start-up repair.
    pub fn up_nodes(&self) -> Vec<usize> {
        (0..self.size())
            .filter(|i| self.is_up(*i) && !self.is_halted(*i))
            .collect()
    }

    /// Whether node `i` refused to start on damage it must not start with.
    pub fn is_halted(&self, i: usize) -> bool {
        self.slots
            .get(i)
            .is_some_and(|s| s.halted.load(Ordering::Relaxed))
    }

    pub fn down_nodes(&self) -> Vec<usize> {
        (0..self.size())
            .filter(|i| !self.is_up(*i) && !self.slots[*i].out)
            .collect()
    }

    /// A spare not yet started, or a node retired for good.
    pub fn is_out(&self, i: usize) -> bool {
        self.slots.get(i).is_some_and(|s| s.out)
    }

    /// Starts spare `i` in no membership: it waits for a leader to add it.
    pub fn join(&mut self, i: usize) {
        self.slots[i].out = false;
        self.note(format!("start n{i}, in no membership yet"));
        self.restart(i);
    }

    /// Node `i` crashes and never comes back (a machine that died for good).
    pub fn retire(&mut self, i: usize) {
        self.crash(i);
        self.slots[i].out = true;
        self.note(format!("fault: n{i} is gone for good"));
    }

    /// Node `i`'s disk, as it holds data now.
    pub(crate) fn disk(&self, i: usize) -> &MemDisk {
        &self.slots[i].disk
    }

    pub fn node_id(&self, i: usize) -> NodeId {
        self.slots[i].key.node_id()
    }

    /// The live leader with the highest term, if any node believes it leads.
    pub fn leader(&self) -> Option<usize> {
        self.up_nodes()
            .into_iter()
            .filter_map(|i| self.node(i).map(|n| (i, n.status())))
            .filter(|(_, s)| s.is_leader)
            .max_by_key(|(_, s)| s.term)
            .map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use canon_engine::codec;
    use canon_engine::net::wire::Response;

    /// A peer's garbage gets a refusal; a non-peer cannot drive Raft; the node keeps working.
    #[test]
    fn hostile_requests_are_refused_not_fatal() {
        let rt = madsim::runtime::Runtime::with_seed_and_config(1, madsim::Config::default());
        rt.block_on(async {
            let c = SimCluster::start(1, ClusterConfig::default());
            let all = c.up_nodes();
            let (leader, _) = c
                .wait_for_leader(&all, Duration::from_secs(10))
                .await
                .unwrap();
            let node = c.node(leader).unwrap();
            for junk in [
                vec![],
                vec![0xff; 3],
                vec![2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            ] {
                let resp = node.handle_request(c.node_id(0), &junk).await;
                assert!(matches!(
                    codec::decode::<Response>(&resp),
                    Ok(Response::Refused(_))
                ));
            }
            let stranger = account_key(77).node_id();
            let vote: canon_engine::net::wire::Request = canon_engine::net::wire::Request::Vote(
                openraft::raft::VoteRequest::new(openraft::Vote::new(1_000, stranger), None),
            );
            let resp = node
                .handle_request(stranger, &codec::encode(&vote).unwrap())
                .await;
            match codec::decode::<Response>(&resp) {
                Ok(Response::Refused(why)) => assert!(why.contains("is not a member"), "{why}"),
                _ => panic!("a non-peer's vote was not refused"),
            }
            let before = c.canonical_height();
            c.wait_for_progress(3, Duration::from_secs(10))
                .await
                .unwrap();
            assert!(c.canonical_height() >= before + 3);
            assert!(c.observer.lock().checker.violations().is_empty());
        });
    }
}

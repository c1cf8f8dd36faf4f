//! The madsim cluster builder: N consensus nodes with seeded keys on simulated hosts, each with
//! its own disk and clock, plus the fault controls scenarios drive.

use crate::l1::SimL1;
use canon_engine::app::ledger::{account_in, SignedTransaction};
use canon_engine::settlement::batcher_core::BatcherSetup;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use alloy_primitives::{Address, B256};
use canon_engine::chain::block::ChainSpec;
use canon_engine::consensus::config::NodeConfig;
use canon_engine::consensus::config::Plant;
use canon_engine::consensus::node::ConsensusNode;
use canon_engine::keys::SecretKey;
use canon_engine::seams::Seams;
use canon_engine::storage::{Column, MemDisk};
use canon_engine::NodeId;
use madsim::runtime::{Handle, NodeHandle};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::checker::Checker;
use crate::host::{ExternalSlot, NetHost, Serves, SimClock};
use crate::lying_peer::{LyingPeer, ServingLie, ServingLieSlot};
use crate::net::{SimNet, CHAIN_ID, PORT};
pub use crate::observer::{Observer, SharedObserver};
use crate::runtime::MadsimRuntime;

pub type SimNode = ConsensusNode<MadsimRuntime>;

pub use canon_engine::keys::SEED_SECRET_KEYS;

#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub nodes: usize,
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
        let keys: Vec<SecretKey> = (0..cfg.nodes).map(node_key).collect();
        let peers: Vec<NodeId> = keys.iter().map(|k| k.node_id()).collect();
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
        let mut checker = Checker::new(cfg.nodes, genesis_hash);
        checker.set_blocks_per_batch(cfg.blocks_per_batch);
        checker.set_node_ids(peers.clone());
        let mut watching = Observer::new(checker);
        watching.nodes = cfg.nodes;
        let observer = SharedObserver::from(watching);
        let l1 = SimL1::new(
            handle.create_node().name("l1").build(),
            keys.iter().map(|k| k.address()).collect(),
            cfg.l1_block_time_ms,
            observer.clone(),
        );
        let net = SimNet::new(
            peers
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
            let node_cfg = NodeConfig {
                key: key.clone(),
                peers: peers.clone(),
                bootstrap: true,
                election_timeout_ms_min: cfg.election_timeout_ms_min,
                election_timeout_ms_max: cfg.election_timeout_ms_max,
                heartbeat_interval_ms: cfg.heartbeat_interval_ms,
                block_time_ms: cfg.block_time_ms,
                max_block_transactions: cfg.max_block_transactions,
                max_blocks_in_flight: cfg.max_blocks_in_flight,
                mempool_capacity: 10_000,
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
                        serving_lie: lie.clone(),
                    })
                })
                .build();
            let _ = me.set(node.id());
            slots.push(Slot {
                key,
                skew_ms: skew,
                serving_lie,
                disk,
                handle: node,
                live,
                up: true,
                halted,
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
        (0..self.size()).filter(|i| !self.is_up(*i)).collect()
    }

    /// Crashes node `i`: its tasks die and its disk keeps synced data plus a random prefix of
    /// what was buffered. Half the crashes are power losses: the host's connections vanish
    /// without a word and its peers stay half-open until they give up on them or it comes back.
    pub fn crash(&mut self, i: usize) {
        if !self.is_up(i) {
            return;
        }
        let power_loss = self.rng.gen_bool(0.5);
        let pending = self.slots[i].disk.pending_batches();
        let keep = if pending == 0 {
            0
        } else {
            self.rng.gen_range(0..=pending)
        };
        self.crash_keeping(i, power_loss, keep);
    }

    /// [`SimCluster::crash`] with its choices made: a power loss or not, and `keep_permille`
    /// thousandths of the unsynced writes surviving (rounded down). Nothing if `i` is down.
    pub fn crash_as(&mut self, i: usize, power_loss: bool, keep_permille: u16) {
        if !self.is_up(i) {
            self.note(format!("fault: crash n{i} (already down)"));
            return;
        }
        let pending = self.slots[i].disk.pending_batches();
        let keep = pending * usize::from(keep_permille.min(1_000)) / 1_000;
        self.crash_keeping(i, power_loss, keep);
    }

    fn crash_keeping(&mut self, i: usize, power_loss: bool, keep: usize) {
        if power_loss {
            self.net.set_powered(i, false);
        }
        self.handle.kill(self.slots[i].handle.id());
        let lost = self.slots[i].disk.crash(keep);
        let slot = &mut self.slots[i];
        *canon_engine::sync::lock(&slot.live) = None;
        slot.up = false;
        let how = if power_loss { "power loss" } else { "process" };
        self.note(format!(
            "fault: crash n{i} ({how}; {lost} unsynced batches lost)"
        ));
    }

    /// Node `i` loses power in the middle of a write: `keep_permille` thousandths of its
    /// buffered batches reach the platter, then the first `torn_ops` operations of the next.
    pub fn crash_torn(&mut self, i: usize, keep_permille: u16, torn_ops: usize) {
        if !self.is_up(i) {
            self.note(format!("fault: crash-torn n{i} (already down)"));
            return;
        }
        self.net.set_powered(i, false);
        self.handle.kill(self.slots[i].handle.id());
        let pending = self.slots[i].disk.pending_batches();
        let keep = pending * usize::from(keep_permille.min(1_000)) / 1_000;
        let lost = self.slots[i].disk.crash_torn(keep, torn_ops);
        let slot = &mut self.slots[i];
        *canon_engine::sync::lock(&slot.live) = None;
        slot.up = false;
        self.note(format!(
            "fault: crash n{i} (power loss mid-write; {lost} unsynced batches lost, the first {torn_ops} operations of one kept)"
        ));
    }

    /// Node `i`'s wall clock jumps by `delta_ms` (NTP step, VM pause, operator error).
    pub fn jump_clock(&mut self, i: usize, delta_ms: i64) {
        self.slots[i].skew_ms.fetch_add(delta_ms, Ordering::Relaxed);
        self.note(format!("fault: n{i} clock jumps {delta_ms:+} ms"));
    }

    /// Node `i`'s disk fails every write until [`SimCluster::heal_disks`].
    pub fn fail_disk_writes(&mut self, i: usize) {
        self.slots[i]
            .disk
            .set_write_fault(Some(format!("injected fault: n{i} disk write failed")));
        self.note(format!("fault: n{i} disk writes fail"));
    }

    /// Bit rot on node `i`'s disk: bit `bit` of the `nth` record of `column` flips at rest.
    pub fn rot(&mut self, i: usize, column: Column, nth: usize, bit: u32) {
        match self.slots[i].disk.flip_at_rest(column, nth, bit) {
            Some(key) => self.note(format!(
                "fault: n{i} disk rots the {} record at 0x{} (bit {bit})",
                column.name(),
                hex::encode(key)
            )),
            None => self.note(format!("fault: n{i} disk rot: no {} record", column.name())),
        }
    }

    /// Node `i`'s disk returns the next `column` record it reads with bit `bit` flipped.
    pub fn flip_next_read(&mut self, i: usize, column: Column, bit: u32) {
        self.slots[i].disk.flip_next_read(column, bit);
        self.note(format!(
            "fault: n{i} disk flips bit {bit} of the next {} record read",
            column.name()
        ));
    }

    /// Node `i`'s disk puts the next `column` record under another key.
    pub fn misdirect_next_put(&mut self, i: usize, column: Column, xor: u8) {
        self.slots[i].disk.misdirect_next_put(column, xor);
        self.note(format!(
            "fault: n{i} disk misdirects the next {} write (key xor {xor})",
            column.name()
        ));
    }

    pub fn heal_disks(&mut self) {
        for slot in &self.slots {
            slot.disk.set_write_fault(None);
        }
        self.note("fault: heal disks");
    }

    /// Sabotage: node `i`'s disk loses even synced data (a lying fsync) before it restarts.
    pub fn wipe_disk(&mut self, i: usize) {
        self.slots[i].disk.lose_everything();
        self.note(format!("sabotage: n{i}'s disk lost synced data"));
    }

    pub fn restart(&mut self, i: usize) {
        if self.is_up(i) {
            return;
        }
        self.net.set_powered(i, true);
        self.handle.restart(self.slots[i].handle.id());
        self.slots[i].up = true;
        self.note(format!("fault: restart n{i}"));
    }

    /// From now on node `i` tells `lie` in every block range it serves (`None`: it stops).
    pub fn lie_when_serving(&mut self, i: usize, lie: Option<ServingLie>) {
        *canon_engine::sync::lock(&self.slots[i].serving_lie) = lie;
        self.observer
            .lock()
            .checker
            .expect_serving_lies_from(self.slots[i].key.node_id());
        self.note(format!("fault: n{i} serves blocks with a lie: {lie:?}"));
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

    /// Waits until one of `among` leads with a quorum behind it (it has canonized a block in its
    /// term). Returns the leader and how long it took.
    pub async fn wait_for_leader(
        &self,
        among: &[usize],
        bound: Duration,
    ) -> Result<(usize, Duration), String> {
        let start = Instant::now();
        loop {
            if let Some(l) = self.leader().filter(|l| among.contains(l)) {
                let height = self.height_of(l);
                if height > 0 && self.node(l).is_some_and(|n| n.status().is_leader) {
                    return Ok((l, start.elapsed()));
                }
            }
            if start.elapsed() > bound {
                return Err(format!(
                    "liveness: no leader among {among:?} within {:.1}s",
                    bound.as_secs_f64()
                ));
            }
            madsim::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn height_of(&self, i: usize) -> u64 {
        self.node(i).map(|n| n.head().height).unwrap_or(0)
    }

    /// The highest canonized height any node has applied.
    /// The highest batch any node sealed, and the last batch on L1.
    pub fn batch_progress(&self) -> (u64, u64) {
        let o = self.observer.lock();
        let sealed = o
            .checker
            .sealed_batches()
            .keys()
            .next_back()
            .copied()
            .unwrap_or(0);
        (sealed, o.checker.l1_head().0)
    }

    /// Waits until L1 holds every batch sealed by now (the batcher's liveness); returns how
    /// long it took.
    pub async fn wait_for_l1(&self, bound: Duration) -> Result<Duration, String> {
        let start = Instant::now();
        let (target, _) = self.batch_progress();
        loop {
            let (_, on_l1) = self.batch_progress();
            if on_l1 >= target {
                return Ok(start.elapsed());
            }
            if start.elapsed() > bound {
                return Err(format!(
                    "L1 holds batch {on_l1}, {:.1}s after batch {target} was sealed",
                    bound.as_secs_f64()
                ));
            }
            madsim::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn canonical_height(&self) -> u64 {
        self.observer.lock().checker.canonical_height()
    }

    /// Waits until every node in `nodes` has applied `height`.
    pub async fn wait_for_height(
        &self,
        nodes: &[usize],
        height: u64,
        bound: Duration,
    ) -> Result<Duration, String> {
        let start = Instant::now();
        loop {
            if nodes.iter().all(|i| self.height_of(*i) >= height) {
                return Ok(start.elapsed());
            }
            if start.elapsed() > bound {
                let heads: Vec<String> = nodes
                    .iter()
                    .map(|i| format!("n{i}={}", self.height_of(*i)))
                    .collect();
                return Err(format!(
                    "liveness: nodes did not reach height {height} within {:.1}s ({})",
                    bound.as_secs_f64(),
                    heads.join(" ")
                ));
            }
            madsim::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the canonical chain grows by `blocks` on every live node.
    pub async fn wait_for_progress(
        &self,
        blocks: u64,
        bound: Duration,
    ) -> Result<Duration, String> {
        let target = self.canonical_height() + blocks;
        self.wait_for_height(&self.up_nodes(), target, bound).await
    }

    /// Waits until no node in `nodes` has a snapshot's gap left to fill.
    pub async fn wait_for_backfill(&self, nodes: &[usize], bound: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            let pending: Vec<String> = nodes
                .iter()
                .filter_map(|i| {
                    let gap = self.node(*i)?.chain().backfill()?;
                    Some(format!("n{i} misses {} blocks", gap.missing_blocks()))
                })
                .collect();
            if pending.is_empty() {
                return Ok(());
            }
            if start.elapsed() > bound {
                return Err(format!(
                    "liveness: a snapshot's gap is still open after {:.1}s ({})",
                    bound.as_secs_f64(),
                    pending.join(", ")
                ));
            }
            madsim::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every live node holds every block from 1 to its head, each the canonical one, and every
    /// batch it counts as sealed, each as the checker saw it sealed, with its own attestation:
    /// what a snapshot jumped over was backfilled and cut again.
    pub fn check_complete_chains(&self) -> Result<(), String> {
        let obs = self.observer.lock();
        for i in self.up_nodes() {
            let Some(node) = self.node(i) else { continue };
            let chain = node.chain();
            let state = chain.state().clone();
            for_each_block(chain, |b| {
                let (h, hash) = (b.header.height, b.hash().map_err(|e| e.to_string())?);
                if obs.checker.canonical_hash(h) != Some(hash) {
                    return Err(format!("stores {hash} at height {h}, not canonical"));
                }
                Ok(())
            })
            .map_err(|e| format!("n{i}: {e}"))?;
            let sealed = obs.checker.sealed_batches();
            for n in 1..=state.batches.sealed_number {
                let header = chain.batch(n).map_err(|e| e.to_string())?.ok_or_else(|| {
                    format!(
                        "n{i} lacks batch {n} of its {} sealed",
                        state.batches.sealed_number
                    )
                })?;
                if sealed.get(&n).map(|b| b.commitment) != Some(header.commitment()) {
                    return Err(format!("n{i} holds batch {n} unlike the one sealed"));
                }
                let own = chain
                    .attestations(n)
                    .map_err(|e| e.to_string())?
                    .iter()
                    .any(|a| a.signer == node.id() && a.verify(&header));
                if !own {
                    return Err(format!("n{i} has no attestation of its own for batch {n}"));
                }
            }
        }
        Ok(())
    }

    /// Every live node's Raft log holds at most `max` entries: compaction keeps up.
    pub fn check_log_bounded(&self, max: u64) -> Result<(), String> {
        for i in self.up_nodes() {
            let Some(node) = self.node(i) else { continue };
            let entries = node.status().log_entries;
            if entries > max {
                return Err(format!(
                    "n{i}'s Raft log holds {entries} entries, compaction should keep it to {max}"
                ));
            }
        }
        Ok(())
    }

    /// Every live node's head is canonical and the pauper account never had a transaction
    /// included. Run at the end of a scenario, once nodes have converged.
    pub fn check_final_state(&self) -> Result<(), String> {
        let pauper = pauper_key().address();
        let obs = self.observer.lock();
        if let Some((i, head, max)) = obs.checker.nodes_behind_their_past().first() {
            return Err(format!(
                "a canonized block is never lost across restarts: n{i} is at height {head}, it had applied {max}"
            ));
        }
        for i in self.up_nodes() {
            let Some(node) = self.node(i) else { continue };
            let chain = node.chain().state().clone();
            let expected = obs.checker.canonical_hash(chain.head.height);
            if expected != Some(chain.head.hash) {
                return Err(format!(
                    "n{i} head {} at height {} is not canonical ({expected:?})",
                    chain.head.hash, chain.head.height
                ));
            }
            if self.cfg.app == SimApp::Ledger
                && account_in(&chain.state, &pauper).unwrap_or_default().nonce != 0
            {
                return Err(format!(
                    "n{i}: an invalid (unfunded) transaction was canonized"
                ));
            }
        }
        drop(obs);
        self.check_canonized_signatures()
    }

    /// Every canonized transaction was signed by its sender. Followers trust the leader's
    /// admission check, so this is where a transaction that skipped it would show; recovered
    /// here directly from the transaction's hash, not through the engine's predicate.
    fn check_canonized_signatures(&self) -> Result<(), String> {
        if self.cfg.app != SimApp::Ledger {
            return Ok(());
        }
        let Some(node) = self
            .up_nodes()
            .into_iter()
            .filter_map(|i| self.node(i))
            .max_by_key(|n| n.chain().head().height)
        else {
            return Ok(());
        };
        let chain = node.chain();
        for_each_block(chain, |b| {
            for (k, raw) in b.transactions.iter().enumerate() {
                let stx = SignedTransaction::from_tx(raw).map_err(|e| {
                    format!(
                        "transaction {k} of canonized block {} is not a ledger transaction: {e}",
                        b.header.height
                    )
                })?;
                let signer = stx
                    .tx
                    .hash()
                    .ok()
                    .and_then(|h| canon_engine::keys::recover_address(&h, &stx.signature).ok());
                if signer != Some(stx.tx.sender) {
                    return Err(format!(
                        "transaction {k} of canonized block {} names sender {} but was signed by {signer:?}",
                        b.header.height, stx.tx.sender
                    ));
                }
            }
            Ok(())
        })
    }

    /// Canonical nonce of `addr` as the most advanced live node sees it (the client's oracle,
    /// like a wallet's eth_getTransactionCount).
    pub fn account_nonce(&self, addr: &Address) -> u64 {
        self.up_nodes()
            .into_iter()
            .filter_map(|i| self.node(i))
            .map(|n| {
                account_in(&n.chain().state().state, addr)
                    .unwrap_or_default()
                    .nonce
            })
            .max()
            .unwrap_or(0)
    }
}

/// Calls `f` on every stored block from 1 to the head, in order; a missing one is an error.
fn for_each_block(
    chain: &canon_engine::chain::store::ChainStore,
    mut f: impl FnMut(&canon_engine::chain::block::Block) -> Result<(), String>,
) -> Result<(), String> {
    let head = chain.head().height;
    let mut from = 1;
    while from <= head {
        let blocks = chain
            .blocks(from, 256, usize::MAX)
            .map_err(|e| format!("reading blocks from {from}: {e}"))?;
        if blocks.is_empty() {
            return Err(format!("block {from} below the head {head} is missing"));
        }
        for b in &blocks {
            f(b)?;
            from = b.header.height + 1;
        }
    }
    Ok(())
}

/// What a consensus node's simulated machine runs with, at every (re)start.
struct NodeParts {
    i: usize,
    /// Its simulated machine, for the supervisor's restart after a corrupt read.
    me: Arc<std::sync::OnceLock<madsim::task::NodeId>>,
    halted: Arc<AtomicBool>,
    cfg: NodeConfig,
    disk: MemDisk,
    net: SimNet,
    observer: SharedObserver,
    skew_ms: Arc<AtomicI64>,
    live: LiveSlot,
    batcher: Option<BatcherSetup>,
    serving_lie: ServingLieSlot,
}

async fn run_node(parts: NodeParts) {
    let NodeParts {
        i,
        me,
        halted,
        cfg,
        disk,
        net,
        observer,
        skew_ms,
        live,
        batcher,
        serving_lie,
    } = parts;
    let host = NetHost {
        me: i,
        key: cfg.key.clone(),
        net,
        observer: observer.clone(),
        node: Some(i),
    };
    let listener = host.listen();
    let seams = Seams {
        // Every record sealed and checked; the disk's faults happen underneath.
        storage: Arc::new({
            let store = canon_engine::storage::Checksummed::new(disk);
            match cfg.plant {
                Plant::UncheckedBlockReads => store.planted_unchecked_reads(Column::Block),
                Plant::NoJournal => store.planted_no_journal(),
                _ => store,
            }
        }),
        transport: host.transport(),
        clock: Arc::new(SimClock { skew_ms }),
        events: host.events(),
        verifier: Arc::new(canon_engine::chain::signatures::Sequential),
    };
    // A node that cannot start (its disk refuses writes while it re-applies the log) exits;
    // the host's supervisor starts it again a second later, as systemd would.
    let node = loop {
        match SimNode::start(cfg.clone(), seams.clone()).await {
            Ok(n) => break n,
            Err(e @ canon_engine::seams::NodeError::Halted(_)) => {
                // Restarting would find the same damage: it stays down, as a supervisor
                // gives up on a unit that refuses to start for a reason it names.
                observer.lock().note(format!("n{i} halted: {e}"));
                halted.store(true, Ordering::Relaxed);
                return;
            }
            Err(e) => {
                observer.lock().note(format!("n{i} failed to start: {e}"));
                madsim::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    *canon_engine::sync::lock(&live) = Some(node.clone());
    if let Some(setup) = batcher {
        node.start_batcher(setup);
    }
    let damaged = node.clone();
    let serving = Arc::new(LyingPeer {
        node,
        lie: serving_lie,
    });
    let stopped = futures::future::select(
        Box::pin(host.serve(listener, serving)),
        Box::pin(damaged.stopped_by_damage()),
    )
    .await;
    if let futures::future::Either::Right((error, _)) = stopped {
        // The node stopped itself on a corrupt read. Its supervisor starts the process again
        // (what the OS had buffered survives: this is no power loss), and the start-up scrub
        // repairs what is damaged at rest.
        *canon_engine::sync::lock(&live) = None;
        observer.lock().note(format!(
            "n{i} stopped on a corrupt read ({error}); restarting"
        ));
        madsim::time::sleep(Duration::from_secs(1)).await;
        if let Some(id) = me.get() {
            madsim::runtime::Handle::current().restart(*id);
        }
    }
}

impl Serves for SimNode {
    fn answer(
        &self,
        from: NodeId,
        bytes: Vec<u8>,
    ) -> canon_engine::net::transport::BoxFuture<'_, Vec<u8>> {
        Box::pin(async move { self.handle_request(from, &bytes).await })
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
                Ok(Response::Refused(why)) => assert!(why.contains("consensus_peer_ids"), "{why}"),
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

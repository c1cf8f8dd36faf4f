//! A redundancy group on simulated hosts (single-sequencer mode, seed 002): members sharing one
//! signing identity, each with its own disk, clock skew and network key, started, crashed and
//! restarted by the scenario. Members report to the checker under index `MEMBER_INDEX_BASE + m`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use canon_engine::events::NoEvents;
use canon_engine::keys::{derived_key, SecretKey};
use canon_engine::net::peer;
use canon_engine::net::transport::BoxFuture;
use canon_engine::net::wire::Request;
use canon_engine::policy::redundancy::Announcement;
use canon_engine::policy::redundancy::{Level, RedundancyConfig, DEFAULT_MAX_MISSED_ROUNDS};
use canon_engine::redundancy::announcement::SignedAnnouncement;
use canon_engine::redundancy::group::{GroupConfig, GroupMember, GroupStatus};
use canon_engine::seams::Seams;
use canon_engine::storage::MemDisk;
use canon_engine::NodeId;
use madsim::runtime::NodeHandle;
use rand::Rng;

use crate::cluster::SimCluster;
use crate::host::{NetHost, Serves, SimClock};
use crate::net::{SimNet, PORT};
use crate::observer::SharedObserver;
use crate::runtime::MadsimRuntime;

pub type SimMember = GroupMember<MadsimRuntime>;
type LiveMember = Arc<Mutex<Option<Arc<SimMember>>>>;

/// Checker index of member 0; members never collide with consensus or external nodes.
pub const MEMBER_INDEX_BASE: usize = 100;

impl Serves for SimMember {
    fn answer(&self, from: NodeId, bytes: Vec<u8>) -> BoxFuture<'_, Vec<u8>> {
        Box::pin(async move { self.handle_request(from, &bytes).await })
    }
}

#[derive(Clone, Debug)]
pub struct GroupSetup {
    pub block_time_ms: u64,
    pub max_missed_rounds: u64,
    /// Each member's clock is off by up to this much, either way.
    pub clock_skew_ms_max: u64,
    /// The scenario makes the identity sign two branches on purpose (an unfenced partition):
    /// the checker records double signatures instead of failing on them (its fork mode).
    pub expect_equivocation: bool,
    /// `redundancy_fencing`: members sign only blocks a majority of the group chose.
    pub fencing: bool,
}

impl Default for GroupSetup {
    fn default() -> Self {
        GroupSetup {
            block_time_ms: 200,
            max_missed_rounds: DEFAULT_MAX_MISSED_ROUNDS,
            clock_skew_ms_max: 0,
            expect_equivocation: false,
            fencing: false,
        }
    }
}

struct MemberSlot {
    level: i64,
    key: SecretKey,
    disk: MemDisk,
    skew_ms: Arc<AtomicI64>,
    handle: Option<NodeHandle>,
    live: LiveMember,
    up: bool,
}

struct SimGroup {
    setup: GroupSetup,
    identity: SecretKey,
    genesis_ms: u64,
    slots: Vec<MemberSlot>,
}

/// A scenario's cluster with a redundancy group: the group is the scenario's, beside the
/// cluster it runs on (the cluster knows nothing of groups, only who signs blocks). Reads as
/// the cluster for everything else.
pub struct GroupRun {
    pub cluster: SimCluster,
    group: SimGroup,
}

impl std::ops::Deref for GroupRun {
    type Target = SimCluster;
    fn deref(&self) -> &SimCluster {
        &self.cluster
    }
}

impl std::ops::DerefMut for GroupRun {
    fn deref_mut(&mut self) -> &mut SimCluster {
        &mut self.cluster
    }
}

fn member_ip(m: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 4, (m + 1) as u8))
}

fn wall_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl GroupRun {
    /// Sets up a group of members at `levels` sharing one identity on cluster `c` (none started
    /// yet): round 0 begins now. Start a cluster with `nodes: 0` for a pure single-sequencer run.
    pub fn new(mut c: SimCluster, levels: &[i64], setup: GroupSetup) -> GroupRun {
        let identity = derived_key("canon-sim/identity", 0);
        let mut slots = Vec::new();
        for (m, level) in levels.iter().enumerate() {
            let key = derived_key("canon-sim/member", m);
            c.net
                .add_member(key.node_id(), SocketAddr::new(member_ip(m), PORT));
            let skew = setup.clock_skew_ms_max as i64;
            let skew_ms = Arc::new(AtomicI64::new(if skew > 0 {
                c.rng.gen_range(-skew..=skew)
            } else {
                0
            }));
            slots.push(MemberSlot {
                level: *level,
                key,
                disk: MemDisk::new(),
                skew_ms,
                handle: None,
                live: Arc::new(Mutex::new(None)),
                up: false,
            });
        }
        c.observer.lock().members = levels.len();
        c.note(format!(
            "group of levels {levels:?}, identity {}{}",
            identity.node_id().short(),
            if setup.fencing { ", fenced" } else { "" }
        ));
        if setup.expect_equivocation {
            c.observer.lock().checker.expect_equivocation();
            c.note("checker: double signatures expected (fork mode)");
        }
        // External nodes started on this cluster check blocks against the identity.
        c.block_signer_override = Some(identity.node_id());
        GroupRun {
            cluster: c,
            group: SimGroup {
                setup,
                identity,
                genesis_ms: wall_ms(),
                slots,
            },
        }
    }

    fn group(&self) -> &SimGroup {
        &self.group
    }

    fn group_mut(&mut self) -> &mut SimGroup {
        &mut self.group
    }

    pub fn member_ids(&self) -> Vec<NodeId> {
        self.group().slots.iter().map(|s| s.key.node_id()).collect()
    }

    pub fn block_time(&self) -> Duration {
        Duration::from_millis(self.group().setup.block_time_ms)
    }

    /// Starts member `m` (its first start, or a restart after a crash).
    pub fn start_member(&mut self, m: usize) {
        let net = self.net.clone();
        let observer = self.observer.clone();
        let ids = self.member_ids();
        let g = self.group();
        let slot = &g.slots[m];
        if slot.up {
            return;
        }
        let cfg = GroupConfig {
            identity: g.identity.clone(),
            network_key: slot.key.clone(),
            redundancy: RedundancyConfig {
                level: Level::from_config(slot.level),
                max_missed_rounds: g.setup.max_missed_rounds,
            },
            members: ids
                .iter()
                .copied()
                .filter(|i| *i != slot.key.node_id())
                .collect(),
            chain: self.spec.clone(),
            genesis_ms: g.genesis_ms,
            block_time_ms: g.setup.block_time_ms,
            max_block_transactions: 256,
            mempool: canon_engine::consensus::mempool::MempoolBounds::total(10_000),
            request_timeout_ms: 1_000,
            fencing: g.setup.fencing,
        };
        let handle = match &slot.handle {
            Some(h) => {
                self.handle.restart(h.id());
                None
            }
            None => {
                let (d, l, k) = (slot.disk.clone(), slot.live.clone(), slot.skew_ms.clone());
                let member = net
                    .lookup(&slot.key.node_id())
                    .map(|(i, _)| i)
                    .unwrap_or_default();
                Some(
                    self.handle
                        .create_node()
                        .name(format!("m{m}"))
                        .ip(member_ip(m))
                        .init(move || {
                            run_member(
                                MEMBER_INDEX_BASE + m,
                                member,
                                m,
                                cfg.clone(),
                                d.clone(),
                                net.clone(),
                                observer.clone(),
                                k.clone(),
                                l.clone(),
                            )
                        })
                        .build(),
                )
            }
        };
        let level = slot.level;
        let slot = &mut self.group_mut().slots[m];
        if let Some(h) = handle {
            slot.handle = Some(h);
        }
        slot.up = true;
        self.note(format!("start member m{m} (level {level})"));
    }

    /// Crashes member `m`: synced data and a random prefix of buffered batches survive.
    pub fn crash_member(&mut self, m: usize) {
        let slot = &self.group().slots[m];
        if !slot.up {
            return;
        }
        if let Some(h) = &slot.handle {
            self.handle.kill(h.id());
        }
        let pending = slot.disk.pending_batches();
        let keep = if pending == 0 {
            0
        } else {
            self.rng.gen_range(0..=pending)
        };
        let slot = &mut self.group_mut().slots[m];
        let lost = slot.disk.crash(keep);
        *canon_engine::sync::lock(&slot.live) = None;
        slot.up = false;
        self.note(format!(
            "fault: crash member m{m} ({lost} unsynced batches lost)"
        ));
    }

    /// Member `m`'s disk lets `writes` more writes through, then fails every later one.
    pub fn fail_member_disk_after(&mut self, m: usize, writes: usize) {
        self.group().slots[m].disk.set_write_fault_after(
            writes,
            Some(format!("injected fault: m{m} disk write failed")),
        );
        self.note(format!("fault: m{m} disk fails after {writes} more writes"));
    }

    pub fn heal_member_disk(&mut self, m: usize) {
        self.group().slots[m].disk.set_write_fault(None);
        self.note(format!("fault: heal m{m} disk"));
    }

    /// Member `m`'s wall clock jumps by `delta_ms`.
    pub fn jump_member_clock(&mut self, m: usize, delta_ms: i64) {
        self.group().slots[m]
            .skew_ms
            .fetch_add(delta_ms, Ordering::Relaxed);
        self.note(format!("fault: m{m} clock jumps {delta_ms:+} ms"));
    }

    /// Member `m`'s index in the simulated network, for partitions.
    pub fn member_net_index(&self, m: usize) -> usize {
        let id = self.group().slots[m].key.node_id();
        self.net.lookup(&id).map(|(i, _)| i).unwrap_or_default()
    }

    pub fn member(&self, m: usize) -> Option<Arc<SimMember>> {
        let slot = self.group().slots.get(m)?;
        if !slot.up {
            return None;
        }
        canon_engine::sync::lock(&slot.live).clone()
    }

    pub fn member_status(&self, m: usize) -> Option<GroupStatus> {
        self.member(m).map(|x| x.status())
    }

    /// The highest height the identity has signed.
    pub fn signed_height(&self) -> u64 {
        self.canonical_height()
    }

    /// The round the local clock of member `m` is in (the scenario's view of "now").
    pub fn group_round(&self) -> u64 {
        let g = self.group();
        wall_ms().saturating_sub(g.genesis_ms) / g.setup.block_time_ms.max(1)
    }

    /// Step-ins of member `m`: the rounds at which it started signing.
    pub fn step_ins(&self, m: usize) -> Vec<u64> {
        self.observer
            .lock()
            .step_ins
            .iter()
            .filter(|(n, _, _)| *n == MEMBER_INDEX_BASE + m)
            .map(|(_, r, _)| *r)
            .collect()
    }

    /// The round of the last block signed by a member at `level`, as the chain of a live
    /// member shows it.
    pub fn last_round_of_level(&self, level: i64) -> Option<u64> {
        let g = self.group();
        (0..g.slots.len())
            .filter_map(|m| self.member(m))
            .filter_map(|x| {
                let chain = x.sync().replica().chain().clone();
                let head = chain.head().height;
                (1..=head)
                    .rev()
                    .filter_map(|h| chain.block(h).ok().flatten())
                    .find_map(|b| b.header.slot.filter(|s| s.level == level))
                    .map(|s| s.round)
            })
            .max()
    }

    /// Waits until member `m` steps in for the `nth` time (0 = its first), up to `bound`;
    /// returns that round.
    pub async fn wait_for_step_in(
        &self,
        m: usize,
        nth: usize,
        bound: Duration,
    ) -> Result<u64, String> {
        let start = Instant::now();
        loop {
            if let Some(r) = self.step_ins(m).get(nth) {
                return Ok(*r);
            }
            if start.elapsed() > bound {
                return Err(format!(
                    "liveness: member m{m} did not step in within {:.1}s ({:?})",
                    bound.as_secs_f64(),
                    self.member_status(m)
                ));
            }
            madsim::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until every live member holds the signed head of at least `height`.
    pub async fn wait_for_members(&self, height: u64, bound: Duration) -> Result<(), String> {
        let start = Instant::now();
        let n = self.group().slots.len();
        loop {
            let heads: Vec<(usize, u64)> = (0..n)
                .filter_map(|m| self.member(m).map(|x| (m, x.head().height)))
                .collect();
            if heads.iter().all(|(_, h)| *h >= height) {
                return Ok(());
            }
            if start.elapsed() > bound {
                return Err(format!(
                    "liveness: members did not reach height {height} within {:.1}s ({heads:?})",
                    bound.as_secs_f64()
                ));
            }
            madsim::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl GroupRun {
    /// Starts a host that claims the identity without holding its key: every 50 ms it sends
    /// each member an announcement as level 0 for the current round, signed by the wrong key,
    /// with no signature, or altered after signing, in turn.
    pub fn add_forger(&mut self) {
        let key = derived_key("canon-sim/forger", 0);
        let ip = IpAddr::V4(Ipv4Addr::new(10, 0, 5, 1));
        let me = self
            .net
            .add_member(key.node_id(), SocketAddr::new(ip, PORT));
        let targets = self.member_ids();
        let (genesis_ms, block_time_ms) =
            (self.group().genesis_ms, self.group().setup.block_time_ms);
        let net = self.net.clone();
        self.handle
            .create_node()
            .name("forger")
            .ip(ip)
            .init(move || {
                let (net, key, targets) = (net.clone(), key.clone(), targets.clone());
                async move {
                    let transport = net.transport(me, &key, Arc::new(NoEvents), None);
                    for n in 0u64.. {
                        let round = wall_ms().saturating_sub(genesis_ms) / block_time_ms.max(1);
                        let claim = Announcement {
                            member: key.node_id(),
                            level: 0,
                            started_at_ms: 0,
                            round,
                        };
                        let Ok(mut forged) = SignedAnnouncement::sign(&claim, &key) else {
                            return;
                        };
                        match n % 3 {
                            0 => {}
                            1 => forged.signature = canon_engine::ids::Sig65([0u8; 65]),
                            _ => {
                                // A real-looking signature over other content.
                                forged.round = round + 1_000;
                            }
                        }
                        let req = Request::Announce(forged);
                        for t in &targets {
                            let _ =
                                peer::call(&transport, *t, &req, Duration::from_millis(100)).await;
                        }
                        madsim::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            })
            .build();
        self.note("start forger (claims level 0 without the identity's key)");
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_member(
    index: usize,
    member: usize,
    m: usize,
    cfg: GroupConfig,
    disk: MemDisk,
    net: SimNet,
    observer: SharedObserver,
    skew_ms: Arc<AtomicI64>,
    live: LiveMember,
) {
    let host = NetHost {
        me: member,
        key: cfg.network_key.clone(),
        net,
        observer: observer.clone(),
        node: Some(index),
    };
    let listener = host.listen();
    let seams = Seams {
        // Every record sealed and checked; the disk's faults happen underneath.
        storage: Arc::new(canon_engine::storage::Checksummed::new(disk)),
        transport: host.transport(),
        clock: Arc::new(SimClock { skew_ms }),
        events: host.events(),
        verifier: Arc::new(canon_engine::chain::signatures::Sequential),
    };
    let node = loop {
        match SimMember::start(cfg.clone(), seams.clone()).await {
            Ok(n) => break n,
            Err(e) => {
                observer
                    .lock()
                    .note(format!("member m{m} failed to start: {e}"));
                madsim::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    *canon_engine::sync::lock(&live) = Some(node.clone());
    host.serve(listener, node).await;
}

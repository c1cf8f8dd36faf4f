//! External nodes on simulated hosts. An external node has its own
//! disk (crashes keep synced data and a prefix of buffered batches), its own network address
//! (partitions apply to it like to any node), and reports to the checker under index
//! `consensus nodes + e`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use canon_engine::external::node::{ExternalConfig, Trust};
use canon_engine::keys::derived_key;
use canon_engine::net::transport::BoxFuture;
use canon_engine::seams::Seams;
use canon_engine::storage::{Column, MemDisk};
use canon_engine::NodeId;
use rand::Rng;

use crate::cluster::SimCluster;
pub use crate::host::SimExternal;
use crate::host::{ExternalSlot, LiveExternal, NetHost, Serves, SimClock};
use crate::net::{SimNet, PORT};
use crate::observer::SharedObserver;

impl Serves for SimExternal {
    fn answer(&self, from: NodeId, bytes: Vec<u8>) -> BoxFuture<'_, Vec<u8>> {
        Box::pin(async move { self.handle_request(from, &bytes).await })
    }
}

fn external_ip(e: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 2, (e + 1) as u8))
}

impl SimCluster {
    /// Starts external node `e` (returned) downloading from `sources`.
    pub fn add_external(&mut self, sources: Vec<NodeId>) -> usize {
        // A redundancy group's chain has no certificates: its identity's signature makes it.
        let trust = match self.block_signer_override {
            Some(_) => Trust::Signer,
            None => Trust::Certificates {
                verify_every_signature: false,
            },
        };
        self.add_external_trusting(sources, trust)
    }

    /// [`SimCluster::add_external`] with what makes a block canonical to it.
    pub fn add_external_trusting(&mut self, sources: Vec<NodeId>, trust: Trust) -> usize {
        let e = self.externals.len();
        self.observer.lock().externals = e + 1;
        let key = derived_key("canon-sim/external", e);
        let ip = external_ip(e);
        let member = self
            .net
            .add_member(key.node_id(), SocketAddr::new(ip, PORT));
        let mut cfg = ExternalConfig::new(
            key.clone(),
            sources,
            self.block_signers(),
            self.spec.clone(),
        );
        cfg.batch_blocks = 64;
        cfg.request_timeout_ms = 1_000;
        cfg.trust = trust;
        let disk = MemDisk::new();
        let live: LiveExternal = Arc::new(Mutex::new(None));
        let index = self.size() + e;
        let (d, l, n, o) = (
            disk.clone(),
            live.clone(),
            self.net.clone(),
            self.observer.clone(),
        );
        let handle = self
            .handle
            .create_node()
            .name(format!("x{e}"))
            .ip(ip)
            .init(move || {
                run_external(
                    index,
                    member,
                    cfg.clone(),
                    d.clone(),
                    n.clone(),
                    o.clone(),
                    l.clone(),
                )
            })
            .build();
        self.externals.push(ExternalSlot {
            key,
            disk,
            handle,
            live,
            up: true,
            member,
        });
        self.note(format!("start external x{e} (checker index {index})"));
        e
    }

    pub fn externals_len(&self) -> usize {
        self.externals.len()
    }

    pub fn external_is_up(&self, e: usize) -> bool {
        self.externals.get(e).is_some_and(|x| x.up)
    }

    pub fn external_id(&self, e: usize) -> NodeId {
        self.externals[e].key.node_id()
    }

    /// The external node's index in the network, for partitions.
    pub fn external_member(&self, e: usize) -> usize {
        self.externals[e].member
    }

    pub fn external(&self, e: usize) -> Option<Arc<SimExternal>> {
        let slot = self.externals.get(e)?;
        if !slot.up {
            return None;
        }
        canon_engine::sync::lock(&slot.live).clone()
    }

    pub fn external_height(&self, e: usize) -> u64 {
        self.external(e).map(|x| x.head().height).unwrap_or(0)
    }

    /// Crashes external `e`: synced data and a random prefix of buffered batches survive.
    pub fn crash_external(&mut self, e: usize) {
        if !self.externals[e].up {
            return;
        }
        let keep = surviving_batches(&mut self.rng, self.externals[e].disk.pending_batches());
        self.crash_external_keeping(e, keep);
    }

    /// [`SimCluster::crash_external`], drawing how much survives from `rng` (a scenario that
    /// keeps the external node's faults out of its own fault plan).
    pub fn crash_external_drawing(&mut self, e: usize, rng: &mut impl Rng) {
        if !self.externals[e].up {
            return;
        }
        let keep = surviving_batches(rng, self.externals[e].disk.pending_batches());
        self.crash_external_keeping(e, keep);
    }

    /// Crashes external `e` with `keep_permille` thousandths of its unsynced writes surviving
    /// (rounded down). Nothing if it is down.
    pub fn crash_external_as(&mut self, e: usize, keep_permille: u16) {
        if !self.externals[e].up {
            self.note(format!("fault: crash external x{e} (already down)"));
            return;
        }
        let pending = self.externals[e].disk.pending_batches();
        let keep = pending * usize::from(keep_permille.min(1_000)) / 1_000;
        self.crash_external_keeping(e, keep);
    }

    fn crash_external_keeping(&mut self, e: usize, keep: usize) {
        self.handle.kill(self.externals[e].handle.id());
        let lost = self.externals[e].disk.crash(keep);
        let slot = &mut self.externals[e];
        *canon_engine::sync::lock(&slot.live) = None;
        slot.up = false;
        self.note(format!(
            "fault: crash external x{e} ({lost} unsynced batches lost)"
        ));
    }

    /// Bit rot on external `e`'s disk while it is down: one bit of one record of what it
    /// replayed (a block, the state, a certificate) flips, drawn from the run's rng. Returns
    /// whether a record rotted (the column drawn may be empty).
    pub fn rot_external_disk(&mut self, e: usize) -> bool {
        const ROTTABLE: [Column; 3] = [Column::Block, Column::State, Column::Certificate];
        let column = ROTTABLE[self.rng.gen_range(0..ROTTABLE.len())];
        let nth = self.rng.gen_range(0..100_000);
        let bit = self.rng.gen_range(0..1_024);
        match self.externals[e].disk.flip_at_rest(column, nth, bit) {
            Some(key) => {
                self.note(format!(
                    "fault: external x{e} disk rots the {} record at 0x{} (bit {bit})",
                    column.name(),
                    hex::encode(key)
                ));
                true
            }
            None => {
                self.note(format!(
                    "fault: external x{e} disk would rot a {} record but holds none",
                    column.name()
                ));
                false
            }
        }
    }

    pub fn restart_external(&mut self, e: usize) {
        if self.externals[e].up {
            return;
        }
        self.handle.restart(self.externals[e].handle.id());
        self.externals[e].up = true;
        self.note(format!("fault: restart external x{e}"));
    }

    /// Waits until external `e` has replayed `height`.
    pub async fn wait_for_external(
        &self,
        e: usize,
        height: u64,
        bound: Duration,
    ) -> Result<Duration, String> {
        let start = Instant::now();
        loop {
            if self.external_height(e) >= height {
                return Ok(start.elapsed());
            }
            if start.elapsed() > bound {
                return Err(format!(
                    "liveness: external x{e} did not reach height {height} within {:.1}s (at {})",
                    bound.as_secs_f64(),
                    self.external_height(e)
                ));
            }
            madsim::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every live external node's head is a canonical block.
    pub fn check_externals(&self) -> Result<(), String> {
        let obs = self.observer.lock();
        for e in 0..self.externals.len() {
            let Some(x) = self.external(e) else { continue };
            let head = x.head();
            if obs.checker.canonical_hash(head.height) != Some(head.hash) {
                return Err(format!(
                    "external x{e} head {} at {} is not canonical",
                    head.hash, head.height
                ));
            }
        }
        Ok(())
    }
}

/// How many of `pending` buffered batches a crash keeps: a random prefix.
fn surviving_batches(rng: &mut impl Rng, pending: usize) -> usize {
    if pending == 0 {
        0
    } else {
        rng.gen_range(0..=pending)
    }
}

#[allow(clippy::too_many_arguments)]
async fn run_external(
    index: usize,
    member: usize,
    cfg: ExternalConfig,
    disk: MemDisk,
    net: SimNet,
    observer: SharedObserver,
    live: LiveExternal,
) {
    let host = NetHost {
        me: member,
        key: cfg.key.clone(),
        net,
        observer: observer.clone(),
        node: Some(index),
    };
    let listener = host.listen();
    let seams = Seams {
        // Every record sealed and checked; the disk's faults happen underneath.
        storage: Arc::new(canon_engine::storage::Checksummed::new(disk)),
        transport: host.transport(),
        // External nodes stamp nothing; the clock is never read.
        clock: Arc::new(SimClock {
            skew_ms: Arc::new(AtomicI64::new(0)),
        }),
        events: host.events(),
        verifier: Arc::new(canon_engine::chain::signatures::Sequential),
    };
    let node = loop {
        match SimExternal::start(cfg.clone(), seams.clone()).await {
            Ok(n) => break n,
            Err(e) => {
                observer
                    .lock()
                    .note(format!("external {index} failed to start: {e}"));
                madsim::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    *canon_engine::sync::lock(&live) = Some(node.clone());
    host.serve(listener, node).await;
}

//! What runs on one consensus node's simulated machine, at every (re)start: the node opened
//! on its disk, clock and network, its batcher or its L1 reader, and its supervisor's restart
//! after the node stops itself on a corrupt read.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use canon_engine::consensus::config::{NodeConfig, Plant};
use canon_engine::seams::Seams;
use canon_engine::settlement::batcher_core::BatcherSetup;
use canon_engine::storage::{Column, MemDisk};
use canon_engine::NodeId;

use super::{LiveSlot, SimNode};
use crate::host::{NetHost, Serves, SimClock};
use crate::lying_peer::{LyingPeer, ServingLieSlot};
use crate::net::SimNet;
use crate::observer::SharedObserver;

/// What a consensus node's simulated machine runs with, at every (re)start.
pub(super) struct NodeParts {
    pub(super) i: usize,
    /// Its simulated machine, for the supervisor's restart after a corrupt read.
    pub(super) me: Arc<std::sync::OnceLock<madsim::task::NodeId>>,
    pub(super) halted: Arc<AtomicBool>,
    pub(super) cfg: NodeConfig,
    pub(super) disk: MemDisk,
    pub(super) net: SimNet,
    pub(super) observer: SharedObserver,
    pub(super) skew_ms: Arc<AtomicI64>,
    pub(super) live: LiveSlot,
    pub(super) batcher: Option<BatcherSetup>,
    /// The L1 a node without a batcher reads (a leader, before it removes a voter).
    pub(super) l1: Arc<dyn canon_engine::settlement::l1::L1>,
    pub(super) serving_lie: ServingLieSlot,
}

pub(super) async fn run_node(parts: NodeParts) {
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
        l1,
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
    match batcher {
        Some(setup) => node.start_batcher(setup),
        None => node.read_l1(l1),
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

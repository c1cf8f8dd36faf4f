//! The node's Prometheus metrics: the registry and what each metric means. Gauges that
//! describe the present (peers, mempool, height) are refreshed from the node when scraped; what
//! the engine reports moves the rest ([`crate::event_log`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub struct Metrics {
    registry: Registry,
    pub canonized_height: Gauge,
    pub applied_height: Gauge,
    pub certified_height: Gauge,
    pub term: Gauge,
    pub leader_changes: Counter,
    pub blocks_proposed: Counter,
    pub proposals_dropped: Counter,
    pub blocks_applied: Counter,
    pub transactions_applied: Counter,
    pub entries_rejected: Counter,
    pub storage_failures: Counter,
    pub apply_latency_seconds: Histogram,
    pub connected_peers: Gauge,
    pub peers_unreachable: Gauge,
    pub peer_request_failures: Counter,
    pub mempool_size: Gauge,
    pub raft_log_entries: Gauge,
    pub raft_voters: Gauge,
    pub raft_learners: Gauge,
    pub blocks_missing: Gauge,
    pub replay_rate_blocks_per_second: Gauge,
    pub replay_lag_blocks: Gauge,
    pub blocks_rejected: Family<RejectLabels, Counter>,
    pub p2p_connections_refused: Family<ConnectionFaultLabels, Counter>,
    pub redundancy_level: Gauge,
    pub redundancy_active: Gauge,
    pub redundancy_active_signer_level: Gauge,
    pub redundancy_missed_rounds: Gauge,
    pub redundancy_same_level: Gauge,
    pub redundancy_step_ins: Counter,
    pub redundancy_reverts: Counter,
    pub signing_guard_height: Gauge,
    pub signing_guard_round: Gauge,
    pub signs_refused: Counter,
    pub equivocations: Counter,
    pub rollbacks: Counter,
    pub batch_last_sealed: Gauge,
    pub batch_last_sealed_height: Gauge,
    pub batch_last_committed: Gauge,
    pub batches_committed: Counter,
    pub batch_submit_failures: Counter,
    pub batch_reverts: Counter,
    pub l1_errors: Counter,
    pub batcher_active: Gauge,
    pub batcher_epoch: Gauge,
    pub batcher_claims: Counter,
    pub batcher_superseded: Counter,
    /// 1 for the application this chain runs (`application="ledger"` or `"kv"`).
    pub application: Family<ApplicationLabels, Gauge>,
    last_term: AtomicU64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApplicationLabels {
    pub application: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    /// The chain rule the block broke: signature, state_root, parent, ...
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionFaultLabels {
    /// What the connection did: handshake, wrong_peer, unauthentic, malformed, too_slow, ...
    pub fault: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Marks `application` as the one this chain runs.
    pub fn set_application(&self, application: &str) {
        self.application
            .get_or_create(&ApplicationLabels {
                application: application.to_string(),
            })
            .set(1);
    }

    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("canon");
        let m = Metrics {
            canonized_height: Gauge::default(),
            applied_height: Gauge::default(),
            certified_height: Gauge::default(),
            term: Gauge::default(),
            leader_changes: Counter::default(),
            blocks_proposed: Counter::default(),
            proposals_dropped: Counter::default(),
            blocks_applied: Counter::default(),
            transactions_applied: Counter::default(),
            entries_rejected: Counter::default(),
            storage_failures: Counter::default(),
            // 1 ms .. ~33 s
            apply_latency_seconds: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 16),
            ),
            connected_peers: Gauge::default(),
            peers_unreachable: Gauge::default(),
            peer_request_failures: Counter::default(),
            mempool_size: Gauge::default(),
            raft_log_entries: Gauge::default(),
            raft_voters: Gauge::default(),
            raft_learners: Gauge::default(),
            blocks_missing: Gauge::default(),
            replay_rate_blocks_per_second: Gauge::default(),
            replay_lag_blocks: Gauge::default(),
            blocks_rejected: Family::default(),
            p2p_connections_refused: Family::default(),
            redundancy_level: Gauge::default(),
            redundancy_active: Gauge::default(),
            redundancy_active_signer_level: Gauge::default(),
            redundancy_missed_rounds: Gauge::default(),
            redundancy_same_level: Gauge::default(),
            redundancy_step_ins: Counter::default(),
            redundancy_reverts: Counter::default(),
            signing_guard_height: Gauge::default(),
            signing_guard_round: Gauge::default(),
            signs_refused: Counter::default(),
            equivocations: Counter::default(),
            rollbacks: Counter::default(),
            batch_last_sealed: Gauge::default(),
            batch_last_sealed_height: Gauge::default(),
            batch_last_committed: Gauge::default(),
            batches_committed: Counter::default(),
            batch_submit_failures: Counter::default(),
            batch_reverts: Counter::default(),
            batcher_active: Gauge::default(),
            batcher_epoch: Gauge::default(),
            batcher_claims: Counter::default(),
            batcher_superseded: Counter::default(),
            l1_errors: Counter::default(),
            application: Family::default(),
            last_term: AtomicU64::new(0),
            registry: Registry::default(),
        };
        registry.register(
            "canonized_height",
            "Highest block height canonized by Raft, as this node knows it",
            m.canonized_height.clone(),
        );
        registry.register(
            "applied_height",
            "Height of the newest block this node has applied",
            m.applied_height.clone(),
        );
        registry.register(
            "certified_height",
            "Every block this node holds up to this height has a commit certificate",
            m.certified_height.clone(),
        );
        registry.register("term", "Current Raft term", m.term.clone());
        registry.register(
            "application",
            "1 for the application this chain runs (ledger or kv)",
            m.application.clone(),
        );
        registry.register(
            "leader_changes",
            "Times this node saw the cluster's leader change",
            m.leader_changes.clone(),
        );
        registry.register(
            "blocks_proposed",
            "Blocks this node proposed as leader",
            m.blocks_proposed.clone(),
        );
        registry.register(
            "proposals_dropped",
            "Proposals of this node that did not become canonical",
            m.proposals_dropped.clone(),
        );
        registry.register(
            "blocks_applied",
            "Canonized blocks this node executed and stored",
            m.blocks_applied.clone(),
        );
        registry.register(
            "transactions_applied",
            "Transactions in blocks this node applied",
            m.transactions_applied.clone(),
        );
        registry.register(
            "entries_rejected",
            "Committed entries rejected at apply (stale or invalid proposals)",
            m.entries_rejected.clone(),
        );
        registry.register(
            "storage_failures",
            "Failed storage writes",
            m.storage_failures.clone(),
        );
        registry.register(
            "block_apply_latency_seconds",
            "From a block's timestamp (set by its proposer) to its application on this node",
            m.apply_latency_seconds.clone(),
        );
        registry.register(
            "connected_peers",
            "Consensus peers with an open authenticated connection",
            m.connected_peers.clone(),
        );
        registry.register(
            "peers_unreachable",
            "Peers whose last request from this node failed (no route, or no answer in time)",
            m.peers_unreachable.clone(),
        );
        registry.register(
            "peer_request_failures",
            "Requests to peers that failed: no route, or no answer in time",
            m.peer_request_failures.clone(),
        );
        registry.register(
            "mempool_size",
            "Transactions waiting in this node's mempool",
            m.mempool_size.clone(),
        );
        registry.register(
            "raft_log_entries",
            "Entries in this node's Raft log; older ones are compacted into a snapshot",
            m.raft_log_entries.clone(),
        );
        registry.register(
            "raft_voters",
            "Voters in the Raft membership in effect",
            m.raft_voters.clone(),
        );
        registry.register(
            "raft_learners",
            "Learners in the Raft membership in effect (replicated to, not voting)",
            m.raft_learners.clone(),
        );
        registry.register(
            "blocks_missing",
            "Blocks below the head still to be downloaded after installing a Raft snapshot",
            m.blocks_missing.clone(),
        );
        registry.register(
            "replay_rate_blocks_per_second",
            "External node: blocks replayed in the last second",
            m.replay_rate_blocks_per_second.clone(),
        );
        registry.register(
            "replay_lag_blocks",
            "External node: blocks behind the best source",
            m.replay_lag_blocks.clone(),
        );
        registry.register(
            "blocks_rejected",
            "External node: downloaded blocks rejected, by the rule they broke (their source is dropped)",
            m.blocks_rejected.clone(),
        );
        for (name, help, gauge) in [
            (
                "redundancy_level",
                "Single-sequencer mode: this member's RedundancyLevel",
                &m.redundancy_level,
            ),
            (
                "redundancy_active",
                "Single-sequencer mode: 1 while this member signs the rounds, else 0",
                &m.redundancy_active,
            ),
            (
                "redundancy_active_signer_level",
                "Single-sequencer mode: the level that signed the newest block (-1: none yet)",
                &m.redundancy_active_signer_level,
            ),
            (
                "redundancy_missed_rounds",
                "Single-sequencer mode: consecutive rounds without a lower level signing",
                &m.redundancy_missed_rounds,
            ),
            (
                "redundancy_same_level",
                "Single-sequencer mode: 1 while another member announces this member's level",
                &m.redundancy_same_level,
            ),
            (
                "batch_last_sealed",
                "The number of the newest L1 batch this node sealed and attested",
                &m.batch_last_sealed,
            ),
            (
                "batch_last_sealed_height",
                "The last block height of that batch",
                &m.batch_last_sealed_height,
            ),
            (
                "batch_last_committed",
                "The newest L1 batch this node's batcher committed",
                &m.batch_last_committed,
            ),
            (
                "batcher_active",
                "1 while this node holds the batcher role and submits to L1",
                &m.batcher_active,
            ),
            (
                "batcher_epoch",
                "The batcher role's epoch as this node applied it (0: never claimed)",
                &m.batcher_epoch,
            ),
            (
                "signing_guard_height",
                "The highest height this identity signed on this machine (the guard's watermark)",
                &m.signing_guard_height,
            ),
            (
                "signing_guard_round",
                "The round of the guard's watermark",
                &m.signing_guard_round,
            ),
        ] {
            registry.register(name, help, gauge.clone());
        }
        registry.register(
            "redundancy_step_ins",
            "Single-sequencer mode: times this member stepped in as the signer",
            m.redundancy_step_ins.clone(),
        );
        registry.register(
            "redundancy_reverts",
            "Single-sequencer mode: times this member reverted to standby for a lower level",
            m.redundancy_reverts.clone(),
        );
        registry.register(
            "signs_refused",
            "Blocks this member did not sign (the signing guard or the chain refused them)",
            m.signs_refused.clone(),
        );
        registry.register(
            "equivocations",
            "Two different blocks signed by the identity at one height, found while following",
            m.equivocations.clone(),
        );
        registry.register(
            "batches_committed",
            "L1 batches this node's batcher committed",
            m.batches_committed.clone(),
        );
        registry.register(
            "batch_submit_failures",
            "Batch submissions that were refused, reverted or left without a receipt",
            m.batch_submit_failures.clone(),
        );
        registry.register(
            "batch_reverts",
            "Batch submissions the settlement contract refused or reverted (another batcher's number, or a stale epoch)",
            m.batch_reverts.clone(),
        );
        registry.register(
            "batcher_claims",
            "Times this node's standby batcher claimed the role through Raft",
            m.batcher_claims.clone(),
        );
        registry.register(
            "batcher_superseded",
            "Times L1 showed this node's batcher that another took over at a higher epoch (its transactions revert)",
            m.batcher_superseded.clone(),
        );
        registry.register(
            "p2p_connections_refused",
            "p2p connections closed because the peer failed authentication, broke the protocol or went over a limit, by fault",
            m.p2p_connections_refused.clone(),
        );
        registry.register(
            "l1_errors",
            "Times the batcher could not reach L1",
            m.l1_errors.clone(),
        );
        registry.register(
            "rollbacks",
            "Times this node left the losing branch of an equivocation",
            m.rollbacks.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The present state of a group member, refreshed when scraped.
    pub fn observe_group(&self, g: &canon_engine::redundancy::group::GroupStatus) {
        self.redundancy_level.set(g.level);
        self.redundancy_active.set(i64::from(
            g.mode == canon_engine::policy::redundancy::MemberMode::Active,
        ));
        self.redundancy_active_signer_level
            .set(g.active_signer_level.unwrap_or(-1));
        self.redundancy_missed_rounds
            .set(i64::try_from(g.missed_rounds).unwrap_or(i64::MAX));
        self.redundancy_same_level
            .set(i64::from(g.same_level.is_some()));
        if let Some(w) = &g.watermark {
            self.signing_guard_height
                .set(i64::try_from(w.height).unwrap_or(i64::MAX));
            self.signing_guard_round
                .set(i64::try_from(w.round).unwrap_or(i64::MAX));
        }
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) = encode(&mut out, &self.registry) {
            tracing::error!("cannot encode metrics: {e}");
        }
        out
    }

    /// Called when the node sees a different leader (or none) than before.
    pub fn leader_changed(&self) {
        self.leader_changes.inc();
    }

    pub(crate) fn set_term(&self, term: u64) {
        if self.last_term.fetch_max(term, Ordering::Relaxed) < term {
            self.term.set(term as i64);
        }
    }
}

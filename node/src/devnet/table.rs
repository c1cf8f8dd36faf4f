//! The devnet's live table: one row per node (role, leader, term, height, head, peers,
//! mempool, lag, batches), or the single-sequencer group's view.

use std::fmt::Write as _;

use super::Devnet;
use crate::http::NodeKind;

impl Devnet {
    pub fn table(&mut self) -> String {
        if self.group_genesis_ms.is_some() {
            return self.group_table();
        }
        let rows = self.statuses();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<5} {:<10} {:<7} {:>6} {:>8} {:<12} {:>5} {:>7} {:>5} {:>7} {:>5}  batcher",
            "node",
            "role",
            "leader",
            "term",
            "height",
            "head",
            "peers",
            "mempool",
            "lag",
            "sealed",
            "on L1",
        );
        for (i, row) in rows.iter().enumerate() {
            match row {
                Ok(s) => {
                    let leader = s
                        .current_leader
                        .and_then(|l| self.index_of(&l))
                        .map(|l| self.name(l))
                        .unwrap_or_else(|| "-".into());
                    let head = s.head_hash.to_string();
                    let role = if s.role == NodeKind::External {
                        "external".to_string()
                    } else {
                        s.raft_state.name().to_lowercase()
                    };
                    let lag = s.lag.map(|l| l.to_string()).unwrap_or_else(|| "-".into());
                    // L1 batches: sealed here, and (the batcher) on L1.
                    let sealed = s
                        .batcher
                        .as_ref()
                        .map(|b| b.last_sealed.to_string())
                        .unwrap_or_else(|| "-".into());
                    let on_l1 = s
                        .batcher
                        .as_ref()
                        .and_then(|b| b.last_committed_l1)
                        .map(|n| n.to_string())
                        .unwrap_or_else(|| "-".into());
                    // The batcher role: this node's part in it, and the epoch Raft agreed.
                    let batcher = s
                        .batcher
                        .as_ref()
                        .map(|b| match (b.role.name(), b.level) {
                            ("attester", _) => "-".to_string(),
                            (r, Some(l)) => format!("{r} L{l} e{}", b.epoch),
                            (r, None) => format!("{r} e{}", b.epoch),
                        })
                        .unwrap_or_else(|| "-".into());
                    let _ = writeln!(
                        out,
                        "{:<5} {:<10} {:<7} {:>6} {:>8} {:<12} {:>5} {:>7} {:>5} {:>7} {:>5}  {}",
                        self.name(i),
                        role,
                        leader,
                        s.term,
                        s.last_canonized_height,
                        &head[..head.len().min(12)],
                        s.connected_peers.len(),
                        s.mempool_size,
                        lag,
                        sealed,
                        on_l1,
                        batcher
                    );
                }
                Err(e) => {
                    let _ = writeln!(out, "{:<5} {e}", self.name(i));
                }
            }
        }
        out
    }
}

impl Devnet {
    /// The single-sequencer view: who signs, who stands by and how close each is to stepping in.
    fn group_table(&mut self) -> String {
        let rows = self.statuses();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<5} {:<13} {:>5} {:>6} {:>8} {:>12} {:>6} {:<12} {:>5} {:>7}",
            "node",
            "mode",
            "level",
            "signer",
            "height",
            "round",
            "missed",
            "head",
            "peers",
            "mempool"
        );
        for (i, row) in rows.iter().enumerate() {
            let s = match row {
                Ok(s) => s,
                Err(e) => {
                    let _ = writeln!(out, "{:<5} {e}", self.name(i));
                    continue;
                }
            };
            let head = s.head_hash.to_string();
            let dash = || "-".to_string();
            let (mode, level, signer, round, missed) = match &s.redundancy {
                Some(g) => (
                    g.mode.name().to_string(),
                    g.level.to_string(),
                    g.active_signer_level.map_or_else(dash, |l| l.to_string()),
                    g.round.map_or_else(dash, |r| r.to_string()),
                    g.missed_rounds.to_string(),
                ),
                None => (s.role.name().to_string(), dash(), dash(), dash(), dash()),
            };
            let _ = writeln!(
                out,
                "{:<5} {:<13} {:>5} {:>6} {:>8} {:>12} {:>6} {:<12} {:>5} {:>7}",
                self.name(i),
                mode,
                level,
                signer,
                s.last_applied_height,
                round,
                missed,
                &head[..head.len().min(12)],
                s.connected_peers.len(),
                s.mempool_size,
            );
        }
        out
    }
}

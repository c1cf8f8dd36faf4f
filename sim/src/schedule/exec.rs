//! Carrying a schedule out on a running cluster: each fault at its time, as the trace notes it.

use std::time::Duration;

use super::{Fault, Schedule};
use crate::cluster::SimCluster;

/// Why a schedule cannot run on a cluster: it names a node, an external node or an L1 the
/// cluster does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unfit {
    #[error("the schedule names node n{named}; this scenario's cluster has n0..n{}", .nodes - 1)]
    Node { named: usize, nodes: usize },
    #[error("the schedule names external node x{named}; this scenario has {externals}")]
    External { named: usize, externals: usize },
    #[error("the schedule has an L1 fault ({fault}); this scenario's cluster has no L1")]
    NoL1 { fault: String },
}

/// Whether `schedule` fits a cluster of `nodes` nodes and `externals` external nodes, with an
/// L1 or not.
pub fn check_fits(
    schedule: &Schedule,
    nodes: usize,
    externals: usize,
    has_l1: bool,
) -> Result<(), Unfit> {
    if let Some(named) = schedule.highest_node().filter(|n| *n >= nodes) {
        return Err(Unfit::Node { named, nodes });
    }
    if let Some(named) = schedule.highest_external().filter(|x| *x >= externals) {
        return Err(Unfit::External { named, externals });
    }
    if !has_l1 {
        if let Some(t) = schedule.faults.iter().find(|t| t.fault.needs_l1()) {
            return Err(Unfit::NoL1 {
                fault: t.fault.to_string(),
            });
        }
    }
    Ok(())
}

/// Runs `schedule` on `c`, from now: each fault at its time after now, then waits for its end.
/// The caller has checked it fits ([`check_fits`]).
pub async fn execute(c: &mut SimCluster, schedule: &Schedule) {
    let start = madsim::time::Instant::now();
    for t in &schedule.faults {
        madsim::time::sleep_until(start + Duration::from_millis(t.at_ms)).await;
        apply(c, &t.fault);
    }
    madsim::time::sleep_until(start + Duration::from_millis(schedule.end_ms)).await;
}

/// Node `i` is cut off from its peers both ways; clients still reach it.
pub fn cut_off_from_peers(c: &mut SimCluster, i: usize) {
    for j in (0..c.size()).filter(|j| *j != i) {
        c.net.block(i, j);
        c.net.block(j, i);
    }
    c.note(format!(
        "fault: n{i} cut off from its peers, clients still reach it"
    ));
}

fn apply(c: &mut SimCluster, fault: &Fault) {
    match *fault {
        Fault::Crash {
            node,
            power_loss,
            keep_permille,
        } => c.crash_as(node, power_loss, keep_permille),
        Fault::CrashLeader {
            power_loss,
            keep_permille,
        } => match c.leader() {
            Some(l) => c.crash_as(l, power_loss, keep_permille),
            None => c.note("fault: crash the leader (there is none)"),
        },
        Fault::Restart { node } => {
            if c.is_up(node) {
                c.note(format!("fault: restart n{node} (already up)"));
            } else {
                c.restart(node);
            }
        }
        Fault::RestartDown { nth } => {
            let down = c.down_nodes();
            match down.get(nth % down.len().max(1)) {
                Some(&node) => c.restart(node),
                None => c.note("fault: restart a down node (none is down)"),
            }
        }
        Fault::RestartAllDown => {
            let down = c.down_nodes();
            if down.is_empty() {
                c.note("fault: restart every down node (none is down)");
            }
            for node in down {
                c.restart(node);
            }
        }
        Fault::CutOffLeader { otherwise } => {
            let node = c.leader().unwrap_or(otherwise);
            cut_off_from_peers(c, node);
        }
        Fault::Isolate { node } => {
            c.net.isolate(node);
            c.note(format!("fault: isolate n{node}"));
        }
        Fault::Drop { from, to } => {
            c.net.block(from, to);
            c.note(format!("fault: drop n{from} -> n{to}"));
        }
        Fault::CutOff { node } => cut_off_from_peers(c, node),
        Fault::Loss { permille } => {
            c.net.set_loss_permille(permille);
            c.note(format!("fault: lose {permille}/1000 messages"));
        }
        Fault::Delay { max_ms } => {
            c.net.set_extra_delay_ms(0, max_ms);
            c.note(format!("fault: delay messages up to {max_ms} ms"));
        }
        Fault::HealNetwork => {
            c.net.heal();
            c.note("fault: heal network");
        }
        Fault::DiskFails { node } => c.fail_disk_writes(node),
        Fault::HealDisks => c.heal_disks(),
        Fault::CrashTorn {
            node,
            keep_permille,
            torn_ops,
        } => c.crash_torn(node, keep_permille, torn_ops),
        Fault::Rot {
            node,
            column,
            nth,
            bit,
        } => c.rot(node, column, nth, bit),
        Fault::FlipRead { node, column, bit } => c.flip_next_read(node, column, bit),
        Fault::Misdirect { node, column, xor } => c.misdirect_next_put(node, column, xor),
        Fault::SlowFsync { node, writes, ms } => c.slow_fsync(node, writes, ms),
        Fault::SlowReads { node, reads, ms } => c.slow_reads(node, reads, ms),
        Fault::ClockJump { node, delta_ms } => c.jump_clock(node, delta_ms),
        Fault::Reset { a, b } => {
            let k = c.net.reset_between(a, b);
            c.note(format!("fault: reset {k} connections n{a} <-> n{b}"));
        }
        Fault::HalfOpen { a, b } => {
            let k = c.net.half_open_between(a, b);
            c.note(format!("fault: {k} connections n{a} <-> n{b} go half-open"));
        }
        Fault::Stall { reader, writer, ms } => {
            let k = c.net.stall_reading(reader, writer, ms);
            c.note(format!(
                "fault: n{reader} stops reading n{writer} for {ms} ms ({k} connections)"
            ));
        }
        Fault::Tamper { from, to, attack } => {
            let k = c.net.tamper(from, to, attack);
            c.note(format!(
                "fault: attacker {attack:?}s n{from} -> n{to} ({k} connections)"
            ));
        }
        Fault::L1Down => c.l1.set_up(false),
        Fault::L1Up => c.l1.set_up(true),
        Fault::L1DropNext { count } => c.l1.drop_next(count),
        Fault::L1LoseReceipts { count } => c.l1.lose_receipts(count),
        Fault::CrashExternal {
            external,
            keep_permille,
        } => c.crash_external_as(external, keep_permille),
        Fault::RestartExternal { external } => {
            if c.external_is_up(external) {
                c.note(format!("fault: restart external x{external} (already up)"));
            } else {
                c.restart_external(external);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Timed;
    use super::*;

    fn one(fault: Fault) -> Schedule {
        Schedule::new(vec![Timed { at_ms: 5, fault }], 10)
    }

    #[test]
    fn a_schedule_fits_only_a_cluster_that_has_what_it_names() {
        let crash = one(Fault::Restart { node: 3 });
        assert_eq!(
            check_fits(&crash, 3, 0, true),
            Err(Unfit::Node { named: 3, nodes: 3 })
        );
        assert_eq!(check_fits(&crash, 4, 0, false), Ok(()));
        let x = one(Fault::RestartExternal { external: 0 });
        assert_eq!(
            check_fits(&x, 3, 0, true),
            Err(Unfit::External {
                named: 0,
                externals: 0
            })
        );
        assert_eq!(check_fits(&x, 3, 1, true), Ok(()));
        let l1 = one(Fault::L1DropNext { count: 2 });
        assert!(matches!(
            check_fits(&l1, 3, 0, false),
            Err(Unfit::NoL1 { .. })
        ));
        assert_eq!(check_fits(&l1, 3, 0, true), Ok(()));
        let msg = check_fits(&crash, 3, 0, true).unwrap_err().to_string();
        assert!(msg.contains("n3") && msg.contains("n0..n2"), "{msg}");
    }
}

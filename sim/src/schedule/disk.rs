//! Drawing the disk's lies from a seed: bit rot at rest, bits flipped on the way back,
//! writes that land under another key, each followed or not by a restart that makes the node
//! scrub its store at start (`policy::repair`); and power lost in the middle of a write.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use canon_engine::storage::Column;

use super::{Fault, Schedule, Timed};

/// Keep these scenarios' schedules apart from the cluster's own draws.
const DISK_SALT: u64 = 0xd15c_0e11_0a7e_5000;
const MISDIRECT_SALT: u64 = 0x0d15_d12e_c7ed_5000;
const TORN_SALT: u64 = 0x7012_0717_e5a1_5000;
const SLOW_SALT: u64 = 0x5106_f5c0_d15c_5000;

/// Which column a lie hits, weighted by how much of a node's store it is and how often it is
/// written: blocks, log entries and state most; the Raft vote and marks (Meta) least, since
/// a damaged vote halts the node for good.
const COLUMN_WEIGHTS: [(Column, u32); 7] = [
    (Column::Block, 5),
    (Column::Log, 5),
    (Column::State, 3),
    (Column::Certificate, 2),
    (Column::Batch, 2),
    (Column::Attestation, 2),
    (Column::Meta, 1),
];

fn column(rng: &mut impl Rng) -> Column {
    COLUMN_WEIGHTS
        .choose_weighted(rng, |(_, w)| *w)
        .map_or(Column::Block, |(c, _)| *c)
}

/// One lie on node `node`'s disk: rot at rest (half), a flipped read or a misdirected write
/// (a quarter each).
fn lie(rng: &mut impl Rng, node: usize) -> Fault {
    let column = column(rng);
    match rng.gen_range(0..4) {
        0 | 1 => Fault::Rot {
            node,
            column,
            nth: rng.gen_range(0..10_000),
            bit: rng.gen_range(0..1 << 16),
        },
        2 => Fault::FlipRead {
            node,
            column,
            bit: rng.gen_range(0..1 << 16),
        },
        _ => Fault::Misdirect {
            node,
            column,
            xor: rng.gen_range(1..=255),
        },
    }
}

/// Draws disk-corruption's faults for `seed` over `nodes` nodes. First each node in turn (in
/// an order drawn) gets one to three lies, and 0.5-3 s later it crashes (a power loss or
/// not, keeping some of what it had not synced) and restarts 0.3-2 s after: its start-up
/// scrub finds what rotted. The next node's turn waits 6-10 s, time to repair. Then a
/// minority of the nodes, drawn, gets four spells of lies with no restart planned: reads
/// meet them, or the rolling restart at the end does. So a majority of disks stays healthy.
pub fn draw_disk_corruption(seed: u64, nodes: usize) -> Schedule {
    draw_lies(seed ^ DISK_SALT, nodes, lie)
}

/// misdirected-write's faults: disk-corruption's shape, every lie a write under another key.
pub fn draw_misdirected_write(seed: u64, nodes: usize) -> Schedule {
    draw_lies(seed ^ MISDIRECT_SALT, nodes, |rng, node| Fault::Misdirect {
        node,
        column: column(rng),
        xor: rng.gen_range(1..=255),
    })
}

/// torn-write's faults: ten power losses in the middle of a write, one node down at a time,
/// each keeping some of its unsynced batches and then the first 0-24 operations of the next
/// (a block's apply is a few dozen), and a restart 0.3-2 s later.
pub fn draw_torn_write(seed: u64, nodes: usize) -> Schedule {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ TORN_SALT);
    let mut faults = Vec::new();
    let mut at_ms = 500u64;
    for _ in 0..10 {
        let node = rng.gen_range(0..nodes);
        let crash = Fault::CrashTorn {
            node,
            keep_permille: rng.gen_range(0..=1_000),
            torn_ops: rng.gen_range(0..=24),
        };
        at_ms = crash_and_restart(&mut rng, &mut faults, at_ms, crash, node);
        at_ms += rng.gen_range(1_500..4_000);
    }
    Schedule::new(faults, at_ms)
}

/// slow-disk's faults: each node's disk in turn stalls (one to three spells of 3-30 synced
/// writes or reads, 50-1,500 ms each; a spell stalls writes or reads evenly), then a
/// minority's disks at once, then every disk briefly (1-5 of 50-300 ms), as a device does
/// under a firmware hiccup or a neighbour's load.
pub fn draw_slow_disk(seed: u64, nodes: usize) -> Schedule {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ SLOW_SALT);
    let mut faults = Vec::new();
    let mut at_ms = 500u64;
    let mut stall = |rng: &mut ChaCha8Rng, at_ms: u64, node: usize, count, ms| {
        let (count, ms) = (rng.gen_range(count), rng.gen_range(ms));
        let fault = if rng.gen_bool(0.5) {
            Fault::SlowFsync {
                node,
                writes: count,
                ms,
            }
        } else {
            Fault::SlowReads {
                node,
                reads: count,
                ms,
            }
        };
        faults.push(Timed { at_ms, fault })
    };
    let mut order: Vec<usize> = (0..nodes).collect();
    order.shuffle(&mut rng);
    for &node in &order {
        for _ in 0..rng.gen_range(1..=3) {
            stall(&mut rng, at_ms, node, 3..=30, 50..=1_500);
            at_ms += rng.gen_range(500..4_000);
        }
        at_ms += rng.gen_range(2_000..5_000);
    }
    order.shuffle(&mut rng);
    for &node in &order[..(nodes.saturating_sub(1) / 2).max(1)] {
        stall(&mut rng, at_ms, node, 3..=30, 50..=1_500);
        at_ms += rng.gen_range(0..200);
    }
    at_ms += rng.gen_range(5_000..10_000);
    for node in 0..nodes {
        stall(&mut rng, at_ms, node, 1..=5, 50..=300);
    }
    at_ms += rng.gen_range(3_000..6_000);
    Schedule::new(faults, at_ms)
}

/// `crash` of node `node` at `at_ms`, and its restart 0.3-2 s later; returns the restart's
/// time.
fn crash_and_restart(
    rng: &mut ChaCha8Rng,
    faults: &mut Vec<Timed>,
    at_ms: u64,
    crash: Fault,
    node: usize,
) -> u64 {
    faults.push(Timed {
        at_ms,
        fault: crash,
    });
    let restart_ms = at_ms + rng.gen_range(300..2_000);
    faults.push(Timed {
        at_ms: restart_ms,
        fault: Fault::Restart { node },
    });
    restart_ms
}

/// A spell of lies on `node` from `at_ms`: one to `most` of them, each up to `gap_ms` after
/// the last; returns when the spell ends.
fn spell(
    rng: &mut ChaCha8Rng,
    faults: &mut Vec<Timed>,
    mut at_ms: u64,
    node: usize,
    (most, gap_ms): (u32, u64),
    lie: &impl Fn(&mut ChaCha8Rng, usize) -> Fault,
) -> u64 {
    for _ in 0..rng.gen_range(1..=most) {
        faults.push(Timed {
            at_ms,
            fault: lie(rng, node),
        });
        at_ms += rng.gen_range(0..gap_ms);
    }
    at_ms
}

fn draw_lies(seed: u64, nodes: usize, lie: impl Fn(&mut ChaCha8Rng, usize) -> Fault) -> Schedule {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut faults = Vec::new();
    let mut at_ms = 500u64;
    let mut order: Vec<usize> = (0..nodes).collect();
    order.shuffle(&mut rng);
    for &node in &order {
        at_ms = spell(&mut rng, &mut faults, at_ms, node, (3, 300), &lie);
        at_ms += rng.gen_range(500..3_000);
        let crash = Fault::Crash {
            node,
            power_loss: rng.gen_bool(0.5),
            keep_permille: rng.gen_range(0..=1_000),
        };
        at_ms = crash_and_restart(&mut rng, &mut faults, at_ms, crash, node);
        at_ms += rng.gen_range(6_000..10_000);
    }
    order.shuffle(&mut rng);
    let minority = &order[..(nodes.saturating_sub(1) / 2).max(1)];
    for _ in 0..4 {
        let node = *minority.choose(&mut rng).unwrap_or(&0);
        at_ms = spell(&mut rng, &mut faults, at_ms, node, (2, 500), &lie);
        at_ms += rng.gen_range(2_000..5_000);
    }
    Schedule::new(faults, at_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_draw_is_the_seed_s_and_hits_every_node_one_at_a_time() {
        for seed in 0..200 {
            let s = draw_disk_corruption(seed, 3);
            assert_eq!(s, draw_disk_corruption(seed, 3), "seed {seed}");
            assert_eq!(
                s.to_string().parse::<Schedule>(),
                Ok(s.clone()),
                "seed {seed}"
            );
            let lied: std::collections::BTreeSet<usize> = s
                .faults
                .iter()
                .filter_map(|t| match t.fault {
                    Fault::Rot { node, .. }
                    | Fault::FlipRead { node, .. }
                    | Fault::Misdirect { node, .. } => Some(node),
                    _ => None,
                })
                .collect();
            assert_eq!(lied.len(), 3, "seed {seed}: {s}");
            // After the last restart, lies hit one node only (a minority of three).
            let last_restart = s
                .faults
                .iter()
                .rposition(|t| matches!(t.fault, Fault::Restart { .. }))
                .unwrap();
            let late: std::collections::BTreeSet<usize> = s.faults[last_restart + 1..]
                .iter()
                .filter_map(|t| t.fault.highest_node())
                .collect();
            assert!(late.len() <= 1, "seed {seed}: {s}");
            // Every crash is followed by its node's restart before another node's crash.
            let mut down: Option<usize> = None;
            for t in &s.faults {
                match t.fault {
                    Fault::Crash { node, .. } => {
                        assert_eq!(down, None, "seed {seed}: two nodes down at once");
                        down = Some(node);
                    }
                    Fault::Restart { node } => {
                        assert_eq!(down, Some(node), "seed {seed}");
                        down = None;
                    }
                    _ => {}
                }
            }
            assert_eq!(down, None, "seed {seed}");
        }
    }
}

//! Drawing chaos's fault mix from a seed, before the run: every choice a fault makes is drawn
//! here and written into it, so carrying the schedule out draws nothing.

use std::collections::BTreeSet;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::swarm::{Kind, Weights};
use super::{Fault, Schedule, Timed};
use crate::net::stream::Tamper;

/// Keeps a seed's schedule apart from the cluster's own draws (which decide start-up skews
/// and the like): `seed ^ SCHEDULE_SALT` seeds the schedule.
const SCHEDULE_SALT: u64 = 0x5c4e_d01e_c4a0_5000;

/// What chaos's twelfth draw (one in sixteen) does: an L1 fault, or, in a cluster without an
/// L1, cutting a node off from its peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpareDraw {
    L1,
    CutOff,
}

/// The shape of chaos's mix: how many nodes and external nodes it hits and for how long.
#[derive(Clone, Copy, Debug)]
pub struct ChaosMix {
    pub nodes: usize,
    pub externals: usize,
    pub spare: SpareDraw,
    /// Faults start being drawn until this much time has passed.
    pub secs: u64,
    /// How likely each kind of cluster fault is.
    pub weights: Weights,
}

/// Draws chaos's faults for `seed`: every 200-2,000 ms, first maybe an external node's crash
/// or restart (1 and 2 in 12), then one cluster fault of a kind drawn by the mix's weights:
/// crash a node (half are power losses), restart one it crashed, isolate one, drop one
/// direction of a link, lose or delay messages, heal the network, fail or heal disks, jump a
/// clock by up to 30 s, the spare draw, a stream fault (reset, half-open, a stalled reader or
/// an attacker on the path), or crash the leader.
pub fn draw_chaos(seed: u64, mix: &ChaosMix) -> Schedule {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ SCHEDULE_SALT);
    let n = mix.nodes;
    let mut faults = Vec::new();
    // Who this schedule has crashed and not restarted: a restart picks one of them (a leader
    // crashed by `crash-leader` is not known until the run; the heal restarts it).
    let mut down: BTreeSet<usize> = BTreeSet::new();
    let mut at_ms = 0u64;
    while at_ms < mix.secs * 1_000 {
        at_ms += rng.gen_range(200..2_000);
        let mut push = |fault| faults.push(Timed { at_ms, fault });
        if mix.externals > 0 {
            let external = rng.gen_range(0..mix.externals);
            match rng.gen_range(0..12) {
                0 => push(Fault::CrashExternal {
                    external,
                    keep_permille: rng.gen_range(0..=1_000),
                }),
                1 | 2 => push(Fault::RestartExternal { external }),
                _ => {}
            }
        }
        let Some(kind) = mix.weights.pick(&mut rng) else {
            continue;
        };
        let fault = match kind {
            Kind::Crash => {
                let node = rng.gen_range(0..n);
                down.insert(node);
                Some(Fault::Crash {
                    node,
                    power_loss: rng.gen_bool(0.5),
                    keep_permille: rng.gen_range(0..=1_000),
                })
            }
            Kind::Restart => {
                let crashed: Vec<usize> = down.iter().copied().collect();
                crashed.choose(&mut rng).map(|&node| {
                    down.remove(&node);
                    Fault::Restart { node }
                })
            }
            Kind::Isolate => Some(Fault::Isolate {
                node: rng.gen_range(0..n),
            }),
            Kind::Drop => {
                let from = rng.gen_range(0..n);
                let to = (from + rng.gen_range(1..n)) % n;
                Some(Fault::Drop { from, to })
            }
            Kind::Loss => Some(Fault::Loss {
                permille: rng.gen_range(0..300),
            }),
            Kind::Delay => Some(Fault::Delay {
                max_ms: rng.gen_range(0..150),
            }),
            Kind::HealNetwork => Some(Fault::HealNetwork),
            Kind::Disk => Some(if rng.gen_bool(0.5) {
                Fault::DiskFails {
                    node: rng.gen_range(0..n),
                }
            } else {
                Fault::HealDisks
            }),
            Kind::Clock => Some(Fault::ClockJump {
                node: rng.gen_range(0..n),
                delta_ms: rng.gen_range(-30_000..=30_000),
            }),
            Kind::Spare => Some(match mix.spare {
                SpareDraw::CutOff => Fault::CutOff {
                    node: rng.gen_range(0..n),
                },
                SpareDraw::L1 => match rng.gen_range(0..4) {
                    0 => Fault::L1Down,
                    1 => Fault::L1Up,
                    2 => Fault::L1DropNext {
                        count: rng.gen_range(1..4),
                    },
                    _ => Fault::L1LoseReceipts {
                        count: rng.gen_range(1..3),
                    },
                },
            }),
            Kind::Stream => Some(stream_fault(&mut rng, n)),
            Kind::CrashLeader => Some(Fault::CrashLeader {
                power_loss: rng.gen_bool(0.5),
                keep_permille: rng.gen_range(0..=1_000),
            }),
        };
        if let Some(f) = fault {
            push(f);
        }
    }
    Schedule::new(faults, at_ms)
}

/// Keeps kv-linearizable's schedule apart from the cluster's own draws.
const KV_LINEARIZABLE_SALT: u64 = 0x4b5f_11ea_7a61_5000;

/// Draws kv-linearizable's faults for `seed` on `nodes` nodes: every 0.5-2.5 s until `secs`
/// have passed, one of six: crash the leader (a power loss or not, some of its unsynced
/// writes kept), restart a node that is down, cut the leader off from its peers (a drawn node
/// when none leads), jump a clock by up to 5 s, or (two in six) heal the network and restart
/// every node that is down.
pub fn draw_kv_linearizable(seed: u64, nodes: usize, secs: u64) -> Schedule {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ KV_LINEARIZABLE_SALT);
    let mut faults = Vec::new();
    let mut at_ms = 0u64;
    while at_ms < secs * 1_000 {
        at_ms += rng.gen_range(500..2_500);
        let mut push = |fault| faults.push(Timed { at_ms, fault });
        match rng.gen_range(0..6) {
            0 => push(Fault::CrashLeader {
                power_loss: rng.gen_bool(0.5),
                keep_permille: rng.gen_range(0..=1_000),
            }),
            1 => push(Fault::RestartDown {
                nth: rng.gen_range(0..nodes),
            }),
            2 => push(Fault::CutOffLeader {
                otherwise: rng.gen_range(0..nodes),
            }),
            3 => push(Fault::ClockJump {
                node: rng.gen_range(0..nodes),
                delta_ms: rng.gen_range(-5_000..=5_000),
            }),
            _ => {
                push(Fault::HealNetwork);
                push(Fault::RestartAllDown);
            }
        }
    }
    Schedule::new(faults, at_ms)
}

/// Keeps l1-weather's schedule apart from the cluster's own draws.
const L1_WEATHER_SALT: u64 = 0x11_3ea7_4e55_5000;

/// Draws l1-weather's faults for `seed`: eight spells of L1 weather, each 0.5-4 s after the
/// last one ends, each an outage of 0.2-5 s, 1-3 lost transactions or 1-2 lost receipts (a
/// third each). The faults end with the last spell's gap.
pub fn draw_l1_weather(seed: u64) -> Schedule {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ L1_WEATHER_SALT);
    let mut faults = Vec::new();
    let mut at_ms = 0u64;
    for _ in 0..8 {
        match rng.gen_range(0..3) {
            0 => faults.push(Timed {
                at_ms,
                fault: Fault::L1DropNext {
                    count: rng.gen_range(1..4),
                },
            }),
            1 => faults.push(Timed {
                at_ms,
                fault: Fault::L1LoseReceipts {
                    count: rng.gen_range(1..3),
                },
            }),
            _ => {
                faults.push(Timed {
                    at_ms,
                    fault: Fault::L1Down,
                });
                at_ms += rng.gen_range(200..5_000);
                faults.push(Timed {
                    at_ms,
                    fault: Fault::L1Up,
                });
            }
        }
        at_ms += rng.gen_range(500..4_000);
    }
    Schedule::new(faults, at_ms)
}

/// One of the stream faults between two distinct nodes, each of four kinds equally likely.
pub fn stream_fault(rng: &mut impl Rng, n: usize) -> Fault {
    let a = rng.gen_range(0..n);
    let b = (a + rng.gen_range(1..n)) % n;
    match rng.gen_range(0..4) {
        0 => Fault::Reset { a, b },
        1 => Fault::HalfOpen { a, b },
        2 => Fault::Stall {
            reader: a,
            writer: b,
            ms: rng.gen_range(100..3_000),
        },
        _ => Fault::Tamper {
            from: a,
            to: b,
            attack: *[
                Tamper::FlipBit,
                Tamper::Replay,
                Tamper::Drop,
                Tamper::Splice,
            ]
            .choose(rng)
            .unwrap_or(&Tamper::FlipBit),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fault's first word as printed (`crash`, `l1-down`, ...): its kind.
    fn verb(fault: &Fault) -> String {
        fault
            .to_string()
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string()
    }

    fn mix(spare: SpareDraw, externals: usize) -> ChaosMix {
        ChaosMix {
            nodes: 3,
            externals,
            spare,
            secs: 60,
            weights: Weights::CHAOS,
        }
    }

    #[test]
    fn a_seed_draws_one_schedule() {
        let m = mix(SpareDraw::L1, 1);
        assert_eq!(draw_chaos(7, &m), draw_chaos(7, &m));
        assert_ne!(draw_chaos(7, &m), draw_chaos(8, &m));
    }

    #[test]
    fn faults_are_spaced_at_least_as_chaos_spaces_them_and_stay_in_bounds() {
        for seed in 0..200 {
            let m = mix(SpareDraw::CutOff, 0);
            let s = draw_chaos(seed, &m);
            let mut times: Vec<u64> = s.faults.iter().map(|t| t.at_ms).collect();
            times.dedup();
            // A draw makes nothing now and then (a restart with no one crashed), so only the
            // shortest gap is bounded.
            for w in times.windows(2) {
                assert!(w[1] - w[0] >= 200, "seed {seed}: {w:?}");
            }
            assert!(s.end_ms >= 60_000 && s.end_ms < 62_000, "seed {seed}");
            assert!(s.highest_node().is_none_or(|n| n < 3));
            assert!(s.faults.iter().all(|t| !t.fault.needs_l1()));
            assert_eq!(s.highest_external(), None);
        }
    }

    #[test]
    fn restarts_name_a_node_the_schedule_crashed() {
        for seed in 0..200 {
            let s = draw_chaos(seed, &mix(SpareDraw::L1, 1));
            let mut down = BTreeSet::new();
            for t in &s.faults {
                match t.fault {
                    Fault::Crash { node, .. } => {
                        down.insert(node);
                    }
                    Fault::Restart { node } => assert!(down.remove(&node), "seed {seed}"),
                    _ => {}
                }
            }
        }
    }

    /// kv-linearizable's schedule names only the nodes it has, spaces its faults as the
    /// scenario did, pairs every heal with restarting the down nodes, and draws all six.
    #[test]
    fn kv_linearizable_draws_its_six_faults_in_bounds() {
        let mut kinds = BTreeSet::new();
        for seed in 0..200 {
            let s = draw_kv_linearizable(seed, 3, 20);
            assert_eq!(s, draw_kv_linearizable(seed, 3, 20));
            assert!(s.highest_node().is_none_or(|n| n < 3), "seed {seed}");
            assert!(s.end_ms >= 20_000 && s.end_ms < 22_500, "seed {seed}");
            for (i, t) in s.faults.iter().enumerate() {
                if t.fault == Fault::HealNetwork {
                    assert_eq!(s.faults[i + 1].fault, Fault::RestartAllDown, "seed {seed}");
                    assert_eq!(s.faults[i + 1].at_ms, t.at_ms, "seed {seed}");
                }
                kinds.insert(verb(&t.fault));
            }
        }
        assert_eq!(kinds.len(), 6, "{kinds:?}");
    }

    /// l1-weather's schedule is eight spells, each outage closed by its return, all L1.
    #[test]
    fn l1_weather_draws_eight_spells_of_l1_faults() {
        let mut kinds = BTreeSet::new();
        for seed in 0..200 {
            let s = draw_l1_weather(seed);
            assert_eq!(s, draw_l1_weather(seed));
            assert!(s.faults.iter().all(|t| t.fault.needs_l1()), "seed {seed}");
            let downs = s.faults.iter().filter(|t| t.fault == Fault::L1Down).count();
            let ups = s.faults.iter().filter(|t| t.fault == Fault::L1Up).count();
            assert_eq!(downs, ups, "seed {seed}");
            assert_eq!(s.faults.len() - downs, 8, "seed {seed}: {s}");
            // Eight gaps of at least 500 ms; at most eight spells of 5 s and gaps of 4 s.
            assert!(s.end_ms >= 4_000 && s.end_ms < 72_000, "seed {seed}");
            for t in &s.faults {
                kinds.insert(verb(&t.fault));
            }
        }
        assert_eq!(kinds.len(), 4, "{kinds:?}");
    }

    #[test]
    fn the_mix_draws_every_kind_over_many_seeds() {
        let mut seen = BTreeSet::new();
        for seed in 0..100 {
            for t in draw_chaos(seed, &mix(SpareDraw::L1, 1)).faults {
                seen.insert(verb(&t.fault));
            }
        }
        let kinds: Vec<&str> = seen.iter().map(String::as_str).collect();
        assert_eq!(
            kinds,
            [
                "clock-jump",
                "crash",
                "crash-external",
                "crash-leader",
                "delay",
                "disk-fails",
                "drop",
                "half-open",
                "heal-disks",
                "heal-network",
                "isolate",
                "l1-down",
                "l1-drop-next",
                "l1-lose-receipts",
                "l1-up",
                "loss",
                "reset",
                "restart",
                "restart-external",
                "stall",
                "tamper",
            ]
        );
    }
}

//! Swarm testing for chaos: besides its faults, each seed draws the cluster's shape and timing
//! and the weights of its fault mix, some of them zero, so that across seeds some runs leave
//! whole kinds of faults out and others pile one kind on (a mix that is always all of
//! everything hides the bugs that need one fault repeated without the others healing it).

use std::fmt;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::cluster::ClusterConfig;

/// Keeps the swarm's draws apart from the schedule's and the cluster's.
const SWARM_SALT: u64 = 0x5a4a_5a4a_0bee_5000;

/// The kinds of fault chaos's mix draws from, in the order of [`Weights::of`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Crash,
    Restart,
    Isolate,
    Drop,
    Loss,
    Delay,
    HealNetwork,
    Disk,
    Clock,
    /// An L1 fault, or cutting a node off from its peers where there is no L1.
    Spare,
    Stream,
    CrashLeader,
}

impl Kind {
    pub const ALL: [Kind; 12] = [
        Kind::Crash,
        Kind::Restart,
        Kind::Isolate,
        Kind::Drop,
        Kind::Loss,
        Kind::Delay,
        Kind::HealNetwork,
        Kind::Disk,
        Kind::Clock,
        Kind::Spare,
        Kind::Stream,
        Kind::CrashLeader,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Crash => "crash",
            Kind::Restart => "restart",
            Kind::Isolate => "isolate",
            Kind::Drop => "drop",
            Kind::Loss => "loss",
            Kind::Delay => "delay",
            Kind::HealNetwork => "heal",
            Kind::Disk => "disk",
            Kind::Clock => "clock",
            Kind::Spare => "spare",
            Kind::Stream => "stream",
            Kind::CrashLeader => "crash-leader",
        }
    }
}

/// How likely each kind is, relative to the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Weights([u32; 12]);

impl Weights {
    /// chaos's mix before swarm testing: 16 draws, crash, restart, stream faults and leader
    /// crashes two each, the rest one each.
    pub const CHAOS: Weights = Weights([2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2]);

    pub fn of(&self, k: Kind) -> u32 {
        self.0[k as usize]
    }

    /// A kind drawn by weight (`None`: every weight is zero).
    pub fn pick(&self, rng: &mut impl Rng) -> Option<Kind> {
        let total: u32 = self.0.iter().sum();
        if total == 0 {
            return None;
        }
        let mut draw = rng.gen_range(0..total);
        for k in Kind::ALL {
            let w = self.of(k);
            if draw < w {
                return Some(k);
            }
            draw -= w;
        }
        None
    }
}

impl fmt::Display for Weights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = Kind::ALL
            .iter()
            .map(|k| format!("{}:{}", k.name(), self.of(*k)))
            .collect();
        write!(f, "{}", parts.join(","))
    }
}

/// Whether chaos swarms (the default: each seed draws its cluster's shape, timing and fault
/// mix) or runs its fixed shape: 3 nodes, election timeouts of 150-300 ms, a block every
/// 100 ms, the default batch and [`Weights::CHAOS`], which is chaos as it was before swarm
/// testing. A swarm seed costs more on average (a third of them run 5 nodes, a third make a
/// block every 50 ms), so speeds are compared on the fixed shape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Swarming {
    #[default]
    On,
    Off,
}

impl Swarming {
    /// What `canon-sim run` is told to run this way (nothing: swarm testing is the default).
    pub fn args(self) -> &'static [&'static str] {
        match self {
            Swarming::On => &[],
            Swarming::Off => &["--swarm", "off"],
        }
    }
}

/// Scenarios that swarm (the others take no `--swarm`).
pub const SWARMED: &[&str] = &["chaos"];

/// What a chaos seed draws before its faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Swarm {
    pub nodes: usize,
    pub election_timeout_ms_min: u64,
    pub block_time_ms: u64,
    pub blocks_per_batch: u64,
    pub weights: Weights,
}

impl Swarm {
    /// Draws a seed's swarm: 3 nodes (two seeds in three) or 5; election timeouts of 150-300,
    /// 300-600 or 500-1,000 ms with a heartbeat a third of the shortest; blocks every 50, 100
    /// or 200 ms; a batch every 1 or 2 s of blocks (so sealed batches never outrun the
    /// simulated L1, which commits one per 250 ms block); each kind of fault left out with
    /// probability 1/4 and otherwise weighted 1-3.
    pub fn draw(seed: u64) -> Swarm {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ SWARM_SALT);
        let nodes = if rng.gen_range(0..3) < 2 { 3 } else { 5 };
        let election_timeout_ms_min = [150, 300, 500][rng.gen_range(0..3)];
        let block_time_ms = [50, 100, 200][rng.gen_range(0..3)];
        let blocks_per_batch = 1_000 / block_time_ms * rng.gen_range(1..=2);
        let mut weights = [0u32; 12];
        for w in &mut weights {
            *w = if rng.gen_range(0..4) == 0 {
                0
            } else {
                rng.gen_range(1..=3)
            };
        }
        if weights.iter().all(|w| *w == 0) {
            weights = Weights::CHAOS.0;
        }
        Swarm {
            nodes,
            election_timeout_ms_min,
            block_time_ms,
            blocks_per_batch,
            weights: Weights(weights),
        }
    }

    /// `cfg` shaped as this swarm says.
    pub fn apply(&self, cfg: &mut ClusterConfig) {
        cfg.nodes = self.nodes;
        cfg.election_timeout_ms_min = self.election_timeout_ms_min;
        cfg.election_timeout_ms_max = 2 * self.election_timeout_ms_min;
        cfg.heartbeat_interval_ms = self.election_timeout_ms_min / 3;
        cfg.block_time_ms = self.block_time_ms;
        cfg.blocks_per_batch = self.blocks_per_batch;
    }
}

impl fmt::Display for Swarm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "nodes={} election_timeout_ms={}..{} heartbeat_ms={} block_time_ms={} blocks_per_batch={} mix={}",
            self.nodes,
            self.election_timeout_ms_min,
            2 * self.election_timeout_ms_min,
            self.election_timeout_ms_min / 3,
            self.block_time_ms,
            self.blocks_per_batch,
            self.weights
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_mix_is_chaos_sixteen_draws() {
        assert_eq!(Weights::CHAOS.0.iter().sum::<u32>(), 16);
        assert_eq!(Weights::CHAOS.of(Kind::CrashLeader), 2);
        assert_eq!(Weights::CHAOS.of(Kind::Spare), 1);
    }

    #[test]
    fn picks_follow_the_weights_and_never_a_zero_one() {
        let w = Weights([3, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut counts = [0u32; 12];
        for _ in 0..4_000 {
            counts[w.pick(&mut rng).expect("a kind") as usize] += 1;
        }
        assert_eq!(counts[1], 0);
        assert_eq!(counts[0] + counts[2], 4_000);
        // 3 : 1, within sampling noise.
        assert!((2_850..3_150).contains(&counts[0]), "{counts:?}");
        assert_eq!(Weights([0; 12]).pick(&mut rng), None);
    }

    #[test]
    fn seeds_draw_every_shape_and_leave_kinds_out() {
        let swarms: Vec<Swarm> = (0..300).map(Swarm::draw).collect();
        assert_eq!(Swarm::draw(5), Swarm::draw(5));
        for nodes in [3, 5] {
            assert!(swarms.iter().any(|s| s.nodes == nodes));
        }
        for s in &swarms {
            // Batches at most one a second of blocks: the simulated L1 keeps up.
            assert!(s.block_time_ms * s.blocks_per_batch >= 1_000, "{s}");
            assert!(s.weights.0.iter().any(|w| *w > 0), "{s}");
        }
        for k in Kind::ALL {
            assert!(
                swarms.iter().any(|s| s.weights.of(k) == 0),
                "{k:?} never left out"
            );
            assert!(
                swarms.iter().any(|s| s.weights.of(k) == 3),
                "{k:?} never piled on"
            );
        }
        let fives = swarms.iter().filter(|s| s.nodes == 5).count();
        assert!((70..130).contains(&fives), "{fives} of 300 with 5 nodes");
    }

    #[test]
    fn a_swarm_shapes_the_cluster_and_says_so() {
        let s = Swarm {
            nodes: 5,
            election_timeout_ms_min: 300,
            block_time_ms: 50,
            blocks_per_batch: 40,
            weights: Weights::CHAOS,
        };
        let mut cfg = ClusterConfig::default();
        s.apply(&mut cfg);
        assert_eq!(
            (
                cfg.nodes,
                cfg.election_timeout_ms_max,
                cfg.heartbeat_interval_ms
            ),
            (5, 600, 100)
        );
        assert_eq!((cfg.block_time_ms, cfg.blocks_per_batch), (50, 40));
        let text = s.to_string();
        assert!(text.starts_with("nodes=5 election_timeout_ms=300..600 heartbeat_ms=100 block_time_ms=50 blocks_per_batch=40 mix=crash:2,restart:2,"), "{text}");
    }
}

//! When a standby batcher claims the role, with the redundancy arithmetic of seed 002: a node
//! at `batcher_redundancy_level` L > 0 steps in after L x N batch rounds in which L1 did not
//! advance while sealed batches waited. Each round the standby reads L1's head; a round counts
//! as missed only when L1 is readable, has not moved since the last round, and holds less than
//! this node sealed. Anything else (L1 moved, nothing waits) starts the count again, so a
//! batcher that keeps L1 moving is never deposed. A round in which this node cannot read L1
//! starts the count again too, and the next readable round is a new baseline: the L x N rounds
//! are consecutive rounds this node saw. So a standby cut off from L1 (by an outage or by its
//! own path) never claims a role it could not serve, and once it reaches L1 again it gives the
//! holder L x N full rounds from then, instead of blaming it for rounds it did not see.
//!
//! Level 0 is the main batcher: it takes a vacant role at once, and takes the role back at once
//! from a higher level when it returns from a restart (as a main signer resumes in seed 002).
//! A node deposed while it ran (cut off, paused, unable to land transactions) does not take the
//! role back at once: that would flap between a sick main and a healthy standby; it waits like
//! a same-level standby until it restarts. Each change of holder starts the count afresh. Two
//! nodes at the same level are a misconfiguration: the one that does not hold the role reports
//! it and waits like a level-1 standby.

use super::Millis;
use crate::ids::NodeId;
use crate::settlement::role::BatcherRole;

/// The longest wait before a failed claim is retried.
pub const CLAIM_RETRY_MS_MAX: u64 = 500;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailoverConfig {
    pub me: NodeId,
    /// This node's `batcher_redundancy_level` (0: the main batcher).
    pub level: u32,
    /// N: the rounds a level-1 standby waits (seed 002's `redundancy_max_missed_rounds`).
    pub max_missed_rounds: u32,
    /// How long one batch round lasts.
    pub round_ms: u64,
}

/// What the standby sees at the end of a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoundView {
    /// The role as this node applied it.
    pub role: BatcherRole,
    /// L1's last batch number, read this round (`None`: L1 unreachable).
    pub l1_batch: Option<u64>,
    /// The highest batch this node sealed.
    pub sealed: u64,
}

/// Claim the role at `epoch` (the role's epoch plus one, so a stale claim loses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    pub epoch: u64,
    pub level: u32,
    /// The missed rounds counted when the claim was made.
    pub missed_rounds: u32,
}

pub struct Failover {
    cfg: FailoverConfig,
    missed: u32,
    last_l1: Option<u64>,
    /// The role's epoch at the last round: a new holder is owed a fresh count.
    last_epoch: Option<u64>,
    /// This node lost a role it had claimed in this run: something was wrong with it, so it
    /// does not take the role back at once as a returning main would (that would flap); it
    /// waits like a same-level standby until it restarts.
    deposed: bool,
    /// The highest epoch this node claimed in this run.
    claimed: Option<u64>,
    next_round_ms: Millis,
}

impl Failover {
    pub fn new(cfg: FailoverConfig) -> Failover {
        Failover {
            cfg,
            missed: 0,
            last_l1: None,
            last_epoch: None,
            deposed: false,
            claimed: None,
            next_round_ms: 0,
        }
    }

    /// This node held the role at `epoch` and now another holds it. Deposed, unless the epoch
    /// was from before a restart (catching up the log is not being deposed).
    pub fn on_deposed(&mut self, epoch: u64) {
        if self.claimed == Some(epoch) {
            self.deposed = true;
        }
        self.missed = 0;
        self.last_l1 = None;
    }

    /// Whether a round ends now: time to read L1 and call [`Failover::on_round`].
    pub fn round_due(&self, now: Millis) -> bool {
        now >= self.next_round_ms
    }

    /// The claim just made did not reach the log (no leader yet, a timeout): the next round
    /// comes sooner, so a vacant role is not left waiting a whole round.
    pub fn on_claim_failed(&mut self, now: Millis) {
        self.next_round_ms = now + (self.cfg.round_ms / 4).clamp(1, CLAIM_RETRY_MS_MAX);
    }

    pub fn missed_rounds(&self) -> u32 {
        self.missed
    }

    /// The missed rounds after which this node claims a role in the state `role`.
    pub fn threshold(&self, role: &BatcherRole) -> u32 {
        let n = self.cfg.max_missed_rounds;
        match role.holder {
            None => self.cfg.level.saturating_mul(n),
            Some(_) if role.level > self.cfg.level && !self.deposed => 0,
            Some(_) => self.cfg.level.max(1).saturating_mul(n),
        }
    }

    /// Whether `role` is held by another node at this node's own level (misconfiguration).
    pub fn same_level_conflict(&self, role: &BatcherRole) -> bool {
        role.holder.is_some_and(|h| h != self.cfg.me) && role.level == self.cfg.level
    }

    /// A round ended with `view`: claim the role, or not yet.
    pub fn on_round(&mut self, now: Millis, view: RoundView) -> Option<Claim> {
        self.next_round_ms = now + self.cfg.round_ms;
        if view.role.is_held_by(&self.cfg.me) {
            self.missed = 0;
            self.last_l1 = None;
            return None;
        }
        if self.last_epoch != Some(view.role.epoch) {
            self.last_epoch = Some(view.role.epoch);
            self.missed = 0;
            self.last_l1 = None;
        }
        let Some(l1) = view.l1_batch else {
            self.missed = 0;
            self.last_l1 = None;
            return None;
        };
        let advanced = self.last_l1.is_some_and(|prev| l1 > prev);
        let waiting = view.sealed > l1;
        if self.last_l1.is_none() || advanced || !waiting {
            self.missed = 0;
        } else {
            self.missed = self.missed.saturating_add(1);
        }
        self.last_l1 = Some(l1);
        // A node behind L1 could not send the next batch: it claims nothing until it caught up.
        if view.sealed < l1 || self.missed < self.threshold(&view.role) {
            return None;
        }
        let epoch = view.role.epoch + 1;
        self.claimed = Some(epoch);
        Some(Claim {
            epoch,
            level: self.cfg.level,
            missed_rounds: self.missed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId([n; 64])
    }

    fn failover(level: u32) -> Failover {
        Failover::new(FailoverConfig {
            me: id(1),
            level,
            max_missed_rounds: 5,
            round_ms: 1_000,
        })
    }

    fn held(by: u8, level: u32, epoch: u64) -> BatcherRole {
        BatcherRole {
            epoch,
            holder: Some(id(by)),
            level,
        }
    }

    fn view(role: BatcherRole, l1: Option<u64>, sealed: u64) -> RoundView {
        RoundView {
            role,
            l1_batch: l1,
            sealed,
        }
    }

    /// Feeds rounds one second apart; returns the round (1-based) of the first claim.
    fn first_claim(f: &mut Failover, rounds: &[RoundView]) -> Option<(usize, Claim)> {
        for (i, v) in rounds.iter().enumerate() {
            let now = i as u64 * 1_000;
            assert!(f.round_due(now));
            if let Some(c) = f.on_round(now, *v) {
                return Some((i + 1, c));
            }
        }
        None
    }

    #[test]
    fn level_l_claims_after_exactly_l_times_n_stalled_rounds() {
        // (level, rounds until the claim): the first round only sets the baseline.
        for (level, want) in [(1, 6), (2, 11), (3, 16)] {
            let mut f = failover(level);
            let stalled = vec![view(held(0, 0, 1), Some(4), 7); 40];
            let (round, claim) = first_claim(&mut f, &stalled).unwrap();
            assert_eq!(round, want, "level {level}");
            assert_eq!(
                claim,
                Claim {
                    epoch: 2,
                    level,
                    missed_rounds: level * 5
                }
            );
        }
    }

    #[test]
    fn what_resets_or_pauses_the_count() {
        let role = held(0, 0, 1);
        // (view, missed rounds after it)
        let table = [
            (view(role, Some(4), 7), 0), // baseline
            (view(role, Some(4), 7), 1),
            (view(role, Some(4), 7), 2),
            (view(role, None, 7), 0), // L1 unreachable: the count starts again...
            (view(role, Some(4), 7), 0), // ...from a new baseline
            (view(role, Some(4), 7), 1),
            (view(role, Some(5), 7), 0), // L1 moved: the batcher is alive
            (view(role, Some(5), 8), 1),
            (view(role, Some(5), 5), 0), // nothing waits: nobody is to blame
            (view(role, Some(5), 6), 1),
            (view(held(1, 1, 2), Some(5), 6), 0), // this node holds the role
        ];
        let mut f = failover(1);
        for (i, (v, missed)) in table.into_iter().enumerate() {
            assert_eq!(f.on_round(i as u64 * 1_000, v), None, "row {i}");
            assert_eq!(f.missed_rounds(), missed, "row {i}");
        }
    }

    #[test]
    fn the_main_takes_a_vacant_role_or_one_held_by_a_higher_level_at_once() {
        let table = [
            (BatcherRole::default(), Some(1)),
            (held(2, 1, 3), Some(4)),
            (held(2, 2, 3), Some(4)),
            (held(2, 0, 3), None), // same level: waits N rounds
        ];
        for (role, epoch) in table {
            let mut f = failover(0);
            let got = f.on_round(0, view(role, Some(0), 0));
            assert_eq!(got.map(|c| c.epoch), epoch, "{role:?}");
        }
        // ... but not while it is behind L1, nor while L1 is unreachable.
        let mut f = failover(0);
        assert_eq!(f.on_round(0, view(held(2, 1, 3), Some(9), 8)), None);
        assert_eq!(f.on_round(1_000, view(held(2, 1, 3), None, 9)), None);
        assert!(f.on_round(2_000, view(held(2, 1, 3), Some(9), 9)).is_some());
    }

    #[test]
    fn a_main_deposed_while_running_waits_instead_of_flapping() {
        // Held from before a restart, then the log catches up: not deposed, it takes it back.
        let mut f = failover(0);
        f.on_deposed(1);
        assert_eq!(f.threshold(&held(2, 1, 2)), 0);
        // Claimed in this run, then lost: it waits.
        let mut f = failover(0);
        assert!(f
            .on_round(0, view(BatcherRole::default(), Some(0), 0))
            .is_some());
        f.on_deposed(1);
        let mut f = Failover {
            next_round_ms: 0,
            ..f
        };
        let rounds = vec![view(held(2, 1, 2), Some(4), 6); 10];
        assert_eq!(f.threshold(&held(2, 1, 2)), 5);
        assert_eq!(first_claim(&mut f, &rounds).map(|(r, _)| r), Some(6));
    }

    #[test]
    fn a_new_holder_is_owed_a_fresh_count() {
        let mut f = failover(1);
        for (i, epoch) in [1, 1, 1, 2, 2].into_iter().enumerate() {
            f.on_round(i as u64 * 1_000, view(held(0, 0, epoch), Some(4), 7));
        }
        // Epoch 2's first round is a baseline again: one missed round since.
        assert_eq!(f.missed_rounds(), 1);
    }

    #[test]
    fn a_vacant_role_waits_l_times_n_for_a_standby() {
        let mut f = failover(1);
        let rounds = vec![view(BatcherRole::default(), Some(0), 3); 10];
        assert_eq!(first_claim(&mut f, &rounds).map(|(r, _)| r), Some(6));
    }

    #[test]
    fn the_same_level_is_reported_and_waits_like_level_one() {
        let f = failover(0);
        assert!(f.same_level_conflict(&held(2, 0, 1)));
        assert!(!f.same_level_conflict(&held(1, 0, 1)));
        assert!(!f.same_level_conflict(&held(2, 1, 1)));
        assert_eq!(f.threshold(&held(2, 0, 1)), 5);
        let mut f = failover(0);
        let rounds = vec![view(held(2, 0, 1), Some(2), 3); 10];
        assert_eq!(first_claim(&mut f, &rounds).map(|(r, _)| r), Some(6));
    }

    #[test]
    fn rounds_are_round_ms_apart_and_a_failed_claim_is_retried_sooner() {
        let mut f = failover(1);
        assert!(f.round_due(0));
        f.on_round(0, view(held(0, 0, 1), Some(1), 1));
        assert!(!f.round_due(999));
        assert!(f.round_due(1_000));
        let mut main = failover(0);
        assert!(main
            .on_round(0, view(BatcherRole::default(), Some(0), 0))
            .is_some());
        main.on_claim_failed(10);
        assert!(!main.round_due(259));
        assert!(main.round_due(260));
    }

    #[test]
    fn a_standby_cut_off_from_l1_counts_from_when_it_sees_l1_again() {
        let role = held(0, 0, 1);
        let mut rounds = Vec::new();
        // The holder commits a batch a round while the standby sees L1.
        rounds.extend((3..6).map(|b| view(role, Some(b), b + 1)));
        // Its path to L1 is cut for 20 rounds: the holder commits on, then dies, and batches
        // wait; the standby sees none of it.
        rounds.extend(std::iter::repeat_n(view(role, None, 12), 20));
        // Its path back: L1 stands at 9 with 12 sealed, as it did for most of the cut.
        rounds.extend(std::iter::repeat_n(view(role, Some(9), 12), 10));
        let mut f = failover(1);
        let (round, claim) = first_claim(&mut f, &rounds).unwrap();
        // A baseline at round 24, then L x N = 5 missed rounds.
        assert_eq!(round, 3 + 20 + 1 + 5);
        assert_eq!(claim.missed_rounds, 5);
        // Before the fix the count only paused while L1 was unreadable: two rounds stalled before
        // the cut plus three after it made five: a claim at round 10, not 13.
        let mut stalled_then_cut = vec![view(role, Some(4), 7); 3];
        stalled_then_cut.extend(std::iter::repeat_n(view(role, None, 7), 4));
        stalled_then_cut.extend(std::iter::repeat_n(view(role, Some(4), 7), 10));
        let mut f = failover(1);
        let (round, _) = first_claim(&mut f, &stalled_then_cut).unwrap();
        assert_eq!(round, 3 + 4 + 1 + 5);
    }
}

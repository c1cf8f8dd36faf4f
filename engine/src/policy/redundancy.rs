//! Hot-standby redundancy (seed 002): which member of a group sharing one signing identity signs
//! the block of a round.
//!
//! Time is counted in rounds, `round = (local wall clock - genesis) / block_time` ([`round_at`]),
//! and the active signer produces a block every round, so silence means absence. A member at level
//! `L > 0` signs once `L x N` consecutive rounds passed in which no member of a lower level signed
//! (`N` = `max_missed_rounds`): with the main's last block at round `r`, level 1 signs round
//! `r + N + 1`, level 3 round `r + 3N + 1`. A member counts missed rounds only after the round it
//! started in, so one that just (re)started first watches `L x N` rounds (and syncs) before it
//! may step in.
//!
//! Only authenticated observations reach this policy: a block the replica verified (signed by the
//! identity, carrying its round and signer level) or an announcement whose signature recovered to
//! the identity. Whatever merely claims the identity is dropped before it gets here.
//!
//! A member that signed reverts as soon as a lower level signs a round at or after its own last
//! signed round. The main (level 0) starts by syncing, then announces itself and waits for every
//! answering member's last signed height before it signs: with a healthy network the handover
//! leaves no height or round signed twice. Two members announcing the same level: the one that
//! started later stands down, for as long as it keeps hearing the other.

use std::collections::BTreeMap;

use crate::ids::NodeId;

/// The highest level that ever signs. Anything above it (a million, say) or below zero syncs and
/// follows but never signs, whatever else is down.
pub const MAX_SIGNING_LEVEL: i64 = 1_000;

/// `N`: rounds per level a standby waits (the seed's 5).
pub const DEFAULT_MAX_MISSED_ROUNDS: u64 = 5;

/// The round the wall-clock instant `now_ms` falls in; `None` before genesis.
pub fn round_at(now_ms: u64, genesis_ms: u64, block_time_ms: u64) -> Option<u64> {
    now_ms
        .checked_sub(genesis_ms)
        .map(|since| since / block_time_ms.max(1))
}

/// When round `round` starts, in wall-clock milliseconds.
pub fn round_start_ms(round: u64, genesis_ms: u64, block_time_ms: u64) -> u64 {
    genesis_ms.saturating_add(round.saturating_mul(block_time_ms))
}

/// A configured `RedundancyLevel`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// 0 is the main; `1..=MAX_SIGNING_LEVEL` take over in that order.
    Signer(u32),
    /// Negative or above [`MAX_SIGNING_LEVEL`]: syncs, never signs.
    Observer(i64),
}

impl Level {
    pub fn from_config(level: i64) -> Level {
        match u32::try_from(level) {
            Ok(l) if level <= MAX_SIGNING_LEVEL => Level::Signer(l),
            _ => Level::Observer(level),
        }
    }

    pub fn value(self) -> i64 {
        match self {
            Level::Signer(l) => i64::from(l),
            Level::Observer(l) => l,
        }
    }

    /// Consecutive rounds without a lower level signing before this level signs.
    pub fn patience_rounds(self, max_missed_rounds: u64) -> Option<u64> {
        match self {
            Level::Signer(l) => Some(u64::from(l) * max_missed_rounds),
            Level::Observer(_) => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RedundancyConfig {
    pub level: Level,
    pub max_missed_rounds: u64,
}

/// One member's signed self-description, sent to the group when it starts and every
/// `max_missed_rounds` rounds after. Its signature (checked before it gets here) is the identity's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Announcement {
    /// The member's network identity for this run (new at every start).
    pub member: NodeId,
    pub level: i64,
    /// Wall-clock milliseconds at which that member started: the later one yields on a tie.
    pub started_at_ms: u64,
    /// The round it was made in.
    pub round: u64,
}

/// A member's answer to an announcement: the last (height, round) it signed, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    pub member: NodeId,
    pub last_signed: Option<Signed>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Signed {
    pub height: u64,
    pub round: u64,
}

/// Where a member stands, for `/status` and the metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Level 0 before it announced itself: catching up to the group's head.
    Syncing,
    /// Level 0 after announcing: waiting for the members' answers, then for its head to reach the
    /// highest height any of them signed and for a round after the highest round they signed.
    HandingOver { need: Option<Signed> },
    /// Watching; steps in after `patience_rounds` missed rounds.
    StandingBy,
    /// Signing every round.
    Active,
    /// Another member announced this level and started first.
    Yielding { to: NodeId },
    /// Never signs.
    Observer,
    /// Its guard holds a height above the chain (it signed on a branch that lost a fork): it
    /// cannot sign again until the chain passes `until_height`, so it neither signs nor
    /// announces, and the next level takes over as if it were down.
    Barred { until_height: u64 },
}

/// What `/status` and the metrics show of a member's [`Mode`], without its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MemberMode {
    Syncing,
    HandingOver,
    StandingBy,
    Active,
    Yielding,
    Observer,
    Barred,
}

impl MemberMode {
    /// The name `/status` gives it.
    pub fn name(self) -> &'static str {
        match self {
            MemberMode::Syncing => "syncing",
            MemberMode::HandingOver => "handing-over",
            MemberMode::StandingBy => "standing-by",
            MemberMode::Active => "active",
            MemberMode::Yielding => "yielding",
            MemberMode::Observer => "observer",
            MemberMode::Barred => "barred",
        }
    }
}

impl Mode {
    pub fn kind(&self) -> MemberMode {
        match self {
            Mode::Syncing => MemberMode::Syncing,
            Mode::HandingOver { .. } => MemberMode::HandingOver,
            Mode::StandingBy => MemberMode::StandingBy,
            Mode::Active => MemberMode::Active,
            Mode::Yielding { .. } => MemberMode::Yielding,
            Mode::Observer => MemberMode::Observer,
            Mode::Barred { .. } => MemberMode::Barred,
        }
    }
}

/// Why a member signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepIn {
    /// Level 0, after its handover.
    Main,
    /// No lower level signed for `missed` rounds (its patience), the last time at `last_seen`.
    LowerLevelsSilent { missed: u64, last_seen: Option<u64> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedundancyAction {
    /// Send this member's signed announcement to the group and report the answers
    /// ([`Failover::on_acks`]) within one round.
    Announce,
    /// Sign the block of `round` on top of the head (through the signing guard).
    Sign { round: u64, reason: StepIn },
    /// Stop signing: a lower level signed round `round`.
    Revert { by_level: i64, round: u64 },
    /// Another member announced the same level; `yields` says whether this one stands down.
    SameLevel { other: NodeId, yields: bool },
}

/// The redundancy decision of one member. See the module documentation.
pub struct Failover {
    cfg: RedundancyConfig,
    id: NodeId,
    started_at_ms: u64,
    mode: Mode,
    /// The first round this member watched: missed rounds count from here at the earliest.
    watching_since: Option<u64>,
    /// The latest round a lower level was seen signing.
    last_lower_round: Option<u64>,
    last_signed: Option<Signed>,
    last_announced_round: Option<u64>,
    /// A same-level member that started first, and the round it was last heard.
    yield_to: Option<(NodeId, u64)>,
    /// The lowest height at which this member's chain kept its own block against another one
    /// the identity signed (an equivocation resolved in its favour) since it last became active.
    fork_kept_at: Option<u64>,
    /// A returning main's latest answer from each member: (height it holds, round it signed).
    handover_acks: BTreeMap<NodeId, Signed>,
}

impl Failover {
    /// `last_signed` is what the signing guard holds for the identity on this machine.
    pub fn new(
        cfg: RedundancyConfig,
        id: NodeId,
        started_at_ms: u64,
        last_signed: Option<Signed>,
    ) -> Failover {
        let mode = match cfg.level {
            Level::Observer(_) => Mode::Observer,
            Level::Signer(0) => Mode::Syncing,
            Level::Signer(_) => Mode::StandingBy,
        };
        Failover {
            cfg,
            id,
            started_at_ms,
            mode,
            watching_since: None,
            last_lower_round: None,
            last_signed,
            last_announced_round: None,
            yield_to: None,
            fork_kept_at: None,
            handover_acks: BTreeMap::new(),
        }
    }

    /// Whether this machine's signing guard holds a height above the chain it follows (`None`:
    /// it does not). Checked every round before [`Failover::on_round`].
    pub fn set_barred(&mut self, until_height: Option<u64>) {
        match (until_height, &self.mode) {
            (_, Mode::Observer) => {}
            (Some(h), _) => self.mode = Mode::Barred { until_height: h },
            (None, Mode::Barred { .. }) => self.mode = self.resting_mode(),
            (None, _) => {}
        }
    }

    /// This member's chain kept its own block at `height` against a different one the identity
    /// signed (the fork rule chose its branch). The heights other members signed above it were
    /// on the losing branch: a returning main does not wait to download them, it only waits for
    /// a round after theirs (so no round is signed twice).
    pub fn on_fork_kept(&mut self, height: u64) {
        self.fork_kept_at = Some(self.fork_kept_at.map_or(height, |h| h.min(height)));
    }

    pub fn mode(&self) -> &Mode {
        &self.mode
    }

    pub fn level(&self) -> Level {
        self.cfg.level
    }

    pub fn last_signed(&self) -> Option<Signed> {
        self.last_signed
    }

    /// Rounds in a row, up to `round`, with no lower level signing (what `/status` shows).
    pub fn missed_rounds(&self, round: u64) -> u64 {
        if self.cfg.level == Level::Signer(0) {
            // The main has no lower level to miss.
            return 0;
        }
        // The round it started in may have been partly missed: counting starts after it.
        let since = match (self.last_lower_round, self.watching_since) {
            (Some(l), Some(w)) => l.max(w),
            (Some(l), None) => l,
            (None, Some(w)) => w,
            (None, None) => return 0,
        };
        round.saturating_sub(since).saturating_sub(1)
    }

    /// A new round began at `round`; `head_height` is the height this member holds and `synced`
    /// whether it has caught up with its sources.
    pub fn on_round(
        &mut self,
        round: u64,
        head_height: u64,
        synced: bool,
    ) -> Vec<RedundancyAction> {
        let mut actions = Vec::new();
        if self.watching_since.is_none() {
            self.watching_since = Some(round);
        }
        if let Some((_, heard)) = self.yield_to {
            // The earlier member went quiet for a full announcement period and then some.
            if round > heard + 2 * self.cfg.max_missed_rounds.max(1) {
                self.yield_to = None;
                if matches!(self.mode, Mode::Yielding { .. }) {
                    self.mode = self.resting_mode();
                }
            }
        }
        if matches!(self.mode, Mode::Observer | Mode::Barred { .. }) {
            return actions;
        }
        let announce_every = self.cfg.max_missed_rounds.max(1);
        let due = self
            .last_announced_round
            .is_none_or(|last| round >= last + announce_every);
        match self.mode.clone() {
            Mode::Observer | Mode::Yielding { .. } | Mode::Barred { .. } => {}
            Mode::Syncing => {
                if synced {
                    self.mode = Mode::HandingOver { need: None };
                    self.handover_acks.clear();
                    self.last_announced_round = Some(round);
                    actions.push(RedundancyAction::Announce);
                }
                return actions;
            }
            Mode::HandingOver { need } => match need {
                Some(n)
                    if (head_height >= n.height
                        || self.fork_kept_at.is_some_and(|f| f <= n.height))
                        && round > n.round =>
                {
                    self.mode = Mode::Active;
                    self.fork_kept_at = None;
                    actions.extend(self.sign(round, StepIn::Main));
                }
                _ => {}
            },
            Mode::Active => {
                let reason = match self.cfg.level {
                    Level::Signer(0) => StepIn::Main,
                    _ => StepIn::LowerLevelsSilent {
                        missed: self.missed_rounds(round),
                        last_seen: self.last_lower_round,
                    },
                };
                actions.extend(self.sign(round, reason));
            }
            Mode::StandingBy => {
                let patience = self
                    .cfg
                    .level
                    .patience_rounds(self.cfg.max_missed_rounds)
                    .unwrap_or(u64::MAX);
                let missed = self.missed_rounds(round);
                if missed >= patience {
                    self.mode = Mode::Active;
                    actions.extend(self.sign(
                        round,
                        StepIn::LowerLevelsSilent {
                            missed,
                            last_seen: self.last_lower_round,
                        },
                    ));
                }
            }
        }
        if due && !matches!(self.mode, Mode::Syncing) {
            self.last_announced_round = Some(round);
            actions.insert(0, RedundancyAction::Announce);
        }
        actions
    }

    fn sign(&mut self, round: u64, reason: StepIn) -> Option<RedundancyAction> {
        // Never a round at or below one the identity already signed from this machine.
        if self.last_signed.is_some_and(|s| s.round >= round) {
            return None;
        }
        Some(RedundancyAction::Sign { round, reason })
    }

    /// The block of `signed` was signed, guarded and published by this member.
    pub fn on_signed(&mut self, signed: Signed) {
        self.last_signed = Some(self.last_signed.map_or(signed, |s| s.max(signed)));
    }

    /// A verified block signed by the identity, made by a member at `level` in `round`, reached
    /// this member's chain (downloaded, or its own).
    pub fn on_block(&mut self, level: i64, round: u64) -> Vec<RedundancyAction> {
        self.heard_level(level, round, 0)
    }

    /// An authenticated announcement from another member of the group.
    pub fn on_announcement(&mut self, a: &Announcement) -> Vec<RedundancyAction> {
        if a.member == self.id {
            return Vec::new();
        }
        // An announcement's round is its sender's clock, which may run up to a round behind.
        let mut actions = self.heard_level(a.level, a.round, 1);
        if a.level == self.cfg.level.value() && !matches!(self.mode, Mode::Observer) {
            let yields = (a.started_at_ms, a.member) < (self.started_at_ms, self.id);
            if yields {
                let newly = self.yield_to.is_none_or(|(m, _)| m != a.member);
                self.yield_to = Some((a.member, a.round));
                self.mode = Mode::Yielding { to: a.member };
                if newly {
                    actions.push(RedundancyAction::SameLevel {
                        other: a.member,
                        yields: true,
                    });
                }
            } else {
                actions.push(RedundancyAction::SameLevel {
                    other: a.member,
                    yields: false,
                });
            }
        }
        actions
    }

    /// What this member answers a returning main: the round it last signed, and the height of
    /// that block capped at the chain it holds (`head_height`). Heights it signed on a branch
    /// that lost a fork never reach anyone's chain; a main waiting for them would wait forever.
    pub fn ack(&self, head_height: u64) -> Option<Signed> {
        self.last_signed.map(|s| Signed {
            height: s.height.min(head_height),
            round: s.round,
        })
    }

    /// The answers to this member's announcement (members that did not answer in time are
    /// absent).
    pub fn on_acks(&mut self, acks: &[Ack]) {
        let Mode::HandingOver { need: before } = self.mode else {
            return;
        };
        // Each member's latest answer replaces its earlier one (its chain can shrink when it
        // leaves a losing branch); a member that did not answer this time keeps its last.
        for a in acks {
            let signed = a.last_signed.unwrap_or(Signed {
                height: 0,
                round: 0,
            });
            self.handover_acks.insert(a.member, signed);
        }
        let theirs = self.handover_acks.values().fold(
            Signed {
                height: 0,
                round: 0,
            },
            |n, s| Signed {
                height: n.height.max(s.height),
                round: n.round.max(s.round),
            },
        );
        // Its own last block counts for the round only: a block it recorded but never published
        // (a crash in between) is above its head, and publishing it is the first thing its sign
        // path does. The round only ever rises.
        let need = Signed {
            height: theirs.height,
            round: theirs
                .round
                .max(self.last_signed.map_or(0, |s| s.round))
                .max(before.map_or(0, |b| b.round)),
        };
        self.mode = Mode::HandingOver { need: Some(need) };
    }

    /// A lower level signed `round`; it reverts an active member unless older than what that
    /// member last signed (by more than `slack_rounds`): a late block from before the takeover
    /// changes nothing.
    fn heard_level(&mut self, level: i64, round: u64, slack_rounds: u64) -> Vec<RedundancyAction> {
        let own = self.cfg.level.value();
        // Observers' levels never sign; a negative level is not "lower".
        if !(0..own).contains(&level) {
            return Vec::new();
        }
        self.last_lower_round = Some(self.last_lower_round.map_or(round, |r| r.max(round)));
        if self.mode == Mode::Active
            && self
                .last_signed
                .is_none_or(|s| round + slack_rounds >= s.round)
        {
            self.mode = self.resting_mode();
            return vec![RedundancyAction::Revert {
                by_level: level,
                round,
            }];
        }
        Vec::new()
    }

    fn resting_mode(&self) -> Mode {
        match self.cfg.level {
            Level::Observer(_) => Mode::Observer,
            Level::Signer(0) => Mode::Syncing,
            Level::Signer(_) => Mode::StandingBy,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId([n; 64])
    }

    fn member(level: i64) -> Failover {
        Failover::new(
            RedundancyConfig {
                level: Level::from_config(level),
                max_missed_rounds: DEFAULT_MAX_MISSED_ROUNDS,
            },
            id(level.unsigned_abs() as u8 + 1),
            1_000,
            None,
        )
    }

    fn signs(actions: &[RedundancyAction]) -> Option<u64> {
        actions.iter().find_map(|a| match a {
            RedundancyAction::Sign { round, .. } => Some(*round),
            _ => None,
        })
    }

    /// Runs `m` from `from` to `to`, feeding the blocks of `lower` (level, round) as their rounds
    /// come; returns the rounds it signed.
    fn run(m: &mut Failover, from: u64, to: u64, lower: &[(i64, u64)]) -> Vec<u64> {
        let mut signed = Vec::new();
        for round in from..=to {
            for (level, r) in lower.iter().filter(|(_, r)| *r == round) {
                m.on_block(*level, *r);
            }
            if let Some(r) = signs(&m.on_round(round, 0, true)) {
                m.on_signed(Signed {
                    height: r,
                    round: r,
                });
                signed.push(r);
            }
        }
        signed
    }

    #[test]
    fn takeover_rounds_follow_the_seed() {
        // (level, rounds the lower levels signed, first round this level signs)
        let main_until_20: Vec<(i64, u64)> = (10..=20).map(|r| (0, r)).collect();
        type Case = (i64, Vec<(i64, u64)>, Option<u64>);
        let cases: Vec<Case> = vec![
            // The seed: main's last block at r = 20, level 1 signs r + 6.
            (1, main_until_20.clone(), Some(26)),
            // Level 2 with 0 and 1 down: r + 11.
            (2, main_until_20.clone(), Some(31)),
            // The seed's cascade: levels 0, 1, 3; 0 and 1 down: level 3 at r + 16.
            (3, main_until_20.clone(), Some(36)),
            // Level 1 took over at 26 and keeps signing: level 3 waits on it.
            (
                3,
                {
                    let mut v = main_until_20.clone();
                    v.extend((26..=60).map(|r| (1, r)));
                    v
                },
                None,
            ),
            // ... and level 1 dies after round 40: level 3 signs 40 + 16.
            (
                3,
                {
                    let mut v = main_until_20.clone();
                    v.extend((26..=40).map(|r| (1, r)));
                    v
                },
                Some(56),
            ),
            // Higher levels signing do not hold a lower one back.
            (1, (10..=60).map(|r| (2, r)).collect(), Some(16)),
            // Never-signing levels, whatever else is down.
            (-1, vec![], None),
            (1_000_000, vec![], None),
            (MAX_SIGNING_LEVEL + 1, vec![], None),
        ];
        for (level, lower, first) in cases {
            let mut m = member(level);
            let signed = run(&mut m, 10, 60, &lower);
            assert_eq!(signed.first().copied(), first, "level {level}: {lower:?}");
        }
    }

    #[test]
    fn a_member_that_just_started_watches_its_patience_first() {
        // Started at round 100 with the chain's last main block far behind: level 1 signs 106.
        let mut m = member(1);
        m.on_block(0, 3);
        assert_eq!(run(&mut m, 100, 120, &[]).first(), Some(&106));
        assert_eq!(m.missed_rounds(106), 5);
    }

    #[test]
    fn the_top_signing_level_still_signs() {
        let mut m = Failover::new(
            RedundancyConfig {
                level: Level::from_config(MAX_SIGNING_LEVEL),
                max_missed_rounds: 1,
            },
            id(9),
            0,
            None,
        );
        assert_eq!(
            run(&mut m, 0, 1_100, &[]).first(),
            Some(&(MAX_SIGNING_LEVEL as u64 + 1))
        );
    }

    #[test]
    fn a_standby_reverts_when_a_lower_level_signs_again() {
        let mut m = member(1);
        assert_eq!(run(&mut m, 0, 10, &[]), vec![6, 7, 8, 9, 10]);
        // A main block from before the takeover, arriving late, changes nothing.
        assert!(m.on_block(0, 4).is_empty());
        assert_eq!(*m.mode(), Mode::Active);
        // The main's announcement for round 10 (which the standby signed too) does.
        let back = Announcement {
            member: id(77),
            level: 0,
            started_at_ms: 5_000,
            round: 10,
        };
        assert_eq!(
            m.on_announcement(&back),
            vec![RedundancyAction::Revert {
                by_level: 0,
                round: 10
            }]
        );
        assert_eq!(*m.mode(), Mode::StandingBy);
        // Counting starts again from the main's round.
        assert_eq!(run(&mut m, 11, 15, &[]), Vec::<u64>::new());
        assert_eq!(run(&mut m, 16, 16, &[]), vec![16]);
    }

    #[test]
    fn the_main_syncs_announces_and_waits_for_the_standbys_last_height() {
        let mut m = member(0);
        assert!(m.on_round(50, 10, false).is_empty());
        assert_eq!(*m.mode(), Mode::Syncing);
        assert_eq!(m.on_round(51, 40, true), vec![RedundancyAction::Announce]);
        // No answers yet: nothing signed.
        assert_eq!(signs(&m.on_round(52, 40, true)), None);
        m.on_acks(&[
            Ack {
                member: id(2),
                last_signed: Some(Signed {
                    height: 42,
                    round: 52,
                }),
            },
            Ack {
                member: id(3),
                last_signed: None,
            },
        ]);
        assert_eq!(
            *m.mode(),
            Mode::HandingOver {
                need: Some(Signed {
                    height: 42,
                    round: 52
                })
            }
        );
        assert_eq!(signs(&m.on_round(53, 41, true)), None);
        assert_eq!(signs(&m.on_round(54, 42, true)), Some(54));
        assert_eq!(*m.mode(), Mode::Active);
    }

    #[test]
    fn a_main_with_an_unpublished_block_waits_for_its_round_not_its_height() {
        // It recorded height 18 (round 19) in its guard and crashed before storing the block:
        // its head is 17 and nobody else signed since.
        let mut m = Failover::new(
            RedundancyConfig {
                level: Level::from_config(0),
                max_missed_rounds: 5,
            },
            id(1),
            0,
            Some(Signed {
                height: 18,
                round: 19,
            }),
        );
        m.on_round(21, 17, true);
        m.on_acks(&[Ack {
            member: id(2),
            last_signed: None,
        }]);
        assert_eq!(
            *m.mode(),
            Mode::HandingOver {
                need: Some(Signed {
                    height: 0,
                    round: 19
                })
            }
        );
        assert_eq!(signs(&m.on_round(22, 17, true)), Some(22));
    }

    #[test]
    fn an_ack_names_the_round_signed_and_the_height_held() {
        let mut m = member(1);
        assert_eq!(m.ack(30), None);
        m.on_signed(Signed {
            height: 40,
            round: 50,
        });
        // (head held, answer)
        for (head, want) in [(40, (40, 50)), (45, (40, 50)), (33, (33, 50))] {
            let got = m.ack(head).map(|s| (s.height, s.round));
            assert_eq!(got, Some(want), "head {head}");
        }
    }

    #[test]
    fn a_returning_mains_need_follows_each_members_latest_answer() {
        let mut m = member(0);
        m.on_round(60, 10, true);
        let ack = |member: u8, height: u64, round: u64| Ack {
            member: id(member),
            last_signed: Some(Signed { height, round }),
        };
        let need = |m: &Failover| match m.mode() {
            Mode::HandingOver { need: Some(n) } => (n.height, n.round),
            other => panic!("{other:?}"),
        };
        // (answers, need after them)
        let steps: [(Vec<Ack>, (u64, u64)); 4] = [
            (vec![ack(2, 40, 50)], (40, 50)),
            // It left a losing branch: its chain is shorter now; the round stays.
            (vec![ack(2, 30, 49)], (30, 50)),
            // Silent this time: its last answer stands.
            (vec![], (30, 50)),
            (vec![ack(3, 35, 45)], (35, 50)),
        ];
        for (acks, want) in steps {
            m.on_acks(&acks);
            assert_eq!(need(&m), want, "{acks:?}");
        }
    }

    #[test]
    fn a_member_barred_by_its_guard_neither_signs_nor_announces_until_the_chain_passes() {
        // The main signed up to height 151 on a branch that lost; the chain is back at 106.
        let mut m = member(0);
        m.on_round(100, 100, true);
        m.on_acks(&[]);
        assert_eq!(signs(&m.on_round(101, 100, true)), Some(101));
        m.set_barred(Some(151));
        for round in 102..110 {
            assert!(m.on_round(round, 106, true).is_empty(), "round {round}");
        }
        assert_eq!(*m.mode(), Mode::Barred { until_height: 151 });
        // The chain passed its watermark: it starts over as a returning main.
        m.set_barred(None);
        assert_eq!(*m.mode(), Mode::Syncing);
        assert_eq!(m.on_round(110, 152, true), vec![RedundancyAction::Announce]);
        // A barred standby never steps in; unbarred, it stands by again.
        let mut s = member(1);
        s.set_barred(Some(40));
        assert!(run(&mut s, 0, 30, &[]).is_empty());
        s.set_barred(None);
        assert_eq!(*s.mode(), Mode::StandingBy);
        // Observers stay observers.
        let mut o = member(-1);
        o.set_barred(Some(5));
        assert_eq!(*o.mode(), Mode::Observer);
    }

    #[test]
    fn a_main_whose_unseen_block_won_a_fork_waits_only_for_the_round() {
        // The main signed height 40 and crashed before anyone downloaded it; level 1 signed
        // heights 40..=47 on its own branch. The main keeps its block by the fork rule: heights
        // up to 47 will never reach its chain, so only the round is waited for.
        let mut m = member(0);
        m.on_round(80, 40, true);
        m.on_acks(&[Ack {
            member: id(2),
            last_signed: Some(Signed {
                height: 47,
                round: 82,
            }),
        }]);
        assert_eq!(signs(&m.on_round(81, 40, true)), None);
        // (fork kept at, round, signs)
        m.on_fork_kept(48);
        assert_eq!(signs(&m.on_round(83, 40, true)), None, "a fork above need");
        m.on_fork_kept(40);
        assert_eq!(
            signs(&m.on_round(82, 40, true)),
            None,
            "the standby's round"
        );
        assert_eq!(signs(&m.on_round(83, 40, true)), Some(83));
    }

    #[test]
    fn a_main_whose_clock_runs_behind_waits_past_the_standbys_round() {
        let mut m = member(0);
        m.on_round(50, 40, true);
        m.on_acks(&[Ack {
            member: id(2),
            last_signed: Some(Signed {
                height: 40,
                round: 55,
            }),
        }]);
        for round in 51..=55 {
            assert_eq!(signs(&m.on_round(round, 40, true)), None, "round {round}");
        }
        assert_eq!(signs(&m.on_round(56, 40, true)), Some(56));
    }

    #[test]
    fn an_announcement_reverts_within_one_round_of_skew() {
        // (announcement round, the standby's last signed round, reverts)
        let cases = [
            (20, 20, true),
            (19, 20, true),
            (18, 20, false),
            (25, 20, true),
        ];
        for (announced, signed, reverts) in cases {
            let mut m = member(1);
            assert_eq!(run(&mut m, 0, 6, &[]), vec![6]);
            m.on_signed(Signed {
                height: 9,
                round: signed,
            });
            let a = Announcement {
                member: id(70),
                level: 0,
                started_at_ms: 0,
                round: announced,
            };
            let got = m
                .on_announcement(&a)
                .iter()
                .any(|x| matches!(x, RedundancyAction::Revert { .. }));
            assert_eq!(got, reverts, "announced {announced} signed {signed}");
            // A block is strict: its round is on the chain, not a clock's guess.
            let mut b = member(1);
            run(&mut b, 0, 6, &[]);
            b.on_signed(Signed {
                height: 9,
                round: signed,
            });
            let by_block = !b.on_block(0, announced).is_empty();
            assert_eq!(by_block, announced >= signed, "block round {announced}");
        }
    }

    #[test]
    fn nothing_at_or_below_the_guards_round_is_signed() {
        let mut m = Failover::new(
            RedundancyConfig {
                level: Level::Signer(0),
                max_missed_rounds: 5,
            },
            id(1),
            0,
            Some(Signed {
                height: 7,
                round: 30,
            }),
        );
        m.on_round(10, 7, true);
        m.on_acks(&[]);
        for round in 11..=30 {
            assert_eq!(signs(&m.on_round(round, 7, true)), None, "round {round}");
        }
        assert_eq!(signs(&m.on_round(31, 7, true)), Some(31));
    }

    #[test]
    fn clock_jumps_backwards_never_resign_a_round() {
        let mut m = member(0);
        m.on_round(0, 0, true);
        m.on_acks(&[]);
        assert_eq!(run(&mut m, 1, 5, &[]), vec![1, 2, 3, 4, 5]);
        // The local clock steps back two rounds.
        assert_eq!(run(&mut m, 3, 7, &[]), vec![6, 7]);
    }

    #[test]
    fn the_later_started_of_two_same_level_members_yields() {
        let earlier = Announcement {
            member: id(50),
            level: 1,
            started_at_ms: 500,
            round: 3,
        };
        let mut m = member(1); // started at 1_000
        assert_eq!(
            m.on_announcement(&earlier),
            vec![RedundancyAction::SameLevel {
                other: id(50),
                yields: true
            }]
        );
        // It hears the other every few rounds: never signs.
        let mut signed = Vec::new();
        for round in 4..40 {
            if round % 5 == 0 {
                m.on_announcement(&Announcement { round, ..earlier });
            }
            signed.extend(signs(&m.on_round(round, 0, true)));
        }
        assert!(signed.is_empty(), "{signed:?}");
        // The earlier member goes away: after two announcement periods the later one resumes.
        assert_eq!(run(&mut m, 40, 60, &[]).first(), Some(&46));

        let later = Announcement {
            member: id(60),
            level: 1,
            started_at_ms: 2_000,
            round: 3,
        };
        let mut first = member(1);
        assert_eq!(
            first.on_announcement(&later),
            vec![RedundancyAction::SameLevel {
                other: id(60),
                yields: false
            }]
        );
        assert_eq!(*first.mode(), Mode::StandingBy);
    }

    #[test]
    fn announcements_go_out_at_start_and_every_n_rounds() {
        let mut m = member(2);
        let announced: Vec<u64> = (0..12)
            .filter(|r| {
                m.on_round(*r, 0, true)
                    .contains(&RedundancyAction::Announce)
            })
            .collect();
        assert_eq!(announced, vec![0, 5, 10]);
        let mut o = member(-1);
        assert!((0..12).all(|r| o.on_round(r, 0, true).is_empty()));
    }

    #[test]
    fn rounds_from_the_wall_clock() {
        assert_eq!(round_at(999, 1_000, 500), None);
        assert_eq!(round_at(1_000, 1_000, 500), Some(0));
        assert_eq!(round_at(1_499, 1_000, 500), Some(0));
        assert_eq!(round_at(1_500, 1_000, 500), Some(1));
        assert_eq!(round_start_ms(3, 1_000, 500), 2_500);
        assert_eq!(Level::from_config(-1), Level::Observer(-1));
        assert_eq!(Level::from_config(1_000_000), Level::Observer(1_000_000));
        assert_eq!(Level::from_config(7), Level::Signer(7));
    }
}

//! A group member's synchronous core: what it decides at each round and at each block and
//! announcement it sees, and the state those decisions keep (the failover policy, how far the
//! chain was fed to it, why it stepped in, a same-level rival, the level that signed the head,
//! whether a fenced proposal is under way).
//!
//! No runtime and no storage: the member ([`crate::redundancy::group`]) reads its chain, its
//! signing guard and its sync node, hands the core what it saw, and carries out the
//! [`MemberEffect`]s it returns, signing under the same lock, so an announcement's answer
//! always covers what was signed.

use crate::chain::block::Slot;
use crate::chain::rules::Head;
use crate::events::Event;
use crate::ids::NodeId;
use crate::policy::redundancy::{
    Ack, Announcement, Failover, MemberMode, RedundancyAction, Signed, StepIn,
};

/// What the member saw of its chain and its guard when a round begins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoundView {
    pub head_height: u64,
    /// The sync node found its sources at their head.
    pub caught_up: bool,
    /// Heights where a fork was resolved in favour of this member's own chain.
    pub kept_ours: Vec<u64>,
    /// The signing guard holds this height above the chain (a block signed on a branch that
    /// lost): no signing until the chain passes it.
    pub barred_until: Option<u64>,
}

/// What the member carries out, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MemberEffect {
    /// Announce this member to the group for `round`; answer with [`MemberCore::on_acks`].
    Announce {
        round: u64,
    },
    /// Sign the block of `round` on the head, through the signing guard (unfenced).
    Sign {
        round: u64,
        reason: StepIn,
    },
    /// Propose the block of `round` to the group (fenced); answer with
    /// [`MemberCore::on_proposal_done`].
    Propose {
        round: u64,
        reason: StepIn,
    },
    /// The fenced acceptor's round began and the head is at `head_height`.
    FenceRound {
        round: u64,
        head_height: u64,
    },
    Emit(Event),
}

pub struct MemberCore {
    failover: Failover,
    fenced: bool,
    /// The height up to which the chain's blocks were fed to the policy.
    fed_height: u64,
    round: Option<u64>,
    /// Why it last stepped in, while it signs.
    step_in: Option<String>,
    same_level: Option<NodeId>,
    /// The level that signed the head block.
    head_level: Option<i64>,
    /// Fenced: a proposal is under way (one at a time).
    proposing: bool,
}

impl MemberCore {
    pub fn new(failover: Failover, fenced: bool) -> MemberCore {
        MemberCore {
            failover,
            fenced,
            fed_height: 0,
            round: None,
            step_in: None,
            same_level: None,
            head_level: None,
            proposing: false,
        }
    }

    /// The chain's blocks above this height are still to be fed, up to a head at
    /// `head_height` (after a crash lost buffered blocks, from the lower head again).
    pub fn feed_from(&mut self, head_height: u64) -> u64 {
        self.fed_height = self.fed_height.min(head_height);
        self.fed_height
    }

    /// The block at `height`, with its slot when it carries one, reached the chain.
    pub fn on_block(&mut self, height: u64, slot: Option<Slot>) -> Vec<MemberEffect> {
        self.fed_height = height;
        let Some(slot) = slot else {
            return Vec::new();
        };
        self.head_level = Some(slot.level);
        let actions = self.failover.on_block(slot.level, slot.round);
        self.reports(actions)
    }

    /// A verified announcement arrived while the chain is at `head_height`: what it changes,
    /// and the answer (this member's last signed height and round).
    pub fn on_announcement(
        &mut self,
        a: &Announcement,
        head_height: u64,
    ) -> (Vec<MemberEffect>, Option<Signed>) {
        let actions = self.failover.on_announcement(a);
        let effects = self.reports(actions);
        (effects, self.failover.ack(head_height))
    }

    /// Round `round` began; `view` is what the member saw.
    pub fn on_round(&mut self, round: u64, view: &RoundView) -> Vec<MemberEffect> {
        self.round = Some(round);
        for height in &view.kept_ours {
            self.failover.on_fork_kept(*height);
        }
        let mut out = Vec::new();
        if self.fenced {
            out.push(MemberEffect::FenceRound {
                round,
                head_height: view.head_height,
            });
        }
        self.failover.set_barred(view.barred_until);
        let actions = self
            .failover
            .on_round(round, view.head_height, view.caught_up);
        for action in actions {
            match action {
                RedundancyAction::Announce => out.push(MemberEffect::Announce { round }),
                RedundancyAction::Sign { round, reason } if self.fenced => {
                    if !self.proposing {
                        self.proposing = true;
                        out.push(MemberEffect::Propose { round, reason });
                    }
                }
                RedundancyAction::Sign { round, reason } => {
                    out.push(MemberEffect::Sign { round, reason })
                }
                other => out.extend(self.reports(vec![other])),
            }
        }
        out
    }

    /// The group's answers to this member's announcement.
    pub fn on_acks(&mut self, acks: &[Ack]) {
        self.failover.on_acks(acks);
    }

    /// The fenced proposal ended (signed, or not).
    pub fn on_proposal_done(&mut self) {
        self.proposing = false;
    }

    /// The guard recorded this member's block of `round` at `level`, signed for `reason`:
    /// the first since it last reverted reports that it stepped in, and why.
    pub fn on_guarded(&mut self, round: u64, level: i64, reason: StepIn) -> Option<Event> {
        if self.step_in.is_some() {
            return None;
        }
        let why = match reason {
            StepIn::Main => "main".to_string(),
            StepIn::LowerLevelsSilent { missed, last_seen } => format!(
                "{missed} rounds without a lower level (last seen in round {})",
                last_seen.map_or("none".into(), |r| r.to_string())
            ),
        };
        self.step_in = Some(why.clone());
        Some(Event::SteppedIn {
            round,
            level,
            reason: why,
        })
    }

    /// This member's block at `slot` is on its chain, which now ends at `head`.
    pub fn on_published(&mut self, head: &Head, slot: Slot) {
        self.failover.on_signed(Signed {
            height: head.height,
            round: slot.round,
        });
        self.fed_height = self.fed_height.max(head.height);
        self.head_level = Some(slot.level);
    }

    /// Revert and same-level reports; signing only ever happens in [`Self::on_round`].
    fn reports(&mut self, actions: Vec<RedundancyAction>) -> Vec<MemberEffect> {
        let mut out = Vec::new();
        for action in actions {
            match action {
                RedundancyAction::Revert { by_level, round } => {
                    self.step_in = None;
                    out.push(MemberEffect::Emit(Event::Reverted { by_level, round }));
                }
                RedundancyAction::SameLevel { other, yields } => {
                    self.same_level = Some(other);
                    out.push(MemberEffect::Emit(Event::SameLevel { other, yields }));
                }
                RedundancyAction::Announce | RedundancyAction::Sign { .. } => {}
            }
        }
        out
    }

    pub fn level(&self) -> i64 {
        self.failover.level().value()
    }

    pub fn mode(&self) -> MemberMode {
        self.failover.mode().kind()
    }

    pub fn round(&self) -> Option<u64> {
        self.round
    }

    /// Consecutive rounds, up to the current one, with no lower level signing.
    pub fn missed_rounds(&self) -> u64 {
        self.round.map_or(0, |r| self.failover.missed_rounds(r))
    }

    pub fn step_in(&self) -> Option<&str> {
        self.step_in.as_deref()
    }

    pub fn same_level(&self) -> Option<NodeId> {
        self.same_level
    }

    pub fn head_level(&self) -> Option<i64> {
        self.head_level
    }
}

#[cfg(test)]
mod tests {
    //! A group member at the level of the member: rounds, blocks and announcements as the
    //! member would hand them in, what it signs, reports and asks for. No runtime.
    use alloy_primitives::B256;

    use super::*;
    use crate::policy::redundancy::{Level, RedundancyConfig, DEFAULT_MAX_MISSED_ROUNDS};

    const N: u64 = DEFAULT_MAX_MISSED_ROUNDS;

    fn id(n: u8) -> NodeId {
        NodeId([n; 64])
    }

    fn core(level: i64, fenced: bool) -> MemberCore {
        let cfg = RedundancyConfig {
            level: Level::from_config(level),
            max_missed_rounds: N,
        };
        MemberCore::new(Failover::new(cfg, id(10), 1_000, None), fenced)
    }

    fn view(head_height: u64) -> RoundView {
        RoundView {
            head_height,
            caught_up: true,
            ..RoundView::default()
        }
    }

    fn signs(effects: &[MemberEffect]) -> Option<u64> {
        effects.iter().find_map(|e| match e {
            MemberEffect::Sign { round, .. } | MemberEffect::Propose { round, .. } => Some(*round),
            _ => None,
        })
    }

    fn head(height: u64) -> Head {
        Head {
            height,
            hash: B256::repeat_byte(height as u8),
            state_root: B256::ZERO,
            timestamp_ms: 0,
            round: None,
        }
    }

    /// Runs rounds `from..=to`: the main signs every round up to `main_until` (its block
    /// reaches the chain before the round's decision), this member signs when it decides to.
    /// Returns the rounds this member signed and every effect.
    fn run(
        c: &mut MemberCore,
        from: u64,
        to: u64,
        main_until: u64,
        height: &mut u64,
    ) -> (Vec<u64>, Vec<MemberEffect>) {
        let mut signed = Vec::new();
        let mut all = Vec::new();
        for round in from..=to {
            if round <= main_until {
                *height += 1;
                all.extend(c.on_block(*height, Some(Slot { round, level: 0 })));
            }
            let effects = c.on_round(round, &view(*height));
            if let Some(r) = signs(&effects) {
                *height += 1;
                let level = c.level();
                if let Some(e) = c.on_guarded(r, level, StepIn::Main) {
                    all.push(MemberEffect::Emit(e));
                }
                c.on_published(&head(*height), Slot { round: r, level });
                signed.push(r);
            }
            all.extend(effects);
        }
        (signed, all)
    }

    #[test]
    fn a_standby_takes_over_n_plus_one_rounds_after_the_main_and_reports_it_once() {
        let mut c = core(1, false);
        let mut height = 0;
        let (signed, effects) = run(&mut c, 10, 40, 20, &mut height);
        // The seed: the main's last block in round 20, level 1 signs round 20 + N + 1 and on.
        assert_eq!(signed.first(), Some(&(20 + N + 1)));
        assert_eq!(signed.len() as u64, 40 - (20 + N));
        let stepped_in = effects
            .iter()
            .filter(|e| matches!(e, MemberEffect::Emit(Event::SteppedIn { .. })))
            .count();
        assert_eq!(stepped_in, 1);
        assert_eq!(c.mode(), MemberMode::Active);
        assert_eq!(c.head_level(), Some(1));
    }

    #[test]
    fn a_member_whose_guard_is_above_the_chain_is_barred_until_the_chain_passes_it() {
        let mut c = core(1, false);
        let mut height = 0;
        run(&mut c, 10, 20, 20, &mut height);
        // The guard holds height 30: this machine signed there on a branch that lost.
        for round in 21..=40 {
            let v = RoundView {
                barred_until: Some(30),
                ..view(height)
            };
            let effects = c.on_round(round, &v);
            assert_eq!(signs(&effects), None, "signed while barred, round {round}");
        }
        assert_eq!(c.mode(), MemberMode::Barred);
        // The chain passed the guard: the member may sign again.
        let effects = c.on_round(41, &view(31));
        assert_eq!(signs(&effects), Some(41));
    }

    #[test]
    fn the_returning_main_takes_the_identity_back_and_the_standby_hands_back() {
        let mut c = core(1, false);
        let mut height = 0;
        let (signed, _) = run(&mut c, 10, 40, 20, &mut height);
        let last = *signed.last().unwrap();
        // The main announces itself; the standby answers with what it signed...
        let main = Announcement {
            member: id(1),
            level: 0,
            started_at_ms: 5_000,
            round: 41,
        };
        let (effects, ack) = c.on_announcement(&main, height);
        assert_eq!(ack.map(|s| s.round), Some(last));
        // ...and reverts at once: a lower level speaks for a round after its own last one.
        assert_eq!(
            effects,
            vec![MemberEffect::Emit(Event::Reverted {
                by_level: 0,
                round: 41
            })]
        );
        height += 1;
        let again = c.on_block(
            height,
            Some(Slot {
                round: 42,
                level: 0,
            }),
        );
        assert!(again.is_empty(), "reverted twice: {again:?}");
        assert_eq!(c.step_in(), None);
        let effects = c.on_round(43, &view(height));
        assert_eq!(signs(&effects), None, "signed after handing back");
        assert_eq!(c.mode(), MemberMode::StandingBy);
    }

    #[test]
    fn a_fenced_member_proposes_one_round_at_a_time() {
        let mut c = core(1, true);
        let mut height = 0;
        for round in 10..=20 {
            height += 1;
            c.on_block(height, Some(Slot { round, level: 0 }));
            let effects = c.on_round(round, &view(height));
            assert_eq!(
                effects.first(),
                Some(&MemberEffect::FenceRound {
                    round,
                    head_height: height
                })
            );
        }
        let mut proposed = Vec::new();
        for round in 21..=30 {
            if let Some(r) = signs(&c.on_round(round, &view(height))) {
                proposed.push(r);
            }
        }
        // Due at 26; the proposal is still under way at 27..=30, so no second one.
        assert_eq!(proposed, vec![20 + N + 1]);
        c.on_proposal_done();
        assert_eq!(signs(&c.on_round(31, &view(height))), Some(31));
    }

    #[test]
    fn same_level_members_are_reported_and_the_later_started_yields() {
        let mut c = core(1, false);
        let rival = Announcement {
            member: id(2),
            level: 1,
            started_at_ms: 500,
            round: 3,
        };
        let (effects, _) = c.on_announcement(&rival, 0);
        assert_eq!(
            effects,
            vec![MemberEffect::Emit(Event::SameLevel {
                other: id(2),
                yields: true
            })]
        );
        assert_eq!(c.same_level(), Some(id(2)));
    }
}

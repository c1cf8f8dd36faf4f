//! Fenced takeover (`redundancy_fencing = true`): no partition can make two machines of a group
//! sign one round, nor two different blocks at one height.
//!
//! Unfenced, a member signs on its own judgement, so a partition between the main and a standby
//! makes both sign. Fenced, every member is also an acceptor, and the block of each height is
//! decided by single-decree Paxos among the group, with the round as the ballot:
//!
//! 1. the member the redundancy policy chose for round `r` asks every member to *promise* round
//!    `r` for the next height `h`. An acceptor promises each round at most once, and promises a
//!    level `L > 0` only when it has itself seen no lower level for `L x N` rounds (so a standby
//!    takes over only with a majority's agreement that the levels below it are silent). It
//!    answers with what it accepted at `h` and above;
//! 2. with a majority of promises, the proposer picks the value: the block accepted at `h` in the
//!    highest round, if any promise carried one, else a new block of its own; and asks every
//!    member to *accept* it for round `r`;
//! 3. with a majority of acceptances the block is chosen, and only then signed and published.
//!
//! What travels in steps 1 and 2 is the block without its signature. A proposer that takes over
//! another's chosen block signs exactly that block, and signatures are deterministic (RFC 6979),
//! so it is the same block. Two majorities always share a member, which is why no round is ever
//! promised twice and no height ever gets two chosen blocks.
//!
//! The price is the one Raft pays: a member signs only with a majority of the group reachable,
//! and fencing needs at least [`MIN_FENCED_GROUP`] machines. The acceptor's promised round and
//! accepted blocks are written and synced before it answers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A fenced group needs this many machines: with two, either one down stops the chain.
pub const MIN_FENCED_GROUP: usize = 3;

/// How many acceptors make a majority of a group of `group_size` machines.
pub fn majority(group_size: usize) -> usize {
    group_size / 2 + 1
}

/// A block accepted for a height, in the round it was accepted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted<V> {
    pub round: u64,
    pub value: V,
}

/// An acceptor's answer to step 1: per height, what it accepted there.
pub type Promise<V> = Vec<(u64, Accepted<V>)>;

/// What an acceptor must remember across crashes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcceptorRecord<V> {
    /// The highest round promised or accepted; nothing at or below it is promised again.
    pub promised_round: u64,
    /// Per height above the acceptor's chain, the block it last accepted there.
    pub accepted: BTreeMap<u64, Accepted<V>>,
}

impl<V> Default for AcceptorRecord<V> {
    fn default() -> Self {
        AcceptorRecord {
            promised_round: 0,
            accepted: BTreeMap::new(),
        }
    }
}

/// A request to promise or accept: who asks, for which round and height.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ballot {
    pub round: u64,
    /// The proposer's redundancy level.
    pub level: i64,
    /// The height the proposer wants to fill (its head's height + 1).
    pub height: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("level {level} never signs")]
    NotASigner { level: i64 },
    #[error("round {round} is not near this member's round {now}")]
    RoundOutOfWindow { round: u64, now: u64 },
    #[error("round {round} is not above the round {promised} already promised")]
    RoundTaken { round: u64, promised: u64 },
    #[error("level {level} was seen in round {seen}: level {asking} may not sign round {round}")]
    LowerLevelSeen {
        level: i64,
        seen: u64,
        asking: i64,
        round: u64,
    },
    #[error("this member has not watched {patience} rounds yet (since round {since})")]
    NotWatchedLongEnough { since: u64, patience: u64 },
    #[error("this member holds height {head}; the proposer is too far behind")]
    Behind { head: u64 },
}

/// One member's acceptor. See the module documentation.
pub struct Acceptor<V> {
    record: AcceptorRecord<V>,
    max_missed_rounds: u64,
    /// The latest round in which each level was seen signing or announcing itself.
    seen: BTreeMap<i64, u64>,
    /// The first round this member watched (missed rounds count from here at the earliest).
    watching_since: Option<u64>,
}

impl<V: Clone + PartialEq> Acceptor<V> {
    pub fn new(record: AcceptorRecord<V>, max_missed_rounds: u64) -> Acceptor<V> {
        Acceptor {
            record,
            max_missed_rounds,
            seen: BTreeMap::new(),
            watching_since: None,
        }
    }

    pub fn record(&self) -> &AcceptorRecord<V> {
        &self.record
    }

    /// A new round began on this member's clock.
    pub fn on_round(&mut self, round: u64) {
        self.watching_since.get_or_insert(round);
    }

    /// An authenticated block or announcement showed `level` alive in `round`.
    pub fn observe(&mut self, level: i64, round: u64) {
        let r = self.seen.entry(level).or_insert(round);
        *r = (*r).max(round);
    }

    /// Blocks at or below `head_height` are in this member's chain: chosen, nothing to keep.
    pub fn prune(&mut self, head_height: u64) -> bool {
        let before = self.record.accepted.len();
        self.record.accepted.retain(|h, _| *h > head_height);
        before != self.record.accepted.len()
    }

    /// Step 1. On `Ok`, the record changed (persist it before answering): the answer is what
    /// this member accepted at the ballot's height and above. (A member whose chain already
    /// holds the ballot's height answers with those blocks too: they are chosen.)
    pub fn prepare(&mut self, b: &Ballot, now_round: u64) -> Result<Promise<V>, Refusal> {
        self.admissible(b, now_round)?;
        self.grantable(b)?;
        self.record.promised_round = b.round;
        Ok(self
            .record
            .accepted
            .range(b.height..)
            .map(|(h, a)| (*h, a.clone()))
            .collect())
    }

    /// Step 2. On `Ok`, the record changed (persist it before answering).
    pub fn accept(
        &mut self,
        b: &Ballot,
        value: V,
        now_round: u64,
        head_height: u64,
    ) -> Result<(), Refusal> {
        self.admissible(b, now_round)?;
        if head_height >= b.height {
            return Err(Refusal::Behind { head: head_height });
        }
        // The ballot's own round was promised in step 1; anything above is fine too.
        if b.round < self.record.promised_round {
            return Err(Refusal::RoundTaken {
                round: b.round,
                promised: self.record.promised_round,
            });
        }
        self.record.promised_round = b.round;
        self.record.accepted.insert(
            b.height,
            Accepted {
                round: b.round,
                value,
            },
        );
        Ok(())
    }

    /// Checks both steps share: a signing level, and a round near this member's clock (a
    /// far-future round would burn every round below it).
    fn admissible(&self, b: &Ballot, now_round: u64) -> Result<(), Refusal> {
        if b.level < 0 || b.level > super::redundancy::MAX_SIGNING_LEVEL {
            return Err(Refusal::NotASigner { level: b.level });
        }
        if b.round.saturating_add(1) < now_round || b.round > now_round.saturating_add(1) {
            return Err(Refusal::RoundOutOfWindow {
                round: b.round,
                now: now_round,
            });
        }
        Ok(())
    }

    /// Step 1's own checks: the round is new, and the levels below the proposer's have been
    /// silent for its patience (the main always may).
    fn grantable(&self, b: &Ballot) -> Result<(), Refusal> {
        if b.round <= self.record.promised_round {
            return Err(Refusal::RoundTaken {
                round: b.round,
                promised: self.record.promised_round,
            });
        }
        if b.level == 0 {
            return Ok(());
        }
        let patience = b
            .level
            .unsigned_abs()
            .saturating_mul(self.max_missed_rounds);
        let lower = self
            .seen
            .range(0..b.level)
            .max_by_key(|(_, r)| **r)
            .map(|(l, r)| (*l, *r));
        if let Some((level, seen)) = lower {
            if b.round.saturating_sub(seen).saturating_sub(1) < patience {
                return Err(Refusal::LowerLevelSeen {
                    level,
                    seen,
                    asking: b.level,
                    round: b.round,
                });
            }
        }
        // One that just started has not watched long enough to vouch for the silence.
        let since = self.watching_since.unwrap_or(b.round);
        if b.round.saturating_sub(since).saturating_sub(1) < patience {
            return Err(Refusal::NotWatchedLongEnough { since, patience });
        }
        Ok(())
    }
}

/// Step 2's value: of the blocks the promises carried for `height`, the one accepted in the
/// highest round (it may already be chosen); `None` leaves the proposer free to propose its own.
pub fn choose<V: Clone>(height: u64, promises: &[Promise<V>]) -> Option<Accepted<V>> {
    promises
        .iter()
        .flatten()
        .filter(|(h, _)| *h == height)
        .max_by_key(|(_, a)| a.round)
        .map(|(_, a)| a.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    const N: u64 = 5;

    fn ballot(round: u64, level: i64, height: u64) -> Ballot {
        Ballot {
            round,
            level,
            height,
        }
    }

    fn watching(since: u64) -> Acceptor<&'static str> {
        let mut a = Acceptor::new(AcceptorRecord::default(), N);
        a.on_round(since);
        a
    }

    #[test]
    fn majorities() {
        for (n, m) in [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (7, 4)] {
            assert_eq!(majority(n), m, "group of {n}");
        }
    }

    #[test]
    fn each_round_is_promised_once() {
        let mut a = watching(0);
        assert_eq!(a.prepare(&ballot(10, 0, 5), 10), Ok(vec![]));
        // A second proposer for the same round, or an older one: refused.
        assert!(matches!(
            a.prepare(&ballot(10, 0, 5), 10),
            Err(Refusal::RoundTaken { .. })
        ));
        assert!(matches!(
            a.prepare(&ballot(9, 0, 5), 10),
            Err(Refusal::RoundTaken { .. })
        ));
        assert_eq!(a.prepare(&ballot(11, 0, 5), 11), Ok(vec![]));
    }

    #[test]
    fn a_standby_needs_its_patience_in_silence_of_lower_levels() {
        // (level asking, round asked, lowest level seen and its round, promised?)
        let cases = [
            (1, 106, Some((0, 100)), true), // main's last block in round 100: r + 6
            (1, 105, Some((0, 100)), false), // one round early
            (3, 116, Some((0, 100)), true), // level 3: r + 16
            (3, 115, Some((0, 100)), false),
            (3, 116, Some((1, 101)), false), // level 1 signed after the main
            (2, 111, Some((2, 110)), true),  // its own level does not count
            (2, 111, Some((3, 110)), true),  // nor a higher one
            (0, 101, Some((0, 100)), true),  // the main always may
        ];
        for (level, round, seen, want) in cases {
            let mut a = watching(50);
            if let Some((l, r)) = seen {
                a.observe(l, r);
            }
            let got = a.prepare(&ballot(round, level, 5), round).is_ok();
            assert_eq!(got, want, "level {level} round {round} seen {seen:?}");
        }
    }

    #[test]
    fn a_member_that_just_started_does_not_vouch_for_silence() {
        let mut a = watching(100);
        assert!(matches!(
            a.prepare(&ballot(105, 1, 5), 105),
            Err(Refusal::NotWatchedLongEnough { .. })
        ));
        assert!(a.prepare(&ballot(106, 1, 5), 106).is_ok());
    }

    #[test]
    fn rounds_far_from_the_clock_observers_and_stale_accepts_are_refused() {
        let mut a = watching(0);
        // A far-future round would burn every round below it.
        for (b, now) in [
            (ballot(1_000_000, 0, 5), 10),
            (ballot(7, 0, 5), 10),
            (ballot(10, -1, 5), 10),
            (ballot(10, 1_000_000, 5), 10),
        ] {
            assert!(a.prepare(&b, now).is_err(), "{b:?} now {now}");
        }
        // Extremes from the network change nothing and do not overflow.
        let extreme = ballot(u64::MAX, i64::MAX, u64::MAX);
        assert!(a.prepare(&extreme, u64::MAX).is_err());
        assert!(a.prepare(&ballot(u64::MAX, 0, u64::MAX), 10).is_err());
        assert_eq!(a.record().promised_round, 0);
        // Accepting at a height the chain already holds: the proposer is behind.
        assert_eq!(
            a.accept(&ballot(10, 0, 5), "A", 10, 5),
            Err(Refusal::Behind { head: 5 })
        );
        // A round either side of the clock is fine (skew).
        assert!(a.prepare(&ballot(9, 0, 5), 10).is_ok());
        assert!(a.prepare(&ballot(11, 0, 5), 10).is_ok());
    }

    #[test]
    fn a_promise_reports_what_was_accepted_and_blocks_older_accepts() {
        let mut a = watching(0);
        a.prepare(&ballot(10, 0, 5), 10).unwrap();
        a.accept(&ballot(10, 0, 5), "A", 10, 4).unwrap();
        // A later proposer for height 5 (a standby, the main's proposal not being a block it
        // saw) learns of "A".
        let got = a.prepare(&ballot(11, 1, 5), 11).unwrap();
        assert_eq!(
            got,
            vec![(
                5,
                Accepted {
                    round: 10,
                    value: "A"
                }
            )]
        );
        // Round 10's proposer comes back too late.
        assert!(matches!(
            a.accept(&ballot(10, 0, 5), "B", 11, 4),
            Err(Refusal::RoundTaken { .. })
        ));
        // Once height 5 is in the chain, it is forgotten.
        assert!(a.prune(5));
        assert!(a.record().accepted.is_empty());
    }

    #[test]
    fn the_highest_round_accepted_is_chosen() {
        let acc = |round, value| Accepted { round, value };
        let promises = vec![
            vec![(5, acc(10, "A")), (6, acc(12, "X"))],
            vec![(5, acc(11, "B"))],
            vec![],
        ];
        assert_eq!(choose(5, &promises), Some(acc(11, "B")));
        assert_eq!(choose(6, &promises), Some(acc(12, "X")));
        assert_eq!(choose(7, &promises), None);
    }

    /// Two proposers racing over three acceptors, in every interleaving of their steps: never
    /// two different values chosen for one height.
    #[test]
    fn no_interleaving_chooses_two_values() {
        // Each proposer: prepare at all three, then accept at all three; an acceptor may be
        // unreachable to a proposer (drop mask). Steps are interleaved by a bit pattern.
        for drops in 0u8..64 {
            for order in 0u16..(1 << 12) {
                let mut acceptors: Vec<Acceptor<&str>> = (0..3).map(|_| watching(0)).collect();
                let mut chosen: Vec<&str> = Vec::new();
                let proposers = [("P", 10u64), ("Q", 11u64)];
                let mut step = [0usize; 2];
                let mut promises: [Vec<Promise<&str>>; 2] = [vec![], vec![]];
                let mut value: [Option<&str>; 2] = [None, None];
                let mut accepts = [0usize; 2];
                let mut bit = 0;
                while step.iter().any(|s| *s < 6) {
                    let mut p = usize::from(order >> (bit % 12) & 1 == 1);
                    bit += 1;
                    if step[p] >= 6 {
                        p = 1 - p;
                    }
                    let (name, round) = proposers[p];
                    let i = step[p] % 3;
                    step[p] += 1;
                    if drops >> (p * 3 + i) & 1 == 1 {
                        continue;
                    }
                    let b = ballot(round, 0, 1);
                    if step[p] <= 3 {
                        if let Ok(got) = acceptors[i].prepare(&b, 10) {
                            promises[p].push(got);
                        }
                    } else {
                        if promises[p].len() < 2 {
                            continue;
                        }
                        let v = *value[p].get_or_insert_with(|| {
                            choose(1, &promises[p]).map_or(name, |a| a.value)
                        });
                        if acceptors[i].accept(&b, v, 10, 0).is_ok() {
                            accepts[p] += 1;
                            if accepts[p] == 2 {
                                chosen.push(v);
                            }
                        }
                    }
                }
                chosen.dedup();
                assert!(
                    chosen.len() <= 1,
                    "drops {drops:b} order {order:b}: {chosen:?}"
                );
            }
        }
    }
}

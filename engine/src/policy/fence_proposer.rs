//! The proposer's side of a fenced round ([`super::fence`]): step 1 asks the whole group to
//! promise the round, and goes on only with a majority; the promises cover every height from
//! the ballot's on (multi-Paxos), so blocks others got accepted are finished first, height by
//! height, before this member's own block of the round; step 2 at each height goes on only
//! once a majority accepted. The network and the signing are the member's; every choice here.

use super::fence::{choose, majority, Ballot, Promise};

/// What goes at the proposal's current height.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NextBlock<V> {
    /// Another member's block was accepted here, perhaps already chosen: the only one to sign.
    Adopt(V),
    /// Nothing was accepted here: this member proposes its own block of the round.
    Own,
}

#[derive(Clone, Debug)]
pub struct Proposer<V> {
    ballot: Ballot,
    group_size: usize,
    promises: Vec<Promise<V>>,
    /// The height the proposal is at.
    height: u64,
}

impl<V: Clone> Proposer<V> {
    /// A proposal of `ballot` in a group of `group_size` machines (this one included).
    pub fn new(ballot: Ballot, group_size: usize) -> Proposer<V> {
        Proposer {
            height: ballot.height,
            ballot,
            group_size,
            promises: Vec::new(),
        }
    }

    /// Answers a step needs to go on.
    pub fn need(&self) -> usize {
        majority(self.group_size)
    }

    /// Step 1's answers, this member's own first: on only with a majority of promises.
    pub fn on_promises(&mut self, answers: Vec<Result<Promise<V>, String>>) -> Result<(), String> {
        let mut refusals = Vec::new();
        for answer in answers {
            match answer {
                Ok(p) => self.promises.push(p),
                Err(why) => refusals.push(why),
            }
        }
        if self.promises.len() < self.need() {
            return Err(format!(
                "{} of {} members promised round {}, {} needed ({})",
                self.promises.len(),
                self.group_size,
                self.ballot.round,
                self.need(),
                refusals.join("; ")
            ));
        }
        Ok(())
    }

    /// What goes at the current height, with the head at `head_height`; `extends` says whether
    /// a block extends the head.
    pub fn next(
        &self,
        head_height: u64,
        extends: impl Fn(&V) -> bool,
    ) -> Result<NextBlock<V>, String> {
        if head_height + 1 != self.height {
            return Err(format!("the head moved to {head_height} meanwhile"));
        }
        match choose(self.height, &self.promises) {
            Some(a) if !extends(&a.value) => Err(format!(
                "the block accepted at height {} does not extend this member's head",
                self.height
            )),
            Some(a) => Ok(NextBlock::Adopt(a.value)),
            None => Ok(NextBlock::Own),
        }
    }

    /// Step 2's ballot at the current height.
    pub fn accept_ballot(&self) -> Ballot {
        Ballot {
            height: self.height,
            ..self.ballot
        }
    }

    /// Step 2's answers, this member's own first: on only once a majority accepted.
    pub fn on_accepts(&self, answers: Vec<Result<(), String>>) -> Result<(), String> {
        let accepted = answers.iter().filter(|a| a.is_ok()).count();
        if accepted < self.need() {
            let refusals: Vec<&str> = answers
                .iter()
                .filter_map(|a| a.as_ref().err().map(String::as_str))
                .collect();
            return Err(format!(
                "{accepted} of {} members accepted height {} in round {}, {} needed ({})",
                self.group_size,
                self.height,
                self.ballot.round,
                self.need(),
                refusals.join("; ")
            ));
        }
        Ok(())
    }

    /// The block at the current height was signed: this member's own ends the proposal
    /// (`false`); an adopted one moves it to the next height (`true`).
    pub fn on_signed(&mut self, own: bool) -> bool {
        if !own {
            self.height += 1;
        }
        !own
    }
}

#[cfg(test)]
mod tests {
    use super::super::fence::Accepted;
    use super::*;

    fn ballot() -> Ballot {
        Ballot {
            round: 40,
            level: 1,
            height: 10,
        }
    }

    fn promised(entries: &[(u64, u64, &'static str)]) -> Result<Promise<&'static str>, String> {
        Ok(entries
            .iter()
            .map(|(h, round, v)| {
                (
                    *h,
                    Accepted {
                        round: *round,
                        value: *v,
                    },
                )
            })
            .collect())
    }

    #[test]
    fn step_one_needs_a_majority_of_the_group() {
        type Answers = Vec<Result<Promise<&'static str>, String>>;
        let table: [(usize, Answers, bool); 4] = [
            (3, vec![promised(&[]), promised(&[])], true),
            (
                3,
                vec![promised(&[]), Err("no".into()), Err("late".into())],
                false,
            ),
            (
                4,
                vec![promised(&[]), promised(&[]), Err("no".into())],
                false,
            ),
            (5, vec![promised(&[]), promised(&[]), promised(&[])], true),
        ];
        for (group, answers, goes_on) in table {
            let mut p = Proposer::new(ballot(), group);
            let r = p.on_promises(answers);
            assert_eq!(r.is_ok(), goes_on, "group of {group}: {r:?}");
        }
        let mut p = Proposer::<&str>::new(ballot(), 3);
        let err = p
            .on_promises(vec![promised(&[]), Err("watched 2 rounds".into())])
            .unwrap_err();
        assert_eq!(
            err,
            "1 of 3 members promised round 40, 2 needed (watched 2 rounds)"
        );
    }

    #[test]
    fn accepted_blocks_are_finished_height_by_height_before_its_own() {
        let mut p = Proposer::new(ballot(), 3);
        p.on_promises(vec![
            promised(&[(10, 38, "a10"), (11, 38, "a11")]),
            promised(&[(10, 39, "b10")]),
        ])
        .unwrap();
        // Height 10: the block accepted in the highest round.
        assert_eq!(p.next(9, |_| true), Ok(NextBlock::Adopt("b10")));
        assert_eq!(p.accept_ballot().height, 10);
        assert!(p.on_signed(false));
        // Height 11: the only one accepted there.
        assert_eq!(p.next(10, |_| true), Ok(NextBlock::Adopt("a11")));
        assert!(p.on_signed(false));
        // Height 12: nothing accepted: its own, and that ends it.
        assert_eq!(p.next(11, |_| true), Ok(NextBlock::Own));
        assert_eq!(p.accept_ballot().height, 12);
        assert!(!p.on_signed(true));
    }

    #[test]
    fn a_moved_head_or_a_block_off_the_head_stops_the_proposal() {
        let mut p = Proposer::new(ballot(), 3);
        p.on_promises(vec![promised(&[(10, 39, "x")]), promised(&[])])
            .unwrap();
        assert_eq!(
            p.next(10, |_| true),
            Err("the head moved to 10 meanwhile".into())
        );
        assert_eq!(
            p.next(9, |_| false),
            Err("the block accepted at height 10 does not extend this member's head".into())
        );
    }

    #[test]
    fn step_two_needs_a_majority_of_accepts() {
        let p = Proposer::<&str>::new(ballot(), 3);
        assert!(p.on_accepts(vec![Ok(()), Err("no".into()), Ok(())]).is_ok());
        assert_eq!(
            p.on_accepts(vec![
                Ok(()),
                Err("promised 41".into()),
                Err("timeout".into())
            ]),
            Err(
                "1 of 3 members accepted height 10 in round 40, 2 needed (promised 41; timeout)"
                    .into()
            )
        );
    }
}

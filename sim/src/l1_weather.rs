//! The simulated L1's weather: the faults a scenario sets on L1 and what they do to one read or
//! one transaction. An outage (nobody reaches L1), a cut path (one node cannot reach L1 while
//! the others can), transactions lost before they land, receipts lost after they landed, and a
//! sender whose transactions are held back. Pure, so its rules are table-tested.
//!
//! Losses are owed only while faults last: [`Weather::heal`] forgets the ones not yet spent.
//! They are a count ("lose the next N"), and during an outage nothing is sent to spend them,
//! so without that a loss set before the heal fired long after it, one backoff per loss (chaos
//! 70337, 70377, 71892: up to twelve lost transactions and seven lost receipts in the 30 s after
//! the heal). A real L1 owes no future losses: a transaction is lost, or its receipt is, at the
//! moment it is sent or mined, by what the path and the chain are doing then.

use std::collections::{BTreeMap, BTreeSet};

/// What happens to a transaction a sender hands to L1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    /// The sender cannot reach L1: the transaction never left it.
    Unreachable,
    /// Lost before it landed: no receipt ever comes.
    Lost,
    /// It waits `hold_ms` (a congested or censoring path), then lands at the next L1 block.
    Lands { hold_ms: u64 },
}

/// What was still owed when the weather healed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Forgotten {
    pub was_down: bool,
    pub cut_paths: usize,
    pub losses: u32,
    pub receipt_losses: u32,
    pub held_senders: usize,
}

#[derive(Clone, Debug)]
pub struct Weather {
    up: bool,
    /// Senders whose path to L1 is cut.
    cut: BTreeSet<usize>,
    /// Transactions to lose before they land.
    losses: u32,
    /// Transactions that land but whose receipt is lost.
    receipt_losses: u32,
    /// Extra time a sender's transactions wait before they can land, by sender.
    held_ms: BTreeMap<usize, u64>,
}

impl Default for Weather {
    fn default() -> Weather {
        Weather {
            up: true,
            cut: BTreeSet::new(),
            losses: 0,
            receipt_losses: 0,
            held_ms: BTreeMap::new(),
        }
    }
}

impl Weather {
    pub fn is_up(&self) -> bool {
        self.up
    }

    pub fn set_up(&mut self, up: bool) {
        self.up = up;
    }

    /// Cuts (or restores) `sender`'s path to L1: its reads fail, what it sends never leaves,
    /// and the receipts of what it sent before are not read.
    pub fn set_cut(&mut self, sender: usize, cut: bool) {
        if cut {
            self.cut.insert(sender);
        } else {
            self.cut.remove(&sender);
        }
    }

    pub fn reachable(&self, sender: usize) -> bool {
        self.up && !self.cut.contains(&sender)
    }

    pub fn lose_next(&mut self, n: u32) {
        self.losses = self.losses.saturating_add(n);
    }

    pub fn lose_receipts(&mut self, n: u32) {
        self.receipt_losses = self.receipt_losses.saturating_add(n);
    }

    /// From now on `sender`'s transactions wait `ms` before they can land (0: no more).
    pub fn hold(&mut self, sender: usize, ms: u64) {
        if ms == 0 {
            self.held_ms.remove(&sender);
        } else {
            self.held_ms.insert(sender, ms);
        }
    }

    /// `sender` hands L1 a transaction.
    pub fn on_send(&mut self, sender: usize) -> Sent {
        if !self.reachable(sender) {
            return Sent::Unreachable;
        }
        if self.losses > 0 {
            self.losses -= 1;
            return Sent::Lost;
        }
        Sent::Lands {
            hold_ms: self.held_ms.get(&sender).copied().unwrap_or(0),
        }
    }

    /// A transaction of `sender`'s was mined (`committed`: the contract took it); whether its
    /// receipt reaches the sender. A receipt loss is spent only on a commit; a cut path or an
    /// outage loses any receipt.
    pub fn receipt_arrives(&mut self, sender: usize, committed: bool) -> bool {
        if !self.reachable(sender) {
            return false;
        }
        if committed && self.receipt_losses > 0 {
            self.receipt_losses -= 1;
            return false;
        }
        true
    }

    /// The faults stop: L1 is up, every path is open, nothing is held, and losses not yet
    /// spent are forgotten. Returns what was still owed.
    pub fn heal(&mut self) -> Forgotten {
        let forgotten = Forgotten {
            was_down: !self.up,
            cut_paths: self.cut.len(),
            losses: self.losses,
            receipt_losses: self.receipt_losses,
            held_senders: self.held_ms.len(),
        };
        *self = Weather::default();
        forgotten
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug)]
    enum Step {
        Down,
        Up,
        Cut(usize),
        Restore(usize),
        LoseNext(u32),
        LoseReceipts(u32),
        Hold(usize, u64),
        Heal,
        /// A send by this sender, expecting this fate.
        Send(usize, Sent),
        /// A commit mined for this sender, expecting its receipt to arrive or not.
        Mined(usize, bool),
    }

    fn play(steps: &[Step]) {
        let mut w = Weather::default();
        for (i, s) in steps.iter().enumerate() {
            match *s {
                Step::Down => w.set_up(false),
                Step::Up => w.set_up(true),
                Step::Cut(n) => w.set_cut(n, true),
                Step::Restore(n) => w.set_cut(n, false),
                Step::LoseNext(n) => w.lose_next(n),
                Step::LoseReceipts(n) => w.lose_receipts(n),
                Step::Hold(n, ms) => w.hold(n, ms),
                Step::Heal => {
                    w.heal();
                }
                Step::Send(n, want) => assert_eq!(w.on_send(n), want, "step {i}: {s:?}"),
                Step::Mined(n, want) => {
                    assert_eq!(w.receipt_arrives(n, true), want, "step {i}: {s:?}")
                }
            }
        }
    }

    const LANDS: Sent = Sent::Lands { hold_ms: 0 };

    #[test]
    fn losses_set_during_an_outage_do_not_outlive_the_heal() {
        // chaos 70337's shape: losses set while L1 is down are never spent before the heal.
        play(&[
            Step::Down,
            Step::LoseNext(3),
            Step::LoseReceipts(2),
            Step::Send(0, Sent::Unreachable),
            Step::LoseNext(3),
            Step::Heal,
            Step::Send(0, LANDS),
            Step::Mined(0, true),
        ]);
    }

    #[test]
    fn losses_are_spent_one_transaction_each_while_faults_last() {
        play(&[
            Step::LoseNext(2),
            Step::LoseReceipts(1),
            Step::Send(0, Sent::Lost),
            Step::Send(1, Sent::Lost),
            Step::Send(0, LANDS),
            Step::Mined(0, false),
            Step::Mined(0, true),
        ]);
        // A refusal does not spend a receipt loss.
        let mut w = Weather::default();
        w.lose_receipts(1);
        assert!(w.receipt_arrives(0, false));
        assert!(!w.receipt_arrives(0, true));
    }

    #[test]
    fn a_cut_path_fails_one_sender_only() {
        play(&[
            Step::Cut(1),
            Step::LoseNext(1),
            // The cut sender's transaction never leaves it, so it does not spend the loss.
            Step::Send(1, Sent::Unreachable),
            Step::Send(0, Sent::Lost),
            Step::Send(0, LANDS),
            Step::Mined(1, false),
            Step::Mined(0, true),
            Step::Restore(1),
            Step::Send(1, LANDS),
            Step::Mined(1, true),
            // An outage cuts everyone; its end restores only the paths that were not cut.
            Step::Cut(2),
            Step::Down,
            Step::Send(0, Sent::Unreachable),
            Step::Up,
            Step::Send(0, LANDS),
            Step::Send(2, Sent::Unreachable),
        ]);
    }

    #[test]
    fn held_senders_wait_until_released_or_healed() {
        play(&[
            Step::Hold(0, 20_000),
            Step::Send(0, Sent::Lands { hold_ms: 20_000 }),
            Step::Send(1, LANDS),
            Step::Hold(0, 0),
            Step::Send(0, LANDS),
            Step::Hold(0, 5_000),
            Step::Heal,
            Step::Send(0, LANDS),
        ]);
    }

    #[test]
    fn heal_reports_what_it_forgot() {
        let mut w = Weather::default();
        assert_eq!(w.heal(), Forgotten::default());
        w.set_up(false);
        w.set_cut(1, true);
        w.lose_next(4);
        w.lose_receipts(2);
        w.hold(0, 100);
        assert_eq!(
            w.heal(),
            Forgotten {
                was_down: true,
                cut_paths: 1,
                losses: 4,
                receipt_losses: 2,
                held_senders: 1,
            }
        );
        assert!(w.is_up() && w.reachable(1));
    }
}

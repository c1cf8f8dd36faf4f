//! Pending transactions, queued where the application says: in lanes ordered by sequence
//! number (the ledger: by sender and nonce), so the sequencer can take each lane's next
//! runnable sequence numbers in order, or first come, first served.

use std::collections::BTreeMap;

use alloy_primitives::B256;
use serde::{Deserialize, Serialize};

use crate::app::{AppState, Rejection, Tx};

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum AdmitError {
    #[error("mempool is full ({0} transactions)")]
    Full(usize),
    #[error("this sender already has {0} transactions pending, the most one may have")]
    LaneFull(usize),
    #[error(
        "sequence number (a ledger sender's nonce) {got} already used; its lane expects {expected}"
    )]
    Stale { expected: u64, got: u64 },
    #[error("a transaction with this lane and sequence number is already pending")]
    Duplicate,
    #[error("refused by the application: {0}")]
    Refused(Rejection),
}

/// Where a pending transaction sits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Lane(B256, u64),
    /// Its arrival number among first-come transactions.
    Arrival(u64),
}

/// How much the pool holds. Nothing admitted is ever evicted (an accepted transaction leaves
/// only when a block includes it or the chain passes its sequence number): a full pool, or a
/// full lane, refuses the newcomer, whose client sends it again later.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MempoolBounds {
    /// Transactions in all.
    pub total: usize,
    /// Transactions of one lane (a ledger sender), so one sender cannot fill the pool.
    pub per_lane: usize,
}

impl MempoolBounds {
    /// `total` in all, and no lane bound below it.
    pub const fn total(total: usize) -> MempoolBounds {
        MempoolBounds {
            total,
            per_lane: total,
        }
    }
}

pub struct Mempool {
    by_lane: BTreeMap<(B256, u64), Tx>,
    /// How many transactions each lane has pending.
    lane_pending: BTreeMap<B256, usize>,
    by_arrival: BTreeMap<u64, Tx>,
    /// Every pending transaction by id, so one can be removed by its bytes alone and a
    /// first-come one is not queued twice. Ordered, not hashed: a `HashMap` draws its keys from
    /// the simulator's random stream when made, which shifted every later draw of a run.
    places: BTreeMap<B256, Place>,
    arrivals: u64,
    bounds: MempoolBounds,
}

impl Mempool {
    pub fn new(bounds: MempoolBounds) -> Mempool {
        Mempool {
            by_lane: BTreeMap::new(),
            lane_pending: BTreeMap::new(),
            by_arrival: BTreeMap::new(),
            places: BTreeMap::new(),
            arrivals: 0,
            bounds,
        }
    }

    fn lane_left(&mut self, lane: &B256) {
        if let Some(n) = self.lane_pending.get_mut(lane) {
            *n -= 1;
            if *n == 0 {
                self.lane_pending.remove(lane);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.places.len()
    }

    pub fn is_empty(&self) -> bool {
        self.places.is_empty()
    }

    /// Queues `tx` where its application says, unless its sequence number is spent in
    /// `state`, the same place is taken, or the pool is full.
    pub fn admit(&mut self, tx: Tx, state: &AppState) -> Result<(), AdmitError> {
        let lane = state.app().lane(&tx).map_err(AdmitError::Refused)?;
        let id = tx.hash();
        let place = match lane {
            Some(lane) => {
                let expected = state.next_in_lane(&lane.id);
                if lane.sequence < expected {
                    return Err(AdmitError::Stale {
                        expected,
                        got: lane.sequence,
                    });
                }
                if self.by_lane.contains_key(&(lane.id, lane.sequence)) {
                    return Err(AdmitError::Duplicate);
                }
                Place::Lane(lane.id, lane.sequence)
            }
            None if self.places.contains_key(&id) => return Err(AdmitError::Duplicate),
            None => Place::Arrival(self.arrivals),
        };
        if self.places.len() >= self.bounds.total {
            return Err(AdmitError::Full(self.bounds.total));
        }
        if let Place::Lane(lane, _) = place {
            let pending = self.lane_pending.get(&lane).copied().unwrap_or(0);
            if pending >= self.bounds.per_lane {
                return Err(AdmitError::LaneFull(pending));
            }
        }
        match place {
            Place::Lane(lane, sequence) => {
                self.by_lane.insert((lane, sequence), tx);
                *self.lane_pending.entry(lane).or_insert(0) += 1;
            }
            Place::Arrival(n) => {
                self.arrivals += 1;
                self.by_arrival.insert(n, tx);
            }
        }
        self.places.insert(id, place);
        Ok(())
    }

    /// Drops transactions whose sequence number the chain has already used.
    pub fn prune(&mut self, state: &AppState) {
        let places = &mut self.places;
        let mut left: Vec<B256> = Vec::new();
        self.by_lane.retain(|(lane, sequence), tx| {
            let keep = *sequence >= state.next_in_lane(lane);
            if !keep {
                places.remove(&tx.hash());
                left.push(*lane);
            }
            keep
        });
        for lane in left {
            self.lane_left(&lane);
        }
    }

    /// Takes the first-come transactions of a block just built out of the pool. They have no
    /// sequence number the chain could prune them by, and a pipelined next block must not take
    /// them again; a proposal that is lost loses them (at most once: their clients time out
    /// and learn nothing). Laned transactions stay until the chain passes them, so a lost
    /// proposal's are proposed again.
    pub fn proposed(&mut self, txs: &[Tx]) {
        if self.by_arrival.is_empty() {
            return;
        }
        for tx in txs {
            let id = tx.hash();
            if let Some(Place::Arrival(n)) = self.places.get(&id).copied() {
                self.places.remove(&id);
                self.by_arrival.remove(&n);
            }
        }
    }

    /// Drops `tx` (included in a block, or refused for good).
    pub fn remove(&mut self, tx: &Tx) {
        match self.places.remove(&tx.hash()) {
            Some(Place::Lane(lane, sequence)) => {
                self.by_lane.remove(&(lane, sequence));
                self.lane_left(&lane);
            }
            Some(Place::Arrival(n)) => {
                self.by_arrival.remove(&n);
            }
            None => {}
        }
    }

    /// Each lane's consecutive sequence numbers starting at the one `state` expects, taken
    /// round-robin across lanes (each one's next in turn, lanes in id order within a round),
    /// then first-come transactions in arrival order, up to `limit`. Taking whole runs lane by
    /// lane let the lowest addresses fill every block while the rest waited for seconds under
    /// load.
    pub fn candidates(&self, state: &AppState, limit: usize) -> Vec<Tx> {
        let mut runs: Vec<Vec<&Tx>> = Vec::new();
        // The lane being walked and the sequence number its run needs next (u64::MAX: the run
        // ended at a gap).
        let mut walking: Option<(B256, u64)> = None;
        for ((lane, sequence), tx) in &self.by_lane {
            let next = match walking {
                Some((l, n)) if l == *lane => n,
                _ => {
                    runs.push(Vec::new());
                    state.next_in_lane(lane)
                }
            };
            let run_full = runs.last().is_some_and(|r| r.len() >= limit);
            if *sequence < next {
                walking = Some((*lane, next));
            } else if *sequence == next && !run_full {
                if let Some(run) = runs.last_mut() {
                    run.push(tx);
                }
                walking = Some((*lane, next + 1));
            } else {
                walking = Some((*lane, u64::MAX));
            }
        }
        let mut out = Vec::new();
        let longest = runs.iter().map(Vec::len).max().unwrap_or(0);
        'rounds: for round in 0..longest {
            for run in &runs {
                if out.len() >= limit {
                    break 'rounds;
                }
                if let Some(tx) = run.get(round) {
                    out.push((*tx).clone());
                }
            }
        }
        let room = limit.saturating_sub(out.len());
        out.extend(self.by_arrival.values().take(room).cloned());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::ledger::{lane_of, LedgerApp, Payload, SignedTransaction, Transaction};
    use crate::app::{App, Application, Committed, Entry};
    use crate::keys::SecretKey;
    use alloy_primitives::Address;

    fn tx(k: &SecretKey, nonce: u64) -> Tx {
        Transaction {
            sender: k.address(),
            nonce,
            payload: Payload::Data(vec![]),
        }
        .sign(k)
        .unwrap()
        .to_tx()
        .unwrap()
    }

    fn ledger() -> AppState {
        App::new(LedgerApp::default()).genesis()
    }

    fn sender_nonce(tx: &Tx) -> (Address, u64) {
        let s = SignedTransaction::from_tx(tx).unwrap();
        (s.tx.sender, s.tx.nonce)
    }

    #[test]
    fn candidates_are_consecutive_nonces_per_sender() {
        let a = SecretKey::from_bytes([1; 32]).unwrap();
        let ledger = ledger();
        let mut mp = Mempool::new(MempoolBounds::total(10));
        for n in [0, 1, 3] {
            mp.admit(tx(&a, n), &ledger).unwrap();
        }
        assert_eq!(mp.admit(tx(&a, 1), &ledger), Err(AdmitError::Duplicate));
        let nonces: Vec<u64> = mp
            .candidates(&ledger, 10)
            .iter()
            .map(|t| sender_nonce(t).1)
            .collect();
        assert_eq!(nonces, vec![0, 1]);
        assert_eq!(mp.candidates(&ledger, 1).len(), 1);
    }

    #[test]
    fn candidates_take_turns_across_senders() {
        let a = SecretKey::from_bytes([1; 32]).unwrap();
        let b = SecretKey::from_bytes([2; 32]).unwrap();
        let ledger = ledger();
        let mut mp = Mempool::new(MempoolBounds::total(100));
        for n in 0..10 {
            mp.admit(tx(&a, n), &ledger).unwrap();
        }
        for n in 0..2 {
            mp.admit(tx(&b, n), &ledger).unwrap();
        }
        let (lo, hi) = if lane_of(&a.address()) < lane_of(&b.address()) {
            (a.address(), b.address())
        } else {
            (b.address(), a.address())
        };
        let picked: Vec<(Address, u64)> =
            mp.candidates(&ledger, 5).iter().map(sender_nonce).collect();
        let expect_b_in_first_four = picked[..4]
            .iter()
            .filter(|(s, _)| *s == b.address())
            .count();
        assert_eq!(expect_b_in_first_four, 2, "{picked:?}");
        assert_eq!(picked[0].0, lo);
        assert_eq!(picked[1].0, hi);
        for s in [a.address(), b.address()] {
            let nonces: Vec<u64> = picked
                .iter()
                .filter(|(x, _)| *x == s)
                .map(|(_, n)| *n)
                .collect();
            assert!(nonces.windows(2).all(|w| w[1] == w[0] + 1), "{nonces:?}");
        }
        assert_eq!(picked.len(), 5);
    }

    #[test]
    fn full_and_stale_are_refused_and_prune_drops_used_nonces() {
        let a = SecretKey::from_bytes([1; 32]).unwrap();
        let mut ledger = ledger();
        let mut mp = Mempool::new(MempoolBounds::total(2));
        mp.admit(tx(&a, 0), &ledger).unwrap();
        mp.admit(tx(&a, 1), &ledger).unwrap();
        assert_eq!(mp.admit(tx(&a, 2), &ledger), Err(AdmitError::Full(2)));
        ledger.execute(&tx(&a, 0)).unwrap();
        assert_eq!(
            mp.admit(tx(&a, 0), &ledger),
            Err(AdmitError::Stale {
                expected: 1,
                got: 0
            })
        );
        mp.prune(&ledger);
        assert_eq!(mp.len(), 1);
        // Laned transactions stay until the chain passes them.
        mp.proposed(&[tx(&a, 1)]);
        assert_eq!(mp.len(), 1);
        mp.remove(&tx(&a, 1));
        assert!(mp.is_empty());
        assert!(matches!(
            mp.admit(Tx::new(vec![1, 2, 3]), &ledger),
            Err(AdmitError::Refused(r)) if r.rule == crate::app::RULE_ENCODING
        ));
    }

    #[test]
    fn a_sender_holds_at_most_its_lane_and_nothing_admitted_is_evicted() {
        let a = SecretKey::from_bytes([1; 32]).unwrap();
        let b = SecretKey::from_bytes([2; 32]).unwrap();
        let mut ledger = ledger();
        let mut mp = Mempool::new(MempoolBounds {
            total: 5,
            per_lane: 3,
        });
        // (sender, nonce, admitted?)
        let table = [
            (&a, 0, Ok(())),
            (&a, 1, Ok(())),
            (&a, 2, Ok(())),
            (&a, 3, Err(AdmitError::LaneFull(3))),
            (&b, 0, Ok(())),
            (&b, 1, Ok(())),
            // Full in all: the newcomer is refused, nobody is evicted.
            (&b, 2, Err(AdmitError::Full(5))),
        ];
        for (i, (key, nonce, expect)) in table.into_iter().enumerate() {
            assert_eq!(mp.admit(tx(key, nonce), &ledger), expect, "row {i}");
        }
        assert_eq!(mp.len(), 5);
        // The chain passes a's nonce 0: its lane has room again.
        ledger.execute(&tx(&a, 0)).unwrap();
        mp.prune(&ledger);
        assert_eq!(mp.admit(tx(&a, 3), &ledger), Ok(()));
        mp.remove(&tx(&b, 1));
        assert_eq!(mp.len(), 4);
        assert_eq!(mp.admit(tx(&a, 4), &ledger), Err(AdmitError::LaneFull(3)));
        mp.remove(&tx(&a, 1));
        assert_eq!(mp.admit(tx(&a, 4), &ledger), Ok(()));
    }

    /// An application without lanes: every transaction first come, first served.
    struct Notes;

    impl Application for Notes {
        type State = ();
        fn kind(&self) -> &'static str {
            "notes"
        }
        fn genesis(&self) {}
        fn execute(&self, _: &mut (), _: &Tx) -> Result<Vec<u8>, Rejection> {
            Ok(Vec::new())
        }
        fn commit(&self, _: &mut ()) -> Committed {
            Committed {
                state_root: B256::ZERO,
                writes: Vec::new(),
            }
        }
        fn query(&self, _: &(), _: &[u8]) -> Result<Vec<u8>, Rejection> {
            Ok(Vec::new())
        }
        fn export(&self, _: &()) -> Vec<Entry> {
            Vec::new()
        }
        fn import(&self, _: Vec<Entry>) -> Result<(), Rejection> {
            Ok(())
        }
    }

    #[test]
    fn first_come_transactions_leave_in_arrival_order_once_each() {
        let state = App::new(Notes).genesis();
        let mut mp = Mempool::new(MempoolBounds::total(10));
        // Arrival order, not byte order.
        let notes: Vec<Tx> = [9u8, 3, 7, 1].iter().map(|b| Tx::new(vec![*b])).collect();
        for n in &notes {
            mp.admit(n.clone(), &state).unwrap();
        }
        assert_eq!(
            mp.admit(notes[1].clone(), &state),
            Err(AdmitError::Duplicate)
        );
        assert_eq!(mp.candidates(&state, 10), notes);
        assert_eq!(mp.candidates(&state, 2), notes[..2]);
        mp.remove(&notes[0]);
        mp.prune(&state);
        assert_eq!(mp.candidates(&state, 10), notes[1..]);
        assert_eq!(mp.len(), 3);
        // Proposed once, never again.
        mp.proposed(&notes[1..3]);
        assert_eq!(mp.candidates(&state, 10), notes[3..]);
        assert_eq!(mp.len(), 1);
    }
}

//! A simulated L1 with the settlement contract's rules, written again here (not calling the
//! engine's batch code, so a bug in one cannot hide in the other): the next batch number only,
//! the previous commitment, a continuous non-empty range, no epoch below the highest seen, and
//! signatures over the commitment from a majority of the consensus nodes' current set, in
//! ascending address order; a batch that names a new set hands L1 over to it. Deterministic: transactions land on the next multiple of
//! `block_time_ms` (anvil's `--block-time`); faults are what the scenario sets, by the rules of
//! [`crate::l1_weather`]: an outage, one node's path cut, transactions lost before they land,
//! receipts lost after they landed, a sender's transactions held.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use alloy_primitives::{keccak256, Address, B256};
use canon_engine::ids::Sig65;
use canon_engine::keys::recover_address;
use canon_engine::net::transport::BoxFuture;
use canon_engine::policy::batcher::SubmitOutcome;
use canon_engine::settlement::batch::BatchHeader;
use canon_engine::settlement::l1::{L1Head, L1};

use crate::l1_weather::{Sent, Weather};
use crate::observer::SharedObserver;

/// A batch as the simulated contract stored it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L1Batch {
    pub number: u64,
    pub first_height: u64,
    pub last_height: u64,
    pub state_root: B256,
    pub commitment: B256,
    pub epoch: u64,
    /// Simulated time it landed.
    pub at: Duration,
}

struct State {
    validators: Vec<Address>,
    batches: Vec<L1Batch>,
    highest_epoch: u64,
    weather: Weather,
    /// Every refusal: (sender, batch, reason) (the scenario reads them).
    refusals: Vec<(usize, u64, String)>,
    /// Transactions that were held, by sender.
    held: BTreeMap<usize, u64>,
    /// Transactions sent but not yet mined, by sender.
    in_flight: BTreeMap<usize, u64>,
}

#[derive(Clone)]
pub struct SimL1 {
    state: Arc<Mutex<State>>,
    /// L1's own simulated machine: transactions land there.
    host: madsim::runtime::NodeHandle,
    observer: SharedObserver,
    block_time_ms: u64,
    /// How long a client waits for a receipt that never comes.
    receipt_timeout: Duration,
    /// Whose account this handle sends from (a batcher node's index).
    sender: usize,
}

impl SimL1 {
    pub fn new(
        host: madsim::runtime::NodeHandle,
        validators: Vec<Address>,
        block_time_ms: u64,
        observer: SharedObserver,
    ) -> SimL1 {
        SimL1 {
            host,
            state: Arc::new(Mutex::new(State {
                validators,
                batches: Vec::new(),
                highest_epoch: 0,
                weather: Weather::default(),
                refusals: Vec::new(),
                held: BTreeMap::new(),
                in_flight: BTreeMap::new(),
            })),
            sender: 0,
            observer,
            block_time_ms: block_time_ms.max(1),
            receipt_timeout: Duration::from_secs(2),
        }
    }

    /// A handle that sends from node `i`'s account.
    pub fn for_sender(&self, i: usize) -> SimL1 {
        SimL1 {
            sender: i,
            ..self.clone()
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        canon_engine::sync::lock(&self.state)
    }

    pub fn is_up(&self) -> bool {
        self.lock().weather.is_up()
    }

    pub fn set_up(&self, up: bool) {
        self.lock().weather.set_up(up);
        self.observer
            .lock()
            .note(format!("fault: L1 {}", if up { "back" } else { "down" }));
    }

    /// Cuts node `sender`'s path to L1 (`cut`), or restores it; L1 and every other path stay.
    pub fn set_cut(&self, sender: usize, cut: bool) {
        self.lock().weather.set_cut(sender, cut);
        self.observer.lock().note(format!(
            "fault: n{sender}'s path to L1 {}",
            if cut { "cut" } else { "restored" }
        ));
    }

    pub fn drop_next(&self, n: u32) {
        self.lock().weather.lose_next(n);
        self.observer
            .lock()
            .note(format!("fault: L1 loses the next {n} transactions"));
    }

    pub fn lose_receipts(&self, n: u32) {
        self.lock().weather.lose_receipts(n);
        self.observer.lock().note(format!(
            "fault: L1 loses the receipts of the next {n} commits"
        ));
    }

    /// From now on, node `sender`'s transactions wait `ms` before they can land (0: no more).
    pub fn hold_sender(&self, sender: usize, ms: u64) {
        self.lock().weather.hold(sender, ms);
        self.observer.lock().note(format!(
            "fault: L1 holds n{sender}'s transactions for {ms} ms"
        ));
    }

    /// The faults stop: L1 up, every path open, nothing held, and losses not yet spent
    /// forgotten (see [`crate::l1_weather`]). Notes only what it ended, so a run with nothing
    /// pending keeps its trace.
    pub fn heal(&self) {
        let f = self.lock().weather.heal();
        if f.was_down {
            self.observer.lock().note("fault: L1 back");
        }
        if f.cut_paths + f.held_senders > 0 || f.losses + f.receipt_losses > 0 {
            self.observer.lock().note(format!(
                "fault: L1 weather ends ({} cut paths, {} losses and {} receipt losses unspent, {} senders held)",
                f.cut_paths, f.losses, f.receipt_losses, f.held_senders
            ));
        }
    }

    /// How many of node `sender`'s transactions were held.
    pub fn held(&self, sender: usize) -> u64 {
        self.lock().held.get(&sender).copied().unwrap_or(0)
    }

    fn reachable(&self) -> bool {
        self.lock().weather.reachable(self.sender)
    }

    fn unreachable_reason(&self) -> String {
        if self.is_up() {
            format!("connection refused (n{}'s path to L1 is cut)", self.sender)
        } else {
            "connection refused (simulated L1 outage)".into()
        }
    }

    pub fn batches(&self) -> Vec<L1Batch> {
        self.lock().batches.clone()
    }

    /// The attester set the contract holds now.
    pub fn validators(&self) -> Vec<Address> {
        self.lock().validators.clone()
    }

    pub fn refusals(&self) -> Vec<(usize, u64, String)> {
        self.lock().refusals.clone()
    }

    fn head_now(&self) -> L1Head {
        let s = self.lock();
        let in_flight = s.in_flight.get(&self.sender).copied().unwrap_or(0);
        match s.batches.last() {
            Some(b) => L1Head {
                batch_number: b.number,
                height: b.last_height,
                state_root: b.state_root,
                commitment: b.commitment,
                epoch: s.highest_epoch,
                in_flight,
            },
            None => L1Head {
                batch_number: 0,
                height: 0,
                state_root: B256::ZERO,
                commitment: B256::ZERO,
                epoch: s.highest_epoch,
                in_flight,
            },
        }
    }

    fn count_in_flight(&self, delta: i64) {
        let mut s = self.lock();
        let n = s.in_flight.entry(self.sender).or_insert(0);
        *n = n.saturating_add_signed(delta);
    }

    /// Sleeps until the next L1 block.
    async fn next_block(&self) {
        let now_ms = self.observer.lock().now().as_millis() as u64;
        let wait = self.block_time_ms - now_ms % self.block_time_ms;
        madsim::time::sleep(Duration::from_millis(wait)).await;
    }

    /// The contract's `commitBatch`, at the moment the transaction is mined.
    fn execute(&self, h: &BatchHeader, sigs: &[Sig65], epoch: u64) -> Result<L1Batch, String> {
        let head = self.head_now();
        let mut s = self.lock();
        if h.number != head.batch_number + 1 {
            return Err(format!(
                "NotNextBatch({}, {})",
                head.batch_number + 1,
                h.number
            ));
        }
        if h.previous != head.commitment {
            return Err("PreviousCommitmentMismatch".into());
        }
        if h.first_height != head.height + 1 {
            return Err(format!(
                "RangeNotContinuous({}, {})",
                head.height + 1,
                h.first_height
            ));
        }
        if h.last_height < h.first_height {
            return Err("EmptyRange".into());
        }
        if epoch < s.highest_epoch {
            return Err(format!("StaleEpoch({}, {epoch})", s.highest_epoch));
        }
        let commitment = contract_commitment(h);
        let mut last = Address::ZERO;
        for (i, sig) in sigs.iter().enumerate() {
            let a = recover_address(&commitment, sig).map_err(|_| format!("BadSignature({i})"))?;
            if a <= last {
                return Err(format!("AttestersNotAscending({i})"));
            }
            if !s.validators.contains(&a) {
                return Err(format!("UnknownAttester({a})"));
            }
            last = a;
        }
        let needed = s.validators.len() / 2 + 1;
        if sigs.len() < needed {
            return Err(format!("NotEnoughAttestations({}, {needed})", sigs.len()));
        }
        let mut last = Address::ZERO;
        for (i, a) in h.next_attesters.iter().enumerate() {
            if *a <= last {
                return Err(format!("BadNextValidator({i})"));
            }
            last = *a;
        }
        if !h.next_attesters.is_empty() {
            s.validators = h.next_attesters.clone();
        }
        let at = self.observer.lock().now();
        s.highest_epoch = epoch;
        let b = L1Batch {
            number: h.number,
            first_height: h.first_height,
            last_height: h.last_height,
            state_root: h.state_root,
            commitment,
            epoch,
            at,
        };
        s.batches.push(b);
        Ok(b)
    }
}

impl SimL1 {
    /// Mines a submitted transaction at the next L1 block. `None`: no receipt ever comes
    /// (lost before it landed, L1 down, or its receipt lost after it landed).
    async fn land(
        &self,
        header: BatchHeader,
        signatures: Vec<Sig65>,
        epoch: u64,
    ) -> Option<SubmitOutcome> {
        let sent = {
            let mut s = self.lock();
            let sent = s.weather.on_send(self.sender);
            if let Sent::Lands { hold_ms } = sent {
                if hold_ms > 0 {
                    *s.held.entry(self.sender).or_insert(0) += 1;
                }
            }
            sent
        };
        let hold_ms = match sent {
            // `submit` checked the path a moment ago; it was cut since.
            Sent::Unreachable => return None,
            Sent::Lost => {
                self.observer.lock().note(format!(
                    "L1: a transaction for batch {} is lost",
                    header.number
                ));
                return None;
            }
            Sent::Lands { hold_ms } => hold_ms,
        };
        if hold_ms > 0 {
            self.observer.lock().note(format!(
                "L1: n{}'s transaction for batch {} at epoch {epoch} held for {hold_ms} ms",
                self.sender, header.number
            ));
            madsim::time::sleep(Duration::from_millis(hold_ms)).await;
        }
        self.next_block().await;
        if !self.lock().weather.is_up() {
            return None;
        }
        let result = self.execute(&header, &signatures, epoch);
        let lost_receipt = {
            let mut s = self.lock();
            if let Err(reason) = &result {
                s.refusals
                    .push((self.sender, header.number, reason.clone()));
            }
            !s.weather.receipt_arrives(self.sender, result.is_ok())
        };
        let validators = self.validators();
        {
            let mut o = self.observer.lock();
            match &result {
                Ok(b) => {
                    o.note(format!(
                        "L1: batch {} ({}..={}) committed at epoch {epoch}{}",
                        b.number,
                        b.first_height,
                        b.last_height,
                        if lost_receipt {
                            ", its receipt lost"
                        } else {
                            ""
                        }
                    ));
                    let at = o.now();
                    o.checker.l1_committed(
                        at,
                        self.sender,
                        epoch,
                        b.number,
                        b.first_height,
                        b.last_height,
                        b.state_root,
                        b.commitment,
                    );
                    o.checker
                        .l1_attesters(at, b.number, b.last_height, &validators);
                }
                Err(reason) => o.note(format!(
                    "L1: n{}'s batch {} at epoch {epoch} reverted: {reason}",
                    self.sender, header.number
                )),
            }
        }
        if lost_receipt {
            return None;
        }
        Some(match result {
            Ok(_) => SubmitOutcome::Committed,
            Err(reason) => SubmitOutcome::Refused { reason },
        })
    }
}

/// keccak256 over the seven ABI words, as the contract computes it; the last is the hash of
/// `abi.encodePacked(nextValidators)` (each address padded to a word).
fn contract_commitment(h: &BatchHeader) -> B256 {
    let word = |v: u64| B256::left_padding_from(&v.to_be_bytes());
    let mut packed = Vec::with_capacity(32 * h.next_attesters.len());
    for a in &h.next_attesters {
        packed.extend_from_slice(B256::left_padding_from(a.as_slice()).as_slice());
    }
    let mut abi = Vec::with_capacity(7 * 32);
    for w in [
        word(h.number),
        h.previous,
        word(h.first_height),
        word(h.last_height),
        h.state_root,
        h.block_hashes_hash,
        keccak256(&packed),
    ] {
        abi.extend_from_slice(w.as_slice());
    }
    keccak256(&abi)
}

impl L1 for SimL1 {
    fn head(&self) -> BoxFuture<'_, Result<L1Head, String>> {
        Box::pin(async move {
            // One round trip on loopback.
            madsim::time::sleep(Duration::from_millis(2)).await;
            if !self.reachable() {
                return Err(self.unreachable_reason());
            }
            Ok(self.head_now())
        })
    }

    fn submit(
        &self,
        header: BatchHeader,
        signatures: Vec<Sig65>,
        epoch: u64,
    ) -> BoxFuture<'_, SubmitOutcome> {
        Box::pin(async move {
            madsim::time::sleep(Duration::from_millis(2)).await;
            if !self.reachable() {
                return SubmitOutcome::Unknown {
                    reason: self.unreachable_reason(),
                };
            }
            // The transaction is L1's now: it lands (or not) on L1's own machine, even if the
            // sender crashes while it waits for the receipt.
            let l1 = self.clone();
            self.count_in_flight(1);
            let landing = self.host.spawn(async move {
                let outcome = l1.land(header, signatures, epoch).await;
                l1.count_in_flight(-1);
                outcome
            });
            match madsim::time::timeout(self.receipt_timeout, landing).await {
                Ok(Ok(Some(outcome))) => outcome,
                // Still pending when the client stops waiting: it may land later.
                Err(_) => SubmitOutcome::Unknown {
                    reason: "no receipt in time".into(),
                },
                Ok(_) => {
                    madsim::time::sleep(self.receipt_timeout).await;
                    SubmitOutcome::Unknown {
                        reason: "no receipt".into(),
                    }
                }
            }
        })
    }
}

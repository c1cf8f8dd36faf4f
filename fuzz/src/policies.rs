//! The engine's policies driven by fuzzed schedules, each held to its own safety rule. A
//! schedule is a list of steps whose type derives `arbitrary::Arbitrary`: every byte string
//! the fuzzer makes reads as some schedule (no input is wasted on a parse error), and a
//! regression is written as the schedule itself, readable in a test, rather than as bytes.

use arbitrary::{Arbitrary, Unstructured};
use canon_engine::chain::block::Block;

/// Reads `data` as a whole schedule of `T` steps: every byte string is one. (Not
/// `Vec::arbitrary_take_rest`: it throws the whole schedule away when the last step runs
/// short of bytes.)
fn schedule<'a, T: Arbitrary<'a>>(data: &'a [u8]) -> Vec<T> {
    let mut u = Unstructured::new(data);
    let mut steps = Vec::new();
    while !u.is_empty() {
        match T::arbitrary(&mut u) {
            Ok(step) => steps.push(step),
            Err(_) => break,
        }
    }
    steps
}

/// One of three: a proposer, an acceptor or a voter.
fn of_three(u: &mut Unstructured) -> arbitrary::Result<usize> {
    u.int_in_range(0..=2)
}

/// One of four: the three voters and a stranger.
fn of_four(u: &mut Unstructured) -> arbitrary::Result<usize> {
    u.int_in_range(0..=3)
}

/// One ask to the signing guard: sign block `salt` of `height` in `round`, then perhaps crash.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub struct GuardAsk {
    #[arbitrary(with = |u: &mut Unstructured| u.int_in_range(0..=GUARD_HEIGHTS - 1))]
    pub height: u64,
    #[arbitrary(with = |u: &mut Unstructured| u.int_in_range(0..=15))]
    pub round: u64,
    #[arbitrary(with = |u: &mut Unstructured| u.int_in_range(0..=GUARD_SALTS - 1))]
    pub salt: u64,
    /// The machine crashes after the ask: only what the guard synced survives.
    pub crash: bool,
}

const GUARD_HEIGHTS: u64 = 16;
const GUARD_SALTS: u64 = 4;

/// [`signing_guard_schedule`] on `data` read as asks.
pub fn signing_guard(data: &[u8]) -> usize {
    signing_guard_schedule(&schedule::<GuardAsk>(data))
}

/// Drives a signing guard with `asks` and holds it to its rule: per height and per round at
/// most one block is ever let through (retries of the same block aside), across crashes, and
/// the watermark never goes down. A violation panics, which is what a fuzzer reports. Returns
/// how many asks it let through.
pub fn signing_guard_schedule(asks: &[GuardAsk]) -> usize {
    use canon_engine::redundancy::signing_guard::SigningGuard;
    use canon_engine::storage::MemDisk;
    use std::collections::BTreeMap;
    use std::sync::Arc;

    let disk = MemDisk::new();
    let identity = guard_blocks()[0].0.header.proposer;
    let open =
        |disk: &MemDisk| SigningGuard::open(Arc::new(disk.clone()), identity).expect("guard opens");
    let mut guard = open(&disk);
    let mut by_height: BTreeMap<u64, alloy_primitives::B256> = BTreeMap::new();
    let mut by_round: BTreeMap<u64, alloy_primitives::B256> = BTreeMap::new();
    let mut high = (0u64, 0u64);
    let mut let_through = 0;
    for ask in asks {
        let (height, round) = (ask.height, ask.round);
        let (block, hash) = &guard_blocks()[(height * GUARD_SALTS + ask.salt) as usize];
        if guard.record(round, block).is_ok() {
            assert!(
                by_height.get(&height).is_none_or(|h| h == hash),
                "two blocks let through for height {height}"
            );
            assert!(
                by_round.get(&round).is_none_or(|h| h == hash),
                "two blocks let through for round {round}"
            );
            assert!((height, round) >= high, "the watermark went down");
            by_height.insert(height, *hash);
            by_round.insert(round, *hash);
            high = (height, round);
            let_through += 1;
        }
        if ask.crash {
            disk.crash(0);
            guard = open(&disk);
        }
    }
    let_through
}

/// Every block the guard target can ask for (each height x each salt), sealed once: sealing
/// a block per ask held the target to 380 inputs a second.
fn guard_blocks() -> &'static [(Block, alloy_primitives::B256)] {
    static BLOCKS: std::sync::OnceLock<Vec<(Block, alloy_primitives::B256)>> =
        std::sync::OnceLock::new();
    BLOCKS.get_or_init(|| {
        let key = canon_engine::keys::derived_key("canon-fuzz/guard", 0);
        (0..GUARD_HEIGHTS)
            .flat_map(|h| (0..GUARD_SALTS).map(move |salt| (h, salt)))
            .map(|(h, salt)| {
                let b = guard_block(&key, h, salt);
                let hash = b.hash().expect("hash");
                (b, hash)
            })
            .collect()
    })
}

/// A block at `height` signed with `key`, told apart from its siblings by `salt`.
pub(crate) fn guard_block(key: &canon_engine::keys::SecretKey, height: u64, salt: u64) -> Block {
    let spec = canon_engine::chain::block::ChainSpec {
        chain_id: 7,
        app: canon_engine::app::App::new(canon_engine::app::ledger::LedgerApp::default()),
        blocks_per_batch: canon_engine::chain::block::DEFAULT_BLOCKS_PER_BATCH,
    };
    let mut header = spec.genesis_header().expect("genesis");
    header.height = height;
    header.timestamp_ms = salt;
    header.proposer = key.node_id();
    Block::seal(header, vec![], key).expect("seal")
}

/// One step of the fenced takeover's Paxos among three proposers (levels 0, 1, 2) and three
/// acceptors.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum FenceStep {
    /// A proposer starts a new attempt in the current round, forgetting its promises.
    Start {
        #[arbitrary(with = of_three)]
        proposer: usize,
    },
    /// A proposer asks an acceptor to promise.
    Prepare {
        #[arbitrary(with = of_three)]
        proposer: usize,
        #[arbitrary(with = of_three)]
        acceptor: usize,
    },
    /// A proposer holding a majority of promises asks an acceptor to accept its value (the
    /// highest accepted among its promises, else its own).
    Accept {
        #[arbitrary(with = of_three)]
        proposer: usize,
        #[arbitrary(with = of_three)]
        acceptor: usize,
    },
    /// An acceptor restarts: only its persisted record survives.
    Restart {
        #[arbitrary(with = of_three)]
        acceptor: usize,
    },
    /// An acceptor sees a level alive in the current round.
    Observe {
        #[arbitrary(with = of_three)]
        acceptor: usize,
        #[arbitrary(with = of_three)]
        level: usize,
    },
    /// The clock moves on a round.
    Tick,
}

/// [`fence_schedule`] on `data` read as steps.
pub fn fence(data: &[u8]) -> usize {
    fence_schedule(&schedule::<FenceStep>(data))
}

/// Drives the fenced takeover's Paxos (`policy::fence`) with `steps` and holds it to its
/// rule: never two different blocks chosen (accepted by a majority in one round) for one
/// height. A violation panics. Returns how many values were chosen (0 or 1).
pub fn fence_schedule(steps: &[FenceStep]) -> usize {
    use canon_engine::policy::fence::{
        choose, majority, Acceptor, AcceptorRecord, Ballot, Promise,
    };
    use std::collections::{BTreeMap, BTreeSet};

    const ACCEPTORS: usize = 3;
    const HEIGHT: u64 = 1;
    struct Proposer {
        level: i64,
        round: u64,
        promises: BTreeMap<usize, Promise<u8>>,
        value: Option<u8>,
    }
    let mut acceptors: Vec<Acceptor<u8>> = (0..ACCEPTORS)
        .map(|_| Acceptor::new(AcceptorRecord::default(), 2))
        .collect();
    let mut proposers: Vec<Proposer> = (0..3)
        .map(|p| Proposer {
            level: p as i64,
            round: 0,
            promises: BTreeMap::new(),
            value: None,
        })
        .collect();
    let mut now = 1u64;
    for a in &mut acceptors {
        a.on_round(now);
    }
    // Per round, which acceptors accepted which value.
    let mut accepted: BTreeMap<(u64, u8), BTreeSet<usize>> = BTreeMap::new();
    let mut chosen: BTreeSet<u8> = BTreeSet::new();
    for step in steps {
        match *step {
            FenceStep::Start { proposer } => {
                let p = &mut proposers[proposer];
                p.round = now;
                p.promises.clear();
                p.value = None;
            }
            FenceStep::Prepare { proposer, acceptor } => {
                let p = &mut proposers[proposer];
                let b = Ballot {
                    round: p.round,
                    level: p.level,
                    height: HEIGHT,
                };
                if let Ok(promise) = acceptors[acceptor].prepare(&b, now) {
                    p.promises.insert(acceptor, promise);
                }
            }
            FenceStep::Accept { proposer, acceptor } => {
                let p = &mut proposers[proposer];
                if p.promises.len() < majority(ACCEPTORS) {
                    continue;
                }
                let promises: Vec<Promise<u8>> = p.promises.values().cloned().collect();
                let own = proposer as u8 + 1;
                let v = *p
                    .value
                    .get_or_insert_with(|| choose(HEIGHT, &promises).map_or(own, |a| a.value));
                let b = Ballot {
                    round: p.round,
                    level: p.level,
                    height: HEIGHT,
                };
                if acceptors[acceptor].accept(&b, v, now, 0).is_ok() {
                    let set = accepted.entry((p.round, v)).or_default();
                    set.insert(acceptor);
                    if set.len() >= majority(ACCEPTORS) {
                        chosen.insert(v);
                    }
                }
            }
            FenceStep::Restart { acceptor } => {
                let record = acceptors[acceptor].record().clone();
                acceptors[acceptor] = Acceptor::new(record, 2);
                acceptors[acceptor].on_round(now);
            }
            FenceStep::Observe { acceptor, level } => {
                acceptors[acceptor].observe(level as i64, now)
            }
            FenceStep::Tick => {
                now += 1;
                for a in &mut acceptors {
                    a.on_round(now);
                }
            }
        }
        assert!(
            chosen.len() <= 1,
            "two blocks chosen for one height: {chosen:?}"
        );
    }
    chosen.len()
}

/// Raft's role as the election target shows it to the elector.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum ViewRole {
    Leader,
    Candidate,
    Follower,
    Other,
}

/// What the elector reads of Raft at one step, among voters 0-2 (0 is the node itself) and
/// a stranger 3.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub struct View {
    pub role: ViewRole,
    #[arbitrary(with = |u: &mut Unstructured| u.int_in_range(0..=3))]
    pub term: u64,
    #[arbitrary(with = |u: &mut Unstructured| u.arbitrary::<bool>()?.then(|| of_four(u)).transpose())]
    pub voted_for: Option<usize>,
    #[arbitrary(with = |u: &mut Unstructured| u.arbitrary::<bool>()?.then(|| of_four(u)).transpose())]
    pub leader: Option<usize>,
    #[arbitrary(with = |u: &mut Unstructured| u.arbitrary::<bool>()?.then(|| u.int_in_range(0..=2550)).transpose())]
    pub millis_since_quorum_ack: Option<u64>,
    /// Raft stopped on a fatal error.
    pub failed: bool,
    /// A repair made the node forget acknowledged entries: it must not campaign.
    pub abstaining: bool,
}

/// One step of the election target.
#[derive(Arbitrary, Clone, Copy, Debug)]
pub enum ElectionStep {
    /// Time passes and the elector looks at Raft.
    Tick {
        #[arbitrary(with = |u: &mut Unstructured| u.int_in_range(0..=765))]
        advance_ms: u64,
        view: View,
    },
    /// A pre-vote answer for the latest round asked, or the one before it.
    PreVoteAnswer {
        #[arbitrary(with = of_four)]
        from: usize,
        stale: bool,
        granted: bool,
        view: View,
    },
    /// A peer appended entries to this node (it leads).
    AppendedBy {
        #[arbitrary(with = of_four)]
        from: usize,
    },
    /// A peer was heard from.
    Heard {
        #[arbitrary(with = of_four)]
        from: usize,
    },
}

/// [`election_schedule`] on `data` read as steps.
pub fn election(data: &[u8]) -> usize {
    election_schedule(&schedule::<ElectionStep>(data))
}

/// Drives the election policy (`policy::election`) with `steps` for a node among three
/// voters, and holds it to its rule: it campaigns only with a quorum of pre-votes granted
/// for that round (itself included), never twice for one round, and never while it
/// abstains. A violation panics. Returns how many times it campaigned.
pub fn election_schedule(steps: &[ElectionStep]) -> usize {
    use canon_engine::policy::election::{
        ElectionAction, ElectionConfig, Elector, LogPos, RaftView, Role,
    };
    use std::collections::{BTreeMap, BTreeSet};

    // Derived once: four key derivations per input were most of the fuzzer's time (850
    // inputs a second).
    static IDS: std::sync::OnceLock<Vec<canon_engine::NodeId>> = std::sync::OnceLock::new();
    let ids = IDS.get_or_init(|| {
        (0..4)
            .map(|i| canon_engine::keys::derived_key("canon-fuzz/election", i).node_id())
            .collect()
    });
    let me = ids[0];
    let voters = ids[..3].to_vec();
    let cfg = ElectionConfig {
        id: me,
        voters: voters.clone(),
        election_timeout_ms_min: 150,
        election_timeout_ms_max: 300,
        heartbeat_interval_ms: 50,
    };
    let quorum = cfg.quorum();
    let mut elector = Elector::new(cfg, 7);
    let mut now = 0u64;
    let mut granted: BTreeMap<u64, BTreeSet<canon_engine::NodeId>> = BTreeMap::new();
    let mut campaigned: BTreeSet<u64> = BTreeSet::new();
    let mut last_round = 0u64;
    let raft_view = |v: &View| RaftView {
        role: match v.role {
            ViewRole::Leader => Role::Leader,
            ViewRole::Candidate => Role::Candidate,
            ViewRole::Follower => Role::Follower,
            ViewRole::Other => Role::Other,
        },
        term: v.term,
        voted_for: v.voted_for.map(|i| ids[i]),
        leader: v.leader.map(|i| ids[i]),
        millis_since_quorum_ack: v.millis_since_quorum_ack,
        failed: v.failed.then(|| "disk".to_string()),
        voters: Vec::new(),
        abstain_until: v.abstaining.then_some(LogPos { term: 1, index: 9 }),
    };
    let mut check = |action: &ElectionAction,
                     view: &RaftView,
                     granted: &BTreeMap<u64, BTreeSet<canon_engine::NodeId>>,
                     last_round: &mut u64| match action {
        ElectionAction::RequestPreVotes { round } => {
            *last_round = (*last_round).max(*round);
        }
        ElectionAction::Campaign { round } => {
            assert!(view.abstain_until.is_none(), "campaigned while abstaining");
            let votes = granted.get(round).map_or(0, |g| g.len()) + 1;
            assert!(
                votes >= quorum,
                "campaigned in round {round} with {votes} pre-votes"
            );
            assert!(
                campaigned.insert(*round),
                "campaigned twice in round {round}"
            );
            *last_round = (*last_round).max(*round);
        }
        _ => {}
    };
    for step in steps {
        match *step {
            ElectionStep::Tick { advance_ms, view } => {
                now += advance_ms;
                let view = raft_view(&view);
                for action in elector.tick(now, &view) {
                    check(&action, &view, &granted, &mut last_round);
                }
            }
            ElectionStep::PreVoteAnswer {
                from,
                stale,
                granted: yes,
                view,
            } => {
                let from = ids[from];
                let round = last_round.saturating_sub(u64::from(stale));
                if yes && voters.contains(&from) && from != me {
                    granted.entry(round).or_default().insert(from);
                }
                let view = raft_view(&view);
                if let Some(action) = elector.on_pre_vote_answer(now, round, from, yes, &view) {
                    check(&action, &view, &granted, &mut last_round);
                }
            }
            ElectionStep::AppendedBy { from } => elector.appended_by(now, ids[from]),
            ElectionStep::Heard { from } => elector.heard(now, ids[from]),
        }
    }
    campaigned.len()
}

/// A starting input for a policy target: the first of a fixed sequence of pseudo-random byte
/// strings whose schedule reaches what `reached` asks (say, a value chosen), so the fuzzer
/// starts from a schedule that gets somewhere. Deterministic: the same bytes every time.
pub(crate) fn seed_reaching(len: usize, reached: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    for seed in 0..100_000u64 {
        let mut bytes = vec![0u8; len];
        rand_chacha::ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut bytes);
        if reached(&bytes) {
            return bytes;
        }
    }
    panic!("no seed in 100,000 reached the target's goal")
}

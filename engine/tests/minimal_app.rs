//! The smallest application a reader can copy to start their own (the README quotes the part
//! between the markers, and `the_readme_quotes_this_file` keeps the two the same), run through
//! the engine: blocks built by a sequencer, verified and stored by a replica, and the state
//! found again after a reopen.

use std::sync::Arc;

use canon_engine::app::App;
use canon_engine::chain::block::ChainSpec;
use canon_engine::chain::replica::Replica;
use canon_engine::chain::rules::{build_block, Proposal};
use canon_engine::chain::signatures::Sequential;
use canon_engine::keys::derived_key;
use canon_engine::storage::MemDisk;

// README: begin
use std::collections::BTreeMap;

use alloy_primitives::keccak256;
use canon_engine::app::{Application, Committed, Entry, Rejection, Tx, Write};

/// Counts votes: a transaction is a candidate's name; a query answers its count.
pub struct Tally;

#[derive(Clone, Default)]
pub struct Votes {
    counts: BTreeMap<Vec<u8>, u64>,
    /// Names voted for since the last commit: what storage must write.
    changed: Vec<Vec<u8>>,
}

impl Application for Tally {
    type State = Votes;

    fn kind(&self) -> &'static str {
        "tally"
    }

    fn genesis(&self) -> Votes {
        Votes::default()
    }

    /// Stateless, so the engine runs it in parallel at admission and on replay.
    fn verify(&self, tx: &Tx) -> Result<(), Rejection> {
        match std::str::from_utf8(tx.as_bytes()) {
            Ok(name) if (1..=64).contains(&name.len()) => Ok(()),
            _ => Err(Rejection::new("name", "a name is 1 to 64 bytes of UTF-8")),
        }
    }

    fn execute(&self, votes: &mut Votes, tx: &Tx) -> Result<Vec<u8>, Rejection> {
        self.verify(tx)?;
        let count = votes.counts.entry(tx.as_bytes().to_vec()).or_default();
        *count += 1;
        let answer = count.to_le_bytes().to_vec();
        votes.changed.push(tx.as_bytes().to_vec());
        Ok(answer)
    }

    /// The root hashes every count (fine for a small state; see the ledger for one that costs
    /// only what a block wrote).
    fn commit(&self, votes: &mut Votes) -> Committed {
        let mut all = Vec::new();
        for (name, count) in &votes.counts {
            all.extend_from_slice(&(name.len() as u64).to_le_bytes());
            all.extend_from_slice(name);
            all.extend_from_slice(&count.to_le_bytes());
        }
        let writes = std::mem::take(&mut votes.changed)
            .into_iter()
            .map(|name| Write {
                value: votes.counts.get(&name).map(|c| c.to_le_bytes().to_vec()),
                key: name,
            })
            .collect();
        Committed {
            state_root: keccak256(&all),
            writes,
        }
    }

    fn query(&self, votes: &Votes, name: &[u8]) -> Result<Vec<u8>, Rejection> {
        Ok(votes
            .counts
            .get(name)
            .copied()
            .unwrap_or(0)
            .to_le_bytes()
            .to_vec())
    }

    fn export(&self, votes: &Votes) -> Vec<Entry> {
        let counts = votes.counts.iter();
        counts
            .map(|(n, c)| (n.clone(), c.to_le_bytes().to_vec()))
            .collect()
    }

    fn import(&self, entries: Vec<Entry>) -> Result<Votes, Rejection> {
        let mut votes = Votes::default();
        for (name, count) in entries {
            let count: [u8; 8] = count
                .try_into()
                .map_err(|_| Rejection::new("count", "not 8 bytes"))?;
            votes.counts.insert(name, u64::from_le_bytes(count));
        }
        Ok(votes)
    }
}
// README: end

fn count(replica: &Replica, name: &str) -> u64 {
    let (answer, _) = replica.chain().query(name.as_bytes());
    u64::from_le_bytes(answer.expect("query").try_into().expect("8 bytes"))
}

#[test]
fn a_tally_runs_through_the_engine_and_survives_a_reopen() {
    let spec = ChainSpec {
        chain_id: 5,
        app: App::new(Tally),
        blocks_per_batch: canon_engine::chain::block::DEFAULT_BLOCKS_PER_BATCH,
    };
    let sequencer = derived_key("minimal-app", 0);
    let disk = MemDisk::new();
    let open = || {
        Replica::open(
            Arc::new(disk.clone()),
            &spec,
            vec![sequencer.node_id()],
            Arc::new(Sequential),
        )
        .expect("open")
    };
    let replica = open();
    let ballots: [&[&str]; 3] = [&["ada", "bob", "ada"], &["", "bob"], &["ada"]];
    for (round, names) in ballots.iter().enumerate() {
        let state = replica.chain().state().clone();
        let built = build_block(
            Proposal {
                head: &state.head,
                state: &state.state,
                key: &sequencer,
                term: 0,
                slot: None,
                seals_batch: false,
                members: None,
                timestamp_ms: round as u64,
                max_transactions: 10,
            },
            names.iter().map(|n| Tx::new(n.as_bytes().to_vec())),
        )
        .expect("build");
        // The empty name is refused and left out; the rest are counted.
        assert_eq!(built.excluded.len(), usize::from(names.contains(&"")));
        replica.apply(&built.block).expect("apply");
    }
    assert_eq!((count(&replica, "ada"), count(&replica, "bob")), (3, 2));
    let head = replica.head();
    drop(replica);
    let again = open();
    assert_eq!(again.head(), head);
    assert_eq!((count(&again, "ada"), count(&again, "bob")), (3, 2));
    assert_eq!(count(&again, "eve"), 0);
}

/// The README's minimal application is this file's, byte for byte.
#[test]
fn the_readme_quotes_this_file() {
    let here = include_str!("minimal_app.rs");
    let readme = include_str!("../../README.md");
    let start = here.find("// README: begin\n").expect("begin marker") + 17;
    let end = here.find("// README: end").expect("end marker");
    let quoted = &here[start..end];
    assert!(
        readme.contains(&format!("```rust\n{quoted}```")),
        "README.md's minimal application differs from engine/tests/minimal_app.rs"
    );
}

//! What a node does about the corrupt records its start-up scrub found
//! ([`crate::storage::scrub`]): a pure decision over what was damaged, carried out by the
//! node before it opens anything (`consensus::repair`).
//!
//! The rules, and why each is safe:
//! - **Attestations** are collected from peers again: they are dropped.
//! - **Blocks strictly below the applied head**, and nothing else, on a consensus node with no
//!   snapshot gap open: the node **refetches** them. A gap like a snapshot's is opened over
//!   them (widened to whole L1 batches, its blocks deleted), which the backfill fills
//!   from peers: each block checked top down against the hash chain that ends at the applied
//!   head and against its transactions root, then the batches cut again must be the ones the
//!   node sealed. Raft's log and vote are untouched, so it keeps voting: a block is derived
//!   from the committed log, never acknowledged by itself. At the head, or beside any other
//!   damage, the rule below applies (the head block is what the next one is built on).
//! - **Anything Raft replicated or the node derived from it** (a log entry, the committed or
//!   purged mark, the applied state, a block, a sealed batch, a certificate, a hole in the log
//!   or below the head): the node forgets every replicated record and catches up from its
//!   peers as a new member would, by Raft's snapshot and log and the block download, which
//!   checks every block against the hash chain down from the committed head. It keeps its
//!   vote. A node that forgot log entries it had acknowledged must not help elect a leader
//!   that lacks one of them, so it **abstains** until it has applied the highest log index it
//!   ever held (the bound, durable before anything is wiped): it never stands for election,
//!   and it grants a pre-vote or vote only to a candidate whose last log position is at least
//!   (the term of its vote, that index). Every entry it forgot had a term no higher than its
//!   vote's and an index no higher than that, so such a candidate is at least as up to date as
//!   the forgotten log was: Raft's own voting rule, applied to the log it lost. Once it has
//!   applied the bound, its log holds the committed log up to there, the acknowledged entries
//!   that mattered among it.
//! - **The vote**, or a record under a key nobody writes (a misdirected write may have been
//!   the vote's, leaving an older vote in place), or a log whose reach cannot be told: the
//!   node cannot know which terms it voted in, so it must never vote again under its
//!   identity. It **halts**, saying why; an operator replaces it.
//! - **The signing guard** of a redundancy member: never sign from a guard that cannot be
//!   read. It halts and says so.

use crate::policy::election::LogPos;
use crate::storage::Column;

/// A damaged record, by what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Damaged {
    /// Raft's vote.
    Vote,
    /// A Raft log entry.
    LogEntry {
        index: u64,
    },
    /// Raft's committed or purged mark.
    RaftMark,
    /// The applied state or the marks beside it (applied position, snapshot, backfill gap,
    /// certified height, the abstention bound).
    Applied,
    Block {
        height: u64,
    },
    /// A record of the application's state.
    State,
    Batch,
    Certificate,
    Attestation {
        key: Vec<u8>,
    },
    /// A redundancy member's signing guard.
    SigningGuard,
    /// A fenced takeover acceptor's promise.
    FenceAcceptor,
    /// The database's own identity (format version, node id).
    Identity,
    /// A record under a key no part of the node writes.
    Unknown {
        column: Column,
        key: Vec<u8>,
    },
}

/// A record whose value cannot be read, or a mark read from a sound one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    Absent,
    At(u64),
    Corrupt,
}

/// What the scrub found, as the policy sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Findings {
    pub damaged: Vec<Damaged>,
    /// The Raft log holds every index from the one after its purged mark (from 0 without
    /// one) to its highest.
    pub log_contiguous: bool,
    /// The blocks and batches columns hold every height and number between their lowest and
    /// highest, but for a snapshot's gap still being filled (a hole on purpose).
    pub blocks_contiguous: bool,
    /// The highest Raft log index stored, corrupt entries included (a key outlives its value).
    pub log_last_index: Option<u64>,
    /// Raft's purged mark: the log's last index once every entry is purged.
    pub purged_index: Mark,
    /// The term of the node's vote (0: it never voted).
    pub vote_term: u64,
    /// A bound a repair before this one left: `None` for none, `Some(None)` if unreadable.
    pub abstain_until: Option<Option<LogPos>>,
    /// The applied head's height, when the applied position was read.
    pub applied_height: Option<u64>,
    /// A snapshot's gap (or an earlier refetch's) is still being filled.
    pub gap_open: bool,
    /// The node is a consensus member, whose backfill can fetch blocks from its peers. A node
    /// outside Raft downloads what it forgets from its sources instead.
    pub consensus_member: bool,
}

/// Why a node must not start.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Halt {
    #[error(
        "its Raft vote cannot be read: it cannot know which terms it voted in, so it must never vote again as this node; replace it with a fresh node"
    )]
    VoteUnreadable,
    #[error(
        "a {} record under key 0x{} that nothing writes: a write meant for another key (maybe the vote) landed there, so the vote may be stale; replace it with a fresh node", .column.name(), hex::encode(.key)
    )]
    StrayRecord { column: Column, key: Vec<u8> },
    #[error(
        "its Raft log is damaged and how far it reached cannot be told, so it cannot know when it may vote again; replace it with a fresh node"
    )]
    LogReachUnknown,
    #[error(
        "its signing guard cannot be read: it will not sign from a guard it cannot read; restore the guard (export from a sound copy) or replace it"
    )]
    SigningGuard,
    #[error(
        "its fenced takeover promise cannot be read: it cannot know what it promised; replace it"
    )]
    FenceAcceptor,
    #[error(
        "the database's identity records (format, node id) are damaged: it is not safe to open"
    )]
    Identity,
}

/// What to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Repair {
    Nothing,
    /// Delete these attestations (their batch and signer keys); peers' copies are collected
    /// again.
    DropAttestations(Vec<Vec<u8>>),
    /// Fetch these blocks (heights, ascending) again from peers, through a gap opened over
    /// them and the rest of their batches; everything else stays.
    Refetch {
        heights: Vec<u64>,
    },
    /// Forget every replicated record, keep the vote, abstain from elections until the
    /// applied index reaches `abstain_until.index` (granting votes only to candidates whose
    /// log reaches `abstain_until`), and catch up from peers.
    Rejoin {
        abstain_until: LogPos,
    },
    Halt(Halt),
}

/// The decision. Pure: the same findings give the same repair.
pub fn decide(f: &Findings) -> Repair {
    let mut stray_or_halt: Option<Halt> = None;
    let mut rejoin = !f.log_contiguous || !f.blocks_contiguous;
    let mut attestations = Vec::new();
    for d in &f.damaged {
        let halt = match d {
            Damaged::Vote => Some(Halt::VoteUnreadable),
            Damaged::Unknown { column, key } => Some(Halt::StrayRecord {
                column: *column,
                key: key.clone(),
            }),
            Damaged::SigningGuard => Some(Halt::SigningGuard),
            Damaged::FenceAcceptor => Some(Halt::FenceAcceptor),
            Damaged::Identity => Some(Halt::Identity),
            Damaged::Attestation { key } => {
                attestations.push(key.clone());
                None
            }
            Damaged::LogEntry { .. }
            | Damaged::RaftMark
            | Damaged::Applied
            | Damaged::Block { .. }
            | Damaged::State
            | Damaged::Batch
            | Damaged::Certificate => {
                rejoin = true;
                None
            }
        };
        // The first reason to halt is the one reported (the vote's before a stray's).
        if stray_or_halt.is_none() {
            stray_or_halt = halt;
        }
    }
    if let Some(h) = stray_or_halt {
        return Repair::Halt(h);
    }
    if let Some(heights) = refetchable(f) {
        return Repair::Refetch { heights };
    }
    if !rejoin {
        return if attestations.is_empty() {
            Repair::Nothing
        } else {
            Repair::DropAttestations(attestations)
        };
    }
    // How far the log reached: its highest key, or, with every entry purged, the purged
    // mark; never below a bound an earlier repair left.
    let reach = match (f.log_last_index, f.purged_index) {
        (Some(last), _) => Some(last),
        (None, Mark::At(p)) => Some(p),
        (None, Mark::Absent) => Some(0),
        (None, Mark::Corrupt) => None,
    };
    let bound = |index| LogPos {
        term: f.vote_term,
        index,
    };
    let earlier = match f.abstain_until {
        Some(Some(b)) => Some(b),
        None => Some(bound(0)),
        Some(None) => None,
    };
    match (reach, earlier) {
        (Some(r), Some(e)) => Repair::Rejoin {
            abstain_until: bound(r).max(e),
        },
        // An earlier bound lost: the log refilled since may not reach it yet.
        _ => Repair::Halt(Halt::LogReachUnknown),
    }
}

/// The damaged heights, ascending, when every damaged record is a block strictly below the
/// applied head (height 1 up) and the rest of the store is whole with no gap open, on a
/// consensus member.
fn refetchable(f: &Findings) -> Option<Vec<u64>> {
    let head = f.applied_height?;
    if !(f.consensus_member && f.log_contiguous && f.blocks_contiguous && !f.gap_open) {
        return None;
    }
    let mut heights = Vec::with_capacity(f.damaged.len());
    for d in &f.damaged {
        match d {
            Damaged::Block { height } if (1..head).contains(height) => heights.push(*height),
            _ => return None,
        }
    }
    heights.sort_unstable();
    heights.dedup();
    (!heights.is_empty()).then_some(heights)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sound() -> Findings {
        Findings {
            damaged: vec![],
            log_contiguous: true,
            blocks_contiguous: true,
            log_last_index: Some(120),
            purged_index: Mark::At(100),
            vote_term: 7,
            abstain_until: None,
            applied_height: Some(50),
            gap_open: false,
            consensus_member: true,
        }
    }

    fn with(damaged: Vec<Damaged>) -> Findings {
        Findings { damaged, ..sound() }
    }

    #[test]
    fn each_kind_of_damage_gets_its_repair() {
        let rejoin_120 = Repair::Rejoin {
            abstain_until: LogPos {
                term: 7,
                index: 120,
            },
        };
        let table: Vec<(&str, Findings, Repair)> = vec![
            ("nothing damaged", sound(), Repair::Nothing),
            (
                "an attestation is gathered again",
                with(vec![Damaged::Attestation { key: vec![1, 2] }]),
                Repair::DropAttestations(vec![vec![1, 2]]),
            ),
            (
                "a log entry: rejoin, abstaining up to the log's highest index",
                with(vec![Damaged::LogEntry { index: 110 }]),
                rejoin_120.clone(),
            ),
            (
                "a block below the head is fetched again",
                with(vec![Damaged::Block { height: 7 }]),
                Repair::Refetch { heights: vec![7] },
            ),
            (
                "blocks below the head, ascending, each once",
                with(vec![
                    Damaged::Block { height: 49 },
                    Damaged::Block { height: 1 },
                    Damaged::Block { height: 49 },
                ]),
                Repair::Refetch {
                    heights: vec![1, 49],
                },
            ),
            (
                "the head block: rejoin",
                with(vec![Damaged::Block { height: 50 }]),
                rejoin_120.clone(),
            ),
            (
                "a block above the head: rejoin",
                with(vec![Damaged::Block { height: 51 }]),
                rejoin_120.clone(),
            ),
            (
                "a block at height 0 is nothing the chain stores: rejoin",
                with(vec![Damaged::Block { height: 0 }]),
                rejoin_120.clone(),
            ),
            (
                "a block beside other damage: rejoin",
                with(vec![Damaged::Block { height: 7 }, Damaged::Certificate]),
                rejoin_120.clone(),
            ),
            (
                "a block beside a rotten attestation: rejoin",
                with(vec![
                    Damaged::Block { height: 7 },
                    Damaged::Attestation { key: vec![1] },
                ]),
                rejoin_120.clone(),
            ),
            (
                "a block while a gap is open: rejoin",
                Findings {
                    gap_open: true,
                    ..with(vec![Damaged::Block { height: 7 }])
                },
                rejoin_120.clone(),
            ),
            (
                "a block with a hole elsewhere: rejoin",
                Findings {
                    blocks_contiguous: false,
                    ..with(vec![Damaged::Block { height: 7 }])
                },
                rejoin_120.clone(),
            ),
            (
                "a block with a hole in the log: rejoin",
                Findings {
                    log_contiguous: false,
                    ..with(vec![Damaged::Block { height: 7 }])
                },
                rejoin_120.clone(),
            ),
            (
                "a block on a node outside Raft: it downloads everything again",
                Findings {
                    consensus_member: false,
                    ..with(vec![Damaged::Block { height: 7 }])
                },
                rejoin_120.clone(),
            ),
            (
                "a block with the applied position unread: rejoin",
                Findings {
                    applied_height: None,
                    ..with(vec![Damaged::Block { height: 7 }])
                },
                rejoin_120.clone(),
            ),
            ("the state", with(vec![Damaged::State]), rejoin_120.clone()),
            ("a batch", with(vec![Damaged::Batch]), rejoin_120.clone()),
            (
                "a certificate",
                with(vec![Damaged::Certificate]),
                rejoin_120.clone(),
            ),
            (
                "the applied marks",
                with(vec![Damaged::Applied]),
                rejoin_120.clone(),
            ),
            (
                "Raft's marks",
                with(vec![Damaged::RaftMark]),
                rejoin_120.clone(),
            ),
            (
                "a hole in the log",
                Findings {
                    log_contiguous: false,
                    ..sound()
                },
                rejoin_120.clone(),
            ),
            (
                "a hole below the head",
                Findings {
                    blocks_contiguous: false,
                    ..sound()
                },
                rejoin_120.clone(),
            ),
            (
                "the vote",
                with(vec![Damaged::Vote]),
                Repair::Halt(Halt::VoteUnreadable),
            ),
            (
                "the vote outranks a block",
                with(vec![Damaged::Block { height: 3 }, Damaged::Vote]),
                Repair::Halt(Halt::VoteUnreadable),
            ),
            (
                "a stray record may have been the vote's",
                with(vec![Damaged::Unknown {
                    column: Column::Meta,
                    key: b"raft/votf".to_vec(),
                }]),
                Repair::Halt(Halt::StrayRecord {
                    column: Column::Meta,
                    key: b"raft/votf".to_vec(),
                }),
            ),
            (
                "the signing guard",
                with(vec![Damaged::SigningGuard]),
                Repair::Halt(Halt::SigningGuard),
            ),
            (
                "the fence promise",
                with(vec![Damaged::FenceAcceptor]),
                Repair::Halt(Halt::FenceAcceptor),
            ),
            (
                "identity",
                with(vec![Damaged::Identity]),
                Repair::Halt(Halt::Identity),
            ),
            (
                "an earlier bound above the log's reach stays",
                Findings {
                    abstain_until: Some(Some(LogPos {
                        term: 6,
                        index: 500,
                    })),
                    ..with(vec![Damaged::State])
                },
                rejoin_120.clone(),
            ),
            (
                "an earlier bound above in its term too stays",
                Findings {
                    abstain_until: Some(Some(LogPos {
                        term: 7,
                        index: 500,
                    })),
                    ..with(vec![Damaged::State])
                },
                Repair::Rejoin {
                    abstain_until: LogPos {
                        term: 7,
                        index: 500,
                    },
                },
            ),
            (
                "an empty log reached its purged mark",
                Findings {
                    log_last_index: None,
                    purged_index: Mark::At(90),
                    ..with(vec![Damaged::Batch])
                },
                Repair::Rejoin {
                    abstain_until: LogPos { term: 7, index: 90 },
                },
            ),
            (
                "an empty log with its purged mark damaged: reach unknown",
                Findings {
                    log_last_index: None,
                    purged_index: Mark::Corrupt,
                    ..with(vec![Damaged::RaftMark])
                },
                Repair::Halt(Halt::LogReachUnknown),
            ),
            (
                "an empty log and an earlier bound lost: reach unknown",
                Findings {
                    log_last_index: None,
                    purged_index: Mark::Absent,
                    abstain_until: Some(None),
                    ..with(vec![Damaged::Applied])
                },
                Repair::Halt(Halt::LogReachUnknown),
            ),
            (
                "an earlier bound lost, the log held: it may not reach the bound yet",
                Findings {
                    abstain_until: Some(None),
                    ..with(vec![Damaged::Applied])
                },
                Repair::Halt(Halt::LogReachUnknown),
            ),
        ];
        for (what, findings, expected) in table {
            assert_eq!(decide(&findings), expected, "{what}");
        }
    }

    /// Restated: whenever the policy lets a node rejoin, its bound is at least every index
    /// the node could have acknowledged (the log's highest key, else its purged mark) and
    /// every earlier bound.
    #[test]
    fn a_rejoin_never_abstains_short_of_what_was_held() {
        let marks = [
            Mark::Absent,
            Mark::At(0),
            Mark::At(50),
            Mark::At(300),
            Mark::Corrupt,
        ];
        let pos = |term, index| Some(Some(LogPos { term, index }));
        let earliers = [None, Some(None), pos(3, 900), pos(7, 10), pos(9, 0)];
        for last in [None, Some(0), Some(40), Some(200)] {
            for purged in marks {
                for earlier in earliers {
                    let f = Findings {
                        log_last_index: last,
                        purged_index: purged,
                        abstain_until: earlier,
                        ..with(vec![Damaged::State])
                    };
                    if let Repair::Rejoin { abstain_until: b } = decide(&f) {
                        let held = last.or(match purged {
                            Mark::At(p) => Some(p),
                            _ => None,
                        });
                        // At least as far as the log it forgets, in the vote's term...
                        let forgotten = LogPos {
                            term: f.vote_term,
                            index: held.unwrap_or(0),
                        };
                        assert!(b >= forgotten, "{f:?} -> {b:?}");
                        // ...and as an earlier bound not yet reached.
                        if let Some(Some(e)) = earlier {
                            assert!(b >= e, "{f:?} -> {b:?}");
                        }
                        assert!(
                            (last.is_some() || purged != Mark::Corrupt) && earlier != Some(None),
                            "a rejoin with its reach unknown: {f:?}"
                        );
                    }
                }
            }
        }
    }
}

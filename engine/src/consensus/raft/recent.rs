//! The newest Raft entries, kept decoded in memory beside the stored log. openraft reads every
//! entry back soon after appending it: each replication stream to send it, the state machine to
//! apply it. From storage that was a scan, a copy and a decode of the whole block each time
//! (4-5% of all CPU at the key-value peak, three nodes on two cores); from here it is a clone of
//! the entry (a block's transactions share their bytes), which also keeps the transaction ids a
//! copy has already hashed.
//!
//! The cache mirrors the tail of the stored log exactly: it holds a contiguous run of indexes
//! ending at the log's last entry, or nothing. An append adds at the end once it is stored; a
//! truncation or purge drops entries before it is written, so no reader can be handed an entry
//! the log no longer has; the oldest go when a bound is passed. A restarted node starts empty and
//! reads from storage until its first append.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use openraft::{AsyncRuntime, EntryPayload};

use super::types::{Canon, Command};
use crate::sync::lock;

type Entry<RT> = openraft::Entry<Canon<RT>>;

/// At most this many entries: a few seconds of blocks, more than the pipeline keeps in flight.
pub(crate) const MAX_ENTRIES: usize = 64;
/// At most about this many bytes of transactions (the newest entry is kept whatever its size).
pub(crate) const MAX_BYTES: usize = 64 << 20;

pub(crate) struct RecentEntries<RT: AsyncRuntime> {
    inner: Arc<Mutex<Tail<RT>>>,
}

impl<RT: AsyncRuntime> Clone for RecentEntries<RT> {
    fn clone(&self) -> Self {
        RecentEntries {
            inner: self.inner.clone(),
        }
    }
}

struct Tail<RT: AsyncRuntime> {
    entries: BTreeMap<u64, (Entry<RT>, usize)>,
    bytes: usize,
}

/// What an entry's transactions weigh (the rest of an entry is small).
fn weight<RT: AsyncRuntime>(entry: &Entry<RT>) -> usize {
    match &entry.payload {
        EntryPayload::Normal(Command::Block(b)) => b
            .transactions
            .iter()
            .map(|t| t.as_bytes().len())
            .sum::<usize>()
            .max(1),
        _ => 1,
    }
}

impl<RT: AsyncRuntime> RecentEntries<RT> {
    pub(crate) fn new() -> Self {
        RecentEntries {
            inner: Arc::new(Mutex::new(Tail {
                entries: BTreeMap::new(),
                bytes: 0,
            })),
        }
    }

    /// Entries `from..end` (`end` exclusive; `None`: to the last), if the cache holds `from`:
    /// then it holds every stored entry after it too.
    pub(crate) fn get(&self, from: u64, end: Option<u64>) -> Option<Vec<Entry<RT>>> {
        let tail = lock(&self.inner);
        let first = *tail.entries.keys().next()?;
        if from < first {
            return None;
        }
        let picked = match end {
            Some(end) if end <= from => return Some(Vec::new()),
            Some(end) => tail.entries.range(from..end),
            None => tail.entries.range(from..),
        };
        Some(picked.map(|(_, (e, _))| e.clone()).collect())
    }

    /// Adds entries just stored; any that does not follow the cached run starts a new one.
    pub(crate) fn appended(&self, entries: Vec<Entry<RT>>) {
        let mut tail = lock(&self.inner);
        for entry in entries {
            let index = entry.log_id.index;
            let follows = match tail.entries.keys().next_back() {
                Some(last) => last.checked_add(1) == Some(index),
                None => true,
            };
            if !follows {
                tail.entries.clear();
                tail.bytes = 0;
            }
            let w = weight(&entry);
            tail.bytes += w;
            tail.entries.insert(index, (entry, w));
        }
        while tail.entries.len() > MAX_ENTRIES || (tail.bytes > MAX_BYTES && tail.entries.len() > 1)
        {
            if let Some((_, (_, w))) = tail.entries.pop_first() {
                tail.bytes -= w;
            }
        }
    }

    /// Forgets every entry: after a write that failed, the stored log is not known to match
    /// what was dropped or added, so readers go to storage until the next append starts a run
    /// (a truncation whose write failed left entries stored that the run no longer held, and
    /// the run answered "none" for them: chaos seed 3714334).
    pub(crate) fn clear(&self) {
        let mut tail = lock(&self.inner);
        tail.entries.clear();
        tail.bytes = 0;
    }

    /// Drops entries from `index` on (a truncation about to be written).
    pub(crate) fn truncate(&self, index: u64) {
        let mut tail = lock(&self.inner);
        let dropped = tail.entries.split_off(&index);
        tail.bytes -= dropped.values().map(|(_, w)| w).sum::<usize>();
    }

    /// Drops entries up to and including `index` (a purge about to be written).
    pub(crate) fn purge(&self, index: u64) {
        let mut tail = lock(&self.inner);
        let kept = match index.checked_add(1) {
            Some(next) => tail.entries.split_off(&next),
            None => BTreeMap::new(),
        };
        tail.entries = kept;
        tail.bytes = tail.entries.values().map(|(_, w)| w).sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::Tx;
    use crate::chain::block::{Block, BlockHeader};

    type RT = openraft::TokioRuntime;

    fn node() -> crate::ids::NodeId {
        crate::keys::derived_key("recent-entries-test", 0).node_id()
    }

    fn blank(index: u64) -> Entry<RT> {
        Entry::<RT> {
            log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, node()), index),
            payload: EntryPayload::Blank,
        }
    }

    fn block(index: u64, tx_bytes: usize) -> Entry<RT> {
        let b = Block {
            header: BlockHeader {
                height: index,
                parent_hash: Default::default(),
                timestamp_ms: 0,
                transactions_root: Default::default(),
                state_root: Default::default(),
                proposer: node(),
                term: 1,
                slot: None,
                seals_batch: false,
                members: None,
            },
            signature: crate::ids::Sig65([0; 65]),
            transactions: vec![Tx::new(vec![7u8; tx_bytes])],
        };
        Entry::<RT> {
            log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, node()), index),
            payload: EntryPayload::Normal(Command::Block(b)),
        }
    }

    fn indexes(v: Option<Vec<Entry<RT>>>) -> Option<Vec<u64>> {
        v.map(|v| v.iter().map(|e| e.log_id.index).collect())
    }

    #[test]
    fn serves_only_ranges_that_start_inside_the_run() {
        let c = RecentEntries::<RT>::new();
        assert_eq!(indexes(c.get(1, None)), None, "empty: read storage");
        c.appended((5..=8).map(blank).collect());
        assert_eq!(indexes(c.get(4, None)), None, "4 is older than the run");
        assert_eq!(indexes(c.get(5, None)), Some(vec![5, 6, 7, 8]));
        assert_eq!(indexes(c.get(6, Some(8))), Some(vec![6, 7]));
        assert_eq!(
            indexes(c.get(9, None)),
            Some(vec![]),
            "past the last: none stored"
        );
        assert_eq!(indexes(c.get(7, Some(7))), Some(vec![]));
    }

    #[test]
    fn truncation_and_purge_drop_before_the_write() {
        let c = RecentEntries::<RT>::new();
        c.appended((1..=6).map(blank).collect());
        c.truncate(5);
        assert_eq!(indexes(c.get(1, None)), Some(vec![1, 2, 3, 4]));
        c.appended(vec![blank(5)]);
        assert_eq!(indexes(c.get(4, None)), Some(vec![4, 5]));
        c.purge(2);
        assert_eq!(
            indexes(c.get(2, None)),
            None,
            "purged entries are not served"
        );
        assert_eq!(indexes(c.get(3, None)), Some(vec![3, 4, 5]));
        c.purge(u64::MAX);
        assert_eq!(indexes(c.get(3, None)), None);
    }

    #[test]
    fn a_gap_restarts_the_run() {
        let c = RecentEntries::<RT>::new();
        c.appended((1..=3).map(blank).collect());
        c.appended(vec![blank(10)]);
        assert_eq!(
            indexes(c.get(1, None)),
            None,
            "1..3 are no longer known contiguous"
        );
        assert_eq!(indexes(c.get(10, None)), Some(vec![10]));
    }

    #[test]
    fn bounds_drop_the_oldest_but_keep_the_newest() {
        let c = RecentEntries::<RT>::new();
        c.appended((1..=(MAX_ENTRIES as u64 + 3)).map(blank).collect());
        assert_eq!(indexes(c.get(3, None)), None);
        assert_eq!(c.get(4, None).map(|v| v.len()), Some(MAX_ENTRIES));
        let big = MAX_BYTES / 2 + 1;
        c.appended(vec![block(MAX_ENTRIES as u64 + 4, big)]);
        c.appended(vec![block(MAX_ENTRIES as u64 + 5, big)]);
        assert_eq!(
            indexes(c.get(MAX_ENTRIES as u64 + 4, None)),
            None,
            "two halves and more: only the newest stays"
        );
        assert_eq!(
            indexes(c.get(MAX_ENTRIES as u64 + 5, None)),
            Some(vec![MAX_ENTRIES as u64 + 5])
        );
        c.appended(vec![block(MAX_ENTRIES as u64 + 6, 2 * MAX_BYTES)]);
        assert_eq!(
            indexes(c.get(MAX_ENTRIES as u64 + 6, None)),
            Some(vec![MAX_ENTRIES as u64 + 6]),
            "an entry over the bound on its own is still kept"
        );
    }
}

//! The Raft log and vote over the storage seam. Votes, appends, truncations and the commit index
//! are synced before openraft is told they are done: an acknowledged entry survives a crash.

use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{AsyncRuntime, ErrorSubject, ErrorVerb, LogState, RaftLogReader, StorageError};

use super::recent::RecentEntries;
use super::types::{io_err, Canon, LogId, Vote};
use crate::codec;
use crate::events::{Event, EventSink};
use crate::ids::NodeId;
use crate::storage::{Column, Durability, Storage, WriteBatch, PAST_EVERY_KEY};

pub(crate) const KEY_VOTE: &[u8] = b"raft/vote";
pub(crate) const KEY_COMMITTED: &[u8] = b"raft/committed";
pub(crate) const KEY_PURGED: &[u8] = b"raft/purged";

fn index_key(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

pub struct LogStore<RT: AsyncRuntime> {
    storage: Arc<dyn Storage>,
    node: NodeId,
    events: Arc<dyn EventSink>,
    /// The log's newest entries, shared with every reader cloned from this store.
    recent: RecentEntries<RT>,
    _rt: PhantomData<fn() -> RT>,
}

impl<RT: AsyncRuntime> Clone for LogStore<RT> {
    fn clone(&self) -> Self {
        LogStore {
            storage: self.storage.clone(),
            node: self.node,
            events: self.events.clone(),
            recent: self.recent.clone(),
            _rt: PhantomData,
        }
    }
}

type C<RT> = Canon<RT>;
type Entry<RT> = openraft::Entry<Canon<RT>>;

impl<RT: AsyncRuntime> LogStore<RT> {
    pub fn new(storage: Arc<dyn Storage>, node: NodeId, events: Arc<dyn EventSink>) -> Self {
        LogStore {
            storage,
            node,
            events,
            recent: RecentEntries::new(),
            _rt: PhantomData,
        }
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
        subject: ErrorSubject<NodeId>,
    ) -> Result<Option<T>, StorageError<NodeId>> {
        match self.storage.get(Column::Meta, key) {
            Ok(None) => Ok(None),
            Ok(Some(bytes)) => codec::decode(&bytes)
                .map(Some)
                .map_err(|e| io_err(subject, ErrorVerb::Read, e)),
            Err(e) => Err(io_err(subject, ErrorVerb::Read, e)),
        }
    }

    /// Writes `batch` durably. A stalled device (simulated) is waited out first on the
    /// runtime's clock, inside Raft's storage call, so it blocks what a slow fsync blocks.
    async fn write_synced(
        &self,
        batch: WriteBatch,
        subject: ErrorSubject<NodeId>,
    ) -> Result<(), StorageError<NodeId>> {
        let stall = self.storage.synced_write_stall();
        if !stall.is_zero() {
            RT::sleep(stall).await;
        }
        self.storage.write(batch, Durability::Synced).map_err(|e| {
            self.recent.clear();
            self.events.emit(
                &self.node,
                Event::StorageFailed {
                    reason: e.to_string(),
                },
            );
            io_err(subject, ErrorVerb::Write, e)
        })
    }

    /// The durable vote, for the startup report.
    pub fn stored_vote(&self) -> Result<Option<Vote>, StorageError<NodeId>> {
        self.read_meta(KEY_VOTE, ErrorSubject::Vote)
    }

    /// Entries `from..=to` as stored, for readers outside Raft (status).
    pub fn read_range(&self, from: u64, to: u64) -> Result<Vec<Entry<RT>>, StorageError<NodeId>> {
        if from > to {
            return Ok(Vec::new());
        }
        let rows = self
            .storage
            .scan(
                Column::Log,
                &index_key(from),
                &index_key(to.saturating_add(1)),
                usize::MAX,
            )
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        rows.iter()
            .map(|(_, v)| {
                codec::decode(v).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))
            })
            .collect()
    }

    /// The id of the last entry in the log (or the last purged one when the log is empty).
    pub fn last_log_id(&self) -> Result<Option<LogId>, StorageError<NodeId>> {
        let last = self
            .storage
            .last_before(Column::Log, &PAST_EVERY_KEY)
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        match last {
            Some((_, v)) => Ok(Some(
                codec::decode::<Entry<RT>>(&v)
                    .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?
                    .log_id,
            )),
            None => self.read_meta(KEY_PURGED, ErrorSubject::Logs),
        }
    }

    pub fn stored_committed(&self) -> Result<Option<LogId>, StorageError<NodeId>> {
        Ok(self
            .read_meta::<Option<LogId>>(KEY_COMMITTED, ErrorSubject::Store)?
            .flatten())
    }
}

fn bound_start(b: Bound<&u64>) -> u64 {
    match b {
        Bound::Included(i) => *i,
        Bound::Excluded(i) => i.saturating_add(1),
        Bound::Unbounded => 0,
    }
}

/// Exclusive end key; `None` means unbounded (u64::MAX is included).
fn bound_end(b: Bound<&u64>) -> Option<u64> {
    match b {
        Bound::Included(i) => i.checked_add(1),
        Bound::Excluded(i) => Some(*i),
        Bound::Unbounded => None,
    }
}

impl<RT: AsyncRuntime> RaftLogReader<C<RT>> for LogStore<RT> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<RT>>, StorageError<NodeId>> {
        let start = bound_start(range.start_bound());
        if let Some(entries) = self.recent.get(start, bound_end(range.end_bound())) {
            return Ok(entries);
        }
        // Past the cache the read goes to the device, and a slow one holds replication up.
        let stall = self.storage.read_stall();
        if !stall.is_zero() {
            RT::sleep(stall).await;
        }
        let from = index_key(start);
        let to: Vec<u8> = match bound_end(range.end_bound()) {
            Some(end) => index_key(end).to_vec(),
            None => PAST_EVERY_KEY.to_vec(),
        };
        let rows = self
            .storage
            .scan(Column::Log, &from, &to, usize::MAX)
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))?;
        rows.into_iter()
            .map(|(_, v)| {
                codec::decode::<Entry<RT>>(&v)
                    .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Read, e))
            })
            .collect()
    }
}

impl<RT: AsyncRuntime> RaftLogStorage<C<RT>> for LogStore<RT> {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C<RT>>, StorageError<NodeId>> {
        let last_purged_log_id: Option<LogId> = self.read_meta(KEY_PURGED, ErrorSubject::Logs)?;
        let last_log_id = self.last_log_id()?;
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError<NodeId>> {
        let bytes =
            codec::encode(vote).map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        let mut b = WriteBatch::default();
        b.put(Column::Meta, KEY_VOTE, bytes);
        self.write_synced(b, ErrorSubject::Vote).await?;
        self.events.emit(
            &self.node,
            Event::VoteSaved {
                term: vote.leader_id().term,
                voted_for: vote.leader_id().voted_for(),
                committed: vote.is_committed(),
            },
        );
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError<NodeId>> {
        self.stored_vote()
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId>,
    ) -> Result<(), StorageError<NodeId>> {
        let bytes = codec::encode(&committed)
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))?;
        let mut b = WriteBatch::default();
        b.put(Column::Meta, KEY_COMMITTED, bytes);
        self.write_synced(b, ErrorSubject::Store).await?;
        if let Some(c) = committed {
            self.events
                .emit(&self.node, Event::Committed { index: c.index });
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError<NodeId>> {
        self.stored_committed()
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<C<RT>>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<RT>> + Send,
        I::IntoIter: Send,
    {
        let mut b = WriteBatch::default();
        let entries: Vec<Entry<RT>> = entries.into_iter().collect();
        for entry in &entries {
            let bytes = codec::encode(entry)
                .map_err(|e| io_err(ErrorSubject::Log(entry.log_id), ErrorVerb::Write, e))?;
            b.put(Column::Log, index_key(entry.log_id.index), bytes);
        }
        let res = self.write_synced(b, ErrorSubject::Logs).await;
        if res.is_ok() {
            self.recent.appended(entries);
        }
        callback.log_io_completed(
            res.as_ref()
                .map(|_| ())
                .map_err(|e| std::io::Error::other(e.to_string())),
        );
        res
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        self.recent.truncate(log_id.index);
        let mut b = WriteBatch::default();
        b.delete_range(Column::Log, index_key(log_id.index), PAST_EVERY_KEY);
        self.write_synced(b, ErrorSubject::Logs).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError<NodeId>> {
        // Read back as a bare `LogId` (`get_log_state`, `last_log_id`).
        let bytes =
            codec::encode(&log_id).map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        self.recent.purge(log_id.index);
        let mut b = WriteBatch::default();
        b.put(Column::Meta, KEY_PURGED, bytes);
        b.delete_range(
            Column::Log,
            index_key(0),
            index_key(log_id.index.saturating_add(1)),
        );
        self.write_synced(b, ErrorSubject::Logs).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::NoEvents;
    use crate::storage::MemDisk;

    /// A truncation or purge whose write fails leaves the log as it was, and every stored
    /// entry readable: the cache of recent entries must not answer for what it dropped.
    #[test]
    fn a_failed_truncation_or_purge_leaves_every_entry_readable() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let node = crate::keys::derived_key("log-store-test", 0).node_id();
            let id = |i: u64| openraft::LogId::new(openraft::CommittedLeaderId::new(1, node), i);
            for purge in [false, true] {
                let disk = MemDisk::new();
                let mut log: LogStore<openraft::TokioRuntime> =
                    LogStore::new(Arc::new(disk.clone()), node, Arc::new(NoEvents));
                let entries: Vec<Entry<openraft::TokioRuntime>> = (1..=6)
                    .map(|i| openraft::Entry {
                        log_id: id(i),
                        payload: openraft::EntryPayload::Blank,
                    })
                    .collect();
                let mut b = WriteBatch::default();
                for e in &entries {
                    b.put(
                        Column::Log,
                        index_key(e.log_id.index),
                        codec::encode(e).unwrap(),
                    );
                }
                disk.write(b, Durability::Synced).unwrap();
                log.recent.appended(entries);
                disk.set_write_fault(Some("disk on fire".into()));
                let failed = if purge {
                    log.purge(id(2)).await
                } else {
                    log.truncate(id(4)).await
                };
                assert!(failed.is_err());
                disk.set_write_fault(None);
                let read: Vec<u64> = log
                    .try_get_log_entries(1..=6)
                    .await
                    .unwrap()
                    .iter()
                    .map(|e| e.log_id.index)
                    .collect();
                assert_eq!(read, vec![1, 2, 3, 4, 5, 6], "purge: {purge}");
            }
        });
    }

    /// The purged id is read back by `get_log_state` and stands in for the last log id once
    /// every entry is purged, across a reopen (what openraft reads at startup).
    #[test]
    fn a_purged_log_reports_its_purge_point() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let disk = MemDisk::new();
            let node = crate::keys::derived_key("log-store-test", 0).node_id();
            let mut log: LogStore<openraft::TokioRuntime> =
                LogStore::new(Arc::new(disk.clone()), node, Arc::new(NoEvents));
            let id = openraft::LogId::new(openraft::CommittedLeaderId::new(3, node), 41);
            log.purge(id).await.expect("purge");
            let mut again: LogStore<openraft::TokioRuntime> =
                LogStore::new(Arc::new(disk), node, Arc::new(NoEvents));
            let state = again.get_log_state().await.expect("log state");
            assert_eq!(state.last_purged_log_id, Some(id));
            assert_eq!(state.last_log_id, Some(id));
        });
    }
}

//! A scrub: every record of every column read and checked, as a node does at every start
//! before it reads anything else. What it finds is the input of the repair policy
//! (`policy::repair`), which decides what the node does about each corrupt record.
//!
//! A record that fails its check is read a second time: a bit that flipped on the way back
//! (a bad cable, a controller's glitch) reads right the second time and is not corruption at
//! rest. One that fails twice is reported.

use std::collections::BTreeMap;

use super::checksum::unseal;
use super::{Column, Corruption, Storage, StorageError, PAST_EVERY_KEY};

/// Records read per scan while walking a column.
const PAGE_RECORDS: usize = 1_024;

/// One record that failed its check twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorruptRecord {
    pub column: Column,
    pub key: Vec<u8>,
    pub why: Corruption,
}

/// What a scrub found, column by column.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scrub {
    pub corrupt: Vec<CorruptRecord>,
    /// Records read in each column, corrupt ones included.
    pub records: BTreeMap<Column, u64>,
    /// Each column's lowest and highest key, corrupt records included (a key is not in the
    /// checksum's reach: what it names is known even when its value is not).
    pub key_range: BTreeMap<Column, (Vec<u8>, Vec<u8>)>,
}

impl Scrub {
    pub fn clean(&self) -> bool {
        self.corrupt.is_empty()
    }

    /// Whether column `column` holds every key between its lowest and highest, for a column
    /// keyed by big-endian `u64` (blocks, Raft log entries): a record missing from the middle
    /// is a write that went elsewhere (misdirected) or was lost.
    pub fn contiguous_u64(&self, column: Column) -> bool {
        self.contiguous_u64_except(column, 0..0)
    }

    /// [`Scrub::contiguous_u64`] for a column that holds nothing in `absent` on purpose (a
    /// snapshot's gap not yet filled) and every other key between its lowest and highest.
    pub fn contiguous_u64_except(&self, column: Column, absent: std::ops::Range<u64>) -> bool {
        self.complete_u64_except(column, u64::MAX, absent)
    }

    /// [`Scrub::contiguous_u64_except`] for a column that must also hold every key from
    /// `first` up (blocks and batches are numbered from 1): a record missing at the bottom is
    /// a hole too.
    pub fn complete_u64_except(
        &self,
        column: Column,
        first: u64,
        absent: std::ops::Range<u64>,
    ) -> bool {
        let Some((low, high)) = self.key_range.get(&column) else {
            return true;
        };
        let (Some(low), Some(high)) = (u64_key(low), u64_key(high)) else {
            return false;
        };
        let low = low.min(first);
        let span = u128::from(high) - u128::from(low) + 1;
        let skipped = u128::from(absent.end.min(high.saturating_add(1)))
            .saturating_sub(u128::from(absent.start.max(low)));
        let held = u128::from(self.records.get(&column).copied().unwrap_or(0));
        span.saturating_sub(skipped) == held
    }

    /// The highest key of `column` as a big-endian `u64`, if it is one.
    pub fn last_u64(&self, column: Column) -> Option<u64> {
        self.key_range
            .get(&column)
            .and_then(|(_, high)| u64_key(high))
    }
}

fn u64_key(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

/// Walks every column of `raw`, a store whose values carry their checksums (what
/// [`super::Checksummed`] writes into).
pub fn scrub(raw: &dyn Storage) -> Result<Scrub, StorageError> {
    let mut found = Scrub::default();
    for column in Column::ALL {
        let mut from: Vec<u8> = Vec::new();
        loop {
            let page = raw.scan(column, &from, &PAST_EVERY_KEY, PAGE_RECORDS)?;
            let Some((last, _)) = page.last() else {
                break;
            };
            from = last.clone();
            from.push(0);
            let full = page.len() == PAGE_RECORDS;
            for (key, stored) in page {
                *found.records.entry(column).or_insert(0) += 1;
                found
                    .key_range
                    .entry(column)
                    .and_modify(|(_, high)| high.clone_from(&key))
                    .or_insert_with(|| (key.clone(), key.clone()));
                if unseal(column, &key, stored).is_ok() {
                    continue;
                }
                // Once more: a bit flipped on the way back reads right the second time.
                if let Some(Err(StorageError::Corrupt { why, .. })) = raw
                    .get(column, &key)?
                    .map(|stored| unseal(column, &key, stored))
                {
                    found.corrupt.push(CorruptRecord { column, key, why });
                }
            }
            if !full {
                break;
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::super::{Checksummed, Durability, MemDisk, WriteBatch};
    use super::*;

    fn store() -> (MemDisk, Checksummed<MemDisk>) {
        let disk = MemDisk::new();
        let store = Checksummed::new(disk.clone());
        let mut b = WriteBatch::default();
        for h in 1u64..=2_500 {
            b.put(Column::Block, h.to_be_bytes().to_vec(), vec![7; 20]);
        }
        for i in 5u64..=9 {
            b.put(Column::Log, i.to_be_bytes().to_vec(), vec![1; 30]);
        }
        b.put(Column::Meta, b"raft/vote".to_vec(), vec![2; 12]);
        store.write(b, Durability::Synced).unwrap();
        (disk, store)
    }

    #[test]
    fn a_sound_store_scrubs_clean_over_several_pages() {
        let (disk, _) = store();
        let s = scrub(&disk).unwrap();
        assert!(s.clean(), "{s:?}");
        assert_eq!(s.records[&Column::Block], 2_500);
        assert_eq!(s.records[&Column::Log], 5);
        assert_eq!(s.last_u64(Column::Block), Some(2_500));
        assert!(s.contiguous_u64(Column::Block));
        assert!(s.contiguous_u64(Column::Log));
        assert!(
            s.contiguous_u64(Column::State),
            "an empty column has no holes"
        );
    }

    #[test]
    fn rot_at_rest_is_found_by_column_and_key() {
        let (disk, _) = store();
        let block = disk.flip_at_rest(Column::Block, 1_700, 9).unwrap();
        let vote = disk.flip_at_rest(Column::Meta, 0, 3).unwrap();
        let s = scrub(&disk).unwrap();
        let named: Vec<(Column, Vec<u8>)> = s
            .corrupt
            .iter()
            .map(|c| (c.column, c.key.clone()))
            .collect();
        assert_eq!(named, vec![(Column::Meta, vote), (Column::Block, block)]);
    }

    #[test]
    fn a_flip_on_the_way_back_is_read_again_and_forgiven() {
        let (disk, _) = store();
        disk.flip_next_read(Column::Log, 40);
        let s = scrub(&disk).unwrap();
        assert!(s.clean(), "{s:?}");
    }

    #[test]
    fn a_hole_in_a_height_keyed_column_shows() {
        let (disk, store) = store();
        // The write of entry 10 lands under 11's key... then 11 is written there soundly:
        // entry 10 is missing and only the hole tells.
        disk.misdirect_next_put(Column::Log, 1);
        let mut b = WriteBatch::default();
        b.put(Column::Log, 10u64.to_be_bytes().to_vec(), vec![3; 30]);
        store.write(b, Durability::Synced).unwrap();
        let s = scrub(&disk).unwrap();
        assert_eq!(
            s.corrupt.len(),
            1,
            "the record under 11 names 10 in its checksum"
        );
        let mut b = WriteBatch::default();
        b.put(Column::Log, 11u64.to_be_bytes().to_vec(), vec![4; 30]);
        store.write(b, Durability::Synced).unwrap();
        let s = scrub(&disk).unwrap();
        assert!(s.clean());
        assert!(!s.contiguous_u64(Column::Log));
        assert_eq!(s.last_u64(Column::Log), Some(11));
        // 5..=9 and 11 held: with 10 absent on purpose, nothing else is missing.
        assert!(s.contiguous_u64_except(Column::Log, 10..11));
        assert!(!s.contiguous_u64_except(Column::Log, 12..20));
        // Numbered from 1: 1..=4 missing is a hole, and 10 still is with those absent.
        assert!(!s.complete_u64_except(Column::Log, 1, 10..11));
        assert!(!s.complete_u64_except(Column::Log, 1, 1..5));
        assert!(s.complete_u64_except(Column::Block, 1, 0..0));
    }
}

//! `canon-node check-db <dir>`: walks a node's database, read-only, and reports every record
//! whose checksum fails (`canon_engine::storage::checksum`) and anything RocksDB itself finds
//! corrupt in its files. It changes nothing, so it is safe to run on a copy, or on a stopped
//! node's database before deciding what to do with it.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use canon_engine::storage::checksum::unseal;
use canon_engine::storage::{Column, Corruption, StorageError};
use rocksdb::{IteratorMode, Options, DB};

use crate::storage::{FORMAT_VERSION, KEY_FORMAT};

/// Why a database could not be checked at all.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{path}: cannot open as a RocksDB database (read-only): {source}")]
    Open {
        path: PathBuf,
        source: rocksdb::Error,
    },
    #[error("{path}: no canon format marker; not a canon node's database")]
    NotCanon { path: PathBuf },
    #[error("{path}: written by format version {found}, this build checks {FORMAT_VERSION}")]
    Format { path: PathBuf, found: u32 },
    #[error("{path}: the format marker itself is corrupt: {source}")]
    Marker { path: PathBuf, source: StorageError },
}

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A record RocksDB returned whose checksum fails: what it was handed was corrupt, or it
    /// changed on disk where RocksDB's own checks do not reach.
    Record {
        column: Column,
        key: Vec<u8>,
        why: Corruption,
    },
    /// RocksDB stopped reading a column: its own checks found a file corrupt. The records
    /// after the point it stopped were not checked.
    Rocks { column: Column, error: String },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Record { column, key, why } => write!(
                f,
                "corrupt: the {} record at key 0x{}: {why}",
                column.name(),
                hex::encode(key)
            ),
            Finding::Rocks { column, error } => write!(
                f,
                "corrupt: RocksDB stopped reading column {}: {error}",
                column.name()
            ),
        }
    }
}

/// What a check found.
#[derive(Debug)]
pub struct Report {
    pub path: PathBuf,
    /// Records read in each column, corrupt ones included.
    pub records: BTreeMap<Column, u64>,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn clean(&self) -> bool {
        self.findings.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total: u64 = self.records.values().sum();
        writeln!(
            f,
            "{}: format {FORMAT_VERSION}, {total} records read",
            self.path.display()
        )?;
        let per: Vec<String> = self
            .records
            .iter()
            .map(|(c, n)| format!("{} {n}", c.name()))
            .collect();
        writeln!(f, "  {}", per.join(", "))?;
        for finding in &self.findings {
            writeln!(f, "{finding}")?;
        }
        if self.clean() {
            write!(f, "no corrupt records")
        } else {
            write!(f, "{} corrupt (nothing was changed)", self.findings.len())
        }
    }
}

/// Reads every record of the database at `path` and checks it.
pub fn check(path: &Path) -> Result<Report, CheckError> {
    let p = path.to_path_buf();
    let names: Vec<&str> = Column::ALL.iter().map(|c| c.name()).collect();
    let db =
        DB::open_cf_for_read_only(&Options::default(), path, names, false).map_err(|source| {
            CheckError::Open {
                path: p.clone(),
                source,
            }
        })?;
    let cf = |c: Column| db.cf_handle(c.name());
    let marker = cf(Column::Meta)
        .map(|meta| db.get_cf(meta, KEY_FORMAT))
        .transpose()
        .map_err(|source| CheckError::Open {
            path: p.clone(),
            source,
        })?
        .flatten()
        .ok_or_else(|| CheckError::NotCanon { path: p.clone() })?;
    let found = if marker.len() == 4 {
        // A bare marker: a database from before records carried checksums.
        marker.as_slice()
    } else {
        &unseal(Column::Meta, KEY_FORMAT, marker.clone()).map_err(|source| CheckError::Marker {
            path: p.clone(),
            source,
        })?[..]
    };
    let found = <[u8; 4]>::try_from(found)
        .map(u32::from_be_bytes)
        .map_err(|_| CheckError::NotCanon { path: p.clone() })?;
    if found != FORMAT_VERSION {
        return Err(CheckError::Format { path: p, found });
    }
    let mut report = Report {
        path: p,
        records: BTreeMap::new(),
        findings: Vec::new(),
    };
    for column in Column::ALL {
        let Some(handle) = cf(column) else {
            report.findings.push(Finding::Rocks {
                column,
                error: "the column family is missing".into(),
            });
            continue;
        };
        let read = report.records.entry(column).or_insert(0);
        for row in db.iterator_cf(handle, IteratorMode::Start) {
            let (key, value) = match row {
                Ok(kv) => kv,
                Err(e) => {
                    report.findings.push(Finding::Rocks {
                        column,
                        error: e.to_string(),
                    });
                    break;
                }
            };
            *read += 1;
            if let Err(StorageError::Corrupt { why, .. }) = unseal(column, &key, value.into_vec()) {
                report.findings.push(Finding::Record {
                    column,
                    key: key.into_vec(),
                    why,
                });
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::RocksStorage;
    use canon_engine::keys::SecretKey;
    use canon_engine::storage::{Durability, Storage, WriteBatch};

    fn database(dir: &Path) -> canon_engine::storage::Checksummed<RocksStorage> {
        let id = SecretKey::from_bytes([3; 32]).unwrap().node_id();
        let s = RocksStorage::open(dir, id).unwrap();
        let mut b = WriteBatch::default();
        for h in 1u64..=5 {
            b.put(Column::Block, h.to_be_bytes().to_vec(), vec![h as u8; 40]);
        }
        b.put(Column::State, b"k".to_vec(), b"v".to_vec());
        s.write(b, Durability::Synced).unwrap();
        s
    }

    #[test]
    fn a_healthy_database_is_clean() {
        let dir = tempfile::tempdir().unwrap();
        drop(database(dir.path()));
        let report = check(dir.path()).unwrap();
        assert!(report.clean(), "{report}");
        assert_eq!(report.records[&Column::Block], 5);
        assert_eq!(report.records[&Column::State], 1);
        // The format marker and the node id.
        assert_eq!(report.records[&Column::Meta], 2);
        assert!(report.to_string().ends_with("no corrupt records"));
    }

    /// RocksDB is handed a damaged value (what its own checks cannot catch) and a value
    /// under the wrong key: both are reported by column and key, the others are not, and the
    /// database is left as it was.
    #[test]
    fn damaged_and_misdirected_records_are_reported_by_name() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = database(dir.path());
            let mut damaged = s
                .inner()
                .get(Column::Block, &3u64.to_be_bytes())
                .unwrap()
                .unwrap();
            damaged[7] ^= 0x01;
            let moved = s
                .inner()
                .get(Column::Block, &1u64.to_be_bytes())
                .unwrap()
                .unwrap();
            let mut b = WriteBatch::default();
            b.put(Column::Block, 3u64.to_be_bytes().to_vec(), damaged);
            b.put(Column::Block, 9u64.to_be_bytes().to_vec(), moved);
            s.inner().write(b, Durability::Synced).unwrap();
        }
        let report = check(dir.path()).unwrap();
        let keys: Vec<(Column, Vec<u8>)> = report
            .findings
            .iter()
            .map(|f| match f {
                Finding::Record { column, key, .. } => (*column, key.clone()),
                Finding::Rocks { column, .. } => (*column, Vec::new()),
            })
            .collect();
        assert_eq!(
            keys,
            [
                (Column::Block, 3u64.to_be_bytes().to_vec()),
                (Column::Block, 9u64.to_be_bytes().to_vec()),
            ]
        );
        let text = report.to_string();
        assert!(
            text.contains("corrupt: the block record at key 0x0000000000000003")
                && text.ends_with("2 corrupt (nothing was changed)"),
            "{text}"
        );
        // Read-only: a second check finds the same.
        assert_eq!(check(dir.path()).unwrap().findings, report.findings);
    }

    #[test]
    fn what_is_not_a_canon_database_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = check(&dir.path().join("missing")).unwrap_err().to_string();
        assert!(e.contains("missing") && e.contains("cannot open"), "{e}");
        {
            let s = database(dir.path());
            let mut b = WriteBatch::default();
            b.put(
                Column::Meta,
                KEY_FORMAT.to_vec(),
                7u32.to_be_bytes().to_vec(),
            );
            s.inner().write(b, Durability::Synced).unwrap();
        }
        let e = check(dir.path()).unwrap_err().to_string();
        let checks = crate::storage::FORMAT_VERSION;
        assert!(
            e.contains(&format!("format version 7, this build checks {checks}")),
            "{e}"
        );
    }
}

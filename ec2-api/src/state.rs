//! The cloud controller's state: images, key pairs, security groups, addresses, tags and
//! cloud properties, in RocksDB, written synced so that an answered request survives a crash.
//!
//! Every record kind is a [`Record`] with its own key prefix; values are JSON with a format
//! version. Check-then-write sequences (a name must be free, an address unallocated) run
//! under [`CloudState::exclusive`], so two concurrent requests cannot both win. This is the
//! one file that knows the storage engine: a PostgreSQL state store for HA would replace it
//! behind the same methods.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rocksdb::{DBCompressionType, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::QueryError;

/// The version written with every record; a record of another version is refused, not
/// misread.
const FORMAT_VERSION: u32 = 1;

/// A kind of stored record: its key prefix (a "table").
pub trait Record: Serialize + DeserializeOwned {
    /// The prefix of this kind's keys, ending in `/`.
    const TABLE: &'static str;
}

/// Why the state store failed. Always the cloud's fault, never the caller's.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// RocksDB failed.
    #[error("the cloud state store failed: {0}")]
    Db(#[from] rocksdb::Error),
    /// A record does not decode.
    #[error("the cloud state store holds a corrupt record: {0}")]
    Corrupt(String),
    /// The folder could not be created.
    #[error("cannot create {0}")]
    Io(String),
}

impl From<StateError> for QueryError {
    fn from(err: StateError) -> QueryError {
        QueryError::Internal(err.to_string())
    }
}

/// The cloud controller's store. Cheap to clone.
#[derive(Clone)]
pub struct CloudState {
    inner: Arc<Inner>,
}

struct Inner {
    db: DB,
    writes: Mutex<()>,
}

#[derive(Serialize, Deserialize)]
struct Stored<T> {
    v: u32,
    record: T,
}

/// Writes gathered to be applied atomically, synced, by [`CloudState::commit`].
#[derive(Default)]
pub struct Batch {
    batch: WriteBatch,
    error: Option<StateError>,
}

impl Batch {
    /// A new, empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Stores `record` under `key` of its table.
    pub fn put<T: Record>(&mut self, key: &str, record: &T) {
        match encode(record) {
            Ok(bytes) => self.batch.put(full_key::<T>(key), bytes),
            Err(e) => self.error = Some(e),
        }
    }

    /// Removes `key` of `T`'s table.
    pub fn delete<T: Record>(&mut self, key: &str) {
        self.batch.delete(full_key::<T>(key));
    }
}

impl CloudState {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path) -> Result<CloudState, StateError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StateError::Io(format!("{} ({e})", dir.display())))?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        // Records of a few hundred bytes: compression would only add a library dependency.
        opts.set_compression_type(DBCompressionType::None);
        Ok(CloudState {
            inner: Arc::new(Inner {
                db: DB::open(&opts, dir)?,
                writes: Mutex::new(()),
            }),
        })
    }

    /// Holds off every other check-then-write while the guard lives.
    pub fn exclusive(&self) -> MutexGuard<'_, ()> {
        self.inner
            .writes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The record stored under `key`, if any.
    pub fn get<T: Record>(&self, key: &str) -> Result<Option<T>, StateError> {
        let full = full_key::<T>(key);
        match self.inner.db.get(&full)? {
            Some(bytes) => Ok(Some(decode(&full, &bytes)?)),
            None => Ok(None),
        }
    }

    /// Every record of `T` whose key starts with `prefix`, in key order.
    pub fn scan<T: Record>(&self, prefix: &str) -> Result<Vec<(String, T)>, StateError> {
        let start = full_key::<T>(prefix);
        let mut out = Vec::new();
        for item in self
            .inner
            .db
            .iterator(IteratorMode::From(start.as_bytes(), Direction::Forward))
        {
            let (key, value) = item?;
            let Some(rest) = key.strip_prefix(start.as_bytes()) else {
                break;
            };
            let key = String::from_utf8_lossy(&key).into_owned();
            let record = decode(&key, &value)?;
            let own = format!("{prefix}{}", String::from_utf8_lossy(rest));
            out.push((own, record));
        }
        Ok(out)
    }

    /// Stores one record, synced.
    pub fn put<T: Record>(&self, key: &str, record: &T) -> Result<(), StateError> {
        let mut batch = Batch::new();
        batch.put(key, record);
        self.commit(batch)
    }

    /// Applies a batch atomically, synced.
    pub fn commit(&self, batch: Batch) -> Result<(), StateError> {
        if let Some(err) = batch.error {
            return Err(err);
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.inner.db.write_opt(batch.batch, &opts)?;
        Ok(())
    }
}

fn full_key<T: Record>(key: &str) -> String {
    format!("{}{key}", T::TABLE)
}

fn encode<T: Serialize>(record: &T) -> Result<Vec<u8>, StateError> {
    serde_json::to_vec(&Stored {
        v: FORMAT_VERSION,
        record,
    })
    .map_err(|e| StateError::Corrupt(format!("cannot encode a record ({e})")))
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, StateError> {
    let stored: Stored<T> = serde_json::from_slice(bytes)
        .map_err(|e| StateError::Corrupt(format!("{key} does not decode ({e})")))?;
    if stored.v != FORMAT_VERSION {
        return Err(StateError::Corrupt(format!(
            "{key} has unknown format version {}",
            stored.v
        )));
    }
    Ok(stored.record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Thing {
        n: u32,
    }
    impl Record for Thing {
        const TABLE: &'static str = "thing/";
    }
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Other {
        s: String,
    }
    impl Record for Other {
        const TABLE: &'static str = "thingx/";
    }

    #[test]
    fn records_survive_reopen_and_scans_stay_in_their_table() {
        let dir = tempfile::tempdir().unwrap();
        {
            let state = CloudState::open(dir.path()).unwrap();
            state.put("a/1", &Thing { n: 1 }).unwrap();
            state.put("a/2", &Thing { n: 2 }).unwrap();
            state.put("b/1", &Thing { n: 3 }).unwrap();
            state.put("a/1", &Other { s: "x".into() }).unwrap();
            let mut batch = Batch::new();
            batch.delete::<Thing>("b/1");
            batch.put("c", &Thing { n: 4 });
            state.commit(batch).unwrap();
        }
        let state = CloudState::open(dir.path()).unwrap();
        let a: Vec<(String, Thing)> = state.scan("a/").unwrap();
        assert_eq!(
            a,
            vec![
                ("a/1".into(), Thing { n: 1 }),
                ("a/2".into(), Thing { n: 2 })
            ]
        );
        assert_eq!(state.get::<Thing>("b/1").unwrap(), None);
        assert_eq!(state.get::<Thing>("c").unwrap(), Some(Thing { n: 4 }));
        assert_eq!(state.scan::<Thing>("").unwrap().len(), 3);
        assert_eq!(state.scan::<Other>("").unwrap().len(), 1);
    }
}

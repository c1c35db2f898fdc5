//! The cloud controller's state: images, key pairs, security groups, addresses, tags and
//! cloud properties, in RocksDB or the cloud's PostgreSQL database, written synced so that an
//! answered request survives a crash.
//!
//! Every record kind is a [`Record`] with its own key prefix; values are JSON with a format
//! version, migrated on read when a kind changes (the `records` crate). Check-then-write
//! sequences (a name must be free, an address unallocated) run under
//! [`CloudState::exclusive`], so two concurrent requests cannot both win. The engine is the
//! `records` crate's [`Db`]: RocksDB by default, PostgreSQL when cloud controllers share one
//! database (one of them leading, its writes fenced by its term).

use std::path::Path;
use std::sync::{Arc, MutexGuard};

use records::{Db, Envelope, RecordError, Versioned};

use crate::QueryError;

/// The shape every record of the cloud state is stored in: `{"v":…,"record":{…}}`.
pub const ENVELOPE: Envelope = Envelope::Nested;

/// A kind of stored record: its key prefix (a "table"). Its [`Versioned`] declaration gives
/// [`ENVELOPE`], its format version and how its older versions read.
pub trait Record: Versioned {
    /// The prefix of this kind's keys, ending in `/`.
    const TABLE: &'static str;
}

/// Why the state store failed. Always the cloud's fault, never the caller's.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// RocksDB failed, or its folder could not be created.
    #[error("the cloud state store failed")]
    Db(#[source] RecordError),
    /// The cloud's database server cannot be reached now, or this CLC no longer leads and
    /// another takes over: the caller may retry.
    #[error("the cloud's database is unavailable")]
    Unavailable(#[source] RecordError),
    /// A record does not decode: damaged, or written by a newer Koala.
    #[error("the cloud state store holds a corrupt record")]
    Corrupt(#[source] RecordError),
}

impl From<RecordError> for StateError {
    fn from(err: RecordError) -> StateError {
        match err {
            RecordError::Db(_) | RecordError::Io { .. } => StateError::Db(err),
            RecordError::Database(_) | RecordError::NotLeader | RecordError::Conflict => {
                StateError::Unavailable(err)
            }
            RecordError::Encode(_) | RecordError::Malformed { .. } | RecordError::Newer { .. } => {
                StateError::Corrupt(err)
            }
        }
    }
}

impl From<StateError> for QueryError {
    fn from(err: StateError) -> QueryError {
        match err {
            StateError::Unavailable(cause) => {
                tracing::warn!(error = %cause, "the cloud's database is unavailable");
                QueryError::Unavailable(
                    "The cloud controller cannot reach its database now, or is handing over \
                     to another; retry shortly."
                        .into(),
                )
            }
            err => QueryError::internal(err),
        }
    }
}

/// The cloud controller's store. Cheap to clone.
#[derive(Clone)]
pub struct CloudState {
    db: Arc<Db>,
}

/// Writes gathered to be applied atomically, synced, by [`CloudState::commit`].
#[derive(Default)]
pub struct Batch(records::Batch);

impl Batch {
    /// A new, empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Stores `record` under `key` of its table.
    pub fn put<T: Record>(&mut self, key: &str, record: &T) {
        self.0.put(&full_key::<T>(key), record);
    }

    /// Removes `key` of `T`'s table.
    pub fn delete<T: Record>(&mut self, key: &str) {
        self.0.delete(&full_key::<T>(key));
    }
}

impl CloudState {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path) -> Result<CloudState, StateError> {
        Ok(CloudState::in_db(Db::open(dir)?))
    }

    /// The store kept in `db` (the cloud's PostgreSQL database).
    pub fn in_db(db: Db) -> CloudState {
        CloudState { db: Arc::new(db) }
    }

    /// Holds off every other check-then-write while the guard lives.
    pub fn exclusive(&self) -> MutexGuard<'_, ()> {
        self.db.exclusive()
    }

    /// The record stored under `key`, if any.
    pub fn get<T: Record>(&self, key: &str) -> Result<Option<T>, StateError> {
        Ok(self.db.get(&full_key::<T>(key))?)
    }

    /// Every record of `T` whose key starts with `prefix`, in key order.
    pub fn scan<T: Record>(&self, prefix: &str) -> Result<Vec<(String, T)>, StateError> {
        Ok(self
            .db
            .scan(&full_key::<T>(prefix))?
            .into_iter()
            // Every key scanned starts with the table's prefix (ASCII, ending in `/`).
            .map(|(key, record)| (key[T::TABLE.len()..].to_owned(), record))
            .collect())
    }

    /// Stores one record, synced.
    pub fn put<T: Record>(&self, key: &str, record: &T) -> Result<(), StateError> {
        let mut batch = Batch::new();
        batch.put(key, record);
        self.commit(batch)
    }

    /// Applies a batch atomically, synced.
    pub fn commit(&self, batch: Batch) -> Result<(), StateError> {
        Ok(self.db.write(batch.0)?)
    }
}

fn full_key<T: Record>(key: &str) -> String {
    format!("{}{key}", T::TABLE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Thing {
        n: u32,
    }
    impl Versioned for Thing {
        const ENVELOPE: Envelope = ENVELOPE;
        const VERSION: u32 = 1;
    }
    impl Record for Thing {
        const TABLE: &'static str = "thing/";
    }
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Other {
        s: String,
    }
    impl Versioned for Other {
        const ENVELOPE: Envelope = ENVELOPE;
        const VERSION: u32 = 1;
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

    /// A CLC that lost its database or its leadership tells the caller to retry (EC2's
    /// `Unavailable`, a 503), not that it failed.
    #[test]
    fn a_lost_leadership_is_unavailable_not_internal() {
        for cause in [RecordError::NotLeader, RecordError::Database("gone".into())] {
            let err = QueryError::from(StateError::from(cause));
            assert!(matches!(err, QueryError::Unavailable(_)), "{err:?}");
        }
    }

    /// A failure of RocksDB is told once: its message is the cause's, not the store's.
    #[test]
    fn a_rocksdb_failure_appears_once_in_the_chain() {
        let dir = tempfile::tempdir().unwrap();
        let _held = CloudState::open(dir.path()).unwrap();
        // RocksDB's lock on its folder refuses a second open.
        let err = CloudState::open(dir.path()).err().unwrap();
        assert!(matches!(err, StateError::Db(RecordError::Db(_))), "{err:?}");
        assert_eq!(err.to_string(), "the cloud state store failed");
        let cause = std::error::Error::source(&err).unwrap().to_string();
        assert!(!cause.is_empty());
        let chain = rpc::error_chain(&err);
        assert_eq!(chain, format!("the cloud state store failed: {cause}"));
        assert_eq!(chain.matches(&cause).count(), 1, "{chain}");
    }

    /// Records exactly as the store has written them since format version 1, put straight
    /// into RocksDB, read back; written again, they keep that shape.
    #[test]
    fn records_of_format_version_1_read_and_are_rewritten_in_their_shape() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = rocksdb::DB::open_default(dir.path()).unwrap();
            db.put("thing/a/1", r#"{"v":1,"record":{"n":7}}"#).unwrap();
            db.put("thingx/a/1", r#"{"v":1,"record":{"s":"x"}}"#)
                .unwrap();
            db.put("thing/b", r#"{"v":2,"record":{"n":8}}"#).unwrap();
        }
        {
            let state = CloudState::open(dir.path()).unwrap();
            assert_eq!(state.get::<Thing>("a/1").unwrap(), Some(Thing { n: 7 }));
            assert_eq!(
                state.scan::<Other>("a/").unwrap(),
                vec![("a/1".to_owned(), Other { s: "x".into() })]
            );
            // Written by a newer Koala: refused, not misread.
            assert!(matches!(
                state.get::<Thing>("b"),
                Err(StateError::Corrupt(RecordError::Newer { version: 2, .. }))
            ));
            state.put("c", &Thing { n: 9 }).unwrap();
        }
        let db = rocksdb::DB::open_default(dir.path()).unwrap();
        assert_eq!(
            db.get("thing/c").unwrap().unwrap(),
            br#"{"v":1,"record":{"n":9}}"#
        );
    }
}

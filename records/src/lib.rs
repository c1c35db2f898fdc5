//! Versioned JSON records in RocksDB: the one codec and write path that Koala's stores share.
//!
//! Every stored record carries the format version of its type. A type declares its current
//! version and how to read each older one ([`Versioned::migrate`]), so a record written by an
//! older Koala is converted when it is read (migrate-on-read, as Garage's `Migrate` does)
//! instead of being refused; only a version newer than the code knows is refused, because
//! reading it would silently drop what the newer code meant.
//!
//! The stores grew three on-disk shapes before this crate existed, and data written in each
//! must keep reading, so the shape is part of a type's declaration ([`Envelope`]) rather than
//! one shape for all. [`Db`] is the rest the account store and the cloud state repeated: a
//! small database of string keys, prefix scans, atomic batches written with a synced WAL so
//! that an answered request survives a crash, and the lock for check-then-write sequences.
//!
//! A [`Db`] lives in RocksDB, or, for a cloud controller that must survive its host, in
//! PostgreSQL (the `postgres` feature, [`Postgres`]): the same keys, records and batches.
//!
//! Kept to RocksDB, serde and serde_json (and the PostgreSQL driver behind its feature) so
//! that a crate may depend on it only where it already links RocksDB (the identity crate's
//! `store` feature).

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "postgres")]
pub use postgres::{BytesBatch, BytesChange, Check, Leadership, MergeFn, Postgres};

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rocksdb::{DBCompressionType, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A record type as it is stored: its shape, its current format version and how to read the
/// older ones.
pub trait Versioned: Serialize + DeserializeOwned {
    /// Where the version sits in the stored bytes; fixed for a type once data exists.
    const ENVELOPE: Envelope;
    /// The version this code writes. Bump it when the type's fields change meaning or shape,
    /// and teach [`Versioned::migrate`] the version it replaces.
    const VERSION: u32;

    /// Reads a record stored at `version`, older than [`Versioned::VERSION`]: `old` is its
    /// JSON (the envelope removed), to be decoded as the shape of that version and converted.
    /// The default knows no older version, right for a type still at its first.
    fn migrate(version: u32, old: Value) -> Result<Self, serde_json::Error> {
        drop(old);
        Err(serde_json::Error::custom(format_args!(
            "format version {version} is older than any this code reads"
        )))
    }
}

/// Where a record's format version is stored: the shapes Koala's stores write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Envelope {
    /// A JSON object with `v` beside the record's own fields: `{"v":1,"id":…}` (the
    /// account store).
    Flat,
    /// A JSON object with the record inside: `{"v":1,"record":{…}}` (the cloud state).
    Nested,
    /// One version byte, then the record's JSON (Walrus' metadata).
    VersionByte,
}

/// Why a record could not be stored or read. The stores map it into their own errors.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// RocksDB failed.
    #[error(transparent)]
    Db(#[from] rocksdb::Error),
    /// The database server (PostgreSQL) failed or could not be reached.
    #[error("the database failed")]
    Database(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// This process no longer leads the cloud: another took over, and its writes are refused.
    #[error("this cloud controller no longer leads: another has taken over")]
    NotLeader,
    /// A shared write's check failed (what it was decided on changed meanwhile, written by
    /// another process), or the database chose it to break a deadlock: nothing was written,
    /// and the caller decides again.
    #[error("the records changed meanwhile; nothing was written")]
    Conflict,
    /// The database's folder could not be created.
    #[error("cannot create {}", path.display())]
    Io {
        /// The folder.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A record could not be encoded (a version too large for its envelope, a map key that
    /// is not a string).
    #[error("cannot encode a record")]
    Encode(#[source] serde_json::Error),
    /// A stored value is not a record of the type asked for, at any version it reads.
    #[error("{key} does not decode")]
    Malformed {
        /// The record's key, or what names it.
        key: String,
        /// What did not decode.
        #[source]
        source: serde_json::Error,
    },
    /// A record was written by a newer Koala; reading it could lose what it says.
    #[error("{key} has format version {version}, newer than {known}, the newest this code reads")]
    Newer {
        /// The record's key, or what names it.
        key: String,
        /// The version stored.
        version: u32,
        /// The newest version this code reads.
        known: u32,
    },
}

/// `{"v":…,…fields}`, written exactly as the account store always has.
#[derive(Serialize)]
struct FlatOut<'a, T> {
    v: u32,
    #[serde(flatten)]
    record: &'a T,
}

/// `{"v":…,"record":…}`, written exactly as the cloud state always has.
#[derive(Serialize)]
struct NestedOut<'a, T> {
    v: u32,
    record: &'a T,
}

/// A nested record before its version is known.
#[derive(Deserialize)]
struct NestedIn<'a> {
    v: u32,
    #[serde(borrow)]
    record: &'a serde_json::value::RawValue,
}

/// The format version of a record in the flat envelope, the other fields skipped.
#[derive(Deserialize)]
struct Version {
    v: u32,
}

/// The stored form of `record`, in its type's envelope at its current version.
pub fn encode<T: Versioned>(record: &T) -> Result<Vec<u8>, RecordError> {
    match T::ENVELOPE {
        Envelope::Flat => serde_json::to_vec(&FlatOut {
            v: T::VERSION,
            record,
        }),
        Envelope::Nested => serde_json::to_vec(&NestedOut {
            v: T::VERSION,
            record,
        }),
        Envelope::VersionByte => {
            let v = u8::try_from(T::VERSION).map_err(|_| {
                RecordError::Encode(serde_json::Error::custom(format_args!(
                    "format version {} does not fit in a byte",
                    T::VERSION
                )))
            })?;
            let mut out = vec![v];
            serde_json::to_writer(&mut out, record).map(|()| out)
        }
    }
    .map_err(RecordError::Encode)
}

/// Reads a record stored under `key` (used only to name it in errors), migrating it from an
/// older version if need be.
pub fn decode<T: Versioned>(key: &str, bytes: &[u8]) -> Result<T, RecordError> {
    let malformed = |source| RecordError::Malformed {
        key: key.to_owned(),
        source,
    };
    let newer = |version| RecordError::Newer {
        key: key.to_owned(),
        version,
        known: T::VERSION,
    };
    let (version, json) = match T::ENVELOPE {
        Envelope::Flat => {
            // The common case reads the version, then the record straight from the bytes
            // (its `v` ignored as an unknown field), without a tree of values.
            let Version { v } = serde_json::from_slice(bytes).map_err(malformed)?;
            if v == T::VERSION {
                return serde_json::from_slice(bytes).map_err(malformed);
            }
            let mut fields: serde_json::Map<String, Value> =
                serde_json::from_slice(bytes).map_err(malformed)?;
            let v = fields
                .remove("v")
                .ok_or_else(|| serde_json::Error::missing_field("v"))
                .and_then(u32::deserialize)
                .map_err(malformed)?;
            (v, Value::Object(fields))
        }
        Envelope::Nested => {
            let stored: NestedIn = serde_json::from_slice(bytes).map_err(malformed)?;
            if stored.v == T::VERSION {
                // The common case reads the record straight from its text, without a tree.
                return serde_json::from_str(stored.record.get()).map_err(malformed);
            }
            if stored.v > T::VERSION {
                return Err(newer(stored.v));
            }
            let old = serde_json::from_str(stored.record.get()).map_err(malformed)?;
            (stored.v, old)
        }
        Envelope::VersionByte => {
            let Some((&v, json)) = bytes.split_first() else {
                return Err(malformed(serde_json::Error::custom("the value is empty")));
            };
            let v = u32::from(v);
            if v == T::VERSION {
                // The common case reads straight from the bytes, without a tree of values.
                return serde_json::from_slice(json).map_err(malformed);
            }
            if v > T::VERSION {
                return Err(newer(v));
            }
            (v, serde_json::from_slice(json).map_err(malformed)?)
        }
    };
    match version.cmp(&T::VERSION) {
        std::cmp::Ordering::Equal => T::deserialize(json).map_err(malformed),
        std::cmp::Ordering::Less => T::migrate(version, json).map_err(malformed),
        std::cmp::Ordering::Greater => Err(newer(version)),
    }
}

/// Write options that sync the WAL before the write returns: every write that answers a
/// request uses them, so that what was answered survives a crash.
pub fn sync_writes() -> WriteOptions {
    let mut opts = WriteOptions::default();
    opts.set_sync(true);
    opts
}

/// A stored (key, value) pair as RocksDB returns it.
type Pair = (Box<[u8]>, Box<[u8]>);

/// The (key, value) pairs whose key starts with `prefix`, in key order.
fn prefixed<'a>(
    db: &'a DB,
    prefix: &'a [u8],
) -> impl Iterator<Item = Result<Pair, RecordError>> + 'a {
    db.iterator(IteratorMode::From(prefix, Direction::Forward))
        .take_while(move |item| item.as_ref().map_or(true, |(k, _)| k.starts_with(prefix)))
        .map(|item| item.map_err(RecordError::from))
}

/// Decodes scanned pairs, naming each record by its key.
fn decode_all<T: Versioned>(
    pairs: impl Iterator<Item = Result<Pair, RecordError>>,
) -> Result<Vec<(String, T)>, RecordError> {
    pairs
        .map(|item| {
            let (key, value) = item?;
            let key = String::from_utf8_lossy(&key).into_owned();
            let record = decode(&key, &value)?;
            Ok((key, record))
        })
        .collect()
}

/// A small database of records under string keys: the account store and the cloud state,
/// each a few thousand records of a few hundred bytes.
pub struct Db {
    engine: Engine,
    /// Serializes check-then-write sequences (a name must be free, a quota not reached).
    writes: Mutex<()>,
}

/// Where a [`Db`]'s records live.
enum Engine {
    /// A RocksDB database of its own.
    Rocks(DB),
    /// One store (its name) of the cloud's PostgreSQL database, with the records read
    /// lately.
    #[cfg(feature = "postgres")]
    Postgres(Postgres, String, Recent),
}

/// Records of a PostgreSQL store read lately, by key, so that the reads every request makes
/// (its access key's record) cost no round trip. Coherent because only this process writes
/// the store while it leads (a process that no longer leads stops) and every write passes
/// here: it forgets the keys it writes before and after the write, and a read keeps what it
/// found only if no write began or ended meanwhile (a generation count), so a value read
/// before a write commits is never kept after it. Absent keys are kept too (a property never
/// overridden is read by every PUT); at most [`Recent::MAX`] keys, past which it starts
/// again, so that keys a client makes up can cost lookups but never memory.
#[cfg(feature = "postgres")]
#[derive(Default)]
struct Recent(Mutex<RecentInner>);

#[cfg(feature = "postgres")]
#[derive(Default)]
struct RecentInner {
    records: std::collections::HashMap<String, Option<String>>,
    /// Raised at the start and the end of every write.
    generation: u64,
}

#[cfg(feature = "postgres")]
impl Recent {
    const MAX: usize = 16_384;

    /// The record kept under `key` (`None`: known absent), or the generation a read of the
    /// database starts in.
    fn get(&self, key: &str) -> Result<Option<String>, u64> {
        let inner = self.lock();
        inner.records.get(key).cloned().ok_or(inner.generation)
    }

    /// Keeps what a read that started in `generation` found, unless a write came between.
    fn keep(&self, key: &str, text: Option<&str>, generation: u64) {
        let mut inner = self.lock();
        if inner.generation != generation {
            return;
        }
        if inner.records.len() >= Recent::MAX {
            inner.records.clear();
        }
        inner
            .records
            .insert(key.to_owned(), text.map(str::to_owned));
    }

    /// Forgets `keys`, which a write is about to change or has changed.
    fn forget<'a>(&self, keys: impl Iterator<Item = &'a str>) {
        let mut inner = self.lock();
        inner.generation += 1;
        for key in keys {
            inner.records.remove(key);
        }
    }

    fn lock(&self) -> MutexGuard<'_, RecentInner> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Db {
    /// Opens (creating if needed) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Db, RecordError> {
        std::fs::create_dir_all(dir).map_err(|source| RecordError::Io {
            path: dir.to_owned(),
            source,
        })?;
        let mut opts = Options::default();
        opts.create_if_missing(true);
        // Records of a few hundred bytes: compression would only add a library dependency.
        opts.set_compression_type(DBCompressionType::None);
        Ok(Db {
            engine: Engine::Rocks(DB::open(&opts, dir)?),
            writes: Mutex::new(()),
        })
    }

    /// The records of `store` (a name of the caller's, such as `clc`) in the cloud's
    /// PostgreSQL database. Writes are fenced by `postgres`' leadership once it leads.
    #[cfg(feature = "postgres")]
    pub fn on_postgres(postgres: &Postgres, store: &str) -> Db {
        Db {
            engine: Engine::Postgres(postgres.clone(), store.to_owned(), Recent::default()),
            writes: Mutex::new(()),
        }
    }

    /// A record's text, from the records read lately or from the database.
    #[cfg(feature = "postgres")]
    fn read_through(
        postgres: &Postgres,
        store: &str,
        recent: &Recent,
        key: &str,
    ) -> Result<Option<String>, RecordError> {
        let generation = match recent.get(key) {
            Ok(kept) => return Ok(kept),
            Err(generation) => generation,
        };
        let found = postgres.get(store, key)?;
        recent.keep(key, found.as_deref(), generation);
        Ok(found)
    }

    /// Where the database is, for diagnostics.
    pub fn location(&self) -> String {
        match &self.engine {
            Engine::Rocks(db) => db.path().display().to_string(),
            #[cfg(feature = "postgres")]
            Engine::Postgres(postgres, store, _) => {
                format!("{} (store {store})", postgres.name())
            }
        }
    }

    /// Holds off every other check-then-write sequence while the guard lives.
    pub fn exclusive(&self) -> MutexGuard<'_, ()> {
        // The guarded value is `()`: a panic elsewhere cannot leave it inconsistent.
        self.writes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The record stored under `key`, if any.
    pub fn get<T: Versioned>(&self, key: &str) -> Result<Option<T>, RecordError> {
        match &self.engine {
            Engine::Rocks(db) => match db.get(key.as_bytes())? {
                Some(bytes) => Ok(Some(decode(key, &bytes)?)),
                None => Ok(None),
            },
            #[cfg(feature = "postgres")]
            Engine::Postgres(postgres, store, recent) => {
                match Db::read_through(postgres, store, recent, key)? {
                    Some(text) => Ok(Some(decode(key, text.as_bytes())?)),
                    None => Ok(None),
                }
            }
        }
    }

    /// Whether anything is stored under `key`, without decoding it.
    pub fn contains(&self, key: &str) -> Result<bool, RecordError> {
        match &self.engine {
            Engine::Rocks(db) => Ok(db.get_pinned(key.as_bytes())?.is_some()),
            #[cfg(feature = "postgres")]
            Engine::Postgres(postgres, store, recent) => {
                Ok(Db::read_through(postgres, store, recent, key)?.is_some())
            }
        }
    }

    /// Every record whose key starts with `prefix`, in key order, with its whole key.
    pub fn scan<T: Versioned>(&self, prefix: &str) -> Result<Vec<(String, T)>, RecordError> {
        match &self.engine {
            Engine::Rocks(db) => decode_all(prefixed(db, prefix.as_bytes())),
            #[cfg(feature = "postgres")]
            Engine::Postgres(postgres, store, _) => postgres
                .scan(store, prefix, false)?
                .into_iter()
                .map(|(key, text)| {
                    let record = decode(&key, text.as_bytes())?;
                    Ok((key, record))
                })
                .collect(),
        }
    }

    /// The keys starting with `prefix`, in order, without what follows the prefix: for
    /// indexes, whose keys say it all.
    pub fn keys_after(&self, prefix: &str) -> Result<Vec<String>, RecordError> {
        match &self.engine {
            Engine::Rocks(db) => prefixed(db, prefix.as_bytes())
                .map(|item| {
                    let (key, _) = item?;
                    Ok(String::from_utf8_lossy(&key[prefix.len()..]).into_owned())
                })
                .collect(),
            #[cfg(feature = "postgres")]
            Engine::Postgres(postgres, store, _) => Ok(postgres
                .scan(store, prefix, true)?
                .into_iter()
                // Every key found starts with the prefix (LIKE with its characters escaped).
                .map(|(key, _)| key[prefix.len()..].to_owned())
                .collect()),
        }
    }

    /// Applies a batch atomically, synced (PostgreSQL: one committed transaction).
    pub fn write(&self, batch: Batch) -> Result<(), RecordError> {
        if let Some(err) = batch.error {
            return Err(err);
        }
        match &self.engine {
            Engine::Rocks(db) => {
                let mut writes = WriteBatch::default();
                for (key, value) in batch.changes {
                    match value {
                        Some(bytes) => writes.put(key.as_bytes(), bytes),
                        None => writes.delete(key.as_bytes()),
                    }
                }
                db.write_opt(writes, &sync_writes())?;
            }
            #[cfg(feature = "postgres")]
            Engine::Postgres(postgres, store, recent) => {
                let changes = batch
                    .changes
                    .into_iter()
                    .map(|(key, value)| match value {
                        Some(bytes) => String::from_utf8(bytes)
                            .map(|text| postgres::Change::Put(key, text))
                            .map_err(|_| {
                                RecordError::Encode(serde_json::Error::custom(
                                    "a record for PostgreSQL is not JSON text",
                                ))
                            }),
                        None => Ok(postgres::Change::Delete(key)),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let keys: Vec<String> = changes
                    .iter()
                    .map(|change| match change {
                        postgres::Change::Put(key, _) | postgres::Change::Delete(key) => {
                            key.clone()
                        }
                    })
                    .collect();
                recent.forget(keys.iter().map(String::as_str));
                let written = postgres.write(store, changes);
                // Again once done (or failed, or uncertain): what a read fetched meanwhile
                // is not kept.
                recent.forget(keys.iter().map(String::as_str));
                written?;
            }
        }
        Ok(())
    }
}

/// Writes gathered to be applied at once by [`Db::write`]: all of them or none, so that a
/// record and its indexes never disagree.
#[derive(Default)]
pub struct Batch {
    /// Each key with its encoded record, or `None` to remove it, in the order given.
    changes: Vec<(String, Option<Vec<u8>>)>,
    /// The first record that did not encode; [`Db::write`] then writes nothing.
    error: Option<RecordError>,
}

impl Batch {
    /// A new, empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Stores `record` under `key`.
    pub fn put<T: Versioned>(&mut self, key: &str, record: &T) {
        match encode(record) {
            Ok(bytes) => self.changes.push((key.to_owned(), Some(bytes))),
            Err(e) => {
                self.error.get_or_insert(e);
            }
        }
    }

    /// Removes `key`.
    pub fn delete(&mut self, key: &str) {
        self.changes.push((key.to_owned(), None));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Today's shapes, one type per envelope, all at version 1.
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Flat {
        id: String,
        n: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        extra: Option<String>,
    }
    impl Versioned for Flat {
        const ENVELOPE: Envelope = Envelope::Flat;
        const VERSION: u32 = 1;
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Nested {
        n: u32,
    }
    impl Versioned for Nested {
        const ENVELOPE: Envelope = Envelope::Nested;
        const VERSION: u32 = 1;
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Byte {
        name: String,
    }
    impl Versioned for Byte {
        const ENVELOPE: Envelope = Envelope::VersionByte;
        const VERSION: u32 = 1;
    }

    #[test]
    fn todays_bytes_read_and_are_written_unchanged() {
        let flat = br#"{"v":1,"id":"a","n":7}"#;
        let r: Flat = decode("acct/a", flat).unwrap();
        assert_eq!(
            r,
            Flat {
                id: "a".into(),
                n: 7,
                extra: None
            }
        );
        assert_eq!(encode(&r).unwrap(), flat);

        let nested = br#"{"v":1,"record":{"n":3}}"#;
        let r: Nested = decode("tag/x", nested).unwrap();
        assert_eq!(r, Nested { n: 3 });
        assert_eq!(encode(&r).unwrap(), nested);

        let byte = b"\x01{\"name\":\"b\"}";
        let r: Byte = decode("bucket", byte).unwrap();
        assert_eq!(r, Byte { name: "b".into() });
        assert_eq!(encode(&r).unwrap(), byte);
    }

    #[test]
    fn newer_versions_and_damage_are_refused() {
        assert!(matches!(
            decode::<Flat>("k", br#"{"v":2,"id":"a","n":7}"#),
            Err(RecordError::Newer {
                version: 2,
                known: 1,
                ..
            })
        ));
        assert!(matches!(
            decode::<Nested>("k", br#"{"v":9,"record":{"n":3}}"#),
            Err(RecordError::Newer { version: 9, .. })
        ));
        assert!(matches!(
            decode::<Byte>("k", b"\x02garbage"),
            Err(RecordError::Newer { version: 2, .. })
        ));
        for (bytes, what) in [
            (&br#"{"id":"a","n":7}"#[..], "no version"),
            (br#"{"v":0,"id":"a","n":7}"#, "a version before the first"),
            (
                br#"{"v":"1","id":"a","n":7}"#,
                "a version that is no number",
            ),
            (br#"{"v":1,"id":"a"}"#, "a missing field"),
            (b"[1]", "no object"),
        ] {
            let err = decode::<Flat>("acct/a", bytes).unwrap_err();
            assert!(
                matches!(err, RecordError::Malformed { .. }),
                "{what}: {err}"
            );
            // What did not decode is the source, not repeated in the message.
            assert_eq!(err.to_string(), "acct/a does not decode", "{what}");
            assert!(std::error::Error::source(&err).is_some(), "{what}");
        }
        assert!(matches!(
            decode::<Byte>("k", b""),
            Err(RecordError::Malformed { .. })
        ));
        assert!(matches!(
            decode::<Nested>("k", br#"{"v":1}"#),
            Err(RecordError::Malformed { .. })
        ));
    }

    /// A type at version 3 whose version 1 had no `role` and whose version 2 spelled the
    /// count as text.
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct User {
        name: String,
        count: u64,
        role: String,
    }
    #[derive(Deserialize)]
    struct UserV1 {
        name: String,
        count: u64,
    }
    #[derive(Deserialize)]
    struct UserV2 {
        name: String,
        count: String,
        role: String,
    }
    impl Versioned for User {
        const ENVELOPE: Envelope = Envelope::Flat;
        const VERSION: u32 = 3;
        fn migrate(version: u32, old: Value) -> Result<User, serde_json::Error> {
            match version {
                1 => {
                    let old: UserV1 = serde_json::from_value(old)?;
                    Ok(User {
                        name: old.name,
                        count: old.count,
                        role: "user".into(),
                    })
                }
                2 => {
                    let old: UserV2 = serde_json::from_value(old)?;
                    Ok(User {
                        name: old.name,
                        count: old.count.parse().map_err(serde_json::Error::custom)?,
                        role: old.role,
                    })
                }
                _ => Err(serde_json::Error::custom("unknown version")),
            }
        }
    }

    #[test]
    fn older_versions_are_migrated_on_read() {
        let want = User {
            name: "ops".into(),
            count: 4,
            role: "user".into(),
        };
        let v1: User = decode("u", br#"{"v":1,"name":"ops","count":4}"#).unwrap();
        assert_eq!(v1, want);
        let v2: User = decode("u", br#"{"v":2,"name":"ops","count":"4","role":"user"}"#).unwrap();
        assert_eq!(v2, want);
        assert!(matches!(
            decode::<User>("u", br#"{"v":2,"name":"ops","count":"four","role":"x"}"#),
            Err(RecordError::Malformed { .. })
        ));
        // Written back, it is the current version.
        assert_eq!(
            encode(&v1).unwrap(),
            br#"{"v":3,"name":"ops","count":4,"role":"user"}"#
        );
    }

    /// Version 2 of a Walrus-shaped record whose version 1 was a bare string.
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct Named {
        name: String,
    }
    impl Versioned for Named {
        const ENVELOPE: Envelope = Envelope::VersionByte;
        const VERSION: u32 = 2;
        fn migrate(version: u32, old: Value) -> Result<Named, serde_json::Error> {
            match version {
                1 => Ok(Named {
                    name: serde_json::from_value(old)?,
                }),
                _ => Err(serde_json::Error::custom("unknown version")),
            }
        }
    }

    #[test]
    fn version_byte_records_migrate_too() {
        let n: Named = decode("k", b"\x01\"x\"").unwrap();
        assert_eq!(n, Named { name: "x".into() });
        assert_eq!(encode(&n).unwrap(), b"\x02{\"name\":\"x\"}");
        assert!(matches!(
            decode::<Named>("k", b"\x00\"x\""),
            Err(RecordError::Malformed { .. })
        ));
    }

    #[test]
    fn batches_scans_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Db::open(&dir.path().join("new/folder")).unwrap();
            let mut batch = Batch::new();
            batch.put("t/a/1", &Nested { n: 1 });
            batch.put("t/a/2", &Nested { n: 2 });
            batch.put("t/b/1", &Nested { n: 3 });
            batch.put("tx/a", &Nested { n: 4 });
            batch.put("i/a/k1", &Nested { n: 0 });
            db.write(batch).unwrap();
            let mut batch = Batch::new();
            batch.delete("t/b/1");
            batch.put("t/c", &Nested { n: 5 });
            db.write(batch).unwrap();
        }
        let db = Db::open(&dir.path().join("new/folder")).unwrap();
        let a: Vec<(String, Nested)> = db.scan("t/a/").unwrap();
        assert_eq!(
            a,
            vec![
                ("t/a/1".into(), Nested { n: 1 }),
                ("t/a/2".into(), Nested { n: 2 })
            ]
        );
        assert_eq!(db.scan::<Nested>("t/").unwrap().len(), 3);
        assert_eq!(db.get::<Nested>("t/b/1").unwrap(), None);
        assert_eq!(db.get::<Nested>("t/c").unwrap(), Some(Nested { n: 5 }));
        assert!(db.contains("tx/a").unwrap());
        assert!(!db.contains("tx/b").unwrap());
        assert_eq!(db.keys_after("i/a/").unwrap(), vec!["k1".to_owned()]);

        // A batch holding a record that does not encode writes nothing.
        #[derive(Serialize, Deserialize)]
        struct TooNew {}
        impl Versioned for TooNew {
            const ENVELOPE: Envelope = Envelope::VersionByte;
            const VERSION: u32 = 256;
        }
        let mut batch = Batch::new();
        batch.put("t/d", &Nested { n: 6 });
        batch.put("t/e", &TooNew {});
        assert!(matches!(db.write(batch), Err(RecordError::Encode(_))));
        assert!(!db.contains("t/d").unwrap());
    }
}

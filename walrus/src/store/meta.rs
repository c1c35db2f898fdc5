//! Where the store's records live, behind one interface: point reads, ordered cursors and
//! atomic batches over the column families of [`super::db`]. The store's logic (locks,
//! versions, usage, multipart) is written once against it; the engine underneath is
//! RocksDB on this host (the default), or PostgreSQL shared by several Walrus front ends
//! (`[walrus] database`, with the object bytes in one RADOS pool).
//!
//! A batch is a list of changes, not an engine's own batch, so that the logic that builds it
//! names column families ([`Cf`]) rather than an engine's handles.
//!
//! **Shared records.** The store's locks are in-process: they order the read-modify-write
//! sequences of one front end, not of several. So a batch also carries *checks*: what its
//! writer read and decided on (the key's current record, the bucket's record, the parts of
//! an upload). RocksDB ignores them (the locks already guarantee them); PostgreSQL checks
//! them inside the writing transaction with the rows locked, and a check that fails writes
//! nothing and answers [`StoreError::Conflict`], on which the store decides again
//! ([`super::retrying`]). Each column family is a key space `walrus/<name>` of the
//! `koala_bytes` table, keys compared as bytes as in RocksDB.

use std::ops::Deref;

use records::{BytesBatch, BytesChange, Check, Postgres};
use rocksdb::{DBPinnableSlice, DBRawIteratorWithThreadMode, ReadOptions, WriteBatch, DB};

use super::{db, internal, StoreError};

/// The column families (RocksDB's name; one key space each in every engine).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cf {
    /// Bookkeeping of the store itself (the open's epoch, the usage marker).
    Default,
    Buckets,
    Objects,
    Versions,
    Uploads,
    Parts,
    Files,
    Pending,
    Images,
    Registrations,
    Usage,
}

impl Cf {
    /// Every named column family (all but the default one).
    pub(super) const NAMED: [Cf; 10] = [
        Cf::Buckets,
        Cf::Objects,
        Cf::Versions,
        Cf::Uploads,
        Cf::Parts,
        Cf::Files,
        Cf::Pending,
        Cf::Images,
        Cf::Registrations,
        Cf::Usage,
    ];

    /// Its name in RocksDB.
    pub(super) fn name(self) -> &'static str {
        match self {
            Cf::Default => "default",
            Cf::Buckets => db::CF_BUCKETS,
            Cf::Objects => db::CF_OBJECTS,
            Cf::Versions => db::CF_VERSIONS,
            Cf::Uploads => db::CF_UPLOADS,
            Cf::Parts => db::CF_PARTS,
            Cf::Files => db::CF_FILES,
            Cf::Pending => db::CF_PENDING,
            Cf::Images => db::CF_IMAGES,
            Cf::Registrations => db::CF_REGISTRATIONS,
            Cf::Usage => db::CF_USAGE,
        }
    }

    /// Its key space in PostgreSQL.
    fn space(self) -> &'static str {
        match self {
            Cf::Default => "walrus/default",
            Cf::Buckets => "walrus/buckets",
            Cf::Objects => "walrus/objects",
            Cf::Versions => "walrus/versions",
            Cf::Uploads => "walrus/uploads",
            Cf::Parts => "walrus/parts",
            Cf::Files => "walrus/files",
            Cf::Pending => "walrus/pending",
            Cf::Images => "walrus/images",
            Cf::Registrations => "walrus/registrations",
            Cf::Usage => "walrus/usage",
        }
    }
}

/// One change of a [`Batch`].
#[derive(Clone)]
pub(super) enum Change {
    /// Store the value under the key.
    Put(Cf, Vec<u8>, Vec<u8>),
    /// Remove the key.
    Delete(Cf, Vec<u8>),
    /// Combine the value with the stored one by the column family's merge operator (only
    /// [`Cf::Usage`] has one: [`super::usage::merge`]).
    Merge(Cf, Vec<u8>, Vec<u8>),
}

/// What must still hold when a batch is written (see the module's doc).
#[derive(Clone)]
enum Expect {
    /// The key holds this value (`None`: is absent); `exclusive` locks its row alone.
    Same(Cf, Vec<u8>, Option<Vec<u8>>, bool),
    /// Exactly this many keys start with the prefix.
    Count(Cf, Vec<u8>, usize),
}

/// Changes written together or not at all, in order, with what must hold first.
#[derive(Clone, Default)]
pub(super) struct Batch {
    changes: Vec<Change>,
    expects: Vec<Expect>,
}

impl Batch {
    /// Stores `value` under `key`.
    pub(super) fn put(&mut self, cf: Cf, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.changes.push(Change::Put(
            cf,
            key.as_ref().to_vec(),
            value.as_ref().to_vec(),
        ));
    }

    /// Removes `key`.
    pub(super) fn delete(&mut self, cf: Cf, key: impl AsRef<[u8]>) {
        self.changes.push(Change::Delete(cf, key.as_ref().to_vec()));
    }

    /// Merges `operand` into `key`'s value.
    pub(super) fn merge(&mut self, cf: Cf, key: impl AsRef<[u8]>, operand: impl AsRef<[u8]>) {
        self.changes.push(Change::Merge(
            cf,
            key.as_ref().to_vec(),
            operand.as_ref().to_vec(),
        ));
    }

    /// Whether nothing was added.
    pub(super) fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// The batch is written only if `key` still holds `seen` (`None`: is still absent),
    /// and while it is written no other writer may change it (writers that expect it too
    /// go on together).
    pub(super) fn expect(&mut self, cf: Cf, key: impl AsRef<[u8]>, seen: Option<&[u8]>) {
        let (key, seen) = (key.as_ref().to_vec(), seen.map(<[u8]>::to_vec));
        self.expects.push(Expect::Same(cf, key, seen, false));
    }

    /// As [`Batch::expect`], with `key` locked alone: writers that expect it shared wait.
    pub(super) fn expect_alone(&mut self, cf: Cf, key: impl AsRef<[u8]>, seen: Option<&[u8]>) {
        let (key, seen) = (key.as_ref().to_vec(), seen.map(<[u8]>::to_vec));
        self.expects.push(Expect::Same(cf, key, seen, true));
    }

    /// The batch is written only if exactly `count` keys of `cf` start with `prefix`.
    pub(super) fn expect_count(&mut self, cf: Cf, prefix: &[u8], count: usize) {
        self.expects.push(Expect::Count(cf, prefix.to_vec(), count));
    }
}

/// A value read: pinned in the engine's cache where it can be, so that HEAD and GET of a
/// small object copy nothing.
pub(super) enum Value<'a> {
    Pinned(DBPinnableSlice<'a>),
    Owned(Vec<u8>),
}

impl Deref for Value<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Value::Pinned(v) => v,
            Value::Owned(v) => v,
        }
    }
}

/// A position in one column family's keys, in byte order, bounded above; moved by
/// [`Cursor::seek`] and [`Cursor::next`]. An engine failure ends it: [`Cursor::key`] is
/// `None` and [`Cursor::status`] says why.
pub(super) enum Cursor<'a> {
    Rocks(DBRawIteratorWithThreadMode<'a, DB>),
    Shared(Pages<'a>),
}

/// A cursor over PostgreSQL: the keys are fetched a page at a time from the position on.
pub(super) struct Pages<'a> {
    db: &'a Postgres,
    cf: Cf,
    upper: Option<Vec<u8>>,
    /// The page fetched, and where in it the cursor is.
    page: Vec<(Vec<u8>, Vec<u8>)>,
    at: usize,
    /// Whether the page is the last (shorter than asked for).
    last: bool,
    failed: Option<records::RecordError>,
}

/// Keys fetched per round trip: a listing page of 1,000 keys costs four.
const PAGE: usize = 256;

impl Pages<'_> {
    /// Fetches the page starting at `from` (included unless `after`).
    fn fetch(&mut self, from: &[u8], after: bool) {
        let mut start = from.to_vec();
        if after {
            // The smallest key after `from`.
            start.push(0);
        }
        match self
            .db
            .bytes_scan(self.cf.space(), &start, self.upper.as_deref(), PAGE)
        {
            Ok(page) => {
                self.last = page.len() < PAGE;
                self.page = page;
                self.failed = None;
            }
            Err(e) => {
                self.page.clear();
                self.failed = Some(e);
            }
        }
        self.at = 0;
    }
}

impl Cursor<'_> {
    /// Moves to the first key at or after `key`.
    pub(super) fn seek(&mut self, key: impl AsRef<[u8]>) {
        let key = key.as_ref();
        match self {
            Cursor::Rocks(it) => it.seek(key),
            Cursor::Shared(p) => p.fetch(key, false),
        }
    }

    /// Moves to the next key.
    pub(super) fn next(&mut self) {
        match self {
            Cursor::Rocks(it) => it.next(),
            Cursor::Shared(p) => {
                p.at += 1;
                if p.at >= p.page.len() && !p.last {
                    if let Some((k, _)) = p.page.last() {
                        let k = k.clone();
                        p.fetch(&k, true);
                    }
                }
            }
        }
    }

    /// The key here, `None` past the end.
    pub(super) fn key(&self) -> Option<&[u8]> {
        match self {
            Cursor::Rocks(it) => it.key(),
            Cursor::Shared(p) => p.page.get(p.at).map(|(k, _)| &k[..]),
        }
    }

    /// The value here, `None` past the end.
    pub(super) fn value(&self) -> Option<&[u8]> {
        match self {
            Cursor::Rocks(it) => it.value(),
            Cursor::Shared(p) => p.page.get(p.at).map(|(_, v)| &v[..]),
        }
    }

    /// Whether the cursor ended by an engine failure rather than at the end.
    pub(super) fn status(&self) -> Result<(), StoreError> {
        match self {
            Cursor::Rocks(it) => it.status().map_err(internal),
            Cursor::Shared(p) => match &p.failed {
                Some(e) => Err(internal(e.to_string())),
                None => Ok(()),
            },
        }
    }
}

/// Reads the `usage` records of shared records (the ledger, which lives beside [`Meta`],
/// checks quotas against the totals every front end writes).
pub(super) struct SharedTotals(Postgres);

impl SharedTotals {
    /// The stored value of `account`'s usage.
    pub(super) fn get(&self, account: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.0
            .bytes_get(Cf::Usage.space(), account.as_bytes())
            .map_err(failed)
    }
}

/// A key and its value.
pub(super) type Entry = (Vec<u8>, Vec<u8>);

/// The engine holding the records.
pub(super) enum Meta {
    /// RocksDB on this host (`dir/db`).
    Rocks(DB),
    /// PostgreSQL, shared with the other front ends.
    Shared(Postgres),
}

impl Meta {
    /// Opens the RocksDB engine at `path`.
    pub(super) fn rocks(path: &std::path::Path) -> Result<Meta, StoreError> {
        db::open(path).map(Meta::Rocks)
    }

    /// The value of `key`.
    pub(super) fn get(
        &self,
        cf: Cf,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<Value<'_>>, StoreError> {
        let key = key.as_ref();
        match self {
            Meta::Rocks(db) => {
                let found = match cf {
                    Cf::Default => db.get_pinned(key),
                    _ => db.get_pinned_cf(handle(db, cf)?, key),
                };
                Ok(found.map_err(internal)?.map(Value::Pinned))
            }
            Meta::Shared(pg) => Ok(pg
                .bytes_get(cf.space(), key)
                .map_err(failed)?
                .map(Value::Owned)),
        }
    }

    /// With shared records, a reader of the accounts' usage totals for the ledger.
    pub(super) fn shared_totals(&self) -> Option<SharedTotals> {
        match self {
            Meta::Rocks(_) => None,
            Meta::Shared(pg) => Some(SharedTotals(pg.clone())),
        }
    }

    /// Whether other front ends write these records too (checks matter, conflicts happen).
    pub(super) fn is_shared(&self) -> bool {
        matches!(self, Meta::Shared(_))
    }

    /// A cursor over `cf`'s keys below `upper` (every key when `None`); not positioned until
    /// [`Cursor::seek`].
    pub(super) fn cursor(&self, cf: Cf, upper: Option<Vec<u8>>) -> Result<Cursor<'_>, StoreError> {
        match self {
            Meta::Rocks(db) => {
                let mut opts = ReadOptions::default();
                if let Some(end) = upper {
                    opts.set_iterate_upper_bound(end);
                }
                Ok(Cursor::Rocks(db.raw_iterator_cf_opt(handle(db, cf)?, opts)))
            }
            Meta::Shared(pg) => Ok(Cursor::Shared(Pages {
                db: pg,
                cf,
                upper,
                page: Vec::new(),
                at: 0,
                last: true,
                failed: None,
            })),
        }
    }

    /// A cursor over the keys of `cf` starting with `prefix`, positioned at the first.
    pub(super) fn prefixed(&self, cf: Cf, prefix: &[u8]) -> Result<Cursor<'_>, StoreError> {
        let mut it = self.cursor(cf, db::prefix_end(prefix))?;
        it.seek(prefix);
        Ok(it)
    }

    /// Every (key, value) of `cf`, in key order.
    pub(super) fn entries(&self, cf: Cf) -> Result<Vec<Entry>, StoreError> {
        let mut it = self.prefixed(cf, b"")?;
        let mut out = Vec::new();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            out.push((k.to_vec(), v.to_vec()));
            it.next();
        }
        it.status()?;
        Ok(out)
    }

    /// Every entry of `cf`, keys as text, values decoded from JSON.
    pub(super) fn scan_json<T: records::Versioned>(
        &self,
        cf: Cf,
    ) -> Result<Vec<(String, T)>, StoreError> {
        self.entries(cf)?
            .into_iter()
            .map(|(k, v)| {
                // A record that does not decode is named by its key.
                let key = String::from_utf8_lossy(&k).into_owned();
                let record = records::decode(&key, &v).map_err(internal)?;
                Ok((key, record))
            })
            .collect()
    }

    /// Writes `batch` atomically, synced before it returns.
    pub(super) fn write(&self, batch: Batch) -> Result<(), StoreError> {
        self.write_opt(batch, true)
    }

    /// Writes `batch` atomically without waiting for the disk: for bookkeeping the next
    /// open redoes if a crash loses it.
    pub(super) fn write_lazy(&self, batch: Batch) -> Result<(), StoreError> {
        self.write_opt(batch, false)
    }

    fn write_opt(&self, batch: Batch, synced: bool) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        match self {
            Meta::Rocks(db) => {
                let mut out = WriteBatch::default();
                for change in batch.changes {
                    match change {
                        Change::Put(Cf::Default, k, v) => out.put(k, v),
                        Change::Put(cf, k, v) => out.put_cf(handle(db, cf)?, k, v),
                        Change::Delete(Cf::Default, k) => out.delete(k),
                        Change::Delete(cf, k) => out.delete_cf(handle(db, cf)?, k),
                        Change::Merge(Cf::Default, k, v) => out.merge(k, v),
                        Change::Merge(cf, k, v) => out.merge_cf(handle(db, cf)?, k, v),
                    }
                }
                let opts = if synced {
                    db::sync_writes()
                } else {
                    rocksdb::WriteOptions::default()
                };
                db.write_opt(out, &opts).map_err(internal)
            }
            // PostgreSQL commits every batch durably (its own WAL flush).
            Meta::Shared(pg) => {
                let mut out = BytesBatch::default();
                for expect in batch.expects {
                    out.checks.push(match expect {
                        Expect::Same(cf, key, value, exclusive) => Check::Same {
                            space: cf.space().to_owned(),
                            key,
                            value,
                            exclusive,
                        },
                        Expect::Count(cf, prefix, count) => Check::Count {
                            space: cf.space().to_owned(),
                            upper: db::prefix_end(&prefix),
                            from: prefix,
                            count: i64::try_from(count).unwrap_or(i64::MAX),
                        },
                    });
                }
                for change in batch.changes {
                    out.changes.push(match change {
                        Change::Put(cf, k, v) => BytesChange::Put(cf.space().to_owned(), k, v),
                        Change::Delete(cf, k) => BytesChange::Delete(cf.space().to_owned(), k),
                        Change::Merge(cf, k, v) => {
                            BytesChange::Merge(cf.space().to_owned(), k, v, super::usage::merge_one)
                        }
                    });
                }
                pg.bytes_write(out).map_err(failed)
            }
        }
    }
}

/// A PostgreSQL failure as the store's error: a failed check is a conflict to decide again.
fn failed(err: records::RecordError) -> StoreError {
    match err {
        records::RecordError::Conflict => StoreError::Conflict,
        other => internal(other),
    }
}

/// The RocksDB handle of a named column family.
fn handle(db: &DB, cf: Cf) -> Result<&rocksdb::ColumnFamily, StoreError> {
    db::cf(db, cf.name())
}

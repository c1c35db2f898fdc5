//! Where the store's records live, behind one interface: point reads, ordered cursors and
//! atomic batches over the column families of [`super::db`]. The store's logic (locks,
//! versions, usage, multipart) is written once against it; the engine underneath is
//! RocksDB on this host.
//!
//! A batch is a list of changes, not an engine's own batch, so that the logic that builds it
//! names column families ([`Cf`]) rather than an engine's handles.

use std::ops::Deref;

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
}

/// One change of a [`Batch`].
pub(super) enum Change {
    /// Store the value under the key.
    Put(Cf, Vec<u8>, Vec<u8>),
    /// Remove the key.
    Delete(Cf, Vec<u8>),
    /// Combine the value with the stored one by the column family's merge operator (only
    /// [`Cf::Usage`] has one: [`super::usage::merge`]).
    Merge(Cf, Vec<u8>, Vec<u8>),
}

/// Changes written together or not at all, in order.
#[derive(Default)]
pub(super) struct Batch {
    changes: Vec<Change>,
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
}

/// A value read: pinned in the engine's cache where it can be, so that HEAD and GET of a
/// small object copy nothing.
pub(super) enum Value<'a> {
    Pinned(DBPinnableSlice<'a>),
}

impl Deref for Value<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Value::Pinned(v) => v,
        }
    }
}

/// A position in one column family's keys, in byte order, bounded above; moved by
/// [`Cursor::seek`] and [`Cursor::next`]. An engine failure ends it: [`Cursor::key`] is
/// `None` and [`Cursor::status`] says why.
pub(super) enum Cursor<'a> {
    Rocks(DBRawIteratorWithThreadMode<'a, DB>),
}

impl Cursor<'_> {
    /// Moves to the first key at or after `key`.
    pub(super) fn seek(&mut self, key: impl AsRef<[u8]>) {
        let key = key.as_ref();
        match self {
            Cursor::Rocks(it) => it.seek(key),
        }
    }

    /// Moves to the next key.
    pub(super) fn next(&mut self) {
        match self {
            Cursor::Rocks(it) => it.next(),
        }
    }

    /// The key here, `None` past the end.
    pub(super) fn key(&self) -> Option<&[u8]> {
        match self {
            Cursor::Rocks(it) => it.key(),
        }
    }

    /// The value here, `None` past the end.
    pub(super) fn value(&self) -> Option<&[u8]> {
        match self {
            Cursor::Rocks(it) => it.value(),
        }
    }

    /// Whether the cursor ended by an engine failure rather than at the end.
    pub(super) fn status(&self) -> Result<(), StoreError> {
        match self {
            Cursor::Rocks(it) => it.status().map_err(internal),
        }
    }
}

/// A key and its value.
pub(super) type Entry = (Vec<u8>, Vec<u8>);

/// The engine holding the records.
pub(super) enum Meta {
    /// RocksDB on this host (`dir/db`).
    Rocks(DB),
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
        }
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
                Ok((
                    String::from_utf8_lossy(&k).into_owned(),
                    db::decode_json(&v)?,
                ))
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
        }
    }
}

/// The RocksDB handle of a named column family.
fn handle(db: &DB, cf: Cf) -> Result<&rocksdb::ColumnFamily, StoreError> {
    db::cf(db, cf.name())
}

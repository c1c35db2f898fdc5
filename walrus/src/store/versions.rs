//! Versions of a key: where each one lives, how a write or a delete moves them, and
//! ListObjectVersions.
//!
//! A key's current version is in `objects` (so GET, HEAD and ListObjects read one record, as
//! in a never-versioned bucket), unless it is a delete marker; every other version is in
//! `versions`, newest first. Each version has a `seq`: its write time in nanoseconds, unique
//! and increasing within its key (a write under the key's lock takes the later of the clock
//! and the newest `seq` plus one), which is also its `last_modified` and, for ids Walrus
//! hands out, the first half of its id. So a version is found by id with one point read.
//!
//! Every change of a key's versions is one synced batch under the key's lock: the moved
//! records, the removed ones with their data files retired, and the change of usage.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::data::FileId;
use super::db::{self, ObjectRecord};
use super::meta::{Batch, Cf};
use super::objects::size_delta;
use super::usage::Delta;
use super::{
    buckets, internal, read_lock, retrying, DeleteCondition, Deleted, Inner, ObjectMeta,
    StorageQuotas, StoreError, VersionPage, VersionQuery, VersionRef, Versioning,
};
use crate::acl::Acl;
use crate::names::{BucketName, ObjectKey};

/// Length of a version id: 16 hex digits of `seq`, 16 of randomness (so that an id, once
/// deleted, never names another version).
const ID_LEN: usize = 32;

/// A fresh version id for a version written at `seq`.
fn new_id(seq: u64) -> String {
    format!("{seq:016x}{:016x}", rand::random::<u64>())
}

/// The `seq` a version id names, if it is one of ours.
pub(super) fn seq_of(id: &str) -> Option<u64> {
    if id.len() != ID_LEN || !id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(&id[..16], 16).ok()
}

/// A version's `seq`: its write time in nanoseconds.
pub(super) fn seq(meta: &ObjectMeta) -> u64 {
    meta.last_modified
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn time_of(seq: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(seq)
}

/// One version entry as read from `versions`: its `seq`, its metadata and raw record.
struct Entry {
    seq: u64,
    meta: ObjectMeta,
    raw: Vec<u8>,
}

/// The key's current record in `objects`, raw, with its metadata.
fn current(inner: &Inner, bucket: &str, key: &str) -> Result<Option<Entry>, StoreError> {
    let okey = db::object_key(bucket, key);
    match inner.db.get(Cf::Objects, okey)? {
        Some(raw) => {
            let raw = raw.to_vec();
            let meta = ObjectRecord::decode_meta(&raw)?;
            Ok(Some(Entry {
                seq: seq(&meta),
                meta,
                raw,
            }))
        }
        None => Ok(None),
    }
}

/// The metadata of the key's current record in `objects`, read in place (GET and HEAD).
fn current_meta(inner: &Inner, bucket: &str, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
    let okey = db::object_key(bucket, key);
    match inner.db.get(Cf::Objects, okey)? {
        Some(v) => Ok(Some(ObjectRecord::decode_meta(&v)?)),
        None => Ok(None),
    }
}

/// The key's entries in `versions`, newest first, at most `limit`.
fn entries(inner: &Inner, bucket: &str, key: &str, limit: usize) -> Result<Vec<Entry>, StoreError> {
    let prefix = db::escaped_key(bucket, key);
    let mut it = inner.db.cursor(Cf::Versions, db::prefix_end(&prefix))?;
    it.seek(&prefix);
    let mut out = Vec::new();
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        if out.len() == limit {
            break;
        }
        let (_, seq) = db::split_version_key(k, db::bucket_prefix(bucket).len())?;
        out.push(Entry {
            seq,
            meta: ObjectRecord::decode_meta(v)?,
            raw: v.to_vec(),
        });
        it.next();
    }
    it.status()?;
    Ok(out)
}

/// The entry of version `version` in `versions`, if there is one.
fn entry(
    inner: &Inner,
    bucket: &str,
    key: &str,
    version: &VersionRef,
) -> Result<Option<Entry>, StoreError> {
    match version {
        VersionRef::Id(id) => {
            let Some(seq) = seq_of(id) else {
                return Ok(None);
            };
            let vkey = db::version_key(bucket, key, seq);
            match inner.db.get(Cf::Versions, vkey)? {
                Some(raw) => {
                    let meta = ObjectRecord::decode_meta(&raw)?;
                    Ok(version.names(&meta).then_some(Entry {
                        seq,
                        meta,
                        raw: raw.to_vec(),
                    }))
                }
                None => Ok(None),
            }
        }
        // A key has at most one null version; finding it among the others is a scan of the
        // key's versions (their metadata read in place), which only a suspended bucket's
        // writes and requests naming the null version need.
        VersionRef::Null => {
            let prefix = db::escaped_key(bucket, key);
            let mut it = inner.db.cursor(Cf::Versions, db::prefix_end(&prefix))?;
            it.seek(&prefix);
            while let (Some(k), Some(v)) = (it.key(), it.value()) {
                let meta = ObjectRecord::decode_meta(v)?;
                if meta.version_id.is_none() {
                    let (_, seq) = db::split_version_key(k, db::bucket_prefix(bucket).len())?;
                    return Ok(Some(Entry {
                        seq,
                        meta,
                        raw: v.to_vec(),
                    }));
                }
                it.next();
            }
            it.status()?;
            Ok(None)
        }
    }
}

/// How a write changes a key's versions: decided under the key's lock by [`place`].
pub(super) struct Placement {
    /// The new version's metadata fields: `last_modified` and `version_id`.
    pub last_modified: SystemTime,
    /// `None` for a null version.
    pub version_id: Option<String>,
    /// Data files no longer referenced (a replaced null version's).
    pub retired: Vec<FileId>,
    /// Bytes those versions held.
    pub freed: u64,
}

/// Adds to `batch` what writing a new current version of `bucket/key` (a record, or a
/// delete marker when `marker`) does to the versions already there, under `versioning`:
/// the current record moves to `versions`, a null version is replaced. The caller holds
/// the key's lock and writes the new record itself (`objects` for a record, `versions` for
/// a marker, at the returned time's `seq`).
pub(super) fn place(
    inner: &Inner,
    batch: &mut Batch,
    bucket: &str,
    key: &str,
    versioning: Option<Versioning>,
) -> Result<Placement, StoreError> {
    let now = seq_of_time(SystemTime::now());
    let Some(state) = versioning else {
        // Never versioned: the new record simply replaces the current one (read in place:
        // only its files and size matter).
        let okey = db::object_key(bucket, key);
        let (retired, freed) = match inner.db.get(Cf::Objects, okey)? {
            Some(v) => (
                ObjectRecord::decode_files(&v)?,
                ObjectRecord::decode_meta(&v)?.size,
            ),
            None => (Vec::new(), 0),
        };
        return Ok(Placement {
            last_modified: time_of(now),
            version_id: None,
            retired,
            freed,
        });
    };
    let cur = current(inner, bucket, key)?;
    let newest = entries(inner, bucket, key, 1)?;
    let top = cur
        .iter()
        .chain(newest.iter())
        .map(|e| e.seq)
        .max()
        .unwrap_or(0);
    let seq = now.max(top.saturating_add(1));
    let mut placement = Placement {
        last_modified: time_of(seq),
        version_id: (state == Versioning::Enabled).then(|| new_id(seq)),
        retired: Vec::new(),
        freed: 0,
    };
    if let Some(c) = cur {
        if state == Versioning::Suspended && c.meta.version_id.is_none() {
            c.meta.lock.allows_delete(false)?;
            placement.retired = ObjectRecord::decode_files(&c.raw)?;
            placement.freed = c.meta.size;
        } else {
            batch.put(Cf::Versions, db::version_key(bucket, key, c.seq), &c.raw);
        }
    }
    if state == Versioning::Suspended {
        if let Some(null) = entry(inner, bucket, key, &VersionRef::Null)? {
            null.meta.lock.allows_delete(false)?;
            batch.delete(Cf::Versions, db::version_key(bucket, key, null.seq));
            placement
                .retired
                .extend(ObjectRecord::decode_files(&null.raw)?);
            placement.freed += null.meta.size;
        }
    }
    Ok(placement)
}

fn seq_of_time(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The current version of `bucket/key`, or the version `version`; either may be a delete
/// marker (`NoSuchKey` or `NoSuchVersion` when there is none).
pub(super) fn meta(
    inner: &Inner,
    bucket: &BucketName,
    key: &ObjectKey,
    version: Option<&VersionRef>,
) -> Result<ObjectMeta, StoreError> {
    let (b, k) = (bucket.as_str(), key.as_str());
    let found = match version {
        None => match current_meta(inner, b, k)? {
            Some(meta) => Some(meta),
            // A delete marker on top hides the key; GET says so.
            None => entries(inner, b, k, 1)?
                .into_iter()
                .next()
                .filter(|e| e.meta.delete_marker)
                .map(|e| e.meta),
        },
        Some(v) => match current_meta(inner, b, k)?.filter(|m| v.names(m)) {
            Some(meta) => Some(meta),
            None => entry(inner, b, k, v)?.map(|e| e.meta),
        },
    };
    match found {
        Some(meta) => Ok(meta),
        None => {
            buckets::require(inner, b)?;
            Err(match version {
                None => StoreError::NoSuchKey,
                Some(_) => StoreError::NoSuchVersion,
            })
        }
    }
}

/// The stored record of the version `meta` describes, wherever it is now (a write may have
/// moved it from `objects` to `versions` since `meta` was read, or a delete back).
pub(super) fn record_of(
    inner: &Inner,
    bucket: &str,
    key: &str,
    meta: &ObjectMeta,
) -> Result<Option<ObjectRecord>, StoreError> {
    let okey = db::object_key(bucket, key);
    let same = |r: &ObjectRecord| {
        r.meta.etag == meta.etag
            && r.meta.size == meta.size
            && r.meta.last_modified == meta.last_modified
    };
    let in_objects = || -> Result<Option<ObjectRecord>, StoreError> {
        match inner.db.get(Cf::Objects, &okey)? {
            Some(v) => Ok(Some(ObjectRecord::decode(&v)?).filter(same)),
            None => Ok(None),
        }
    };
    if let Some(r) = in_objects()? {
        return Ok(Some(r));
    }
    let vkey = db::version_key(bucket, key, seq(meta));
    if let Some(v) = inner.db.get(Cf::Versions, vkey)? {
        return Ok(Some(ObjectRecord::decode(&v)?).filter(same));
    }
    // Promoted back to `objects` between the two reads.
    in_objects()
}

/// Changes the metadata of the current version or of `version` in place.
pub(super) fn update(
    inner: &Inner,
    bucket: &BucketName,
    key: &ObjectKey,
    version: Option<&VersionRef>,
    change: impl FnOnce(&mut ObjectMeta) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let (b, k) = (bucket.as_str(), key.as_str());
    let _key = inner.key_lock(b, k);
    let mut batch = Batch::default();
    inner.expect_key(&mut batch, b, k)?;
    let (cf, dbkey, raw) =
        match current(inner, b, k)?.filter(|c| version.is_none_or(|v| v.names(&c.meta))) {
            Some(c) => (Cf::Objects, db::object_key(b, k), c.raw),
            None => match version
                .map(|v| entry(inner, b, k, v))
                .transpose()?
                .flatten()
            {
                Some(e) => (Cf::Versions, db::version_key(b, k, e.seq), e.raw),
                None => {
                    buckets::require(inner, b)?;
                    return Err(match version {
                        None => StoreError::NoSuchKey,
                        Some(_) => StoreError::NoSuchVersion,
                    });
                }
            },
        };
    let mut record = ObjectRecord::decode(&raw)?;
    if record.meta.delete_marker {
        // A marker has no tags or ACL of its own to change.
        return Err(StoreError::MethodNotAllowed);
    }
    change(&mut record.meta)?;
    // Not decided again on a conflict (`change` runs once): the client retries. A current
    // record is expected by `expect_key`; a version's, as read here.
    if inner.db.is_shared() && cf == Cf::Versions {
        batch.expect(cf, &dbkey, Some(&raw));
    }
    batch.put(cf, dbkey, record.encode()?);
    inner.write(batch)
}

/// Writes `batch` (synced) with the data files of removed versions retired and their bytes
/// taken off the bucket owner's usage.
fn commit(
    inner: &Inner,
    mut batch: Batch,
    owner: &str,
    freed: u64,
    retired: &[FileId],
) -> Result<(), StoreError> {
    let counted = inner.usage.reserve(
        Delta {
            account: owner.to_owned(),
            bytes: -size_delta(freed),
            buckets: 0,
        },
        &StorageQuotas::UNLIMITED,
    )?;
    inner.retire(&mut batch, retired);
    counted.add_to(&mut batch);
    inner.write(batch)?;
    counted.keep();
    Ok(())
}

/// Adds to `batch`: the newest version in `versions` other than the one at `removed` becomes
/// current, when it is not a delete marker. For a key whose current record is going.
fn promote(
    inner: &Inner,
    batch: &mut Batch,
    bucket: &str,
    key: &str,
    removed: Option<u64>,
) -> Result<(), StoreError> {
    let next = entries(inner, bucket, key, 2)?
        .into_iter()
        .find(|e| Some(e.seq) != removed);
    if let Some(e) = next.filter(|e| !e.meta.delete_marker) {
        batch.delete(Cf::Versions, db::version_key(bucket, key, e.seq));
        batch.put(Cf::Objects, db::object_key(bucket, key), &e.raw);
    }
    Ok(())
}

/// A delete marker written at `last_modified` by `owner`.
fn marker(last_modified: SystemTime, version_id: Option<String>, owner: &str) -> ObjectRecord {
    ObjectRecord {
        meta: ObjectMeta {
            size: 0,
            etag: String::new(),
            last_modified,
            headers: Default::default(),
            checksum: None,
            acl: Acl {
                owner: owner.to_owned(),
                grants: Vec::new(),
            },
            part_sizes: Vec::new(),
            part_etags: Vec::new(),
            part_checksums: Vec::new(),
            tags: Vec::new(),
            version_id,
            delete_marker: true,
            lock: Default::default(),
        },
        body: db::Body::Inline(Vec::new()),
    }
}

/// Deletes `bucket/key` as DeleteObject without a version does: the object goes from a
/// never-versioned bucket; a versioned one gets a delete marker on top (with an id when
/// versioning is enabled, as the null version when suspended), owned by `owner`.
pub(super) fn delete_current(
    inner: &Inner,
    bucket: &BucketName,
    key: &ObjectKey,
    owner: &str,
    condition: &DeleteCondition,
) -> Result<Deleted, StoreError> {
    let (b, k) = (bucket.as_str(), key.as_str());
    // Shared: a delete marker is a record, which a bucket being deleted must not gain.
    let _gate = read_lock(&inner.gate);
    let (retired, deleted) = retrying(|| {
        let mut batch = Batch::default();
        let bmeta = buckets::get_expected(inner, b, &mut batch)?;
        let _key = inner.key_lock(b, k);
        inner.expect_key(&mut batch, b, k)?;
        let target = match current(inner, b, k)? {
            Some(c) => Some(c.meta),
            None if bmeta.versioning.is_some() => {
                entries(inner, b, k, 1)?.into_iter().next().map(|e| e.meta)
            }
            None => None,
        };
        match &target {
            Some(t) => condition.check(t)?,
            // Nothing to delete: a no-op whatever was asked, but for the marker a versioned
            // bucket puts on any key deleted without conditions.
            None if bmeta.versioning.is_none() || !condition.is_empty() => {
                return Ok((Vec::new(), Deleted::default()))
            }
            None => {}
        }
        let placement = place(inner, &mut batch, b, k, bmeta.versioning)?;
        let deleted = match bmeta.versioning {
            None => Deleted::default(),
            Some(_) => {
                let marker = marker(placement.last_modified, placement.version_id.clone(), owner);
                batch.put(
                    Cf::Versions,
                    db::version_key(b, k, seq(&marker.meta)),
                    marker.encode()?,
                );
                Deleted {
                    version_id: placement.version_id,
                    delete_marker: true,
                }
            }
        };
        batch.delete(Cf::Objects, db::object_key(b, k));
        commit(
            inner,
            batch,
            &bmeta.acl.owner,
            placement.freed,
            &placement.retired,
        )?;
        Ok((placement.retired, deleted))
    })?;
    inner.reclaim(&retired);
    Ok(deleted)
}

/// Deletes version `version` of `bucket/key` for good (a delete marker too), unless its
/// object lock forbids it (`ObjectLocked`); when it was the current one, the next newest
/// becomes current. A version that is not there is no
/// error (S3 answers 204 alike): nothing is deleted, and the id asked for is echoed.
pub(super) fn delete_version(
    inner: &Inner,
    bucket: &BucketName,
    key: &ObjectKey,
    version: &VersionRef,
    condition: &DeleteCondition,
    bypass_governance: bool,
) -> Result<Deleted, StoreError> {
    let (b, k) = (bucket.as_str(), key.as_str());
    let (retired, deleted) = retrying(|| {
        let mut batch = Batch::default();
        let owner = buckets::get_expected(inner, b, &mut batch)?.acl.owner;
        let _key = inner.key_lock(b, k);
        inner.expect_key(&mut batch, b, k)?;
        let cur = current(inner, b, k)?;
        let cur_is_none = cur.is_none();
        let gone = match cur.filter(|c| version.names(&c.meta)) {
            Some(c) => {
                condition.check(&c.meta)?;
                c.meta.lock.allows_delete(bypass_governance)?;
                batch.delete(Cf::Objects, db::object_key(b, k));
                promote(inner, &mut batch, b, k, None)?;
                c
            }
            None => {
                let Some(e) = entry(inner, b, k, version)? else {
                    let asked = Deleted {
                        version_id: match version {
                            VersionRef::Null => None,
                            VersionRef::Id(id) => Some(id.clone()),
                        },
                        delete_marker: false,
                    };
                    return Ok((Vec::new(), asked));
                };
                if inner.db.is_shared() {
                    let vkey = db::version_key(b, k, e.seq);
                    batch.expect_alone(Cf::Versions, vkey, Some(&e.raw));
                }
                condition.check(&e.meta)?;
                e.meta.lock.allows_delete(bypass_governance)?;
                batch.delete(Cf::Versions, db::version_key(b, k, e.seq));
                // A marker on top may have gone: the version below it is current again.
                if cur_is_none {
                    promote(inner, &mut batch, b, k, Some(e.seq))?;
                }
                e
            }
        };
        let retired = ObjectRecord::decode_files(&gone.raw)?;
        commit(inner, batch, &owner, gone.meta.size, &retired)?;
        Ok((
            retired,
            Deleted {
                version_id: gone.meta.version_id,
                delete_marker: gone.meta.delete_marker,
            },
        ))
    })?;
    inner.reclaim(&retired);
    Ok(deleted)
}

/// One key's position in a ListObjectVersions scan: its name and where its entries are.
struct Cursor {
    /// Decoded key of the `objects` iterator's entry, if any.
    object: Option<String>,
    /// Decoded key and `seq` of the `versions` iterator's entry, if any.
    version: Option<(String, u64)>,
}

/// ListObjectVersions: the `objects` and `versions` column families scanned side by side in
/// key order; within a key the current record comes first, then the others newest first.
pub(super) fn list(
    inner: &Inner,
    bucket: &BucketName,
    q: &VersionQuery,
) -> Result<VersionPage, StoreError> {
    let b = bucket.as_str();
    buckets::require(inner, b)?;
    let mut page = VersionPage::default();
    if q.max_keys == 0 {
        return Ok(page);
    }
    let base = db::bucket_prefix(b).len();
    let mut objects = inner
        .db
        .cursor(Cf::Objects, db::prefix_end(&db::object_key(b, &q.prefix)))?;
    let mut versions = inner.db.cursor(
        Cf::Versions,
        db::prefix_end(&db::escaped_prefix(b, &q.prefix)),
    )?;

    // A key marker before the prefix changes nothing: every key with the prefix is after it.
    let key_marker = q.key_marker.as_deref().filter(|m| *m >= q.prefix.as_str());
    // Whether the first key's newest version was on an earlier page.
    let mut resumed = None;
    match key_marker {
        None => {
            objects.seek(db::object_key(b, &q.prefix));
            versions.seek(db::escaped_prefix(b, &q.prefix));
        }
        Some(m) => {
            let okey = db::object_key(b, m);
            let cur = current(inner, b, m)?;
            // Where in the marker key's history to resume: `None` past all of it; else after
            // the entry of that `seq` (entries are newest first, so the older ones).
            let at = match &q.version_marker {
                None => None,
                Some(v) if cur.as_ref().is_some_and(|c| v.names(&c.meta)) => {
                    cur.as_ref().map(|c| c.seq)
                }
                Some(VersionRef::Id(id)) => seq_of(id),
                // The null version; if it was deleted since the last page (a harness deletes
                // each page before asking for the next), every entry left of the key.
                Some(VersionRef::Null) => {
                    Some(entry(inner, b, m, &VersionRef::Null)?.map_or(u64::MAX, |e| e.seq))
                }
            };
            // The marker key's current record was listed unless it is older than the marker
            // (promoted there since, by a delete of the versions above it).
            objects.seek(&okey);
            let keep_current = matches!((&cur, at), (Some(c), Some(seq)) if c.seq < seq);
            if objects.key() == Some(&okey[..]) && !keep_current {
                objects.next();
            }
            match at {
                None => versions.seek(db::prefix_end(&db::escaped_key(b, m)).unwrap_or_default()),
                Some(seq) => {
                    let vkey = db::version_key(b, m, seq);
                    versions.seek(&vkey);
                    if versions.key() == Some(&vkey[..]) {
                        versions.next();
                    }
                }
            }
            if at.is_some() {
                resumed = Some(m.to_owned());
            }
        }
    }

    let delimiter = q.delimiter.as_deref().filter(|d| !d.is_empty());
    let mut count = 0usize;
    loop {
        let cursor = Cursor {
            object: match objects.key() {
                Some(raw) => Some(
                    std::str::from_utf8(&raw[base..])
                        .map_err(internal)?
                        .to_owned(),
                ),
                None => None,
            },
            version: match versions.key() {
                Some(raw) => Some(db::split_version_key(raw, base)?),
                None => None,
            },
        };
        let key = match (&cursor.object, &cursor.version) {
            (None, None) => break,
            (Some(o), None) => o.clone(),
            (None, Some((v, _))) => v.clone(),
            (Some(o), Some((v, _))) => o.min(v).clone(),
        };
        let rolled = delimiter.and_then(|d| {
            let rest = key.get(q.prefix.len()..)?;
            rest.find(d)
                .map(|i| key[..q.prefix.len() + i + d.len()].to_owned())
        });
        if let Some(cp) = rolled {
            // Keys of a common prefix not after the marker were rolled up on an earlier page.
            if key_marker.is_none_or(|m| cp.as_str() > m) {
                if count == q.max_keys {
                    page.is_truncated = true;
                    break;
                }
                page.common_prefixes.push(cp.clone());
                page.next_marker = Some((cp.clone(), None));
                count += 1;
            }
            let mut past = db::object_key(b, &cp);
            past.push(0xFF);
            objects.seek(&past);
            versions.seek(db::escaped_past(b, &cp));
            continue;
        }
        let object_key =
            ObjectKey::parse(&key).ok_or_else(|| internal("stored object key is invalid"))?;
        let mut latest = resumed.as_deref() != Some(key.as_str());
        if cursor.object.as_deref() == Some(key.as_str()) {
            if count == q.max_keys {
                page.is_truncated = true;
                break;
            }
            let meta = ObjectRecord::decode_meta(objects.value().unwrap_or_default())?;
            page.next_marker = Some((key.clone(), Some(meta.version_label().to_owned())));
            // The record in `objects` is its key's current version by definition.
            page.versions.push((object_key.clone(), meta, true));
            latest = false;
            count += 1;
            objects.next();
        }
        let mut truncated = false;
        while let Some(raw) = versions.key() {
            let (k, _) = db::split_version_key(raw, base)?;
            if k != key {
                break;
            }
            if count == q.max_keys {
                truncated = true;
                break;
            }
            let meta = ObjectRecord::decode_meta(versions.value().unwrap_or_default())?;
            page.next_marker = Some((key.clone(), Some(meta.version_label().to_owned())));
            page.versions.push((object_key.clone(), meta, latest));
            latest = false;
            count += 1;
            versions.next();
        }
        if truncated {
            page.is_truncated = true;
            break;
        }
    }
    objects.status().map_err(internal)?;
    versions.status().map_err(internal)?;
    Ok(page)
}

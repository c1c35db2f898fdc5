//! Object records: commit, metadata, reads, ACL changes and deletes.
//!
//! Replacing or deleting an object writes, in one synced batch, the record change, a
//! `pending` entry for each data file of the old version and the change of the bucket
//! owner's usage; the files are unlinked after the write and the entries cleared. A crash
//! in between leaves the entries for the next open.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use rocksdb::WriteBatch;

use super::data::{self, Segment};
use super::db::{self, Body, Extent, ObjectRecord, CF_FILES, CF_OBJECTS};
use super::usage::Delta;
use super::{
    buckets, internal, read_lock, BodyStream, Inner, NewObject, ObjectMeta, Staged, StagedData,
    StorageQuotas, StoreError,
};
use crate::names::{BucketName, ObjectKey};

pub(super) fn commit(
    inner: &Inner,
    bucket: &BucketName,
    key: &ObjectKey,
    staged: Staged,
    object: NewObject,
    quotas: &StorageQuotas,
) -> Result<ObjectMeta, StoreError> {
    let _gate = read_lock(&inner.gate);
    buckets::require(inner, bucket.as_str())?;
    let size = staged.size;
    let body = match staged.data {
        StagedData::Inline(bytes) => Body::Inline(bytes.to_vec()),
        StagedData::File(temp) => Body::Files(vec![Extent {
            id: inner.layout.install(temp).map_err(internal)?,
            size,
        }]),
    };
    let record = ObjectRecord {
        meta: ObjectMeta {
            size,
            etag: hex::encode(staged.digests.md5),
            last_modified: SystemTime::now(),
            headers: object.headers,
            checksum: object.checksum,
            acl: object.acl,
            part_sizes: Vec::new(),
            part_etags: Vec::new(),
            part_checksums: Vec::new(),
            tags: object.tags,
        },
        body,
    };
    let stored = Stored {
        batch: WriteBatch::default(),
        added: size_delta(size),
        quotas,
    };
    if let Err(e) = put(inner, bucket.as_str(), key.as_str(), &record, stored) {
        // The installed file was never referenced; don't leave it for the next open.
        for id in record.files() {
            let _ = inner.layout.unlink(id);
        }
        return Err(e);
    }
    Ok(record.meta)
}

/// How a record is written by [`put`]: with what else, adding how many bytes to the bucket
/// owner's usage (before the replaced version's are freed), within which quotas.
pub(super) struct Stored<'a> {
    /// Written in the same batch.
    pub batch: WriteBatch,
    /// Bytes the write adds: the object's size for a new body; for a completed upload,
    /// minus the parts left out (the parts' bytes were counted as they came).
    pub added: i64,
    /// What the bucket's owner may hold.
    pub quotas: &'a StorageQuotas,
}

/// A size as a change of usage.
pub(super) fn size_delta(size: u64) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX)
}

/// Writes `record` as `bucket/key` together with `stored.batch`, replacing any previous
/// version and reclaiming its files, and counts the change in the bucket owner's usage
/// (`QuotaExceeded` when it would grow past the quota). The caller holds the gate (shared)
/// and has checked the bucket.
pub(super) fn put(
    inner: &Inner,
    bucket: &str,
    key: &str,
    record: &ObjectRecord,
    stored: Stored<'_>,
) -> Result<(), StoreError> {
    let Stored {
        mut batch,
        added,
        quotas,
    } = stored;
    let owner = buckets::get(inner, bucket)?.acl.owner;
    let old = {
        let _key = inner.key_lock(bucket, key);
        let objects = inner.cf(CF_OBJECTS)?;
        let files = inner.cf(CF_FILES)?;
        let okey = db::object_key(bucket, key);
        let (old, old_size) = match inner.db.get_pinned_cf(objects, &okey).map_err(internal)? {
            Some(v) => (
                ObjectRecord::decode_files(&v)?,
                ObjectRecord::decode_meta(&v)?.size,
            ),
            None => (Vec::new(), 0),
        };
        let counted = inner.usage.reserve(
            Delta {
                account: owner,
                bytes: added.saturating_sub(size_delta(old_size)),
                buckets: 0,
            },
            quotas,
        )?;
        batch.put_cf(objects, &okey, record.encode()?);
        for id in record.files() {
            batch.put_cf(files, id.0, db::MARKER);
        }
        inner.retire(&mut batch, &old)?;
        counted.add_to(&inner.db, &mut batch)?;
        inner.write(batch)?;
        counted.keep();
        old
    };
    inner.reclaim(&old);
    Ok(())
}

pub(super) fn meta(
    inner: &Inner,
    bucket: &BucketName,
    key: &ObjectKey,
) -> Result<ObjectMeta, StoreError> {
    let objects = inner.cf(CF_OBJECTS)?;
    let okey = db::object_key(bucket.as_str(), key.as_str());
    match inner.db.get_pinned_cf(objects, okey).map_err(internal)? {
        Some(v) => ObjectRecord::decode_meta(&v),
        None => {
            buckets::require(inner, bucket.as_str())?;
            Err(StoreError::NoSuchKey)
        }
    }
}

/// Whether two records describe the same stored version.
fn same_version(a: &ObjectMeta, b: &ObjectMeta) -> bool {
    a.etag == b.etag && a.size == b.size && a.last_modified == b.last_modified
}

pub(super) fn read(
    inner: &Inner,
    bucket: &BucketName,
    key: &ObjectKey,
    meta: &ObjectMeta,
    offset: u64,
    len: u64,
) -> Result<BodyStream, StoreError> {
    let end = offset
        .checked_add(len)
        .filter(|&end| end <= meta.size)
        .ok_or_else(|| internal("read range beyond the end of the object"))?;
    let objects = inner.cf(CF_OBJECTS)?;
    let okey = db::object_key(bucket.as_str(), key.as_str());
    let record = match inner.db.get_pinned_cf(objects, okey).map_err(internal)? {
        Some(v) => ObjectRecord::decode(&v)?,
        None => return Err(StoreError::NoSuchKey),
    };
    if !same_version(&record.meta, meta) {
        // Replaced since `meta` was read: that version's bytes may be gone already.
        return Err(StoreError::NoSuchKey);
    }
    match record.body {
        Body::Inline(data) => {
            let chunk = Bytes::from(data).slice(offset as usize..end as usize);
            let items = (!chunk.is_empty()).then_some(Ok(chunk));
            Ok(Box::pin(futures_util::stream::iter(items)))
        }
        Body::Files(extents) => {
            let mut segments = Vec::new();
            let mut start = 0u64;
            for e in extents {
                let (s, t) = (start, start + e.size);
                start = t;
                if t <= offset || s >= end {
                    continue;
                }
                let file = inner.layout.open(e.id).map_err(|err| {
                    if err.kind() == std::io::ErrorKind::NotFound {
                        // Deleted between the record read and the open.
                        StoreError::NoSuchKey
                    } else {
                        internal(err)
                    }
                })?;
                let from = offset.max(s) - s;
                segments.push(Segment {
                    file: Arc::new(file),
                    offset: from,
                    len: end.min(t) - s - from,
                });
            }
            Ok(data::stream_segments(segments))
        }
    }
}

pub(super) fn update(
    inner: &Inner,
    bucket: &BucketName,
    key: &ObjectKey,
    change: impl FnOnce(&mut ObjectMeta) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let _key = inner.key_lock(bucket.as_str(), key.as_str());
    let objects = inner.cf(CF_OBJECTS)?;
    let okey = db::object_key(bucket.as_str(), key.as_str());
    let mut record = match inner.db.get_pinned_cf(objects, &okey).map_err(internal)? {
        Some(v) => ObjectRecord::decode(&v)?,
        None => {
            buckets::require(inner, bucket.as_str())?;
            return Err(StoreError::NoSuchKey);
        }
    };
    change(&mut record.meta)?;
    inner
        .db
        .put_cf_opt(objects, okey, record.encode()?, &db::sync_writes())
        .map_err(internal)
}

pub(super) fn delete(
    inner: &Inner,
    bucket: &BucketName,
    key: &ObjectKey,
) -> Result<bool, StoreError> {
    let old = {
        let _key = inner.key_lock(bucket.as_str(), key.as_str());
        let objects = inner.cf(CF_OBJECTS)?;
        let okey = db::object_key(bucket.as_str(), key.as_str());
        let Some(v) = inner.db.get_pinned_cf(objects, &okey).map_err(internal)? else {
            buckets::require(inner, bucket.as_str())?;
            return Ok(false);
        };
        let old = ObjectRecord::decode_files(&v)?;
        let size = ObjectRecord::decode_meta(&v)?.size;
        let owner = buckets::get(inner, bucket.as_str())?.acl.owner;
        let counted = inner.usage.reserve(
            Delta {
                account: owner,
                bytes: -size_delta(size),
                buckets: 0,
            },
            &StorageQuotas::UNLIMITED,
        )?;
        let mut batch = WriteBatch::default();
        batch.delete_cf(objects, okey);
        inner.retire(&mut batch, &old)?;
        counted.add_to(&inner.db, &mut batch)?;
        inner.write(batch)?;
        counted.keep();
        old
    };
    inner.reclaim(&old);
    Ok(true)
}

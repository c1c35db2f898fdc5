//! Object records: commit, metadata, reads, ACL changes and deletes.
//!
//! Replacing or deleting an object writes, in one synced batch, the record change, a
//! `pending` entry for each data file of the old version and the change of the bucket
//! owner's usage; the files are unlinked after the write and the entries cleared. A crash
//! in between leaves the entries for the next open.

use std::time::SystemTime;

use bytes::Bytes;

use super::data::{self, Segment};
use super::db::{self, Body, Extent, ObjectRecord};
use super::meta::{Batch, Cf};
use super::usage::Delta;
use super::{
    buckets, internal, read_lock, versions, BodyStream, Inner, NewObject, ObjectMeta, Staged,
    StagedData, StorageQuotas, StoreError, WriteCondition,
};
use super::{retrying, same_etag};
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
    let mut record = ObjectRecord {
        meta: ObjectMeta {
            size,
            etag: hex::encode(staged.digests.md5),
            // Set when the record is placed among the key's versions.
            last_modified: SystemTime::UNIX_EPOCH,
            headers: object.headers,
            checksum: object.checksum,
            acl: object.acl,
            part_sizes: Vec::new(),
            part_etags: Vec::new(),
            part_checksums: Vec::new(),
            tags: object.tags,
            version_id: None,
            delete_marker: false,
            lock: object.lock,
        },
        body,
    };
    let stored = Stored {
        batch: Batch::default(),
        added: size_delta(size),
        quotas,
        condition: &object.condition,
    };
    let put = retrying(|| put(inner, bucket.as_str(), key.as_str(), &mut record, &stored));
    if let Err(e) = put {
        // The installed file was never referenced; don't leave it for the next open.
        if !inner.may_have_committed(&e) {
            for id in record.files() {
                let _ = inner.layout.unlink(id);
            }
        }
        return Err(e);
    }
    Ok(record.meta)
}

/// How a record is written by [`put`]: with what else, adding how many bytes to the bucket
/// owner's usage (before the replaced version's are freed), within which quotas, if what.
pub(super) struct Stored<'a> {
    /// Written in the same batch.
    pub batch: Batch,
    /// Bytes the write adds: the object's size for a new body; for a completed upload,
    /// minus the parts left out (the parts' bytes were counted as they came).
    pub added: i64,
    /// What the bucket's owner may hold.
    pub quotas: &'a StorageQuotas,
    /// What must hold of the key's current version.
    pub condition: &'a WriteCondition,
}

/// A size as a change of usage.
pub(super) fn size_delta(size: u64) -> i64 {
    i64::try_from(size).unwrap_or(i64::MAX)
}

/// Writes `record` as the current version of `bucket/key` together with `stored.batch`,
/// giving it its time and version id: the version it replaces is kept (versioned bucket) or
/// its files reclaimed; counts the change in the bucket owner's usage (`QuotaExceeded` when
/// it would grow past the quota). The caller holds the gate (shared) and has checked the
/// bucket. A conflict with another front end's write ([`StoreError::Conflict`]) is the
/// caller's to decide again, from its own reads on (`stored.batch` may expect them too).
pub(super) fn put(
    inner: &Inner,
    bucket: &str,
    key: &str,
    record: &mut ObjectRecord,
    stored: &Stored<'_>,
) -> Result<(), StoreError> {
    let Stored {
        batch: with,
        added,
        quotas,
        condition,
    } = stored;
    let retired = {
        let mut batch = with.clone();
        let bmeta = buckets::get_expected(inner, bucket, &mut batch)?;
        let _key = inner.key_lock(bucket, key);
        let okey = db::object_key(bucket, key);
        inner.expect_key(&mut batch, bucket, key)?;
        check(inner, &okey, condition)?;
        let placement = versions::place(inner, &mut batch, bucket, key, bmeta.versioning)?;
        record.meta.last_modified = placement.last_modified;
        record.meta.version_id = placement.version_id.clone();
        let counted = inner.usage.reserve(
            Delta {
                account: bmeta.acl.owner,
                bytes: added.saturating_sub(size_delta(placement.freed)),
                buckets: 0,
            },
            quotas,
        )?;
        batch.put(Cf::Objects, &okey, record.encode()?);
        for id in record.files() {
            batch.put(Cf::Files, id.0, db::MARKER);
        }
        inner.retire(&mut batch, &placement.retired);
        counted.add_to(&mut batch);
        inner.write(batch)?;
        counted.keep();
        placement.retired
    };
    inner.reclaim(&retired);
    Ok(())
}

/// `PreconditionFailed` (or `NoSuchKey` for an `If-Match` on no object) unless the key's
/// current version is as `condition` asks. The caller holds the key's lock.
fn check(inner: &Inner, okey: &[u8], condition: &WriteCondition) -> Result<(), StoreError> {
    if *condition == WriteCondition::default() {
        return Ok(());
    }
    let current = match inner.db.get(Cf::Objects, okey)? {
        Some(v) => Some(ObjectRecord::decode_meta(&v)?),
        None => None,
    };
    let names = |given: &str, m: &ObjectMeta| given.trim() == "*" || same_etag(given, &m.etag);
    match (&current, condition.if_match.as_deref()) {
        (None, Some(_)) => return Err(StoreError::NoSuchKey),
        (Some(m), Some(given)) if !names(given, m) => return Err(StoreError::PreconditionFailed),
        _ => {}
    }
    match (&current, condition.if_none_match.as_deref()) {
        (Some(m), Some(given)) if names(given, m) => Err(StoreError::PreconditionFailed),
        _ => Ok(()),
    }
}

pub(super) fn meta(
    inner: &Inner,
    bucket: &BucketName,
    key: &ObjectKey,
) -> Result<ObjectMeta, StoreError> {
    let okey = db::object_key(bucket.as_str(), key.as_str());
    match inner.db.get(Cf::Objects, okey)? {
        Some(v) => ObjectRecord::decode_meta(&v),
        None => {
            buckets::require(inner, bucket.as_str())?;
            Err(StoreError::NoSuchKey)
        }
    }
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
    // Gone since `meta` was read: that version's bytes may be gone already.
    let record = versions::record_of(inner, bucket.as_str(), key.as_str(), meta)?
        .ok_or(StoreError::NoSuchKey)?;
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
                    file,
                    offset: from,
                    len: end.min(t) - s - from,
                });
            }
            Ok(data::stream_segments(segments))
        }
    }
}

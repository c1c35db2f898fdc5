//! Multipart uploads: each part is its own data file (small parts too), and completion writes
//! an object record that references the chosen part files in order — no byte is copied.
//! A part's bytes count in the bucket owner's usage from its upload on; completion moves
//! them to the object and frees those of the parts left out, an abort frees them all.
//!
//! Upload ids are 16 hex digits of the initiation time (nanoseconds) followed by 32 random
//! hex digits: unguessable, and sorting by id sorts an key's uploads by initiation.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use md5::{Digest as _, Md5};

use super::data::FileId;
use super::db::{self, Body, Extent, ObjectRecord, PartRecord};
use super::meta::{Batch, Cf};
use super::objects::size_delta;
use super::usage::Delta;
use super::{
    buckets, digest, internal, objects, read_lock, retrying, write_lock, ChecksumAlgorithm,
    ChecksumType, Inner, NewUpload, ObjectMeta, PartMeta, Staged, StagedData, StorageQuotas,
    StoreError, UploadMeta, WriteCondition,
};
use crate::names::{BucketName, ObjectKey};

/// S3's minimum size of every part but the last.
const MIN_PART_SIZE: u64 = 5 << 20;

/// Length of an upload id.
const ID_LEN: usize = 48;

fn new_upload_id(initiated: SystemTime) -> String {
    let nanos = initiated
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    format!("{nanos:016x}{}", hex::encode(rand::random::<[u8; 16]>()))
}

/// Whether `id` could be one of ours (anything else is looked up nowhere).
fn well_formed(id: &str) -> bool {
    id.len() == ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

pub(super) fn create(
    inner: &Inner,
    bucket: &BucketName,
    key: &ObjectKey,
    upload: NewUpload,
) -> Result<UploadMeta, StoreError> {
    let NewUpload {
        headers,
        checksum,
        acl,
        tags,
        lock,
    } = upload;
    let _gate = read_lock(&inner.gate);
    let mut batch = Batch::default();
    buckets::get_expected(inner, bucket.as_str(), &mut batch)?;
    let initiated = SystemTime::now();
    let meta = UploadMeta {
        upload_id: new_upload_id(initiated),
        bucket: bucket.as_str().to_owned(),
        key: key.as_str().to_owned(),
        initiated,
        headers,
        checksum_algorithm: checksum.map(|(alg, _)| alg),
        checksum_type: checksum.map(|(_, kind)| kind).unwrap_or_default(),
        acl,
        tags,
        lock,
    };
    let ukey = db::upload_key(&meta.bucket, &meta.key, &meta.upload_id);
    batch.put(Cf::Uploads, ukey, db::encode_json(&meta)?);
    inner.write(batch)?;
    Ok(meta)
}

pub(super) fn get(
    inner: &Inner,
    bucket: &BucketName,
    key: &ObjectKey,
    upload_id: &str,
) -> Result<UploadMeta, StoreError> {
    if well_formed(upload_id) {
        let ukey = db::upload_key(bucket.as_str(), key.as_str(), upload_id);
        if let Some(v) = inner.db.get(Cf::Uploads, ukey)? {
            return db::decode_json(&v);
        }
    }
    buckets::require(inner, bucket.as_str())?;
    Err(StoreError::NoSuchUpload)
}

/// `NoSuchUpload` unless the upload is still in progress; with shared records, `batch` then
/// expects it (alone: no part is committed meanwhile on another front end).
fn require_expected(
    inner: &Inner,
    upload: &UploadMeta,
    batch: &mut Batch,
    alone: bool,
) -> Result<(), StoreError> {
    let ukey = db::upload_key(&upload.bucket, &upload.key, &upload.upload_id);
    let Some(seen) = inner.db.get(Cf::Uploads, &ukey)? else {
        return Err(StoreError::NoSuchUpload);
    };
    if inner.db.is_shared() {
        match alone {
            true => batch.expect_alone(Cf::Uploads, &ukey, Some(&seen)),
            false => batch.expect(Cf::Uploads, &ukey, Some(&seen)),
        }
    }
    Ok(())
}

/// `NoSuchUpload` unless the upload is still in progress.
fn require(inner: &Inner, upload: &UploadMeta) -> Result<(), StoreError> {
    let ukey = db::upload_key(&upload.bucket, &upload.key, &upload.upload_id);
    match inner.db.get(Cf::Uploads, ukey)? {
        Some(_) => Ok(()),
        None => Err(StoreError::NoSuchUpload),
    }
}

pub(super) fn commit_part(
    inner: &Inner,
    upload: &UploadMeta,
    part_number: u32,
    staged: Staged,
    checksum: Option<String>,
    quotas: &StorageQuotas,
) -> Result<PartMeta, StoreError> {
    let meta = PartMeta {
        part_number,
        etag: hex::encode(staged.digests.md5),
        size: staged.size,
        last_modified: SystemTime::now(),
        checksum,
    };
    let temp = match staged.data {
        StagedData::Inline(bytes) => inner
            .layout
            .write_temp(inner.epoch, &bytes)
            .map_err(internal)?,
        StagedData::File(temp) => temp,
    };
    let _gate = read_lock(&inner.gate);
    require(inner, upload)?;
    // Installed before taking the upload's lock, so parts of one upload arriving together
    // fsync in parallel and share their WAL syncs.
    let id = inner.layout.install(temp).map_err(internal)?;
    let written = retrying(|| {
        let mut batch = Batch::default();
        let _upload = read_lock(inner.upload_lock(&upload.upload_id));
        require_expected(inner, upload, &mut batch, false)?;
        let owner = buckets::get(inner, &upload.bucket)?.acl.owner;
        let _part = inner.part_lock(&upload.upload_id, part_number);
        let pkey = db::part_key(&upload.upload_id, part_number);
        inner.expect_alone(&mut batch, Cf::Parts, &pkey)?;
        let (old, old_size) = match inner.db.get(Cf::Parts, &pkey)? {
            Some(v) => {
                let old = db::decode_json::<PartRecord>(&v)?;
                (vec![part_file(&old)?], old.meta.size)
            }
            None => (Vec::new(), 0),
        };
        let counted = inner.usage.reserve(
            Delta {
                account: owner,
                bytes: size_delta(meta.size).saturating_sub(size_delta(old_size)),
                buckets: 0,
            },
            quotas,
        )?;
        let record = PartRecord {
            meta: meta.clone(),
            file: id.hex(),
        };
        batch.put(Cf::Parts, pkey, db::encode_json(&record)?);
        batch.put(Cf::Files, id.0, db::MARKER);
        inner.retire(&mut batch, &old);
        counted.add_to(&mut batch);
        inner.write(batch)?;
        counted.keep();
        Ok(old)
    });
    match written {
        Ok(old) => {
            inner.reclaim(&old);
            Ok(meta)
        }
        Err(e) => {
            if !inner.may_have_committed(&e) {
                let _ = inner.layout.unlink(id);
            }
            Err(e)
        }
    }
}

fn part_file(record: &PartRecord) -> Result<FileId, StoreError> {
    FileId::parse(&record.file).ok_or_else(|| internal("bad file id in a part record"))
}

/// Every stored part of an upload with its database key, by part number; with shared
/// records, `batch` expects each as read and no other (a part replaced or added through
/// another front end meanwhile refuses the batch).
fn all_parts(
    inner: &Inner,
    upload_id: &str,
    batch: &mut Batch,
) -> Result<BTreeMap<u32, (Vec<u8>, PartRecord)>, StoreError> {
    let mut out = BTreeMap::new();
    let shared = inner.db.is_shared();
    scan_parts(inner, upload_id, 0, |k, v, rec| {
        if shared {
            batch.expect(Cf::Parts, k, Some(v));
        }
        out.insert(rec.meta.part_number, (k.to_vec(), rec));
        true
    })?;
    if shared {
        batch.expect_count(Cf::Parts, upload_id.as_bytes(), out.len());
    }
    Ok(out)
}

/// Calls `f` on each part numbered above `after`, in order, while it returns true.
fn scan_parts(
    inner: &Inner,
    upload_id: &str,
    after: u32,
    mut f: impl FnMut(&[u8], &[u8], PartRecord) -> bool,
) -> Result<(), StoreError> {
    let Some(first) = after.checked_add(1) else {
        return Ok(());
    };
    let mut it = inner
        .db
        .cursor(Cf::Parts, db::prefix_end(upload_id.as_bytes()))?;
    it.seek(db::part_key(upload_id, first));
    while let (Some(k), Some(v)) = (it.key(), it.value()) {
        if !f(k, v, db::decode_json(v)?) {
            break;
        }
        it.next();
    }
    it.status()
}

pub(super) fn list_parts(
    inner: &Inner,
    upload: &UploadMeta,
    after: u32,
    max: usize,
) -> Result<(Vec<PartMeta>, bool), StoreError> {
    let mut parts = Vec::new();
    let mut truncated = false;
    scan_parts(inner, &upload.upload_id, after, |_, _, rec| {
        if parts.len() == max {
            truncated = true;
            return false;
        }
        parts.push(rec.meta);
        true
    })?;
    Ok((parts, truncated))
}

pub(super) fn list_uploads(
    inner: &Inner,
    bucket: &BucketName,
    prefix: &str,
    key_marker: Option<&str>,
    upload_id_marker: Option<&str>,
    max: usize,
) -> Result<(Vec<UploadMeta>, bool), StoreError> {
    buckets::require(inner, bucket.as_str())?;
    let b = bucket.as_str();
    let scan = db::escaped_prefix(b, prefix);
    let mut it = inner.db.cursor(Cf::Uploads, db::prefix_end(&scan))?;
    match (key_marker, upload_id_marker) {
        (Some(km), Some(id)) => {
            let from = db::upload_key(b, km, id).max(scan);
            it.seek(&from);
            if it.key() == Some(&from[..]) {
                it.next();
            }
        }
        (Some(km), None) => {
            // Past every upload of the marker key: its ids follow `0x00 0x01`.
            let mut from = db::escaped_prefix(b, km);
            from.extend_from_slice(&[0, 2]);
            it.seek(from.max(scan));
        }
        (None, _) => it.seek(&scan),
    }
    let mut uploads = Vec::new();
    let mut truncated = false;
    while let Some(v) = it.value() {
        if uploads.len() == max {
            truncated = true;
            break;
        }
        uploads.push(db::decode_json(v)?);
        it.next();
    }
    it.status()?;
    Ok((uploads, truncated))
}

/// ETags compare without quotes and case-insensitively (clients echo them back variously).
fn etag_matches(stored: &str, given: &str) -> bool {
    stored
        .trim_matches('"')
        .eq_ignore_ascii_case(given.trim().trim_matches('"'))
}

pub(super) fn complete(
    inner: &Inner,
    upload: &UploadMeta,
    listed: &[(u32, String)],
    claimed: Option<&str>,
    condition: &WriteCondition,
) -> Result<ObjectMeta, StoreError> {
    let _gate = read_lock(&inner.gate);
    let _upload = write_lock(inner.upload_lock(&upload.upload_id));
    retrying(|| complete_once(inner, upload, listed, claimed, condition))
}

/// [`complete`] once, under its locks.
fn complete_once(
    inner: &Inner,
    upload: &UploadMeta,
    listed: &[(u32, String)],
    claimed: Option<&str>,
    condition: &WriteCondition,
) -> Result<ObjectMeta, StoreError> {
    let mut batch = Batch::default();
    // Another front end may commit a part or abort meanwhile: then this completion is
    // decided again, and sees what happened.
    require_expected(inner, upload, &mut batch, true)?;
    if listed.is_empty() {
        return Err(StoreError::InvalidPart);
    }
    if listed.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err(StoreError::InvalidPartOrder);
    }
    let mut stored = all_parts(inner, &upload.upload_id, &mut batch)?;
    let mut chosen = Vec::with_capacity(listed.len());
    for (number, etag) in listed {
        match stored.remove(number) {
            Some((key, rec)) if etag_matches(&rec.meta.etag, etag) => chosen.push((key, rec)),
            _ => return Err(StoreError::InvalidPart),
        }
    }
    let last = chosen.len() - 1;
    if chosen[..last]
        .iter()
        .any(|(_, rec)| rec.meta.size < MIN_PART_SIZE)
    {
        return Err(StoreError::EntityTooSmall);
    }

    let mut md5s = Md5::new();
    let mut extents = Vec::with_capacity(chosen.len());
    for (_, rec) in &chosen {
        md5s.update(hex::decode(&rec.meta.etag).map_err(internal)?);
        extents.push(Extent {
            id: part_file(rec)?,
            size: rec.meta.size,
        });
    }
    let etag = format!("{}-{}", hex::encode(md5s.finalize()), chosen.len());
    let checksum = object_checksum(upload, &chosen);
    // A checksum the client claims for the whole object must be the one its parts make.
    // (A composite's `-N` may be left out of the claim.) A claim that cannot be checked
    // (parts without checksums) is refused, never taken on trust.
    if let Some(claimed) = claimed {
        let bare = |s: &str| s.trim().split('-').next().unwrap_or_default().to_owned();
        match &checksum {
            Some((_, made)) if bare(claimed) == bare(made) => {}
            _ => return Err(StoreError::ChecksumMismatch),
        }
    }
    let mut record = ObjectRecord {
        meta: ObjectMeta {
            size: extents.iter().map(|e| e.size).sum(),
            etag,
            // Set when the record is placed among the key's versions.
            last_modified: SystemTime::UNIX_EPOCH,
            headers: upload.headers.clone(),
            checksum,
            acl: upload.acl.clone(),
            part_sizes: extents.iter().map(|e| e.size).collect(),
            part_etags: chosen
                .iter()
                .map(|(_, rec)| rec.meta.etag.clone())
                .collect(),
            part_checksums: chosen
                .iter()
                .map(|(_, rec)| rec.meta.checksum.clone())
                .collect::<Option<Vec<_>>>()
                .unwrap_or_default(),
            tags: upload.tags.clone(),
            version_id: None,
            delete_marker: false,
            lock: upload.lock,
        },
        body: Body::Files(extents),
    };

    // One batch: the object, the upload and every part record gone, unused parts retired.
    let ukey = db::upload_key(&upload.bucket, &upload.key, &upload.upload_id);
    batch.delete(Cf::Uploads, ukey);
    for (key, _) in chosen.iter().chain(stored.values()) {
        batch.delete(Cf::Parts, key);
    }
    let unused = stored
        .values()
        .map(|(_, rec)| part_file(rec))
        .collect::<Result<Vec<_>, _>>()?;
    let unused_bytes: u64 = stored.values().map(|(_, rec)| rec.meta.size).sum();
    inner.retire(&mut batch, &unused);
    // The chosen parts' bytes were counted as they came: they only change hands.
    let stored = objects::Stored {
        batch,
        added: -size_delta(unused_bytes),
        quotas: &StorageQuotas::UNLIMITED,
        condition,
    };
    objects::put(inner, &upload.bucket, &upload.key, &mut record, &stored)?;
    inner.reclaim(&unused);
    Ok(record.meta)
}

/// S3's checksum of a multipart object, when every part carried one: COMPOSITE, the
/// checksum of the parts' raw checksums concatenated, base64, then `-N`; FULL_OBJECT, the
/// CRC of the whole object combined from the parts' CRCs and sizes (no byte read again).
fn object_checksum(
    upload: &UploadMeta,
    parts: &[(Vec<u8>, PartRecord)],
) -> Option<(ChecksumAlgorithm, String)> {
    let alg = upload.checksum_algorithm?;
    let width = digest::checksum_of(alg, b"").len();
    let mut raw = Vec::with_capacity(parts.len());
    for (_, rec) in parts {
        let sum = BASE64.decode(rec.meta.checksum.as_deref()?).ok()?;
        if sum.len() != width {
            return None;
        }
        raw.push((sum, rec.meta.size));
    }
    // CRC-64/NVME has only the full-object kind (uploads recorded before checksum types
    // existed say composite).
    let kind = match alg {
        ChecksumAlgorithm::Crc64Nvme => ChecksumType::FullObject,
        _ => upload.checksum_type,
    };
    match kind {
        ChecksumType::FullObject => Some((alg, BASE64.encode(digest::combined_crc(alg, &raw)?))),
        ChecksumType::Composite => {
            let joined: Vec<u8> = raw.into_iter().flat_map(|(sum, _)| sum).collect();
            let value = BASE64.encode(digest::checksum_of(alg, &joined));
            Some((alg, format!("{value}-{}", parts.len())))
        }
    }
}

pub(super) fn abort(inner: &Inner, upload: &UploadMeta) -> Result<(), StoreError> {
    let _upload = write_lock(inner.upload_lock(&upload.upload_id));
    let dead = retrying(|| {
        let mut batch = Batch::default();
        require_expected(inner, upload, &mut batch, true)?;
        let stored = all_parts(inner, &upload.upload_id, &mut batch)?;
        let owner = buckets::get(inner, &upload.bucket)?.acl.owner;
        let bytes: u64 = stored.values().map(|(_, rec)| rec.meta.size).sum();
        let counted = inner.usage.reserve(
            Delta {
                account: owner,
                bytes: -size_delta(bytes),
                buckets: 0,
            },
            &StorageQuotas::UNLIMITED,
        )?;
        let ukey = db::upload_key(&upload.bucket, &upload.key, &upload.upload_id);
        batch.delete(Cf::Uploads, ukey);
        let mut dead = Vec::with_capacity(stored.len());
        for (key, rec) in stored.values() {
            batch.delete(Cf::Parts, key);
            dead.push(part_file(rec)?);
        }
        inner.retire(&mut batch, &dead);
        counted.add_to(&mut batch);
        inner.write(batch)?;
        counted.keep();
        Ok(dead)
    })?;
    inner.reclaim(&dead);
    Ok(())
}

//! Bucket records, each counted in its owner's usage.

use std::time::SystemTime;

use super::db;
use super::meta::{Batch, Cf};
use super::usage::Delta;
use super::{lock, multipart, retrying, write_lock, BucketMeta, Inner, StorageQuotas, StoreError};
use crate::acl::Acl;
use crate::names::BucketName;

pub(super) fn create(
    inner: &Inner,
    name: &BucketName,
    acl: Acl,
    location: Option<String>,
    quotas: &StorageQuotas,
) -> Result<BucketMeta, StoreError> {
    retrying(|| create_once(inner, name, acl.clone(), location.clone(), quotas))
}

fn create_once(
    inner: &Inner,
    name: &BucketName,
    acl: Acl,
    location: Option<String>,
    quotas: &StorageQuotas,
) -> Result<BucketMeta, StoreError> {
    let _buckets = lock(&inner.buckets);
    if let Some(existing) = inner.db.get(Cf::Buckets, name.as_str())? {
        let existing: BucketMeta = db::decode_json(&existing)?;
        return Err(if existing.acl.owner == acl.owner {
            StoreError::BucketAlreadyOwnedByYou
        } else {
            StoreError::BucketAlreadyExists
        });
    }
    let meta = BucketMeta {
        name: name.as_str().to_owned(),
        created: SystemTime::now(),
        location,
        acl,
        tags: None,
        cors: None,
        versioning: None,
        policy: None,
        public_access_block: None,
        ownership: None,
        object_lock: None,
    };
    let counted = inner.usage.reserve(
        Delta {
            account: meta.acl.owner.clone(),
            bytes: 0,
            buckets: 1,
        },
        quotas,
    )?;
    let mut batch = Batch::default();
    // Another front end may create it meanwhile.
    batch.expect_alone(Cf::Buckets, name.as_str(), None);
    batch.put(Cf::Buckets, name.as_str(), db::encode_json(&meta)?);
    counted.add_to(&mut batch);
    inner.write(batch)?;
    counted.keep();
    Ok(meta)
}

/// The bucket's record, which `batch` then expects unchanged: written only while the bucket
/// is as read (shared records; another front end may delete or change it meanwhile).
pub(super) fn get_expected(
    inner: &Inner,
    name: &str,
    batch: &mut Batch,
) -> Result<BucketMeta, StoreError> {
    match inner.db.get(Cf::Buckets, name)? {
        Some(v) => {
            if inner.db.is_shared() {
                batch.expect(Cf::Buckets, name, Some(&v));
            }
            db::decode_json(&v)
        }
        None => Err(StoreError::NoSuchBucket),
    }
}

pub(super) fn get(inner: &Inner, name: &str) -> Result<BucketMeta, StoreError> {
    match inner.db.get(Cf::Buckets, name)? {
        Some(v) => db::decode_json(&v),
        None => Err(StoreError::NoSuchBucket),
    }
}

/// `NoSuchBucket` unless the bucket exists.
pub(super) fn require(inner: &Inner, name: &str) -> Result<(), StoreError> {
    match inner.db.get(Cf::Buckets, name)? {
        Some(_) => Ok(()),
        None => Err(StoreError::NoSuchBucket),
    }
}

pub(super) fn list(inner: &Inner) -> Result<Vec<BucketMeta>, StoreError> {
    Ok(inner
        .db
        .scan_json::<BucketMeta>(Cf::Buckets)?
        .into_iter()
        .map(|(_, meta)| meta)
        .collect())
}

/// Deletes a bucket that holds no object, no version and no delete marker.
pub(super) fn delete(inner: &Inner, name: &BucketName) -> Result<(), StoreError> {
    // Exclusive: no object or upload can be committed into the bucket until it is gone.
    let _gate = write_lock(&inner.gate);
    let _buckets = lock(&inner.buckets);
    retrying(|| delete_once(inner, name))
}

fn delete_once(inner: &Inner, name: &BucketName) -> Result<(), StoreError> {
    let mut batch = Batch::default();
    let meta = get_expected(inner, name.as_str(), &mut batch)?;
    let prefix = db::bucket_prefix(name.as_str());
    if has_prefix(inner, Cf::Objects, &prefix)? || has_prefix(inner, Cf::Versions, &prefix)? {
        return Err(StoreError::BucketNotEmpty);
    }
    // Uploads in progress go with the bucket, as in S3: left alone, one forgotten upload
    // would keep its bucket forever. (The gate keeps new ones out meanwhile.)
    let (uploads, _) = multipart::list_uploads(inner, name, "", None, None, usize::MAX)?;
    for upload in &uploads {
        match multipart::abort(inner, upload) {
            // Aborted meanwhile by its owner.
            Ok(()) | Err(StoreError::NoSuchUpload) => {}
            Err(e) => return Err(e),
        }
    }
    let counted = inner.usage.reserve(
        Delta {
            account: meta.acl.owner,
            bytes: 0,
            buckets: -1,
        },
        &StorageQuotas::UNLIMITED,
    )?;
    if inner.db.is_shared() {
        // The bucket's record, expected since it was read and removed here, is locked alone:
        // the writes of other front ends into the bucket (which expect it shared) are over,
        // and what they wrote is counted here.
        batch.expect_count(Cf::Objects, &prefix, 0);
        batch.expect_count(Cf::Versions, &prefix, 0);
        batch.expect_count(Cf::Uploads, &prefix, 0);
    }
    batch.delete(Cf::Buckets, name.as_str());
    counted.add_to(&mut batch);
    inner.write(batch)?;
    counted.keep();
    Ok(())
}

/// Whether any key of the column family starts with `prefix`.
fn has_prefix(inner: &Inner, cf: Cf, prefix: &[u8]) -> Result<bool, StoreError> {
    let it = inner.db.prefixed(cf, prefix)?;
    let found = it.key().is_some();
    it.status()?;
    Ok(found)
}

pub(super) fn update(
    inner: &Inner,
    name: &BucketName,
    change: impl FnOnce(&mut BucketMeta) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    // Exclusive: writes and deletes read the versioning state under the shared gate and act
    // on it in the same hold, so a state change never lands between the two.
    let _gate = write_lock(&inner.gate);
    let _buckets = lock(&inner.buckets);
    // Not decided again on a conflict (`change` runs once): the client retries. The record,
    // expected as read and written here, is locked alone.
    let mut batch = Batch::default();
    let mut meta = get_expected(inner, name.as_str(), &mut batch)?;
    change(&mut meta)?;
    batch.put(Cf::Buckets, name.as_str(), db::encode_json(&meta)?);
    inner.write(batch)
}

//! The cloud's registrations of bundles: which image (`emi-…`, `eki-…`, `eri-…`) uses which
//! manifest, as the cloud controller tells Walrus at RegisterImage and DeregisterImage. A
//! plain image that no registration's manifest unbundles into is collected by the feed.
//!
//! Keyed by image id; the value names the manifest by the SHA-256 of its bytes (the pin),
//! which is what the `images` index is keyed by.

use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};

use super::db::{self, CF_REGISTRATIONS};
use super::{Inner, StoreError};

/// One registered image's use of a bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// Where the manifest lay at registration (`bucket/key`), for operators.
    pub location: String,
    /// SHA-256 of the manifest's bytes as registered, lowercase hex.
    pub manifest_sha256: String,
}

impl records::Versioned for Registration {
    const ENVELOPE: records::Envelope = super::db::ENVELOPE;
    const VERSION: u32 = 1;
}

pub(super) fn put(
    inner: &Inner,
    image_id: &str,
    registration: &Registration,
) -> Result<(), StoreError> {
    let mut batch = WriteBatch::default();
    batch.put_cf(
        inner.cf(CF_REGISTRATIONS)?,
        image_id.as_bytes(),
        db::encode_json(registration)?,
    );
    inner.write(batch)
}

pub(super) fn delete(inner: &Inner, image_id: &str) -> Result<(), StoreError> {
    let mut batch = WriteBatch::default();
    batch.delete_cf(inner.cf(CF_REGISTRATIONS)?, image_id.as_bytes());
    inner.write(batch)
}

pub(super) fn all(inner: &Inner) -> Result<Vec<(String, Registration)>, StoreError> {
    db::scan_json(&inner.db, CF_REGISTRATIONS)
}

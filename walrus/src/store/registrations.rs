//! The cloud's registrations of bundles: which image (`emi-…`, `eki-…`, `eri-…`) uses which
//! manifest, as the cloud controller tells Walrus at RegisterImage and DeregisterImage. A
//! plain image that no registration's manifest unbundles into is collected by the feed.
//!
//! Keyed by image id; the value names the manifest by the SHA-256 of its bytes (the pin),
//! which is what the `images` index is keyed by.

use serde::{Deserialize, Serialize};

use super::db;
use super::meta::{Batch, Cf};
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
    let mut batch = Batch::default();
    batch.put(Cf::Registrations, image_id, db::encode_json(registration)?);
    inner.write(batch)
}

pub(super) fn delete(inner: &Inner, image_id: &str) -> Result<(), StoreError> {
    let mut batch = Batch::default();
    batch.delete(Cf::Registrations, image_id);
    inner.write(batch)
}

pub(super) fn all(inner: &Inner) -> Result<Vec<(String, Registration)>, StoreError> {
    inner.db.scan_json(Cf::Registrations)
}

//! The image feed's index: which plain image a bundle's manifest unbundled into, so that a
//! later request (or a later run) finds it without unbundling again.
//!
//! Keyed by the manifest's location `bucket/key`; the entry keeps the manifest's ETag, so a
//! manifest replaced under the same name is never answered with the old image.

use serde::{Deserialize, Serialize};

use super::db::{self, CF_IMAGES};
use super::{internal, Inner, StoreError};

/// What the feed recorded for one manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageEntry {
    /// The ETag of the manifest object that was unbundled.
    pub manifest_etag: String,
    /// SHA-256 of the plain image, lowercase hex: its name in the image store.
    pub sha256: String,
    /// Size of the plain image in bytes.
    pub size: u64,
}

pub(super) fn get(inner: &Inner, location: &str) -> Result<Option<ImageEntry>, StoreError> {
    let cf = inner.cf(CF_IMAGES)?;
    match inner
        .db
        .get_pinned_cf(cf, location.as_bytes())
        .map_err(internal)?
    {
        Some(v) => db::decode_json(&v).map(Some),
        None => Ok(None),
    }
}

pub(super) fn put(inner: &Inner, location: &str, entry: &ImageEntry) -> Result<(), StoreError> {
    let cf = inner.cf(CF_IMAGES)?;
    let mut batch = rocksdb::WriteBatch::default();
    batch.put_cf(cf, location.as_bytes(), db::encode_json(entry)?);
    inner.write(batch)
}

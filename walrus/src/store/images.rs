//! The image feed's index: which plain image a bundle's manifest unbundled into, so that a
//! later request (or a later run) finds it without unbundling again.
//!
//! Keyed by the SHA-256 of the manifest's bytes, not by where the manifest lies: a manifest
//! names every part's SHA-1, the tar stream's SHA-1 and the key, so its bytes decide the
//! image. A manifest replaced under the same name is a different key and is never answered
//! with the old image; a request that pins the registered manifest's SHA-256 is answered
//! with the image of exactly that manifest, whatever now lies at its location.
//!
//! Format 1 of the index was keyed by location (`bucket/key`); such entries are dropped at
//! open (the images they named are unbundled again when next asked for).

use serde::{Deserialize, Serialize};

use super::db;
use super::meta::{Batch, Cf, Meta};
use super::{Inner, StoreError};

/// What the feed recorded for one manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageEntry {
    /// SHA-256 of the plain image, lowercase hex: its name in the image store.
    pub sha256: String,
    /// Size of the plain image in bytes.
    pub size: u64,
    /// Where the manifest lay when it was unbundled (`bucket/key`), for operators.
    pub location: String,
}

impl records::Versioned for ImageEntry {
    const ENVELOPE: records::Envelope = super::db::ENVELOPE;
    const VERSION: u32 = 1;
}

/// Whether `s` is a SHA-256 as the index and the image store name things: 64 lowercase hex
/// digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

pub(super) fn get(inner: &Inner, manifest_sha256: &str) -> Result<Option<ImageEntry>, StoreError> {
    match inner.db.get(Cf::Images, manifest_sha256)? {
        Some(v) => db::decode_json(&v).map(Some),
        None => Ok(None),
    }
}

pub(super) fn put(
    inner: &Inner,
    manifest_sha256: &str,
    entry: &ImageEntry,
) -> Result<(), StoreError> {
    let mut batch = Batch::default();
    batch.put(Cf::Images, manifest_sha256, db::encode_json(entry)?);
    inner.write(batch)
}

/// Every entry, by manifest SHA-256.
pub(super) fn all(inner: &Inner) -> Result<Vec<(String, ImageEntry)>, StoreError> {
    inner.db.scan_json(Cf::Images)
}

/// Removes the entries of these manifests (their image is gone). Durable on return.
pub(super) fn remove(inner: &Inner, manifest_sha256s: &[String]) -> Result<(), StoreError> {
    if manifest_sha256s.is_empty() {
        return Ok(());
    }
    let mut batch = Batch::default();
    for key in manifest_sha256s {
        batch.delete(Cf::Images, key);
    }
    inner.write(batch)
}

/// Drops the entries of format 1 (keyed by location), at open.
pub(super) fn drop_old_format(db: &Meta) -> Result<usize, StoreError> {
    let mut batch = Batch::default();
    let mut dropped = 0;
    for (k, _) in db.entries(Cf::Images)? {
        if !std::str::from_utf8(&k).is_ok_and(is_sha256_hex) {
            batch.delete(Cf::Images, k);
            dropped += 1;
        }
    }
    db.write(batch)?;
    Ok(dropped)
}

//! The RocksDB side of the store: column families, key encodings and the versioned record
//! formats. Nothing here touches data files.
//!
//! Keys are chosen so that every listing is one forward scan in S3's order:
//! - `objects`: `bucket 0x00 key` — bucket names never contain 0x00, and the key comes last,
//!   so the keys of a bucket sort in UTF-8 byte order, which is S3's listing order. The
//!   record is the key's current version, unless that is a delete marker.
//! - `versions`: `bucket 0x00 esc(key) 0x00 0x01 !seq(big-endian u64)` — every other version
//!   of a key in a versioned bucket (older versions, delete markers), newest first; `seq` is
//!   the version's write time in nanoseconds, unique and increasing per key. A never-versioned
//!   bucket has no entry here, so its writes cost what they did before versioning.
//! - `uploads`: `bucket 0x00 esc(key) 0x00 0x01 upload_id` — the key is escaped (0x00 becomes
//!   0x00 0xFF) so that a key and its upload ids sort before any longer key, and upload ids
//!   begin with the initiation time, so uploads sort by (key, initiation).
//! - `parts`: `upload_id part_number(big-endian u32)` — upload ids have a fixed length.
//! - `files`: `file id` for every data file a record references; a data file not found here
//!   is an orphan of a crash (see [`super::Store::open`]).
//! - `pending`: `file id` of data files whose record is gone but whose unlink may not have
//!   happened yet; finished at the next open if the process dies in between.
//! - `images`: SHA-256 of a bundle manifest's bytes (hex) → the plain image the feed made
//!   of it ([`super::images::ImageEntry`]).
//! - `registrations`: image id (`emi-…`) → the manifest it was registered with
//!   ([`super::registrations::Registration`]).
//! - `usage`: account id → the bytes and buckets it holds, changed by merge operands
//!   (deltas) written with the records they count ([`super::usage`]).
//!
//! Values start with a format version byte so that a later format can migrate on read: the
//! JSON records through the `records` crate ([`ENVELOPE`]), objects' own layout here.

use std::path::Path;

use records::{Envelope, Versioned};
use rocksdb::{BlockBasedOptions, Cache, ColumnFamily, ColumnFamilyDescriptor, Options, DB};
use serde::{Deserialize, Serialize};

use super::data::FileId;
use super::meta::Cf;
use super::{internal, ObjectMeta, PartMeta, StoreError};

/// Bucket records ([`super::BucketMeta`]).
pub(super) const CF_BUCKETS: &str = "buckets";
/// Object records ([`ObjectRecord`]).
pub(super) const CF_OBJECTS: &str = "objects";
/// Versions other than the current one ([`ObjectRecord`]).
pub(super) const CF_VERSIONS: &str = "versions";
/// Multipart upload records ([`super::UploadMeta`]).
pub(super) const CF_UPLOADS: &str = "uploads";
/// Part records ([`PartRecord`]).
pub(super) const CF_PARTS: &str = "parts";
/// Data files referenced by a record.
pub(super) const CF_FILES: &str = "files";
/// Data files to unlink.
pub(super) const CF_PENDING: &str = "pending";
/// Unbundled images by manifest SHA-256 ([`super::images::ImageEntry`]).
pub(super) const CF_IMAGES: &str = "images";
/// The cloud's registered images by id ([`super::registrations::Registration`]).
pub(super) const CF_REGISTRATIONS: &str = "registrations";
/// What each account holds ([`super::usage`]).
pub(super) const CF_USAGE: &str = "usage";

/// Key in the default column family holding the current open's epoch (big-endian u64).
pub(super) const EPOCH_KEY: &[u8] = b"epoch";

/// The record format this code writes.
const FORMAT_V1: u8 = 1;

/// The shape of every JSON record here: one version byte, then the JSON.
pub(super) const ENVELOPE: Envelope = Envelope::VersionByte;

/// What names a JSON record in errors: the column families hold binary keys.
const RECORD: &str = "a Walrus record";

/// Write options for every mutating call: the WAL is synced before the write returns.
pub(super) use records::sync_writes;

/// Opens the database with every column family, tuned for many small synced writes (group
/// commit) and cheap point reads.
pub(super) fn open(path: &Path) -> Result<DB, StoreError> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_max_background_jobs(2);
    // Concurrent synced writers form one write group whose leader syncs the WAL once for all;
    // pipelining lets the next group write its WAL while this one updates memtables.
    opts.set_enable_pipelined_write(true);
    // Followers wait for the group leader on a condition variable instead of spinning up to
    // 100 µs: on a 2-core machine the spinning costs more CPU than the write itself.
    opts.set_enable_write_thread_adaptive_yield(false);

    let cache = Cache::new_lru_cache(64 << 20);
    let mut table = BlockBasedOptions::default();
    table.set_block_cache(&cache);
    table.set_bloom_filter(10.0, false);
    let mut cf_opts = Options::default();
    cf_opts.set_block_based_table_factory(&table);

    let mut usage_opts = cf_opts.clone();
    usage_opts.set_merge_operator_associative(super::usage::MERGE_NAME, super::usage::merge);
    let cfs = Cf::NAMED.into_iter().map(|cf| {
        let opts = if cf == Cf::Usage {
            usage_opts.clone()
        } else {
            cf_opts.clone()
        };
        ColumnFamilyDescriptor::new(cf.name(), opts)
    });
    DB::open_cf_descriptors(&opts, path, cfs).map_err(internal)
}

/// The handle of a column family created at open.
pub(super) fn cf<'a>(db: &'a DB, name: &str) -> Result<&'a ColumnFamily, StoreError> {
    db.cf_handle(name)
        .ok_or_else(|| internal(format!("column family {name} missing")))
}

// ---- keys ----

/// `bucket 0x00`: the prefix of every object key of a bucket, and of its uploads.
pub(super) fn bucket_prefix(bucket: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(bucket.len() + 1);
    k.extend_from_slice(bucket.as_bytes());
    k.push(0);
    k
}

/// `bucket 0x00 key`.
pub(super) fn object_key(bucket: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(bucket.len() + 1 + key.len());
    k.extend_from_slice(bucket.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

/// Appends `s` escaped so that the terminator `0x00 0x01` sorts before any continuation.
fn push_escaped(out: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
}

/// `bucket 0x00 esc(prefix)`: every upload or version entry whose key starts with `prefix`.
pub(super) fn escaped_prefix(bucket: &str, prefix: &str) -> Vec<u8> {
    let mut k = bucket_prefix(bucket);
    push_escaped(&mut k, prefix);
    k
}

/// `bucket 0x00 esc(key) 0x00 0x01`: every upload or version entry of exactly `key`.
pub(super) fn escaped_key(bucket: &str, key: &str) -> Vec<u8> {
    let mut k = escaped_prefix(bucket, key);
    k.extend_from_slice(&[0, 1]);
    k
}

/// Past every upload or version entry of a key starting with `prefix` (UTF-8 never holds
/// 0xFF, and an escaped 0x00 is followed by 0xFF or 0x01, both before it).
pub(super) fn escaped_past(bucket: &str, prefix: &str) -> Vec<u8> {
    let mut k = escaped_prefix(bucket, prefix);
    k.push(0xFF);
    k
}

/// The key of one version entry.
pub(super) fn version_key(bucket: &str, key: &str, seq: u64) -> Vec<u8> {
    let mut k = escaped_key(bucket, key);
    k.extend_from_slice(&(!seq).to_be_bytes());
    k
}

/// The object key and `seq` of a version entry's key, given the length of its bucket prefix.
pub(super) fn split_version_key(raw: &[u8], base: usize) -> Result<(String, u64), StoreError> {
    let body = raw
        .len()
        .checked_sub(10)
        .filter(|&end| end >= base)
        .map(|end| (&raw[base..end], &raw[end..]))
        .filter(|(_, tail)| tail[..2] == [0, 1])
        .ok_or_else(bad_format)?;
    let (escaped, tail) = body;
    let mut key = Vec::with_capacity(escaped.len());
    let mut bytes = escaped.iter();
    while let Some(&b) = bytes.next() {
        key.push(b);
        if b == 0 && bytes.next() != Some(&0xFF) {
            return Err(bad_format());
        }
    }
    let key = String::from_utf8(key).map_err(|_| bad_format())?;
    let (seq, _) = split_array::<8>(&tail[2..])?;
    Ok((key, !u64::from_be_bytes(seq)))
}

/// The key of one upload.
pub(super) fn upload_key(bucket: &str, key: &str, upload_id: &str) -> Vec<u8> {
    let mut k = escaped_key(bucket, key);
    k.extend_from_slice(upload_id.as_bytes());
    k
}

/// `upload_id part_number`.
pub(super) fn part_key(upload_id: &str, part_number: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(upload_id.len() + 4);
    k.extend_from_slice(upload_id.as_bytes());
    k.extend_from_slice(&part_number.to_be_bytes());
    k
}

/// The smallest key greater than every key starting with `prefix`, or `None` when there is
/// none (a prefix of only 0xFF bytes): the upper bound of a prefix scan.
pub(super) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

// ---- values ----

/// A plain record: version byte, then JSON.
pub(super) fn encode_json<T: Versioned>(value: &T) -> Result<Vec<u8>, StoreError> {
    records::encode(value).map_err(internal)
}

/// Decodes a plain record written by [`encode_json`], or by an older version of it.
pub(super) fn decode_json<T: Versioned>(bytes: &[u8]) -> Result<T, StoreError> {
    records::decode(RECORD, bytes).map_err(internal)
}

fn bad_format() -> StoreError {
    internal("stored record has an unknown format")
}

/// Where an object's bytes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Body {
    /// In the record itself.
    Inline(Vec<u8>),
    /// In these data files, concatenated in order (one for a plain PUT, the parts for a
    /// completed multipart upload).
    Files(Vec<Extent>),
}

/// One data file of an object and how many bytes of it belong to the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Extent {
    /// The file.
    pub id: FileId,
    /// Its length.
    pub size: u64,
}

/// An object record: metadata plus where the bytes are.
///
/// Layout (v1): `0x01, u32 LE meta length, meta JSON, body tag, body`, where the body is the
/// raw bytes (tag 0) or `u32 LE count` and `count × (16-byte file id, u64 LE size)` (tag 1).
/// HEAD and listings decode only the metadata; GET of an inline object slices the bytes out
/// without parsing them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct ObjectRecord {
    /// What HEAD returns.
    pub meta: ObjectMeta,
    /// Where the bytes are.
    pub body: Body,
}

const BODY_INLINE: u8 = 0;
const BODY_FILES: u8 = 1;

impl ObjectRecord {
    /// The stored form.
    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        let meta = serde_json::to_vec(&self.meta).map_err(internal)?;
        let body_len = match &self.body {
            Body::Inline(data) => data.len(),
            Body::Files(extents) => 4 + extents.len() * 24,
        };
        let mut out = Vec::with_capacity(1 + 4 + meta.len() + 1 + body_len);
        out.push(FORMAT_V1);
        let meta_len = u32::try_from(meta.len()).map_err(internal)?;
        out.extend_from_slice(&meta_len.to_le_bytes());
        out.extend_from_slice(&meta);
        match &self.body {
            Body::Inline(data) => {
                out.push(BODY_INLINE);
                out.extend_from_slice(data);
            }
            Body::Files(extents) => {
                out.push(BODY_FILES);
                let count = u32::try_from(extents.len()).map_err(internal)?;
                out.extend_from_slice(&count.to_le_bytes());
                for e in extents {
                    out.extend_from_slice(&e.id.0);
                    out.extend_from_slice(&e.size.to_le_bytes());
                }
            }
        }
        Ok(out)
    }

    /// Splits a stored record into its metadata JSON and its body part.
    fn split(bytes: &[u8]) -> Result<(&[u8], &[u8]), StoreError> {
        let rest = match bytes.split_first() {
            Some((&FORMAT_V1, rest)) => rest,
            _ => return Err(bad_format()),
        };
        let (len, rest) = split_array::<4>(rest)?;
        let len = u32::from_le_bytes(len) as usize;
        if rest.len() < len {
            return Err(bad_format());
        }
        Ok(rest.split_at(len))
    }

    /// Only the metadata (HEAD, listings).
    pub fn decode_meta(bytes: &[u8]) -> Result<ObjectMeta, StoreError> {
        let (meta, _) = Self::split(bytes)?;
        serde_json::from_slice(meta).map_err(internal)
    }

    /// The whole record.
    pub fn decode(bytes: &[u8]) -> Result<ObjectRecord, StoreError> {
        let (meta, body) = Self::split(bytes)?;
        let meta = serde_json::from_slice(meta).map_err(internal)?;
        let body = match body.split_first() {
            Some((&BODY_INLINE, data)) => Body::Inline(data.to_vec()),
            Some((&BODY_FILES, rest)) => Body::Files(decode_extents(rest)?),
            _ => return Err(bad_format()),
        };
        Ok(ObjectRecord { meta, body })
    }

    /// Only the data files (a version being replaced: its metadata does not matter).
    pub fn decode_files(bytes: &[u8]) -> Result<Vec<FileId>, StoreError> {
        let (_, body) = Self::split(bytes)?;
        match body.split_first() {
            Some((&BODY_INLINE, _)) => Ok(Vec::new()),
            Some((&BODY_FILES, rest)) => Ok(decode_extents(rest)?.iter().map(|e| e.id).collect()),
            _ => Err(bad_format()),
        }
    }

    /// The data files the record references.
    pub fn files(&self) -> Vec<FileId> {
        match &self.body {
            Body::Inline(_) => Vec::new(),
            Body::Files(extents) => extents.iter().map(|e| e.id).collect(),
        }
    }
}

fn decode_extents(bytes: &[u8]) -> Result<Vec<Extent>, StoreError> {
    let (count, mut rest) = split_array::<4>(bytes)?;
    let count = u32::from_le_bytes(count) as usize;
    let mut extents = Vec::with_capacity(count.min(10_000));
    for _ in 0..count {
        let (id, r) = split_array::<16>(rest)?;
        let (size, r) = split_array::<8>(r)?;
        extents.push(Extent {
            id: FileId(id),
            size: u64::from_le_bytes(size),
        });
        rest = r;
    }
    Ok(extents)
}

fn split_array<const N: usize>(bytes: &[u8]) -> Result<([u8; N], &[u8]), StoreError> {
    if bytes.len() < N {
        return Err(bad_format());
    }
    let (head, rest) = bytes.split_at(N);
    let mut out = [0u8; N];
    out.copy_from_slice(head);
    Ok((out, rest))
}

/// A part record: what ListParts shows plus the data file holding the part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct PartRecord {
    /// What ListParts shows.
    pub meta: PartMeta,
    /// The part's data file, hex.
    pub file: String,
}

impl Versioned for PartRecord {
    const ENVELOPE: Envelope = ENVELOPE;
    const VERSION: u32 = 1;
}

/// The value of `files` and `pending` entries: only a version byte, the key says it all.
pub(super) const MARKER: &[u8] = &[FORMAT_V1];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::Acl;
    use crate::store::meta::{Batch, Meta};
    use crate::store::{ObjectHeaders, Tag};
    use std::time::SystemTime;

    fn meta() -> ObjectMeta {
        ObjectMeta {
            size: 3,
            etag: "abc".into(),
            last_modified: SystemTime::now(),
            headers: ObjectHeaders {
                user_metadata: vec![("k".into(), "v\u{1}&+ ".into())],
                ..Default::default()
            },
            checksum: None,
            acl: Acl {
                owner: "123456789012".into(),
                grants: vec![],
            },
            part_sizes: vec![],
            part_etags: vec![],
            part_checksums: vec![],
            tags: vec![Tag {
                key: "project".into(),
                value: "kö ala".into(),
            }],
            version_id: Some("0123".into()),
            delete_marker: false,
            lock: Default::default(),
        }
    }

    #[test]
    fn object_records_round_trip() {
        for body in [
            Body::Inline(b"xyz".to_vec()),
            Body::Inline(Vec::new()),
            Body::Files(vec![
                Extent {
                    id: FileId([7; 16]),
                    size: 5 << 20,
                },
                Extent {
                    id: FileId([9; 16]),
                    size: 1,
                },
            ]),
        ] {
            let rec = ObjectRecord { meta: meta(), body };
            let bytes = rec.encode().expect("encode");
            assert_eq!(ObjectRecord::decode(&bytes).expect("decode"), rec);
            assert_eq!(ObjectRecord::decode_meta(&bytes).expect("meta"), rec.meta);
            assert_eq!(
                ObjectRecord::decode_files(&bytes).expect("files"),
                rec.files()
            );
        }
        assert!(ObjectRecord::decode(&[2, 0, 0, 0, 0]).is_err());
        assert!(ObjectRecord::decode(&[1, 9, 0, 0, 0, b'{']).is_err());
    }

    /// JSON records exactly as Walrus has written them since format version 1 (one version
    /// byte, then JSON), put straight into RocksDB and read back; encoded again, the same bytes.
    #[test]
    fn json_records_of_format_version_1_read_and_are_rewritten_in_their_shape() {
        let stored: &[u8] = b"\x01{\"meta\":{\"part_number\":3,\"etag\":\"abc\",\"size\":5,\
            \"last_modified\":{\"secs_since_epoch\":1700000000,\"nanos_since_epoch\":0},\
            \"checksum\":null},\"file\":\"0707\"}";
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Meta::rocks(dir.path()).expect("open");
        let mut batch = Batch::default();
        batch.put(Cf::Parts, part_key("u1", 3), stored);
        batch.put(Cf::Parts, part_key("u2", 1), b"\x02{}");
        db.write(batch).expect("put");

        let record: PartRecord = decode_json(stored).expect("decode");
        assert_eq!(record.meta.part_number, 3);
        assert_eq!(
            record.meta.last_modified,
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000)
        );
        assert_eq!(record.file, "0707");
        assert_eq!(encode_json(&record).expect("encode"), stored);
        // A record of a newer format is refused, here and in a scan.
        assert!(decode_json::<PartRecord>(b"\x02{}").is_err());
        assert!(db.scan_json::<PartRecord>(Cf::Parts).is_err());
        let mut batch = Batch::default();
        batch.delete(Cf::Parts, part_key("u2", 1));
        db.write(batch).expect("delete");
        let scanned = db.scan_json::<PartRecord>(Cf::Parts).expect("scan");
        assert_eq!(scanned.len(), 1);
        assert_eq!(scanned[0].1, record);
    }

    #[test]
    fn upload_keys_sort_by_key_then_id() {
        // "a" with any id sorts before "a\0b", which sorts before "ab".
        let a = upload_key("b", "a", "ffff");
        let a0b = upload_key("b", "a\0b", "0000");
        let ab = upload_key("b", "ab", "0000");
        assert!(a < a0b && a0b < ab);
        assert!(a.starts_with(&escaped_prefix("b", "a")));
        assert!(a0b.starts_with(&escaped_prefix("b", "a\0")));
        assert!(!a.starts_with(&escaped_prefix("b", "a\0")));
    }

    #[test]
    fn version_keys_sort_by_key_then_newest_first_and_split_back() {
        let old = version_key("b", "a", 5);
        let new = version_key("b", "a", 9);
        let a0b = version_key("b", "a\0b", 1);
        let ab = version_key("b", "ab", 1);
        assert!(new < old && old < a0b && a0b < ab);
        // Past every key starting with "a", and no further.
        let past = escaped_past("b", "a");
        assert!(a0b < past && ab < past && version_key("b", "b", 1) > past);
        let base = bucket_prefix("b").len();
        assert_eq!(
            split_version_key(&a0b, base).expect("split"),
            ("a\0b".into(), 1)
        );
        assert_eq!(
            split_version_key(&new, base).expect("split"),
            ("a".into(), 9)
        );
        assert!(split_version_key(&new[..new.len() - 1], base).is_err());
    }

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF]), None);
    }
}

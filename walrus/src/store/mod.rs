//! The object store: bucket and object metadata in RocksDB, object bytes in files (small
//! objects inline in RocksDB). Every acknowledged write is on disk before the call returns.
//!
//! CONTRACT (written before the implementation so the S3 layer can be built against it; the
//! store's author may add to it but should not change these signatures without telling the
//! S3 layer's author).
//!
//! Writing an object is two-phase: [`Store::stage`] streams a body to disk (temp file,
//! fsynced, or an in-memory buffer when small) while computing the digests asked for; the S3
//! layer then checks Content-MD5, `x-amz-checksum-*` (including trailers that arrive only at
//! the end of an aws-chunked body) and the SigV4 payload hash against [`Staged::digests`], and
//! only then calls [`Store::commit_object`] (or [`Store::commit_part`]). A [`Staged`] that is
//! dropped without being committed removes its temp file.

use std::pin::Pin;
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::Stream;
use serde::{Deserialize, Serialize};

use crate::acl::Acl;
use crate::names::{BucketName, ObjectKey};

/// A body as the S3 layer hands it over: already de-chunked (aws-chunked framing removed).
/// An `Err` item aborts the write (client went away, bad chunk signature, ...).
pub type BodyStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// Errors of the store. The S3 layer maps them to S3 error codes in one place.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The bucket does not exist.
    #[error("The specified bucket does not exist.")]
    NoSuchBucket,
    /// Another account owns a bucket of that name.
    #[error("The requested bucket name is not available.")]
    BucketAlreadyExists,
    /// The caller already owns a bucket of that name.
    #[error("Your previous request to create the named bucket succeeded and you already own it.")]
    BucketAlreadyOwnedByYou,
    /// The bucket still holds objects or uploads.
    #[error("The bucket you tried to delete is not empty.")]
    BucketNotEmpty,
    /// The key does not exist.
    #[error("The specified key does not exist.")]
    NoSuchKey,
    /// The multipart upload does not exist (never created, completed or aborted).
    #[error("The specified multipart upload does not exist.")]
    NoSuchUpload,
    /// A part named at completion was never uploaded, or its ETag differs.
    #[error("One or more of the specified parts could not be found.")]
    InvalidPart,
    /// The parts list at completion is not in ascending order.
    #[error("The list of parts was not in ascending order.")]
    InvalidPartOrder,
    /// A part other than the last is smaller than 5 MiB.
    #[error("Your proposed upload is smaller than the minimum allowed object size.")]
    EntityTooSmall,
    /// The body ended before the announced length, or went on past it.
    #[error("The body length did not match the announced length.")]
    IncompleteBody,
    /// The body stream failed (client went away, bad chunk signature, ...).
    #[error("The request body could not be read.")]
    Body(#[source] std::io::Error),
    /// Disk or database failure: a 500 for the client.
    #[error("An internal storage error occurred.")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The checksum algorithms of S3's `x-amz-checksum-*` headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChecksumAlgorithm {
    /// `x-amz-checksum-crc32`
    Crc32,
    /// `x-amz-checksum-crc32c`
    Crc32c,
    /// `x-amz-checksum-crc64nvme`
    Crc64Nvme,
    /// `x-amz-checksum-sha1`
    Sha1,
    /// `x-amz-checksum-sha256`
    Sha256,
}

/// Which digests [`Store::stage`] computes besides MD5 (always computed: it is the ETag).
#[derive(Clone, Debug, Default)]
pub struct DigestRequest {
    /// SHA-256 of the body, for a SigV4 signed payload hash.
    pub sha256: bool,
    /// One `x-amz-checksum-*` algorithm.
    pub checksum: Option<ChecksumAlgorithm>,
}

/// Digests of a staged body, raw bytes.
#[derive(Clone, Debug, Default)]
pub struct Digests {
    /// MD5 of the body.
    pub md5: [u8; 16],
    /// SHA-256 of the body when asked for.
    pub sha256: Option<[u8; 32]>,
    /// The `x-amz-checksum-*` value when asked for: algorithm and raw big-endian bytes.
    pub checksum: Option<(ChecksumAlgorithm, Vec<u8>)>,
}

/// The headers stored with an object and returned on GET/HEAD (CopyObject copies or replaces
/// them as a group).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectHeaders {
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// `Content-Encoding`.
    pub content_encoding: Option<String>,
    /// `Content-Disposition`.
    pub content_disposition: Option<String>,
    /// `Content-Language`.
    pub content_language: Option<String>,
    /// `Cache-Control`.
    pub cache_control: Option<String>,
    /// `Expires`, verbatim.
    pub expires: Option<String>,
    /// `x-amz-meta-*` pairs: names lowercased without the prefix, values verbatim.
    pub user_metadata: Vec<(String, String)>,
}

/// A bucket's stored record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketMeta {
    /// The bucket's name.
    pub name: BucketNameString,
    /// When it was created.
    pub created: SystemTime,
    /// The LocationConstraint given at creation, if any.
    pub location: Option<String>,
    /// Its ACL (owner inside).
    pub acl: Acl,
}

/// A bucket name as stored (serde-friendly twin of [`BucketName`]).
pub type BucketNameString = String;

/// An object's stored record (what HEAD returns).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// Size of the body in bytes.
    pub size: u64,
    /// The ETag without quotes: hex MD5, or hex MD5-of-part-MD5s plus `-N` for multipart.
    pub etag: String,
    /// When the object was written (second precision is enough for HTTP dates).
    pub last_modified: SystemTime,
    /// Content headers and user metadata.
    pub headers: ObjectHeaders,
    /// The checksum given at upload, if any: algorithm and base64 value.
    pub checksum: Option<(ChecksumAlgorithm, String)>,
    /// Its ACL (owner inside).
    pub acl: Acl,
    /// For multipart objects: the size of each part, in order (for `partNumber` GETs).
    pub part_sizes: Vec<u64>,
}

/// A staged body: on disk and fsynced (or held in memory when small), not yet visible.
/// Dropping it without committing discards it.
pub struct Staged {
    /// Number of bytes received.
    pub size: u64,
    /// Digests computed while the bytes streamed.
    pub digests: Digests,
    // private fields: temp path or inline bytes
}

/// One page of a listing.
#[derive(Clone, Debug, Default)]
pub struct ListPage {
    /// Objects, in key order.
    pub objects: Vec<(ObjectKey, ObjectMeta)>,
    /// Common prefixes (when a delimiter was given), in order, each once.
    pub common_prefixes: Vec<String>,
    /// True when more keys follow.
    pub is_truncated: bool,
    /// The last key or common prefix returned: where the next page starts (exclusive).
    pub next_marker: Option<String>,
}

/// Listing parameters; `start_after` is exclusive (V1 `marker`, V2 `start-after` or the
/// decoded continuation token).
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    /// Only keys starting with this.
    pub prefix: String,
    /// Roll keys up to the first occurrence of this after the prefix.
    pub delimiter: Option<String>,
    /// Start strictly after this key.
    pub start_after: Option<String>,
    /// At most this many objects plus common prefixes (0 is allowed: an empty page).
    pub max_keys: usize,
}

/// A multipart upload's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadMeta {
    /// The upload id handed to the client.
    pub upload_id: String,
    /// The bucket.
    pub bucket: String,
    /// The key the object will take.
    pub key: String,
    /// When it was initiated.
    pub initiated: SystemTime,
    /// Headers and metadata given at creation.
    pub headers: ObjectHeaders,
    /// The checksum algorithm announced at creation, if any.
    pub checksum_algorithm: Option<ChecksumAlgorithm>,
    /// ACL the object will get (owner inside: the initiator).
    pub acl: Acl,
}

/// One uploaded part.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartMeta {
    /// 1..=10000.
    pub part_number: u32,
    /// Hex MD5 of the part, no quotes.
    pub etag: String,
    /// Bytes.
    pub size: u64,
    /// When it was uploaded.
    pub last_modified: SystemTime,
    /// Checksum given with the part, if any (base64).
    pub checksum: Option<String>,
}

/// The store. Cheap to clone (an `Arc` inside); safe to use from many tasks.
#[derive(Clone)]
pub struct Store {
    // private
}

impl Store {
    /// Opens (or creates) the store under `dir`, removing leftovers of a crash: temp files
    /// and data files no committed record references.
    pub fn open(_dir: &std::path::Path) -> Result<Store, StoreError> {
        todo!()
    }

    // ---- buckets ----

    /// Creates a bucket owned by `acl.owner`.
    pub fn create_bucket(
        &self,
        _name: &BucketName,
        _acl: Acl,
        _location: Option<String>,
    ) -> Result<BucketMeta, StoreError> {
        todo!()
    }

    /// The bucket's record.
    pub fn bucket(&self, _name: &BucketName) -> Result<BucketMeta, StoreError> {
        todo!()
    }

    /// Every bucket, in name order (the S3 layer filters by owner).
    pub fn list_buckets(&self) -> Result<Vec<BucketMeta>, StoreError> {
        todo!()
    }

    /// Deletes an empty bucket (no objects, no multipart uploads).
    pub fn delete_bucket(&self, _name: &BucketName) -> Result<(), StoreError> {
        todo!()
    }

    /// Replaces the bucket's ACL.
    pub fn set_bucket_acl(&self, _name: &BucketName, _acl: Acl) -> Result<(), StoreError> {
        todo!()
    }

    // ---- objects ----

    /// Streams `body` to durable storage, computing MD5 and what `want` asks for. When
    /// `expected_len` is given, a body of any other length fails with `IncompleteBody`.
    /// Blocking I/O and hashing run off the async reactor.
    pub async fn stage(
        &self,
        _body: BodyStream,
        _expected_len: Option<u64>,
        _want: DigestRequest,
    ) -> Result<Staged, StoreError> {
        todo!()
    }

    /// Makes a staged body visible as `bucket/key`, replacing any previous object (whose
    /// data is then reclaimed). Durable before it returns.
    pub async fn commit_object(
        &self,
        _bucket: &BucketName,
        _key: &ObjectKey,
        _staged: Staged,
        _headers: ObjectHeaders,
        _checksum: Option<(ChecksumAlgorithm, String)>,
        _acl: Acl,
    ) -> Result<ObjectMeta, StoreError> {
        todo!()
    }

    /// The object's record.
    pub fn object(&self, _bucket: &BucketName, _key: &ObjectKey) -> Result<ObjectMeta, StoreError> {
        todo!()
    }

    /// Reads `len` bytes from `offset` of the object as a stream of chunks (bounded memory;
    /// large reads in large chunks). Reads the object version described by `meta` even if
    /// it is replaced meanwhile (data is reclaimed only when no reader holds it) — or fails
    /// with `NoSuchKey` if that cannot be guaranteed.
    pub fn read(
        &self,
        _bucket: &BucketName,
        _key: &ObjectKey,
        _meta: &ObjectMeta,
        _offset: u64,
        _len: u64,
    ) -> Result<BodyStream, StoreError> {
        todo!()
    }

    /// Replaces an object's ACL.
    pub fn set_object_acl(
        &self,
        _bucket: &BucketName,
        _key: &ObjectKey,
        _acl: Acl,
    ) -> Result<(), StoreError> {
        todo!()
    }

    /// Deletes an object; deleting a missing key succeeds (S3 semantics) and returns false.
    pub async fn delete_object(&self, _bucket: &BucketName, _key: &ObjectKey) -> Result<bool, StoreError> {
        todo!()
    }

    /// One page of the bucket's keys.
    pub fn list_objects(&self, _bucket: &BucketName, _query: &ListQuery) -> Result<ListPage, StoreError> {
        todo!()
    }

    // ---- multipart ----

    /// Starts a multipart upload and returns its record (with a fresh, unguessable id).
    pub fn create_upload(
        &self,
        _bucket: &BucketName,
        _key: &ObjectKey,
        _headers: ObjectHeaders,
        _checksum_algorithm: Option<ChecksumAlgorithm>,
        _acl: Acl,
    ) -> Result<UploadMeta, StoreError> {
        todo!()
    }

    /// The upload's record, checking it belongs to `bucket/key`.
    pub fn upload(&self, _bucket: &BucketName, _key: &ObjectKey, _upload_id: &str) -> Result<UploadMeta, StoreError> {
        todo!()
    }

    /// Stores a part (replacing a previous part of the same number). Durable on return.
    pub async fn commit_part(
        &self,
        _upload: &UploadMeta,
        _part_number: u32,
        _staged: Staged,
        _checksum: Option<String>,
    ) -> Result<PartMeta, StoreError> {
        todo!()
    }

    /// Parts of an upload with numbers greater than `after`, at most `max`, and whether
    /// more follow.
    pub fn list_parts(&self, _upload: &UploadMeta, _after: u32, _max: usize) -> Result<(Vec<PartMeta>, bool), StoreError> {
        todo!()
    }

    /// Uploads in progress in a bucket, ordered by (key, initiation), after the given
    /// markers, at most `max`, and whether more follow.
    pub fn list_uploads(
        &self,
        _bucket: &BucketName,
        _prefix: &str,
        _key_marker: Option<&str>,
        _upload_id_marker: Option<&str>,
        _max: usize,
    ) -> Result<(Vec<UploadMeta>, bool), StoreError> {
        todo!()
    }

    /// Completes an upload from the parts the client lists (number and ETag, ascending):
    /// re-references the part files, never copies them; all but the last part must be at
    /// least 5 MiB. Durable on return; the upload is gone afterwards.
    pub async fn complete_upload(
        &self,
        _upload: &UploadMeta,
        _parts: &[(u32, String)],
    ) -> Result<ObjectMeta, StoreError> {
        todo!()
    }

    /// Aborts an upload and reclaims its parts.
    pub async fn abort_upload(&self, _upload: &UploadMeta) -> Result<(), StoreError> {
        todo!()
    }
}

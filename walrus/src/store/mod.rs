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

mod buckets;
mod data;
mod db;
mod digest;
mod images;
mod list;
mod meta;
mod multipart;
mod objects;
mod rados;
mod registrations;
#[cfg(test)]
mod tests;
mod usage;
mod versions;

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::Stream;
use serde::{Deserialize, Serialize};

use crate::acl::Acl;
use crate::names::{BucketName, ObjectKey};
use data::{FileId, Layout, TempFile};
pub use data::{MAX_UPLOADS, THREADS_PER_UPLOAD};
pub use images::{is_sha256_hex, ImageEntry};
use meta::{Batch, Cf, Meta};
pub use registrations::Registration;
pub use usage::{StorageQuotas, Usage};

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
    /// The version asked for is a delete marker, which has no body, tags or ACL.
    #[error("The specified method is not allowed against this resource.")]
    MethodNotAllowed,
    /// The version a change was allowed for was replaced before the change could be made.
    #[error("The object was replaced while the request was being made.")]
    Changed,
    /// The bucket's state forbids the change (object lock without versioning enabled,
    /// suspending a locked bucket's versioning).
    #[error("{0}")]
    InvalidBucketState(&'static str),
    /// The version is under a retention or legal hold that forbids deleting it.
    #[error("The version is locked by object lock.")]
    ObjectLocked,
    /// A conditional write's precondition does not hold.
    #[error("At least one of the pre-conditions you specified did not hold.")]
    PreconditionFailed,
    /// The key has no version of that id.
    #[error("The specified version does not exist.")]
    NoSuchVersion,
    /// The checksum a client claimed for a completed multipart object is not the one its
    /// parts make.
    #[error("The checksum of the object does not match the one claimed.")]
    ChecksumMismatch,
    /// The multipart upload does not exist (never created, completed or aborted).
    #[error("The specified multipart upload does not exist.")]
    NoSuchUpload,
    /// A part named at completion was never uploaded, or its ETag differs.
    #[error("One or more of the specified parts could not be found.")]
    InvalidPart,
    /// The parts list at completion is not in ascending order.
    #[error("The list of parts was not in ascending order.")]
    InvalidPartOrder,
    /// The bucket's owner would own more buckets than its quota allows.
    #[error("You have attempted to create more buckets than allowed.")]
    TooManyBuckets,
    /// The bucket's owner would store more bytes than its quota allows.
    #[error("The bucket owner's storage quota does not allow this write.")]
    QuotaExceeded,
    /// A part other than the last is smaller than 5 MiB.
    #[error("Your proposed upload is smaller than the minimum allowed object size.")]
    EntityTooSmall,
    /// The body ended before the announced length, or went on past it.
    #[error("The body length did not match the announced length.")]
    IncompleteBody,
    /// The body stream failed (client went away, bad chunk signature, ...).
    #[error("The request body could not be read.")]
    Body(#[source] std::io::Error),
    /// Another front end changed what a write was decided on, again and again: the client
    /// should retry (503 SlowDown).
    #[error("Please reduce your request rate.")]
    Conflict,
    /// Disk or database failure: a 500 for the client.
    #[error("An internal storage error occurred.")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// How a multipart object's checksum is made from its parts' (`x-amz-checksum-type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChecksumType {
    /// The checksum of the parts' checksums, suffixed `-N` (S3's only kind for SHA-1 and
    /// SHA-256, the default for CRC-32 and CRC-32C).
    #[default]
    Composite,
    /// The CRC of the whole object, as if uploaded at once (CRC-64/NVME's only kind).
    FullObject,
}

impl ChecksumType {
    fn is_composite(&self) -> bool {
        *self == ChecksumType::Composite
    }
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

/// One tag of an object or a bucket (S3's `Tagging`): a key and a value, both Unicode.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    /// Up to 128 characters.
    pub key: String,
    /// Up to 256 characters, possibly empty.
    pub value: String,
}

/// One rule of a bucket's CORS configuration (PutBucketCors): which origins may make which
/// cross-origin requests with which headers, what they may read back, and for how long a
/// browser may keep the preflight's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorsRule {
    /// The rule's `ID`, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Origins, each with at most one `*` wildcard.
    pub allowed_origins: Vec<String>,
    /// Methods: GET, PUT, HEAD, POST, DELETE.
    pub allowed_methods: Vec<String>,
    /// Request headers a preflight may announce, each with at most one `*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_headers: Vec<String>,
    /// Response headers the browser lets the page read.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    /// How long a browser may cache the preflight's answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<u32>,
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
    /// Its tags (PutBucketTagging); `None` until set, which GetBucketTagging tells apart
    /// from an empty set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<Tag>>,
    /// Its CORS rules (PutBucketCors), in order; `None` until set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Vec<CorsRule>>,
    /// Its versioning state; `None` while it was never turned on (it can be suspended,
    /// never turned off again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub versioning: Option<Versioning>,
    /// Its bucket policy (PutBucketPolicy), verbatim as put: S3 answers it back as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Its public access block (PutPublicAccessBlock); `None` until set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_access_block: Option<PublicAccessBlock>,
    /// Who owns the objects written into it (PutBucketOwnershipControls); `None` until set:
    /// their writers, with ACLs in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ownership: Option<ObjectOwnership>,
    /// Its object lock configuration; `None` while object lock is off (once on, it stays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_lock: Option<LockConfiguration>,
}

/// Who owns the objects of a bucket (S3's object ownership).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ObjectOwnership {
    /// The bucket owner owns every object and ACLs grant nothing: access is the owner's
    /// and its policy's.
    BucketOwnerEnforced,
    /// The bucket owner owns objects written with the `bucket-owner-full-control` ACL.
    BucketOwnerPreferred,
    /// The writer owns what it writes (S3's historical behaviour).
    ObjectWriter,
}

/// A bucket's object lock configuration (PutObjectLockConfiguration): lock is on, with
/// maybe a retention every new version gets unless its write says otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockConfiguration {
    /// The default retention, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_retention: Option<DefaultRetention>,
}

/// A bucket's default retention: a mode and a period in days or in years.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultRetention {
    /// The mode new versions are locked in.
    pub mode: LockMode,
    /// The period, in days or years.
    pub period: RetentionPeriod,
}

/// A default retention's period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RetentionPeriod {
    /// So many days.
    Days(u32),
    /// So many years (of 365 days).
    Years(u32),
}

/// How strictly a version is locked until its retention date.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockMode {
    /// Nobody deletes or shortens it, but a caller allowed to bypass governance retention.
    Governance,
    /// Nobody deletes or shortens it, whoever asks.
    Compliance,
}

/// A version's retention: locked in `mode` until `until`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// The lock's mode.
    pub mode: LockMode,
    /// When the lock ends.
    pub until: SystemTime,
}

/// A version's object lock: its retention and legal hold, each `None` until set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectLock {
    /// Its retention.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
    /// Its legal hold: on or off once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_hold: Option<bool>,
}

impl ObjectLock {
    fn is_unset(&self) -> bool {
        *self == ObjectLock::default()
    }

    /// `ObjectLocked` when the version may not be deleted now: a legal hold on, or a
    /// retention not yet ended (unless in governance mode and `bypass_governance`).
    fn allows_delete(&self, bypass_governance: bool) -> Result<(), StoreError> {
        if self.legal_hold == Some(true) {
            return Err(StoreError::ObjectLocked);
        }
        match self.retention {
            Some(r) if r.until > SystemTime::now() => match r.mode {
                LockMode::Governance if bypass_governance => Ok(()),
                _ => Err(StoreError::ObjectLocked),
            },
            _ => Ok(()),
        }
    }
}

/// What a bucket's public access block turns off: public ACLs and policies put from now on,
/// and the public grants and policy statements already there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicAccessBlock {
    /// Refuse putting an ACL that grants to everyone or to any signed caller.
    pub block_public_acls: bool,
    /// Ignore the grants of ACLs to everyone and to any signed caller.
    pub ignore_public_acls: bool,
    /// Refuse putting a policy that grants to anyone.
    pub block_public_policy: bool,
    /// Let a public policy grant to the bucket owner's account only.
    pub restrict_public_buckets: bool,
}

/// A bucket's versioning state (PutBucketVersioning).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Versioning {
    /// Every write makes a new version with an id of its own; deletes leave a marker.
    Enabled,
    /// Writes and deletes replace the key's "null" version; older versions stay.
    Suspended,
}

impl records::Versioned for BucketMeta {
    const ENVELOPE: records::Envelope = db::ENVELOPE;
    const VERSION: u32 = 1;
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
    /// For multipart objects: each part's own ETag (hex MD5), in order: a `partNumber` GET
    /// answers with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub part_etags: Vec<String>,
    /// For multipart objects uploaded with a checksum algorithm: each part's checksum
    /// (base64), in order (GetObjectAttributes lists them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub part_checksums: Vec<String>,
    /// Its tags (`x-amz-tagging`, PutObjectTagging).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    /// Its version id; `None` for the "null" version (written while the bucket was never
    /// versioned, or suspended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    /// A delete marker: no body, it hides the versions below it from GET and listings.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delete_marker: bool,
    /// Its object lock (retention, legal hold).
    #[serde(default, skip_serializing_if = "ObjectLock::is_unset")]
    pub lock: ObjectLock,
}

impl ObjectMeta {
    /// The version id as S3 shows it: "null" for the null version.
    pub fn version_label(&self) -> &str {
        self.version_id.as_deref().unwrap_or(NULL_VERSION)
    }
}

/// The id S3 gives the version written while a bucket is not versioning.
pub const NULL_VERSION: &str = "null";

/// One version of a key, as a request names it (`versionId`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VersionRef {
    /// `versionId=null`.
    Null,
    /// An id Walrus handed out.
    Id(String),
}

impl VersionRef {
    /// Parses a `versionId`: "null" or one of Walrus' ids; `None` for anything else
    /// (S3's `InvalidArgument`).
    pub fn parse(s: &str) -> Option<VersionRef> {
        if s == NULL_VERSION {
            Some(VersionRef::Null)
        } else {
            versions::seq_of(s).map(|_| VersionRef::Id(s.to_owned()))
        }
    }

    /// Whether `meta` is this version.
    fn names(&self, meta: &ObjectMeta) -> bool {
        match self {
            VersionRef::Null => meta.version_id.is_none(),
            VersionRef::Id(id) => meta.version_id.as_deref() == Some(id.as_str()),
        }
    }
}

/// What a delete did (S3's `x-amz-delete-marker` and `x-amz-version-id`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deleted {
    /// The version removed, or the delete marker written; `None` for an unversioned
    /// bucket's object.
    pub version_id: Option<String>,
    /// Whether a delete marker was written, or the version removed was one.
    pub delete_marker: bool,
}

/// ListObjectVersions parameters.
#[derive(Clone, Debug, Default)]
pub struct VersionQuery {
    /// Only keys starting with this.
    pub prefix: String,
    /// Roll keys up to the first occurrence of this after the prefix.
    pub delimiter: Option<String>,
    /// Start after this key (every version of it), or, with `version_marker`, after that
    /// version of it.
    pub key_marker: Option<String>,
    /// With `key_marker`: start after this version of that key.
    pub version_marker: Option<VersionRef>,
    /// At most this many versions plus common prefixes.
    pub max_keys: usize,
}

/// One page of ListObjectVersions.
#[derive(Clone, Debug, Default)]
pub struct VersionPage {
    /// Versions and delete markers in key order, newest first within a key, each with
    /// whether it is the key's current version.
    pub versions: Vec<(ObjectKey, ObjectMeta, bool)>,
    /// Common prefixes (when a delimiter was given), in order, each once.
    pub common_prefixes: Vec<String>,
    /// True when more follow.
    pub is_truncated: bool,
    /// Where the next page starts: a key (after every version of it when the version is
    /// `None`: a common prefix) and a version.
    pub next_marker: Option<(String, Option<String>)>,
}

/// What a new object carries besides its body.
#[derive(Clone, Debug)]
pub struct NewObject {
    /// Content headers and user metadata.
    pub headers: ObjectHeaders,
    /// The checksum given at upload, if any: algorithm and base64 value.
    pub checksum: Option<(ChecksumAlgorithm, String)>,
    /// Its ACL (owner inside).
    pub acl: Acl,
    /// Its tags.
    pub tags: Vec<Tag>,
    /// What must hold of the key's current version for the write to happen.
    pub condition: WriteCondition,
    /// Its object lock.
    pub lock: ObjectLock,
}

/// A conditional write's preconditions (`If-Match`, `If-None-Match`), checked against the
/// key's current version under the key's lock, so that two writers cannot both pass them.
/// A delete marker on top counts as no object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteCondition {
    /// Only over a current version with this ETag (`*`: any): `NoSuchKey` when there is
    /// none, `PreconditionFailed` when it differs.
    pub if_match: Option<String>,
    /// Only unless the current version has this ETag (`*`: unless there is one at all):
    /// `PreconditionFailed` otherwise.
    pub if_none_match: Option<String>,
}

/// A conditional delete's preconditions (`If-Match`, `x-amz-if-match-last-modified-time`,
/// `x-amz-if-match-size`), checked against the version a delete removes (or the key's
/// current entry) under the key's lock. A target that is not there passes (the delete is a
/// no-op); a delete marker has no ETag, time or size to match, only `If-Match: *`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteCondition {
    /// The target's ETag (`*`: any).
    pub etag: Option<String>,
    /// The target's Last-Modified, in whole seconds since the epoch.
    pub last_modified: Option<u64>,
    /// The target's size in bytes.
    pub size: Option<u64>,
}

impl DeleteCondition {
    /// Whether nothing is asked.
    fn is_empty(&self) -> bool {
        *self == DeleteCondition::default()
    }

    /// `PreconditionFailed` unless `target` is as asked.
    fn check(&self, target: &ObjectMeta) -> Result<(), StoreError> {
        let etag_ok = match self.etag.as_deref() {
            None => true,
            Some("*") => true,
            Some(e) => !target.delete_marker && same_etag(e, &target.etag),
        };
        let time_ok = self
            .last_modified
            .is_none_or(|t| !target.delete_marker && unix_secs(target.last_modified) == t);
        let size_ok = self
            .size
            .is_none_or(|s| !target.delete_marker && target.size == s);
        if etag_ok && time_ok && size_ok {
            Ok(())
        } else {
            Err(StoreError::PreconditionFailed)
        }
    }
}

/// Whether an ETag as a client sent it (maybe quoted) is `stored`.
fn same_etag(given: &str, stored: &str) -> bool {
    given.trim().trim_matches('"').eq_ignore_ascii_case(stored)
}

/// What a new multipart upload's object will carry besides its parts.
#[derive(Clone, Debug)]
pub struct NewUpload {
    /// Content headers and user metadata.
    pub headers: ObjectHeaders,
    /// The checksum algorithm announced, and how the object's checksum is made.
    pub checksum: Option<(ChecksumAlgorithm, ChecksumType)>,
    /// The ACL (owner inside: the initiator).
    pub acl: Acl,
    /// Its tags.
    pub tags: Vec<Tag>,
    /// Its object lock.
    pub lock: ObjectLock,
}

/// A staged body: on disk and fsynced (or held in memory when small), not yet visible.
/// Dropping it without committing discards it.
pub struct Staged {
    /// Number of bytes received.
    pub size: u64,
    /// Digests computed while the bytes streamed.
    pub digests: Digests,
    /// Where the bytes wait.
    data: StagedData,
}

/// Where a staged body waits for its commit.
enum StagedData {
    /// Small: in memory, to be stored inside the record.
    Inline(Bytes),
    /// Large: a complete, fsynced file in `tmp/`, removed if never committed.
    File(TempFile),
}

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staged")
            .field("size", &self.size)
            .field("digests", &self.digests)
            .field("inline", &matches!(self.data, StagedData::Inline(_)))
            .finish()
    }
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
    /// How the object's checksum is made from the parts'.
    #[serde(default, skip_serializing_if = "ChecksumType::is_composite")]
    pub checksum_type: ChecksumType,
    /// ACL the object will get (owner inside: the initiator).
    pub acl: Acl,
    /// Tags the object will get (`x-amz-tagging` at creation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    /// The object lock the object will get.
    #[serde(default, skip_serializing_if = "ObjectLock::is_unset")]
    pub lock: ObjectLock,
}

impl records::Versioned for UploadMeta {
    const ENVELOPE: records::Envelope = db::ENVELOPE;
    const VERSION: u32 = 1;
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
///
/// The synchronous methods that write (`create_bucket`, `delete_bucket`, `update_bucket`,
/// `update_object`, `create_upload`) wait for a WAL fsync: call them from a blocking-capable
/// context (`spawn_blocking`) on a busy server. The async methods move their blocking work
/// off the reactor themselves.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// The shared state behind [`Store`].
struct Inner {
    db: Meta,
    layout: Arc<Layout>,
    /// Which open this is; stamped into every data file name (see [`Store::open`]).
    epoch: u64,
    /// Shared records: how long a data file stays after its record is gone (see
    /// [`SharedRecords::removal_grace`]).
    grace: Option<std::time::Duration>,
    /// Shared by every write that adds to a bucket, exclusive for `delete_bucket`, so that
    /// nothing lands in a bucket between its emptiness check and its removal.
    gate: RwLock<()>,
    /// Serialises read-modify-write of bucket records.
    buckets: Mutex<()>,
    /// Striped by bucket and key: serialises read-modify-write of one object's record, so
    /// that the files of a replaced version are always reclaimed exactly once.
    keys: Box<[Mutex<()>]>,
    /// Striped by upload id: shared by part commits (parts of one upload commit
    /// concurrently and share WAL syncs), exclusive for completion and abort.
    uploads: Box<[RwLock<()>]>,
    /// Striped by upload id and part number: serialises replacing one part.
    parts: Box<[Mutex<()>]>,
    /// What each account holds, checked against its quotas.
    usage: usage::Ledger,
}

/// Lock stripes per kind: enough that unrelated writes rarely wait for each other.
const STRIPES: usize = 256;

fn stripes<T: Default>() -> Box<[T]> {
    (0..STRIPES).map(|_| T::default()).collect()
}

fn stripe_of(parts: &[&[u8]]) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parts.hash(&mut h);
    (h.finish() % STRIPES as u64) as usize
}

/// Locks a mutex whose guarded value is `()`: poisoning protects no data here, so a panic
/// elsewhere must not wedge the store.
fn lock(m: &Mutex<()>) -> MutexGuard<'_, ()> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read_lock(m: &RwLock<()>) -> RwLockReadGuard<'_, ()> {
    m.read().unwrap_or_else(PoisonError::into_inner)
}

fn write_lock(m: &RwLock<()>) -> RwLockWriteGuard<'_, ()> {
    m.write().unwrap_or_else(PoisonError::into_inner)
}

/// Seconds since the Unix epoch (0 for a time before it).
fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An epoch as stored (big-endian u64).
fn epoch_of(v: &[u8]) -> Result<u64, StoreError> {
    v.try_into()
        .map(u64::from_be_bytes)
        .map_err(|_| internal("bad epoch record"))
}

/// How often a read-modify-write is decided again when other front ends keep changing what
/// it read, before the client is asked to retry ([`StoreError::Conflict`]).
const DECISIONS: u32 = 16;

/// Runs `decide` (a read-modify-write ending in one checked batch) again while its batch
/// conflicts with another front end's write, backing off a little more each time. Only
/// shared records conflict; on RocksDB it runs once.
fn retrying<T>(mut decide: impl FnMut() -> Result<T, StoreError>) -> Result<T, StoreError> {
    let mut tries = 0;
    loop {
        match decide() {
            Err(StoreError::Conflict) if tries < DECISIONS => {
                tries += 1;
                let jitter = rand::random::<u64>() % (u64::from(tries) * 2_000);
                std::thread::sleep(std::time::Duration::from_micros(jitter));
            }
            other => return other,
        }
    }
}

/// Wraps a disk, database or thread failure as a 500.
fn internal(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    StoreError::Internal(e.into())
}

/// Runs blocking store work on tokio's blocking pool. If the caller's future is dropped,
/// the work still runs to completion (a commit is never cut in half).
async fn blocking<T, F>(f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.map_err(internal)?
}

impl Inner {
    fn key_lock(&self, bucket: &str, key: &str) -> MutexGuard<'_, ()> {
        lock(&self.keys[stripe_of(&[bucket.as_bytes(), key.as_bytes()])])
    }

    fn upload_lock(&self, upload_id: &str) -> &RwLock<()> {
        &self.uploads[stripe_of(&[upload_id.as_bytes()])]
    }

    fn part_lock(&self, upload_id: &str, part: u32) -> MutexGuard<'_, ()> {
        lock(&self.parts[stripe_of(&[upload_id.as_bytes(), &part.to_be_bytes()])])
    }

    /// With shared records: reads `key` and makes `batch` expect it unchanged, locked alone
    /// (the key's read-modify-write across front ends, as [`Inner::key_lock`] within one).
    fn expect_alone(&self, batch: &mut Batch, cf: Cf, key: &[u8]) -> Result<(), StoreError> {
        if self.db.is_shared() {
            let seen = self.db.get(cf, key)?;
            batch.expect_alone(cf, key, seen.as_deref());
        }
        Ok(())
    }

    /// With shared records: makes `batch` expect everything a decision about `bucket/key`
    /// reads to be as it is now, the key locked alone: its current record and how many
    /// entries it has in `versions` (every writer of the key takes the same lock, so a
    /// change between this read and the commit changes one or the other, but for a
    /// version's tags changed in place). Call it before the decision's own reads.
    fn expect_key(&self, batch: &mut Batch, bucket: &str, key: &str) -> Result<(), StoreError> {
        if self.db.is_shared() {
            self.expect_alone(batch, Cf::Objects, &db::object_key(bucket, key))?;
            let prefix = db::escaped_key(bucket, key);
            let mut it = self.db.prefixed(Cf::Versions, &prefix)?;
            let mut count = 0;
            while it.key().is_some() {
                count += 1;
                it.next();
            }
            it.status()?;
            batch.expect_count(Cf::Versions, &prefix, count);
        }
        Ok(())
    }

    /// Whether a failed write may have committed all the same (shared records: the database
    /// may have committed before the answer was lost), so that the data files it references
    /// must be left for the orphan sweep rather than removed.
    fn may_have_committed(&self, err: &StoreError) -> bool {
        self.db.is_shared() && matches!(err, StoreError::Internal(_))
    }

    /// A synced write.
    fn write(&self, batch: Batch) -> Result<(), StoreError> {
        self.db.write(batch)
    }

    /// Unlinks data files whose records are gone (their `pending` entries were written in
    /// the same batch that dropped the records), then clears those entries. A failure
    /// leaves the entry for the next open to retry.
    fn reclaim(&self, ids: &[FileId]) {
        if ids.is_empty() || self.grace.is_some() {
            // Shared records: the sweeper removes them once their grace is over.
            return;
        }
        let mut batch = Batch::default();
        for id in ids {
            match self.layout.unlink(*id) {
                Ok(true) => batch.delete(Cf::Pending, id.0),
                // Being read (RADOS): the entry stays for the next open to finish.
                Ok(false) => {}
                Err(e) => tracing::warn!(file = %id.hex(), error = %e, "cannot reclaim data file"),
            }
        }
        if let Err(e) = self.db.write_lazy(batch) {
            tracing::warn!(error = %e, "cannot clear reclaimed files");
        }
    }

    /// Adds to `batch`: `ids` are no longer referenced and are to be unlinked.
    fn retire(&self, batch: &mut Batch, ids: &[FileId]) {
        // Shared records: the entry says when the file may go (seconds since the epoch).
        let due = self
            .grace
            .map(|grace| unix_secs(SystemTime::now() + grace).to_be_bytes());
        for id in ids {
            batch.delete(Cf::Files, id.0);
            match &due {
                Some(due) => batch.put(Cf::Pending, id.0, due),
                None => batch.put(Cf::Pending, id.0, db::MARKER),
            }
        }
    }

    /// Shared records: removes the data files whose grace is over (any front end's: the
    /// first to see one due removes it; a second removal finds nothing), answering how many.
    fn sweep(&self) -> Result<usize, StoreError> {
        let now = unix_secs(SystemTime::now());
        let mut batch = Batch::default();
        let mut removed = 0;
        for (k, v) in self.db.entries(Cf::Pending)? {
            // An entry of the unshared format (a marker) is due at once.
            let due = <[u8; 8]>::try_from(&v[..]).map_or(0, u64::from_be_bytes);
            let Ok(raw) = <[u8; 16]>::try_from(&k[..]) else {
                batch.delete(Cf::Pending, k);
                continue;
            };
            if due > now {
                continue;
            }
            // Being read here: the entry stays for a later sweep.
            if self.layout.unlink(FileId(raw)).map_err(internal)? {
                batch.delete(Cf::Pending, k);
                removed += 1;
            }
        }
        self.db.write(batch)?;
        Ok(removed)
    }
}

/// Runs [`Inner::sweep`] every little while (a tenth of the grace, between 1 and 30 s) on a
/// thread of its own until the store is dropped.
fn sweep_in_background(
    inner: std::sync::Weak<Inner>,
    grace: std::time::Duration,
) -> std::io::Result<()> {
    let every = (grace / 10).clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(30),
    );
    std::thread::Builder::new()
        .name("walrus-sweep".into())
        .spawn(move || loop {
            std::thread::sleep(every);
            let Some(inner) = inner.upgrade() else {
                return;
            };
            match inner.sweep() {
                Ok(0) => {}
                Ok(removed) => tracing::debug!(removed, "removed data files past their grace"),
                Err(e) => tracing::warn!(error = %e, "cannot remove data files past their grace"),
            }
        })
        .map(drop)
}

impl Store {
    /// Opens (or creates) the store under `dir`, removing leftovers of a crash: temp files
    /// and data files no committed record references.
    ///
    /// Layout: `dir/db` (RocksDB), `dir/tmp` (bodies being received), `dir/data/xx/<id>`.
    /// Recovery is cheap: pending deletes are finished, `tmp/` is emptied, and only the data
    /// files of the previous open (their names carry its epoch) are checked against the
    /// `files` column family — an orphan can only come from a crash between installing a
    /// file and writing the record that references it.
    ///
    /// With [`ObjectData::Rados`] the data files are RADOS objects in the pool named; only
    /// `dir/db` is on this host.
    pub fn open(dir: &std::path::Path, data: &ObjectData) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(internal)?;
        let layout = match data {
            ObjectData::Files => Layout::create(dir).map_err(internal)?,
            ObjectData::Rados { conf, pool, .. } => {
                Layout::rados(rados::RadosData::connect(conf, pool).map_err(internal)?)
            }
        };
        let (shared, grace) = match data {
            ObjectData::Rados {
                shared: Some(shared),
                ..
            } => (
                Some(records::Postgres::connect(&shared.database).map_err(internal)?),
                Some(shared.removal_grace),
            ),
            _ => (None, None),
        };
        let removed = layout.clear_tmp().map_err(internal)?;
        if removed > 0 {
            tracing::info!(removed, "removed unfinished uploads");
        }
        let db = match shared {
            Some(pg) => Meta::Shared(pg),
            None => Meta::rocks(&dir.join("db"))?,
        };

        // Finish deletions that were committed but maybe not carried out (shared records:
        // the sweeper does, each when its grace is over).
        let mut batch = Batch::default();
        let pending = match db.is_shared() {
            true => Vec::new(),
            false => db.entries(Cf::Pending)?,
        };
        for (k, _) in pending {
            if let Ok(raw) = <[u8; 16]>::try_from(&k[..]) {
                // Nothing reads yet: the file goes now.
                layout.unlink(FileId(raw)).map_err(internal)?;
            }
            batch.delete(Cf::Pending, k);
        }
        db.write(batch)?;

        // Sweep the previous run's orphans.
        // Shared records: the epochs of every front end are drawn from one counter, and
        // each remembers its own last one beside it.
        let mine = dir.join("epoch");
        let previous = if db.is_shared() {
            match std::fs::read(&mine) {
                Ok(v) => Some(epoch_of(&v)?),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(internal(e)),
            }
        } else {
            db.get(Cf::Default, db::EPOCH_KEY)?
                .map(|v| epoch_of(&v))
                .transpose()?
        };
        if let Some(prev) = previous {
            let mut orphans = 0usize;
            for id in layout.files_of_epoch(prev).map_err(internal)? {
                if db.get(Cf::Files, id.0)?.is_none() {
                    layout.unlink(id).map_err(internal)?;
                    orphans += 1;
                }
            }
            if orphans > 0 {
                tracing::info!(orphans, "removed data files of uncommitted writes");
            }
        }
        let dropped = images::drop_old_format(&db)?;
        if dropped > 0 {
            tracing::info!(dropped, "dropped image index entries of the old format");
        }
        let usage = usage::Ledger::open(&db)?;
        let epoch = retrying(|| {
            let last = db.get(Cf::Default, db::EPOCH_KEY)?.map(|v| v.to_vec());
            let epoch = match &last {
                Some(v) => epoch_of(v)? + 1,
                None => 1,
            };
            let mut batch = Batch::default();
            batch.expect_alone(Cf::Default, db::EPOCH_KEY, last.as_deref());
            batch.put(Cf::Default, db::EPOCH_KEY, epoch.to_be_bytes());
            db.write(batch)?;
            Ok(epoch)
        })?;
        if db.is_shared() {
            identity::write_atomic(&mine, &epoch.to_be_bytes(), 0o644).map_err(internal)?;
        }

        let inner = Arc::new(Inner {
            db,
            layout: Arc::new(layout),
            epoch,
            grace,
            gate: RwLock::new(()),
            buckets: Mutex::new(()),
            keys: stripes(),
            uploads: stripes(),
            parts: stripes(),
            usage,
        });
        if let Some(grace) = grace {
            sweep_in_background(Arc::downgrade(&inner), grace).map_err(internal)?;
        }
        Ok(Store { inner })
    }

    // ---- buckets ----

    /// Creates a bucket owned by `acl.owner`, unless the owner has as many buckets as
    /// `quotas` allow (`TooManyBuckets`).
    pub fn create_bucket(
        &self,
        name: &BucketName,
        acl: Acl,
        location: Option<String>,
        quotas: &StorageQuotas,
    ) -> Result<BucketMeta, StoreError> {
        buckets::create(&self.inner, name, acl, location, quotas)
    }

    /// The bucket's record.
    pub fn bucket(&self, name: &BucketName) -> Result<BucketMeta, StoreError> {
        buckets::get(&self.inner, name.as_str())
    }

    /// Every bucket, in name order (the S3 layer filters by owner).
    pub fn list_buckets(&self) -> Result<Vec<BucketMeta>, StoreError> {
        buckets::list(&self.inner)
    }

    /// Deletes a bucket that holds no object; its multipart uploads in progress are aborted
    /// (their parts' files reclaimed) with it.
    pub fn delete_bucket(&self, name: &BucketName) -> Result<(), StoreError> {
        buckets::delete(&self.inner, name)
    }

    /// Changes the bucket's record (its ACL, tags, configurations) under the bucket lock and
    /// with no write in flight (a write reads the bucket's versioning state once, and acts
    /// on it), synced; `change` may refuse, and nothing is written then.
    pub fn update_bucket(
        &self,
        name: &BucketName,
        change: impl FnOnce(&mut BucketMeta) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        buckets::update(&self.inner, name, change)
    }

    // ---- objects ----

    /// Streams `body` to durable storage, computing MD5 and what `want` asks for. When
    /// `expected_len` is given, a body of any other length fails with `IncompleteBody`.
    /// Blocking I/O and hashing run off the async reactor.
    pub async fn stage(
        &self,
        body: BodyStream,
        expected_len: Option<u64>,
        want: DigestRequest,
    ) -> Result<Staged, StoreError> {
        data::stage(
            Arc::clone(&self.inner.layout),
            self.inner.epoch,
            body,
            expected_len,
            want,
        )
        .await
    }

    /// Makes a staged body the current version of `bucket/key`: in a never-versioned or
    /// suspended bucket it replaces the key's null version (whose data is then reclaimed),
    /// in a versioned one it goes on top. Refused when `object.condition` does not hold, or
    /// when the bucket's owner would then store more than `quotas` allow (`QuotaExceeded`).
    /// Durable before it returns; the result carries the version's id and time.
    pub async fn commit_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        staged: Staged,
        object: NewObject,
        quotas: &StorageQuotas,
    ) -> Result<ObjectMeta, StoreError> {
        let inner = Arc::clone(&self.inner);
        let (bucket, key, quotas) = (bucket.clone(), key.clone(), *quotas);
        blocking(move || objects::commit(&inner, &bucket, &key, staged, object, &quotas)).await
    }

    /// The current version of the object (`NoSuchKey` when there is none, or a delete
    /// marker is on top).
    pub fn object(&self, bucket: &BucketName, key: &ObjectKey) -> Result<ObjectMeta, StoreError> {
        objects::meta(&self.inner, bucket, key)
    }

    /// The current version of the object, or version `version`; unlike [`Store::object`]
    /// either may be a delete marker (`delete_marker` set), which S3 answers for
    /// differently than for a missing key (`NoSuchKey`) or version (`NoSuchVersion`).
    pub fn object_version(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        version: Option<&VersionRef>,
    ) -> Result<ObjectMeta, StoreError> {
        versions::meta(&self.inner, bucket, key, version)
    }

    /// Reads `len` bytes from `offset` of the object version `meta` describes as a stream
    /// of chunks (bounded memory; large reads in large chunks), even if it is replaced
    /// meanwhile (data is reclaimed only when no reader holds it) — or fails with
    /// `NoSuchKey` if that version is gone.
    ///
    /// The files are opened before this returns: a later delete unlinks them, and an open
    /// file outlives its unlink, so the stream always completes with the version asked for.
    pub fn read(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        meta: &ObjectMeta,
        offset: u64,
        len: u64,
    ) -> Result<BodyStream, StoreError> {
        objects::read(&self.inner, bucket, key, meta, offset, len)
    }

    /// Changes the metadata (ACL, tags) of the current version, or of version `version`, in
    /// place, under the key's lock, synced; the body stays. `change` may refuse, and nothing
    /// is written then; a delete marker is refused (`MethodNotAllowed`).
    pub fn update_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        version: Option<&VersionRef>,
        change: impl FnOnce(&mut ObjectMeta) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        versions::update(&self.inner, bucket, key, version, change)
    }

    /// DeleteObject without a version: removes the object of a never-versioned bucket
    /// (a missing key is no error), or puts a delete marker owned by `requester` on top of
    /// a versioned one's versions; if `condition` holds of the current entry.
    pub async fn delete_object(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        requester: &str,
        condition: DeleteCondition,
    ) -> Result<Deleted, StoreError> {
        let inner = Arc::clone(&self.inner);
        let (bucket, key, requester) = (bucket.clone(), key.clone(), requester.to_owned());
        blocking(move || versions::delete_current(&inner, &bucket, &key, &requester, &condition))
            .await
    }

    /// Deletes one version (or delete marker) for good, if `condition` holds of it and its
    /// object lock allows it (`ObjectLocked`: a legal hold, or a retention not ended, unless
    /// governance retention is bypassed); the next newest becomes current when it was the
    /// current one. A missing version is no error.
    pub async fn delete_version(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        version: &VersionRef,
        condition: DeleteCondition,
        bypass_governance: bool,
    ) -> Result<Deleted, StoreError> {
        let inner = Arc::clone(&self.inner);
        let (bucket, key, version) = (bucket.clone(), key.clone(), version.clone());
        blocking(move || {
            versions::delete_version(
                &inner,
                &bucket,
                &key,
                &version,
                &condition,
                bypass_governance,
            )
        })
        .await
    }

    /// One page of the bucket's versions and delete markers (ListObjectVersions).
    pub fn list_versions(
        &self,
        bucket: &BucketName,
        query: &VersionQuery,
    ) -> Result<VersionPage, StoreError> {
        versions::list(&self.inner, bucket, query)
    }

    /// One page of the bucket's keys.
    pub fn list_objects(
        &self,
        bucket: &BucketName,
        query: &ListQuery,
    ) -> Result<ListPage, StoreError> {
        list::objects(&self.inner, bucket, query)
    }

    // ---- multipart ----

    /// Starts a multipart upload and returns its record (with a fresh, unguessable id).
    pub fn create_upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload: NewUpload,
    ) -> Result<UploadMeta, StoreError> {
        multipart::create(&self.inner, bucket, key, upload)
    }

    /// The upload's record, checking it belongs to `bucket/key`.
    pub fn upload(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<UploadMeta, StoreError> {
        multipart::get(&self.inner, bucket, key, upload_id)
    }

    /// Stores a part (replacing a previous part of the same number), unless the bucket's
    /// owner would then store more than `quotas` allow (`QuotaExceeded`). Durable on
    /// return.
    pub async fn commit_part(
        &self,
        upload: &UploadMeta,
        part_number: u32,
        staged: Staged,
        checksum: Option<String>,
        quotas: &StorageQuotas,
    ) -> Result<PartMeta, StoreError> {
        let inner = Arc::clone(&self.inner);
        let (upload, quotas) = (upload.clone(), *quotas);
        blocking(move || {
            multipart::commit_part(&inner, &upload, part_number, staged, checksum, &quotas)
        })
        .await
    }

    /// Parts of an upload with numbers greater than `after`, at most `max`, and whether
    /// more follow.
    pub fn list_parts(
        &self,
        upload: &UploadMeta,
        after: u32,
        max: usize,
    ) -> Result<(Vec<PartMeta>, bool), StoreError> {
        multipart::list_parts(&self.inner, upload, after, max)
    }

    /// Uploads in progress in a bucket, ordered by (key, initiation), after the given
    /// markers, at most `max`, and whether more follow.
    pub fn list_uploads(
        &self,
        bucket: &BucketName,
        prefix: &str,
        key_marker: Option<&str>,
        upload_id_marker: Option<&str>,
        max: usize,
    ) -> Result<(Vec<UploadMeta>, bool), StoreError> {
        multipart::list_uploads(
            &self.inner,
            bucket,
            prefix,
            key_marker,
            upload_id_marker,
            max,
        )
    }

    /// Completes an upload from the parts the client lists (number and ETag, ascending):
    /// re-references the part files, never copies them; all but the last part must be at
    /// least 5 MiB; the object becomes the key's current version as with
    /// [`Store::commit_object`], if `condition` holds. Durable on return; the upload is gone
    /// afterwards.
    pub async fn complete_upload(
        &self,
        upload: &UploadMeta,
        parts: &[(u32, String)],
        claimed: Option<String>,
        condition: WriteCondition,
    ) -> Result<ObjectMeta, StoreError> {
        let inner = Arc::clone(&self.inner);
        let upload = upload.clone();
        let parts = parts.to_vec();
        blocking(move || {
            multipart::complete(&inner, &upload, &parts, claimed.as_deref(), &condition)
        })
        .await
    }

    /// Aborts an upload and reclaims its parts.
    pub async fn abort_upload(&self, upload: &UploadMeta) -> Result<(), StoreError> {
        let inner = Arc::clone(&self.inner);
        let upload = upload.clone();
        blocking(move || multipart::abort(&inner, &upload)).await
    }

    // ---- usage ----

    /// What `account` holds: the buckets it owns, and the bytes of the objects and of the
    /// parts of uploads in progress in them (writes under way included).
    pub fn usage(&self, account: &str) -> Usage {
        self.inner.usage.usage(account)
    }

    // ---- the image feed's index ----

    /// The image the feed made of the manifest whose bytes hash to `manifest_sha256`, if any.
    pub fn image_entry(&self, manifest_sha256: &str) -> Result<Option<ImageEntry>, StoreError> {
        images::get(&self.inner, manifest_sha256)
    }

    /// Records the image the feed made of the manifest whose bytes hash to
    /// `manifest_sha256`. Durable on return (a synced WAL write: call it from a
    /// blocking-capable context).
    pub fn record_image(
        &self,
        manifest_sha256: &str,
        entry: &ImageEntry,
    ) -> Result<(), StoreError> {
        images::put(&self.inner, manifest_sha256, entry)
    }

    /// Every image the feed made, by manifest SHA-256.
    pub fn image_entries(&self) -> Result<Vec<(String, ImageEntry)>, StoreError> {
        images::all(&self.inner)
    }

    /// Forgets the images made of these manifests (their plain image was collected).
    /// Durable on return.
    pub fn remove_image_entries(&self, manifest_sha256s: &[String]) -> Result<(), StoreError> {
        images::remove(&self.inner, manifest_sha256s)
    }

    // ---- the cloud's registrations of bundles ----

    /// Records that image `image_id` is registered with `registration`'s manifest
    /// (replacing what was recorded for it). Durable on return.
    pub fn put_registration(
        &self,
        image_id: &str,
        registration: &Registration,
    ) -> Result<(), StoreError> {
        registrations::put(&self.inner, image_id, registration)
    }

    /// Forgets image `image_id`'s registration (nothing to do if there is none). Durable on
    /// return.
    pub fn delete_registration(&self, image_id: &str) -> Result<(), StoreError> {
        registrations::delete(&self.inner, image_id)
    }

    /// Every registration, by image id.
    pub fn registrations(&self) -> Result<Vec<(String, Registration)>, StoreError> {
        registrations::all(&self.inner)
    }
}

/// Where Walrus keeps object bytes, and where its records are when shared.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ObjectData {
    /// Files under the data dir: `walrus/data/xx/<id>`.
    #[default]
    Files,
    /// Objects of a Ceph RADOS pool, striped in 4 MiB objects.
    Rados {
        /// The cluster's ceph.conf (monitors; client `admin`).
        conf: std::path::PathBuf,
        /// The pool.
        pool: String,
        /// Records shared with the other front ends on the pool (`None`: RocksDB in the
        /// data dir).
        shared: Option<SharedRecords>,
    },
}

/// Walrus' records in a PostgreSQL database that several front ends share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedRecords {
    /// The database (a `postgresql://` URL or libpq's `key=value` pairs).
    pub database: String,
    /// How long a data file whose record is gone stays in the pool before it is removed:
    /// a GET streaming it through another front end (which this one cannot see) finishes
    /// within it. Ceph RGW's garbage collector waits two hours by default.
    pub removal_grace: std::time::Duration,
}

/// Streams `len` bytes of `file` from `offset` the way object bodies are streamed (1 MiB
/// chunks read ahead on a blocking thread): for files that live beside the object store,
/// such as the image feed's plain images.
pub fn stream_file(file: std::fs::File, offset: u64, len: u64) -> BodyStream {
    data::stream_segments(vec![data::Segment {
        file: data::Source::File(Arc::new(file)),
        offset,
        len,
    }])
}

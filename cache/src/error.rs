//! The one error type of the cache.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::Sha256Digest;

/// The error a fetcher returns: any error, boxed, since fetchers live in other crates (the
/// node controller's is an HTTP client talking to Walrus).
pub type FetchError = Box<dyn std::error::Error + Send + Sync>;

/// Everything that can go wrong in the image cache.
///
/// It is `Clone` because a single-flight fetch has one outcome and many callers waiting for
/// it: each of them gets the same error (a corrupt image is reported to every instance that
/// asked for it, and fetched once). So sources are kept behind `Arc`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CacheError {
    /// The bytes fetched do not hash to the digest asked for (a corrupt or wrong image in
    /// Walrus, or damage on the way). Nothing was kept.
    #[error("the image fetched has SHA-256 {actual}, not the {expected} that was asked for")]
    HashMismatch {
        /// The digest the caller asked for.
        expected: Sha256Digest,
        /// The digest of the bytes the fetcher delivered.
        actual: Sha256Digest,
    },

    /// The image cannot fit under the size limit even after evicting every image that may be
    /// evicted: the instance must fail with this reason rather than wait for room.
    #[error(
        "the image cache cannot make room for {needed} bytes: its limit is {limit} bytes, \
         and {unevictable} bytes of it hold images in use, recently used or being fetched"
    )]
    Full {
        /// Bytes the new image needs.
        needed: u64,
        /// The configured size limit.
        limit: u64,
        /// Bytes held by pinned images, images younger than the minimum age and in-flight
        /// fetches: what no eviction can free now.
        unevictable: u64,
    },

    /// `pin` was asked for an image the cache does not hold.
    #[error("image {0} is not in the cache")]
    NotCached(Sha256Digest),

    /// The fetcher failed (Walrus unreachable, refused, or the stream broke). Nothing was kept.
    #[error("fetching the image failed")]
    Fetch(#[source] Arc<dyn std::error::Error + Send + Sync>),

    /// Work of the cache ended without an outcome: its task panicked (the panic was logged)
    /// or the runtime is shutting down.
    #[error("the image cache's work ended without an outcome")]
    Aborted,

    /// The sink refused bytes because writing the image already failed; the fetcher should
    /// stop and return the error, the cache reports the cause of the failure instead.
    #[error("the image is no longer being written, because writing it failed")]
    SinkClosed,

    /// A file system operation of the cache failed.
    #[error("the cache could not {action} {path}")]
    Io {
        /// What the cache was doing, as a verb phrase ("create the temporary file").
        action: &'static str,
        /// The file or folder concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: Arc<io::Error>,
    },

    /// Another process has the cache folder open: two caches on one folder would delete each
    /// other's in-flight fetches at open.
    #[error("another process holds the image cache at {0}")]
    Locked(PathBuf),

    /// A clone or ephemeral disk was asked for at a path that already exists; the cache never
    /// overwrites a disk.
    #[error("{0} already exists")]
    DestinationExists(PathBuf),

    /// `qemu-img create` failed to make a qcow2 overlay.
    #[error("qemu-img could not create the overlay {dest} ({status}): {stderr}")]
    QemuImg {
        /// The overlay that was to be created.
        dest: PathBuf,
        /// How qemu-img ended.
        status: String,
        /// What qemu-img printed on standard error.
        stderr: String,
    },

    /// The chunk list a source gave does not fit the image (wrong count or a zero chunk
    /// size): nothing of the image can be checked, so nothing of it is used.
    #[error("the chunk list of image {image} does not fit it: {why}")]
    BadChunkList {
        /// The image.
        image: Sha256Digest,
        /// What does not fit.
        why: String,
    },

    /// A chunk of a lazily filled image kept failing its digest: the source holds it damaged.
    /// It was never served or kept, and the image is given up.
    #[error(
        "chunk {chunk} (at byte {offset}) of image {image} failed its SHA-256 {tries} times: the image source holds it damaged, and nothing of it was used"
    )]
    CorruptChunk {
        /// The image.
        image: Sha256Digest,
        /// The chunk's index.
        chunk: u64,
        /// Its first byte in the image.
        offset: u64,
        /// How many times it was fetched.
        tries: u32,
    },

    /// The source of a lazily filled image kept failing for longer than the caller's patience.
    #[error("the source of image {image} kept failing for {secs} s")]
    Unreachable {
        /// The image.
        image: Sha256Digest,
        /// The patience that ran out, in seconds.
        secs: u64,
        /// The source's last error.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },

    /// A read past the end of an image.
    #[error("bytes {offset}+{len} are past the end of the {size}-byte image")]
    OutOfRange {
        /// The first byte asked for.
        offset: u64,
        /// How many.
        len: u64,
        /// The image's size.
        size: u64,
    },

    /// A string given as an image digest is not 64 hex digits.
    #[error("{0:?} is not a SHA-256 digest of 64 hex digits")]
    InvalidDigest(String),
}

impl CacheError {
    /// A `map_err` adapter that names what failed and where.
    pub(crate) fn io<'a>(
        action: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(io::Error) -> Self + 'a {
        move |source| Self::Io {
            action,
            path: path.to_owned(),
            source: Arc::new(source),
        }
    }
}

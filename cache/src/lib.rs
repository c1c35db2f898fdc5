//! The node's content-addressed image store.
//!
//! A node boots instances from images it gets from Walrus by their SHA-256. This crate keeps
//! those images on the node, once each, however many instances use them:
//!
//! - `ImageCache::get_or_fetch` returns a `Lease` on an image, fetching it on a miss through a
//!   `Fetcher` the caller provides (the cache has no network code). Concurrent calls for one
//!   image share one fetch. The bytes are hashed as they stream to a temp file and published
//!   (renamed into `sha256/`) only once the digest matches, after an fsync.
//! - A size limit is kept by evicting the least recently used images that no lease holds and
//!   that have been unused for a minimum age; when that cannot make room the answer is
//!   `CacheError::Full`, at once, never a wait.
//! - `Lease::clone_for_instance` makes an instance's disk without copying: a reflink where the
//!   file system shares extents, else a qcow2 overlay on the raw image; `create_ephemeral`
//!   makes sparse extra disks.
//! - `ImageCache::open_lazy` gives an image an instance can boot from before it has arrived:
//!   a `LazyImage` filled chunk by verified chunk on demand and in the background, served to
//!   QEMU by an `NbdExport` as the backing of the instance's overlay, published as an ordinary
//!   cached image once complete and verified.
//!
//! The API is async (tokio) because its caller, the node controller, is: a fetch is a
//! stream from Walrus, and waiting for another caller's fetch must not hold a thread. Every
//! blocking step (hashing, writing, fsync, rename, reflink, qemu-img) runs on tokio's
//! blocking pool, never on the reactor.

mod clone;
mod digest;
mod error;
mod fetch;
mod lazy;
mod nbd;
mod store;

pub use clone::{create_ephemeral, CloneKind};
pub use digest::Sha256Digest;
pub use error::{CacheError, FetchError};
pub use fetch::{Fetcher, ImageSink};
pub use lazy::{Base, BoxFuture, ChunkList, ChunkSource, FillState, LazyImage};
pub use nbd::NbdExport;
pub use store::{CacheStats, ImageCache, Lease, Limits};

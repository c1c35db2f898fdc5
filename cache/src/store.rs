//! The store: its layout on disk, the in-memory index, pins, and eviction.
//!
//! ```text
//! DIR/lock            flock held while a cache is open: one process per folder
//! DIR/sha256/<hex>    the plain images, read-only (0444), named by their SHA-256
//! DIR/tmp/            fetches in flight and evicted images being deleted; emptied at open
//! ```
//!
//! There is no index file: the folder is the index. An image's size is its length and its
//! last use is its mtime (set when a lease is released), so nothing can disagree with the
//! files after a crash. Pins are not persisted either: the node controller's instance folders
//! are its truth, and at start it pins the image of each live instance again (`pin`).

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, TryLockError};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::{CacheError, CloneKind, Sha256Digest};

/// How big the cache may grow and how long an unused image is kept at least.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most bytes the cached images (and the fetches in flight) may take together.
    pub max_bytes: u64,
    /// An unused image is not evicted before it has been unused this long, so that a burst of
    /// launches of several images does not evict one image to fetch another and back.
    pub min_age: Duration,
}

/// The node's content-addressed image store, shared by all the instances of the node.
///
/// Cheap to clone (an `Arc`): every task of the node controller can hold one.
#[derive(Clone)]
pub struct ImageCache {
    pub(crate) inner: Arc<Inner>,
}

/// What an open cache shares between its handles, its leases and its fetch tasks.
pub(crate) struct Inner {
    /// `DIR/sha256`, absolute: qcow2 overlays record the path of their base.
    pub(crate) images: PathBuf,
    /// `DIR/tmp`, on the same file system as `images` so that publishing is a rename.
    pub(crate) tmp: PathBuf,
    limits: Limits,
    state: Mutex<State>,
    /// Numbers temp files and in-flight fetches so that names and ids never repeat.
    next_id: AtomicU64,
    /// Holds the exclusive flock on `DIR/lock` for as long as the cache is open.
    _lock: File,
}

/// The index and the accounting, under one lock: every change to them is a few map
/// operations, and the only I/O done under it is renaming evicted images out of the way.
#[derive(Default)]
pub(crate) struct State {
    entries: HashMap<Sha256Digest, Entry>,
    pub(crate) in_flight: HashMap<Sha256Digest, InFlight>,
    /// Images being filled on demand, that later callers share instead of filling again.
    pub(crate) lazy: HashMap<Sha256Digest, crate::lazy::LazySlot>,
    /// Bytes of the images in `entries`.
    stored: u64,
    /// Bytes promised to fetches in flight.
    reserved: u64,
}

/// One cached image.
struct Entry {
    size: u64,
    last_used: SystemTime,
    /// Leases held on it; a pinned image is never evicted.
    pins: usize,
}

/// A fetch in flight, that later callers for the same image join instead of fetching again.
pub(crate) struct InFlight {
    /// Tells this fetch from a later one of the same image (after this one failed).
    pub(crate) id: u64,
    /// Callers waiting for it; each gets a pin when the image is published.
    pub(crate) waiters: usize,
    /// Where the outcome appears; cloned by each caller that joins.
    pub(crate) outcome: watch::Receiver<Outcome>,
}

/// The outcome of a fetch, `None` until it is known.
pub(crate) type Outcome = Option<Result<(), CacheError>>;

/// What `stats` reports: what the node controller tells the cluster about its disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Images in the cache.
    pub images: usize,
    /// Bytes they take.
    pub stored_bytes: u64,
    /// Images held by at least one lease.
    pub pinned_images: usize,
    /// Bytes promised to fetches in flight.
    pub reserved_bytes: u64,
}

impl ImageCache {
    /// Opens (creating it if needed) the cache in `dir`: removes what a crash left in
    /// `tmp/` and anything in `sha256/` that the cache cannot have published, and rebuilds
    /// the index from the files. Nothing is evicted at open, even over the limit, so that the
    /// node controller can first pin the images of its live instances.
    pub async fn open(dir: impl AsRef<Path>, limits: Limits) -> Result<Self, CacheError> {
        let dir = dir.as_ref().to_owned();
        let inner = blocking(move || Inner::open(&dir, limits)).await??;
        Ok(Self {
            inner: Arc::new(inner),
        })
    }

    /// Pins an image already in the cache, so that it is not evicted while the lease lives:
    /// how the node controller holds the bases of the instances it finds alive at start.
    pub fn pin(&self, digest: &Sha256Digest) -> Result<Lease, CacheError> {
        if Inner::pin_locked(&mut self.inner.lock_state(), digest) {
            Ok(Lease::new(self.inner.clone(), *digest))
        } else {
            Err(CacheError::NotCached(*digest))
        }
    }

    /// A snapshot of the cache's contents and accounting.
    pub fn stats(&self) -> CacheStats {
        let state = self.inner.lock_state();
        CacheStats {
            images: state.entries.len(),
            stored_bytes: state.stored,
            pinned_images: state.entries.values().filter(|e| e.pins > 0).count(),
            reserved_bytes: state.reserved,
        }
    }

    /// The limits the cache was opened with.
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }
}

impl fmt::Debug for ImageCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImageCache")
            .field("images", &self.inner.images)
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// The blocking part of `ImageCache::open`.
    fn open(dir: &Path, limits: Limits) -> Result<Self, CacheError> {
        fs::create_dir_all(dir).map_err(CacheError::io("create the folder", dir))?;
        let root = fs::canonicalize(dir).map_err(CacheError::io("resolve the folder", dir))?;
        let lock_path = root.join("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(CacheError::io("open the lock file", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(CacheError::Locked(root)),
            Err(TryLockError::Error(e)) => {
                return Err(CacheError::io("lock the lock file", &lock_path)(e))
            }
        }
        let images = root.join("sha256");
        let tmp = root.join("tmp");
        for d in [&images, &tmp] {
            fs::create_dir_all(d).map_err(CacheError::io("create the folder", d))?;
        }
        clear_tmp(&tmp)?;
        let mut state = State::default();
        for dir_entry in fs::read_dir(&images).map_err(CacheError::io("list", &images))? {
            let dir_entry = dir_entry.map_err(CacheError::io("list", &images))?;
            let path = dir_entry.path();
            let meta = dir_entry
                .metadata()
                .map_err(CacheError::io("inspect", &path))?;
            match published_image(&dir_entry.file_name(), &meta) {
                Some(digest) => {
                    let last_used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                    state.stored += meta.len();
                    state.entries.insert(
                        digest,
                        Entry {
                            size: meta.len(),
                            last_used,
                            pins: 0,
                        },
                    );
                }
                None => {
                    tracing::warn!(path = %path.display(), "removing a file the image cache did not publish");
                    remove_any(&path, meta.is_dir())?;
                }
            }
        }
        tracing::info!(
            dir = %root.display(),
            images = state.entries.len(),
            bytes = state.stored,
            "image cache opened"
        );
        Ok(Self {
            images,
            tmp,
            limits,
            state: Mutex::new(state),
            next_id: AtomicU64::new(0),
            _lock: lock,
        })
    }

    /// Locks the index. A panic while it was held cannot leave it half-updated in a way that
    /// matters (each update is a few field changes with no I/O in between), so a poisoned
    /// lock is used as is rather than turning every later call into a panic.
    pub(crate) fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A number never handed out before by this cache.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Where a published image lives.
    pub(crate) fn image_path(&self, digest: &Sha256Digest) -> PathBuf {
        self.images.join(digest.to_hex())
    }

    /// Promises `bytes` to a fetch, evicting images if needed. Blocking: it may rename and
    /// delete evicted images.
    pub(crate) fn reserve(self: &Arc<Self>, bytes: u64) -> Result<Reservation, CacheError> {
        self.make_room(bytes)?;
        Ok(Reservation {
            inner: self.clone(),
            bytes,
        })
    }

    /// Adds `bytes` to the reserved total, first evicting the least recently used images that
    /// are unpinned and older than the minimum age, as few as needed. If even evicting all of
    /// them would not make room, nothing is evicted and the cache is `Full`.
    fn make_room(&self, bytes: u64) -> Result<(), CacheError> {
        let now = SystemTime::now();
        let mut doomed = Vec::new();
        {
            let mut state = self.lock_state();
            let limit = self.limits.max_bytes;
            let committed = state.stored + state.reserved;
            let free = limit.saturating_sub(committed);
            if bytes > free {
                let mut candidates: Vec<(SystemTime, Sha256Digest, u64)> = state
                    .entries
                    .iter()
                    .filter(|(_, e)| {
                        e.pins == 0
                            && now
                                .duration_since(e.last_used)
                                .is_ok_and(|age| age >= self.limits.min_age)
                    })
                    .map(|(d, e)| (e.last_used, *d, e.size))
                    .collect();
                let evictable: u64 = candidates.iter().map(|c| c.2).sum();
                if free + evictable < bytes {
                    return Err(CacheError::Full {
                        needed: bytes,
                        limit,
                        unevictable: committed - evictable,
                    });
                }
                candidates.sort_unstable();
                let mut freed = 0;
                for (_, digest, size) in candidates {
                    if free + freed >= bytes {
                        break;
                    }
                    freed += size;
                    state.entries.remove(&digest);
                    state.stored -= size;
                    // Renamed out of sha256/ under the lock, so that a new fetch of the same
                    // image cannot publish it before this deletion runs.
                    let from = self.image_path(&digest);
                    let to = self
                        .tmp
                        .join(format!("evicted.{digest}.{}", self.next_id()));
                    match fs::rename(&from, &to) {
                        Ok(()) => doomed.push((digest, to)),
                        Err(e) => {
                            tracing::warn!(path = %from.display(), error = %e, "could not evict a cached image")
                        }
                    }
                }
            }
            state.reserved += bytes;
        }
        for (digest, path) in doomed {
            tracing::info!(image = %digest, "evicted from the image cache");
            if let Err(e) = fs::remove_file(&path) {
                tracing::warn!(path = %path.display(), error = %e, "could not delete an evicted image");
            }
        }
        Ok(())
    }

    /// Records a published image, pinned once for each caller waiting for it.
    pub(crate) fn insert(state: &mut State, digest: Sha256Digest, size: u64, pins: usize) {
        state.stored += size;
        let mut entry = Entry {
            size,
            last_used: SystemTime::now(),
            pins,
        };
        // Single flight means an image is only fetched when absent. Were it present anyway,
        // the file was replaced by an identical one: count its bytes once, keep its pins.
        if let Some(old) = state.entries.remove(&digest) {
            state.stored -= old.size;
            entry.pins += old.pins;
        }
        state.entries.insert(digest, entry);
    }

    /// Takes one pin of an image if the cache holds it; the caller wraps it in a `Lease`.
    pub(crate) fn pin_locked(state: &mut State, digest: &Sha256Digest) -> bool {
        match state.entries.get_mut(digest) {
            Some(entry) => {
                entry.pins += 1;
                entry.last_used = SystemTime::now();
                true
            }
            None => false,
        }
    }

    /// Releases one pin of an image and notes its use, for leases and for waiters that went
    /// away before taking the pin they were given.
    pub(crate) fn unpin(state: &mut State, digest: &Sha256Digest) {
        if let Some(entry) = state.entries.get_mut(digest) {
            entry.pins = entry.pins.saturating_sub(1);
            entry.last_used = SystemTime::now();
        }
    }
}

/// Bytes promised to a fetch in flight; given back when dropped, or moved into the index
/// when the image is published.
pub(crate) struct Reservation {
    inner: Arc<Inner>,
    bytes: u64,
}

impl Reservation {
    /// Grows the promise to `total` bytes when a fetch delivers more than its size hint.
    pub(crate) fn cover(&mut self, total: u64) -> Result<(), CacheError> {
        if total > self.bytes {
            self.inner.make_room(total - self.bytes)?;
            self.bytes = total;
        }
        Ok(())
    }

    /// Gives the promise back inside a section that already holds the lock.
    pub(crate) fn release_in(&mut self, state: &mut State) {
        state.reserved -= self.bytes;
        self.bytes = 0;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.inner.lock_state().reserved -= self.bytes;
        }
    }
}

/// A pin on a cached image: while it lives, the image stays. An instance holds one for its
/// whole life, since its disk is a clone of (for qcow2, an overlay on) the image.
pub struct Lease {
    inner: Arc<Inner>,
    digest: Sha256Digest,
}

impl Lease {
    /// Wraps a pin already counted in the index.
    pub(crate) fn new(inner: Arc<Inner>, digest: Sha256Digest) -> Self {
        Self { inner, digest }
    }

    /// The image this lease holds.
    pub fn digest(&self) -> Sha256Digest {
        self.digest
    }

    /// The absolute path of the image: read-only, never to be written.
    pub fn path(&self) -> PathBuf {
        self.inner.image_path(&self.digest)
    }

    /// Makes a copy-on-write disk of the image at `dest` for an instance: a reflink where the
    /// file system can share extents (XFS, btrfs), else a qcow2 overlay backed by the image's
    /// absolute path with the backing format pinned to raw. It takes the lease, not a digest,
    /// so that no disk can be made of an image that might be evicted under it.
    pub async fn clone_for_instance(
        &self,
        dest: impl AsRef<Path>,
    ) -> Result<CloneKind, CacheError> {
        let base = self.path();
        let dest = dest.as_ref().to_owned();
        blocking(move || crate::clone::clone_image(&base, &dest)).await?
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        Inner::unpin(&mut self.inner.lock_state(), &self.digest);
        // The mtime is the last use that survives a restart; losing it only makes the image
        // look older to the eviction order, so a failure is not worth more than a log line.
        let path = self.path();
        if let Err(e) = File::open(&path).and_then(|f| f.set_modified(SystemTime::now())) {
            tracing::debug!(path = %path.display(), error = %e, "could not record the last use of an image");
        }
    }
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Lease").field(&self.digest).finish()
    }
}

/// Runs blocking file system work off the async reactor.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, CacheError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|_| CacheError::Aborted)
}

/// The digest an entry of `sha256/` stands for, if the cache could have published it: a
/// regular file, named by a digest in lower case, read-only. Files are made read-only just
/// before the rename that publishes them, so anything else is not a finished image.
fn published_image(name: &std::ffi::OsStr, meta: &fs::Metadata) -> Option<Sha256Digest> {
    let name = name.to_str()?;
    let digest: Sha256Digest = name.parse().ok()?;
    let read_only = meta.permissions().mode() & 0o7777 == 0o444;
    (meta.is_file() && read_only && digest.to_hex() == name).then_some(digest)
}

/// Empties `tmp/`: fetches a crash interrupted and evicted images not yet deleted.
fn clear_tmp(tmp: &Path) -> Result<(), CacheError> {
    for dir_entry in fs::read_dir(tmp).map_err(CacheError::io("list", tmp))? {
        let dir_entry = dir_entry.map_err(CacheError::io("list", tmp))?;
        let path = dir_entry.path();
        let is_dir = dir_entry
            .file_type()
            .map_err(CacheError::io("inspect", &path))?
            .is_dir();
        tracing::info!(path = %path.display(), "removing what a crash left in the image cache");
        remove_any(&path, is_dir)?;
    }
    Ok(())
}

/// Removes a file or a whole folder.
fn remove_any(path: &Path, is_dir: bool) -> Result<(), CacheError> {
    if is_dir {
        fs::remove_dir_all(path).map_err(CacheError::io("remove", path))
    } else {
        fs::remove_file(path).map_err(CacheError::io("remove", path))
    }
}

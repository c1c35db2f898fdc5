//! Images that boot before they have arrived: a base filled on demand, chunk by verified
//! chunk, while the rest streams in behind.
//!
//! On a miss the cache makes a sparse temp file of the image's size and learns the SHA-256 of
//! each of its chunks (Walrus records them at unbundling). A read of bytes not yet here fetches
//! the chunks it covers (by range), checks each against its digest, writes it to the file and
//! only then answers; once asked, a background task fetches the other chunks in order. When every
//! chunk is here the whole file is hashed: if it is the image asked for, it is published like a
//! fetched image (read-only, renamed into `sha256/`) and later starts are ordinary hits.
//!
//! Nothing unverified is ever served or kept: a chunk that keeps failing its digest fails the
//! whole image, and a failed image's temp file goes with its last user. A source that is away
//! (Walrus restarting) is retried with backoff, readers waiting, for as long as the caller's
//! patience allows.

use std::collections::HashMap;
use std::fs::{self, File};
use std::future::Future;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::fetch::{sync_dir, TempFile};
use crate::store::{blocking, Inner, Reservation};
use crate::{CacheError, FetchError, ImageCache, Lease, Sha256Digest};

/// A boxed future, so that a chunk source can sit behind `dyn` in an image shared by tasks.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Chunks the background fill fetches at once: enough to keep a link to Walrus busy, few
/// enough that a guest's read waits behind little.
const FILL_PARALLEL: usize = 4;

/// Fetches of one chunk whose bytes fail their digest before the image is given up: damage on
/// the way may be transient, damage on Walrus' disk is not.
const CORRUPT_TRIES: u32 = 3;

/// The chunk sizes a chunk list may have: a chunk is fetched, hashed and held in memory whole.
const MIN_CHUNK: u64 = 4 << 10;
const MAX_CHUNK: u64 = 16 << 20;

/// The longest pause between two tries of a source that is away.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Where the pieces of a lazily filled image come from: implemented by the node controller
/// (Walrus' image feed, by range) and by tests.
pub trait ChunkSource: Send + Sync + 'static {
    /// The chunk size and the SHA-256 of each chunk of the image, in order.
    fn chunk_list<'a>(
        &'a self,
        digest: &'a Sha256Digest,
    ) -> BoxFuture<'a, Result<ChunkList, FetchError>>;

    /// Bytes `offset .. offset + len` of the image. It should fail in bounded time: the cache
    /// retries.
    fn read_range<'a>(
        &'a self,
        digest: &'a Sha256Digest,
        offset: u64,
        len: u64,
    ) -> BoxFuture<'a, Result<Bytes, FetchError>>;
}

/// The digests that let a node check each piece of an image on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkList {
    /// Bytes per chunk; the last chunk may be shorter.
    pub chunk_size: u64,
    /// The SHA-256 of each chunk, in order.
    pub digests: Vec<Sha256Digest>,
}

/// How a lazily filled image is doing, as its users see it.
#[derive(Debug, Clone)]
pub enum FillState {
    /// Chunks are arriving: `have` of `chunks` are here.
    Filling {
        /// Chunks verified and written.
        have: u64,
        /// Chunks in the image.
        chunks: u64,
    },
    /// Every chunk is here, the whole image verified and published in the cache.
    Complete,
    /// The image cannot be had; its users must stop using it.
    Failed(CacheError),
}

/// What `ImageCache::open_lazy` gives: the cached image, or one being filled.
pub enum Base {
    /// The image was in the cache: an ordinary lease.
    Cached(Lease),
    /// The image is arriving: read it through this (an NBD export serves it to QEMU).
    Filling(LazyImage),
}

/// An image being filled on demand. Cheap to clone; while any clone lives the image is
/// kept (pinned, once published). When the last clone goes, an image not yet published is
/// discarded (its temp file and reservation with it): the background fill holds a clone
/// until it ends, so an image whose fill was started is completed.
#[derive(Clone)]
pub struct LazyImage {
    shared: Arc<Shared>,
}

/// A lazy image that later callers for the same image join: being made (they wait for
/// it), or made (held weakly: the cache's map never keeps an image alive by itself).
pub(crate) enum LazySlot {
    Making {
        id: u64,
        image: watch::Receiver<Option<Result<LazyImage, CacheError>>>,
    },
    Made {
        id: u64,
        image: Weak<Shared>,
    },
}

impl LazySlot {
    fn id(&self) -> u64 {
        match self {
            LazySlot::Making { id, .. } | LazySlot::Made { id, .. } => *id,
        }
    }
}

pub(crate) struct Shared {
    cache: Arc<Inner>,
    /// The slot's id in the cache's `lazy` map, which this image leaves when it ends.
    slot: u64,
    digest: Sha256Digest,
    size: u64,
    chunk_size: u64,
    chunks: Vec<Sha256Digest>,
    /// The temp file, open for reading and writing; still valid once renamed into place.
    file: File,
    temp: Mutex<TempFile>,
    reservation: Mutex<Option<Reservation>>,
    source: Arc<dyn ChunkSource>,
    patience: Duration,
    progress: Mutex<Progress>,
    state: watch::Sender<FillState>,
    /// Bytes received from the source, verified or not.
    fetched: AtomicU64,
    /// Whether the background fill was started.
    filling: AtomicBool,
}

/// Which chunks are here and which are on their way.
struct Progress {
    have: Vec<bool>,
    count: u64,
    fetching: HashMap<u64, watch::Receiver<Option<Result<(), CacheError>>>>,
    /// Whether the image was published (and so pinned once for this image).
    published: bool,
}

impl ImageCache {
    /// The image named `digest` for an instance to boot from at once: a lease if it is
    /// cached, else an image filled on demand from `source` (shared with any other caller
    /// filling it). `patience` is how long a source that keeps failing is retried before the
    /// image fails.
    pub async fn open_lazy(
        &self,
        digest: Sha256Digest,
        size: u64,
        source: Arc<dyn ChunkSource>,
        patience: Duration,
    ) -> Result<Base, CacheError> {
        loop {
            let (mut slot, setup, made) = {
                let mut state = self.inner.lock_state();
                if Inner::pin_locked(&mut state, &digest) {
                    return Ok(Base::Cached(Lease::new(self.inner.clone(), digest)));
                }
                match state.lazy.get(&digest) {
                    Some(LazySlot::Making { image, .. }) => (Some(image.clone()), None, None),
                    // Upgraded under the lock, looked at outside it: dropping the last
                    // clone of an image takes the lock.
                    Some(LazySlot::Made { id, image }) => {
                        (None, None, Some((*id, image.upgrade())))
                    }
                    None => {
                        let id = self.inner.next_id();
                        let (tx, rx) = watch::channel(None);
                        state.lazy.insert(
                            digest,
                            LazySlot::Making {
                                id,
                                image: rx.clone(),
                            },
                        );
                        (Some(rx), Some((id, tx)), None)
                    }
                }
            };
            if let Some((id, image)) = made {
                match image.map(|shared| LazyImage { shared }) {
                    Some(image) if !image.has_failed() => return Ok(Base::Filling(image)),
                    // Gone or failed: start afresh.
                    _ => {
                        remove_slot(&self.inner, &digest, id);
                        continue;
                    }
                }
            }
            if let Some((id, tx)) = setup {
                // In a task of its own: a caller that gives up does not strand the others.
                let inner = self.inner.clone();
                let source = source.clone();
                tokio::spawn(async move {
                    let made = make(inner.clone(), id, digest, size, source, patience).await;
                    {
                        let mut state = inner.lock_state();
                        let ours = state.lazy.get(&digest).is_some_and(|s| s.id() == id);
                        match &made {
                            Ok(image) if ours => {
                                state.lazy.insert(
                                    digest,
                                    LazySlot::Made {
                                        id,
                                        image: Arc::downgrade(&image.shared),
                                    },
                                );
                            }
                            Err(_) if ours => {
                                state.lazy.remove(&digest);
                            }
                            _ => {}
                        }
                    }
                    tx.send_replace(Some(made));
                });
            }
            let Some(slot) = slot.as_mut() else {
                continue;
            };
            let made = match slot.wait_for(Option::is_some).await {
                Ok(made) => made.clone(),
                Err(_) => None,
            };
            return match made {
                Some(Ok(image)) => Ok(Base::Filling(image)),
                Some(Err(e)) => Err(e),
                None => Err(CacheError::Aborted),
            };
        }
    }
}

/// Makes a lazy image: room, a sparse temp file of the image's size, and its chunk list.
async fn make(
    inner: Arc<Inner>,
    slot: u64,
    digest: Sha256Digest,
    size: u64,
    source: Arc<dyn ChunkSource>,
    patience: Duration,
) -> Result<LazyImage, CacheError> {
    let prepare = inner.clone();
    let (file, temp, reservation) = blocking(move || {
        let reservation = prepare.reserve(size)?;
        let (file, temp) = TempFile::create(&prepare, &digest)?;
        file.set_len(size)
            .map_err(CacheError::io("set the size of", &temp.path))?;
        Ok::<_, CacheError>((file, temp, reservation))
    })
    .await??;
    let list = with_patience(&digest, patience, || source.chunk_list(&digest)).await?;
    let expected = match list.chunk_size {
        MIN_CHUNK..=MAX_CHUNK => Some(size.div_ceil(list.chunk_size)),
        _ => None,
    };
    if expected != Some(list.digests.len() as u64) {
        return Err(CacheError::BadChunkList {
            image: digest,
            why: format!(
                "{} digests of {}-byte chunks for {size} bytes",
                list.digests.len(),
                list.chunk_size
            ),
        });
    }
    let chunks = list.digests.len();
    Ok(LazyImage {
        shared: Arc::new(Shared {
            cache: inner,
            slot,
            digest,
            size,
            chunk_size: list.chunk_size,
            chunks: list.digests,
            file,
            temp: Mutex::new(temp),
            reservation: Mutex::new(Some(reservation)),
            source,
            patience,
            progress: Mutex::new(Progress {
                have: vec![false; chunks],
                count: 0,
                fetching: HashMap::new(),
                published: false,
            }),
            state: watch::channel(FillState::Filling {
                have: 0,
                chunks: chunks as u64,
            })
            .0,
            fetched: AtomicU64::new(0),
            filling: AtomicBool::new(false),
        }),
    })
}

/// Calls `attempt` until it succeeds, backing off between tries, for at most `patience`.
async fn with_patience<T, F, Fut>(
    digest: &Sha256Digest,
    patience: Duration,
    mut attempt: F,
) -> Result<T, CacheError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, FetchError>>,
{
    let started = Instant::now();
    let mut backoff = Duration::from_millis(50);
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(e) if started.elapsed() >= patience => {
                return Err(CacheError::Unreachable {
                    image: *digest,
                    secs: patience.as_secs(),
                    source: Arc::from(e),
                })
            }
            Err(e) => {
                tracing::debug!(image = %digest, error = %e, "image source failed; trying again");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Takes the lazy slot `id` of `digest` out of the cache's map, if it is still there.
fn remove_slot(inner: &Inner, digest: &Sha256Digest, id: u64) {
    let mut state = inner.lock_state();
    if state.lazy.get(digest).is_some_and(|s| s.id() == id) {
        state.lazy.remove(digest);
    }
}

impl LazyImage {
    /// The image's SHA-256.
    pub fn digest(&self) -> Sha256Digest {
        self.shared.digest
    }

    /// The image's size in bytes.
    pub fn size(&self) -> u64 {
        self.shared.size
    }

    /// Bytes received from the source so far: what a start cost the network.
    pub fn fetched_bytes(&self) -> u64 {
        self.shared.fetched.load(Ordering::Relaxed)
    }

    /// Makes `dest` an instance disk on this image as `export` serves it: a qcow2 overlay
    /// whose backing is the export's NBD URI, so the guest boots before the image is here.
    /// The export must outlive the instance's domain.
    pub async fn clone_for_instance(
        &self,
        export: &crate::NbdExport,
        dest: impl AsRef<std::path::Path>,
    ) -> Result<crate::CloneKind, CacheError> {
        let uri = export.uri();
        let size = export.size();
        let dest = dest.as_ref().to_owned();
        blocking(move || crate::clone::overlay_on_export(&uri, size, &dest)).await??;
        Ok(crate::CloneKind::Qcow2Overlay)
    }

    /// Whether the image has failed.
    fn has_failed(&self) -> bool {
        matches!(*self.shared.state.borrow(), FillState::Failed(_))
    }

    /// Whether `other` is this very image (not merely one of the same digest: an image that
    /// failed and the one filled again after it are two).
    pub fn is(&self, other: &LazyImage) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// Watches how the fill is doing (a node ends the instances of an image that failed).
    pub fn state(&self) -> watch::Receiver<FillState> {
        self.shared.state.subscribe()
    }

    /// Waits until the image is complete and published, or has failed.
    pub async fn finished(&self) -> Result<(), CacheError> {
        let mut state = self.state();
        let end = state
            .wait_for(|s| !matches!(s, FillState::Filling { .. }))
            .await
            .map_err(|_| CacheError::Aborted)?
            .clone();
        match end {
            FillState::Failed(e) => Err(e),
            _ => Ok(()),
        }
    }

    /// Reads `len` bytes at `offset`, fetching (and verifying) the chunks they cover that are
    /// not here yet. It waits while the source is away; chunks already here are served even
    /// once the image has failed, missing ones then fail. A range past the end is refused.
    pub async fn read(&self, offset: u64, len: u64) -> Result<Bytes, CacheError> {
        let shared = &self.shared;
        if offset.checked_add(len).is_none_or(|end| end > shared.size) {
            return Err(CacheError::OutOfRange {
                offset,
                len,
                size: shared.size,
            });
        }
        if len == 0 {
            return Ok(Bytes::new());
        }
        let first = offset / shared.chunk_size;
        let last = (offset + len - 1) / shared.chunk_size;
        // Every missing chunk is asked for before any is waited for: they arrive together.
        let waits: Vec<_> = (first..=last).filter_map(|i| self.want(i)).collect();
        for wait in waits {
            wait_chunk(wait).await?;
        }
        let image = self.clone();
        blocking(move || {
            let mut buf = vec![0; len as usize];
            image
                .shared
                .file
                .read_exact_at(&mut buf, offset)
                .map_err(|e| CacheError::io("read", &image.temp_path())(e))?;
            Ok(Bytes::from(buf))
        })
        .await?
    }

    /// The temp file's path, for error messages (asked only when one is made: it takes a
    /// lock, and reads are the hot path).
    fn temp_path(&self) -> std::path::PathBuf {
        lock(&self.shared.temp).path.clone()
    }

    /// Starts fetching chunk `i` unless it is here or on its way; returns what to wait on,
    /// or `None` when the chunk is here.
    fn want(&self, i: u64) -> Option<watch::Receiver<Option<Result<(), CacheError>>>> {
        let mut progress = lock(&self.shared.progress);
        if progress.have[i as usize] {
            return None;
        }
        if let Some(wait) = progress.fetching.get(&i) {
            return Some(wait.clone());
        }
        let (tx, rx) = watch::channel(None);
        progress.fetching.insert(i, rx.clone());
        drop(progress);
        // In a task of its own, so that a reader that goes away (its guest stopped) does not
        // abandon a chunk others wait for.
        let image = self.clone();
        tokio::spawn(async move {
            let fetched = image.fetch_chunk(i).await;
            let mut progress = lock(&image.shared.progress);
            progress.fetching.remove(&i);
            if fetched.is_ok() && !progress.have[i as usize] {
                progress.have[i as usize] = true;
                progress.count += 1;
                let have = progress.count;
                drop(progress);
                image.shared.state.send_if_modified(|s| match s {
                    FillState::Filling { have: h, .. } => {
                        *h = have;
                        true
                    }
                    _ => false,
                });
            } else {
                drop(progress);
            }
            if let Err(e) = &fetched {
                image.fail(e.clone());
            }
            tx.send_replace(Some(fetched));
        });
        Some(rx)
    }

    /// Fetches chunk `i`, verifies it and writes it to the temp file.
    async fn fetch_chunk(&self, i: u64) -> Result<(), CacheError> {
        let shared = &self.shared;
        let offset = i * shared.chunk_size;
        let len = shared.chunk_size.min(shared.size - offset);
        let mut corrupt = 0;
        loop {
            if let FillState::Failed(e) = &*shared.state.borrow() {
                return Err(e.clone());
            }
            let bytes = with_patience(&shared.digest, shared.patience, || async {
                let bytes = shared
                    .source
                    .read_range(&shared.digest, offset, len)
                    .await?;
                shared
                    .fetched
                    .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                match bytes.len() as u64 == len {
                    true => Ok(bytes),
                    false => Err(FetchError::from(format!(
                        "asked for {len} bytes at {offset}, got {}",
                        bytes.len()
                    ))),
                }
            })
            .await?;
            let image = self.clone();
            let verified = blocking(move || {
                if Sha256Digest::of(&bytes) != image.shared.chunks[i as usize] {
                    return Ok(false);
                }
                image
                    .shared
                    .file
                    .write_all_at(&bytes, offset)
                    .map_err(|e| CacheError::io("write", &image.temp_path())(e))?;
                Ok::<_, CacheError>(true)
            })
            .await??;
            if verified {
                return Ok(());
            }
            corrupt += 1;
            tracing::warn!(image = %shared.digest, chunk = i, tries = corrupt, "an image chunk failed its digest");
            if corrupt >= CORRUPT_TRIES {
                return Err(CacheError::CorruptChunk {
                    image: shared.digest,
                    chunk: i,
                    offset,
                    tries: corrupt,
                });
            }
        }
    }

    /// Marks the image failed (once): its readers get `e`, new callers start afresh.
    fn fail(&self, e: CacheError) {
        let shared = &self.shared;
        let first = shared.state.send_if_modified(|s| match s {
            FillState::Failed(_) => false,
            _ => {
                *s = FillState::Failed(e.clone());
                true
            }
        });
        if first {
            tracing::warn!(image = %shared.digest, error = %e, "lazy image failed");
            remove_slot(&shared.cache, &shared.digest, shared.slot);
        }
    }

    /// Starts fetching the rest of the image in the background (once, however often it is
    /// called): every chunk in order, a few at once, then the whole image verified and
    /// published. A node calls it once its guest runs, so that the fill does not compete
    /// with what the start needs; until then only the chunks read are fetched.
    pub fn fill_in_background(&self) {
        if !self.shared.filling.swap(true, Ordering::Relaxed) {
            tokio::spawn(self.clone().fill());
        }
    }

    /// The background fill (see `fill_in_background`); guests' reads start their own
    /// fetches meanwhile.
    async fn fill(self) {
        let total = self.shared.chunks.len() as u64;
        let mut next = 0;
        let mut running = JoinSet::new();
        loop {
            while running.len() < FILL_PARALLEL && next < total {
                if let Some(wait) = self.want(next) {
                    running.spawn(wait_chunk(wait));
                }
                next += 1;
            }
            match running.join_next().await {
                None => break,
                Some(Ok(Ok(()))) => {}
                // The chunk's task marked the image failed already (`fail` keeps the first
                // cause), unless it died without an outcome.
                Some(Ok(Err(e))) => return self.fail(e),
                Some(Err(_)) => return self.fail(CacheError::Aborted),
            }
        }
        if let Err(e) = self.publish().await {
            self.fail(e);
        }
    }

    /// Hashes the complete temp file and, if it is the image, makes it the cache's entry:
    /// read-only, durable, renamed into `sha256/`, pinned while this image is in use.
    async fn publish(&self) -> Result<(), CacheError> {
        let image = self.clone();
        blocking(move || {
            let shared = &image.shared;
            let temp_path = image.temp_path();
            let mut hasher = Sha256::new();
            let mut buf = vec![0; 1 << 20];
            let mut at = 0;
            while at < shared.size {
                let n = buf.len().min((shared.size - at) as usize);
                shared
                    .file
                    .read_exact_at(&mut buf[..n], at)
                    .map_err(CacheError::io("read", &temp_path))?;
                hasher.update(&buf[..n]);
                at += n as u64;
            }
            let actual = Sha256Digest::from_bytes(hasher.finalize().into());
            if actual != shared.digest {
                return Err(CacheError::HashMismatch {
                    expected: shared.digest,
                    actual,
                });
            }
            shared
                .file
                .set_permissions(fs::Permissions::from_mode(0o444))
                .map_err(CacheError::io("make read-only", &temp_path))?;
            shared
                .file
                .sync_all()
                .map_err(CacheError::io("flush to disk", &temp_path))?;
            let dest = shared.cache.image_path(&shared.digest);
            fs::rename(&temp_path, &dest).map_err(CacheError::io("publish", &dest))?;
            lock(&shared.temp).armed = false;
            if let Err(e) = sync_dir(&shared.cache.images) {
                let _ = fs::remove_file(&dest);
                return Err(e);
            }
            let mut reservation = lock(&shared.reservation).take();
            {
                let mut state = shared.cache.lock_state();
                if let Some(r) = reservation.as_mut() {
                    r.release_in(&mut state);
                }
                Inner::insert(&mut state, shared.digest, shared.size, 1);
                lock(&shared.progress).published = true;
                if state
                    .lazy
                    .get(&shared.digest)
                    .is_some_and(|s| s.id() == shared.slot)
                {
                    state.lazy.remove(&shared.digest);
                }
            }
            drop(reservation);
            tracing::info!(image = %shared.digest, bytes = shared.size, "lazily filled image cached");
            Ok(())
        })
        .await??;
        self.shared.state.send_replace(FillState::Complete);
        Ok(())
    }
}

/// Waits for a chunk fetch's outcome.
async fn wait_chunk(
    mut wait: watch::Receiver<Option<Result<(), CacheError>>>,
) -> Result<(), CacheError> {
    match wait.wait_for(Option::is_some).await {
        Ok(outcome) => outcome.clone().unwrap_or(Err(CacheError::Aborted)),
        Err(_) => Err(CacheError::Aborted),
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let published = lock(&self.progress).published;
        let mut state = self.cache.lock_state();
        if published {
            Inner::unpin(&mut state, &self.digest);
        } else if state
            .lazy
            .get(&self.digest)
            .is_some_and(|s| s.id() == self.slot)
        {
            state.lazy.remove(&self.digest);
        }
        // The temp file (if never published) and the reservation go with their guards.
    }
}

/// Locks a mutex of a lazy image; a panic while one was held leaves nothing half-done that
/// matters (each update is a few field changes).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

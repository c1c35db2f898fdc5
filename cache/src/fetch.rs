//! Single-flight fetches: one download per image however many instances ask for it, hashed
//! while it streams, verified before it is published.
//!
//! The fetcher is async because the node controller is (its fetcher is an HTTP client
//! streaming from Walrus). It hands chunks to an `ImageSink`, a bounded channel to a
//! blocking thread that hashes and writes them: the reactor never hashes or touches the disk,
//! hashing overlaps the network, and memory is bounded by the channel whatever the image size.
//! The fetch runs in its own task, so a caller that gives up (its instance was terminated)
//! does not cancel the download that other callers wait for.

use std::fs::{self, File};
use std::future::Future;
use std::io::{BufWriter, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest as _, Sha256};
use tokio::sync::{mpsc, watch};

use crate::store::{blocking, InFlight, Inner, Outcome, Reservation};
use crate::{CacheError, FetchError, ImageCache, Lease, Sha256Digest};

/// Chunks buffered between the fetcher and the writer thread: with the 16–64 KiB chunks of an
/// HTTP body, a few MiB at most in memory per fetch.
const SINK_CHUNKS: usize = 64;

/// Bytes gathered before each write to the temp file.
const WRITE_BUFFER: usize = 1 << 20;

/// Where an image's bytes come from: implemented by the node controller (an HTTP client that
/// asks Walrus for the image by its digest) and by tests (bytes in memory). The cache knows
/// no network.
pub trait Fetcher: Send + Sync + 'static {
    /// Streams the plain image named by `digest` into `sink`, in order, and returns when the
    /// last byte was written. It should give up in bounded time (a timeout on the transfer):
    /// every caller waiting for this image waits for this future. It need not check the
    /// digest, the cache does.
    fn fetch(
        &self,
        digest: &Sha256Digest,
        sink: &mut ImageSink,
    ) -> impl Future<Output = Result<(), FetchError>> + Send;
}

/// Receives an image's bytes from a fetcher, with backpressure: `write` waits while the
/// writer thread is behind.
pub struct ImageSink {
    tx: mpsc::Sender<Bytes>,
}

impl ImageSink {
    /// Appends a chunk to the image. Fails with `SinkClosed` once writing has failed (the
    /// disk, or the cache is full); the fetcher should then return the error, and the caller
    /// is told the cause rather than this.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), CacheError> {
        if chunk.is_empty() {
            return Ok(());
        }
        self.tx
            .send(chunk)
            .await
            .map_err(|_| CacheError::SinkClosed)
    }
}

impl ImageCache {
    /// Returns a lease on the image named `digest`, fetching it first if the cache does not
    /// hold it. Concurrent calls for one image share one fetch and its outcome (a corrupt
    /// image is fetched once and reported to all of them).
    ///
    /// `size_hint` is the expected size: that much room is made (evicting if needed) before
    /// the fetch starts, so a cache that cannot hold the image fails at once with `Full`
    /// instead of after a download. More room is made if more bytes come.
    pub async fn get_or_fetch<F: Fetcher>(
        &self,
        digest: Sha256Digest,
        size_hint: u64,
        fetcher: F,
    ) -> Result<Lease, CacheError> {
        let (mut outcome, waiter, flight) = {
            let mut state = self.inner.lock_state();
            if Inner::pin_locked(&mut state, &digest) {
                return Ok(Lease::new(self.inner.clone(), digest));
            }
            let (outcome, id, flight) = match state.in_flight.get_mut(&digest) {
                Some(flight) => {
                    flight.waiters += 1;
                    (flight.outcome.clone(), flight.id, None)
                }
                None => {
                    let id = self.inner.next_id();
                    let (tx, rx) = watch::channel(None);
                    state.in_flight.insert(
                        digest,
                        InFlight {
                            id,
                            waiters: 1,
                            outcome: rx.clone(),
                        },
                    );
                    let flight = Flight {
                        inner: self.inner.clone(),
                        digest,
                        id,
                        tx: Some(tx),
                    };
                    (rx, id, Some(flight))
                }
            };
            let waiter = Waiter {
                inner: self.inner.clone(),
                digest,
                id,
                outcome: outcome.clone(),
                armed: true,
            };
            (outcome, waiter, flight)
        };
        // Spawned outside the lock: a runtime that is shutting down drops the task at once,
        // and its drop guard takes the lock.
        if let Some(flight) = flight {
            tokio::spawn(flight.run(size_hint, fetcher));
        }
        let result = match outcome.wait_for(Option::is_some).await {
            Ok(result) => result.clone(),
            Err(_) => None,
        };
        match result {
            Some(Ok(())) => Ok(waiter.into_lease()),
            Some(Err(e)) => Err(e),
            None => Err(CacheError::Aborted),
        }
    }
}

/// A caller waiting for a fetch. The pin it is owed is counted when the image is published;
/// if the caller goes away first (its future dropped), the guard takes its count back.
struct Waiter {
    inner: Arc<Inner>,
    digest: Sha256Digest,
    id: u64,
    outcome: watch::Receiver<Outcome>,
    armed: bool,
}

impl Waiter {
    /// Turns the pin counted for this waiter into a lease.
    fn into_lease(mut self) -> Lease {
        self.armed = false;
        Lease::new(self.inner.clone(), self.digest)
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut state = self.inner.lock_state();
        match state.in_flight.get_mut(&self.digest) {
            Some(flight) if flight.id == self.id => flight.waiters -= 1,
            // The fetch is over. The outcome is sent under the same lock that records the
            // image, so it is known here; if the image was published, a pin was counted
            // for this waiter.
            _ => {
                if matches!(*self.outcome.borrow(), Some(Ok(()))) {
                    Inner::unpin(&mut state, &self.digest);
                }
            }
        }
    }
}

/// The task that fetches one image. Its drop guard withdraws the in-flight record if the
/// task dies without an outcome (a panicking fetcher), so waiters see `Aborted`, not a hang.
struct Flight {
    inner: Arc<Inner>,
    digest: Sha256Digest,
    id: u64,
    tx: Option<watch::Sender<Outcome>>,
}

impl Flight {
    /// Fetches, verifies and publishes the image, then tells the waiters.
    async fn run<F: Fetcher>(mut self, size_hint: u64, fetcher: F) {
        let result = fetch_into_cache(&self.inner, self.digest, size_hint, &fetcher).await;
        let mut reservation = None;
        {
            let mut state = self.inner.lock_state();
            let waiters = match state.in_flight.remove(&self.digest) {
                Some(flight) if flight.id == self.id => flight.waiters,
                Some(other) => {
                    // Cannot happen (a fetch is only started when none is in flight); put
                    // the other back rather than lose it.
                    state.in_flight.insert(self.digest, other);
                    0
                }
                None => 0,
            };
            let outcome = match result {
                Ok(mut published) => {
                    published.reservation.release_in(&mut state);
                    Inner::insert(&mut state, self.digest, published.size, waiters);
                    tracing::info!(image = %self.digest, bytes = published.size, "image cached");
                    reservation = Some(published.reservation);
                    Ok(())
                }
                Err(e) => {
                    tracing::warn!(image = %self.digest, error = %e, "image fetch failed");
                    Err(e)
                }
            };
            if let Some(tx) = self.tx.take() {
                tx.send_replace(Some(outcome));
            }
        }
        // Dropped outside the lock: its drop would take it again.
        drop(reservation);
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        if self.tx.is_some() {
            let mut state = self.inner.lock_state();
            if state
                .in_flight
                .get(&self.digest)
                .is_some_and(|f| f.id == self.id)
            {
                state.in_flight.remove(&self.digest);
            }
        }
    }
}

/// An image written, hashed and published under its name.
struct Published {
    size: u64,
    reservation: Reservation,
}

/// Reserves room, streams the fetcher's bytes to a temp file through the writer thread, and
/// publishes the file if (and only if) the fetch succeeded and the digest matches.
async fn fetch_into_cache<F: Fetcher>(
    inner: &Arc<Inner>,
    digest: Sha256Digest,
    size_hint: u64,
    fetcher: &F,
) -> Result<Published, CacheError> {
    let prepare = inner.clone();
    let (file, temp, reservation) = blocking(move || {
        let reservation = prepare.reserve(size_hint)?;
        let (file, temp) = TempFile::create(&prepare, &digest)?;
        Ok::<_, CacheError>((file, temp, reservation))
    })
    .await??;
    let (tx, rx) = mpsc::channel(SINK_CHUNKS);
    let writer = tokio::task::spawn_blocking(move || write_image(file, temp, reservation, rx));
    let mut sink = ImageSink { tx };
    let fetched = fetcher.fetch(&digest, &mut sink).await;
    drop(sink);
    // A write failure is the cause of whatever the fetcher saw (`SinkClosed`): report it first.
    let written = writer.await.map_err(|_| CacheError::Aborted)??;
    let fetched = fetched.map_err(|e| CacheError::Fetch(Arc::from(e)));
    let publish = inner.clone();
    blocking(move || written.publish(&publish, digest, fetched)).await?
}

/// The writer thread: hashes and writes each chunk, growing the reservation as bytes come.
fn write_image(
    file: File,
    temp: TempFile,
    mut reservation: Reservation,
    mut rx: mpsc::Receiver<Bytes>,
) -> Result<Written, CacheError> {
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, file);
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = rx.blocking_recv() {
        size += chunk.len() as u64;
        reservation.cover(size)?;
        hasher.update(&chunk);
        out.write_all(&chunk)
            .map_err(CacheError::io("write", &temp.path))?;
    }
    let file = out
        .into_inner()
        .map_err(|e| CacheError::io("write", &temp.path)(e.into_error()))?;
    Ok(Written {
        file,
        temp,
        reservation,
        size,
        actual: Sha256Digest::from_bytes(hasher.finalize().into()),
    })
}

/// A complete temp file and what was learnt writing it.
struct Written {
    file: File,
    temp: TempFile,
    reservation: Reservation,
    size: u64,
    actual: Sha256Digest,
}

impl Written {
    /// Publishes the image: checks the digest, makes the file read-only, fsyncs it, renames
    /// it into `sha256/` and fsyncs the folder. On any failure the temp file is removed (by
    /// its guard) and nothing is visible.
    fn publish(
        mut self,
        inner: &Inner,
        expected: Sha256Digest,
        fetched: Result<(), CacheError>,
    ) -> Result<Published, CacheError> {
        fetched?;
        if self.actual != expected {
            return Err(CacheError::HashMismatch {
                expected,
                actual: self.actual,
            });
        }
        let temp = &self.temp.path;
        self.file
            .set_permissions(fs::Permissions::from_mode(0o444))
            .map_err(CacheError::io("make read-only", temp))?;
        self.file
            .sync_all()
            .map_err(CacheError::io("flush to disk", temp))?;
        let dest = inner.image_path(&expected);
        fs::rename(temp, &dest).map_err(CacheError::io("publish", &dest))?;
        self.temp.armed = false;
        if let Err(e) = sync_dir(&inner.images) {
            // Visible but maybe not durable, and not yet in the index: withdraw it.
            let _ = fs::remove_file(&dest);
            return Err(e);
        }
        Ok(Published {
            size: self.size,
            reservation: self.reservation,
        })
    }
}

/// A temp file in `tmp/` that is removed when dropped, unless it was published.
pub(crate) struct TempFile {
    pub(crate) path: PathBuf,
    pub(crate) armed: bool,
}

impl TempFile {
    /// Creates `tmp/<hex>.<n>.part`, private to the cache until published.
    pub(crate) fn create(inner: &Inner, digest: &Sha256Digest) -> Result<(File, Self), CacheError> {
        let path = inner.tmp.join(format!("{digest}.{}.part", inner.next_id()));
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(CacheError::io("create the temp file", &path))?;
        Ok((file, Self { path, armed: true }))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = fs::remove_file(&self.path) {
                tracing::warn!(path = %self.path.display(), error = %e, "could not remove a temp file");
            }
        }
    }
}

/// Makes a folder's entries durable (the rename that published a file).
pub(crate) fn sync_dir(dir: &Path) -> Result<(), CacheError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(CacheError::io("flush to disk", dir))
}

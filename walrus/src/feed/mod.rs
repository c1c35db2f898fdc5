//! The image feed: bundles registered in the cloud turned into plain images, once, for the
//! nodes that boot them.
//!
//! A registration (RegisterImage, [`ImageFeed::retain`]) starts the unbundling in the
//! background, so the plain image is usually there before a node asks; otherwise the first
//! request for a manifest (which joins an unbundling under way) starts it. It reads the
//! bundle's parts out of the object store and pushes them through the bundler's streaming
//! [`bundler::Unbundler`] (every part's SHA-1,
//! AES-128-CBC, gunzip, the tar stream's SHA-1, the member's size) into a file that hashes
//! SHA-256 as it is written. Only when every check passed is the file renamed to
//! `images/sha256/<hex>` (content-addressed) and recorded in the store's `images` index
//! under the SHA-256 of the manifest's bytes, so later requests — and later runs — are
//! answered at once. Concurrent requests for one manifest share one unbundling.
//!
//! The cloud controller pins the manifest at RegisterImage (the SHA-256 of its bytes) and
//! every node asks with that pin: a manifest replaced in its bucket after registration is
//! never unbundled for the registered image, so a node is never fed other bytes than those
//! registered. The bytes unbundled are the very bytes hashed, read once.
//!
//! Each registered image holds a reference on its plain image; images no registration uses
//! are removed after a grace period (`collect.rs`).

mod collect;
pub(crate) mod http;

pub use collect::IMAGE_GRACE;
mod writer;
pub use writer::CHUNK_SIZE;

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::future::{BoxFuture, FutureExt, Shared};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use crate::names::{BucketName, ObjectKey};
use crate::store::{is_sha256_hex, ImageEntry, ObjectMeta, Store, StoreError};
use writer::ImageWriter;

/// The largest manifest the feed reads (the cloud controller's limit at register).
const MAX_MANIFEST: u64 = 4 << 20;

/// Why the feed could not produce an image. Cloneable, because every request waiting on one
/// unbundling receives its outcome; mapped to S3 errors in `s3/error.rs`.
#[derive(Clone, Debug, thiserror::Error)]
pub enum FeedError {
    /// The manifest's bucket or key does not exist.
    #[error("The specified manifest does not exist.")]
    ManifestNotFound,
    /// The manifest cannot be unbundled as it stands: it does not parse, is not encrypted
    /// for this cloud, or lists a part that is not there.
    #[error("{0}")]
    InvalidManifest(String),
    /// The request pinned the SHA-256 of the manifest as registered, and the manifest now
    /// at that location has other bytes (and the pinned one was never unbundled). Nothing
    /// is unbundled.
    #[error("{0}")]
    ManifestReplaced(String),
    /// The stored bundle does not match its manifest (a digest, a size, the padding, the
    /// gzip or tar framing). Nothing was stored.
    #[error("{0}")]
    Corrupt(String),
    /// This Walrus holds no cloud private key, so it cannot decrypt any bundle.
    #[error("This Walrus holds no cloud private key, so it cannot decrypt bundles.")]
    NoCloudKey,
    /// Disk, database or thread failure, while doing what `doing` says.
    #[error("{doing}")]
    Internal {
        /// What failed, as a sentence fragment ("cannot read the image index").
        doing: String,
        /// Why; shared, as every request waiting on one unbundling receives the error.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
}

/// An internal failure while `doing` something, caused by the error it is applied to.
fn internal<E: std::error::Error + Send + Sync + 'static>(
    doing: impl Into<String>,
) -> impl FnOnce(E) -> FeedError {
    let doing = doing.into();
    move |source| FeedError::Internal {
        doing,
        source: Arc::new(source),
    }
}

/// A plain image held by the feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedImage {
    /// SHA-256 of the image, lowercase hex: its name in the store and its ETag.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// What the feed has done since Walrus opened, for operators (and for tests that must tell
/// an unbundling from an answer out of the store).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeedStats {
    /// Unbundlings started (successful or not).
    pub unbundles: u64,
}

/// One unbundling in progress, awaited by every request for its manifest.
type Flight = Shared<BoxFuture<'static, Result<FeedImage, FeedError>>>;

/// The image feed. Cheap to clone.
#[derive(Clone)]
pub struct ImageFeed {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    directory: Arc<dyn crate::Directory>,
    /// `images/sha256`: complete, verified images named by their SHA-256.
    images: PathBuf,
    /// `images/tmp`: images being unbundled; emptied at open.
    tmp: PathBuf,
    /// `images/chunks`: each image's chunk list, by the image's SHA-256.
    chunks: PathBuf,
    /// Unbundlings in progress by manifest SHA-256.
    flights: Mutex<HashMap<String, Flight>>,
    unbundles: AtomicU64,
    /// How long an image no registration uses is kept after its last use.
    grace: Duration,
    /// When images were last handed out and since when they have been unused: what the
    /// collector decides by. Held while an image is looked up or opened, and while the
    /// collector removes one, so that no image goes between its check and its use.
    uses: Mutex<collect::Uses>,
}

/// Locks the flight table or the uses; neither holds an invariant a panic could break
/// halfway.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ImageFeed {
    /// Opens the image store under `walrus_dir/images`, removing what a crash left half
    /// written, and starts collecting the images no registration uses once they have been
    /// unused for `grace` (when called within a Tokio runtime, as Walrus always is).
    pub fn open(
        walrus_dir: &Path,
        store: Store,
        directory: Arc<dyn crate::Directory>,
        grace: Duration,
    ) -> std::io::Result<ImageFeed> {
        let root = walrus_dir.join("images");
        let images = root.join("sha256");
        let tmp = root.join("tmp");
        let chunks = root.join("chunks");
        std::fs::create_dir_all(&images)?;
        std::fs::create_dir_all(&tmp)?;
        std::fs::create_dir_all(&chunks)?;
        for entry in std::fs::read_dir(&tmp)? {
            std::fs::remove_file(entry?.path())?;
        }
        let inner = Arc::new(Inner {
            store,
            directory,
            images,
            tmp,
            chunks,
            flights: Mutex::new(HashMap::new()),
            unbundles: AtomicU64::new(0),
            grace,
            uses: Mutex::new(collect::Uses::default()),
        });
        collect::spawn(&inner);
        Ok(ImageFeed { inner })
    }

    /// What the feed has done since it opened.
    pub fn stats(&self) -> FeedStats {
        FeedStats {
            unbundles: self.inner.unbundles.load(Ordering::Relaxed),
        }
    }

    /// The plain image of the bundle whose manifest is `bucket/key`: from the store when it
    /// was unbundled before, else unbundled now, once however many requests ask at the same
    /// time. The unbundling runs in its own task: a caller going away does not stop it.
    ///
    /// `pin` is the SHA-256 of the manifest's bytes as the image was registered. With it,
    /// the image of exactly that manifest is answered, even if the manifest was replaced
    /// since it was unbundled; a replaced manifest that was not unbundled before is refused
    /// ([`FeedError::ManifestReplaced`]), never unbundled. Without it, the manifest lying
    /// there now is unbundled.
    pub async fn image_for_manifest(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        pin: Option<&str>,
    ) -> Result<FeedImage, FeedError> {
        let location = format!("{}/{}", bucket.as_str(), key.as_str());
        if let Some(pin) = pin {
            if let Some(image) = self.inner.lookup(pin)? {
                return Ok(image);
            }
        }
        let raw = read_manifest(&self.inner.store, bucket, key, &location).await?;
        let manifest_sha256 = hex::encode(Sha256::digest(&raw));
        if pin.is_some_and(|pin| pin != manifest_sha256) {
            return Err(FeedError::ManifestReplaced(format!(
                "The manifest {location} was replaced after the image was registered: its bytes \
                 are no longer those registered, so Walrus will not unbundle it for that image. \
                 Register the new bundle as a new image."
            )));
        }
        if let Some(image) = self.inner.lookup(&manifest_sha256)? {
            return Ok(image);
        }
        let flight = {
            let mut flights = lock(&self.inner.flights);
            match flights.get(&manifest_sha256) {
                Some(flight) => flight.clone(),
                None => {
                    // A flight records its image before it leaves the table: look again
                    // under the lock so that one just finished is not run a second time.
                    if let Some(image) = self.inner.lookup(&manifest_sha256)? {
                        return Ok(image);
                    }
                    let flight = self.inner.start(Unbundling {
                        bucket: bucket.clone(),
                        key: key.clone(),
                        location,
                        raw,
                        manifest_sha256: manifest_sha256.clone(),
                    });
                    flights.insert(manifest_sha256, flight.clone());
                    flight
                }
            }
        };
        flight.await
    }

    /// The image named `sha256` with its size, opened for reading, if the feed holds it.
    pub fn open_image(&self, sha256: &str) -> Result<Option<(File, u64)>, FeedError> {
        if !is_sha256_hex(sha256) {
            return Ok(None);
        }
        let mut uses = lock(&self.inner.uses);
        let file = match File::open(self.inner.images.join(sha256)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(internal(format!("cannot open the image {sha256}"))(e)),
        };
        let size = file
            .metadata()
            .map_err(internal(format!(
                "cannot read the size of the image {sha256}"
            )))?
            .len();
        uses.served(sha256);
        Ok(Some((file, size)))
    }

    /// The chunk list of image `sha256` (the SHA-256 of each [`CHUNK_SIZE`] chunk, in order,
    /// 32 bytes each), if the feed holds the image: what a node checks each range it fetches
    /// against. An image unbundled before chunk lists were kept gets its list made from its
    /// bytes, once. Blocking (it may read the whole image).
    pub fn chunk_list(&self, sha256: &str) -> Result<Option<Vec<u8>>, FeedError> {
        let Some((mut file, size)) = self.open_image(sha256)? else {
            return Ok(None);
        };
        let want = size.div_ceil(CHUNK_SIZE) * 32;
        let path = self.inner.chunks.join(sha256);
        if let Ok(list) = std::fs::read(&path) {
            if list.len() as u64 == want {
                return Ok(Some(list));
            }
        }
        let mut hasher = writer::ChunkHasher::default();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = std::io::Read::read(&mut file, &mut buf)
                .map_err(internal(format!("cannot read the image {sha256}")))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let list = hasher.finish();
        writer::write_chunk_list(&self.inner.chunks, sha256, &list)
            .map_err(internal(format!("cannot keep the chunk list of {sha256}")))?;
        Ok(Some(list))
    }
}

impl Inner {
    /// The image recorded for the manifest whose bytes hash to `manifest_sha256`, if the
    /// image is still on disk.
    fn lookup(&self, manifest_sha256: &str) -> Result<Option<FeedImage>, FeedError> {
        let Some(entry) = self
            .store
            .image_entry(manifest_sha256)
            .map_err(internal("cannot read the image index"))?
        else {
            return Ok(None);
        };
        let mut uses = lock(&self.uses);
        match std::fs::metadata(self.images.join(&entry.sha256)) {
            Ok(m) if m.len() == entry.size => {
                uses.served(&entry.sha256);
                Ok(Some(FeedImage {
                    sha256: entry.sha256,
                    size: entry.size,
                }))
            }
            _ => Ok(None),
        }
    }

    /// Spawns an unbundling; the task leaves the flight table when done.
    fn start(self: &Arc<Self>, job: Unbundling) -> Flight {
        let inner = Arc::clone(self);
        let task = tokio::spawn(async move {
            // Leaves the table after the image was recorded, and even if the task panics.
            let _leave = Leave {
                inner: Arc::clone(&inner),
                manifest_sha256: job.manifest_sha256.clone(),
            };
            inner.unbundle(job).await
        });
        async move {
            task.await
                .unwrap_or_else(|e| Err(internal("the unbundling task failed")(e)))
        }
        .boxed()
        .shared()
    }

    /// Parses the manifest read before, unbundles on a blocking thread, records the result
    /// under the manifest's SHA-256.
    async fn unbundle(self: Arc<Self>, job: Unbundling) -> Result<FeedImage, FeedError> {
        self.unbundles.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let Unbundling {
            bucket,
            key,
            location,
            raw,
            manifest_sha256,
        } = job;
        let manifest = bundler::Manifest::parse(&raw).map_err(|e| {
            FeedError::InvalidManifest(format!("The manifest {location} cannot be read: {e}."))
        })?;
        let inner = Arc::clone(&self);
        let runtime = tokio::runtime::Handle::current();
        let loc = location.clone();
        let image = tokio::task::spawn_blocking(move || {
            inner.unbundle_blocking(&runtime, &bucket, &key, &loc, &manifest)
        })
        .await
        .map_err(internal(format!("unbundling {location} failed")))??;
        let entry = ImageEntry {
            sha256: image.sha256.clone(),
            size: image.size,
            location: location.clone(),
        };
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.record_image(&manifest_sha256, &entry))
            .await
            .map_err(internal(format!("cannot record the image of {location}")))?
            .map_err(internal(format!("cannot record the image of {location}")))?;
        lock(&self.uses).served(&image.sha256);
        let secs = started.elapsed().as_secs_f64();
        tracing::info!(
            location,
            sha256 = %image.sha256,
            size = image.size,
            mb_per_s = image.size as f64 / 1e6 / secs.max(1e-9),
            "image unbundled"
        );
        Ok(image)
    }

    /// Finds every part, then streams them through the unbundler into a new image file
    /// that is published only when every check passed.
    fn unbundle_blocking(
        &self,
        runtime: &tokio::runtime::Handle,
        bucket: &BucketName,
        key: &ObjectKey,
        location: &str,
        manifest: &bundler::Manifest,
    ) -> Result<FeedImage, FeedError> {
        let cloud_key = self.directory.cloud_key().ok_or(FeedError::NoCloudKey)?;
        let bundle_key = manifest.unwrap_cloud_key(cloud_key).map_err(|_| {
            FeedError::InvalidManifest(format!(
                "The bundle {location} was not encrypted for this cloud."
            ))
        })?;
        let parts = self.find_parts(bucket, key, manifest)?;
        let sink = ImageWriter::create(&self.tmp).map_err(internal(format!(
            "cannot create an image file in {}",
            self.tmp.display()
        )))?;
        let mut unbundler = bundler::Unbundler::new(manifest, &bundle_key, sink)
            .map_err(internal(format!("unbundling {location} failed")))?;
        let refused = |e: bundler::Error| bundle_error(location, e);
        for (index, (part_key, part_meta)) in parts.iter().enumerate() {
            unbundler.begin_part(index).map_err(refused)?;
            let mut stream = self
                .store
                .read(bucket, part_key, part_meta, 0, part_meta.size)
                .map_err(|e| part_error(bucket, part_key, e))?;
            while let Some(chunk) = runtime.block_on(stream.next()) {
                let chunk = chunk.map_err(internal(format!(
                    "cannot read the bundle part {}/{}",
                    bucket.as_str(),
                    part_key.as_str()
                )))?;
                unbundler.write(&chunk).map_err(refused)?;
            }
            unbundler.end_part().map_err(refused)?;
        }
        let (sink, _summary) = unbundler.finish().map_err(refused)?;
        sink.commit(&self.images, &self.chunks)
            .map_err(internal(format!("cannot store the image of {location}")))
    }

    /// Every part the manifest lists, found beside the manifest, before any byte is read.
    fn find_parts(
        &self,
        bucket: &BucketName,
        key: &ObjectKey,
        manifest: &bundler::Manifest,
    ) -> Result<Vec<(ObjectKey, ObjectMeta)>, FeedError> {
        if manifest.parts.is_empty() {
            return Err(FeedError::InvalidManifest(
                "The manifest lists no parts.".into(),
            ));
        }
        let folder = key.as_str().rfind('/').map_or("", |i| &key.as_str()[..=i]);
        let mut parts = Vec::with_capacity(manifest.parts.len());
        for part in &manifest.parts {
            let name = &part.filename;
            let part_key = (!name.is_empty() && !name.contains('/'))
                .then(|| ObjectKey::parse(&format!("{folder}{name}")))
                .flatten()
                .ok_or_else(|| {
                    FeedError::InvalidManifest(format!(
                        "The part name '{name}' is not a file name."
                    ))
                })?;
            let meta = self
                .store
                .object(bucket, &part_key)
                .map_err(|e| part_error(bucket, &part_key, e))?;
            parts.push((part_key, meta));
        }
        Ok(parts)
    }
}

/// What one unbundling works on: the manifest's bytes as read (and hashed) when it was
/// asked for, so that the bytes unbundled are those whose SHA-256 was checked.
struct Unbundling {
    bucket: BucketName,
    key: ObjectKey,
    location: String,
    raw: Vec<u8>,
    manifest_sha256: String,
}

/// Removes a flight from the table when its task ends.
struct Leave {
    inner: Arc<Inner>,
    manifest_sha256: String,
}

impl Drop for Leave {
    fn drop(&mut self) {
        lock(&self.inner.flights).remove(&self.manifest_sha256);
    }
}

/// The manifest's record: ManifestNotFound when its bucket or key does not exist.
fn manifest_meta(
    store: &Store,
    bucket: &BucketName,
    key: &ObjectKey,
) -> Result<ObjectMeta, FeedError> {
    match store.object(bucket, key) {
        Ok(meta) => Ok(meta),
        Err(StoreError::NoSuchBucket | StoreError::NoSuchKey) => Err(FeedError::ManifestNotFound),
        Err(e) => Err(internal(format!(
            "cannot look up the manifest {}/{}",
            bucket.as_str(),
            key.as_str()
        ))(e)),
    }
}

/// The bytes of the manifest at `bucket/key` (at most [`MAX_MANIFEST`]).
async fn read_manifest(
    store: &Store,
    bucket: &BucketName,
    key: &ObjectKey,
    location: &str,
) -> Result<Vec<u8>, FeedError> {
    let meta = manifest_meta(store, bucket, key)?;
    if meta.size > MAX_MANIFEST {
        return Err(FeedError::InvalidManifest(format!(
            "The manifest {location} is larger than {MAX_MANIFEST} bytes."
        )));
    }
    let mut stream = match store.read(bucket, key, &meta, 0, meta.size) {
        Ok(s) => s,
        Err(StoreError::NoSuchBucket | StoreError::NoSuchKey) => {
            return Err(FeedError::ManifestNotFound)
        }
        Err(e) => return Err(internal(format!("cannot read the manifest {location}"))(e)),
    };
    let mut raw = Vec::with_capacity(usize::try_from(meta.size).unwrap_or(0));
    while let Some(chunk) = stream.next().await {
        raw.extend_from_slice(
            &chunk.map_err(internal(format!("cannot read the manifest {location}")))?,
        );
    }
    Ok(raw)
}

/// A part that cannot be read: missing (or replaced since it was found) is the manifest's
/// fault, anything else ours.
fn part_error(bucket: &BucketName, key: &ObjectKey, e: StoreError) -> FeedError {
    match e {
        StoreError::NoSuchBucket | StoreError::NoSuchKey => FeedError::InvalidManifest(format!(
            "The bundle part {}/{} is missing.",
            bucket.as_str(),
            key.as_str()
        )),
        e => internal(format!(
            "cannot read the bundle part {}/{}",
            bucket.as_str(),
            key.as_str()
        ))(e),
    }
}

/// What a refusal of the unbundler means for the caller: stored bytes that do not match
/// the manifest, or a failure of ours (writing the image).
fn bundle_error(location: &str, e: bundler::Error) -> FeedError {
    use bundler::Error as B;
    match e {
        B::PartDigest { .. }
        | B::BundledSize { .. }
        | B::MissingPart(_)
        | B::Decrypt
        | B::Gzip(_)
        | B::Tar(_)
        | B::MultipleMembers
        | B::ImageSize { .. }
        | B::TrailingData
        | B::ImageDigest { .. } => FeedError::Corrupt(format!(
            "The bundle {location} does not match its manifest: {e}."
        )),
        e => internal(format!("unbundling {location} failed"))(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_internal_failure_keeps_its_whole_cause_through_clones_and_into_s3() {
        let cause = bundler::Error::io("writing the image", std::io::Error::other("disk full"));
        let err = bundle_error("b/i.manifest.xml", cause);
        assert!(matches!(err, FeedError::Internal { .. }), "{err:?}");
        let chain = "unbundling b/i.manifest.xml failed: writing the image: disk full";
        // Every request waiting on the unbundling gets a clone, with the cause.
        assert_eq!(rpc::error_chain(&err.clone()), chain);
        match crate::s3::error::S3Error::from(err) {
            crate::s3::error::S3Error::Internal(source) => {
                assert_eq!(rpc::error_chain(source.as_ref()), chain)
            }
            other => panic!("{other:?}"),
        }
    }
}

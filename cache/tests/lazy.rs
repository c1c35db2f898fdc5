//! Lazily filled images: read through QEMU's own NBD client (qemu-img, qemu-io) from the
//! cache's export while the chunks arrive, verified one by one, then published as an
//! ordinary cached image.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cache::{
    Base, BoxFuture, CacheError, ChunkList, ChunkSource, FetchError, ImageCache, LazyImage,
    NbdExport, Sha256Digest,
};
use common::{limits, names};
use tokio::sync::watch;

/// Bytes per chunk in these tests: small images, many chunks.
const CHUNK: u64 = 64 << 10;

/// An image source in memory, as Walrus' feed would serve it: the chunk list and ranges,
/// with a gate that holds reads, a switch that makes it fail (Walrus away), and a chunk
/// served damaged.
struct MemorySource {
    bytes: Bytes,
    list: ChunkList,
    gate: watch::Receiver<bool>,
    away: watch::Receiver<bool>,
    corrupt: Option<u64>,
    lists: AtomicUsize,
    reads: Mutex<Vec<u64>>,
}

/// The switches of a `MemorySource`: `gate` true lets reads through, `away` true fails them.
struct Switches {
    gate: watch::Sender<bool>,
    away: watch::Sender<bool>,
}

fn source(bytes: &[u8], corrupt: Option<u64>) -> (Arc<MemorySource>, Switches) {
    let digests = bytes.chunks(CHUNK as usize).map(Sha256Digest::of).collect();
    let (gate, gate_rx) = watch::channel(true);
    let (away, away_rx) = watch::channel(false);
    let source = MemorySource {
        bytes: Bytes::copy_from_slice(bytes),
        list: ChunkList {
            chunk_size: CHUNK,
            digests,
        },
        gate: gate_rx,
        away: away_rx,
        corrupt,
        lists: AtomicUsize::new(0),
        reads: Mutex::new(Vec::new()),
    };
    (Arc::new(source), Switches { gate, away })
}

impl ChunkSource for MemorySource {
    fn chunk_list<'a>(
        &'a self,
        _digest: &'a Sha256Digest,
    ) -> BoxFuture<'a, Result<ChunkList, FetchError>> {
        Box::pin(async move {
            self.lists.fetch_add(1, Ordering::SeqCst);
            Ok(self.list.clone())
        })
    }

    fn read_range<'a>(
        &'a self,
        _digest: &'a Sha256Digest,
        offset: u64,
        len: u64,
    ) -> BoxFuture<'a, Result<Bytes, FetchError>> {
        Box::pin(async move {
            self.reads.lock().unwrap().push(offset);
            let _ = self.gate.clone().wait_for(|open| *open).await;
            if *self.away.borrow() {
                return Err("connection refused".into());
            }
            let mut bytes = self.bytes[offset as usize..(offset + len) as usize].to_vec();
            if self.corrupt == Some(offset / CHUNK) {
                bytes[7] ^= 0x40;
            }
            Ok(Bytes::from(bytes))
        })
    }
}

/// An image that does not compress or repeat: `len` bytes of xorshift.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn open_filling(
    cache: &ImageCache,
    bytes: &[u8],
    source: Arc<MemorySource>,
    patience: Duration,
) -> LazyImage {
    let digest = Sha256Digest::of(bytes);
    match cache
        .open_lazy(digest, bytes.len() as u64, source, patience)
        .await
        .unwrap()
    {
        Base::Filling(image) => {
            image.fill_in_background();
            image
        }
        Base::Cached(_) => panic!("a cold cache had the image"),
    }
}

/// Runs a QEMU tool and returns whether it succeeded, with its output.
fn qemu(tool: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(tool).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qemu_reads_the_whole_image_through_the_export_and_the_cache_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ImageCache::open(dir.path().join("cache"), limits(1 << 30))
        .await
        .unwrap();
    let bytes = noise(1, 20 * CHUNK as usize + 1234);
    let (src, _switches) = source(&bytes, None);
    let image = open_filling(&cache, &bytes, src.clone(), Duration::from_secs(30)).await;
    let socket = dir.path().join("image.sock");
    let export = NbdExport::serve(image.clone(), &socket).unwrap();
    let out = dir.path().join("out.raw");
    let uri = export.uri();
    let out_arg = out.to_str().unwrap().to_owned();
    let (ok, text) = tokio::task::spawn_blocking(move || {
        qemu(
            "qemu-img",
            &["convert", "-f", "raw", "-O", "raw", &uri, &out_arg],
        )
    })
    .await
    .unwrap();
    assert!(ok, "qemu-img could not read the export: {text}");
    // The export is the image rounded up to a whole sector, the rest zeros.
    let read = std::fs::read(&out).unwrap();
    assert_eq!(
        read.len() as u64,
        (bytes.len() as u64).next_multiple_of(512)
    );
    assert_eq!(&read[..bytes.len()], &bytes[..]);
    assert!(read[bytes.len()..].iter().all(|b| *b == 0));

    image.finished().await.unwrap();
    let published = dir
        .path()
        .join("cache/sha256")
        .join(Sha256Digest::of(&bytes).to_hex());
    assert_eq!(std::fs::read(&published).unwrap(), bytes);
    // Each chunk came once, whoever asked for it first (QEMU or the background fill).
    assert_eq!(image.fetched_bytes(), bytes.len() as u64);
    assert_eq!(src.lists.load(Ordering::SeqCst), 1);
    // A later start is an ordinary hit.
    match cache
        .open_lazy(
            Sha256Digest::of(&bytes),
            bytes.len() as u64,
            src.clone(),
            Duration::from_secs(1),
        )
        .await
        .unwrap()
    {
        Base::Cached(lease) => assert_eq!(lease.path(), published),
        Base::Filling(_) => panic!("a complete image was filled again"),
    }
    // The export still serves a running guest after completion.
    let (ok, text) = qemu(
        "qemu-io",
        &["-r", "-f", "raw", "-c", "read 0 4096", &export.uri()],
    );
    assert!(ok && text.contains("read 4096/4096"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_overlay_boots_from_the_export_and_an_unknown_export_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ImageCache::open(dir.path().join("cache"), limits(1 << 30))
        .await
        .unwrap();
    let bytes = noise(2, 8 * CHUNK as usize);
    let (src, _switches) = source(&bytes, None);
    let image = open_filling(&cache, &bytes, src, Duration::from_secs(30)).await;
    let export = NbdExport::serve(image.clone(), &dir.path().join("s.sock")).unwrap();
    let disk = dir.path().join("root.qcow2");
    assert_eq!(
        image.clone_for_instance(&export, &disk).await.unwrap(),
        cache::CloneKind::Qcow2Overlay
    );
    let disk_arg = disk.to_str().unwrap().to_owned();
    // Written through the overlay, read back; the base is untouched.
    let (ok, text) = tokio::task::spawn_blocking(move || {
        qemu(
            "qemu-io",
            &[
                "-f",
                "qcow2",
                "-c",
                "write -P 0x5a 65536 4096",
                "-c",
                "read -P 0x5a 65536 4096",
                &disk_arg,
            ],
        )
    })
    .await
    .unwrap();
    assert!(
        ok && !text.contains("Pattern verification failed"),
        "{text}"
    );
    let read_back = image.read(65536, 4096).await.unwrap();
    assert_eq!(&read_back[..], &bytes[65536..65536 + 4096]);

    let wrong = format!(
        "nbd+unix:///{}?socket={}",
        "0".repeat(64),
        export.socket().display()
    );
    let (ok, _) = qemu("qemu-img", &["info", "-f", "raw", &wrong]);
    assert!(!ok, "an unknown export name was served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_jumps_the_background_fill_and_two_callers_share_one_image() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ImageCache::open(dir.path().join("cache"), limits(1 << 30))
        .await
        .unwrap();
    let bytes = noise(3, 40 * CHUNK as usize);
    let (src, switches) = source(&bytes, None);
    switches.gate.send_replace(false);
    let digest = Sha256Digest::of(&bytes);
    let size = bytes.len() as u64;
    let patience = Duration::from_secs(30);
    let (a, b) = tokio::join!(
        cache.open_lazy(digest, size, src.clone(), patience),
        cache.open_lazy(digest, size, src.clone(), patience)
    );
    let (Base::Filling(a), Base::Filling(b)) = (a.unwrap(), b.unwrap()) else {
        panic!("a cold cache had the image");
    };
    assert_eq!(src.lists.load(Ordering::SeqCst), 1);
    // Nothing is fetched before it is read or the fill is asked for.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(src.reads.lock().unwrap().is_empty());
    a.fill_in_background();
    b.fill_in_background();
    let last = 39 * CHUNK;
    let reader = tokio::spawn(async move { b.read(last + 100, 50).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    {
        let reads = src.reads.lock().unwrap();
        assert!(reads.contains(&last), "the guest's chunk was not asked for");
        assert!(
            reads.len() <= 5,
            "more than the fill's few chunks were asked for: {reads:?}"
        );
    }
    switches.gate.send_replace(true);
    let got = reader.await.unwrap().unwrap();
    assert_eq!(
        &got[..],
        &bytes[(last + 100) as usize..(last + 150) as usize]
    );
    a.finished().await.unwrap();
    assert_eq!(a.fetched_bytes(), size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_chunk_is_never_served_and_nothing_of_the_image_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ImageCache::open(dir.path().join("cache"), limits(1 << 30))
        .await
        .unwrap();
    let bytes = noise(4, 12 * CHUNK as usize);
    let (src, _switches) = source(&bytes, Some(5));
    let image = open_filling(&cache, &bytes, src, Duration::from_secs(30)).await;
    let export = NbdExport::serve(image.clone(), &dir.path().join("s.sock")).unwrap();
    let uri = export.uri();
    let (ok, text) = tokio::task::spawn_blocking(move || {
        qemu(
            "qemu-io",
            &[
                "-r",
                "-f",
                "raw",
                "-c",
                &format!("read {} 512", 5 * CHUNK),
                &uri,
            ],
        )
    })
    .await
    .unwrap();
    assert!(
        text.contains("Input/output error"),
        "the damaged chunk was served ({ok}): {text}"
    );
    match image.finished().await {
        Err(CacheError::CorruptChunk { chunk: 5, .. }) => {}
        other => panic!("the image did not fail on its damaged chunk: {other:?}"),
    }
    assert!(matches!(
        image.read(5 * CHUNK, 10).await,
        Err(CacheError::CorruptChunk { .. })
    ));
    drop(export);
    drop(image);
    // The last clones go with the export's tasks as they end.
    gone(&dir.path().join("cache/tmp"), &cache).await;
    assert!(names(&dir.path().join("cache/sha256")).is_empty());
}

/// Waits until nothing of a lazy image is left in `tmp` nor reserved.
async fn gone(tmp: &Path, cache: &ImageCache) {
    for _ in 0..100 {
        if names(tmp).is_empty() && cache.stats().reserved_bytes == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "a lazy image was left: {:?}, {} bytes reserved",
        names(tmp),
        cache.stats().reserved_bytes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_nobody_fills_is_discarded_with_its_last_user() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ImageCache::open(dir.path().join("cache"), limits(1 << 30))
        .await
        .unwrap();
    let bytes = noise(7, 4 * CHUNK as usize);
    let (src, _switches) = source(&bytes, None);
    let digest = Sha256Digest::of(&bytes);
    let size = bytes.len() as u64;
    let open = || cache.open_lazy(digest, size, src.clone(), Duration::from_secs(30));
    let Base::Filling(image) = open().await.unwrap() else {
        panic!("a cold cache had the image");
    };
    assert_eq!(
        &image.read(CHUNK, 4).await.unwrap()[..],
        &bytes[CHUNK as usize..][..4]
    );
    assert_eq!(cache.stats().reserved_bytes, size);
    drop(image);
    gone(&dir.path().join("cache/tmp"), &cache).await;
    // A later start makes it afresh.
    let Base::Filling(again) = open().await.unwrap() else {
        panic!("a discarded image was cached");
    };
    again.fill_in_background();
    again.finished().await.unwrap();
    assert_eq!(src.lists.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_wait_while_the_source_is_away_and_carry_on_when_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ImageCache::open(dir.path().join("cache"), limits(1 << 30))
        .await
        .unwrap();
    let bytes = noise(5, 6 * CHUNK as usize);
    let (src, switches) = source(&bytes, None);
    switches.away.send_replace(true);
    let image = open_filling(&cache, &bytes, src, Duration::from_secs(30)).await;
    let reader = {
        let image = image.clone();
        tokio::spawn(async move { image.read(3 * CHUNK, 10).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!reader.is_finished(), "a read did not wait for the source");
    switches.away.send_replace(false);
    let got = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        &got[..],
        &bytes[3 * CHUNK as usize..3 * CHUNK as usize + 10]
    );
    image.finished().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_away_past_the_patience_fails_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ImageCache::open(dir.path().join("cache"), limits(1 << 30))
        .await
        .unwrap();
    let bytes = noise(6, 3 * CHUNK as usize);
    let (src, switches) = source(&bytes, None);
    switches.away.send_replace(true);
    let image = open_filling(&cache, &bytes, src.clone(), Duration::from_millis(300)).await;
    assert!(matches!(
        image.read(0, 10).await,
        Err(CacheError::Unreachable { .. })
    ));
    drop(image);
    // Back again: a new start fills afresh.
    switches.away.send_replace(false);
    let again = open_filling(&cache, &bytes, src, Duration::from_secs(30)).await;
    again.finished().await.unwrap();
    assert!(Path::new(
        &dir.path()
            .join("cache/sha256")
            .join(again.digest().to_hex())
    )
    .exists());
}

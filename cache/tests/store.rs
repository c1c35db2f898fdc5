//! The store: hits and misses, single flight, verification, crash recovery, eviction.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use cache::{CacheError, ImageCache, Limits, Sha256Digest};
use common::{image, limits, names, put, MemoryFetcher};

const KB: usize = 1000;

#[tokio::test]
async fn a_miss_fetches_once_and_a_hit_does_not_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ImageCache::open(dir.path(), limits(1 << 20)).await.unwrap();
    let bytes = image(1, 10 * KB + 7);
    let digest = Sha256Digest::of(&bytes);
    let fetcher = MemoryFetcher::new(bytes.clone());

    let lease = cache
        .get_or_fetch(digest, 0, fetcher.clone())
        .await
        .unwrap();
    assert_eq!(fetcher.calls(), 1);
    let path = lease.path();
    assert!(path.is_absolute());
    assert_eq!(
        path,
        dir.path()
            .canonicalize()
            .unwrap()
            .join("sha256")
            .join(digest.to_hex())
    );
    assert_eq!(fs::read(&path).unwrap(), bytes);
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o444
    );
    drop(lease);

    let again = cache
        .get_or_fetch(digest, 0, fetcher.clone())
        .await
        .unwrap();
    assert_eq!(fetcher.calls(), 1, "a hit must not fetch");
    assert_eq!(again.digest(), digest);
    let stats = cache.stats();
    assert_eq!(
        (
            stats.images,
            stats.stored_bytes,
            stats.pinned_images,
            stats.reserved_bytes
        ),
        (1, bytes.len() as u64, 1, 0)
    );
    assert!(names(&dir.path().join("tmp")).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ImageCache::open(dir.path(), limits(1 << 20)).await.unwrap();
    let bytes = image(2, 100 * KB);
    let digest = Sha256Digest::of(&bytes);
    let (fetcher, gate) = MemoryFetcher::gated(bytes);

    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (cache, fetcher) = (cache.clone(), fetcher.clone());
            tokio::spawn(async move { cache.get_or_fetch(digest, 100 * KB as u64, fetcher).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    gate.send(true).unwrap();
    let mut leases = Vec::new();
    for t in tasks {
        leases.push(t.await.unwrap().unwrap());
    }
    assert_eq!(fetcher.calls(), 1);
    assert_eq!(cache.stats().pinned_images, 1);
    drop(leases);
    assert_eq!(cache.stats().pinned_images, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_failure() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ImageCache::open(dir.path(), limits(1 << 20)).await.unwrap();
    let asked = Sha256Digest::of(b"the image registered");
    let (fetcher, gate) = MemoryFetcher::gated(&b"something else"[..]);
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (cache, fetcher) = (cache.clone(), fetcher.clone());
            tokio::spawn(async move { cache.get_or_fetch(asked, 0, fetcher).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    gate.send(true).unwrap();
    for t in tasks {
        assert!(matches!(
            t.await.unwrap(),
            Err(CacheError::HashMismatch { .. })
        ));
    }
    assert_eq!(
        fetcher.calls(),
        1,
        "a corrupt image is fetched once for all its callers"
    );
}

#[tokio::test]
async fn a_hash_mismatch_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ImageCache::open(dir.path(), limits(1 << 20)).await.unwrap();
    let served = image(3, 50 * KB);
    let asked = Sha256Digest::of(&image(4, 50 * KB));
    let err = cache
        .get_or_fetch(asked, 50 * KB as u64, MemoryFetcher::new(served.clone()))
        .await
        .unwrap_err();
    match err {
        CacheError::HashMismatch { expected, actual } => {
            assert_eq!(expected, asked);
            assert_eq!(actual, Sha256Digest::of(&served));
        }
        other => panic!("expected a hash mismatch, got {other:?}"),
    }
    assert!(names(&dir.path().join("sha256")).is_empty());
    assert!(names(&dir.path().join("tmp")).is_empty());
    let stats = cache.stats();
    assert_eq!(
        (stats.images, stats.stored_bytes, stats.reserved_bytes),
        (0, 0, 0)
    );
    assert!(matches!(cache.pin(&asked), Err(CacheError::NotCached(d)) if d == asked));
}

#[tokio::test]
async fn a_failed_fetch_leaves_nothing_behind_and_can_be_retried() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ImageCache::open(dir.path(), limits(1 << 20)).await.unwrap();
    let bytes = image(5, 64 * KB);
    let digest = Sha256Digest::of(&bytes);
    let mut broken = MemoryFetcher::new(bytes.clone());
    broken.fail_midway = true;
    let err = cache.get_or_fetch(digest, 0, broken).await.unwrap_err();
    assert!(matches!(err, CacheError::Fetch(_)), "{err:?}");
    assert!(names(&dir.path().join("sha256")).is_empty());
    assert!(names(&dir.path().join("tmp")).is_empty());
    assert_eq!(cache.stats().reserved_bytes, 0);

    let lease = cache
        .get_or_fetch(digest, 0, MemoryFetcher::new(bytes))
        .await
        .unwrap();
    assert_eq!(fs::metadata(lease.path()).unwrap().len(), 64 * KB as u64);
}

#[tokio::test]
async fn open_removes_crash_leftovers_and_rebuilds_the_index() {
    let dir = tempfile::tempdir().unwrap();
    let good = image(6, 3 * KB);
    let good_digest;
    {
        let cache = ImageCache::open(dir.path(), limits(1 << 20)).await.unwrap();
        good_digest = put(&cache, &good).await;
    }
    let images = dir.path().join("sha256");
    let tmp = dir.path().join("tmp");
    // A fetch in flight, an eviction not finished, a stray folder.
    fs::write(tmp.join(format!("{good_digest}.7.part")), b"half an image").unwrap();
    fs::write(tmp.join("evicted.x.8"), b"old").unwrap();
    fs::create_dir_all(tmp.join("junk/deeper")).unwrap();
    // In sha256/: a file not made read-only (never finished), names that are no digest.
    let unfinished = images.join(Sha256Digest::of(b"unfinished").to_hex());
    fs::write(&unfinished, b"unfinished").unwrap();
    fs::write(images.join("not-a-digest"), b"?").unwrap();
    let upper = images.join(Sha256Digest::of(b"upper").to_hex().to_uppercase());
    fs::write(&upper, b"upper").unwrap();
    fs::set_permissions(&upper, fs::Permissions::from_mode(0o444)).unwrap();
    fs::create_dir(images.join(Sha256Digest::of(b"dir").to_hex())).unwrap();

    let cache = ImageCache::open(dir.path(), limits(1 << 20)).await.unwrap();
    assert!(names(&tmp).is_empty());
    assert_eq!(names(&images), vec![good_digest.to_hex()]);
    let stats = cache.stats();
    assert_eq!((stats.images, stats.stored_bytes), (1, good.len() as u64));
    let lease = cache.pin(&good_digest).unwrap();
    assert_eq!(fs::read(lease.path()).unwrap(), good);
}

#[tokio::test]
async fn a_second_cache_on_one_folder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = ImageCache::open(dir.path(), limits(1 << 20)).await.unwrap();
    let second = ImageCache::open(dir.path(), limits(1 << 20)).await;
    assert!(matches!(second, Err(CacheError::Locked(_))), "{second:?}");
}

#[tokio::test]
async fn eviction_takes_the_least_recently_used_first() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ImageCache::open(dir.path(), limits(3 * KB as u64))
        .await
        .unwrap();
    let a = put(&cache, &image(10, KB)).await;
    let b = put(&cache, &image(11, KB)).await;
    let c = put(&cache, &image(12, KB)).await;
    // Use a again: b is now the least recently used.
    drop(cache.pin(&a).unwrap());
    let d = put(&cache, &image(13, KB)).await;
    assert!(
        matches!(cache.pin(&b), Err(CacheError::NotCached(_))),
        "b should be evicted"
    );
    let mut kept = vec![a.to_hex(), c.to_hex(), d.to_hex()];
    kept.sort();
    assert_eq!(names(&dir.path().join("sha256")), kept);
    let e = put(&cache, &image(14, KB)).await;
    assert!(
        matches!(cache.pin(&c), Err(CacheError::NotCached(_))),
        "c should be evicted next"
    );
    for kept in [a, d, e] {
        cache.pin(&kept).unwrap();
    }
    assert!(
        names(&dir.path().join("tmp")).is_empty(),
        "evicted files are deleted"
    );
    assert_eq!(cache.stats().stored_bytes, 3 * KB as u64);
}

#[tokio::test]
async fn eviction_order_survives_a_restart_through_mtimes() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b);
    {
        let cache = ImageCache::open(dir.path(), limits(2 * KB as u64))
            .await
            .unwrap();
        a = put(&cache, &image(20, KB)).await;
        b = put(&cache, &image(21, KB)).await;
    }
    // b last used long ago, a recently.
    let old = SystemTime::now() - Duration::from_secs(3600);
    let b_path = dir.path().join("sha256").join(b.to_hex());
    fs::File::open(&b_path).unwrap().set_modified(old).unwrap();
    let cache = ImageCache::open(dir.path(), limits(2 * KB as u64))
        .await
        .unwrap();
    put(&cache, &image(22, KB)).await;
    assert!(cache.pin(&a).is_ok());
    assert!(matches!(cache.pin(&b), Err(CacheError::NotCached(_))));
}

#[tokio::test]
async fn a_pinned_image_is_never_evicted_and_full_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ImageCache::open(dir.path(), limits(2 * KB as u64))
        .await
        .unwrap();
    let a_bytes = image(30, KB);
    let a = Sha256Digest::of(&a_bytes);
    let lease_a = cache
        .get_or_fetch(a, KB as u64, MemoryFetcher::new(a_bytes))
        .await
        .unwrap();
    let b = put(&cache, &image(31, KB)).await;
    // a is older than b but pinned: b goes.
    let c_bytes = image(32, KB);
    let c = Sha256Digest::of(&c_bytes);
    let lease_c = cache
        .get_or_fetch(c, KB as u64, MemoryFetcher::new(c_bytes))
        .await
        .unwrap();
    assert!(matches!(cache.pin(&b), Err(CacheError::NotCached(_))));
    assert!(lease_a.path().exists());

    // Both held: no room for d, and the fetcher is not even called.
    let d_bytes = image(33, KB);
    let d_fetcher = MemoryFetcher::new(d_bytes.clone());
    let err = cache
        .get_or_fetch(Sha256Digest::of(&d_bytes), KB as u64, d_fetcher.clone())
        .await
        .unwrap_err();
    match err {
        CacheError::Full {
            needed,
            limit,
            unevictable,
        } => {
            assert_eq!(
                (needed, limit, unevictable),
                (KB as u64, 2 * KB as u64, 2 * KB as u64)
            );
        }
        other => panic!("expected Full, got {other:?}"),
    }
    assert_eq!(d_fetcher.calls(), 0);
    assert!(lease_a.path().exists() && lease_c.path().exists());
    assert_eq!(cache.stats().reserved_bytes, 0);

    // Once a lease is released its image may go.
    drop(lease_a);
    put(&cache, &d_bytes).await;
    assert!(matches!(cache.pin(&a), Err(CacheError::NotCached(_))));
}

#[tokio::test]
async fn an_image_unused_for_less_than_the_minimum_age_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let min_age = Duration::from_millis(400);
    let limits = Limits {
        max_bytes: KB as u64,
        min_age,
    };
    let cache = ImageCache::open(dir.path(), limits).await.unwrap();
    let a = put(&cache, &image(40, KB)).await;
    let b_bytes = image(41, KB);
    let err = cache
        .get_or_fetch(
            Sha256Digest::of(&b_bytes),
            KB as u64,
            MemoryFetcher::new(b_bytes.clone()),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, CacheError::Full { .. }), "{err:?}");
    assert!(cache.pin(&a).is_ok_and(|lease| lease.path().exists()));
    tokio::time::sleep(min_age + Duration::from_millis(100)).await;
    put(&cache, &b_bytes).await;
    assert!(matches!(cache.pin(&a), Err(CacheError::NotCached(_))));
}

#[tokio::test]
async fn an_image_larger_than_its_hint_gets_more_room_or_full() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ImageCache::open(dir.path(), limits(10 * KB as u64))
        .await
        .unwrap();
    // The hint says nothing; the image fits.
    put(&cache, &image(50, 4 * KB)).await;
    // The hint lies; the image does not fit: Full, found while streaming, nothing left.
    let big = image(51, 20 * KB);
    let err = cache
        .get_or_fetch(Sha256Digest::of(&big), KB as u64, MemoryFetcher::new(big))
        .await
        .unwrap_err();
    assert!(matches!(err, CacheError::Full { .. }), "{err:?}");
    assert!(names(&dir.path().join("tmp")).is_empty());
    assert_eq!(cache.stats().reserved_bytes, 0);
    // Room is made as the bytes come (here the small image was evicted before the limit
    // was reached): whatever happened, the accounting matches the folder.
    let stats = cache.stats();
    assert_eq!(stats.images, names(&dir.path().join("sha256")).len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_gives_up_does_not_keep_the_image_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ImageCache::open(dir.path(), limits(KB as u64))
        .await
        .unwrap();
    let bytes = image(60, KB);
    let digest = Sha256Digest::of(&bytes);
    let (fetcher, gate) = MemoryFetcher::gated(bytes);
    let waiting = {
        let (cache, fetcher) = (cache.clone(), fetcher.clone());
        tokio::spawn(async move { cache.get_or_fetch(digest, KB as u64, fetcher).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    waiting.abort();
    assert!(waiting.await.unwrap_err().is_cancelled());
    // The fetch goes on without its caller and the image lands, unpinned.
    gate.send(true).unwrap();
    for _ in 0..100 {
        if cache.stats().images == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stats = cache.stats();
    assert_eq!((stats.images, stats.pinned_images), (1, 0));
    assert_eq!(fetcher.calls(), 1);
    // So it can be evicted.
    put(&cache, &image(61, KB)).await;
    assert!(matches!(cache.pin(&digest), Err(CacheError::NotCached(_))));
}

#[tokio::test]
async fn releasing_a_lease_records_its_use_in_the_mtime() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ImageCache::open(dir.path(), limits(1 << 20)).await.unwrap();
    let a = put(&cache, &image(70, KB)).await;
    let path = dir.path().join("sha256").join(a.to_hex());
    let old = SystemTime::now() - Duration::from_secs(3600);
    fs::File::open(&path).unwrap().set_modified(old).unwrap();
    drop(cache.pin(&a).unwrap());
    let mtime = fs::metadata(&path).unwrap().modified().unwrap();
    assert!(mtime > old + Duration::from_secs(3000));
}

/// A fetcher with a bug.
struct PanickingFetcher;

impl cache::Fetcher for PanickingFetcher {
    async fn fetch(
        &self,
        _digest: &Sha256Digest,
        sink: &mut cache::ImageSink,
    ) -> Result<(), cache::FetchError> {
        sink.write(bytes::Bytes::from_static(b"a first chunk"))
            .await?;
        panic!("a fetcher with a bug");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_fetcher_ends_in_an_error_not_a_hang_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ImageCache::open(dir.path(), limits(1 << 20)).await.unwrap();
    let bytes = image(80, KB);
    let digest = Sha256Digest::of(&bytes);
    let err = cache
        .get_or_fetch(digest, KB as u64, PanickingFetcher)
        .await
        .unwrap_err();
    assert!(matches!(err, CacheError::Aborted), "{err:?}");
    // The writer thread finishes on its own once the sink is gone.
    for _ in 0..100 {
        if names(&dir.path().join("tmp")).is_empty() && cache.stats().reserved_bytes == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(names(&dir.path().join("tmp")).is_empty());
    assert_eq!(cache.stats().reserved_bytes, 0);
    // Nothing stuck in flight: a good fetcher gets the image.
    let lease = cache
        .get_or_fetch(digest, KB as u64, MemoryFetcher::new(bytes))
        .await
        .unwrap();
    assert!(lease.path().exists());
}

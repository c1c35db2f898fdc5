//! Store tests against a real RocksDB in a temp dir.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use md5::{Digest as _, Md5};

use super::*;
use crate::acl::Acl;

fn acl(owner: &str) -> Acl {
    Acl {
        owner: owner.into(),
        grants: vec![],
    }
}

fn bucket(name: &str) -> BucketName {
    BucketName::parse(name).expect("bucket name")
}

fn key(k: &str) -> ObjectKey {
    ObjectKey::parse(k).expect("key")
}

/// A body made of `data` cut into chunks of `chunk` bytes.
fn body(data: &[u8], chunk: usize) -> BodyStream {
    let chunks: Vec<Result<Bytes, std::io::Error>> = data
        .chunks(chunk.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures_util::stream::iter(chunks))
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

async fn collect(mut s: BodyStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.expect("chunk"));
    }
    out
}

async fn put(store: &Store, b: &str, k: &str, data: &[u8]) -> ObjectMeta {
    let staged = store
        .stage(
            body(data, 7000),
            Some(data.len() as u64),
            DigestRequest::default(),
        )
        .await
        .expect("stage");
    store
        .commit_object(
            &bucket(b),
            &key(k),
            staged,
            NewObject {
                headers: ObjectHeaders::default(),
                checksum: None,
                acl: acl("111111111111"),
                tags: Vec::new(),
                condition: WriteCondition::default(),
                lock: ObjectLock::default(),
            },
            &StorageQuotas::UNLIMITED,
        )
        .await
        .expect("commit")
}

async fn get(store: &Store, b: &str, k: &str) -> Vec<u8> {
    let meta = store.object(&bucket(b), &key(k)).expect("head");
    let s = store
        .read(&bucket(b), &key(k), &meta, 0, meta.size)
        .expect("read");
    collect(s).await
}

fn count_files(dir: &Path) -> usize {
    let mut n = 0;
    for sub in std::fs::read_dir(dir).expect("read_dir") {
        let sub = sub.expect("entry").path();
        if sub.is_dir() {
            n += count_files(&sub);
        } else {
            n += 1;
        }
    }
    n
}

fn data_files(root: &Path) -> usize {
    count_files(&root.join("data"))
}

fn tmp_files(root: &Path) -> usize {
    count_files(&root.join("tmp"))
}

/// Waits for background threads that clean up after an aborted stage.
async fn eventually(mut f: impl FnMut() -> bool) {
    for _ in 0..200 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("condition never became true");
}

fn new_store() -> (tempfile::TempDir, Store) {
    new_store_on(&ObjectData::Files)
}

/// A store keeping object bytes in `data`, with bucket `bkt`.
fn new_store_on(data: &ObjectData) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), data).expect("open");
    store
        .create_bucket(
            &bucket("bkt"),
            acl("111111111111"),
            None,
            &StorageQuotas::UNLIMITED,
        )
        .expect("create bucket");
    (dir, store)
}

fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

#[test]
fn buckets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), &ObjectData::Files).expect("open");
    let b = bucket("alpha");
    let made = store
        .create_bucket(
            &b,
            acl("111111111111"),
            Some("koala".into()),
            &StorageQuotas::UNLIMITED,
        )
        .expect("create");
    assert_eq!(store.bucket(&b).expect("get"), made);
    assert!(matches!(
        store.create_bucket(&b, acl("111111111111"), None, &StorageQuotas::UNLIMITED),
        Err(StoreError::BucketAlreadyOwnedByYou)
    ));
    assert!(matches!(
        store.create_bucket(&b, acl("222222222222"), None, &StorageQuotas::UNLIMITED),
        Err(StoreError::BucketAlreadyExists)
    ));
    store
        .create_bucket(
            &bucket("a-first"),
            acl("222222222222"),
            None,
            &StorageQuotas::UNLIMITED,
        )
        .expect("create");
    let names: Vec<_> = store
        .list_buckets()
        .expect("list")
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, ["a-first", "alpha"]);
    store
        .update_bucket(&b, |m| {
            m.acl = acl("333333333333");
            Ok(())
        })
        .expect("acl");
    assert_eq!(store.bucket(&b).expect("get").acl.owner, "333333333333");
    store.delete_bucket(&b).expect("delete");
    assert!(matches!(store.bucket(&b), Err(StoreError::NoSuchBucket)));
    assert!(matches!(
        store.delete_bucket(&b),
        Err(StoreError::NoSuchBucket)
    ));
    assert!(matches!(
        store.object(&b, &key("k")),
        Err(StoreError::NoSuchBucket)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_bucket_refuses_objects_and_takes_uploads_along() {
    let (_dir, store) = new_store();
    let b = bucket("bkt");
    put(&store, "bkt", "k", b"x").await;
    assert!(matches!(
        store.delete_bucket(&b),
        Err(StoreError::BucketNotEmpty)
    ));
    store
        .delete_object(&b, &key("k"), "111111111111", DeleteCondition::default())
        .await
        .expect("delete");
    let up = store
        .create_upload(
            &b,
            &key("m"),
            NewUpload {
                headers: ObjectHeaders::default(),
                checksum: None,
                acl: acl("111111111111"),
                tags: Vec::new(),
                lock: ObjectLock::default(),
            },
        )
        .expect("upload");
    upload_part(&store, &up, 1, b"part").await;
    // An upload in progress does not keep the bucket: it goes with it, parts and all.
    store
        .delete_bucket(&b)
        .expect("delete the bucket and its upload");
    assert!(matches!(
        store.upload(&b, &key("m"), &up.upload_id),
        Err(StoreError::NoSuchBucket | StoreError::NoSuchUpload)
    ));
    assert_eq!(
        store.usage("111111111111").bytes,
        0,
        "the part's bytes are freed"
    );
    let staged = store
        .stage(body(b"late", 2), None, DigestRequest::default())
        .await
        .expect("stage");
    let late = store
        .commit_object(
            &b,
            &key("k"),
            staged,
            NewObject {
                headers: ObjectHeaders::default(),
                checksum: None,
                acl: acl("1"),
                tags: Vec::new(),
                condition: WriteCondition::default(),
                lock: ObjectLock::default(),
            },
            &StorageQuotas::UNLIMITED,
        )
        .await;
    assert!(matches!(late, Err(StoreError::NoSuchBucket)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_object_put_get_overwrite_delete() {
    let (dir, store) = new_store();
    let b = bucket("bkt");
    let k = key("small");
    let data = pattern(4096, 1);
    let headers = ObjectHeaders {
        content_type: Some("text/plain".into()),
        user_metadata: vec![("color".into(), "blue & green+ ".into())],
        ..Default::default()
    };
    let staged = store
        .stage(
            body(&data, 1000),
            Some(4096),
            DigestRequest {
                sha256: true,
                checksum: Some(ChecksumAlgorithm::Crc32c),
            },
        )
        .await
        .expect("stage");
    assert_eq!(staged.size, 4096);
    assert_eq!(hex::encode(staged.digests.md5), md5_hex(&data));
    assert!(staged.digests.sha256.is_some());
    assert_eq!(
        staged.digests.checksum.as_ref().map(|c| c.0),
        Some(ChecksumAlgorithm::Crc32c)
    );
    let meta = store
        .commit_object(
            &b,
            &k,
            staged,
            NewObject {
                headers: headers.clone(),
                checksum: Some((ChecksumAlgorithm::Crc32c, "AAAAAA==".into())),
                acl: acl("111111111111"),
                tags: Vec::new(),
                condition: WriteCondition::default(),
                lock: ObjectLock::default(),
            },
            &StorageQuotas::UNLIMITED,
        )
        .await
        .expect("commit");
    assert_eq!(meta.etag, md5_hex(&data));
    assert_eq!(store.object(&b, &k).expect("head"), meta);
    assert_eq!(get(&store, "bkt", "small").await, data);
    let part = collect(store.read(&b, &k, &meta, 100, 50).expect("range")).await;
    assert_eq!(part, &data[100..150]);
    assert!(collect(store.read(&b, &k, &meta, 10, 0).expect("empty"))
        .await
        .is_empty());
    assert!(store.read(&b, &k, &meta, 4000, 97).is_err());
    assert_eq!(data_files(dir.path()), 0, "small objects stay inline");

    let meta2 = put(&store, "bkt", "small", b"second").await;
    assert_eq!(get(&store, "bkt", "small").await, b"second");
    assert!(matches!(
        store.read(&b, &k, &meta, 0, 1),
        Err(StoreError::NoSuchKey)
    ));
    store
        .update_object(&b, &k, None, |m| {
            m.acl = acl("999999999999");
            Ok(())
        })
        .expect("acl");
    let meta3 = store.object(&b, &k).expect("head");
    assert_eq!(meta3.acl.owner, "999999999999");
    assert_eq!(meta3.etag, meta2.etag);

    store
        .delete_object(&b, &k, "111111111111", DeleteCondition::default())
        .await
        .expect("delete");
    store
        .delete_object(&b, &k, "111111111111", DeleteCondition::default())
        .await
        .expect("delete again");
    assert!(matches!(store.object(&b, &k), Err(StoreError::NoSuchKey)));
    assert!(matches!(
        store.update_object(&b, &k, None, |m| {
            m.acl = acl("1");
            Ok(())
        }),
        Err(StoreError::NoSuchKey)
    ));
    assert!(matches!(
        store
            .delete_object(
                &bucket("nope"),
                &k,
                "111111111111",
                DeleteCondition::default()
            )
            .await,
        Err(StoreError::NoSuchBucket)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_object() {
    let (_dir, store) = new_store();
    let meta = put(&store, "bkt", "empty", b"").await;
    assert_eq!(meta.size, 0);
    assert_eq!(meta.etag, "d41d8cd98f00b204e9800998ecf8427e");
    assert!(get(&store, "bkt", "empty").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_object_put_get_ranges_overwrite() {
    let (dir, store) = new_store();
    let b = bucket("bkt");
    let k = key("big");
    let data = pattern(3 * 1024 * 1024 + 12345, 7);
    // Odd chunk sizes: small ones are gathered, large ones pass through.
    let staged = store
        .stage(
            body(&data, 100_003),
            None,
            DigestRequest {
                sha256: true,
                checksum: Some(ChecksumAlgorithm::Sha256),
            },
        )
        .await
        .expect("stage");
    let sha = staged.digests.sha256.expect("sha256");
    assert_eq!(
        staged.digests.checksum,
        Some((ChecksumAlgorithm::Sha256, sha.to_vec()))
    );
    assert_eq!(tmp_files(dir.path()), 1);
    let meta = store
        .commit_object(
            &b,
            &k,
            staged,
            NewObject {
                headers: ObjectHeaders::default(),
                checksum: None,
                acl: acl("1"),
                tags: Vec::new(),
                condition: WriteCondition::default(),
                lock: ObjectLock::default(),
            },
            &StorageQuotas::UNLIMITED,
        )
        .await
        .expect("commit");
    assert_eq!(meta.etag, md5_hex(&data));
    assert_eq!(tmp_files(dir.path()), 0);
    assert_eq!(data_files(dir.path()), 1);

    // Whole object in ~1 MiB chunks.
    let mut s = store.read(&b, &k, &meta, 0, meta.size).expect("read");
    let mut chunks = 0;
    let mut got = Vec::new();
    while let Some(c) = s.next().await {
        let c = c.expect("chunk");
        assert!(c.len() as u64 <= data::READ_CHUNK);
        got.extend_from_slice(&c);
        chunks += 1;
    }
    assert_eq!(chunks, 4);
    assert_eq!(got, data);
    for (off, len) in [
        (0, 1),
        (1, 1 << 20),
        (1_048_575, 2),
        (3 << 20, 12345),
        (17, 0),
    ] {
        let part = collect(store.read(&b, &k, &meta, off, len).expect("range")).await;
        assert_eq!(
            part,
            &data[off as usize..(off + len) as usize],
            "{off}+{len}"
        );
    }

    // Replace with another big one, then with a small one: old files are reclaimed.
    put(&store, "bkt", "big", &pattern(40_000, 3)).await;
    assert_eq!(data_files(dir.path()), 1);
    put(&store, "bkt", "big", b"tiny").await;
    assert_eq!(data_files(dir.path()), 0);
    assert_eq!(
        store.inner.db.entries(Cf::Pending).expect("pending").len(),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_stream_survives_delete_and_overwrite() {
    let (dir, store) = new_store();
    let b = bucket("bkt");
    let k = key("big");
    let data = pattern(5 << 20, 9);
    let meta = put(&store, "bkt", "big", &data).await;
    let s1 = store.read(&b, &k, &meta, 0, meta.size).expect("read");
    let s2 = store.read(&b, &k, &meta, 1 << 20, 1 << 20).expect("read");
    store
        .delete_object(&b, &k, "111111111111", DeleteCondition::default())
        .await
        .expect("delete");
    assert_eq!(data_files(dir.path()), 0, "unlinked while being read");
    assert_eq!(collect(s1).await, data);
    assert_eq!(collect(s2).await, &data[1 << 20..2 << 20]);
    // A reader arriving after the delete with the old record gets NoSuchKey.
    assert!(matches!(
        store.read(&b, &k, &meta, 0, 1),
        Err(StoreError::NoSuchKey)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_leave_nothing() {
    let (dir, store) = new_store();
    let big = pattern(200_000, 1);
    for (data, expected) in [
        (&b"short"[..], 6u64),
        (&b"toolong"[..], 3),
        (&big[..], 200_001),
        (&big[..], 100_000),
        (&big[..], 10),
    ] {
        let r = store
            .stage(body(data, 4096), Some(expected), DigestRequest::default())
            .await;
        assert!(matches!(r, Err(StoreError::IncompleteBody)), "{expected}");
    }
    // A stream that fails midway.
    let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
        Ok(Bytes::from(pattern(100_000, 1))),
        Err(std::io::Error::other("client went away")),
    ];
    let r = store
        .stage(
            Box::pin(futures_util::stream::iter(chunks)),
            None,
            DigestRequest::default(),
        )
        .await;
    assert!(matches!(r, Err(StoreError::Body(_))));
    // Staged but never committed.
    let staged = store
        .stage(body(&big, 65536), None, DigestRequest::default())
        .await
        .expect("stage");
    assert_eq!(tmp_files(dir.path()), 1);
    drop(staged);
    let root = dir.path().to_owned();
    eventually(|| tmp_files(&root) == 0).await;
    assert_eq!(data_files(dir.path()), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_round_trip_exactly() {
    let (_dir, store) = new_store();
    let keys = [
        "../x",
        "a//b",
        "ünï/cødé ☃",
        "ctl\u{1}\u{7f}\t\n",
        "a+b&c d=e?f#g%20",
        "nul\0inside",
        "/leading",
        ".",
    ];
    for (i, k) in keys.iter().enumerate() {
        put(&store, "bkt", k, format!("v{i}").as_bytes()).await;
    }
    for (i, k) in keys.iter().enumerate() {
        assert_eq!(
            get(&store, "bkt", k).await,
            format!("v{i}").as_bytes(),
            "{k:?}"
        );
    }
    let page = store
        .list_objects(
            &bucket("bkt"),
            &ListQuery {
                max_keys: 1000,
                ..Default::default()
            },
        )
        .expect("list");
    let mut expected: Vec<&str> = keys.to_vec();
    expected.sort();
    let listed: Vec<&str> = page.objects.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(listed, expected);
}

fn list(
    store: &Store,
    prefix: &str,
    delim: Option<&str>,
    after: Option<&str>,
    max: usize,
) -> ListPage {
    store
        .list_objects(
            &bucket("bkt"),
            &ListQuery {
                prefix: prefix.into(),
                delimiter: delim.map(Into::into),
                start_after: after.map(Into::into),
                max_keys: max,
            },
        )
        .expect("list")
}

fn names(page: &ListPage) -> (Vec<&str>, Vec<&str>) {
    (
        page.objects.iter().map(|(k, _)| k.as_str()).collect(),
        page.common_prefixes.iter().map(String::as_str).collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing() {
    let (_dir, store) = new_store();
    let keys = [
        "a", "b/1", "b/2", "b/3/x", "c", "d/e/f", "d/e/g", "d/h", "e", "f/", "f/g",
    ];
    for k in keys {
        put(&store, "bkt", k, k.as_bytes()).await;
    }
    let page = list(&store, "", None, None, 1000);
    assert_eq!(names(&page).0, keys);
    assert!(!page.is_truncated);
    assert_eq!(page.objects[1].1.size, 3);

    let page = list(&store, "", Some("/"), None, 1000);
    assert_eq!(names(&page), (vec!["a", "c", "e"], vec!["b/", "d/", "f/"]));
    assert_eq!(page.next_marker.as_deref(), Some("f/"));

    let page = list(&store, "d/", Some("/"), None, 1000);
    assert_eq!(names(&page), (vec!["d/h"], vec!["d/e/"]));
    let page = list(&store, "b", None, None, 1000);
    assert_eq!(names(&page).0, ["b/1", "b/2", "b/3/x"]);
    let page = list(&store, "zz", Some("/"), None, 1000);
    assert_eq!(names(&page), (vec![], vec![]));
    let page = list(&store, "", Some("e/"), None, 1000);
    assert_eq!(names(&page).1, ["d/e/"]);

    // Markers are exclusive; a marker that is a common prefix skips the keys under it.
    let page = list(&store, "", None, Some("b/2"), 2);
    assert_eq!(names(&page).0, ["b/3/x", "c"]);
    assert!(page.is_truncated);
    assert_eq!(page.next_marker.as_deref(), Some("c"));
    let page = list(&store, "", Some("/"), Some("b/"), 2);
    assert_eq!(names(&page), (vec!["c"], vec!["d/"]));
    let page = list(&store, "", Some("/"), Some("b/1"), 1000);
    assert_eq!(
        names(&page),
        (vec!["a", "c", "e"][1..].to_vec(), vec!["d/", "f/"])
    );
    // A marker before the prefix is irrelevant; a marker after everything gives nothing.
    let page = list(&store, "d/", None, Some("a"), 1000);
    assert_eq!(names(&page).0, ["d/e/f", "d/e/g", "d/h"]);
    let page = list(&store, "", None, Some("zzz"), 1000);
    assert!(page.objects.is_empty() && !page.is_truncated);

    // max-keys 0: an empty page, never truncated (as S3 answers it).
    let page = list(&store, "", Some("/"), None, 0);
    assert_eq!(names(&page), (vec![], vec![]));
    assert!(!page.is_truncated);

    // Paging one at a time with the delimiter sees every entry exactly once.
    let mut seen = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let page = list(&store, "", Some("/"), marker.as_deref(), 1);
        let (objs, cps) = names(&page);
        seen.extend(objs.into_iter().chain(cps).map(str::to_owned));
        if !page.is_truncated {
            break;
        }
        marker = page.next_marker.clone();
    }
    assert_eq!(seen, ["a", "b/", "c", "d/", "e", "f/"]);
    assert!(matches!(
        store.list_objects(&bucket("nope"), &ListQuery::default()),
        Err(StoreError::NoSuchBucket)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_rolls_up_many_keys_with_seeks() {
    let (_dir, store) = new_store();
    let mut keys = Vec::new();
    for d in 0..5 {
        for f in 0..40 {
            keys.push(format!("dir{d}/file{f:03}"));
        }
    }
    keys.push("top".into());
    let futs: Vec<_> = keys.iter().map(|k| put(&store, "bkt", k, b"x")).collect();
    futures_util::future::join_all(futs).await;
    let page = list(&store, "", Some("/"), None, 3);
    assert_eq!(names(&page), (vec![], vec!["dir0/", "dir1/", "dir2/"]));
    assert!(page.is_truncated);
    let page = list(&store, "", Some("/"), Some("dir2/"), 10);
    assert_eq!(names(&page), (vec!["top"], vec!["dir3/", "dir4/"]));
    assert!(!page.is_truncated);
    let page = list(&store, "dir3/", Some("/"), Some("dir3/file038"), 10);
    assert_eq!(names(&page).0, ["dir3/file039"]);
}

async fn upload_part(store: &Store, up: &UploadMeta, n: u32, data: &[u8]) -> PartMeta {
    let staged = store
        .stage(
            body(data, 256 << 10),
            Some(data.len() as u64),
            DigestRequest::default(),
        )
        .await
        .expect("stage part");
    store
        .commit_part(up, n, staged, None, &StorageQuotas::UNLIMITED)
        .await
        .expect("commit part")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_complete() {
    let (dir, store) = new_store();
    let b = bucket("bkt");
    let k = key("multi");
    put(&store, "bkt", "multi", &pattern(50_000, 1)).await; // replaced by the upload
    let headers = ObjectHeaders {
        content_type: Some("application/x-koala".into()),
        ..Default::default()
    };
    let up = store
        .create_upload(
            &b,
            &k,
            NewUpload {
                headers: headers.clone(),
                checksum: None,
                acl: acl("111111111111"),
                tags: Vec::new(),
                lock: ObjectLock::default(),
            },
        )
        .expect("create");
    assert_eq!(store.upload(&b, &k, &up.upload_id).expect("get"), up);
    assert!(matches!(
        store.upload(&b, &key("other"), &up.upload_id),
        Err(StoreError::NoSuchUpload)
    ));
    assert!(matches!(
        store.upload(&b, &k, "../../etc"),
        Err(StoreError::NoSuchUpload)
    ));

    let p1 = pattern(5 << 20, 1);
    let p2 = pattern(5 << 20, 2);
    let p3 = pattern(1000, 3);
    let p3_first = pattern(2000, 4);
    upload_part(&store, &up, 1, &p1).await;
    let m2 = upload_part(&store, &up, 2, &p2).await;
    upload_part(&store, &up, 3, &p3_first).await;
    let m3 = upload_part(&store, &up, 3, &p3).await; // replaces the first part 3
    let m4 = upload_part(&store, &up, 4, b"unused").await;
    assert_eq!(m3.etag, md5_hex(&p3));
    assert_eq!(
        data_files(dir.path()),
        1 + 4,
        "the old object plus four parts"
    );

    let (parts, more) = store.list_parts(&up, 0, 2).expect("list parts");
    assert_eq!(
        parts.iter().map(|p| p.part_number).collect::<Vec<_>>(),
        [1, 2]
    );
    assert!(more);
    let (parts, more) = store.list_parts(&up, 2, 10).expect("list parts");
    assert_eq!(
        parts.iter().map(|p| p.part_number).collect::<Vec<_>>(),
        [3, 4]
    );
    assert!(!more);
    assert_eq!(parts[0].size, 1000);

    // Validation failures leave the upload intact.
    let etag = |p: &PartMeta| p.etag.clone();
    let m1 = parts_meta(&store, &up, 1);
    for (list, want) in [
        (vec![(2, etag(&m2)), (1, etag(&m1))], "order"),
        (vec![(1, etag(&m1)), (1, etag(&m1))], "order"),
        (vec![(1, etag(&m1)), (5, etag(&m2))], "part"),
        (vec![(1, etag(&m2))], "part"),
        (vec![], "part"),
        (vec![(3, etag(&m3)), (4, etag(&m4))], "small"),
    ] {
        let r = store
            .complete_upload(&up, &list, None, WriteCondition::default())
            .await;
        match want {
            "order" => assert!(matches!(r, Err(StoreError::InvalidPartOrder)), "{list:?}"),
            "part" => assert!(matches!(r, Err(StoreError::InvalidPart)), "{list:?}"),
            _ => assert!(matches!(r, Err(StoreError::EntityTooSmall)), "{list:?}"),
        }
    }

    // Complete with parts 1, 2 and 3 (ETags quoted and uppercase, as some clients send).
    let listed = vec![
        (1, format!("\"{}\"", m1.etag.to_uppercase())),
        (2, m2.etag.clone()),
        (3, format!("\"{}\"", m3.etag)),
    ];
    let meta = store
        .complete_upload(&up, &listed, None, WriteCondition::default())
        .await
        .expect("complete");
    let mut md5s = Vec::new();
    for p in [&p1, &p2, &p3] {
        md5s.extend_from_slice(&Md5::digest(p));
    }
    assert_eq!(meta.etag, format!("{}-3", md5_hex(&md5s)));
    assert_eq!(meta.size, (10 << 20) + 1000);
    assert_eq!(meta.part_sizes, [5 << 20, 5 << 20, 1000]);
    assert_eq!(meta.headers, headers);
    assert_eq!(store.object(&b, &k).expect("head"), meta);
    // Part files re-referenced in place; the unused part and the old object reclaimed.
    assert_eq!(data_files(dir.path()), 3);
    let whole: Vec<u8> = [&p1[..], &p2, &p3].concat();
    assert_eq!(get(&store, "bkt", "multi").await, whole);
    let (off, len) = ((5 << 20) - 10, (5 << 20) + 20);
    let range = collect(store.read(&b, &k, &meta, off, len).expect("range")).await;
    assert_eq!(range, &whole[off as usize..(off + len) as usize]);

    assert!(matches!(
        store.upload(&b, &k, &up.upload_id),
        Err(StoreError::NoSuchUpload)
    ));
    assert!(matches!(
        store
            .complete_upload(&up, &listed, None, WriteCondition::default())
            .await,
        Err(StoreError::NoSuchUpload)
    ));
    let staged = store
        .stage(body(b"late", 4), None, DigestRequest::default())
        .await
        .expect("stage");
    assert!(matches!(
        store
            .commit_part(&up, 9, staged, None, &StorageQuotas::UNLIMITED)
            .await,
        Err(StoreError::NoSuchUpload)
    ));
    assert_eq!(data_files(dir.path()), 3);
    assert_eq!(tmp_files(dir.path()), 0);
    let (parts, _) = store.list_parts(&up, 0, 100).expect("list parts");
    assert!(parts.is_empty());

    // Deleting the object removes every part file.
    store
        .delete_object(&b, &k, "111111111111", DeleteCondition::default())
        .await
        .expect("delete");
    assert_eq!(data_files(dir.path()), 0);
}

fn parts_meta(store: &Store, up: &UploadMeta, n: u32) -> PartMeta {
    let (parts, _) = store.list_parts(up, n - 1, 1).expect("list");
    parts.into_iter().next().expect("part")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_checksum_and_single_small_part() {
    let (_dir, store) = new_store();
    let b = bucket("bkt");
    let k = key("one");
    let up = store
        .create_upload(
            &b,
            &k,
            NewUpload {
                headers: ObjectHeaders::default(),
                checksum: Some((ChecksumAlgorithm::Sha256, ChecksumType::Composite)),
                acl: acl("1"),
                tags: Vec::new(),
                lock: ObjectLock::default(),
            },
        )
        .expect("create");
    let staged = store
        .stage(
            body(b"hello", 5),
            Some(5),
            DigestRequest {
                sha256: false,
                checksum: Some(ChecksumAlgorithm::Sha256),
            },
        )
        .await
        .expect("stage");
    let raw = staged.digests.checksum.clone().expect("checksum").1;
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
    let part = store
        .commit_part(&up, 1, staged, Some(b64.clone()), &StorageQuotas::UNLIMITED)
        .await
        .expect("part");
    assert_eq!(part.checksum.as_deref(), Some(b64.as_str()));
    let meta = store
        .complete_upload(
            &up,
            &[(1, part.etag.clone())],
            None,
            WriteCondition::default(),
        )
        .await
        .expect("complete");
    let (alg, value) = meta.checksum.clone().expect("composite checksum");
    assert_eq!(alg, ChecksumAlgorithm::Sha256);
    assert!(value.ends_with("-1"));
    assert_eq!(get(&store, "bkt", "one").await, b"hello");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_abort_and_list_uploads() {
    let (dir, store) = new_store();
    let b = bucket("bkt");
    let mk = |k: &str| {
        store
            .create_upload(
                &b,
                &key(k),
                NewUpload {
                    headers: ObjectHeaders::default(),
                    checksum: None,
                    acl: acl("1"),
                    tags: Vec::new(),
                    lock: ObjectLock::default(),
                },
            )
            .expect("create")
    };
    let a1 = mk("a");
    std::thread::sleep(Duration::from_millis(2));
    let a2 = mk("a");
    let nul = mk("a\0b");
    let c = mk("c/d");
    let x = mk("x");
    upload_part(&store, &c, 1, &pattern(30_000, 1)).await;
    upload_part(&store, &c, 2, b"tiny part").await;
    assert_eq!(data_files(dir.path()), 2, "small parts are files too");

    let ids = |v: &[UploadMeta]| v.iter().map(|u| u.upload_id.clone()).collect::<Vec<_>>();
    let (all, more) = store.list_uploads(&b, "", None, None, 100).expect("list");
    assert_eq!(
        ids(&all),
        ids(&[a1.clone(), a2.clone(), nul.clone(), c.clone(), x.clone()])
    );
    assert!(!more);
    let (page, more) = store.list_uploads(&b, "", None, None, 2).expect("list");
    assert_eq!(ids(&page), ids(&[a1.clone(), a2.clone()]));
    assert!(more);
    let (page, _) = store
        .list_uploads(&b, "", Some("a"), Some(&a1.upload_id), 100)
        .expect("list");
    assert_eq!(
        ids(&page),
        ids(&[a2.clone(), nul.clone(), c.clone(), x.clone()])
    );
    let (page, _) = store
        .list_uploads(&b, "", Some("a"), None, 100)
        .expect("list");
    assert_eq!(ids(&page), ids(&[nul.clone(), c.clone(), x.clone()]));
    let (page, _) = store.list_uploads(&b, "a", None, None, 100).expect("list");
    assert_eq!(ids(&page), ids(&[a1.clone(), a2.clone(), nul.clone()]));
    let (page, _) = store.list_uploads(&b, "c/", None, None, 100).expect("list");
    assert_eq!(ids(&page), ids(std::slice::from_ref(&c)));
    let (page, more) = store.list_uploads(&b, "", None, None, 0).expect("list");
    assert!(page.is_empty() && more);

    store.abort_upload(&c).await.expect("abort");
    assert_eq!(data_files(dir.path()), 0);
    assert!(matches!(
        store.abort_upload(&c).await,
        Err(StoreError::NoSuchUpload)
    ));
    let (all, _) = store.list_uploads(&b, "", None, None, 100).expect("list");
    assert_eq!(all.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_keeps_everything_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = bucket("bkt");
    let big = pattern(100_000, 5);
    let (up, part) = {
        let store = Store::open(dir.path(), &ObjectData::Files).expect("open");
        store
            .create_bucket(&b, acl("1"), None, &StorageQuotas::UNLIMITED)
            .expect("bucket");
        put(&store, "bkt", "small", b"inline").await;
        put(&store, "bkt", "big", &big).await;
        put(&store, "bkt", "gone", &big).await;
        store
            .delete_object(&b, &key("gone"), "111111111111", DeleteCondition::default())
            .await
            .expect("delete");
        let up = store
            .create_upload(
                &b,
                &key("mp"),
                NewUpload {
                    headers: ObjectHeaders::default(),
                    checksum: None,
                    acl: acl("1"),
                    tags: Vec::new(),
                    lock: ObjectLock::default(),
                },
            )
            .expect("upload");
        let part = upload_part(&store, &up, 1, &big).await;
        (up, part)
    };
    let store = Store::open(dir.path(), &ObjectData::Files).expect("reopen");
    assert_eq!(get(&store, "bkt", "small").await, b"inline");
    assert_eq!(get(&store, "bkt", "big").await, big);
    assert!(matches!(
        store.object(&b, &key("gone")),
        Err(StoreError::NoSuchKey)
    ));
    let up2 = store
        .upload(&b, &key("mp"), &up.upload_id)
        .expect("upload survives");
    assert_eq!(up2, up);
    let (parts, _) = store.list_parts(&up, 0, 10).expect("parts");
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0], part);
    let meta = store
        .complete_upload(&up, &[(1, part.etag)], None, WriteCondition::default())
        .await
        .expect("complete after restart");
    assert_eq!(meta.size, big.len() as u64);
    assert_eq!(get(&store, "bkt", "mp").await, big);
    assert_eq!(data_files(dir.path()), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_cleans_up_after_a_crash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_owned();
    let (orphan, pending_file, kept) = {
        let store = Store::open(&root, &ObjectData::Files).expect("open");
        store
            .create_bucket(&bucket("bkt"), acl("1"), None, &StorageQuotas::UNLIMITED)
            .expect("bucket");
        put(&store, "bkt", "kept", &pattern(30_000, 1)).await;
        let inner = &store.inner;
        // A temp file of an upload in progress.
        std::fs::write(root.join("tmp").join("0123"), b"half an upload").expect("tmp");
        // A file installed whose record was never written (crash between the two).
        let orphan = FileId::new(inner.epoch);
        std::fs::write(inner.layout.data_path(orphan), b"orphan").expect("orphan");
        // A file whose record is gone and whose unlink did not happen.
        let pending_file = FileId::new(inner.epoch);
        std::fs::write(inner.layout.data_path(pending_file), b"pending").expect("pending");
        let mut batch = Batch::default();
        batch.put(Cf::Pending, pending_file.0, db::MARKER);
        inner.db.write(batch).expect("put");
        // A file of an older epoch that is referenced is never touched (the kept object).
        (
            orphan,
            pending_file,
            store.object(&bucket("bkt"), &key("kept")).expect("head"),
        )
    };
    assert_eq!(data_files(&root), 3);
    let store = Store::open(&root, &ObjectData::Files).expect("reopen");
    assert_eq!(tmp_files(&root), 0);
    assert!(!store.inner.layout.data_path(orphan).exists());
    assert!(!store.inner.layout.data_path(pending_file).exists());
    assert_eq!(data_files(&root), 1);
    assert_eq!(
        store.object(&bucket("bkt"), &key("kept")).expect("head"),
        kept
    );
    assert_eq!(get(&store, "bkt", "kept").await, pattern(30_000, 1));
    // Reopening again finds nothing to do and keeps the object.
    drop(store);
    let store = Store::open(&root, &ObjectData::Files).expect("third open");
    assert_eq!(get(&store, "bkt", "kept").await, pattern(30_000, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_to_one_and_many_keys() {
    let (dir, store) = new_store();
    let mut tasks = Vec::new();
    for i in 0..64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let data = pattern(if i % 4 == 0 { 40_000 } else { 4096 }, i as u8);
            put(&store, "bkt", &format!("k{i}"), &data).await;
            put(&store, "bkt", "same", &data).await;
            data
        }));
    }
    let mut datas = Vec::new();
    for t in tasks {
        datas.push(t.await.expect("task"));
    }
    for (i, data) in datas.iter().enumerate() {
        assert_eq!(&get(&store, "bkt", &format!("k{i}")).await, data);
    }
    let same = get(&store, "bkt", "same").await;
    assert!(datas.contains(&same));
    let files_expected = 16 + usize::from(same.len() > data::INLINE_MAX);
    assert_eq!(
        data_files(dir.path()),
        files_expected,
        "replaced versions reclaimed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_of_one_upload_commit_concurrently() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = bucket("bkt");
    let k = key("para");
    let parts: Vec<Vec<u8>> = (0..8u8)
        .map(|i| pattern(if i == 7 { 777 } else { 5 << 20 }, i))
        .collect();
    {
        let store = Store::open(dir.path(), &ObjectData::Files).expect("open");
        store
            .create_bucket(&b, acl("1"), None, &StorageQuotas::UNLIMITED)
            .expect("bucket");
        let up = store
            .create_upload(
                &b,
                &k,
                NewUpload {
                    headers: ObjectHeaders::default(),
                    checksum: None,
                    acl: acl("1"),
                    tags: Vec::new(),
                    lock: ObjectLock::default(),
                },
            )
            .expect("create");
        let mut tasks = Vec::new();
        // Every part twice, concurrently: one of each pair wins, the loser's file is reclaimed.
        for _ in 0..2 {
            for (i, data) in parts.iter().enumerate() {
                let (store, up, data) = (store.clone(), up.clone(), data.clone());
                tasks.push(tokio::spawn(async move {
                    upload_part(&store, &up, i as u32 + 1, &data).await
                }));
            }
        }
        let mut etags = std::collections::BTreeMap::new();
        for t in tasks {
            let m = t.await.expect("task");
            etags.insert(m.part_number, m.etag);
        }
        assert_eq!(data_files(dir.path()), 8);
        let listed: Vec<(u32, String)> = etags.into_iter().collect();
        store
            .complete_upload(&up, &listed, None, WriteCondition::default())
            .await
            .expect("complete");
    }
    let store = Store::open(dir.path(), &ObjectData::Files).expect("reopen");
    assert_eq!(get(&store, "bkt", "para").await, parts.concat());
    assert_eq!(data_files(dir.path()), 8);
}

/// Stages `data` and commits it as `b/k` within `quotas`.
async fn put_within(
    store: &Store,
    b: &str,
    k: &str,
    data: &[u8],
    quotas: &StorageQuotas,
) -> Result<ObjectMeta, StoreError> {
    let staged = store
        .stage(
            body(data, 7000),
            Some(data.len() as u64),
            DigestRequest::default(),
        )
        .await
        .expect("stage");
    let object = NewObject {
        headers: ObjectHeaders::default(),
        checksum: None,
        acl: acl("222222222222"),
        tags: Vec::new(),
        condition: WriteCondition::default(),
        lock: ObjectLock::default(),
    };
    store
        .commit_object(&bucket(b), &key(k), staged, object, quotas)
        .await
}

/// What the records say the owner of every bucket holds: objects and parts, by listing.
async fn counted_by_listing(store: &Store) -> u64 {
    let b = bucket("bkt");
    let mut total = 0;
    let page = store
        .list_objects(
            &b,
            &ListQuery {
                max_keys: 10_000,
                ..ListQuery::default()
            },
        )
        .expect("list");
    total += page.objects.iter().map(|(_, m)| m.size).sum::<u64>();
    let (uploads, _) = store
        .list_uploads(&b, "", None, None, 10_000)
        .expect("uploads");
    for up in uploads {
        let (parts, _) = store.list_parts(&up, 0, 10_000).expect("parts");
        total += parts.iter().map(|p| p.size).sum::<u64>();
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_counts_objects_and_parts_for_the_bucket_owner_and_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let owner = "111111111111";
    let b = bucket("bkt");
    let big = pattern(5 << 20, 1);
    {
        let store = Store::open(dir.path(), &ObjectData::Files).expect("open");
        let none = StorageQuotas::UNLIMITED;
        store
            .create_bucket(&b, acl(owner), None, &none)
            .expect("bucket");
        store
            .create_bucket(&bucket("other"), acl(owner), None, &none)
            .expect("bucket");
        assert_eq!(
            store.usage(owner),
            Usage {
                bytes: 0,
                buckets: 2
            }
        );
        // Another account's object in the owner's bucket is charged to the owner.
        put_within(&store, "bkt", "small", &pattern(100, 2), &none)
            .await
            .expect("put");
        put(&store, "bkt", "file", &pattern(40_000, 3)).await;
        put(&store, "bkt", "file", &pattern(30_000, 4)).await;
        assert_eq!(store.usage(owner).bytes, 30_100);
        assert_eq!(store.usage("222222222222"), Usage::default());
        store
            .delete_object(
                &b,
                &key("small"),
                "111111111111",
                DeleteCondition::default(),
            )
            .await
            .expect("delete");
        assert_eq!(store.usage(owner).bytes, 30_000);

        // Parts count as they come; completion frees the parts left out and the object
        // it replaces; an abort frees its parts.
        let up = store
            .create_upload(
                &b,
                &key("file"),
                NewUpload {
                    headers: ObjectHeaders::default(),
                    checksum: None,
                    acl: acl(owner),
                    tags: Vec::new(),
                    lock: ObjectLock::default(),
                },
            )
            .expect("upload");
        let p1 = upload_part(&store, &up, 1, &big).await;
        let p2 = upload_part(&store, &up, 2, b"tail").await;
        upload_part(&store, &up, 3, &pattern(7, 5)).await;
        upload_part(&store, &up, 3, &pattern(9, 5)).await;
        assert_eq!(store.usage(owner).bytes, 30_000 + (5 << 20) + 4 + 9);
        store
            .complete_upload(
                &up,
                &[(1, p1.etag), (2, p2.etag)],
                None,
                WriteCondition::default(),
            )
            .await
            .expect("complete");
        assert_eq!(store.usage(owner).bytes, (5 << 20) + 4);
        let up = store
            .create_upload(
                &b,
                &key("x"),
                NewUpload {
                    headers: ObjectHeaders::default(),
                    checksum: None,
                    acl: acl(owner),
                    tags: Vec::new(),
                    lock: ObjectLock::default(),
                },
            )
            .expect("upload");
        upload_part(&store, &up, 1, &pattern(1000, 6)).await;
        assert_eq!(store.usage(owner).bytes, (5 << 20) + 1004);
        store.abort_upload(&up).await.expect("abort");
        store
            .delete_bucket(&bucket("other"))
            .expect("delete bucket");
        assert_eq!(
            store.usage(owner),
            Usage {
                bytes: (5 << 20) + 4,
                buckets: 1
            }
        );
    }
    let store = Store::open(dir.path(), &ObjectData::Files).expect("reopen");
    assert_eq!(
        store.usage(owner),
        Usage {
            bytes: (5 << 20) + 4,
            buckets: 1
        }
    );
    store
        .delete_object(&b, &key("file"), "111111111111", DeleteCondition::default())
        .await
        .expect("delete");
    assert_eq!(store.usage(owner).bytes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_refuse_what_would_pass_them_and_nothing_else() {
    let (dir, store) = new_store();
    let owner = "111111111111";
    let quotas = StorageQuotas {
        buckets_per_account: Some(2),
        bytes_per_account: Some(50_000),
    };
    store
        .create_bucket(&bucket("second"), acl(owner), None, &quotas)
        .expect("second bucket");
    assert!(matches!(
        store.create_bucket(&bucket("third"), acl(owner), None, &quotas),
        Err(StoreError::TooManyBuckets)
    ));
    store
        .create_bucket(&bucket("theirs"), acl("222222222222"), None, &quotas)
        .expect("another account's bucket");

    put_within(&store, "bkt", "a", &pattern(30_000, 1), &quotas)
        .await
        .expect("within");
    let refused = put_within(&store, "bkt", "b", &pattern(20_001, 2), &quotas).await;
    assert!(matches!(refused, Err(StoreError::QuotaExceeded)));
    assert!(matches!(
        store.object(&bucket("bkt"), &key("b")),
        Err(StoreError::NoSuchKey)
    ));
    assert_eq!(data_files(dir.path()), 1, "the refused body is not kept");
    // Replacing counts what is freed.
    put_within(&store, "bkt", "a", &pattern(50_000, 3), &quotas)
        .await
        .expect("replace");
    // A part past the quota is refused too.
    let up = store
        .create_upload(
            &bucket("bkt"),
            &key("mp"),
            NewUpload {
                headers: ObjectHeaders::default(),
                checksum: None,
                acl: acl(owner),
                tags: Vec::new(),
                lock: ObjectLock::default(),
            },
        )
        .expect("upload");
    let staged = store
        .stage(body(b"x", 1), Some(1), DigestRequest::default())
        .await
        .expect("stage");
    assert!(matches!(
        store.commit_part(&up, 1, staged, None, &quotas).await,
        Err(StoreError::QuotaExceeded)
    ));
    // Deleting always works, even over a lowered quota.
    let lowered = StorageQuotas {
        bytes_per_account: Some(10),
        ..quotas
    };
    store
        .delete_object(
            &bucket("bkt"),
            &key("a"),
            "111111111111",
            DeleteCondition::default(),
        )
        .await
        .expect("delete");
    put_within(&store, "bkt", "c", &pattern(10, 4), &lowered)
        .await
        .expect("exactly the quota");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_count_exactly_and_never_pass_the_quota_together() {
    let (dir, store) = new_store();
    let owner = "111111111111";
    // Puts, overwrites, deletes and multipart uploads on overlapping keys at once.
    let mut tasks = Vec::new();
    for i in 0..48u32 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let none = StorageQuotas::UNLIMITED;
            let k = format!("k{}", i % 8);
            let size = if i % 3 == 0 {
                20_000 + i as usize
            } else {
                100 + i as usize
            };
            put_within(&store, "bkt", &k, &pattern(size, i as u8), &none)
                .await
                .expect("put");
            if i % 5 == 0 {
                store
                    .delete_object(
                        &bucket("bkt"),
                        &key(&k),
                        "111111111111",
                        DeleteCondition::default(),
                    )
                    .await
                    .expect("delete");
            }
            if i % 6 == 0 {
                let up = store
                    .create_upload(
                        &bucket("bkt"),
                        &key(&k),
                        NewUpload {
                            headers: ObjectHeaders::default(),
                            checksum: None,
                            acl: acl("1"),
                            tags: Vec::new(),
                            lock: ObjectLock::default(),
                        },
                    )
                    .expect("upload");
                let p1 = upload_part(&store, &up, 1, &pattern(5 << 20, 1)).await;
                upload_part(&store, &up, 2, &pattern(10, 2)).await;
                if i % 12 == 0 {
                    store
                        .complete_upload(&up, &[(1, p1.etag)], None, WriteCondition::default())
                        .await
                        .expect("complete");
                } else {
                    store.abort_upload(&up).await.expect("abort");
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let listed = counted_by_listing(&store).await;
    assert_eq!(store.usage(owner).bytes, listed);
    drop(store);
    let store = Store::open(dir.path(), &ObjectData::Files).expect("reopen");
    assert_eq!(store.usage(owner).bytes, listed);

    // Ten writes of 1 MB at once against room for exactly five: five pass, five are refused.
    let quotas = StorageQuotas {
        buckets_per_account: None,
        bytes_per_account: Some(listed + 5_000_000),
    };
    let mut tasks = Vec::new();
    for i in 0..10 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            put_within(
                &store,
                "bkt",
                &format!("q{i}"),
                &pattern(1_000_000, i),
                &quotas,
            )
            .await
        }));
    }
    let mut passed = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => passed += 1,
            Err(StoreError::QuotaExceeded) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(passed, 5);
    assert_eq!(store.usage(owner).bytes, listed + 5_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_is_counted_at_open_for_a_store_made_before() {
    let dir = tempfile::tempdir().expect("tempdir");
    let owner = "111111111111";
    {
        let store = Store::open(dir.path(), &ObjectData::Files).expect("open");
        let none = StorageQuotas::UNLIMITED;
        store
            .create_bucket(&bucket("bkt"), acl(owner), None, &none)
            .expect("bucket");
        put(&store, "bkt", "a", &pattern(30_000, 1)).await;
        let up = store
            .create_upload(
                &bucket("bkt"),
                &key("mp"),
                NewUpload {
                    headers: ObjectHeaders::default(),
                    checksum: None,
                    acl: acl(owner),
                    tags: Vec::new(),
                    lock: ObjectLock::default(),
                },
            )
            .expect("upload");
        upload_part(&store, &up, 1, &pattern(700, 2)).await;
        // As a store of the previous format: no usage, no marker.
        let mut batch = Batch::default();
        batch.delete(Cf::Usage, owner.as_bytes());
        batch.delete(Cf::Default, b"usage-v1");
        store.inner.db.write(batch).expect("drop usage and marker");
    }
    let store = Store::open(dir.path(), &ObjectData::Files).expect("reopen");
    assert_eq!(
        store.usage(owner),
        Usage {
            bytes: 30_700,
            buckets: 1
        }
    );
}

// ---- versioning ----

fn set_versioning(store: &Store, b: &str, state: Versioning) {
    store
        .update_bucket(&bucket(b), |m| {
            m.versioning = Some(state);
            Ok(())
        })
        .expect("versioning");
}

/// The versions of `b` as (key, version label, delete marker, latest), in listing order.
fn versions_of(store: &Store, b: &str) -> Vec<(String, String, bool, bool)> {
    let page = store
        .list_versions(
            &bucket(b),
            &VersionQuery {
                max_keys: 1000,
                ..Default::default()
            },
        )
        .expect("list versions");
    assert!(!page.is_truncated);
    page.versions
        .into_iter()
        .map(|(k, m, latest)| {
            (
                k.as_str().to_owned(),
                m.version_label().to_owned(),
                m.delete_marker,
                latest,
            )
        })
        .collect()
}

async fn get_version(store: &Store, b: &str, k: &str, v: &VersionRef) -> Vec<u8> {
    let meta = store
        .object_version(&bucket(b), &key(k), Some(v))
        .expect("version");
    let s = store
        .read(&bucket(b), &key(k), &meta, 0, meta.size)
        .expect("read");
    collect(s).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_are_kept_found_by_id_and_listed_newest_first() {
    let (dir, store) = new_store();
    let b = bucket("bkt");
    let owner = "111111111111";
    // A null version written before versioning was turned on stays, below the new ones.
    let null = put(&store, "bkt", "k", &pattern(20_000, 0)).await;
    assert_eq!(null.version_id, None);
    set_versioning(&store, "bkt", Versioning::Enabled);
    let v1 = put(&store, "bkt", "k", &pattern(30_000, 1)).await;
    let v2 = put(&store, "bkt", "k", b"small").await;
    let id1 = v1.version_id.clone().expect("id");
    let id2 = v2.version_id.clone().expect("id");
    assert_ne!(id1, id2);
    assert!(v2.last_modified > v1.last_modified && v1.last_modified > null.last_modified);
    assert_eq!(get(&store, "bkt", "k").await, b"small");
    let r1 = VersionRef::parse(&id1).expect("ours");
    assert_eq!(
        get_version(&store, "bkt", "k", &r1).await,
        pattern(30_000, 1)
    );
    assert_eq!(
        get_version(&store, "bkt", "k", &VersionRef::Null).await,
        pattern(20_000, 0)
    );
    assert_eq!(
        versions_of(&store, "bkt"),
        [
            ("k".into(), id2.clone(), false, true),
            ("k".into(), id1.clone(), false, false),
            ("k".into(), "null".into(), false, false),
        ]
    );
    assert_eq!(store.usage(owner).bytes, 50_005);
    // An id that was never handed out, and one of another key.
    let unknown = VersionRef::parse(&format!("{:016x}{:016x}", 5u64, 5u64)).expect("ours");
    assert!(matches!(
        store.object_version(&b, &key("k"), Some(&unknown)),
        Err(StoreError::NoSuchVersion)
    ));
    assert!(matches!(
        store.object_version(&b, &key("other"), Some(&r1)),
        Err(StoreError::NoSuchVersion)
    ));

    // A delete puts a marker on top: the key is gone from GET and ListObjects, not its bytes.
    let deleted = store
        .delete_object(&b, &key("k"), "222222222222", DeleteCondition::default())
        .await
        .expect("delete");
    assert!(deleted.delete_marker);
    let marker_id = deleted.version_id.clone().expect("marker id");
    assert!(matches!(
        store.object(&b, &key("k")),
        Err(StoreError::NoSuchKey)
    ));
    let marker = store.object_version(&b, &key("k"), None).expect("marker");
    assert!(marker.delete_marker);
    assert_eq!(marker.acl.owner, "222222222222");
    let listed = store
        .list_objects(
            &b,
            &ListQuery {
                max_keys: 10,
                ..Default::default()
            },
        )
        .expect("list");
    assert!(listed.objects.is_empty());
    assert_eq!(
        versions_of(&store, "bkt")[0],
        ("k".into(), marker_id.clone(), true, true)
    );
    assert_eq!(store.usage(owner).bytes, 50_005);
    assert!(matches!(
        store.delete_bucket(&b),
        Err(StoreError::BucketNotEmpty)
    ));

    // Removing the marker makes the newest version current again.
    let gone = store
        .delete_version(
            &b,
            &key("k"),
            &VersionRef::Id(marker_id),
            DeleteCondition::default(),
            false,
        )
        .await
        .expect("delete marker");
    assert!(gone.delete_marker);
    assert_eq!(get(&store, "bkt", "k").await, b"small");
    // Removing the current version promotes the one below it.
    let gone = store
        .delete_version(
            &b,
            &key("k"),
            &VersionRef::Id(id2.clone()),
            DeleteCondition::default(),
            false,
        )
        .await
        .expect("delete current");
    assert_eq!(gone.version_id.as_deref(), Some(id2.as_str()));
    assert_eq!(get(&store, "bkt", "k").await, pattern(30_000, 1));
    assert_eq!(
        versions_of(&store, "bkt"),
        [
            ("k".into(), id1.clone(), false, true),
            ("k".into(), "null".into(), false, false),
        ]
    );
    // A version that is not there is no error, and deletes nothing.
    store
        .delete_version(
            &b,
            &key("k"),
            &VersionRef::Id(id2),
            DeleteCondition::default(),
            false,
        )
        .await
        .expect("again");
    assert_eq!(versions_of(&store, "bkt").len(), 2);

    // Everything survives a reopen; deleting every version frees bytes and files.
    drop(store);
    let store = Store::open(dir.path(), &ObjectData::Files).expect("reopen");
    assert_eq!(
        get_version(&store, "bkt", "k", &VersionRef::Null).await,
        pattern(20_000, 0)
    );
    assert_eq!(data_files(dir.path()), 2);
    for v in [VersionRef::Null, r1] {
        store
            .delete_version(&b, &key("k"), &v, DeleteCondition::default(), false)
            .await
            .expect("delete");
    }
    assert!(versions_of(&store, "bkt").is_empty());
    assert!(matches!(
        store.object(&b, &key("k")),
        Err(StoreError::NoSuchKey)
    ));
    assert_eq!(store.usage(owner).bytes, 0);
    assert_eq!(data_files(dir.path()), 0);
    store.delete_bucket(&b).expect("empty bucket goes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_bucket_replaces_the_null_version_and_keeps_the_others() {
    let (dir, store) = new_store();
    let b = bucket("bkt");
    set_versioning(&store, "bkt", Versioning::Enabled);
    let v1 = put(&store, "bkt", "k", &pattern(40_000, 1)).await;
    let id1 = v1.version_id.clone().expect("id");
    set_versioning(&store, "bkt", Versioning::Suspended);
    let n1 = put(&store, "bkt", "k", &pattern(50_000, 2)).await;
    assert_eq!(n1.version_id, None);
    let n2 = put(&store, "bkt", "k", &pattern(60_000, 3)).await;
    assert_eq!(n2.version_id, None);
    // The second null version replaced the first, whose file is reclaimed.
    assert_eq!(
        versions_of(&store, "bkt"),
        [
            ("k".into(), "null".into(), false, true),
            ("k".into(), id1.clone(), false, false),
        ]
    );
    assert_eq!(data_files(dir.path()), 2);
    assert_eq!(store.usage("111111111111").bytes, 100_000);

    // A delete writes a null marker in place of the null version.
    let deleted = store
        .delete_object(&b, &key("k"), "111111111111", DeleteCondition::default())
        .await
        .expect("delete");
    assert_eq!(
        deleted,
        Deleted {
            version_id: None,
            delete_marker: true
        }
    );
    assert_eq!(
        versions_of(&store, "bkt"),
        [
            ("k".into(), "null".into(), true, true),
            ("k".into(), id1.clone(), false, false),
        ]
    );
    assert_eq!(data_files(dir.path()), 1);
    assert_eq!(store.usage("111111111111").bytes, 40_000);
    // A new null version replaces the null marker.
    put(&store, "bkt", "k", b"back").await;
    assert_eq!(
        versions_of(&store, "bkt"),
        [
            ("k".into(), "null".into(), false, true),
            ("k".into(), id1, false, false),
        ]
    );
    assert_eq!(get(&store, "bkt", "k").await, b"back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_listings_page_by_key_and_version_markers_and_roll_up_prefixes() {
    let (_dir, store) = new_store();
    let b = bucket("bkt");
    set_versioning(&store, "bkt", Versioning::Enabled);
    for k in ["a", "a\u{0}b", "ab", "d/1", "d/2", "e"] {
        for _ in 0..3 {
            put(&store, "bkt", k, k.as_bytes()).await;
        }
    }
    store
        .delete_object(&b, &key("e"), "111111111111", DeleteCondition::default())
        .await
        .expect("marker");
    let all = versions_of(&store, "bkt");
    assert_eq!(all.len(), 19);
    let keys: Vec<&str> = all.iter().map(|v| v.0.as_str()).collect();
    assert_eq!(&keys[..4], ["a", "a", "a", "a\u{0}b"]);
    assert!(all[15].2 && all[15].3, "the marker is e's latest");

    // Pages of every size give back the whole listing, in order, exactly once.
    for size in [1, 2, 4, 7] {
        let mut seen = Vec::new();
        let mut q = VersionQuery {
            max_keys: size,
            ..Default::default()
        };
        loop {
            let page = store.list_versions(&b, &q).expect("page");
            assert!(page.versions.len() <= size);
            for (k, m, latest) in &page.versions {
                seen.push((
                    k.as_str().to_owned(),
                    m.version_label().to_owned(),
                    m.delete_marker,
                    *latest,
                ));
            }
            if !page.is_truncated {
                break;
            }
            let (k, v) = page.next_marker.expect("marker");
            q.key_marker = Some(k);
            q.version_marker = v.as_deref().map(|v| VersionRef::parse(v).expect("ours"));
        }
        assert_eq!(seen, all, "pages of {size}");
    }

    // A key marker alone starts after every version of that key.
    let page = store
        .list_versions(
            &b,
            &VersionQuery {
                key_marker: Some("ab".into()),
                max_keys: 100,
                ..Default::default()
            },
        )
        .expect("after ab");
    assert_eq!(page.versions[0].0.as_str(), "d/1");

    // A delimiter rolls d/ up into one prefix; a prefix narrows.
    let page = store
        .list_versions(
            &b,
            &VersionQuery {
                delimiter: Some("/".into()),
                max_keys: 100,
                ..Default::default()
            },
        )
        .expect("delimited");
    assert_eq!(page.common_prefixes, ["d/"]);
    assert_eq!(page.versions.len(), 13);
    let page = store
        .list_versions(
            &b,
            &VersionQuery {
                prefix: "a".into(),
                max_keys: 100,
                ..Default::default()
            },
        )
        .expect("prefixed");
    assert_eq!(page.versions.len(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_writes_hold_under_concurrent_writers() {
    let (_dir, store) = new_store();
    let b = bucket("bkt");
    let write = |store: Store, data: &'static [u8], condition: WriteCondition| async move {
        let staged = store
            .stage(
                body(data, 100),
                Some(data.len() as u64),
                DigestRequest::default(),
            )
            .await
            .expect("stage");
        store
            .commit_object(
                &bucket("bkt"),
                &key("k"),
                staged,
                NewObject {
                    headers: ObjectHeaders::default(),
                    checksum: None,
                    acl: acl("111111111111"),
                    tags: Vec::new(),
                    condition,
                    lock: ObjectLock::default(),
                },
                &StorageQuotas::UNLIMITED,
            )
            .await
    };
    // Of many writers that each create only if absent, exactly one wins.
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            tokio::spawn(write(
                store.clone(),
                b"first",
                WriteCondition {
                    if_none_match: Some("*".into()),
                    ..Default::default()
                },
            ))
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(_) => won += 1,
            Err(StoreError::PreconditionFailed) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(won, 1);
    let etag = store.object(&b, &key("k")).expect("head").etag;
    assert!(matches!(
        write(
            store.clone(),
            b"x",
            WriteCondition {
                if_match: Some("\"0000\"".into()),
                ..Default::default()
            }
        )
        .await,
        Err(StoreError::PreconditionFailed)
    ));
    write(
        store.clone(),
        b"second",
        WriteCondition {
            if_match: Some(format!("\"{etag}\"")),
            ..Default::default()
        },
    )
    .await
    .expect("matching etag");
    assert_eq!(get(&store, "bkt", "k").await, b"second");
    store
        .delete_object(&b, &key("k"), "111111111111", DeleteCondition::default())
        .await
        .expect("delete");
    assert!(matches!(
        write(
            store.clone(),
            b"x",
            WriteCondition {
                if_match: Some(etag),
                ..Default::default()
            }
        )
        .await,
        Err(StoreError::NoSuchKey)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_versions_are_deleted_only_as_their_lock_allows() {
    let (_dir, store) = new_store();
    let b = bucket("bkt");
    set_versioning(&store, "bkt", Versioning::Enabled);
    let until = SystemTime::now() + Duration::from_secs(3600);
    let locks = [
        (LockMode::Governance, None),
        (LockMode::Compliance, None),
        (LockMode::Governance, Some(true)),
    ];
    for (i, (mode, legal_hold)) in locks.into_iter().enumerate() {
        let k = format!("k{i}");
        let id = put(&store, "bkt", &k, b"x").await.version_id.expect("id");
        let v = VersionRef::Id(id);
        store
            .update_object(&b, &key(&k), Some(&v), |m| {
                m.lock = ObjectLock {
                    retention: Some(Retention { mode, until }),
                    legal_hold,
                };
                Ok(())
            })
            .expect("lock");
        // A delete marker may always go on top; the version itself stays.
        store
            .delete_object(&b, &key(&k), "111111111111", DeleteCondition::default())
            .await
            .expect("marker");
        let refused = store
            .delete_version(&b, &key(&k), &v, DeleteCondition::default(), false)
            .await;
        assert!(matches!(refused, Err(StoreError::ObjectLocked)), "{k}");
        let bypassed = store
            .delete_version(&b, &key(&k), &v, DeleteCondition::default(), true)
            .await;
        let governance_only = mode == LockMode::Governance && legal_hold.is_none();
        assert_eq!(bypassed.is_ok(), governance_only, "{k}");
        assert_eq!(
            store.object_version(&b, &key(&k), Some(&v)).is_ok(),
            !governance_only
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_promoted_between_pages_is_still_listed() {
    let (_dir, store) = new_store();
    let b = bucket("bkt");
    set_versioning(&store, "bkt", Versioning::Enabled);
    let v1 = put(&store, "bkt", "k", b"1").await.version_id.expect("id");
    let v2 = put(&store, "bkt", "k", b"2").await.version_id.expect("id");
    let page = |marker: Option<(String, Option<String>)>| {
        let (key_marker, version_marker) = match marker {
            Some((k, v)) => (Some(k), v.map(|v| VersionRef::parse(&v).expect("ours"))),
            None => (None, None),
        };
        store
            .list_versions(
                &b,
                &VersionQuery {
                    key_marker,
                    version_marker,
                    max_keys: 1,
                    ..Default::default()
                },
            )
            .expect("page")
    };
    let first = page(None);
    assert_eq!(first.versions[0].1.version_id.as_deref(), Some(v2.as_str()));
    // The listed version is deleted before the next page, as cleanup loops do: the one
    // below it, current now, comes next.
    store
        .delete_version(
            &b,
            &key("k"),
            &VersionRef::Id(v2),
            DeleteCondition::default(),
            false,
        )
        .await
        .expect("delete");
    let second = page(first.next_marker);
    assert_eq!(second.versions.len(), 1);
    assert_eq!(
        second.versions[0].1.version_id.as_deref(),
        Some(v1.as_str())
    );
    assert!(second.versions[0].2, "it is the key's latest now");
    assert!(!second.is_truncated);
}

/// The RADOS engine against a one-host Ceph cluster the test starts (scripts/ceph-temp).
mod on_rados {
    use super::*;
    use std::process::Command;

    /// A cluster in a temp folder, stopped when dropped.
    struct Ceph {
        dir: tempfile::TempDir,
        conf: std::path::PathBuf,
    }

    fn script() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/ceph-temp")
    }

    impl Ceph {
        fn start() -> Ceph {
            let dir = tempfile::tempdir().expect("tempdir");
            let out = Command::new("bash")
                .arg(script())
                .arg("start")
                .arg(dir.path())
                .output()
                .expect("scripts/ceph-temp runs");
            let conf = String::from_utf8_lossy(&out.stdout).trim().into();
            // Made before the check, so that whatever started is stopped with it.
            let ceph = Ceph { dir, conf };
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            ceph
        }

        fn data(&self) -> ObjectData {
            ObjectData::Rados {
                conf: self.conf.clone(),
                pool: "koala".into(),
                shared: None,
            }
        }

        /// The names of the pool's objects, sorted.
        fn objects(&self) -> Vec<String> {
            let out = Command::new("rados")
                .arg("-c")
                .arg(&self.conf)
                .args(["-p", "koala", "ls"])
                .output()
                .expect("rados runs");
            assert!(out.status.success());
            let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
                .lines()
                .map(str::to_owned)
                .collect();
            names.sort();
            names
        }
    }

    impl Drop for Ceph {
        fn drop(&mut self) {
            let _ = Command::new("bash")
                .arg(script())
                .arg("stop")
                .arg(self.dir.path())
                .output();
        }
    }

    async fn eventually_objects(ceph: &Ceph, n: usize) {
        for _ in 0..100 {
            if ceph.objects().len() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the pool holds {:?}, not {n} objects", ceph.objects());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn objects_are_striped_read_back_kept_while_read_and_swept_after_a_crash() {
        let ceph = Ceph::start();
        let (dir, store) = new_store_on(&ceph.data());
        assert!(!dir.path().join("data").exists(), "files made beside RADOS");

        // 10 MiB: three stripes of one data file, read back whole and across a boundary.
        let data = pattern(10 << 20, 3);
        let meta = put(&store, "bkt", "big", &data).await;
        let names = ceph.objects();
        assert_eq!(names.len(), 3, "{names:?}");
        assert!(names[0].ends_with(".0000") && names[2].ends_with(".0002"));
        assert_eq!(get(&store, "bkt", "big").await, data);
        let (b, k) = (bucket("bkt"), key("big"));
        let from = (4 << 20) - 10;
        let across = store.read(&b, &k, &meta, from, 20).expect("read");
        assert_eq!(
            collect(across).await,
            &data[from as usize..from as usize + 20]
        );
        // Small objects stay inline in RocksDB.
        put(&store, "bkt", "small", b"tiny").await;
        assert_eq!(ceph.objects().len(), 3);

        // Deleted while a reader streams it: the reader gets every byte, then it goes.
        let reading = store.read(&b, &k, &meta, 0, meta.size).expect("read");
        store
            .delete_object(&b, &k, "111111111111", DeleteCondition::default())
            .await
            .expect("delete");
        assert_eq!(ceph.objects().len(), 3, "removed under its reader");
        assert!(matches!(
            store.read(&b, &k, &meta, 0, 1),
            Err(StoreError::NoSuchKey)
        ));
        assert_eq!(collect(reading).await, data);
        eventually_objects(&ceph, 0).await;

        // A body staged and never committed leaves nothing.
        let staged = store
            .stage(body(&data, 65536), None, DigestRequest::default())
            .await
            .expect("stage");
        assert_eq!(ceph.objects().len(), 3);
        drop(staged);
        eventually_objects(&ceph, 0).await;

        // A crash between writing the stripes and committing the record: the next open
        // removes them.
        let staged = store
            .stage(body(&data, 65536), None, DigestRequest::default())
            .await
            .expect("stage");
        std::mem::forget(staged);
        drop(store);
        assert_eq!(ceph.objects().len(), 3);
        let store = Store::open(dir.path(), &ceph.data()).expect("reopen");
        assert!(ceph.objects().is_empty(), "{:?}", ceph.objects());
        assert_eq!(get(&store, "bkt", "small").await, b"tiny");
    }
}

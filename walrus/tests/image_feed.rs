//! The image feed end to end, in process: a real Walrus on a temp dir with an Identity that
//! holds the cloud CA, bundles made with the bundler for the cloud's certificate and
//! uploaded through S3 PUTs, and the feed's internal endpoint asked for the plain image,
//! every request signed with `aws-sigv4` through `rpc::signer` (a signer written
//! independently of our verifier) and served by `Walrus::handle`, the same entry point the
//! `koala` binary calls.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use bundler::{bundle, BundleKey, BundleOptions, ImageType, Manifest, MemoryParts, PublicKey};
use http::{Method, Request, StatusCode};
use identity::{ComponentKind, Credentials, Identity, Transport};
use rpc::signer::{SignableBody, Signer, Style};
use sha2::Digest;
use walrus::Walrus;

mod common;
use common::{open_walrus, Resp};

const HOST: &str = "walrus.koala.test";
const FEED: &str = "/services/Walrus/_koala/images";

/// A Walrus with its data dir, the cloud admin and a user account.
struct Cloud {
    walrus: Walrus,
    admin: Credentials,
    user: Credentials,
    /// The cloud controller's component principal (`clc`).
    clc: Credentials,
    /// A node controller's component principal, the feed's caller.
    node: Credentials,
    cloud_cert: PublicKey,
    dir: PathBuf,
    grace: Duration,
    _tmp: Option<tempfile::TempDir>,
}

/// Opens Walrus on `dir` with the cloud CA, collecting unused images after `grace`; returns
/// it, the cloud admin's credentials and the cloud's certificate key (what bundles are
/// encrypted for).
fn open_cloud_walrus(dir: &Path, grace: Duration) -> (Walrus, Credentials, PublicKey) {
    let (identity, _) = Identity::open_with_ca(&dir.join("identity"), &dir.join("keys")).unwrap();
    let (admin, _) = identity.ensure_admin().unwrap();
    let cloud_cert =
        bundler::read_certificate(identity.cloud_ca().unwrap().cert_pem().as_bytes()).unwrap();
    let walrus = open_walrus(dir, identity, grace);
    (walrus, admin, cloud_cert)
}

impl Cloud {
    fn start() -> Cloud {
        Cloud::start_with_grace(walrus::IMAGE_GRACE)
    }

    /// A cloud whose Walrus collects unused plain images after `grace`.
    fn start_with_grace(grace: Duration) -> Cloud {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let (identity, _) =
            Identity::open_with_ca(&dir.join("identity"), &dir.join("keys")).unwrap();
        let user = identity.create_account("alice").unwrap();
        identity.ensure_admin().unwrap();
        let clc = identity
            .register_component(ComponentKind::CloudController, "clc")
            .unwrap();
        let node = identity
            .register_component(ComponentKind::NodeController, "nc-node1")
            .unwrap();
        drop(identity);
        let (walrus, admin, cloud_cert) = open_cloud_walrus(&dir, grace);
        Cloud {
            walrus,
            admin,
            user,
            clc,
            node,
            cloud_cert,
            dir,
            grace,
            _tmp: Some(tmp),
        }
    }

    /// Drops this Walrus and opens the same data dir again.
    fn restart(self) -> Cloud {
        let Cloud {
            walrus,
            dir,
            user,
            clc,
            node,
            grace,
            _tmp,
            ..
        } = self;
        drop(walrus);
        let (walrus, admin, cloud_cert) = open_cloud_walrus(&dir, grace);
        Cloud {
            walrus,
            admin,
            user,
            clc,
            node,
            cloud_cert,
            dir,
            grace,
            _tmp,
        }
    }

    /// Sends a request, SigV4-signed by `creds` when given, through `Walrus::handle`.
    async fn send(
        &self,
        method: &str,
        path_and_query: &str,
        body: Vec<u8>,
        creds: Option<&Credentials>,
        extra: &[(&str, &str)],
    ) -> Resp {
        let host = extra
            .iter()
            .find(|(k, _)| *k == "host")
            .map_or(HOST, |(_, v)| *v);
        let mut url = format!("http://{host}{path_and_query}");
        let mut headers: Vec<(String, String)> = vec![("host".into(), host.into())];
        if method == "PUT" {
            headers.push(("content-length".into(), body.len().to_string()));
        }
        for (k, v) in extra.iter().filter(|(k, _)| *k != "host") {
            headers.push(((*k).to_owned(), (*v).to_owned()));
        }
        if let Some(c) = creds {
            let signer = Signer::new(&c.access_key_id, &c.secret_access_key, "us-east-1", "s3");
            let signed: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let signature = signer
                .sign(
                    Style::S3,
                    SystemTime::now(),
                    method,
                    &url,
                    &signed,
                    SignableBody::Bytes(&body),
                )
                .unwrap();
            url = signature.presigned_url(&url);
            headers.extend(signature.headers);
        }
        let mut builder = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(url);
        for (k, v) in &headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        // As the daemon's TLS layer marks a connection whose client certificate names the
        // signer (the TLS layer itself is tried end to end in tests/python/test_trust.py).
        builder = builder.extension(Transport::Tls {
            peer: creds.map(|c| c.user_name.clone()),
        });
        let resp = self
            .walrus
            .handle(builder.body(Body::from(body)).unwrap())
            .await;
        Resp::read(resp).await
    }

    async fn put(&self, path: &str, body: Vec<u8>, creds: &Credentials) -> Resp {
        self.send("PUT", path, body, Some(creds), &[]).await
    }

    /// GET (or HEAD) of the feed by manifest location, as `creds`.
    async fn feed(&self, method: &str, location: &str, creds: Option<&Credentials>) -> Resp {
        let q = identity::uri_encode(location.as_bytes(), false);
        self.send(
            method,
            &format!("{FEED}?manifest={q}"),
            Vec::new(),
            creds,
            &[],
        )
        .await
    }

    /// GET (or HEAD) of the feed by manifest location pinned to the manifest's SHA-256, as a
    /// node asks for a registered image.
    async fn feed_pinned(&self, method: &str, location: &str, pin: &str) -> Resp {
        let q = identity::uri_encode(location.as_bytes(), false);
        self.send(
            method,
            &format!("{FEED}?manifest={q}&manifest-sha256={pin}"),
            Vec::new(),
            Some(&self.node),
            &[],
        )
        .await
    }

    /// The SHA-256 of the manifest now at `location`, as the cloud controller pins it.
    async fn manifest_pin(&self, location: &str) -> String {
        let r = self
            .send(
                "GET",
                &format!("/{location}"),
                Vec::new(),
                Some(&self.user),
                &[],
            )
            .await;
        r.expect(200);
        sha256_hex(&r.body)
    }

    /// Records (PUT) or releases (DELETE) a registration as the cloud controller.
    async fn registration(&self, method: &str, image_id: &str, location: &str, pin: &str) -> Resp {
        let q = identity::uri_encode(location.as_bytes(), false);
        self.send(
            method,
            &format!("/_koala/registrations/{image_id}?manifest={q}&manifest-sha256={pin}"),
            Vec::new(),
            Some(&self.clc),
            &[],
        )
        .await
    }

    /// Waits until the plain image `sha256` is on disk or not, as `present` says; false if
    /// that did not happen within `within`.
    async fn image_becomes(&self, sha256: &str, present: bool, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            if self.stored_images().iter().any(|s| s == sha256) == present {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// GET (or HEAD) of the feed by SHA-256, as a node.
    async fn by_hash(&self, method: &str, sha256: &str) -> Resp {
        self.send(
            method,
            &format!("{FEED}/{sha256}"),
            Vec::new(),
            Some(&self.node),
            &[],
        )
        .await
    }

    fn stored_images(&self) -> Vec<String> {
        names_in(&self.dir.join("walrus/images/sha256"))
    }

    fn temp_images(&self) -> Vec<String> {
        names_in(&self.dir.join("walrus/images/tmp"))
    }

    /// Uploads a bundle of `image` for `cert` as the user: `bucket/dir/NAME.part.NN` and
    /// `bucket/dir/NAME.manifest.xml`. Returns the manifest's location.
    async fn upload_bundle(
        &self,
        bucket: &str,
        name: &str,
        image: &[u8],
        part_size: u64,
        cert: &PublicKey,
        edit: impl FnOnce(&mut Manifest),
    ) -> String {
        let (mut manifest, parts) = make_bundle(image, name, part_size, &self.user, cert);
        edit(&mut manifest);
        self.put(&format!("/{bucket}"), Vec::new(), &self.user)
            .await;
        for (part_name, data) in parts {
            self.put(&format!("/{bucket}/dir/{part_name}"), data, &self.user)
                .await
                .expect(200);
        }
        let key = format!("dir/{name}.manifest.xml");
        self.put(
            &format!("/{bucket}/{key}"),
            manifest.render().into_bytes(),
            &self.user,
        )
        .await
        .expect(200);
        format!("{bucket}/{key}")
    }
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Deterministic data that compresses partly (random 4 KiB blocks between text blocks).
fn image(len: usize, seed: u32) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9 ^ seed;
    (0..len)
        .map(|i| {
            if (i / 4096) % 2 == 0 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            } else {
                b"koala images "[i % 13]
            }
        })
        .collect()
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

/// Bundles `data` in memory for `cert`, unsigned, as euca-bundle-image would for `user`.
fn make_bundle(
    data: &[u8],
    name: &str,
    part_size: u64,
    user: &Credentials,
    cert: &PublicKey,
) -> (Manifest, Vec<(String, Vec<u8>)>) {
    let key = BundleKey::random();
    let mut parts = MemoryParts::default();
    let opts = BundleOptions {
        part_size,
        ..BundleOptions::default()
    };
    let outcome = bundle(
        data,
        data.len() as u64,
        name,
        &key,
        &mut parts,
        &opts,
        &mut |_| {},
    )
    .unwrap();
    let mut manifest = Manifest::new("x86_64", name, &user.account_id, ImageType::Machine);
    manifest.digest = outcome.digest;
    manifest.size = outcome.size;
    manifest.bundled_size = outcome.bundled_size;
    manifest.parts = outcome.parts;
    manifest.set_keys(&key, cert, None).unwrap();
    manifest.sign(None).unwrap();
    (manifest, parts.parts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_unbundles_once_and_serves_by_hash() {
    let cloud = Cloud::start();
    let data = image(3 << 20, 1);
    let want = sha256_hex(&data);
    let cert = cloud.cloud_cert.clone();
    let location = cloud
        .upload_bundle("imgs", "disk.img", &data, 1 << 20, &cert, |_| {})
        .await;

    let first = cloud.feed("GET", &location, Some(&cloud.node)).await;
    first.expect(200);
    assert!(first.body == data, "the image comes back bit for bit");
    assert_eq!(first.header("x-koala-image-sha256"), want);
    assert_eq!(first.header("etag"), format!("\"{want}\""));
    assert_eq!(first.header("content-length"), data.len().to_string());
    assert_eq!(cloud.walrus.image_feed_stats().unbundles, 1);
    assert_eq!(cloud.stored_images(), vec![want.clone()]);
    assert!(cloud.temp_images().is_empty());

    // Later requests come out of the store: no second unbundling, the same file.
    let path = cloud.dir.join("walrus/images/sha256").join(&want);
    let before = std::fs::metadata(&path).unwrap();
    let second = cloud.feed("GET", &location, Some(&cloud.node)).await;
    second.expect(200);
    assert!(second.body == data);
    let head = cloud.feed("HEAD", &location, Some(&cloud.node)).await;
    head.expect(200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), data.len().to_string());
    assert_eq!(head.header("x-koala-image-sha256"), want);
    assert_eq!(cloud.walrus.image_feed_stats().unbundles, 1);
    let after = std::fs::metadata(&path).unwrap();
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&before),
        std::os::unix::fs::MetadataExt::ino(&after)
    );
    assert_eq!(before.modified().unwrap(), after.modified().unwrap());

    // By hash: whole, HEAD, a range; unknown and malformed hashes.
    let by_hash = cloud.by_hash("GET", &want).await;
    by_hash.expect(200);
    assert!(by_hash.body == data);
    assert_eq!(by_hash.header("x-koala-image-sha256"), want);
    let head = cloud.by_hash("HEAD", &want).await;
    head.expect(200);
    assert_eq!(head.header("content-length"), data.len().to_string());
    let range = cloud
        .send(
            "GET",
            &format!("{FEED}/{want}"),
            Vec::new(),
            Some(&cloud.node),
            &[("range", "bytes=1000-1999")],
        )
        .await;
    range.expect(206);
    assert_eq!(&range.body[..], &data[1000..2000]);
    assert_eq!(
        range.header("content-range"),
        format!("bytes 1000-1999/{}", data.len())
    );
    // The chunk list: each 1 MiB chunk's SHA-256, in order; made again from the image when
    // it is missing (an image unbundled before lists were kept).
    let check_chunks = |resp: &Resp| {
        resp.expect(200);
        assert_eq!(resp.header("x-koala-chunk-size"), (1 << 20).to_string());
        let want: Vec<u8> = data
            .chunks(1 << 20)
            .flat_map(|c| sha2::Sha256::digest(c).to_vec())
            .collect();
        assert!(resp.body == want, "the chunk list names every chunk");
    };
    let chunks_url = format!("{FEED}/{want}/chunks");
    let chunks = cloud
        .send("GET", &chunks_url, Vec::new(), Some(&cloud.node), &[])
        .await;
    check_chunks(&chunks);
    let list_path = cloud.dir.join("walrus/images/chunks").join(&want);
    std::fs::remove_file(&list_path).unwrap();
    let chunks = cloud
        .send("GET", &chunks_url, Vec::new(), Some(&cloud.node), &[])
        .await;
    check_chunks(&chunks);
    assert!(list_path.exists());
    // Only node controllers read it, as the image itself.
    cloud
        .send("GET", &chunks_url, Vec::new(), None, &[])
        .await
        .expect_err(403, "AccessDenied");
    cloud
        .send(
            "GET",
            &format!("{FEED}/{}/chunks", sha256_hex(b"nothing")),
            Vec::new(),
            Some(&cloud.node),
            &[],
        )
        .await
        .expect_err(404, "NoSuchKey");
    cloud
        .by_hash("GET", &sha256_hex(b"nothing"))
        .await
        .expect_err(404, "NoSuchKey");
    cloud
        .by_hash("GET", "abc")
        .await
        .expect_err(400, "InvalidArgument");
    assert_eq!(cloud.walrus.image_feed_stats().unbundles, 1);

    // After a restart the index and the image are still there.
    let cloud = cloud.restart();
    let again = cloud.by_hash("GET", &want).await;
    again.expect(200);
    assert!(again.body == data);
    let again = cloud.feed("GET", &location, Some(&cloud.node)).await;
    again.expect(200);
    assert_eq!(again.header("x-koala-image-sha256"), want);
    assert_eq!(cloud.walrus.image_feed_stats().unbundles, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_one_unbundling() {
    let cloud = Cloud::start();
    let data = image(4 << 20, 2);
    let want = sha256_hex(&data);
    let cert = cloud.cloud_cert.clone();
    let location = cloud
        .upload_bundle("many", "img", &data, 1 << 20, &cert, |_| {})
        .await;
    let cloud = std::sync::Arc::new(cloud);
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let cloud = std::sync::Arc::clone(&cloud);
            let location = location.clone();
            tokio::spawn(async move {
                let r = cloud.feed("GET", &location, Some(&cloud.node)).await;
                (r.status, r.header("x-koala-image-sha256"), r.body)
            })
        })
        .collect();
    for t in tasks {
        let (status, sha, body) = t.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(sha, want);
        assert!(body == data);
    }
    assert_eq!(cloud.walrus.image_feed_stats().unbundles, 1);
    assert_eq!(cloud.stored_images(), vec![want]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_bundles_store_nothing() {
    let cloud = Cloud::start();
    let cert = cloud.cloud_cert.clone();

    // A part changed after upload: its SHA-1 no longer matches the manifest.
    let data = image(3 << 20, 3);
    let location = cloud
        .upload_bundle("tampered", "img", &data, 1 << 20, &cert, |_| {})
        .await;
    let part = cloud
        .send(
            "GET",
            "/tampered/dir/img.part.01",
            Vec::new(),
            Some(&cloud.user),
            &[],
        )
        .await;
    let mut bytes = part.body.to_vec();
    bytes[4242] ^= 0x20;
    cloud
        .put("/tampered/dir/img.part.01", bytes, &cloud.user)
        .await
        .expect(200);
    let r = cloud.feed("GET", &location, Some(&cloud.node)).await;
    r.expect_err(409, "BadDigest");
    assert!(String::from_utf8_lossy(&r.body).contains("part 1"));
    assert!(cloud.stored_images().is_empty());
    assert!(cloud.temp_images().is_empty());
    cloud
        .by_hash("GET", &sha256_hex(&data))
        .await
        .expect_err(404, "NoSuchKey");

    // Parts intact, but the manifest's tar digest is wrong.
    let location = cloud
        .upload_bundle("baddigest", "img", &data, 1 << 20, &cert, |m| {
            m.digest = "0".repeat(40);
        })
        .await;
    let r = cloud.feed("GET", &location, Some(&cloud.node)).await;
    r.expect_err(409, "BadDigest");
    assert!(String::from_utf8_lossy(&r.body).contains("tar stream"));
    assert!(cloud.stored_images().is_empty());
    assert!(cloud.temp_images().is_empty());

    // A missing part, a bundle for another cloud, a missing manifest, garbage.
    let location = cloud
        .upload_bundle("gone", "img", &data, 1 << 20, &cert, |_| {})
        .await;
    cloud
        .send(
            "DELETE",
            "/gone/dir/img.part.01",
            Vec::new(),
            Some(&cloud.user),
            &[],
        )
        .await
        .expect(204);
    cloud
        .feed("GET", &location, Some(&cloud.node))
        .await
        .expect_err(400, "InvalidManifest");
    let other = PublicKey::from(&bundler::PrivateKey::new(&mut rand::thread_rng(), 1024).unwrap());
    let location = cloud
        .upload_bundle("elsewhere", "img", &data, 1 << 20, &other, |_| {})
        .await;
    let r = cloud.feed("GET", &location, Some(&cloud.node)).await;
    r.expect_err(400, "InvalidManifest");
    assert!(String::from_utf8_lossy(&r.body).contains("not encrypted for this cloud"));
    cloud
        .feed("GET", "imgs/none.manifest.xml", Some(&cloud.node))
        .await
        .expect_err(404, "NoSuchKey");
    cloud
        .put(
            "/gone/dir/junk.manifest.xml",
            b"<manifest>".to_vec(),
            &cloud.user,
        )
        .await
        .expect(200);
    cloud
        .feed("GET", "gone/dir/junk.manifest.xml", Some(&cloud.node))
        .await
        .expect_err(400, "InvalidManifest");
    cloud
        .feed("GET", "no-slash", Some(&cloud.node))
        .await
        .expect_err(400, "InvalidArgument");
    assert!(cloud.stored_images().is_empty());
    assert!(cloud.temp_images().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_manifest_is_never_replaced() {
    let cloud = Cloud::start();
    let cert = cloud.cloud_cert.clone();
    let first = image(2 << 20, 6);
    let second = image(2 << 20, 7);

    // Registered (pinned) and unbundled, then replaced by another bundle under the same
    // names: the pinned image is still the first one, the replacement is unbundled only when
    // asked for without a pin (the manifest lying there now).
    let location = cloud
        .upload_bundle("pinned", "img", &first, 1 << 20, &cert, |_| {})
        .await;
    let pin = cloud.manifest_pin(&location).await;
    let r = cloud.feed_pinned("GET", &location, &pin).await;
    r.expect(200);
    assert!(r.body == first);
    cloud
        .upload_bundle("pinned", "img", &second, 1 << 20, &cert, |_| {})
        .await;
    assert_ne!(cloud.manifest_pin(&location).await, pin);
    let r = cloud.feed_pinned("GET", &location, &pin).await;
    r.expect(200);
    assert!(r.body == first, "the registered image, not the replacement");
    assert_eq!(r.header("x-koala-image-sha256"), sha256_hex(&first));
    assert_eq!(cloud.walrus.image_feed_stats().unbundles, 1);
    let r = cloud.feed("GET", &location, Some(&cloud.node)).await;
    r.expect(200);
    assert!(r.body == second);

    // Replaced before it was ever unbundled: refused, nothing unbundled or stored.
    let location = cloud
        .upload_bundle("swapped", "img", &first, 1 << 20, &cert, |_| {})
        .await;
    let pin = cloud.manifest_pin(&location).await;
    let third = image(1 << 20, 8);
    cloud
        .upload_bundle("swapped", "img", &third, 1 << 20, &cert, |_| {})
        .await;
    let before = cloud.walrus.image_feed_stats().unbundles;
    let r = cloud.feed_pinned("GET", &location, &pin).await;
    r.expect_err(409, "BadDigest");
    assert!(
        String::from_utf8_lossy(&r.body).contains("was replaced after the image was registered"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let r = cloud.feed_pinned("HEAD", &location, &pin).await;
    r.expect(409);
    assert_eq!(cloud.walrus.image_feed_stats().unbundles, before);
    assert!(!cloud.stored_images().contains(&sha256_hex(&third)));
    cloud
        .by_hash("GET", &sha256_hex(&third))
        .await
        .expect_err(404, "NoSuchKey");

    // A pin that is not a SHA-256 is the caller's mistake.
    cloud
        .feed_pinned("GET", &location, "abc")
        .await
        .expect_err(400, "InvalidArgument");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_no_registration_uses_are_collected_after_the_grace() {
    let grace = Duration::from_secs(2);
    let cloud = Cloud::start_with_grace(grace);
    let cert = cloud.cloud_cert.clone();
    let (a, b) = (image(1 << 20, 11), image(1 << 20, 12));
    let (sha_a, sha_b) = (sha256_hex(&a), sha256_hex(&b));
    let loc_a = cloud
        .upload_bundle("kept", "a", &a, 1 << 20, &cert, |_| {})
        .await;
    let loc_b = cloud
        .upload_bundle("kept", "b", &b, 1 << 20, &cert, |_| {})
        .await;
    let (pin_a, pin_b) = (
        cloud.manifest_pin(&loc_a).await,
        cloud.manifest_pin(&loc_b).await,
    );
    // Two images registered with bundle a, one with bundle b.
    for (id, loc, pin) in [
        ("emi-0000000a", &loc_a, &pin_a),
        ("emi-000000aa", &loc_a, &pin_a),
        ("emi-0000000b", &loc_b, &pin_b),
    ] {
        cloud.registration("PUT", id, loc, pin).await.expect(200);
    }
    cloud.feed_pinned("HEAD", &loc_a, &pin_a).await.expect(200);
    cloud.feed_pinned("HEAD", &loc_b, &pin_b).await.expect(200);
    assert_eq!(cloud.stored_images().len(), 2);

    // b's only registration goes: its image is collected after the grace, a's stays.
    cloud
        .send(
            "DELETE",
            "/_koala/registrations/emi-0000000b",
            Vec::new(),
            Some(&cloud.clc),
            &[],
        )
        .await
        .expect(204);
    let released = Instant::now();
    assert!(
        cloud.image_becomes(&sha_b, false, grace * 5).await,
        "b collected"
    );
    assert!(released.elapsed() >= grace, "not before the grace");
    cloud
        .by_hash("GET", &sha_b)
        .await
        .expect_err(404, "NoSuchKey");
    cloud.by_hash("HEAD", &sha_a).await.expect(200);

    // One of a's two registrations goes: a is still used.
    cloud
        .send(
            "DELETE",
            "/_koala/registrations/emi-0000000a",
            Vec::new(),
            Some(&cloud.clc),
            &[],
        )
        .await
        .expect(204);
    tokio::time::sleep(grace * 2).await;
    assert!(
        cloud.stored_images().contains(&sha_a),
        "a is still registered"
    );

    // Registrations survive a restart.
    let cloud = cloud.restart();
    tokio::time::sleep(grace * 2).await;
    assert_eq!(cloud.stored_images(), vec![sha_a.clone()]);

    // An image no registration uses, but fetched again and again (a node mid-fetch), is
    // kept while it is, and collected once it is not.
    cloud
        .send(
            "DELETE",
            "/_koala/registrations/emi-000000aa",
            Vec::new(),
            Some(&cloud.clc),
            &[],
        )
        .await
        .expect(204);
    let until = Instant::now() + grace * 2;
    while Instant::now() < until {
        cloud.by_hash("HEAD", &sha_a).await.expect(200);
        tokio::time::sleep(grace / 8).await;
    }
    assert!(
        cloud.image_becomes(&sha_a, false, grace * 5).await,
        "a collected"
    );
    assert!(cloud.stored_images().is_empty());

    // Collected too early is only slower: the pinned manifest is unbundled again.
    let before = cloud.walrus.image_feed_stats().unbundles;
    let r = cloud.feed_pinned("GET", &loc_b, &pin_b).await;
    r.expect(200);
    assert!(r.body == b);
    assert_eq!(cloud.walrus.image_feed_stats().unbundles, before + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_cloud_controller_records_registrations() {
    let cloud = Cloud::start();
    let pin = sha256_hex(b"manifest");
    let path =
        format!("/_koala/registrations/emi-0123abcd?manifest=bkt%2Fm.xml&manifest-sha256={pin}");
    for who in [Some(&cloud.user), Some(&cloud.admin), None] {
        cloud
            .send("PUT", &path, Vec::new(), who, &[])
            .await
            .expect_err(403, "AccessDenied");
    }
    let clc = Some(&cloud.clc);
    cloud
        .send("PUT", &path, Vec::new(), clc, &[])
        .await
        .expect(200);
    cloud
        .send("GET", &path, Vec::new(), clc, &[])
        .await
        .expect_err(405, "MethodNotAllowed");
    for bad in [
        "/_koala/registrations/ami-0123abcd?manifest=bkt%2Fm.xml&manifest-sha256=".to_owned()
            + &pin,
        "/_koala/registrations/emi-0123abcd?manifest=bkt%2Fm.xml".to_owned(),
        "/_koala/registrations/emi-0123abcd?manifest=bkt%2Fm.xml&manifest-sha256=abc".to_owned(),
        "/_koala/registrations/emi-0123abcd?manifest-sha256=".to_owned() + &pin,
    ] {
        cloud
            .send("PUT", &bad, Vec::new(), clc, &[])
            .await
            .expect_err(400, "InvalidArgument");
    }
    // Releasing twice, or an image never recorded, succeeds.
    for _ in 0..2 {
        cloud
            .send(
                "DELETE",
                "/_koala/registrations/emi-0123abcd",
                Vec::new(),
                clc,
                &[],
            )
            .await
            .expect(204);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_cloud_may_call_the_feed() {
    let cloud = Cloud::start();
    let data = image(100_000, 4);
    let cert = cloud.cloud_cert.clone();
    let location = cloud
        .upload_bundle("mine", "img", &data, 1 << 20, &cert, |_| {})
        .await;
    // The bundle's owner is not a cloud component, nor is a cloud administrator; the cloud
    // controller reads bundles, not images.
    for who in [&cloud.user, &cloud.admin, &cloud.clc] {
        cloud
            .feed("GET", &location, Some(who))
            .await
            .expect_err(403, "AccessDenied");
    }
    cloud
        .feed("GET", &location, None)
        .await
        .expect_err(403, "AccessDenied");
    let r = cloud.feed("HEAD", &location, None).await;
    r.expect(403);
    assert!(r.body.is_empty());
    cloud
        .send(
            "GET",
            &format!("{FEED}/{}", sha256_hex(&data)),
            Vec::new(),
            Some(&cloud.user),
            &[],
        )
        .await
        .expect_err(403, "AccessDenied");
    assert_eq!(cloud.walrus.image_feed_stats().unbundles, 0);
    // Other verbs are refused; the S3 namespace around `_koala` is untouched.
    cloud
        .send("PUT", FEED, Vec::new(), Some(&cloud.admin), &[])
        .await
        .expect_err(405, "MethodNotAllowed");
    cloud
        .send("PUT", "/_koala", Vec::new(), Some(&cloud.admin), &[])
        .await
        .expect_err(400, "InvalidBucketName");
    // Under a virtual-host bucket, `_koala/images` is an ordinary key.
    cloud
        .put("/vhost", Vec::new(), &cloud.user)
        .await
        .expect(200);
    let vhost = [("host", "vhost.s3.koala.test")];
    cloud
        .send(
            "PUT",
            "/_koala/images",
            b"x".to_vec(),
            Some(&cloud.user),
            &vhost,
        )
        .await
        .expect(200);
    let r = cloud
        .send(
            "GET",
            "/_koala/images",
            Vec::new(),
            Some(&cloud.user),
            &vhost,
        )
        .await;
    r.expect(200);
    assert_eq!(&r.body[..], b"x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_are_read_for_an_account_with_its_rights() {
    let cloud = Cloud::start();
    cloud
        .put("/alices", Vec::new(), &cloud.user)
        .await
        .expect(200);
    cloud
        .put("/alices/m.xml", b"<manifest/>".to_vec(), &cloud.user)
        .await
        .expect(200);
    let alice = &cloud.user.account_id;
    let admin = &cloud.admin.account_id;
    let clc = cloud.clc.clone();
    let objects = |account: &str, key: &str, limit: &str| {
        format!("/_koala/objects?account={account}&bucket=alices&key={key}&limit={limit}")
    };
    // The cloud's component reads it as Alice, who owns it.
    let r = cloud
        .send(
            "GET",
            &objects(alice, "m.xml", "4096"),
            Vec::new(),
            Some(&clc),
            &[],
        )
        .await;
    r.expect(200);
    assert_eq!(&r.body[..], b"<manifest/>");
    let r = cloud
        .send(
            "HEAD",
            &objects(alice, "m.xml", ""),
            Vec::new(),
            Some(&clc),
            &[],
        )
        .await;
    r.expect(200);
    assert_eq!(r.headers["content-length"], "11");
    // As another account it is refused, as is a missing key and a body over the limit.
    cloud
        .send(
            "GET",
            &objects(admin, "m.xml", "4096"),
            Vec::new(),
            Some(&clc),
            &[],
        )
        .await
        .expect_err(403, "AccessDenied");
    cloud
        .send(
            "GET",
            &objects(alice, "none.xml", "4096"),
            Vec::new(),
            Some(&clc),
            &[],
        )
        .await
        .expect_err(404, "NoSuchKey");
    cloud
        .send(
            "GET",
            &objects(alice, "m.xml", "4"),
            Vec::new(),
            Some(&clc),
            &[],
        )
        .await
        .expect_err(400, "EntityTooLarge");
    cloud
        .send(
            "GET",
            &objects(alice, "m.xml", "many"),
            Vec::new(),
            Some(&clc),
            &[],
        )
        .await
        .expect_err(400, "InvalidArgument");
    // Only the cloud controller may ask: not a user, not a cloud administrator, not a node.
    for who in [&cloud.user, &cloud.admin, &cloud.node] {
        cloud
            .send(
                "GET",
                &objects(alice, "m.xml", "4096"),
                Vec::new(),
                Some(who),
                &[],
            )
            .await
            .expect_err(403, "AccessDenied");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cloud_controller_learns_which_buckets_an_account_owns() {
    let cloud = Cloud::start();
    let alice = cloud.user.account_id.clone();
    let path = format!("/_koala/accounts/{alice}/buckets");
    let clc = Some(&cloud.clc);
    let r = cloud.send("GET", &path, Vec::new(), clc, &[]).await;
    r.expect(200);
    assert!(r.body.is_empty(), "no bucket yet");
    for bucket in ["/zeta", "/alpha"] {
        cloud.put(bucket, Vec::new(), &cloud.user).await.expect(200);
    }
    cloud
        .put("/admins", Vec::new(), &cloud.admin)
        .await
        .expect(200);
    let r = cloud.send("GET", &path, Vec::new(), clc, &[]).await;
    r.expect(200);
    assert_eq!(&r.body[..], b"alpha\nzeta\n", "hers only, in name order");
    cloud
        .send("DELETE", &path, Vec::new(), clc, &[])
        .await
        .expect_err(405, "MethodNotAllowed");
    // Only the cloud controller may ask: not the account itself, an administrator or a node.
    for who in [
        Some(&cloud.user),
        Some(&cloud.admin),
        Some(&cloud.node),
        None,
    ] {
        cloud
            .send("GET", &path, Vec::new(), who, &[])
            .await
            .expect_err(403, "AccessDenied");
    }
}

/// Unbundle throughput for a 256 MiB image: `cargo test --release -p walrus --test
/// image_feed -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn unbundle_throughput_256_mib() {
    let cloud = Cloud::start();
    let len = 256 << 20;
    let data = image(len, 5);
    let want = sha256_hex(&data);
    let cert = cloud.cloud_cert.clone();
    let (manifest, parts) = make_bundle(&data, "big.img", 10 << 20, &cloud.user, &cert);
    drop(data);

    // The pipeline alone, from memory into nothing: the ceiling for the feed.
    let ca_key = {
        let (identity, _) =
            Identity::open_with_ca(&cloud.dir.join("identity2"), &cloud.dir.join("keys")).unwrap();
        manifest
            .unwrap_cloud_key(identity.cloud_ca().unwrap().private_key())
            .unwrap()
    };
    let t = Instant::now();
    let mut un = bundler::Unbundler::new(&manifest, &ca_key, std::io::sink()).unwrap();
    for (i, (_, p)) in parts.iter().enumerate() {
        un.part(i, p).unwrap();
    }
    un.finish().unwrap();
    let secs = t.elapsed().as_secs_f64();
    println!(
        "bundler pipeline alone (memory to null sink): {:.2} s, {:.0} MB/s",
        secs,
        len as f64 / 1e6 / secs
    );

    cloud
        .put("/bench", Vec::new(), &cloud.user)
        .await
        .expect(200);
    for (part_name, data) in parts {
        cloud
            .put(&format!("/bench/dir/{part_name}"), data, &cloud.user)
            .await
            .expect(200);
    }
    let location = "bench/dir/big.img.manifest.xml";
    cloud
        .put(
            &format!("/{location}"),
            manifest.render().into_bytes(),
            &cloud.user,
        )
        .await
        .expect(200);
    let (bucket, key) = location.split_once('/').unwrap();
    let t = Instant::now();
    let image = cloud.walrus.unbundled_image(bucket, key).await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(image.sha256, want);
    println!(
        "unbundle (read parts, SHA-1, AES, gunzip, tar, SHA-256, write, fsync): {:.2} s, {:.0} MB/s",
        secs,
        len as f64 / 1e6 / secs
    );
    let t = Instant::now();
    let r = cloud.by_hash("GET", &want).await;
    r.expect(200);
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(r.body.len(), len);
    println!(
        "serve by hash: {:.2} s, {:.0} MB/s",
        secs,
        len as f64 / 1e6 / secs
    );
}

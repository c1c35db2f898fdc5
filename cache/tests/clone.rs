//! Instance disks on a file system without reflinks (the ext4 data disk of these machines):
//! qcow2 overlays on the raw cached image, and sparse ephemeral disks. qemu-img is required
//! (scripts/setup installs qemu-utils).
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use cache::{create_ephemeral, CacheError, CloneKind, ImageCache, Sha256Digest};
use common::{image, limits, MemoryFetcher};

fn qemu_img_info(path: &Path) -> serde_json::Value {
    let out = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(path)
        .output()
        .expect("qemu-img is required: run scripts/setup (Debian package qemu-utils)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test]
async fn without_reflinks_a_clone_is_a_qcow2_overlay_on_the_raw_image_by_absolute_path() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ImageCache::open(dir.path().join("cache"), limits(1 << 30))
        .await
        .unwrap();
    let bytes = image(1, 1 << 20);
    let digest = Sha256Digest::of(&bytes);
    let lease = cache
        .get_or_fetch(digest, 0, MemoryFetcher::new(bytes))
        .await
        .unwrap();
    let instance = dir.path().join("instances/i-12345678");
    fs::create_dir_all(&instance).unwrap();
    let disk = instance.join("disk");

    let kind = lease.clone_for_instance(&disk).await.unwrap();
    assert_eq!(
        kind,
        CloneKind::Qcow2Overlay,
        "{} should be ext4, without reflinks",
        dir.path().display()
    );
    assert_eq!(kind.disk_format(), "qcow2");
    let info = qemu_img_info(&disk);
    assert_eq!(info["format"], "qcow2");
    assert_eq!(info["backing-filename"], lease.path().to_str().unwrap());
    assert!(lease.path().is_absolute());
    assert_eq!(info["backing-filename-format"], "raw");
    assert_eq!(info["virtual-size"], 1 << 20);
    assert_eq!(
        fs::metadata(&disk).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        fs::metadata(&disk).unwrap().len() < 1 << 20,
        "an overlay holds only its own writes"
    );

    // The guest sees the image through it, and its writes stay in the overlay.
    let same = Command::new("qemu-img")
        .args(["compare", "-q", "-f", "qcow2", "-F", "raw"])
        .arg(&disk)
        .arg(lease.path())
        .status()
        .unwrap();
    assert!(same.success(), "the overlay must read as the image");
    let write = Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", "write -P 0xab 0 64k"])
        .arg(&disk)
        .output()
        .unwrap();
    assert!(
        write.status.success(),
        "{}",
        String::from_utf8_lossy(&write.stderr)
    );
    let digest_now = Sha256Digest::of(&fs::read(lease.path()).unwrap());
    assert_eq!(digest_now, digest, "the cached image must not change");
}

#[tokio::test]
async fn a_clone_never_overwrites_an_existing_disk() {
    let dir = tempfile::tempdir().unwrap();
    let cache = ImageCache::open(dir.path().join("cache"), limits(1 << 30))
        .await
        .unwrap();
    let bytes = image(2, 64 * 1024);
    let lease = cache
        .get_or_fetch(Sha256Digest::of(&bytes), 0, MemoryFetcher::new(bytes))
        .await
        .unwrap();
    let disk = dir.path().join("disk");
    fs::write(&disk, b"an instance's data").unwrap();
    let err = lease.clone_for_instance(&disk).await.unwrap_err();
    assert!(
        matches!(&err, CacheError::DestinationExists(p) if p == &disk),
        "{err:?}"
    );
    assert_eq!(fs::read(&disk).unwrap(), b"an instance's data");
}

#[test]
fn an_ephemeral_disk_is_sparse_and_private() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("ephemeral0");
    let size = 20 << 30; // 20 GiB, at no cost
    create_ephemeral(&disk, size).unwrap();
    let meta = fs::metadata(&disk).unwrap();
    assert_eq!(meta.len(), size);
    assert_eq!(meta.blocks(), 0, "no block may be written");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let info = qemu_img_info(&disk);
    assert_eq!(info["format"], "raw");
    assert!(matches!(
        create_ephemeral(&disk, 1),
        Err(CacheError::DestinationExists(_))
    ));
    assert_eq!(fs::metadata(&disk).unwrap().len(), size);
}

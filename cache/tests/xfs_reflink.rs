//! The reflink path, on a loop-mounted XFS made for the test (`mkfs.xfs -m reflink=1`). Needs
//! root, xfsprogs and a loop device, as CI has; it fails with the reason when one is missing,
//! unless KOALA_SKIP_XFS=1 says this machine cannot.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use cache::{CloneKind, ImageCache, Sha256Digest};
use common::{image, limits, MemoryFetcher};

/// A loop-mounted XFS with reflinks, unmounted when dropped.
struct XfsMount {
    mountpoint: PathBuf,
    _dir: tempfile::TempDir,
}

impl XfsMount {
    /// Mounts a fresh XFS, or says why it cannot; `None` when KOALA_SKIP_XFS=1.
    fn new() -> Option<Self> {
        if std::env::var("KOALA_SKIP_XFS").as_deref() == Ok("1") {
            eprintln!("KOALA_SKIP_XFS=1: skipping the reflink test on XFS");
            return None;
        }
        let uid = fs::metadata("/proc/self").unwrap().uid();
        assert_eq!(
            uid, 0,
            "the XFS reflink test must run as root to loop-mount (or set KOALA_SKIP_XFS=1)"
        );
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("xfs.img");
        fs::File::create(&img).unwrap().set_len(512 << 20).unwrap();
        run(
            Command::new("mkfs.xfs")
                .args(["-q", "-m", "reflink=1"])
                .arg(&img),
            "mkfs.xfs (xfsprogs)",
        );
        let mountpoint = dir.path().join("mnt");
        fs::create_dir(&mountpoint).unwrap();
        run(
            Command::new("mount")
                .args(["-o", "loop"])
                .arg(&img)
                .arg(&mountpoint),
            "mount -o loop",
        );
        Some(Self {
            mountpoint,
            _dir: dir,
        })
    }
}

impl Drop for XfsMount {
    fn drop(&mut self) {
        let status = Command::new("umount").arg(&self.mountpoint).status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("could not unmount {}", self.mountpoint.display());
        }
    }
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e} (or set KOALA_SKIP_XFS=1)"));
    assert!(
        out.status.success(),
        "{what} failed: {} (or set KOALA_SKIP_XFS=1)",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether every extent of `path` is shared with another file, per `filefrag -v`.
fn all_extents_shared(path: &Path) -> bool {
    let out = Command::new("filefrag")
        .arg("-v")
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let extents: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    !extents.is_empty() && extents.iter().all(|l| l.contains("shared"))
}

#[tokio::test]
async fn on_xfs_a_clone_is_a_reflink_sharing_the_image_extents() {
    let Some(xfs) = XfsMount::new() else { return };
    let cache = ImageCache::open(xfs.mountpoint.join("cache"), limits(256 << 20))
        .await
        .unwrap();
    let bytes = image(7, 16 << 20);
    let digest = Sha256Digest::of(&bytes);
    let lease = cache
        .get_or_fetch(
            digest,
            bytes.len() as u64,
            MemoryFetcher::new(bytes.clone()),
        )
        .await
        .unwrap();
    let instance = xfs.mountpoint.join("instances/i-0000000a");
    fs::create_dir_all(&instance).unwrap();
    let disk = instance.join("disk");

    let kind = lease.clone_for_instance(&disk).await.unwrap();
    assert_eq!(kind, CloneKind::Reflink);
    assert_eq!(kind.disk_format(), "raw");
    assert_eq!(
        fs::metadata(&disk).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(fs::read(&disk).unwrap(), bytes);
    assert!(
        all_extents_shared(&disk),
        "the clone must share the image's extents"
    );
    assert!(all_extents_shared(&lease.path()));

    // Copy on write: the instance writes its disk, the image stays as it was.
    fs::write(&disk, b"the guest wrote this").unwrap();
    assert_eq!(Sha256Digest::of(&fs::read(lease.path()).unwrap()), digest);

    // A disk on another file system cannot share extents: a qcow2 overlay then.
    let other = tempfile::tempdir().unwrap();
    let kind = lease
        .clone_for_instance(other.path().join("disk"))
        .await
        .unwrap();
    assert_eq!(kind, CloneKind::Qcow2Overlay);
    drop(lease);
    drop(cache);
}

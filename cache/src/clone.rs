//! Instance disks made from cached images without copying them: Eucalyptus copied the whole
//! image for every launch, so start time grew with image size. Here a clone costs the same
//! for 64 MiB and for 2 GiB.

use std::fs::File;
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::CacheError;

/// The program that makes qcow2 overlays (Debian package `qemu-utils`).
const QEMU_IMG: &str = "qemu-img";

/// How an instance disk was made, which tells the domain XML its format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloneKind {
    /// A reflink: a raw file sharing the image's extents, copied on write by the file system
    /// (XFS, btrfs). Independent of the image once made.
    Reflink,
    /// A qcow2 overlay whose backing file is the image, by absolute path, with the backing
    /// format pinned to raw: the image must stay (the instance's lease keeps it).
    Qcow2Overlay,
}

impl CloneKind {
    /// The disk format to give the hypervisor (libvirt's `<driver type=...>`).
    pub fn disk_format(self) -> &'static str {
        match self {
            CloneKind::Reflink => "raw",
            CloneKind::Qcow2Overlay => "qcow2",
        }
    }
}

/// Makes `dest` a copy-on-write disk of `base` (absolute): a reflink if the file system can,
/// else a qcow2 overlay. `dest` must not exist; it is created private to the node (0600).
pub(crate) fn clone_image(base: &Path, dest: &Path) -> Result<CloneKind, CacheError> {
    let source = File::open(base).map_err(CacheError::io("open", base))?;
    let disk = create_new_private(dest)?;
    // `reflink_file` is FICLONE and nothing else: unlike `reflink_or_copy` it never falls
    // back to a full copy, which is the cost this module exists to avoid.
    match reflink_copy::reflink_file(&source, &disk) {
        Ok(()) => {
            disk.sync_all()
                .map_err(CacheError::io("flush to disk", dest))?;
            return Ok(CloneKind::Reflink);
        }
        Err(e) => {
            tracing::debug!(dest = %dest.display(), error = %e, "no reflink here, making a qcow2 overlay");
        }
    }
    drop(disk);
    // qemu-img rewrites the empty file made above, which keeps its 0600 mode.
    create_overlay(base.as_os_str(), None, dest)?;
    Ok(CloneKind::Qcow2Overlay)
}

/// Runs `qemu-img create -f qcow2 -F raw -b BASE DEST` (with `-u DEST SIZE` when the size is
/// given, for a base qemu-img should not open: an NBD export served by this process). The
/// backing format is given so that qemu never probes it: a raw image whose first bytes looked
/// like a qcow2 header would otherwise let a guest make the host open files of its choosing.
/// `dest` is the empty private file the caller made; it is removed if this fails.
fn create_overlay(
    base: &std::ffi::OsStr,
    size: Option<u64>,
    dest: &Path,
) -> Result<(), CacheError> {
    run_qemu_img_create(base, size, dest).inspect_err(|_| {
        if let Err(e) = std::fs::remove_file(dest) {
            tracing::warn!(path = %dest.display(), error = %e, "could not remove a failed overlay");
        }
    })
}

/// The qemu-img run of `create_overlay`, and the flush of what it wrote.
fn run_qemu_img_create(
    base: &std::ffi::OsStr,
    size: Option<u64>,
    dest: &Path,
) -> Result<(), CacheError> {
    let output = Command::new(QEMU_IMG)
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(base)
        .args(size.map(|_| "-u"))
        .arg(dest)
        .args(size.map(|s| s.to_string()))
        .stdin(Stdio::null())
        .output()
        .map_err(CacheError::io("run qemu-img to create", dest))?;
    if !output.status.success() {
        return Err(CacheError::QemuImg {
            dest: dest.to_owned(),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    File::open(dest)
        .and_then(|f| f.sync_all())
        .map_err(CacheError::io("flush to disk", dest))
}

/// Makes `dest` a qcow2 overlay of `size` bytes on the NBD export of a lazily filled image
/// (`backing_uri`, `nbd+unix:///NAME?socket=PATH`): QEMU reads the base through the export,
/// which fetches what is not here yet. `dest` must not exist; it is created private (0600).
pub(crate) fn overlay_on_export(
    backing_uri: &str,
    size: u64,
    dest: &Path,
) -> Result<(), CacheError> {
    drop(create_new_private(dest)?);
    create_overlay(backing_uri.as_ref(), Some(size), dest)
}

/// Creates an ephemeral (or swap) disk of `size_bytes` as a sparse raw file: it takes no
/// room until the guest writes, and costs the same at any size, where zero-filling would
/// cost a full write. `path` must not exist.
pub fn create_ephemeral(path: impl AsRef<Path>, size_bytes: u64) -> Result<(), CacheError> {
    let path = path.as_ref();
    let file = create_new_private(path)?;
    file.set_len(size_bytes)
        .map_err(CacheError::io("set the size of", path))
}

/// Creates an empty file that must not exist yet, readable by the node only: instance disks
/// hold the tenants' data.
fn create_new_private(path: &Path) -> Result<File, CacheError> {
    File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            ErrorKind::AlreadyExists => CacheError::DestinationExists(path.to_owned()),
            _ => CacheError::io("create", path)(e),
        })
}

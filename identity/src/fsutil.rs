//! Durable file writes for the secrets and certificates Koala hands out: the cloud keys, the
//! credential folders and the credential zips all need the same guarantee.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Writes `contents` under `path` with permission bits `mode` so that nothing half-written is
/// ever visible there: a temp name in the same folder, fsync, rename, fsync the folder. The
/// temp file is removed on error.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = TempGuard(path.with_extension("tmp"));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp.0)?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&tmp.0, path)?;
    std::mem::forget(tmp);
    std::fs::File::open(dir).and_then(|d| d.sync_all())
}

/// Removes a temp file unless forgotten after its rename.
struct TempGuard(PathBuf);

impl Drop for TempGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

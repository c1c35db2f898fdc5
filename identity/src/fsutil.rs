//! Durable file writes for the secrets and certificates Koala hands out: the cloud keys, the
//! credential folders and the credential zips all need the same guarantee.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Writes `contents` under `path` with permission bits `mode` so that nothing half-written is
/// ever visible there: a temp name in the same folder, fsync, rename, fsync the folder. The
/// temp file is removed on error.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    // A bare file name has an empty parent: the current folder.
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    // The whole name plus a suffix no other file has: `key.tmp` could be someone's file.
    let mut tmp_name = path.file_name().unwrap_or_default().to_owned();
    tmp_name.push(format!(
        ".{}.{:08x}.tmp",
        std::process::id(),
        rand::random::<u32>()
    ));
    let tmp = TempGuard(dir.join(tmp_name));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_names_land_in_the_current_folder_and_leave_lookalikes_alone() {
        let dir = tempfile::tempdir().unwrap();
        let before = std::env::current_dir().unwrap();
        std::env::set_current_dir(dir.path()).unwrap();
        std::fs::write("key.tmp", b"someone else's").unwrap();
        let written = write_atomic(Path::new("key.pem"), b"secret", 0o600);
        std::env::set_current_dir(before).unwrap();
        written.unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("key.pem")).unwrap(),
            b"secret"
        );
        assert_eq!(
            std::fs::read(dir.path().join("key.tmp")).unwrap(),
            b"someone else's"
        );
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 2, "no temp file is left behind");
    }
}

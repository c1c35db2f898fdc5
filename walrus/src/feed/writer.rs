//! The unbundler's sink: a new file in `images/tmp` that hashes SHA-256 as the image is
//! written, renamed to its content address only after the unbundler's final checks.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::FeedImage;

/// An image being written; removed on drop unless [`ImageWriter::commit`] published it.
pub(super) struct ImageWriter {
    file: File,
    path: PathBuf,
    sha: Sha256,
    size: u64,
    published: bool,
}

impl ImageWriter {
    /// Creates a fresh file in `tmp`.
    pub fn create(tmp: &Path) -> io::Result<ImageWriter> {
        let path = tmp.join(format!("{:016x}", rand::random::<u64>()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok(ImageWriter {
            file,
            path,
            sha: Sha256::new(),
            size: 0,
            published: false,
        })
    }

    /// Syncs the file and renames it to `images/<sha256>`, then syncs the directory. An
    /// image already there under that name has the same bytes: the new copy is dropped.
    pub fn commit(mut self, images: &Path) -> io::Result<FeedImage> {
        self.file.sync_all()?;
        let sha256 = hex::encode(std::mem::take(&mut self.sha).finalize());
        let dest = images.join(&sha256);
        let present = std::fs::metadata(&dest).is_ok_and(|m| m.len() == self.size);
        if !present {
            std::fs::rename(&self.path, &dest)?;
            self.published = true;
            File::open(images)?.sync_all()?;
        }
        Ok(FeedImage {
            sha256,
            size: self.size,
        })
    }
}

impl Write for ImageWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.sha.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for ImageWriter {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

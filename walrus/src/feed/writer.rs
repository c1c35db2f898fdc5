//! The unbundler's sink: a new file in `images/tmp` that hashes SHA-256 as the image is
//! written, whole and per [`CHUNK_SIZE`] chunk, renamed to its content address only after
//! the unbundler's final checks, its chunk list beside it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::FeedImage;

/// The size of the chunks an image's chunk list hashes one by one: a node fetching a range
/// checks each chunk it gets before use, with no need for the rest of the image.
pub const CHUNK_SIZE: u64 = 1 << 20;

/// Per-chunk SHA-256 of a byte stream, fed in pieces of any size.
#[derive(Default)]
pub(super) struct ChunkHasher {
    current: Sha256,
    filled: u64,
    digests: Vec<u8>,
}

impl ChunkHasher {
    /// Hashes the next bytes.
    pub fn update(&mut self, mut buf: &[u8]) {
        while !buf.is_empty() {
            let room = (CHUNK_SIZE - self.filled) as usize;
            let (now, rest) = buf.split_at(room.min(buf.len()));
            self.current.update(now);
            self.filled += now.len() as u64;
            if self.filled == CHUNK_SIZE {
                self.digests
                    .extend_from_slice(&std::mem::take(&mut self.current).finalize());
                self.filled = 0;
            }
            buf = rest;
        }
    }

    /// The chunk list: 32 bytes of SHA-256 per chunk, the last one maybe short.
    pub fn finish(mut self) -> Vec<u8> {
        if self.filled > 0 {
            self.digests.extend_from_slice(&self.current.finalize());
        }
        self.digests
    }
}

/// An image being written; removed on drop unless [`ImageWriter::commit`] published it.
pub(super) struct ImageWriter {
    file: File,
    path: PathBuf,
    sha: Sha256,
    chunks: ChunkHasher,
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
            chunks: ChunkHasher::default(),
            size: 0,
            published: false,
        })
    }

    /// Syncs the file and renames it to `images/<sha256>`, then syncs the directory; its
    /// chunk list goes to `chunks/<sha256>` first. An image already there under that name
    /// has the same bytes: the new copy is dropped.
    pub fn commit(mut self, images: &Path, chunks: &Path) -> io::Result<FeedImage> {
        self.file.sync_all()?;
        let sha256 = hex::encode(std::mem::take(&mut self.sha).finalize());
        let list = std::mem::take(&mut self.chunks).finish();
        write_chunk_list(chunks, &sha256, &list)?;
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
        self.chunks.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Writes image `sha256`'s chunk list as `chunks/<sha256>`, synced (a new file renamed into
/// place: a crash leaves the old list or none, which is made again from the image).
pub(super) fn write_chunk_list(chunks: &Path, sha256: &str, list: &[u8]) -> io::Result<()> {
    let tmp = chunks.join(format!(".{sha256}.{:016x}", rand::random::<u64>()));
    let mut file = File::create(&tmp)?;
    file.write_all(list)?;
    file.sync_all()?;
    std::fs::rename(&tmp, chunks.join(sha256))?;
    File::open(chunks)?.sync_all()
}

impl Drop for ImageWriter {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_lists_do_not_depend_on_how_the_bytes_arrive() {
        let data: Vec<u8> = (0..(2 * CHUNK_SIZE as usize + 12345))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let want: Vec<u8> = data
            .chunks(CHUNK_SIZE as usize)
            .flat_map(|c| Sha256::digest(c).to_vec())
            .collect();
        for piece in [1usize, 4096, 999_983, CHUNK_SIZE as usize, data.len()] {
            let mut h = ChunkHasher::default();
            for p in data.chunks(piece) {
                h.update(p);
            }
            assert_eq!(h.finish(), want, "pieces of {piece}");
        }
        assert!(ChunkHasher::default().finish().is_empty());
    }
}

//! The streaming bundle pipeline: image → one-member tar → SHA-1 tap → parallel gzip →
//! AES-128-CBC (PKCS#7) → parts of a fixed size, each with its SHA-1. Memory stays bounded
//! (a few chunks per core) whatever the image size.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::{mpsc, Arc, Mutex};

use aes::Aes128;
use cbc::cipher::consts::U16;
use cbc::cipher::inout::InOutBuf;
use cbc::cipher::{BlockEncryptMut, KeyIvInit};
use sha1::{Digest, Sha1};

use crate::error::{Error, Result};
use crate::gzip::{self, ChunkDeflater, Deflated};
use crate::keys::BundleKey;
use crate::manifest::PartInfo;
use crate::tar;

/// The part size euca2ools uses: 10 MiB.
pub const DEFAULT_PART_SIZE: u64 = 10 * 1024 * 1024;

/// Tunables of the bundle pipeline; the defaults are what the commands use.
#[derive(Debug, Clone)]
pub struct BundleOptions {
    /// Size of each part but the last (`--part-size`).
    pub part_size: u64,
    /// Deflate level 0–9. Level 1 keeps bundling several times faster than euca2ools' gzip -6
    /// for a few percent more bytes; any level gives standard gzip.
    pub level: u32,
    /// Compression threads; defaults to the number of cores.
    pub threads: usize,
    /// Bytes of tar stream deflated as one independent chunk.
    pub chunk_size: usize,
}

impl Default for BundleOptions {
    fn default() -> Self {
        BundleOptions {
            part_size: DEFAULT_PART_SIZE,
            level: 1,
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            chunk_size: 1 << 20,
        }
    }
}

/// What the pipeline measured, for the manifest's `<image>` element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleOutcome {
    /// SHA-1 of the uncompressed tar stream, lowercase hex (`image/digest`).
    pub digest: String,
    /// Bytes of image read (`image/size`).
    pub size: u64,
    /// Bytes of ciphertext over all parts (`image/bundled_size`).
    pub bundled_size: u64,
    /// Every part's name and SHA-1, in order (`image/parts`).
    pub parts: Vec<PartInfo>,
}

/// Where the parts go: files in a directory for the command, objects for a server, memory in
/// tests. Parts arrive in order, each as begin, any number of writes, end.
pub trait PartSink {
    /// Starts part `index`, named `name` (`PREFIX.part.NN`).
    fn begin_part(&mut self, index: usize, name: &str) -> Result<()>;
    /// Appends bytes to the current part.
    fn write(&mut self, data: &[u8]) -> Result<()>;
    /// Ends the current part.
    fn end_part(&mut self) -> Result<()>;
}

/// Parts kept in memory: for tests and for small bundles made by a server.
#[derive(Debug, Default)]
pub struct MemoryParts {
    /// `(name, bytes)` of each part, in order.
    pub parts: Vec<(String, Vec<u8>)>,
}

impl PartSink for MemoryParts {
    fn begin_part(&mut self, _index: usize, name: &str) -> Result<()> {
        self.parts.push((name.to_string(), Vec::new()));
        Ok(())
    }
    fn write(&mut self, data: &[u8]) -> Result<()> {
        if let Some((_, p)) = self.parts.last_mut() {
            p.extend_from_slice(data);
        }
        Ok(())
    }
    fn end_part(&mut self) -> Result<()> {
        Ok(())
    }
}

/// The name of part `index`: `PREFIX.part.NN`, at least two digits, as euca2ools names them.
pub fn part_name(prefix: &str, index: usize) -> String {
    format!("{prefix}.part.{index:02}")
}

/// AES-128-CBC with PKCS#7 on a stream, then cut into parts with their SHA-1s.
struct EncryptSplit<'a, S: PartSink> {
    enc: cbc::Encryptor<Aes128>,
    partial: Vec<u8>,
    sink: &'a mut S,
    prefix: &'a str,
    part_size: u64,
    open: bool,
    cur_len: u64,
    hasher: Sha1,
    total: u64,
    parts: Vec<PartInfo>,
}

impl<'a, S: PartSink> EncryptSplit<'a, S> {
    fn new(key: &BundleKey, sink: &'a mut S, prefix: &'a str, part_size: u64) -> Self {
        EncryptSplit {
            enc: cbc::Encryptor::<Aes128>::new(&key.key.into(), &key.iv.into()),
            partial: Vec::with_capacity(1 << 20),
            sink,
            prefix,
            part_size,
            open: false,
            cur_len: 0,
            hasher: Sha1::new(),
            total: 0,
            parts: Vec::new(),
        }
    }

    /// Encrypts and emits every whole block of `data` (plus what was left over before).
    fn write(&mut self, data: &[u8]) -> Result<()> {
        self.partial.extend_from_slice(data);
        let whole = self.partial.len() / 16 * 16;
        if whole == 0 {
            return Ok(());
        }
        let mut buf = std::mem::take(&mut self.partial);
        let (blocks, _) = InOutBuf::from(&mut buf[..whole]).into_chunks::<U16>();
        self.enc.encrypt_blocks_inout_mut(blocks);
        self.emit(&buf[..whole])?;
        buf.drain(..whole);
        self.partial = buf;
        Ok(())
    }

    fn emit(&mut self, mut data: &[u8]) -> Result<()> {
        while !data.is_empty() {
            if !self.open {
                self.begin()?;
            }
            let take = (self.part_size - self.cur_len).min(data.len() as u64) as usize;
            self.hasher.update(&data[..take]);
            self.sink.write(&data[..take])?;
            self.cur_len += take as u64;
            self.total += take as u64;
            data = &data[take..];
            if self.cur_len == self.part_size {
                self.end()?;
            }
        }
        Ok(())
    }

    fn begin(&mut self) -> Result<()> {
        let name = part_name(self.prefix, self.parts.len());
        self.sink.begin_part(self.parts.len(), &name)?;
        self.parts.push(PartInfo {
            filename: name,
            digest: String::new(),
        });
        self.open = true;
        self.cur_len = 0;
        Ok(())
    }

    fn end(&mut self) -> Result<()> {
        self.sink.end_part()?;
        let digest = hex::encode(std::mem::take(&mut self.hasher).finalize());
        if let Some(p) = self.parts.last_mut() {
            p.digest = digest;
        }
        self.open = false;
        Ok(())
    }

    /// Pads (PKCS#7), emits the last block and closes the last part — an empty one when the
    /// ciphertext filled the previous part exactly, as euca2ools does.
    fn finish(mut self) -> Result<(u64, Vec<PartInfo>)> {
        let pad = 16 - self.partial.len() % 16;
        self.partial.resize(self.partial.len() + pad, pad as u8);
        let tail = std::mem::take(&mut self.partial);
        self.write(&tail)?;
        if !self.open {
            self.begin()?;
        }
        self.end()?;
        Ok((self.total, self.parts))
    }
}

/// Streams an image of `size` bytes from `input` into an encrypted, split bundle.
///
/// `prefix` names the tar member and the parts. `progress` is called with the number of
/// image bytes read so far. Compression runs on `options.threads` threads; the calling thread
/// reads, hashes, encrypts and writes the parts in order.
pub fn bundle<R: Read, S: PartSink>(
    mut input: R,
    size: u64,
    prefix: &str,
    key: &BundleKey,
    sink: &mut S,
    options: &BundleOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<BundleOutcome> {
    if options.part_size == 0 {
        return Err(Error::InvalidOption(
            "the part size must not be zero".into(),
        ));
    }
    let chunk_size = options.chunk_size.max(4096);
    let threads = options.threads.max(1);
    let header = tar::header(prefix, size);
    let tar_len = tar::stream_len(header.len() as u64, size);

    let mut tar_sha = Sha1::new();
    let mut crc = crc32fast::Hasher::new();
    let mut out = EncryptSplit::new(key, sink, prefix, options.part_size);
    out.write(&gzip::HEADER)?;

    std::thread::scope(|scope| -> Result<BundleOutcome> {
        let (job_tx, job_rx) = mpsc::channel::<(u64, Vec<u8>, bool)>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, done_rx) = mpsc::channel::<(u64, std::io::Result<Deflated>)>();
        for _ in 0..threads {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            let level = options.level;
            scope.spawn(move || {
                let mut deflater = ChunkDeflater::new(level);
                loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    let Ok((seq, data, last)) = job else { return };
                    if done_tx.send((seq, deflater.deflate(&data, last))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);

        let max_in_flight = threads * 2 + 1;
        let mut ready: BTreeMap<u64, Deflated> = BTreeMap::new();
        let mut next_out: u64 = 0;
        let mut sent: u64 = 0;
        let mut produced: u64 = 0;
        let mut image_read: u64 = 0;
        let mut header_left: &[u8] = &header;

        // Takes finished chunks in order and pushes them through AES and the splitter.
        let drain = |block: bool,
                     ready: &mut BTreeMap<u64, Deflated>,
                     next_out: &mut u64,
                     out: &mut EncryptSplit<'_, S>,
                     crc: &mut crc32fast::Hasher|
         -> Result<()> {
            if block {
                let (seq, res) = done_rx.recv().map_err(|_| {
                    Error::io(
                        "compressing",
                        std::io::Error::other("a compression thread stopped"),
                    )
                })?;
                ready.insert(seq, res.map_err(|e| Error::io("compressing", e))?);
            }
            while let Ok((seq, res)) = done_rx.try_recv() {
                ready.insert(seq, res.map_err(|e| Error::io("compressing", e))?);
            }
            while let Some(d) = ready.remove(next_out) {
                crc.combine(&d.crc);
                out.write(&d.bytes)?;
                *next_out += 1;
            }
            Ok(())
        };

        while produced < tar_len {
            let len = (tar_len - produced).min(chunk_size as u64) as usize;
            let mut buf = vec![0u8; len];
            let mut filled = 0;
            let h = header_left.len().min(len);
            buf[..h].copy_from_slice(&header_left[..h]);
            header_left = &header_left[h..];
            filled += h;
            let want = ((size - image_read) as usize).min(len - filled);
            let mut got = 0;
            while got < want {
                let n = input
                    .read(&mut buf[filled + got..filled + want])
                    .map_err(|e| Error::io("reading the image", e))?;
                if n == 0 {
                    return Err(Error::InputSize {
                        expected: size,
                        actual: image_read + got as u64,
                    });
                }
                got += n;
            }
            image_read += got as u64;
            progress(image_read);
            produced += len as u64;
            tar_sha.update(&buf);
            let last = produced == tar_len;
            job_tx.send((sent, buf, last)).map_err(|_| {
                Error::io(
                    "compressing",
                    std::io::Error::other("the compression threads stopped"),
                )
            })?;
            sent += 1;
            while sent - next_out >= max_in_flight as u64 {
                drain(true, &mut ready, &mut next_out, &mut out, &mut crc)?;
            }
            drain(false, &mut ready, &mut next_out, &mut out, &mut crc)?;
        }
        drop(job_tx);
        while next_out < sent {
            drain(true, &mut ready, &mut next_out, &mut out, &mut crc)?;
        }
        let mut probe = [0u8; 1];
        let extra = input
            .read(&mut probe)
            .map_err(|e| Error::io("reading the image", e))?;
        if extra != 0 {
            return Err(Error::InputSize {
                expected: size,
                actual: size + extra as u64,
            });
        }
        out.write(&gzip::trailer(&crc, tar_len))?;
        let (bundled_size, parts) = out.finish()?;
        Ok(BundleOutcome {
            digest: hex::encode(tar_sha.finalize()),
            size,
            bundled_size,
            parts,
        })
    })
}

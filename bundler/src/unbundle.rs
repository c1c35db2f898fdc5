//! The streaming unbundle pipeline, the reverse of [`crate::bundle()`]: parts in order →
//! per-part SHA-1 → AES-128-CBC decrypt → gunzip → SHA-1 tap → one-member tar → the image.
//! Every check the manifest allows is made as the bytes arrive.

use std::io::{Read, Write};
use std::sync::mpsc;
use std::thread::JoinHandle;

use aes::Aes128;
use cbc::cipher::consts::U16;
use cbc::cipher::inout::InOutBuf;
use cbc::cipher::{BlockDecryptMut, KeyIvInit};
use flate2::write::MultiGzDecoder;
use sha1::{Digest, Sha1};

use crate::error::{Error, Result};
use crate::keys::BundleKey;
use crate::manifest::{Manifest, PartInfo};
use crate::tar::TarReader;

/// Bytes of tar stream handed to the checking thread at a time.
const BATCH: usize = 1 << 20;

/// What the checking thread hands back: the sink and the tar stream's SHA-1, or why the tar
/// stream was refused.
type CheckResult<W> = Result<(W, [u8; 20], u64)>;

/// Between gunzip and the tar checks, which run on their own thread (SHA-1 of the tar stream,
/// the tar reader and the sink's writes), so that unbundling uses two cores.
struct Tap<W: Write + Send + 'static> {
    batch: Vec<u8>,
    tx: Option<mpsc::SyncSender<Vec<u8>>>,
    worker: Option<JoinHandle<CheckResult<W>>>,
    error: Option<Error>,
}

impl<W: Write + Send + 'static> Tap<W> {
    fn new(sink: W, expected_size: u64) -> Result<Self> {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(4);
        let worker = std::thread::Builder::new()
            .name("unbundle-tar".into())
            .spawn(move || -> CheckResult<W> {
                let mut sha = Sha1::new();
                let mut tar = TarReader::new(sink, expected_size);
                for batch in rx {
                    sha.update(&batch);
                    tar.push(&batch)?;
                }
                tar.finish()?;
                let written = tar.written();
                Ok((tar.into_inner(), sha.finalize().into(), written))
            })
            .map_err(|e| Error::io("starting the tar checking thread", e))?;
        Ok(Tap {
            batch: Vec::with_capacity(BATCH),
            tx: Some(tx),
            worker: Some(worker),
            error: None,
        })
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(batch).is_ok());
        if sent {
            return Ok(());
        }
        // The checking thread stopped: it refused the stream. Fetch its reason.
        self.tx = None;
        self.error = Some(match self.join() {
            Err(e) => e,
            Ok(_) => Error::TrailingData,
        });
        Err(std::io::Error::other("the tar stream was refused"))
    }

    /// Ends the stream and collects the checking thread's verdict.
    fn join(&mut self) -> CheckResult<W> {
        self.tx = None;
        match self.worker.take() {
            Some(w) => w.join().unwrap_or_else(|_| {
                Err(Error::io(
                    "checking the tar stream",
                    std::io::Error::other("the checking thread panicked"),
                ))
            }),
            None => Err(self.error.take().unwrap_or(Error::TrailingData)),
        }
    }
}

impl<W: Write + Send + 'static> Drop for Tap<W> {
    fn drop(&mut self) {
        // Wait for the checking thread so the sink is dropped (a temp file removed) before
        // the unbundler's owner goes on.
        self.tx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl<W: Write + Send + 'static> Write for Tap<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.error.is_some() {
            return Err(std::io::Error::other("the tar stream was refused"));
        }
        self.batch.extend_from_slice(buf);
        if self.batch.len() >= BATCH {
            self.send()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// What an unbundle checked, for logs and for the caller's own records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnbundleSummary {
    /// Bytes of image written to the sink (equal to the manifest's `image/size`).
    pub size: u64,
    /// SHA-1 of the tar stream, lowercase hex (equal to the manifest's `image/digest`).
    pub digest: String,
    /// Bytes of ciphertext received (equal to `image/bundled_size`).
    pub bundled_size: u64,
}

/// Unbundles parts as they arrive into any writer: the API Walrus uses on parts it reads out
/// of its own store, and the command uses on files.
///
/// Feed parts in index order, each as [`Unbundler::begin_part`], any number of
/// [`Unbundler::write`], [`Unbundler::end_part`] (or all at once with
/// [`Unbundler::part`] / [`Unbundler::read_part`]), then call [`Unbundler::finish`]. The
/// image bytes reach the sink before the final checks pass: write to a temporary place and
/// publish only when `finish` succeeds. After any error, drop the unbundler.
///
/// It is synchronous; from async code, run it in `spawn_blocking`. It uses one helper thread
/// (the tar checks and the sink's writes), hence `W: Send + 'static`.
pub struct Unbundler<W: Write + Send + 'static> {
    parts: Vec<PartInfo>,
    next: usize,
    open: bool,
    part_sha: Sha1,
    received: u64,
    bundled_size: u64,
    digest: String,
    dec: cbc::Decryptor<Aes128>,
    held: Vec<u8>,
    gz: MultiGzDecoder<Tap<W>>,
    /// A failure downstream of the current part (gunzip, tar, size), reported at the end of
    /// the part unless the part's own digest is wrong: a tampered part is named as such.
    deferred: Option<Error>,
}

/// Ciphertext decrypted per step, to bound memory however large the writes are.
const STEP: usize = 1 << 20;

impl<W: Write + Send + 'static> Unbundler<W> {
    /// An unbundler for `manifest`'s bundle with its unwrapped `key`, writing the image into
    /// `sink`. Verify the signature first ([`Manifest::verify`]) when the signer is known.
    /// Fails only if the helper thread cannot be started.
    pub fn new(manifest: &Manifest, key: &BundleKey, sink: W) -> Result<Self> {
        Ok(Unbundler {
            parts: manifest.parts.clone(),
            next: 0,
            open: false,
            part_sha: Sha1::new(),
            received: 0,
            bundled_size: manifest.bundled_size,
            digest: manifest.digest.to_ascii_lowercase(),
            dec: cbc::Decryptor::<Aes128>::new(&key.key.into(), &key.iv.into()),
            held: Vec::with_capacity(STEP + 32),
            gz: MultiGzDecoder::new(Tap::new(sink, manifest.size)?),
            deferred: None,
        })
    }

    /// Bytes of ciphertext received so far (for a progress bar against `bundled_size`).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Starts part `index`, which must be the next one the manifest lists.
    pub fn begin_part(&mut self, index: usize) -> Result<()> {
        if self.open || index != self.next || index >= self.parts.len() {
            return Err(Error::PartOrder {
                expected: self.next,
                got: index,
            });
        }
        self.open = true;
        self.part_sha = Sha1::new();
        Ok(())
    }

    /// Feeds bytes of the current part. A failure of the stream downstream is reported by
    /// [`Unbundler::end_part`], after the part's digest was checked.
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        if !self.open {
            return Err(Error::PartOrder {
                expected: self.next,
                got: self.next.wrapping_sub(1),
            });
        }
        self.received += data.len() as u64;
        self.part_sha.update(data);
        if self.deferred.is_some() {
            // The stream already failed: only the part's digest is still worth computing.
            return Ok(());
        }
        if self.received > self.bundled_size {
            self.deferred = Some(Error::BundledSize {
                expected: self.bundled_size,
                actual: self.received,
            });
            return Ok(());
        }
        for piece in data.chunks(STEP) {
            if let Err(e) = self.decrypt(piece) {
                self.deferred = Some(e);
                break;
            }
        }
        Ok(())
    }

    /// Ends the current part and checks its SHA-1.
    pub fn end_part(&mut self) -> Result<()> {
        let Some(info) = self.parts.get(self.next).filter(|_| self.open) else {
            return Err(Error::PartOrder {
                expected: self.next,
                got: self.next.wrapping_sub(1),
            });
        };
        let actual = hex::encode(std::mem::take(&mut self.part_sha).finalize());
        if !actual.eq_ignore_ascii_case(&info.digest) {
            return Err(Error::PartDigest {
                index: self.next,
                name: info.filename.clone(),
                expected: info.digest.clone(),
                actual,
            });
        }
        if let Some(e) = self.deferred.take() {
            return Err(e);
        }
        self.open = false;
        self.next += 1;
        Ok(())
    }

    /// Feeds a whole part at once.
    pub fn part(&mut self, index: usize, data: &[u8]) -> Result<()> {
        self.begin_part(index)?;
        self.write(data)?;
        self.end_part()
    }

    /// Feeds a whole part from a reader (a file, an object in a store).
    pub fn read_part<R: Read>(&mut self, index: usize, mut reader: R) -> Result<()> {
        self.begin_part(index)?;
        let name = self.parts[index].filename.clone();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(|e| Error::io(format!("reading part {name}"), e))?;
            if n == 0 {
                break;
            }
            self.write(&buf[..n])?;
        }
        self.end_part()
    }

    /// Decrypts every whole block but the last one seen (which may hold the padding).
    fn decrypt(&mut self, data: &[u8]) -> Result<()> {
        self.held.extend_from_slice(data);
        if self.held.len() <= 16 {
            return Ok(());
        }
        let n = (self.held.len() - 1) / 16 * 16;
        let (blocks, _) = InOutBuf::from(&mut self.held[..n]).into_chunks::<U16>();
        self.dec.decrypt_blocks_inout_mut(blocks);
        let result = self.gz.write_all(&self.held[..n]);
        self.check(result)?;
        self.held.drain(..n);
        Ok(())
    }

    /// Turns a gunzip failure into the tar reader's error when that is what it was.
    fn check(&mut self, result: std::io::Result<()>) -> Result<()> {
        match result {
            Ok(()) => Ok(()),
            Err(e) => Err(self.gz.get_mut().error.take().unwrap_or(Error::Gzip(e))),
        }
    }

    /// Ends the stream and makes the final checks: every part arrived, the sizes, the padding,
    /// the gzip CRC, the tar stream's SHA-1 and the member's size. Returns the sink.
    pub fn finish(mut self) -> Result<(W, UnbundleSummary)> {
        if self.open || self.next < self.parts.len() {
            return Err(Error::MissingPart(self.next));
        }
        if self.received != self.bundled_size {
            return Err(Error::BundledSize {
                expected: self.bundled_size,
                actual: self.received,
            });
        }
        if self.held.len() != 16 {
            return Err(Error::Decrypt);
        }
        let (blocks, _) = InOutBuf::from(&mut self.held[..]).into_chunks::<U16>();
        self.dec.decrypt_blocks_inout_mut(blocks);
        let pad = usize::from(self.held[15]);
        if pad == 0 || pad > 16 || self.held[16 - pad..].iter().any(|&b| usize::from(b) != pad) {
            return Err(Error::Decrypt);
        }
        let tail = self.held[..16 - pad].to_vec();
        let result = self.gz.write_all(&tail);
        self.check(result)?;
        let result = self.gz.try_finish();
        self.check(result)?;
        let result = self.gz.get_mut().send();
        self.check(result)?;
        let (sink, sha, size) = self.gz.get_mut().join()?;
        let digest = hex::encode(sha);
        if digest != self.digest {
            return Err(Error::ImageDigest {
                expected: self.digest.clone(),
                actual: digest,
            });
        }
        let mut sink = sink;
        sink.flush()
            .map_err(|e| Error::io("writing the image", e))?;
        Ok((
            sink,
            UnbundleSummary {
                size,
                digest,
                bundled_size: self.received,
            },
        ))
    }
}

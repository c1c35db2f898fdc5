//! Clone latency of an instance disk against the size of its image: a qcow2 overlay (ext4,
//! the data disk here), a reflink (a loop-mounted XFS with reflinks) and, for comparison, the
//! full copy Eucalyptus made for every launch. Copy-on-write must not grow with image size.
//!
//! `cargo bench -p cache --bench clone` (as root for the XFS part; KOALA_SKIP_XFS=1 skips it).
//! The bases are fully written with non-zero data, so every block is allocated: nothing
//! sparse for a copy to skip.
#![allow(clippy::unwrap_used)] // a benchmark stops at the first failure, with its message

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cache::{CloneKind, FetchError, Fetcher, ImageCache, ImageSink, Lease, Limits, Sha256Digest};
use sha2::{Digest as _, Sha256};

const MIB: u64 = 1 << 20;
const CHUNK: usize = 1 << 20;

/// Streams `len` bytes of deterministic non-zero data, 1 MiB at a time.
#[derive(Clone)]
struct Generated {
    block: Bytes,
    len: u64,
}

impl Generated {
    fn new(len: u64) -> Self {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let block: Vec<u8> = (0..CHUNK)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x as u8) | 1
            })
            .collect();
        Self {
            block: block.into(),
            len,
        }
    }

    /// The `i`th chunk: the block with its index stamped in, so no two chunks are equal.
    fn chunk(&self, i: u64) -> Bytes {
        let mut c = self.block.to_vec();
        c[..8].copy_from_slice(&(i | 1 << 63).to_le_bytes());
        c.truncate(CHUNK.min((self.len - i * CHUNK as u64) as usize));
        c.into()
    }

    fn chunks(&self) -> u64 {
        self.len.div_ceil(CHUNK as u64)
    }

    fn digest(&self) -> Sha256Digest {
        let mut h = Sha256::new();
        for i in 0..self.chunks() {
            h.update(self.chunk(i));
        }
        Sha256Digest::from_bytes(h.finalize().into())
    }
}

impl Fetcher for Generated {
    async fn fetch(&self, _digest: &Sha256Digest, sink: &mut ImageSink) -> Result<(), FetchError> {
        for i in 0..self.chunks() {
            sink.write(self.chunk(i)).await?;
        }
        Ok(())
    }
}

/// A loop-mounted XFS with reflinks, unmounted when dropped.
struct XfsMount {
    mountpoint: PathBuf,
}

impl XfsMount {
    fn new(under: &Path, size: u64) -> Self {
        let img = under.join("xfs.img");
        File::create(&img).unwrap().set_len(size).unwrap();
        run(Command::new("mkfs.xfs")
            .args(["-q", "-m", "reflink=1"])
            .arg(&img));
        let mountpoint = under.join("xfs");
        fs::create_dir(&mountpoint).unwrap();
        run(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&img)
            .arg(&mountpoint));
        Self { mountpoint }
    }
}

impl Drop for XfsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.mountpoint).status();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .expect("cannot run the command (KOALA_SKIP_XFS=1 skips XFS)");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Min / median / max of the samples, in ms.
fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "{:8.1} ms (min {:.1}, max {:.1}, n={})",
        ms(samples[samples.len() / 2]),
        ms(samples[0]),
        ms(samples[samples.len() - 1]),
        samples.len()
    )
}

/// Times `runs` clones of the lease's image into `dir`, checking the kind each time.
async fn time_clones(lease: &Lease, dir: &Path, runs: usize, want: CloneKind) -> String {
    let mut samples = Vec::new();
    for i in 0..runs {
        let dest = dir.join(format!("disk-{i}"));
        let t = Instant::now();
        let kind = lease.clone_for_instance(&dest).await.unwrap();
        samples.push(t.elapsed());
        assert_eq!(kind, want);
        fs::remove_file(&dest).unwrap();
    }
    summary(samples)
}

/// A full copy as a node without copy-on-write does it: read and write every byte, fsync.
fn time_full_copies(base: &Path, dir: &Path, runs: usize) -> String {
    let mut samples = Vec::new();
    let mut buf = vec![0u8; 4 << 20];
    for i in 0..runs {
        let dest = dir.join(format!("copy-{i}"));
        let t = Instant::now();
        let mut from = File::open(base).unwrap();
        let mut to = File::create(&dest).unwrap();
        loop {
            let n = from.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            to.write_all(&buf[..n]).unwrap();
        }
        to.sync_all().unwrap();
        samples.push(t.elapsed());
        fs::remove_file(&dest).unwrap();
    }
    summary(samples)
}

/// Fetches the generated image into the cache and reports the fetch throughput.
async fn cached(cache: &ImageCache, image: &Generated, digest: Sha256Digest) -> (Lease, String) {
    let t = Instant::now();
    let lease = cache
        .get_or_fetch(digest, image.len, image.clone())
        .await
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    (lease, format!("{:.0} MB/s", image.len as f64 / secs / 1e6))
}

async fn bench() {
    let skip_xfs = std::env::var("KOALA_SKIP_XFS").as_deref() == Ok("1");
    let work = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_bytes: 8 << 30,
        min_age: Duration::ZERO,
    };
    let ext4 = ImageCache::open(work.path().join("cache"), limits)
        .await
        .unwrap();
    let xfs = (!skip_xfs).then(|| XfsMount::new(work.path(), 3 << 30));
    let xfs_cache = match &xfs {
        Some(m) => Some(
            ImageCache::open(m.mountpoint.join("cache"), limits)
                .await
                .unwrap(),
        ),
        None => None,
    };
    let disks = work.path().join("disks");
    fs::create_dir(&disks).unwrap();

    println!("clone latency of an instance disk (median of n runs)");
    for size in [64 * MIB, 2048 * MIB] {
        let image = Generated::new(size);
        let label = format!("{} MiB", size / MIB);
        let t = Instant::now();
        let digest = image.digest();
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{label:>9} generate + SHA-256 in memory, one thread: {:.0} MB/s",
            size as f64 / secs / 1e6
        );
        let (lease, fetch) = cached(&ext4, &image, digest).await;
        println!("{label:>9} fetch into the cache (hash, write, fsync, rename): {fetch}");
        let overlay = time_clones(&lease, &disks, 9, CloneKind::Qcow2Overlay).await;
        println!("{label:>9} qcow2 overlay, ext4           {overlay}");
        if let (Some(cache), Some(mount)) = (&xfs_cache, &xfs) {
            let (xlease, _) = cached(cache, &image, digest).await;
            let dir = mount.mountpoint.join("disks");
            fs::create_dir_all(&dir).unwrap();
            let reflink = time_clones(&xlease, &dir, 9, CloneKind::Reflink).await;
            println!("{label:>9} reflink, XFS                  {reflink}");
        }
        let runs = if size > 64 * MIB { 2 } else { 5 };
        let copy = time_full_copies(&lease.path(), &disks, runs);
        println!("{label:>9} full copy + fsync, ext4       {copy}");
    }
    drop(xfs_cache);
    drop(xfs);
}

fn main() {
    // `cargo test --all-targets` runs this file too, without `--bench`: nothing to do then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(bench());
}

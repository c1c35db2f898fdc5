//! A fetcher that serves an image from memory, for the tests: a real implementation of
//! `Fetcher`, with a gate to hold fetches open and a count of the calls.

#![allow(dead_code)] // each test file uses its own part of these helpers

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cache::{FetchError, Fetcher, ImageCache, ImageSink, Limits, Sha256Digest};
use tokio::sync::watch;

/// Serves `bytes` in chunks of `chunk` bytes, after `gate` opens; fails after half the bytes
/// when `fail_midway` is set.
#[derive(Clone)]
pub struct MemoryFetcher {
    pub bytes: Bytes,
    pub chunk: usize,
    pub calls: Arc<AtomicUsize>,
    pub gate: watch::Receiver<bool>,
    pub fail_midway: bool,
}

impl MemoryFetcher {
    /// A fetcher whose gate is open.
    pub fn new(bytes: impl Into<Bytes>) -> Self {
        let (tx, rx) = watch::channel(true);
        drop(tx);
        Self {
            bytes: bytes.into(),
            chunk: 4096,
            calls: Arc::new(AtomicUsize::new(0)),
            gate: rx,
            fail_midway: false,
        }
    }

    /// A fetcher that waits until the returned sender sends `true`.
    pub fn gated(bytes: impl Into<Bytes>) -> (Self, watch::Sender<bool>) {
        let (tx, rx) = watch::channel(false);
        let mut f = Self::new(bytes);
        f.gate = rx;
        (f, tx)
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl Fetcher for MemoryFetcher {
    async fn fetch(&self, _digest: &Sha256Digest, sink: &mut ImageSink) -> Result<(), FetchError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut gate = self.gate.clone();
        // A dropped sender with `true` in it means open.
        let _ = gate.wait_for(|open| *open).await;
        let stop = if self.fail_midway {
            self.bytes.len() / 2
        } else {
            self.bytes.len()
        };
        let mut at = 0;
        while at < stop {
            let end = (at + self.chunk).min(stop);
            sink.write(self.bytes.slice(at..end)).await?;
            at = end;
        }
        if self.fail_midway {
            return Err("the connection to Walrus broke".into());
        }
        Ok(())
    }
}

/// An image of `len` bytes whose content depends on `seed`.
pub fn image(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Limits with no minimum age.
pub fn limits(max_bytes: u64) -> Limits {
    Limits {
        max_bytes,
        min_age: Duration::ZERO,
    }
}

/// Fetches `bytes` into the cache and drops the lease at once.
pub async fn put(cache: &ImageCache, bytes: &[u8]) -> Sha256Digest {
    let digest = Sha256Digest::of(bytes);
    let fetcher = MemoryFetcher::new(bytes.to_vec());
    drop(
        cache
            .get_or_fetch(digest, bytes.len() as u64, fetcher)
            .await
            .unwrap(),
    );
    digest
}

/// The names in a folder, sorted.
pub fn names(dir: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

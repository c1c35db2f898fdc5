//! Helpers shared by the bundler's integration tests.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::OnceLock;

use bundler::{bundle, BundleKey, BundleOptions, Manifest, MemoryParts, PrivateKey, PublicKey};

/// `../shared/vectors/bundles` from the repo root.
pub fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/bundles")
}

/// A user key and a cloud key, generated once per test binary.
pub fn test_keys() -> &'static (PrivateKey, PrivateKey) {
    static KEYS: OnceLock<(PrivateKey, PrivateKey)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let mut rng = rand::thread_rng();
        (
            PrivateKey::new(&mut rng, 2048).unwrap(),
            PrivateKey::new(&mut rng, 2048).unwrap(),
        )
    })
}

pub fn user_key() -> &'static PrivateKey {
    &test_keys().0
}
pub fn cloud_key() -> &'static PrivateKey {
    &test_keys().1
}
pub fn user_pub() -> PublicKey {
    PublicKey::from(user_key())
}
pub fn cloud_pub() -> PublicKey {
    PublicKey::from(cloud_key())
}

/// Deterministic, partly compressible data.
pub fn image(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678 ^ len as u32;
    (0..len)
        .map(|i| {
            if (i / 4096) % 2 == 0 {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            } else {
                b"koala bundles "[i % 14]
            }
        })
        .collect()
}

/// Bundles `data` in memory with the test keys; returns the parsed-back manifest and parts.
pub fn make_bundle(data: &[u8], part_size: u64) -> (Manifest, Vec<(String, Vec<u8>)>, BundleKey) {
    let key = BundleKey::random();
    let opts = BundleOptions {
        part_size,
        chunk_size: 64 * 1024,
        ..BundleOptions::default()
    };
    let mut parts = MemoryParts::default();
    let out = bundle(
        data,
        data.len() as u64,
        "img.raw",
        &key,
        &mut parts,
        &opts,
        &mut |_| {},
    )
    .unwrap();
    let mut m = Manifest::new(
        "x86_64",
        "img.raw",
        "123456789012",
        bundler::ImageType::Machine,
    );
    m.digest = out.digest;
    m.size = out.size;
    m.bundled_size = out.bundled_size;
    m.parts = out.parts;
    m.set_keys(&key, &cloud_pub(), Some(&user_pub())).unwrap();
    m.sign(Some(user_key())).unwrap();
    let parsed = Manifest::parse(m.render().as_bytes()).unwrap();
    (parsed, parts.parts, key)
}

/// Unbundles parts from memory, returning the image or the first error.
pub fn unbundle_mem(
    m: &Manifest,
    key: &BundleKey,
    parts: &[(String, Vec<u8>)],
) -> bundler::Result<Vec<u8>> {
    let mut un = bundler::Unbundler::new(m, key, Vec::new())?;
    for (i, (_, p)) in parts.iter().enumerate() {
        // Feed in uneven pieces, as a network would.
        un.begin_part(i)?;
        for piece in p.chunks(7777) {
            un.write(piece)?;
        }
        un.end_part()?;
    }
    let (out, summary) = un.finish()?;
    assert_eq!(summary.size, out.len() as u64);
    Ok(out)
}

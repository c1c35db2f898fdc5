//! Bundle then unbundle over many sizes and part sizes, with the empty last part.
#![allow(clippy::unwrap_used)]

mod common;

use bundler::{bundle, BundleKey, BundleOptions, MemoryParts};
use common::{image, make_bundle, unbundle_mem};

#[test]
fn round_trips_over_many_sizes() {
    for len in [
        0usize,
        1,
        15,
        16,
        511,
        512,
        513,
        9727,
        10240,
        65536,
        300_001,
        1 << 20,
        (3 << 20) + 7,
    ] {
        let data = image(len);
        for part_size in [4096u64, 65536, 10 << 20] {
            let (m, parts, key) = make_bundle(&data, part_size);
            assert_eq!(m.size, len as u64);
            assert_eq!(parts.len(), m.parts.len());
            for (i, (name, p)) in parts.iter().enumerate() {
                assert_eq!(name, &format!("img.raw.part.{i:02}"));
                if i + 1 < parts.len() {
                    assert_eq!(p.len() as u64, part_size);
                }
            }
            assert_eq!(
                parts.iter().map(|(_, p)| p.len() as u64).sum::<u64>(),
                m.bundled_size
            );
            let back = unbundle_mem(&m, &key, &parts).unwrap();
            assert!(back == data, "len {len} part size {part_size}");
            let key2 = m.unwrap_key(common::cloud_key()).unwrap();
            assert_eq!(key2, key);
        }
    }
}

#[test]
fn exact_multiple_of_part_size_ends_with_an_empty_part() {
    let data = image(200_000);
    let key = BundleKey::random();
    let run = |part_size: u64| {
        let mut parts = MemoryParts::default();
        let opts = BundleOptions {
            part_size,
            chunk_size: 65536,
            ..BundleOptions::default()
        };
        let out = bundle(
            &data[..],
            data.len() as u64,
            "img.raw",
            &key,
            &mut parts,
            &opts,
            &mut |_| {},
        )
        .unwrap();
        (out, parts.parts)
    };
    let (whole, _) = run(u64::MAX / 2);
    let b = whole.bundled_size;
    assert_eq!(b % 16, 0);
    for part_size in [b, b / 16 * 8, 16] {
        if part_size == 0 || b % part_size != 0 {
            continue;
        }
        let (out, parts) = run(part_size);
        assert_eq!(out.digest, whole.digest, "deterministic tar stream");
        assert_eq!(out.bundled_size, b, "deterministic gzip");
        assert_eq!(parts.len() as u64, b / part_size + 1);
        let last = parts.last().unwrap();
        assert!(last.1.is_empty());
        assert_eq!(
            out.parts.last().unwrap().digest,
            "da39a3ee5e6b4b0d3255bfef95601890afd80709"
        );
    }
    // And such a bundle unbundles.
    let (m, parts, key) = make_bundle(&data, 16);
    assert!(parts.last().unwrap().1.is_empty());
    assert!(unbundle_mem(&m, &key, &parts).unwrap() == data);
}

#[test]
fn thread_count_and_chunking_do_not_change_the_tar_stream() {
    let data = image(1 << 20);
    let key = BundleKey::random();
    let mut digests = Vec::new();
    for (threads, chunk) in [(1, 4096), (2, 65536), (4, 1 << 20)] {
        let mut parts = MemoryParts::default();
        let opts = BundleOptions {
            threads,
            chunk_size: chunk,
            ..BundleOptions::default()
        };
        let out = bundle(
            &data[..],
            data.len() as u64,
            "x",
            &key,
            &mut parts,
            &opts,
            &mut |_| {},
        )
        .unwrap();
        digests.push(out.digest);
    }
    assert!(digests.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn input_shorter_or_longer_than_announced_is_refused() {
    let data = image(5000);
    let key = BundleKey::random();
    let opts = BundleOptions::default();
    let mut parts = MemoryParts::default();
    let e = bundle(&data[..], 6000, "x", &key, &mut parts, &opts, &mut |_| {}).unwrap_err();
    assert!(
        matches!(
            e,
            bundler::Error::InputSize {
                expected: 6000,
                actual: 5000
            }
        ),
        "{e}"
    );
    let e = bundle(&data[..], 4000, "x", &key, &mut parts, &opts, &mut |_| {}).unwrap_err();
    assert!(matches!(e, bundler::Error::InputSize { .. }), "{e}");
    let opts = BundleOptions {
        part_size: 0,
        ..BundleOptions::default()
    };
    assert!(bundle(&data[..], 5000, "x", &key, &mut parts, &opts, &mut |_| {}).is_err());
}

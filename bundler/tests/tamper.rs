//! Every kind of bad input the issue lists gets a clear, specific error.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;

use aes::Aes128;
use bundler::files::{bundle_file, unbundle_dir, BundleKeys};
use bundler::{BundleKey, BundleOptions, Error, ImageType, Manifest, PartInfo, Unbundler};
use cbc::cipher::{BlockEncryptMut, KeyIvInit};
use common::{cloud_key, image, make_bundle, unbundle_mem, user_key, user_pub};
use sha1::{Digest, Sha1};

#[test]
fn wrong_private_key_is_refused() {
    let (m, _, _) = make_bundle(&image(1000), 4096);
    let other = bundler::PrivateKey::new(&mut rand::thread_rng(), 1024).unwrap();
    assert!(matches!(m.unwrap_key(&other), Err(Error::WrongKey)));
    assert!(m.unwrap_key(user_key()).is_ok());
    assert!(m.unwrap_key(cloud_key()).is_ok());
}

#[test]
fn only_the_cloud_key_unwraps_the_cloud_wrapping() {
    let (m, _, _) = make_bundle(&image(1000), 4096);
    let key = m.unwrap_key(user_key()).unwrap();
    assert_eq!(m.unwrap_cloud_key(cloud_key()).unwrap(), key);
    assert!(matches!(
        m.unwrap_cloud_key(user_key()),
        Err(Error::WrongKey)
    ));
    let mut no_cloud = m.clone();
    no_cloud.ec2_encrypted_key.clear();
    assert!(matches!(
        no_cloud.unwrap_cloud_key(cloud_key()),
        Err(Error::WrongKey)
    ));
}

#[test]
fn any_byte_changed_in_the_signed_range_is_refused_with_a_cert() {
    let (m, _, _) = make_bundle(&image(1000), 4096);
    let text = m.render();
    let start = text.find("<machine_configuration>").unwrap();
    let end = text.find("</image>").unwrap() + "</image>".len();
    Manifest::parse(text.as_bytes())
        .unwrap()
        .verify(&user_pub())
        .unwrap();
    // Flip one character in a sample of positions of the signed range (text content only,
    // so the XML stays well-formed).
    let bytes = text.as_bytes();
    let mut tried = 0;
    for pos in start..end {
        let c = bytes[pos];
        let flipped = match c {
            b'0'..=b'8' | b'a'..=b'e' | b'A'..=b'Y' => c + 1,
            _ => continue,
        };
        let mut t = bytes.to_vec();
        t[pos] = flipped;
        if let Ok(m2) = Manifest::parse(&t) {
            tried += 1;
            assert!(
                matches!(m2.verify(&user_pub()), Err(Error::BadSignature)),
                "pos {pos}"
            );
        }
    }
    assert!(tried > 1000, "{tried}");
    // Whitespace between elements inside the range counts too: no re-serialisation.
    let spaced = text.replacen("<image>", "<image> ", 1);
    assert!(matches!(
        Manifest::parse(spaced.as_bytes())
            .unwrap()
            .verify(&user_pub()),
        Err(Error::BadSignature)
    ));
    // An unsigned manifest is refused when a cert is given.
    let mut unsigned = m.clone();
    unsigned.sign(None).unwrap();
    assert!(matches!(
        Manifest::parse(unsigned.render().as_bytes())
            .unwrap()
            .verify(&user_pub()),
        Err(Error::Unsigned)
    ));
    // The wrong cert.
    assert!(matches!(
        m.verify(&common::cloud_pub()),
        Err(Error::BadSignature)
    ));
}

#[test]
fn manifest_changes_that_break_a_digest_are_refused_without_a_cert() {
    let data = image(100_000);
    let (m, parts, key) = make_bundle(&data, 16384);

    let mut bad = m.clone();
    bad.digest = "0".repeat(40);
    assert!(matches!(
        unbundle_mem(&bad, &key, &parts),
        Err(Error::ImageDigest { .. })
    ));

    let mut bad = m.clone();
    bad.parts[1].digest = "1".repeat(40);
    assert!(matches!(
        unbundle_mem(&bad, &key, &parts),
        Err(Error::PartDigest { index: 1, .. })
    ));

    let mut bad = m.clone();
    bad.size -= 1;
    assert!(matches!(
        unbundle_mem(&bad, &key, &parts),
        Err(Error::ImageSize { .. })
    ));

    let mut bad = m.clone();
    bad.size += 1;
    assert!(matches!(
        unbundle_mem(&bad, &key, &parts),
        Err(Error::ImageSize { .. })
    ));

    let mut bad = m.clone();
    bad.bundled_size -= 16;
    assert!(matches!(
        unbundle_mem(&bad, &key, &parts),
        Err(Error::BundledSize { .. })
    ));

    let mut bad = m.clone();
    bad.bundled_size += 16;
    assert!(matches!(
        unbundle_mem(&bad, &key, &parts),
        Err(Error::BundledSize { .. })
    ));
}

#[test]
fn tampered_missing_truncated_and_reordered_parts_are_refused() {
    let data = image(100_000);
    let (m, parts, key) = make_bundle(&data, 16384);
    assert!(parts.len() >= 3);

    let mut t = parts.clone();
    t[1].1[100] ^= 1;
    assert!(matches!(
        unbundle_mem(&m, &key, &t),
        Err(Error::PartDigest { index: 1, .. })
    ));

    let mut t = parts.clone();
    t.remove(1);
    assert!(matches!(
        unbundle_mem(&m, &key, &t),
        Err(Error::PartDigest { .. })
    ));

    let mut t = parts.clone();
    t.pop();
    assert!(matches!(
        unbundle_mem(&m, &key, &t),
        Err(Error::MissingPart(_))
    ));

    let mut t = parts.clone();
    let last = t.len() - 1;
    let n = t[last].1.len();
    t[last].1.truncate(n / 2);
    assert!(matches!(
        unbundle_mem(&m, &key, &t),
        Err(Error::PartDigest { .. })
    ));

    let mut t = parts.clone();
    t.swap(0, 1);
    assert!(matches!(
        unbundle_mem(&m, &key, &t),
        Err(Error::PartDigest { index: 0, .. })
    ));

    let mut un = Unbundler::new(&m, &key, Vec::new()).unwrap();
    assert!(matches!(
        un.begin_part(1),
        Err(Error::PartOrder {
            expected: 0,
            got: 1
        })
    ));

    let mut un = Unbundler::new(&m, &key, Vec::new()).unwrap();
    for (i, (_, p)) in parts.iter().enumerate() {
        un.part(i, p).unwrap();
    }
    assert!(matches!(
        un.part(parts.len(), b"x"),
        Err(Error::PartOrder { .. })
    ));
}

/// Makes a bundle around an arbitrary tar stream, with every digest right, to exercise the
/// tar checks alone.
fn craft(tar: &[u8], size: u64) -> (Manifest, Vec<(String, Vec<u8>)>, BundleKey) {
    let key = BundleKey::random();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, tar).unwrap();
    let mut data = gz.finish().unwrap();
    let pad = 16 - data.len() % 16;
    data.resize(data.len() + pad, pad as u8);
    let mut enc = cbc::Encryptor::<Aes128>::new(&key.key.into(), &key.iv.into());
    for block in data.chunks_mut(16) {
        enc.encrypt_block_mut(block.into());
    }
    let mut m = Manifest::new("x86_64", "img.raw", "1", ImageType::Machine);
    m.digest = hex::encode(Sha1::digest(tar));
    m.size = size;
    m.bundled_size = data.len() as u64;
    m.parts = vec![PartInfo {
        filename: "img.raw.part.00".into(),
        digest: hex::encode(Sha1::digest(&data)),
    }];
    (m, vec![("img.raw.part.00".into(), data)], key)
}

fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut t = Vec::new();
    for (name, data) in members {
        t.extend_from_slice(&bundler::tar::header(name, data.len() as u64));
        t.extend_from_slice(data);
        t.resize(t.len().next_multiple_of(512), 0);
    }
    t.resize(t.len() + 1024, 0);
    t.resize(t.len().next_multiple_of(10240), 0);
    t
}

#[test]
fn tar_streams_with_two_members_or_a_bomb_are_refused() {
    let (m, parts, key) = craft(&tar_of(&[("a", b"hello")]), 5);
    assert_eq!(unbundle_mem(&m, &key, &parts).unwrap(), b"hello");

    let (m, parts, key) = craft(&tar_of(&[("a", b"hello"), ("b", b"world")]), 5);
    assert!(matches!(
        unbundle_mem(&m, &key, &parts),
        Err(Error::MultipleMembers)
    ));

    // A member far bigger than the manifest's size: refused at its header, before its data.
    let big = vec![0u8; 8 << 20];
    let (m, parts, key) = craft(&tar_of(&[("a", &big)]), 1000);
    assert!(matches!(
        unbundle_mem(&m, &key, &parts),
        Err(Error::ImageSize { expected: 1000, .. })
    ));

    // Zeros after the end of the archive, past a record: a bomb in the padding.
    let mut t = tar_of(&[("a", b"hello")]);
    t.resize(t.len() + (4 << 20), 0);
    let (m, parts, key) = craft(&t, 5);
    assert!(matches!(
        unbundle_mem(&m, &key, &parts),
        Err(Error::TrailingData)
    ));

    // Not gzip at all.
    let (mut m, mut parts, key) = craft(&tar_of(&[("a", b"hello")]), 5);
    let mut plain = b"this is not gzip data at all, really".to_vec();
    plain.resize(48, 0);
    let mut enc = cbc::Encryptor::<Aes128>::new(&key.key.into(), &key.iv.into());
    plain.extend([16u8; 16]);
    for block in plain.chunks_mut(16) {
        enc.encrypt_block_mut(block.into());
    }
    m.bundled_size = plain.len() as u64;
    m.parts[0].digest = hex::encode(Sha1::digest(&plain));
    parts[0].1 = plain;
    assert!(matches!(
        unbundle_mem(&m, &key, &parts),
        Err(Error::Gzip(_))
    ));
}

#[test]
fn malformed_xml_and_non_rsa_certs_are_refused() {
    assert!(Manifest::parse(b"<manifest><image>").is_err());
    assert!(matches!(
        Manifest::parse(b"<manifest></mani>"),
        Err(Error::ManifestXml(_))
    ));
    assert!(matches!(
        Manifest::parse(b"<other/>"),
        Err(Error::ManifestMissing(_))
    ));

    // The golden user cert with its key algorithm changed from rsaEncryption to id-ecPublicKey
    // (same OID length would not be possible, so use RSAES-OAEP: not the rsaEncryption key
    // that PKCS#1 v1.5 wrapping needs).
    use base64::Engine;
    let pem = fs::read_to_string(common::vectors().join("keys/user-cert.pem")).unwrap();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let mut der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let rsa_oid = [
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
    ];
    let pos = der
        .windows(rsa_oid.len())
        .position(|w| w == rsa_oid)
        .unwrap();
    der[pos + 10] = 0x07;
    assert!(matches!(
        bundler::read_certificate(&der),
        Err(Error::NotRsa)
    ));
    assert!(bundler::read_certificate(
        &fs::read(common::vectors().join("keys/user-cert.pem")).unwrap()
    )
    .is_ok());
    assert!(matches!(
        bundler::read_certificate(b"garbage"),
        Err(Error::Certificate)
    ));
}

#[test]
fn failures_leave_no_file_under_its_final_name() {
    let src = tempfile::tempdir().unwrap();
    let img = src.path().join("img.raw");
    fs::write(&img, image(70_000)).unwrap();
    let bundle_dir = tempfile::tempdir().unwrap();
    let key = BundleKey::random();
    let cloud = common::cloud_pub();
    let user = user_pub();
    let files = bundle_file(
        &img,
        bundle_dir.path(),
        Manifest::new("x86_64", "img.raw", "1", ImageType::Machine),
        &BundleKeys {
            key: &key,
            cloud: &cloud,
            user: Some(&user),
            signer: Some(user_key()),
        },
        &BundleOptions {
            part_size: 16384,
            ..BundleOptions::default()
        },
        &mut |_| {},
    )
    .unwrap();
    // Tamper the last part: the image is written under a temp name, then removed.
    let last = files.parts.last().unwrap();
    let mut p = fs::read(last).unwrap();
    if p.is_empty() {
        p.push(0);
    } else {
        p[0] ^= 0xff;
    }
    fs::write(last, p).unwrap();
    let out = tempfile::tempdir().unwrap();
    let err = unbundle_dir(
        &files.manifest,
        bundle_dir.path(),
        out.path(),
        user_key(),
        Some(&user),
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(matches!(err, Error::PartDigest { .. }), "{err}");
    assert_eq!(fs::read_dir(out.path()).unwrap().count(), 0);

    // A missing part.
    fs::remove_file(&files.parts[0]).unwrap();
    let err = unbundle_dir(
        &files.manifest,
        bundle_dir.path(),
        out.path(),
        user_key(),
        None,
        &mut |_, _| {},
    )
    .unwrap_err();
    assert!(matches!(err, Error::MissingPart(0)), "{err}");
    assert_eq!(fs::read_dir(out.path()).unwrap().count(), 0);

    // A bundle whose input cannot be read leaves nothing behind either.
    let empty = tempfile::tempdir().unwrap();
    let err = bundle_file(
        &src.path().join("absent"),
        empty.path(),
        Manifest::new("x86_64", "absent", "1", ImageType::Machine),
        &BundleKeys {
            key: &key,
            cloud: &cloud,
            user: None,
            signer: None,
        },
        &BundleOptions::default(),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, Error::Io { .. }));
    assert_eq!(fs::read_dir(empty.path()).unwrap().count(), 0);
}

//! The golden bundles made by the real euca2ools 3.4.1 (../shared/vectors/bundles).
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;

use bundler::files::{bundle_file, unbundle_dir, BundleKeys};
use bundler::{
    read_certificate, read_private_key, BundleKey, BundleOptions, ImageType, Manifest, Unbundler,
};
use common::vectors;

const CASES: [(&str, &str); 3] = [
    ("kernel", "vmlinuz-test"),
    ("ramdisk", "initrd-test.img"),
    ("machine-multipart", "disk.img"),
];

fn golden_key() -> BundleKey {
    BundleKey::from_hex(
        "0123456789abcdef0123456789abcdef",
        "fedcba9876543210fedcba9876543210",
    )
    .unwrap()
}

fn key_file(name: &str) -> bundler::PrivateKey {
    read_private_key(&fs::read_to_string(vectors().join("keys").join(name)).unwrap()).unwrap()
}

fn cert_file(name: &str) -> bundler::PublicKey {
    read_certificate(&fs::read(vectors().join("keys").join(name)).unwrap()).unwrap()
}

fn load(case: &str, input: &str) -> (Vec<u8>, Manifest) {
    let raw = fs::read(vectors().join(case).join(format!("{input}.manifest.xml"))).unwrap();
    (raw.clone(), Manifest::parse(&raw).unwrap())
}

#[test]
fn golden_manifests_verify_and_render_exactly() {
    for (case, input) in CASES {
        let (raw, m) = load(case, input);
        m.verify(&cert_file("user-cert.pem")).unwrap();
        assert!(matches!(
            m.verify(&cert_file("cloud-cert.pem")),
            Err(bundler::Error::BadSignature)
        ));
        // Our renderer writes the same bytes as euca2ools, byte for byte.
        assert_eq!(m.render().as_bytes(), &raw[..], "{case}");
        assert_eq!(m.render_signed().into_bytes(), m.signed_bytes());
        // Signing the same content with the same key gives the same signature (PKCS#1 v1.5
        // signatures are deterministic).
        let mut again = m.clone();
        again.sign(Some(&key_file("user-pk.pem"))).unwrap();
        assert_eq!(again.signature, m.signature, "{case}");
    }
}

#[test]
fn golden_bundles_unbundle_with_user_and_cloud_keys() {
    for (case, input) in CASES {
        let (_, m) = load(case, input);
        let expected = fs::read(vectors().join("inputs").join(input)).unwrap();
        for pk in ["user-pk.pem", "cloud-pk.pem"] {
            let key = m.unwrap_key(&key_file(pk)).unwrap();
            assert_eq!(key, golden_key(), "{case} {pk}");
            let mut un = Unbundler::new(&m, &key, Vec::new()).unwrap();
            for (i, p) in m.parts.iter().enumerate() {
                un.read_part(
                    i,
                    fs::File::open(vectors().join(case).join(&p.filename)).unwrap(),
                )
                .unwrap();
            }
            let (out, summary) = un.finish().unwrap();
            assert!(out == expected, "{case} {pk}: image differs");
            assert_eq!(summary.digest, m.digest);
        }
        // And through the directory API the command uses.
        let dest = tempfile::tempdir().unwrap();
        let (path, _) = unbundle_dir(
            &vectors().join(case).join(format!("{input}.manifest.xml")),
            &vectors().join(case),
            dest.path(),
            &key_file("cloud-pk.pem"),
            Some(&cert_file("user-cert.pem")),
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(path, dest.path().join(input));
        assert!(fs::read(&path).unwrap() == expected);
        assert_eq!(
            fs::read_dir(dest.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}

#[test]
fn our_bundle_of_golden_inputs_matches_euca2ools() {
    let user_cert = cert_file("user-cert.pem");
    let cloud_cert = cert_file("cloud-cert.pem");
    let user_pk = key_file("user-pk.pem");
    for (case, input) in CASES {
        let (_, golden) = load(case, input);
        let dir = tempfile::tempdir().unwrap();
        let mut template = Manifest::new(
            &golden.architecture,
            input,
            "1234-5678-9012",
            golden.image_type,
        );
        template.kernel_id = golden.kernel_id.clone();
        template.ramdisk_id = golden.ramdisk_id.clone();
        template.block_device_mapping = golden.block_device_mapping.clone();
        let key = golden_key();
        let options = BundleOptions {
            part_size: if case == "machine-multipart" {
                65536
            } else {
                10 << 20
            },
            ..BundleOptions::default()
        };
        let files = bundle_file(
            &vectors().join("inputs").join(input),
            dir.path(),
            template,
            &BundleKeys {
                key: &key,
                cloud: &cloud_cert,
                user: Some(&user_cert),
                signer: Some(&user_pk),
            },
            &options,
            &mut |_| {},
        )
        .unwrap();
        let ours = Manifest::parse(&fs::read(&files.manifest).unwrap()).unwrap();
        ours.verify(&user_cert).unwrap();
        assert_eq!(ours.digest, golden.digest, "{case}: same tar stream");
        assert_eq!(ours.architecture, golden.architecture);
        assert_eq!(ours.name, golden.name);
        assert_eq!(ours.user, golden.user);
        assert_eq!(ours.image_type, golden.image_type);
        assert_eq!(ours.size, golden.size);
        assert_eq!(ours.kernel_id, golden.kernel_id);
        assert_eq!(ours.ramdisk_id, golden.ramdisk_id);
        assert_eq!(ours.block_device_mapping, golden.block_device_mapping);
        assert_eq!(ours.unwrap_key(&key_file("cloud-pk.pem")).unwrap(), key);
        assert_eq!(files.parts.len(), ours.parts.len());
        let out = tempfile::tempdir().unwrap();
        let (path, _) = unbundle_dir(
            &files.manifest,
            dir.path(),
            out.path(),
            &user_pk,
            Some(&user_cert),
            &mut |_, _| {},
        )
        .unwrap();
        assert!(fs::read(path).unwrap() == fs::read(vectors().join("inputs").join(input)).unwrap());
    }
    assert_eq!(ImageType::parse("kernel"), Some(ImageType::Kernel));
}

#[test]
fn our_gzip_is_read_by_system_gzip() {
    // A bundle's plaintext must be read by any gzip decoder: decrypt one of ours with openssl
    // and gunzip it with gzip(1) when those tools are present.
    use std::process::{Command, Stdio};
    if Command::new("openssl").arg("version").output().is_err()
        || Command::new("gzip").arg("--version").output().is_err()
    {
        eprintln!("openssl or gzip missing: skipped");
        return;
    }
    let data = common::image(3 << 20);
    let (m, parts, key) = common::make_bundle(&data, 1 << 20);
    let dir = tempfile::tempdir().unwrap();
    let cat: Vec<u8> = parts.iter().flat_map(|(_, p)| p.clone()).collect();
    let enc = dir.path().join("all.enc");
    fs::write(&enc, cat).unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl enc -d -aes-128-cbc -K {} -iv {} -in {} | gzip -dc | sha1sum",
            key.key_hex(),
            key.iv_hex(),
            enc.display()
        ))
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with(&m.digest), "{text} vs {}", m.digest);
}

//! End to end: the real `euca-bundle-image` and `euca-unbundle` binaries on the golden inputs
//! and keys (../shared/vectors/bundles), their flags, environment variables and failures.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/bundles")
}

fn key(name: &str) -> PathBuf {
    vectors().join("keys").join(name)
}

/// A scratch directory removed on drop (tools has no tempfile dev-dependency).
struct Scratch(PathBuf);
impl Scratch {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("koala-bundle-cli-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}
impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn bundle_cmd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_euca-bundle-image"));
    for v in [
        "EC2_PRIVATE_KEY",
        "EC2_CERT",
        "EUCALYPTUS_CERT",
        "EC2_USER_ID",
    ] {
        c.env_remove(v);
    }
    c
}

fn unbundle_cmd() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_euca-unbundle"));
    c.env_remove("EC2_PRIVATE_KEY");
    c
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn tag(xml: &str, name: &str) -> String {
    let open = format!("<{name}>");
    let start = xml.find(&open).unwrap() + open.len();
    let end = xml[start..].find(&format!("</{name}>")).unwrap() + start;
    xml[start..end].to_string()
}

#[test]
fn bundle_then_unbundle_the_golden_disk_with_flags() {
    let dir = Scratch::new("flags");
    let bundle_dir = dir.path().join("bundle");
    let out = ok(bundle_cmd()
        .args(["-i"])
        .arg(vectors().join("inputs/disk.img"))
        .args(["-r", "x86_64", "-u", "1234-5678-9012", "-d"])
        .arg(&bundle_dir)
        .arg("-k")
        .arg(key("user-pk.pem"))
        .arg("-c")
        .arg(key("user-cert.pem"))
        .arg("--ec2cert")
        .arg(key("cloud-cert.pem"))
        .args(["--kernel", "eki-0badcafe", "--ramdisk", "eri-0c0ffee0"])
        .args(["-B", "ami=sda1,root=/dev/sda1,ephemeral0=sda2,swap=sda3"])
        .args(["--part-size", "65536"])
        .args(["--enc-key", "0123456789abcdef0123456789abcdef"])
        .args(["--enc-iv", "fedcba9876543210fedcba9876543210"])
        .output()
        .unwrap());
    let manifest = bundle_dir.join("disk.img.manifest.xml");
    assert!(
        out.ends_with(&format!("Wrote manifest {}\n", manifest.display())),
        "{out}"
    );
    assert!(out.contains(&format!(
        "Wrote {}\n",
        bundle_dir.join("disk.img.part.00").display()
    )));

    let ours = fs::read_to_string(&manifest).unwrap();
    let golden =
        fs::read_to_string(vectors().join("machine-multipart/disk.img.manifest.xml")).unwrap();
    assert!(ours.starts_with("<?xml version='1.0' encoding='ASCII'?>\n<manifest>"));
    for t in [
        "digest algorithm=\"SHA1\"",
        "user",
        "type",
        "size",
        "kernel_id",
        "ramdisk_id",
        "architecture",
        "block_device_mapping",
    ] {
        let name = t.split(' ').next().unwrap();
        let pick = |x: &str| {
            if t.contains(' ') {
                let open = format!("<{t}>");
                let s = x.find(&open).unwrap() + open.len();
                x[s..s + 40].to_string()
            } else {
                tag(x, name)
            }
        };
        assert_eq!(pick(&ours), pick(&golden), "{t}");
    }

    let dest = dir.path().join("out");
    let out = ok(unbundle_cmd()
        .arg("-m")
        .arg(&manifest)
        .arg("-s")
        .arg(&bundle_dir)
        .arg("-d")
        .arg(&dest)
        .arg("-k")
        .arg(key("cloud-pk.pem"))
        .arg("-c")
        .arg(key("user-cert.pem"))
        .output()
        .unwrap());
    assert_eq!(out, format!("Wrote {}\n", dest.join("disk.img").display()));
    assert!(
        fs::read(dest.join("disk.img")).unwrap()
            == fs::read(vectors().join("inputs/disk.img")).unwrap()
    );
}

#[test]
fn environment_variables_stand_in_for_flags_and_golden_bundles_unbundle() {
    let dir = Scratch::new("env");
    let out = ok(bundle_cmd()
        .current_dir(dir.path())
        .env("EC2_PRIVATE_KEY", key("user-pk.pem"))
        .env("EC2_CERT", key("user-cert.pem"))
        .env("EUCALYPTUS_CERT", key("cloud-cert.pem"))
        .env("EC2_USER_ID", "123456789012")
        .env("TMPDIR", dir.path())
        .arg("-i")
        .arg(vectors().join("inputs/vmlinuz-test"))
        .args([
            "-r",
            "x86_64",
            "--kernel",
            "true",
            "-p",
            "my-kernel",
            "--no-progress",
        ])
        .output()
        .unwrap());
    // Without -d the bundle goes into $TMPDIR itself, as euca2ools 1.x wrote to /tmp.
    let manifest = PathBuf::from(
        out.lines()
            .last()
            .unwrap()
            .strip_prefix("Wrote manifest ")
            .unwrap(),
    );
    assert_eq!(manifest.parent(), Some(dir.path()));
    let xml = fs::read_to_string(&manifest).unwrap();
    assert_eq!(tag(&xml, "type"), "kernel");
    assert_eq!(tag(&xml, "kernel_id"), "true");
    assert_eq!(
        tag(xml.split("<image>").nth(1).unwrap(), "name"),
        "my-kernel"
    );

    // The golden kernel bundle made by euca2ools, with the user key from the environment.
    let dest = dir.path().join("golden-out");
    ok(unbundle_cmd()
        .env("EC2_PRIVATE_KEY", key("user-pk.pem"))
        .arg("-m")
        .arg(vectors().join("kernel/vmlinuz-test.manifest.xml"))
        .arg("-s")
        .arg(vectors().join("kernel"))
        .arg("-d")
        .arg(&dest)
        .output()
        .unwrap());
    assert!(
        fs::read(dest.join("vmlinuz-test")).unwrap()
            == fs::read(vectors().join("inputs/vmlinuz-test")).unwrap()
    );
}

#[test]
fn failures_exit_non_zero_with_a_clear_message_and_no_output_file() {
    let dir = Scratch::new("fail");
    let src = dir.path().join("src");
    fs::create_dir_all(&src).unwrap();
    for f in fs::read_dir(vectors().join("ramdisk")).unwrap() {
        let f = f.unwrap().path();
        fs::copy(&f, src.join(f.file_name().unwrap())).unwrap();
    }
    let manifest = src.join("initrd-test.img.manifest.xml");
    let dest = dir.path().join("out");
    let unbundle = |pk: &str, cert: Option<&str>| {
        let mut c = unbundle_cmd();
        c.arg("-m")
            .arg(&manifest)
            .arg("-s")
            .arg(&src)
            .arg("-d")
            .arg(&dest)
            .arg("-k")
            .arg(key(pk));
        if let Some(cert) = cert {
            c.arg("-c").arg(key(cert));
        }
        let out = c.output().unwrap();
        assert!(!out.status.success());
        assert_eq!(
            fs::read_dir(&dest).map(|d| d.count()).unwrap_or(0),
            0,
            "no output file"
        );
        String::from_utf8(out.stderr).unwrap()
    };

    // The wrong signer.
    let err = unbundle("user-pk.pem", Some("cloud-cert.pem"));
    assert!(err.contains("signature does not verify"), "{err}");

    // A tampered part.
    let part = src.join("initrd-test.img.part.00");
    let mut p = fs::read(&part).unwrap();
    p[1000] ^= 1;
    fs::write(&part, &p).unwrap();
    let err = unbundle("user-pk.pem", None);
    assert!(
        err.starts_with("euca-unbundle: error: part 0 (initrd-test.img.part.00) has SHA-1"),
        "{err}"
    );

    // A missing part.
    fs::remove_file(&part).unwrap();
    let err = unbundle("user-pk.pem", None);
    assert!(err.contains("part 0 is missing"), "{err}");

    // A manifest byte changed in the signed range.
    let xml = fs::read_to_string(&manifest)
        .unwrap()
        .replace("<architecture>x86_64<", "<architecture>i386<");
    fs::write(&manifest, xml).unwrap();
    let err = unbundle("user-pk.pem", Some("user-cert.pem"));
    assert!(err.contains("signature does not verify"), "{err}");

    // Malformed XML.
    fs::write(&manifest, "<manifest><image>").unwrap();
    let err = unbundle("user-pk.pem", None);
    assert!(err.contains("manifest"), "{err}");

    // Bundling: the cloud cert is required, kernels take no block device mapping.
    let out = bundle_cmd()
        .arg("-i")
        .arg(vectors().join("inputs/vmlinuz-test"))
        .args(["-r", "x86_64", "-u", "1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ec2cert"));
    let bdir = dir.path().join("b");
    let out = bundle_cmd()
        .arg("-i")
        .arg(vectors().join("inputs/vmlinuz-test"))
        .args([
            "-r", "x86_64", "-u", "1", "--kernel", "true", "-B", "ami=sda1", "-d",
        ])
        .arg(&bdir)
        .arg("--ec2cert")
        .arg(key("cloud-cert.pem"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only for machine images"));
    // A private key given as the cloud cert: not a certificate.
    let out = bundle_cmd()
        .arg("-i")
        .arg(vectors().join("inputs/vmlinuz-test"))
        .args(["-r", "x86_64", "-u", "1", "-d"])
        .arg(&bdir)
        .arg("--ec2cert")
        .arg(key("cloud-pk.pem"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("certificate"));
    assert_eq!(fs::read_dir(&bdir).map(|d| d.count()).unwrap_or(0), 0);
}

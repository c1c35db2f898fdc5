//! The euca2ools command family as an admin uses it against a running cloud: bundle a
//! kernel, a ramdisk and a machine image, upload and register them, describe them, share
//! and unshare, deregister and delete the bundles; key pairs, security groups, addresses,
//! zones, tags and properties; and failures printed as euca2ools prints them.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use euca2ools::client::{s3_request, EnvCredentials};
use tests::{koala_bin, Cloud};

/// A sourced eucarc, and a folder for files.
struct Shell {
    env: HashMap<String, String>,
    work: tempfile::TempDir,
}

impl Shell {
    fn new(cloud: &Cloud) -> Shell {
        Shell {
            env: Cloud::sourced_env(&cloud.eucarc()),
            work: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    /// Runs a euca2ools command (built beside `koala`) with the eucarc's environment only.
    fn run(&self, command: &str, args: &[&str]) -> Output {
        let bin = koala_bin().with_file_name(command);
        assert!(
            bin.exists(),
            "{} is missing: run `cargo build --release -p euca2ools -p koala` first",
            bin.display()
        );
        Command::new(bin)
            .args(args)
            .current_dir(self.work.path())
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .envs(&self.env)
            .output()
            .expect("the command runs")
    }

    /// Runs a command that must succeed; its standard output.
    fn ok(&self, command: &str, args: &[&str]) -> String {
        let out = self.run(command, args);
        assert!(
            out.status.success(),
            "{command} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).expect("UTF-8 output")
    }

    /// Runs a command that must fail as euca2ools fails: exit status 1 and
    /// `COMMAND: error (CODE): ...` on standard error.
    fn fails_with(&self, command: &str, args: &[&str], code: &str) {
        let out = self.run(command, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{command} {args:?}: {stderr}");
        assert!(
            stderr.starts_with(&format!("{command}: error ({code}): ")),
            "{command} {args:?}: {stderr}"
        );
        assert!(out.stdout.is_empty());
    }

    fn creds(&self) -> EnvCredentials {
        EnvCredentials {
            access_key_id: self.env["AWS_ACCESS_KEY_ID"].clone(),
            secret_access_key: self.env["AWS_SECRET_ACCESS_KEY"].clone(),
            region: self.env["AWS_DEFAULT_REGION"].clone(),
        }
    }

    /// The keys of a bucket's listing, or None when the bucket does not exist.
    fn keys(&self, bucket: &str) -> Option<Vec<String>> {
        let url = format!("{}/{bucket}", self.env["S3_URL"]);
        let (status, body) = s3_request("GET", &url, &self.creds()).expect("S3 answers");
        if status == 404 {
            assert!(body.contains("NoSuchBucket"), "{body}");
            return None;
        }
        assert_eq!(status, 200, "{body}");
        Some(
            body.split("<Key>")
                .skip(1)
                .filter_map(|k| k.split_once("</Key>").map(|(key, _)| key.to_owned()))
                .collect(),
        )
    }

    /// Bundles `image` (a file in the work folder) into `dest` with extra flags; the
    /// manifest's path.
    fn bundle(&self, image: &str, dest: &str, extra: &[&str]) -> String {
        let dest = self.path(dest);
        let mut args = vec![
            "-i",
            image,
            "-r",
            "x86_64",
            "-d",
            dest.to_str().expect("UTF-8 path"),
            "--no-progress",
        ];
        args.extend_from_slice(extra);
        let out = self.ok("euca-bundle-image", &args);
        let manifest = dest.join(format!("{image}.manifest.xml"));
        assert!(out.contains("Wrote manifest"), "{out}");
        manifest.to_str().expect("UTF-8 path").to_owned()
    }
}

/// A file of `len` bytes of a pattern that compresses a little, like an image.
fn write_image(path: &Path, len: usize, seed: u32) {
    let mut state = seed;
    let bytes: Vec<u8> = (0..len)
        .map(|i| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            if i % 3 == 0 {
                0
            } else {
                (state >> 24) as u8
            }
        })
        .collect();
    std::fs::write(path, bytes).expect("write image");
}

/// Tab-separated lines starting with `kind`.
fn rows<'a>(output: &'a str, kind: &str) -> Vec<Vec<&'a str>> {
    output
        .lines()
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .filter(|fields| fields[0] == kind)
        .collect()
}

/// The one `IMAGE` line of `id`.
fn image_row<'a>(output: &'a str, id: &str) -> Vec<&'a str> {
    let found: Vec<Vec<&str>> = rows(output, "IMAGE")
        .into_iter()
        .filter(|f| f[1] == id)
        .collect();
    assert_eq!(found.len(), 1, "{id} in {output}");
    found.into_iter().next().expect("one row")
}

/// `IMAGE\tID` as euca-register prints it; the ID.
fn registered(output: &str, prefix: &str) -> String {
    let line = output.trim_end();
    let id = line
        .strip_prefix("IMAGE\t")
        .unwrap_or_else(|| panic!("{line}"));
    assert!(
        id.starts_with(prefix) && id.len() == prefix.len() + 8,
        "{id}"
    );
    id.to_owned()
}

#[test]
fn images_from_bundle_to_deregistration() {
    let cloud = Cloud::start();
    let sh = Shell::new(&cloud);
    let account = sh.env["EC2_USER_ID"].clone();
    write_image(&sh.path("vmlinuz"), 70_000, 1);
    write_image(&sh.path("initrd.img"), 30_000, 2);
    write_image(&sh.path("disk.img"), 300_000, 3);

    // Kernel and ramdisk: bundled, uploaded (the bucket is created), registered.
    let kernel_manifest = sh.bundle("vmlinuz", "kernel", &["--kernel", "true"]);
    assert_eq!(
        sh.ok(
            "euca-upload-bundle",
            &["-b", "boot/kernels", "-m", &kernel_manifest]
        ),
        "Uploaded boot/kernels/vmlinuz.manifest.xml\n"
    );
    let eki = registered(
        &sh.ok(
            "euca-register",
            &["boot/kernels/vmlinuz.manifest.xml", "-n", "kernel-1"],
        ),
        "eki-",
    );
    let ramdisk_manifest = sh.bundle("initrd.img", "ramdisk", &["--ramdisk", "true"]);
    assert_eq!(
        sh.ok(
            "euca-upload-bundle",
            &["-b", "boot", "-m", &ramdisk_manifest]
        ),
        "Uploaded boot/initrd.img.manifest.xml\n"
    );
    let eri = registered(
        &sh.ok(
            "euca-register",
            &["boot/initrd.img.manifest.xml", "--name", "ramdisk-1"],
        ),
        "eri-",
    );

    // The machine image in many small parts, uploaded a few at a time.
    let machine_manifest = sh.bundle(
        "disk.img",
        "machine",
        &["--kernel", &eki, "--ramdisk", &eri, "--part-size", "32768"],
    );
    let parts: Vec<String> = std::fs::read_dir(sh.path("machine"))
        .expect("bundle dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".part."))
        .collect();
    assert!(parts.len() >= 5, "{parts:?}");
    let out = sh.ok(
        "euca-upload-bundle",
        &[
            "-b",
            "images/v1",
            "-m",
            &machine_manifest,
            "--acl",
            "aws-exec-read",
        ],
    );
    assert_eq!(out, "Uploaded images/v1/disk.img.manifest.xml\n");
    let mut keys = sh.keys("images").expect("the bucket was created");
    keys.sort();
    let mut expected: Vec<String> = parts.iter().map(|p| format!("v1/{p}")).collect();
    expected.push("v1/disk.img.manifest.xml".into());
    expected.sort();
    assert_eq!(keys, expected);
    let emi = registered(
        &sh.ok(
            "euca-register",
            &[
                "images/v1/disk.img.manifest.xml",
                "-n",
                "disk-1",
                "-d",
                "a test disk",
                "-a",
                "x86_64",
            ],
        ),
        "emi-",
    );

    // All three, sorted by ID, with their types, kernel and ramdisk.
    let listing = sh.ok("euca-describe-images", &[]);
    let ids: Vec<&str> = rows(&listing, "IMAGE").iter().map(|f| f[1]).collect();
    assert_eq!(ids.len(), 3, "{listing}");
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "sorted by ID: {listing}"
    );
    for (id, kind, name) in [
        (&eki, "kernel", "kernel-1"),
        (&eri, "ramdisk", "ramdisk-1"),
        (&emi, "machine", "disk-1"),
    ] {
        let row = image_row(&listing, id);
        assert_eq!(row.len(), 14, "{row:?}");
        assert_eq!(row[2], format!("{account}/{name}"), "{row:?}");
        assert_eq!(row[3], account);
        assert_eq!(
            &row[4..8],
            ["available", "private", "x86_64", kind],
            "{row:?}"
        );
        assert_eq!(row[11], "instance-store", "{row:?}");
    }
    let machine = image_row(&listing, &emi);
    assert_eq!((machine[8], machine[9]), (eki.as_str(), eri.as_str()));

    // Narrowed by ID, by filter, and with -a.
    let one = sh.ok("euca-describe-images", &[&eki]);
    assert_eq!(rows(&one, "IMAGE").len(), 1, "{one}");
    let kernels = sh.ok("euca-describe-images", &["--filter", "image-type=kernel"]);
    let kernel_ids: Vec<&str> = rows(&kernels, "IMAGE").iter().map(|f| f[1]).collect();
    assert_eq!(kernel_ids, [eki.as_str()]);
    assert_eq!(
        rows(&sh.ok("euca-describe-images", &["-a"]), "IMAGE").len(),
        3
    );
    sh.fails_with(
        "euca-describe-images",
        &["emi-00000000"],
        "InvalidAMIID.NotFound",
    );

    // Attributes: launch permissions granted, shown, reset; the kernel.
    assert_eq!(
        sh.ok("euca-modify-image-attribute", &[&emi, "-l", "-a", "all"]),
        format!("launchPermission\t{emi}\tADD\tgroup\tall\n")
    );
    assert_eq!(
        sh.ok("euca-describe-image-attribute", &[&emi, "-l"]),
        format!("launchPermission\t{emi}\tgroup\tall\n")
    );
    assert_eq!(
        image_row(&sh.ok("euca-describe-images", &[&emi]), &emi)[5],
        "public"
    );
    assert_eq!(
        sh.ok("euca-reset-image-attribute", &[&emi, "-l"]),
        format!("launchPermission\t{emi}\tRESET\n")
    );
    assert_eq!(sh.ok("euca-describe-image-attribute", &[&emi, "-l"]), "");
    assert_eq!(
        sh.ok("euca-describe-image-attribute", &[&emi, "--kernel"]),
        format!("kernel\t{emi}\t\t{eki}\n")
    );

    // Deregistered, then the bundles deleted object by object, the bucket with --clear.
    assert_eq!(sh.ok("euca-deregister", &[&emi]), format!("IMAGE\t{emi}\n"));
    let after = sh.ok("euca-describe-images", &[]);
    assert!(
        rows(&after, "IMAGE")
            .iter()
            .all(|f| f[1] != emi || f[4] != "available"),
        "{after}"
    );
    assert_eq!(
        sh.ok("euca-delete-bundle", &["-b", "images/v1", "-p", "disk.img"]),
        ""
    );
    assert_eq!(sh.keys("images"), Some(Vec::new()));
    sh.ok("euca-deregister", &[&eri]);
    sh.ok("euca-deregister", &[&eki]);
    sh.ok(
        "euca-delete-bundle",
        &["-b", "boot/kernels", "-m", "vmlinuz.manifest.xml"],
    );
    sh.ok(
        "euca-delete-bundle",
        &[
            "-b",
            "boot",
            "--local-manifest",
            &ramdisk_manifest,
            "--clear",
        ],
    );
    assert_eq!(sh.keys("boot"), None, "--clear deleted the bucket");
    sh.fails_with(
        "euca-delete-bundle",
        &["-b", "images", "-p", "nothing", "--clear"],
        "NoSuchKey",
    );
}

#[test]
fn key_pairs() {
    let cloud = Cloud::start();
    let sh = Shell::new(&cloud);

    let out = sh.ok("euca-create-keypair", &["alpha"]);
    let (first, material) = out.split_once('\n').expect("two parts");
    let fields: Vec<&str> = first.split('\t').collect();
    assert_eq!(&fields[..2], ["KEYPAIR", "alpha"]);
    let fingerprint = fields[2].to_owned();
    assert!(!fingerprint.is_empty());
    assert!(material.starts_with("-----BEGIN"), "{material}");

    // With -f the key goes to a file only its owner can read (here a bare name).
    let out = sh.ok("euca-add-keypair", &["beta", "-f", "beta.pem"]);
    assert!(
        out.starts_with("KEYPAIR\tbeta\t") && out.lines().count() == 1,
        "{out}"
    );
    let pem = sh.path("beta.pem");
    let mode = std::fs::metadata(&pem)
        .expect("key file")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert!(std::fs::read_to_string(&pem)
        .expect("key")
        .starts_with("-----BEGIN"));

    // Its public half imported under another name has the same fingerprint.
    let public = Command::new("ssh-keygen")
        .arg("-y")
        .arg("-f")
        .arg(&pem)
        .output();
    if let Some(public) = public.ok().filter(|o| o.status.success()) {
        std::fs::write(sh.path("beta.pub"), &public.stdout).expect("write public key");
        let out = sh.ok("euca-import-keypair", &["gamma", "-f", "beta.pub"]);
        assert!(out.starts_with("KEYPAIR\tgamma\t"), "{out}");
    }

    let listing = sh.ok("euca-describe-keypairs", &[]);
    let names: Vec<&str> = rows(&listing, "KEYPAIR").iter().map(|f| f[1]).collect();
    assert!(
        names.contains(&"alpha") && names.contains(&"beta"),
        "{listing}"
    );
    assert_eq!(
        sh.ok("euca-describe-keypairs", &["alpha"]),
        format!("KEYPAIR\talpha\t{fingerprint}\n")
    );
    assert_eq!(
        sh.ok("euca-describe-keypairs", &["--filter", "key-name=alpha"]),
        format!("KEYPAIR\talpha\t{fingerprint}\n")
    );
    sh.fails_with(
        "euca-create-keypair",
        &["alpha"],
        "InvalidKeyPair.Duplicate",
    );
    assert_eq!(sh.ok("euca-delete-keypair", &["alpha"]), "KEYPAIR\talpha\n");
    let listing = sh.ok("euca-describe-keypairs", &[]);
    assert!(!listing.contains("\talpha\t"), "{listing}");
    sh.fails_with(
        "euca-describe-keypairs",
        &["alpha"],
        "InvalidKeyPair.NotFound",
    );
}

#[test]
fn security_groups_and_their_rules() {
    let cloud = Cloud::start();
    let sh = Shell::new(&cloud);
    let account = sh.env["EC2_USER_ID"].clone();

    let out = sh.ok("euca-create-group", &["web", "-d", "web servers"]);
    let created: Vec<&str> = out.trim_end().split('\t').collect();
    assert_eq!(created.len(), 4, "{out}");
    assert_eq!(created[0], "GROUP");
    let web_id = created[1].to_owned();
    assert!(web_id.starts_with("sg-"), "{out}");
    assert_eq!(&created[2..], ["web", "web servers"]);
    sh.ok("euca-add-group", &["lb", "-d", "load balancers"]);
    sh.fails_with(
        "euca-create-group",
        &["web", "-d", "again"],
        "InvalidGroup.Duplicate",
    );

    assert_eq!(
        sh.ok("euca-authorize", &["web", "-p", "22", "-s", "10.0.0.0/8"]),
        "GROUP\tweb\nPERMISSION\tweb\tALLOWS\ttcp\t22\t22\tFROM\tCIDR\t10.0.0.0/8\n"
    );
    sh.ok("euca-authorize", &[&web_id, "-P", "icmp", "-t", "-1:-1"]);
    sh.ok(
        "euca-authorize",
        &["web", "-p", "80-81", "-o", "lb", "-u", &account],
    );

    let described = sh.ok("euca-describe-groups", &["web"]);
    let groups = rows(&described, "GROUP");
    assert_eq!(groups.len(), 1, "{described}");
    assert_eq!(
        groups[0][..5],
        [
            "GROUP",
            web_id.as_str(),
            account.as_str(),
            "web",
            "web servers"
        ]
    );
    let perms: Vec<String> = rows(&described, "PERMISSION")
        .iter()
        .map(|f| f.join(" "))
        .collect();
    let has = |text: &str| perms.iter().any(|p| p == text);
    assert!(
        has(&format!(
            "PERMISSION {account} web ALLOWS tcp 22 22 FROM CIDR 10.0.0.0/8 ingress"
        )),
        "{perms:?}"
    );
    assert!(
        has(&format!(
            "PERMISSION {account} web ALLOWS icmp -1 -1 FROM CIDR 0.0.0.0/0 ingress"
        )),
        "{perms:?}"
    );
    assert!(
        perms.iter().any(|p| p.starts_with(&format!(
            "PERMISSION {account} web ALLOWS tcp 80 81 FROM USER {account} "
        )) && p.ends_with(" ingress")),
        "{perms:?}"
    );
    assert!(
        !perms.iter().any(|p| p.contains("tcp 80 81 FROM CIDR")),
        "a group grant carries no 0.0.0.0/0: {perms:?}"
    );
    let by_id = sh.ok("euca-describe-groups", &[&web_id]);
    assert_eq!(by_id, described);

    assert_eq!(
        sh.ok("euca-revoke", &["web", "-p", "22", "-s", "10.0.0.0/8"]),
        "GROUP\tweb\nPERMISSION\tweb\tALLOWS\ttcp\t22\t22\tFROM\tCIDR\t10.0.0.0/8\n"
    );
    let described = sh.ok("euca-describe-groups", &["web"]);
    assert!(!described.contains("10.0.0.0/8"), "{described}");

    // Usage errors are caught before any request, the way argparse reports them.
    let bad = sh.run("euca-authorize", &["web"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("-p/--port-range is required"));

    // A group another's rule names cannot go until that rule does.
    sh.fails_with("euca-delete-group", &["lb"], "InvalidGroup.InUse");
    sh.ok(
        "euca-revoke",
        &["web", "-p", "80-81", "-o", "lb", "-u", &account],
    );
    assert_eq!(sh.ok("euca-delete-group", &["lb"]), "RETURN\ttrue\n");
    assert_eq!(sh.ok("euca-delete-group", &[&web_id]), "RETURN\ttrue\n");
    sh.fails_with("euca-describe-groups", &["web"], "InvalidGroup.NotFound");
    sh.fails_with("euca-delete-group", &["web"], "InvalidGroup.NotFound");
}

#[test]
fn zones_regions_addresses_tags_and_properties() {
    let cloud = Cloud::start();
    let sh = Shell::new(&cloud);

    let zones = sh.ok("euca-describe-availability-zones", &[]);
    assert!(!rows(&zones, "AVAILABILITYZONE").is_empty(), "{zones}");
    let verbose = sh.ok("euca-describe-availability-zones", &["verbose"]);
    assert!(!rows(&verbose, "AVAILABILITYZONE").is_empty(), "{verbose}");
    let regions = sh.ok("euca-describe-regions", &[]);
    let regions = rows(&regions, "REGION");
    assert!(!regions.is_empty());
    assert!(regions
        .iter()
        .all(|r| r.len() == 3 && r[2].starts_with("http")));

    // The admin gives the cloud a pool of public addresses, then one is allocated.
    let out = sh.ok(
        "euca-modify-property",
        &["-p", "cloud.network.public_ips=10.9.0.1-10.9.0.2"],
    );
    assert!(
        out.starts_with("PROPERTY\tcloud.network.public_ips\t10.9.0.1-10.9.0.2 was "),
        "{out}"
    );
    let properties = sh.ok("euca-describe-properties", &["cloud.network"]);
    assert!(
        properties.contains("PROPERTY\tcloud.network.public_ips\t10.9.0.1-10.9.0.2\n"),
        "{properties}"
    );
    let allocated = sh.ok("euca-allocate-address", &[]);
    let fields: Vec<&str> = allocated.trim_end().split('\t').collect();
    assert_eq!(&fields[..1], ["ADDRESS"], "{allocated}");
    assert_eq!(fields[2], "standard", "{allocated}");
    let ip = fields[1].to_owned();
    assert!(ip.starts_with("10.9.0."), "{allocated}");
    let addresses = sh.ok("euca-describe-addresses", &[]);
    let listed = rows(&addresses, "ADDRESS");
    assert!(listed.iter().any(|a| a[1] == ip), "{addresses}");
    assert_eq!(
        sh.ok("euca-release-address", &[&ip]),
        format!("ADDRESS\t{ip}\n")
    );
    let addresses = sh.ok("euca-describe-addresses", &[]);
    assert!(!addresses.contains(&ip), "{addresses}");

    // Tags on a security group.
    let out = sh.ok("euca-create-group", &["tagged", "-d", "tagged"]);
    let sg = out.split('\t').nth(1).expect("group id").to_owned();
    assert_eq!(
        sh.ok(
            "euca-create-tags",
            &[&sg, "--tag", "Name=web", "--tag", "tier"]
        ),
        format!("TAG\tsecurity-group\t{sg}\tName\tweb\nTAG\tsecurity-group\t{sg}\ttier\t\n")
    );
    let tags = sh.ok(
        "euca-describe-tags",
        &["--filter", &format!("resource-id={sg}")],
    );
    let mut tags: Vec<String> = rows(&tags, "TAG").iter().map(|f| f.join(" ")).collect();
    tags.sort();
    assert_eq!(
        tags,
        [
            format!("TAG {sg} security-group Name web"),
            format!("TAG {sg} security-group tier "),
        ]
    );
    assert_eq!(sh.ok("euca-delete-tags", &[&sg, "--tag", "tier"]), "");
    let tags = sh.ok("euca-describe-tags", &[]);
    assert_eq!(rows(&tags, "TAG").len(), 1, "{tags}");
}

#[test]
fn credentials_and_endpoint_flags() {
    let cloud = Cloud::start();
    let mut sh = Shell::new(&cloud);
    let url = sh.env["EC2_URL"].clone();
    let key = sh.env["AWS_ACCESS_KEY_ID"].clone();
    let secret = sh.env["AWS_SECRET_ACCESS_KEY"].clone();
    // euca2ools 1.x names, `REGION::URL`, and nothing else.
    sh.env.clear();
    sh.env.insert("EC2_ACCESS_KEY".into(), key.clone());
    sh.env.insert("EC2_SECRET_KEY".into(), secret.clone());
    sh.env.insert("EC2_URL".into(), format!("elsewhere::{url}"));
    sh.ok("euca-describe-keypairs", &[]);

    // Flags instead of the environment.
    sh.env.clear();
    let out = sh.run("euca-describe-keypairs", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .starts_with("euca-describe-keypairs: error: EC2_URL is not set"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sh.ok(
        "euca-describe-keypairs",
        &[
            "-U", &url, "-I", &key, "-S", &secret, "--region", "admin@r1",
        ],
    );
    sh.fails_with(
        "euca-describe-keypairs",
        &["-U", &url, "-I", &key, "-S", "wrong"],
        "AuthFailure",
    );
}

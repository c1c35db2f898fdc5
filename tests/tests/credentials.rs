//! Credentials as a new admin meets them: the cloud CA and the admin's certificate written on
//! first start, `euca_conf --get-credentials` zips that work after unzipping anywhere, and
//! users and access keys managed through Euare, a disabled key being refused by Walrus.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use euca2ools::client::{query_call, s3_request, xml_text, ClientError, EnvCredentials};
use tests::{koala_bin, Cloud};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("file exists")
        .permissions()
        .mode()
        & 0o777
}

/// `openssl verify -CAfile ca cert`, when openssl is installed (it is an independent X.509
/// implementation; the identity crate's unit tests check the signatures without it).
fn openssl_verifies(ca: &str, cert: &str) -> Option<bool> {
    let out = Command::new("openssl")
        .args(["verify", "-CAfile", ca, cert])
        .output()
        .ok()?;
    Some(out.status.success() && String::from_utf8_lossy(&out.stdout).contains(": OK"))
}

/// The modulus openssl reads from a certificate or an RSA key.
fn openssl_modulus(kind: &str, path: &str) -> Option<String> {
    let out = Command::new("openssl")
        .args([kind, "-noout", "-modulus", "-in", path])
        .output()
        .ok()?;
    assert!(out.status.success(), "{}", stderr(&out));
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Checks that the files a sourced eucarc names exist, hold a certificate signed by the cloud
/// cert and its matching key.
fn check_key_files(env: &HashMap<String, String>) {
    for var in ["EC2_CERT", "EC2_PRIVATE_KEY", "EUCALYPTUS_CERT"] {
        assert!(Path::new(&env[var]).is_file(), "{var}={}", env[var]);
    }
    assert_eq!(mode(Path::new(&env["EC2_PRIVATE_KEY"])), 0o600);
    let cert = &env["EC2_CERT"];
    match openssl_verifies(&env["EUCALYPTUS_CERT"], cert) {
        Some(ok) => assert!(ok, "{cert} does not verify against the cloud cert"),
        None => eprintln!("openssl is not installed: skipping the openssl checks"),
    }
    if let (Some(from_cert), Some(from_key)) = (
        openssl_modulus("x509", cert),
        openssl_modulus("rsa", &env["EC2_PRIVATE_KEY"]),
    ) {
        assert_eq!(from_cert, from_key, "the key is the certificate's");
    }
}

fn euca_conf(args: &[&str], env: &HashMap<String, String>) -> Output {
    Command::new(koala_bin().with_file_name("euca_conf"))
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .envs(env)
        .output()
        .expect("euca_conf runs")
}

/// Lists a zip's entries with Python's zipfile (checking every CRC) and extracts it into
/// `dest` keeping the Unix modes.
fn unzip(zip: &Path, dest: &Path) -> Vec<String> {
    let script = [
        "import os, sys, zipfile",
        "z = zipfile.ZipFile(sys.argv[1])",
        "assert z.testzip() is None",
        "for i in z.infolist():",
        "    path = z.extract(i, sys.argv[2])",
        "    os.chmod(path, i.external_attr >> 16 & 0o777)",
        "    print(i.filename)",
    ]
    .join("\n");
    let out = Command::new("python3")
        .args(["-c", &script])
        .arg(zip)
        .arg(dest)
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn env_creds(env: &HashMap<String, String>) -> EnvCredentials {
    EnvCredentials {
        access_key_id: env["AWS_ACCESS_KEY_ID"].clone(),
        secret_access_key: env["AWS_SECRET_ACCESS_KEY"].clone(),
        region: env["AWS_DEFAULT_REGION"].clone(),
    }
}

fn euare(
    env: &HashMap<String, String>,
    creds: &EnvCredentials,
    action: &str,
    params: &[(&str, &str)],
) -> Result<String, ClientError> {
    query_call(
        &env["EUARE_URL"],
        "iam",
        "2010-05-08",
        action,
        params,
        creds,
    )
}

fn error_code(result: Result<String, ClientError>) -> String {
    match result {
        Err(ClientError::Service { code, .. }) => code,
        other => panic!("expected a service error, got {other:?}"),
    }
}

#[test]
fn first_start_writes_the_cloud_ca_and_a_certificate_it_signed() {
    let cloud = Cloud::start();
    let keys = cloud.dir.path().join("keys");
    assert_eq!(mode(&keys.join("cloud-pk.pem")), 0o600);
    assert!(std::fs::read_to_string(keys.join("cloud-cert.pem"))
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));

    let admin_dir = cloud.dir.path().join("credentials/admin");
    let mut names: Vec<String> = std::fs::read_dir(&admin_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 5, "{names:?}");
    assert_eq!(names[0], "cloud-cert.pem");
    assert!(names[1].starts_with("euca2-admin-") && names[1].ends_with("-cert.pem"));
    assert_eq!(names[2], names[1].replace("-cert.pem", "-pk.pem"));
    assert_eq!(&names[3..], &["euca2ools.ini", "eucarc"]);
    assert_eq!(mode(&admin_dir.join("euca2ools.ini")), 0o600);

    // Sourced from another folder, the eucarc's paths resolve to those files.
    let env = Cloud::sourced_env(&cloud.eucarc());
    assert_eq!(
        env["EC2_CERT"],
        admin_dir.join(&names[1]).display().to_string()
    );
    check_key_files(&env);

    let ini = std::fs::read_to_string(admin_dir.join("euca2ools.ini")).unwrap();
    assert!(ini.contains("[region eucalyptus]\n"), "{ini}");
    assert!(ini.contains(&format!(
        "ec2-url = http://{}/services/compute/\n",
        cloud.addr
    )));
    assert!(ini.contains(&format!("key-id = {}\n", env["AWS_ACCESS_KEY_ID"])));
    assert!(ini.contains(&format!("private-key = {}\n", names[2])));

    // The certificate is the admin's registered signing certificate.
    let listed = euare(&env, &env_creds(&env), "ListSigningCertificates", &[]).unwrap();
    let body = xml_text(&listed, "CertificateBody").unwrap();
    assert_eq!(
        body,
        std::fs::read_to_string(admin_dir.join(&names[1])).unwrap()
    );
}

#[test]
fn euca_conf_downloads_credentials_that_work_anywhere() {
    let cloud = Cloud::start();
    let admin = Cloud::sourced_env(&cloud.eucarc());
    let work = tempfile::tempdir().unwrap();
    let zip = work.path().join("admin.zip");
    let out = euca_conf(&["--get-credentials", zip.to_str().unwrap()], &admin);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&zip), 0o600);

    let unzipped = work.path().join("unzipped");
    let mut entries = unzip(&zip, &unzipped);
    entries.sort();
    assert_eq!(entries.len(), 5, "{entries:?}");
    assert_eq!(entries[0], "cloud-cert.pem");
    assert!(entries[1].starts_with("euca2-admin-") && entries[1].ends_with("-cert.pem"));
    assert_eq!(&entries[3..], &["euca2ools.ini", "eucarc"]);
    if let Ok(listing) = Command::new("unzip").arg("-l").arg(&zip).output() {
        let listing = String::from_utf8_lossy(&listing.stdout);
        assert!(listing.contains("eucarc") && listing.contains("cloud-cert.pem"));
    }

    // Sourced from another folder after unzipping elsewhere: same key, fresh certificate.
    let env = Cloud::sourced_env(&unzipped.join("eucarc"));
    assert_eq!(env["AWS_ACCESS_KEY_ID"], admin["AWS_ACCESS_KEY_ID"]);
    assert_eq!(env["EC2_URL"], admin["EC2_URL"]);
    assert_ne!(
        std::fs::read(&env["EC2_CERT"]).unwrap(),
        std::fs::read(&admin["EC2_CERT"]).unwrap()
    );
    assert_eq!(
        std::fs::read(&env["EUCALYPTUS_CERT"]).unwrap(),
        std::fs::read(&admin["EUCALYPTUS_CERT"]).unwrap()
    );
    check_key_files(&env);
    let (status, _) = s3_request("GET", &format!("{}/", env["S3_URL"]), &env_creds(&env)).unwrap();
    assert_eq!(status, 200);

    // Another account's user, by the cloud admin.
    let out = Cloud::koala(&["admin", "create-account", "alice"], &admin);
    assert!(out.status.success(), "{}", stderr(&out));
    let alice_zip = work.path().join("alice.zip");
    let out = euca_conf(
        &[
            "--get-credentials",
            alice_zip.to_str().unwrap(),
            "--cred-account",
            "alice",
        ],
        &admin,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let alice_dir = work.path().join("alice");
    unzip(&alice_zip, &alice_dir);
    let alice = Cloud::sourced_env(&alice_dir.join("eucarc"));
    assert_ne!(alice["EC2_USER_ID"], admin["EC2_USER_ID"]);
    assert_ne!(alice["AWS_ACCESS_KEY_ID"], admin["AWS_ACCESS_KEY_ID"]);
    check_key_files(&alice);

    // Only the cloud admin may download credentials.
    let denied = euca_conf(
        &[
            "--get-credentials",
            work.path().join("x.zip").to_str().unwrap(),
        ],
        &alice,
    );
    assert!(!denied.status.success());
    assert!(
        stderr(&denied).contains("AccessDenied"),
        "{}",
        stderr(&denied)
    );
    let missing = euca_conf(
        &[
            "--get-credentials",
            work.path().join("y.zip").to_str().unwrap(),
            "--cred-account",
            "nobody",
        ],
        &admin,
    );
    assert!(
        stderr(&missing).contains("NoSuchEntity"),
        "{}",
        stderr(&missing)
    );
    assert!(!work.path().join("y.zip").exists());
}

#[test]
fn users_and_keys_through_euare_and_a_disabled_key_is_refused() {
    let cloud = Cloud::start();
    let admin = Cloud::sourced_env(&cloud.eucarc());
    let admin_creds = env_creds(&admin);
    let s3_root = format!("{}/", admin["S3_URL"]);

    euare(&admin, &admin_creds, "CreateUser", &[("UserName", "bob")]).unwrap();
    let users = euare(&admin, &admin_creds, "ListUsers", &[]).unwrap();
    assert!(users.contains("<UserName>bob</UserName>"), "{users}");
    let key = euare(
        &admin,
        &admin_creds,
        "CreateAccessKey",
        &[("UserName", "bob")],
    )
    .unwrap();
    let bob = EnvCredentials {
        access_key_id: xml_text(&key, "AccessKeyId").unwrap(),
        secret_access_key: xml_text(&key, "SecretAccessKey").unwrap(),
        region: admin_creds.region.clone(),
    };
    let (status, body) = s3_request("GET", &s3_root, &bob).unwrap();
    assert_eq!(status, 200, "{body}");

    // bob is no admin of his account.
    let denied = euare(&admin, &bob, "CreateUser", &[("UserName", "eve")]);
    assert_eq!(error_code(denied), "AccessDenied");

    euare(
        &admin,
        &admin_creds,
        "UpdateAccessKey",
        &[
            ("UserName", "bob"),
            ("AccessKeyId", &bob.access_key_id),
            ("Status", "Inactive"),
        ],
    )
    .unwrap();
    let (status, body) = s3_request("GET", &s3_root, &bob).unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("<Code>InvalidAccessKeyId</Code>"), "{body}");
    let listed = euare(
        &admin,
        &admin_creds,
        "ListAccessKeys",
        &[("UserName", "bob")],
    )
    .unwrap();
    assert!(listed.contains("<Status>Inactive</Status>"), "{listed}");

    euare(
        &admin,
        &admin_creds,
        "DeleteAccessKey",
        &[("UserName", "bob"), ("AccessKeyId", &bob.access_key_id)],
    )
    .unwrap();
    let gone = euare(
        &admin,
        &admin_creds,
        "DeleteAccessKey",
        &[("UserName", "bob"), ("AccessKeyId", &bob.access_key_id)],
    );
    assert_eq!(error_code(gone), "NoSuchEntity");
    let dup = euare(&admin, &admin_creds, "CreateUser", &[("UserName", "bob")]);
    assert_eq!(error_code(dup), "EntityAlreadyExists");
}

/// Runs `koala admin ARGS`, asserting success; its stdout lines.
fn koala_admin(args: &[&str], env: &HashMap<String, String>) -> Vec<String> {
    let mut all = vec!["admin"];
    all.extend_from_slice(args);
    let out = Cloud::koala(&all, env);
    assert!(
        out.status.success(),
        "koala {all:?} failed: {}",
        stderr(&out)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn koala_admin_manages_users_and_keys_of_another_account() {
    let cloud = Cloud::start();
    let admin = Cloud::sourced_env(&cloud.eucarc());
    let s3_root = format!("{}/", admin["S3_URL"]);
    koala_admin(&["create-account", "acme"], &admin);

    let made = koala_admin(&["create-user", "--account", "acme", "carol"], &admin);
    assert_eq!(made, ["USER\tcarol"]);
    let users = koala_admin(&["list-users", "--account", "acme"], &admin);
    assert_eq!(users, ["admin", "carol"]);
    // The admin's own account is untouched: its admin and the cloud's component principals
    // (the CLC, the CC and the node controller of `koala up`, each with its own key).
    let own = koala_admin(&["list-users"], &admin);
    assert!(!own.contains(&"carol".to_owned()), "{own:?}");
    assert_eq!(own[0], "admin");
    assert!(own.contains(&"clc".to_owned()) && own.contains(&"cc-cluster01".to_owned()));

    let key = koala_admin(
        &["create-access-key", "--account", "acme", "--user", "carol"],
        &admin,
    );
    assert_eq!(key.len(), 2, "{key:?}");
    let carol = EnvCredentials {
        access_key_id: key[0].clone(),
        secret_access_key: key[1].clone(),
        region: admin["AWS_DEFAULT_REGION"].clone(),
    };
    assert_eq!(s3_request("GET", &s3_root, &carol).unwrap().0, 200);
    let listed = koala_admin(
        &["list-access-keys", "--account", "acme", "--user", "carol"],
        &admin,
    );
    assert_eq!(listed, [format!("{}\tActive", carol.access_key_id)]);

    let target = ["--account", "acme", "--user", "carol"];
    let with = |verb: &str| {
        let mut args = vec![verb, carol.access_key_id.as_str()];
        args.extend_from_slice(&target);
        koala_admin(&args, &admin);
    };
    with("disable-access-key");
    assert_eq!(s3_request("GET", &s3_root, &carol).unwrap().0, 403);
    with("enable-access-key");
    assert_eq!(s3_request("GET", &s3_root, &carol).unwrap().0, 200);
    with("delete-access-key");
    assert_eq!(s3_request("GET", &s3_root, &carol).unwrap().0, 403);

    // Errors come back as the service's, with a failing exit status.
    let out = Cloud::koala(&["admin", "list-users", "--account", "nobody"], &admin);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("NoSuchEntity"), "{}", stderr(&out));
}

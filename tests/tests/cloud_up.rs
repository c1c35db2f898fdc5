//! `koala up` as a new admin meets it: first start, credentials, restart, and accounts made
//! with `koala admin create-account` against the running cloud.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;

use tests::Cloud;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The `export NAME=VALUE` lines a command printed, as a map (values unquoted).
fn exports(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            (
                k.to_owned(),
                v.trim_matches(|c| c == '\'' || c == '"').to_owned(),
            )
        })
        .collect()
}

#[test]
fn first_start_writes_admin_credentials_and_restart_keeps_them() {
    let mut cloud = Cloud::start();
    assert!(
        cloud
            .banner
            .contains("Created the cloud admin account 'eucalyptus'"),
        "banner: {}",
        cloud.banner
    );
    let eucarc = cloud.eucarc();
    assert!(cloud.banner.contains(&eucarc.display().to_string()));
    let mode = std::fs::metadata(&eucarc).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the eucarc holds a secret");
    assert!(cloud.dir.path().join("koala.toml").exists());

    let env = Cloud::sourced_env(&eucarc);
    let key = env["AWS_ACCESS_KEY_ID"].clone();
    assert_eq!(key.len(), 20, "{key}");
    assert_eq!(env["EC2_ACCESS_KEY"], key);
    assert_eq!(env["EC2_SECRET_KEY"], env["AWS_SECRET_ACCESS_KEY"]);
    assert_eq!(env["AWS_SECRET_ACCESS_KEY"].len(), 40);
    let s3_url = format!("http://{}/services/Walrus", cloud.addr);
    assert_eq!(env["S3_URL"], s3_url);
    assert_eq!(env["AWS_ENDPOINT_URL_S3"], s3_url);
    assert_eq!(env["AWS_DEFAULT_REGION"], "eucalyptus");
    let ec2_url = format!("http://{}/services/compute/", cloud.addr);
    assert_eq!(env["EC2_URL"], ec2_url);
    assert_eq!(env["AWS_ENDPOINT_URL_EC2"], ec2_url);
    for var in ["EC2_CERT", "EC2_PRIVATE_KEY", "EUCALYPTUS_CERT"] {
        assert!(
            std::path::Path::new(&env[var]).is_file(),
            "{var}={}",
            env[var]
        );
    }
    let cert = std::fs::read_to_string(&env["EC2_CERT"]).unwrap();

    cloud.restart();
    assert!(
        !cloud.banner.contains("Created"),
        "banner: {}",
        cloud.banner
    );
    let again = Cloud::sourced_env(&cloud.eucarc());
    assert_eq!(
        again["AWS_ACCESS_KEY_ID"], key,
        "the admin keeps its key across restarts"
    );
    assert_eq!(again["EC2_CERT"], env["EC2_CERT"]);
    assert_eq!(
        std::fs::read_to_string(&again["EC2_CERT"]).unwrap(),
        cert,
        "a restart keeps the admin's certificate"
    );
    assert_eq!(
        std::fs::read_to_string(&again["EUCALYPTUS_CERT"]).unwrap(),
        std::fs::read_to_string(cloud.dir.path().join("keys/cloud-cert.pem")).unwrap()
    );
}

#[test]
fn admin_creates_accounts_and_only_the_admin_may() {
    let cloud = Cloud::start();
    let admin = Cloud::sourced_env(&cloud.eucarc());

    let out = Cloud::koala(&["admin", "create-account", "alice"], &admin);
    assert!(out.status.success(), "stderr: {}", stderr(&out));
    let alice = exports(&stdout(&out));
    assert_eq!(alice["AWS_ACCESS_KEY_ID"].len(), 20);
    assert_ne!(alice["AWS_ACCESS_KEY_ID"], admin["AWS_ACCESS_KEY_ID"]);
    assert_eq!(alice["S3_URL"], admin["S3_URL"]);
    let account_id = &alice["EC2_USER_ID"];
    assert!(
        account_id.len() == 12 && account_id.bytes().all(|b| b.is_ascii_digit()),
        "{account_id}"
    );

    let dup = Cloud::koala(&["admin", "create-account", "alice"], &admin);
    assert!(!dup.status.success());
    assert!(
        stderr(&dup).contains("EntityAlreadyExists"),
        "{}",
        stderr(&dup)
    );

    let mut alice_env = admin.clone();
    alice_env.insert(
        "AWS_ACCESS_KEY_ID".into(),
        alice["AWS_ACCESS_KEY_ID"].clone(),
    );
    alice_env.insert(
        "AWS_SECRET_ACCESS_KEY".into(),
        alice["AWS_SECRET_ACCESS_KEY"].clone(),
    );
    let denied = Cloud::koala(&["admin", "create-account", "bob"], &alice_env);
    assert!(!denied.status.success());
    assert!(
        stderr(&denied).contains("AccessDenied"),
        "{}",
        stderr(&denied)
    );

    let mut forged = admin.clone();
    forged.insert("AWS_SECRET_ACCESS_KEY".into(), "x".repeat(40));
    let bad = Cloud::koala(&["admin", "create-account", "carol"], &forged);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("SignatureDoesNotMatch"),
        "{}",
        stderr(&bad)
    );

    let none = Cloud::koala(&["admin", "create-account", "dave"], &HashMap::new());
    assert!(!none.status.success());
    assert!(stderr(&none).contains("source"), "{}", stderr(&none));
}

#[test]
fn query_api_errors_are_ec2_xml() {
    let cloud = Cloud::start();
    let url = format!(
        "http://{}/?Action=DescribeImages&Version=2015-10-01",
        cloud.addr
    );
    let err = ureq::get(&url)
        .call()
        .expect_err("unsigned EC2 call is refused");
    let ureq::Error::Status(status, response) = err else {
        panic!("transport error");
    };
    assert_eq!(status, 401);
    let body = response.into_string().unwrap();
    assert!(
        body.contains("<Response><Errors><Error><Code>AuthFailure</Code>"),
        "{body}"
    );
    assert!(body.contains("<RequestID>"), "{body}");
}

/// Runs `koala ARGS --data-dir DIR` on a data dir whose koala.toml is `toml`, expecting it to
/// refuse at once; what it printed on stderr. A daemon that starts instead is killed after
/// 30 s and the test fails.
fn refused_at_start(args: &[&str], toml: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("koala.toml"), toml).expect("write koala.toml");
    let listen = tests::free_port().to_string();
    let mut child = std::process::Command::new(tests::koala_bin())
        .args(args)
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--listen", &listen, "--console-listen", "127.0.0.1:0"])
        .env_remove("KOALA_HOME")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("koala starts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for koala") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("koala {args:?} started with koala.toml {toml:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let out = child.wait_with_output().expect("koala's stderr");
    assert!(!status.success(), "koala {args:?} exited 0");
    assert!(
        !dir.path().join("identity").exists(),
        "koala {args:?} opened its stores before refusing its configuration"
    );
    stderr(&out)
}

#[test]
fn bad_configuration_values_are_refused_at_start() {
    let message = refused_at_start(&["up"], "[node]\naccel = \"kvmm\"\n");
    assert!(message.contains("[node] accel (line 2)"), "{message}");
    assert!(
        message.contains("expected one of `auto`, `kvm`, `tcg`"),
        "{message}"
    );
    let cloud_url = ["--cloud-url", "https://127.0.0.1:1"];
    let message = refused_at_start(
        &["cluster", cloud_url[0], cloud_url[1]],
        "[cluster]\npolicy = \"greedy\"\n",
    );
    assert!(message.contains("[cluster] policy (line 2)"), "{message}");
    assert!(
        message.contains("expected `least-loaded` or `round-robin`"),
        "{message}"
    );
    let message = refused_at_start(
        &["node", cloud_url[0], cloud_url[1]],
        "[node]\nacel = \"kvm\"\n",
    );
    assert!(message.contains("unknown field `acel`"), "{message}");
    let message = refused_at_start(
        &["up"],
        "[properties]\n\"cloud.instances.start_timeout\" = \"soon\"\n",
    );
    assert!(
        message.contains("cloud.instances.start_timeout = \"soon\" is refused"),
        "{message}"
    );
    let message = refused_at_start(
        &["up"],
        "[network]\nmode = \"managed-novlan\"\nbridge = \"br0\"\nprivate_subnet = \"10.1.0.1/16\"\n",
    );
    assert!(
        message.contains("the subnet 10.1.0.1/16 cannot be used: the address has host bits set"),
        "{message}"
    );
    let message = refused_at_start(&["up"], "[network]\nmode = \"managed\"\n");
    assert!(
        message.contains("mode = \"managed\" needs private_interface"),
        "{message}"
    );
    // A public address inside the guests' space would be routed to a guest network.
    let message = refused_at_start(
        &["up"],
        "[network]\nmode = \"managed-novlan\"\nbridge = \"br0\"\nprivate_subnet = \"10.77.0.0/24\"\n\
         [properties]\n\"cloud.network.public_ips\" = \"10.77.0.250-10.77.0.251\"\n",
    );
    assert!(
        message.contains(
            "cloud.network.public_ips = \"10.77.0.250-10.77.0.251\" is refused: 10.77.0.250 is \
             inside the guests' private space 10.77.0.0/24"
        ),
        "{message}"
    );
}

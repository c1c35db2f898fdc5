//! Instance start latency through the real `koala up`, split where Koala's work ends:
//!
//! - **overhead**: RunInstances sent → libvirt asked to start the domain: the CLC's checks
//!   and records, the CC's placement, and on the node the cache lookup (and on a miss
//!   Walrus' unbundling and the fetch), the copy-on-write clone, the config drive and the
//!   domain XML;
//! - **running**: RunInstances sent → libvirt reports the domain running.
//!
//! For a 64 MiB and a 2 GiB machine image (the test guest's root disk, and the same grown
//! sparse to 2 GiB), on a cache miss (first run) and a cache hit (second run). Each run is
//! one instance, terminated before the next. Run with
//! `cargo bench -p tests --bench start_latency` (needs libvirt and the test guest, as the
//! tests do; KOALA_BENCH_HITS=N repeats the cache-hit runs).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use euca2ools::client::{query_call, xml_text, EnvCredentials};
use tests::{koala_bin, Cloud};

fn main() {
    let hits: usize = std::env::var("KOALA_BENCH_HITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let guest = Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-guest");
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo");
    let built = Command::new(repo.join("scripts/build-test-guest"))
        .arg(&guest)
        .status()
        .expect("run scripts/build-test-guest");
    assert!(built.success(), "scripts/build-test-guest failed");
    let cloud = Cloud::start();
    let env = Cloud::sourced_env(&cloud.eucarc());
    let work = tempfile::tempdir().expect("work dir");
    let big = work.path().join("disk-2g.img");
    std::fs::copy(guest.join("disk.img"), &big).expect("copy the disk");
    std::fs::File::options()
        .write(true)
        .open(&big)
        .and_then(|f| f.set_len(2 << 30))
        .expect("grow the disk");

    let bench = Bench {
        env,
        tools: koala_bin().parent().expect("bin dir").to_owned(),
        work: work.path().to_owned(),
        node_dir: cloud.dir.path().join("node/instances"),
    };
    let eki = bench.register(&guest.join("vmlinux"), "kernel", &["--kernel", "true"]);
    let eri = bench.register(&guest.join("initrd.img"), "ramdisk", &["--ramdisk", "true"]);
    let images = [("64 MiB", guest.join("disk.img")), ("2 GiB", big.clone())];
    println!("start latency, ms (RunInstances sent → libvirt asked | → domain running)");
    println!(
        "{:<8} {:<6} {:>10} {:>10}",
        "image", "cache", "overhead", "running"
    );
    for (label, path) in images {
        let name = format!("machine-{}", label.replace(' ', ""));
        let emi = bench.register(&path, &name, &["--kernel", &eki, "--ramdisk", &eri]);
        let miss = bench.run_once(&emi);
        println!("{label:<8} {:<6} {:>10} {:>10}", "miss", miss.0, miss.1);
        // The CLC records the image's hash from the node's report at its next sync (every
        // second); from then on a run hands the hash to the node, which needs no Walrus.
        std::thread::sleep(Duration::from_secs(3));
        for _ in 0..hits {
            let hit = bench.run_once(&emi);
            println!("{label:<8} {:<6} {:>10} {:>10}", "hit", hit.0, hit.1);
        }
    }
}

struct Bench {
    env: HashMap<String, String>,
    tools: PathBuf,
    work: PathBuf,
    node_dir: PathBuf,
}

impl Bench {
    fn creds(&self) -> EnvCredentials {
        EnvCredentials {
            access_key_id: self.env["AWS_ACCESS_KEY_ID"].clone(),
            secret_access_key: self.env["AWS_SECRET_ACCESS_KEY"].clone(),
            region: self.env["AWS_DEFAULT_REGION"].clone(),
        }
    }

    fn ec2(&self, action: &str, params: &[(&str, &str)]) -> String {
        query_call(
            &self.env["EC2_URL"],
            "ec2",
            "2015-10-01",
            action,
            params,
            &self.creds(),
        )
        .unwrap_or_else(|e| panic!("{action}: {e}"))
    }

    fn tool(&self, name: &str, args: &[&str]) -> String {
        let out = Command::new(self.tools.join(name))
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .envs(&self.env)
            .output()
            .expect("run a tool");
        assert!(
            out.status.success(),
            "{name} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Bundles, uploads and registers `path`; the image id.
    fn register(&self, path: &Path, name: &str, extra: &[&str]) -> String {
        let dest = self.work.join(name);
        let dest_s = dest.to_string_lossy().into_owned();
        let path_s = path.to_string_lossy().into_owned();
        let mut args = vec![
            "-i",
            &path_s,
            "-r",
            "x86_64",
            "-d",
            &dest_s,
            "--no-progress",
        ];
        args.extend_from_slice(extra);
        self.tool("euca-bundle-image", &args);
        let file = path.file_name().expect("file name").to_string_lossy();
        let manifest = dest.join(format!("{file}.manifest.xml"));
        let bucket = format!("bench/{name}");
        self.tool(
            "euca-upload-bundle",
            &["-b", &bucket, "-m", &manifest.to_string_lossy()],
        );
        let out = self.tool(
            "euca-register",
            &[&format!("{bucket}/{file}.manifest.xml"), "-n", name],
        );
        out.split('\t').nth(1).expect("IMAGE\tid").trim().to_owned()
    }

    /// One instance of `emi` from RunInstances to running, then terminated: (overhead ms,
    /// running ms).
    fn run_once(&self, emi: &str) -> (u64, u64) {
        let sent = now_ms();
        let body = self.ec2(
            "RunInstances",
            &[("ImageId", emi), ("MinCount", "1"), ("MaxCount", "1")],
        );
        let id = xml_text(&body, "instanceId").expect("an instance id");
        let state_file = self.node_dir.join(&id).join("state.json");
        let deadline = Instant::now() + Duration::from_secs(600);
        let timings = loop {
            let state: serde_json::Value = std::fs::read(&state_file)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            if state["state"] == "terminated" {
                panic!("{id} ended: {}", state["reason"]);
            }
            let t = &state["timings"];
            if let (Some(asked), Some(running)) =
                (t["libvirt_asked"].as_u64(), t["running"].as_u64())
            {
                break (asked - sent, running - sent);
            }
            assert!(Instant::now() < deadline, "{id} did not run within 600 s");
            std::thread::sleep(Duration::from_millis(20));
        };
        self.ec2("TerminateInstances", &[("InstanceId.1", &id)]);
        timings
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

//! Instance start latency through the real `koala up`, split where Koala's work ends:
//!
//! - **overhead**: RunInstances sent → libvirt asked to start the domain: the CLC's checks
//!   and records, the CC's placement, and on the node the cache lookup (and on a miss the
//!   fetch of the image, or with lazy images only its chunk list), the copy-on-write clone,
//!   the config drive and the domain XML;
//! - **running**: RunInstances sent → libvirt reports the domain running;
//! - **marker**: RunInstances sent → the guest printed its ready marker, having mounted its
//!   root disk (read, on a lazy miss, through the node's NBD export as it arrives);
//! - **fetched**: on a lazy miss, the MiB of the root image the node had fetched from Walrus
//!   when the domain was running.
//!
//! For a 64 MiB and a 2 GiB machine image (the test guest's root disk, and the same grown
//! sparse to 2 GiB), on a cache miss (first run, the image already unbundled by Walrus at
//! registration) and a cache hit (second run); then, in the same run, the misses again with
//! `[node] lazy_images = false`, the full copy before the start that was the only path
//! before. Each run is one instance, terminated before the next. Run with
//! `cargo bench -p tests --bench start_latency` (needs libvirt and the test guest, as the
//! tests do; KOALA_BENCH_HITS=N repeats the cache-hit runs).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use euca2ools::client::{query_call, xml_text, ClientError, EnvCredentials};
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
    let mut cloud = Cloud::start();
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
        data_dir: cloud.dir.path().to_owned(),
    };
    let eki = bench.register(&guest.join("vmlinux"), "kernel", &["--kernel", "true"]);
    let eri = bench.register(&guest.join("initrd.img"), "ramdisk", &["--ramdisk", "true"]);
    let images = [("64 MiB", guest.join("disk.img")), ("2 GiB", big.clone())];
    println!(
        "start latency, ms (RunInstances sent → libvirt asked | → domain running | → guest \
         ready), and MiB of the image fetched when running"
    );
    println!(
        "{:<8} {:<10} {:>10} {:>10} {:>10} {:>9}",
        "image", "cache", "overhead", "running", "marker", "fetched"
    );
    let mut registered = Vec::new();
    for (label, path) in &images {
        let name = format!("machine-{}", label.replace(' ', ""));
        let emi = bench.register(path, &name, &["--kernel", &eki, "--ramdisk", &eri]);
        let sha = bench.wait_unbundled(path);
        bench.run_once(label, "lazy miss", &emi);
        // The rest of the image arrives behind the guest; hits begin once it is cached.
        bench.wait_cached(&sha);
        for _ in 0..hits {
            bench.run_once(label, "hit", &emi);
        }
        registered.push((label, emi, sha));
    }
    // The full copy before the start, in the same run: the node restarted without lazy
    // images, the machine images gone from its cache (kernel and ramdisk stay).
    cloud.stop();
    std::fs::write(
        cloud.dir.path().join("koala.toml"),
        "[node]\nlazy_images = false\n",
    )
    .expect("write koala.toml");
    for (_, _, sha) in &registered {
        let _ = std::fs::remove_file(bench.data_dir.join("node/cache/sha256").join(sha));
    }
    cloud.restart();
    for (label, emi, _) in &registered {
        bench.run_once(label, "copy miss", emi);
    }
}

struct Bench {
    env: HashMap<String, String>,
    tools: PathBuf,
    work: PathBuf,
    data_dir: PathBuf,
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
        self.try_ec2(action, params)
            .unwrap_or_else(|e| panic!("{action}: {e}"))
    }

    fn try_ec2(&self, action: &str, params: &[(&str, &str)]) -> Result<String, ClientError> {
        query_call(
            &self.env["EC2_URL"],
            "ec2",
            "2015-10-01",
            action,
            params,
            &self.creds(),
        )
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

    /// Waits until Walrus has unbundled the image of `path` (RegisterImage started it); the
    /// image's SHA-256.
    fn wait_unbundled(&self, path: &Path) -> String {
        let out = Command::new("sha256sum")
            .arg(path)
            .output()
            .expect("run sha256sum");
        let sha = String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .expect("a digest")
            .to_owned();
        let images = self.data_dir.join("walrus/images");
        wait_for(600, "Walrus to unbundle the image", || {
            images.join("sha256").join(&sha).exists() && images.join("chunks").join(&sha).exists()
        });
        sha
    }

    /// Waits until the node's cache holds the image `sha`, complete and verified.
    fn wait_cached(&self, sha: &str) {
        let cached = self.data_dir.join("node/cache/sha256").join(sha);
        wait_for(600, "the image to be cached", || cached.exists());
    }

    /// One instance of `emi` from RunInstances to its guest's ready marker, then terminated;
    /// prints its line.
    fn run_once(&self, label: &str, cache: &str, emi: &str) {
        // After a restart the cluster knows its node's room at its first poll: until then a
        // run is refused for want of capacity, and asked again.
        let asking = Instant::now();
        let (sent, body) = loop {
            let sent = now_ms();
            match self.try_ec2(
                "RunInstances",
                &[("ImageId", emi), ("MinCount", "1"), ("MaxCount", "1")],
            ) {
                Ok(body) => break (sent, body),
                Err(e)
                    if e.to_string().contains("InsufficientInstanceCapacity")
                        && asking.elapsed() < Duration::from_secs(60) =>
                {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("RunInstances: {e}"),
            }
        };
        let id = xml_text(&body, "instanceId").expect("an instance id");
        let dir = self.data_dir.join("node/instances").join(&id);
        let mut timings = None;
        let mut marker = None;
        let deadline = Instant::now() + Duration::from_secs(600);
        while timings.is_none() || marker.is_none() {
            let state: serde_json::Value = std::fs::read(dir.join("state.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            if state["state"] == "terminated" {
                panic!("{id} ended: {}", state["reason"]);
            }
            let t = &state["timings"];
            if let (None, Some(asked), Some(running)) =
                (timings, t["libvirt_asked"].as_u64(), t["running"].as_u64())
            {
                let fetched = t["base_fetched_bytes"].as_u64();
                timings = Some((asked - sent, running - sent, fetched));
            }
            if marker.is_none()
                && std::fs::read_to_string(dir.join("console.log"))
                    .is_ok_and(|log| log.contains("KOALA-GUEST-READY"))
            {
                marker = Some(now_ms() - sent);
            }
            assert!(Instant::now() < deadline, "{id} was not ready within 600 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.ec2("TerminateInstances", &[("InstanceId.1", &id)]);
        let (overhead, running, fetched) = timings.unwrap_or_default();
        let fetched = fetched
            .map(|b| format!("{:.1}", b as f64 / f64::from(1 << 20)))
            .unwrap_or_else(|| "-".into());
        println!(
            "{label:<8} {cache:<10} {overhead:>10} {running:>10} {:>10} {fetched:>9}",
            marker.unwrap_or_default()
        );
    }
}

/// Polls `done` every 100 ms for up to `secs`.
fn wait_for(secs: u64, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "waited {secs} s for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

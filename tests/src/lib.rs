//! Shared helpers for the end-to-end suites: start the real `koala` binary on a free loopback
//! port with a fresh data dir, wait until it answers, read the admin's eucarc, stop it.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The `koala` binary under test: `$KOALA_BIN`, else the one built beside this test binary
/// (`cargo build --workspace` puts both in `target/<profile>/`).
pub fn koala_bin() -> PathBuf {
    if let Ok(path) = std::env::var("KOALA_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test binary knows its path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binaries live in target/<profile>/deps");
    let bin = profile_dir.join("koala");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace` (same profile) before the tests",
        bin.display()
    );
    bin
}

/// A running cloud: `koala up` on loopback with its own data dir, stopped on drop.
pub struct Cloud {
    child: Option<Child>,
    /// The data dir (removed on drop).
    pub dir: tempfile::TempDir,
    /// Where it listens (the cluster controller on the next port, the node on the one after).
    pub addr: SocketAddr,
    /// What it printed on stdout until it was ready.
    pub banner: String,
}

impl Cloud {
    /// Starts `koala up` on a free port and waits until it accepts connections.
    pub fn start() -> Cloud {
        let dir = tempfile::tempdir().expect("temp dir");
        // QEMU's user must reach the node controller's disks inside (tempdir makes 0700).
        std::fs::set_permissions(
            dir.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("open the data dir");
        let addr = free_port();
        let mut cloud = Cloud {
            child: None,
            dir,
            addr,
            banner: String::new(),
        };
        cloud.boot();
        cloud
    }

    fn boot(&mut self) {
        let stdout = self.dir.path().join("koala.stdout");
        let child = Command::new(koala_bin())
            .args(["up", "--data-dir"])
            .arg(self.dir.path())
            .args(["--listen", &self.addr.to_string()])
            // Its web console on a free port, not every test cloud on 8443.
            .args(["--console-listen", "127.0.0.1:0"])
            .env_remove("KOALA_HOME")
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(Stdio::inherit())
            .spawn()
            .expect("koala starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        // Up when its own banner names its port: a port that merely accepts could be another
        // test's cloud's.
        let own = format!(":{}/", self.addr.port());
        let announced = || {
            std::fs::read_to_string(&stdout).is_ok_and(|s| {
                s.lines()
                    .any(|l| l.contains("is serving at") && l.contains(&own))
            })
        };
        while TcpStream::connect(self.addr).is_err() || !announced() {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("koala exited early with {status}");
                }
            }
            assert!(
                Instant::now() < deadline,
                "koala did not listen within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.banner = std::fs::read_to_string(&stdout).unwrap_or_default();
    }

    /// Stops the process (SIGTERM, then waits) and starts it again on the same data dir.
    pub fn restart(&mut self) {
        self.stop();
        self.boot();
    }

    /// Stops the process gracefully.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The admin's eucarc.
    pub fn eucarc(&self) -> PathBuf {
        self.dir.path().join("credentials/admin/eucarc")
    }

    /// The variables a shell has after sourcing `eucarc` from another directory.
    pub fn sourced_env(eucarc: &Path) -> HashMap<String, String> {
        let out = Command::new("bash")
            .current_dir("/")
            .arg("-c")
            .arg(format!(". '{}' && env -0", eucarc.display()))
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .output()
            .expect("bash runs");
        assert!(out.status.success(), "sourcing {} failed", eucarc.display());
        out.stdout
            .split(|&b| b == 0)
            .filter_map(|kv| {
                let kv = String::from_utf8_lossy(kv);
                kv.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
            })
            .collect()
    }

    /// Runs `koala ARGS` with the given environment only (plus PATH).
    pub fn koala(args: &[&str], env: &HashMap<String, String>) -> Output {
        Command::new(koala_bin())
            .args(args)
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .envs(env)
            .output()
            .expect("koala runs")
    }
}

impl Drop for Cloud {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback address with a port P nobody listens on right now, nor on P+1 and P+2, where
/// `koala up` runs its cluster and node controllers. P is a multiple of 4, so that clouds
/// started at once by tests running in parallel never have overlapping port triples (two
/// bind(0) calls close in time get nearby ports: P+2 of one was seen to be P of another). The
/// kernel's bind(0) gives odd ports, so P is the next multiple of 4 above the one it gave.
pub fn free_port() -> SocketAddr {
    for _ in 0..100 {
        let given = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind loopback")
            .port();
        let Some(base) = given.checked_add(3).map(|p| p & !3) else {
            continue;
        };
        let free = |offset: u16| {
            base.checked_add(offset)
                .and_then(|p| TcpListener::bind(("127.0.0.1", p)).ok())
        };
        if let (Some(_), Some(_), Some(_)) = (free(0), free(1), free(2)) {
            return SocketAddr::from(([127, 0, 0, 1], base));
        }
    }
    panic!("no three consecutive free ports on loopback");
}

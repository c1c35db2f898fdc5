//! A guest's NIC plugged for real: Koala's test guest started paused through libvirt's
//! qemu:///system with a NIC, its tap (made by libvirt in libvirtd's network namespace)
//! moved by the node's plug code into a namespace the test creates, `kn-<pid>`, and enslaved
//! to the bridge there, then the guest let run; after the domain's end no tap is left.
//!
//! It needs root, `ip`, libvirtd (scripts/start-libvirt) and the test guest
//! (scripts/build-test-guest); without them it fails, it does not skip. The only host object
//! it touches outside its namespace is the tap libvirt makes, which the plug moves away at
//! once; the namespace is deleted and the domain destroyed even on panic.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::fs::{OpenOptions, Permissions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use compute::accel::Accel;
use compute::console::{wait_for_lines, GUEST_READY};
use compute::domain::{Disk, DiskFormat, DomainSpec, VmSize};
use compute::hypervisor::{DomainState, Hypervisor, SYSTEM_URI};
use compute::node::nic;
use compute::qemu_user::{self, QemuUser};
use network::{Links, Netns, NetworkSettings};
use rpc::NicOrder;

const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// The network namespace `kn-<pid>`, deleted on drop, panic or not.
struct Namespace(String);

impl Namespace {
    fn new() -> Namespace {
        let name = format!("kn-{}", std::process::id());
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .expect("ip (iproute2) is needed");
        assert!(
            out.status.success(),
            "cannot create the network namespace {name} (this test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Namespace(name)
    }

    /// `ip -n NS ARGS`: whether it succeeded, and what it printed.
    fn ip(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("ip")
            .args(["-n", &self.0])
            .args(args)
            .output()
            .expect("ip");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Destroys and undefines the domain when dropped: a failed assertion leaks nothing.
struct DomainGuard<'a> {
    hypervisor: &'a Hypervisor,
    name: &'a str,
}

impl Drop for DomainGuard<'_> {
    fn drop(&mut self) {
        let _ = self.hypervisor.destroy(self.name);
    }
}

/// Koala's test guest (scripts/build-test-guest), built once and cached under target/tmp.
fn test_guest() -> (PathBuf, PathBuf, PathBuf) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-guest");
    let status = Command::new(repo.join("scripts/build-test-guest"))
        .arg(&out)
        .status()
        .expect("run scripts/build-test-guest");
    assert!(status.success(), "scripts/build-test-guest failed");
    (
        out.join("vmlinux"),
        out.join("initrd.img"),
        out.join("disk.img"),
    )
}

/// Whether an interface of this name is in the test process's own namespace (a look only).
fn in_root_namespace(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_guests_tap_is_moved_into_the_nodes_namespace_and_plugged() {
    let ns = Namespace::new();
    assert!(ns.ip(&["link", "add", "br-guests", "type", "bridge"]).0);
    assert!(ns.ip(&["link", "set", "br-guests", "up"]).0);

    let (vmlinux, initrd, base) = test_guest();
    let user = QemuUser::lookup(qemu_user::DEFAULT_NAME).expect("libvirt's QEMU user");
    let dir = tempfile::Builder::new()
        .prefix("nic")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    std::fs::set_permissions(dir.path(), Permissions::from_mode(0o755)).unwrap();
    let overlay = dir.path().join("disk.qcow2");
    let made = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(&base)
        .arg(&overlay)
        .status()
        .expect("run qemu-img");
    assert!(made.success());
    user.give(&overlay).unwrap();
    let log = dir.path().join("console.log");
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    user.give(&log).unwrap();

    // An instance id of this run's own, so that its tap name is too.
    let id = format!("i-{:08x}", std::process::id());
    let tap = network::tap_name(&id);
    let order = NicOrder {
        mac: "d0:0d:0a:4d:00:02".parse().unwrap(),
        private_ip: "10.77.0.2".parse().unwrap(),
        network: 0,
        vlan: None,
    };
    let spec = DomainSpec {
        node: "koala-test".into(),
        name: id.clone(),
        accel: Accel::Tcg,
        size: VmSize {
            vcpus: 1,
            memory_mib: 256,
        },
        kernel: vmlinux,
        initrd: Some(initrd),
        extra_cmdline: "quiet".into(),
        root_disk: Disk {
            path: overlay,
            format: DiskFormat::Qcow2,
            readonly: false,
        },
        blank_disks: Vec::new(),
        config_drive: None,
        nic: Some(nic::domain_nic(&id, &order)),
        console_log: log.clone(),
        qemu_user: user,
    };

    let settings: NetworkSettings =
        toml::from_str("mode = \"system\"\nbridge = \"br-guests\"").unwrap();
    let links = Links::open(
        &settings.layout().unwrap(),
        Netns::named(&ns.0).unwrap(),
        dir.path().join("links.json"),
    )
    .await
    .unwrap();

    let hv = Hypervisor::open(SYSTEM_URI).expect("libvirtd (run scripts/start-libvirt)");
    hv.destroy(&id).unwrap(); // a leftover of an interrupted run
    let guard = DomainGuard {
        hypervisor: &hv,
        name: &id,
    };
    hv.define_and_start_paused(&spec.to_xml()).unwrap();
    assert_eq!(hv.state(&id).unwrap(), Some(DomainState::Paused));
    // libvirt made the tap in its own namespace, this process's.
    assert!(in_root_namespace(&tap));

    let bridge = nic::plug(&links, &id, &order).await.unwrap();
    assert_eq!(bridge, "br-guests");
    assert!(
        !in_root_namespace(&tap),
        "the tap left the host's namespace"
    );
    assert!(links.is_plugged(&tap, "br-guests").await.unwrap());
    let (found, shown) = ns.ip(&["-d", "link", "show", &tap]);
    assert!(found, "the tap is in {}", ns.0);
    assert!(shown.contains("master br-guests"), "{shown}");
    assert!(shown.contains(",UP"), "{shown}");
    // libvirt gives the host side of the tap the guest's MAC with fe as its first byte.
    assert!(shown.contains("fe:0d:0a:4d:00:02"), "{shown}");

    hv.resume(&id).unwrap();
    assert_eq!(hv.state(&id).unwrap(), Some(DomainState::Running));
    // Plugging again, as a restarted node does, changes nothing.
    nic::plug(&links, &id, &order).await.unwrap();
    assert!(links.is_plugged(&tap, "br-guests").await.unwrap());

    // The guest boots with its NIC.
    let lines = wait_for_lines(&log, GUEST_READY, 1, BOOT_TIMEOUT).unwrap();
    assert!(
        lines.is_some(),
        "no {GUEST_READY} within {BOOT_TIMEOUT:?}; console:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(hv.state(&id).unwrap(), Some(DomainState::Running));

    // The tap goes with QEMU, wherever it was moved.
    drop(guard);
    assert_eq!(hv.state(&id).unwrap(), None);
    let (_, left) = ns.ip(&["-o", "link", "show"]);
    assert!(!left.contains(&tap), "{left}");
    assert!(!in_root_namespace(&tap));
    assert!(
        ns.ip(&["link", "show", "br-guests"]).0,
        "the site's bridge stays"
    );
}

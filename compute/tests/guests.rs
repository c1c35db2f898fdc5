//! Boots Koala's test guest for real through libvirt's qemu:///system (CI runs
//! scripts/start-libvirt first).
//!
//! One guest under TCG: a qcow2 overlay on the raw base disk, a NoCloud config drive, the
//! console to a log; the guest prints its instance id and key name from the config drive, a
//! reset boots it again, destroying it leaves no domain behind. And the accelerator probe: it
//! boots the guest under KVM and falls back to TCG when no marker comes (as on hosts whose KVM
//! does not boot stock kernels), keeps the result for the process and leaves nothing behind.
//! The two run one after the other (a hung KVM probe spins a core), under one lock.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

use std::fs::{OpenOptions, Permissions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use compute::accel::{select, Accel, AccelChoice, Probe, ProbeGuest};
use compute::config_drive::ConfigDrive;
use compute::console::{wait_for_lines, GUEST_READY};
use compute::domain::{Disk, DiskFormat, DomainSpec, VmSize};
use compute::hypervisor::{DomainState, Hypervisor, SYSTEM_URI};
use compute::qemu_user::{self, QemuUser};

/// Serialises the tests that boot guests.
static GUESTS: Mutex<()> = Mutex::new(());

fn one_guest_at_a_time() -> MutexGuard<'static, ()> {
    GUESTS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Koala's test guest (scripts/build-test-guest), built once and cached under target/tmp.
struct TestGuest {
    vmlinux: PathBuf,
    initrd: PathBuf,
    disk: PathBuf,
}

fn test_guest() -> TestGuest {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("test-guest");
    let status = Command::new(repo.join("scripts/build-test-guest"))
        .arg(&out)
        .status()
        .expect("run scripts/build-test-guest");
    assert!(status.success(), "scripts/build-test-guest failed");
    TestGuest {
        vmlinux: out.join("vmlinux"),
        initrd: out.join("initrd.img"),
        disk: out.join("disk.img"),
    }
}

fn qemu_user() -> QemuUser {
    QemuUser::lookup(qemu_user::DEFAULT_NAME).expect("libvirt's QEMU user (run scripts/setup)")
}

/// A fresh folder under target/tmp that QEMU's user can traverse.
fn instance_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("instance")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap();
    std::fs::set_permissions(dir.path(), Permissions::from_mode(0o755)).unwrap();
    dir
}

/// An empty console log that QEMU's user may append to.
fn console_log(dir: &Path, user: QemuUser) -> PathBuf {
    let log = dir.join("console.log");
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    user.give(&log).unwrap();
    log
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

const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn boots_resets_and_destroys_a_guest_under_tcg() {
    let _one = one_guest_at_a_time();
    let guest = test_guest();
    let user = qemu_user();
    let dir = instance_dir();
    let id = "i-12345678";

    let overlay = dir.path().join("disk.qcow2");
    let status = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
        .arg(&guest.disk)
        .arg(&overlay)
        .status()
        .expect("run qemu-img");
    assert!(status.success());
    user.give(&overlay).unwrap();
    let config = dir.path().join("config.iso");
    ConfigDrive {
        instance_id: id.into(),
        hostname: id.into(),
        public_keys: vec![("mykey".into(), "ssh-rsa AAAAB3NzaC1yc2E mykey".into())],
        user_data: b"#!/bin/sh\necho hello\n".to_vec(),
    }
    .write(&config)
    .unwrap();
    let log = console_log(dir.path(), user);

    let spec = DomainSpec {
        node: "koala-test".into(),
        name: id.into(),
        accel: Accel::Tcg,
        size: VmSize {
            vcpus: 1,
            memory_mib: 256,
        },
        kernel: guest.vmlinux.clone(),
        initrd: Some(guest.initrd.clone()),
        extra_cmdline: "quiet".into(),
        root_disk: Disk {
            path: overlay.clone(),
            format: DiskFormat::Qcow2,
            readonly: false,
        },
        blank_disks: Vec::new(),
        config_drive: Some(config),
        nic: None,
        console_log: log.clone(),
        qemu_user: user,
    };

    let hv = Hypervisor::open(SYSTEM_URI).expect("libvirtd (run scripts/start-libvirt)");
    hv.destroy(id).unwrap(); // a leftover of an interrupted run
    let guard = DomainGuard {
        hypervisor: &hv,
        name: id,
    };

    let start = Instant::now();
    hv.define_and_start(&spec.to_xml()).unwrap();
    let started = start.elapsed();
    assert_eq!(hv.state(id).unwrap(), Some(DomainState::Running));
    assert!(hv
        .list()
        .unwrap()
        .iter()
        .any(|d| d.name == id && d.state == DomainState::Running));
    let qemu_uid = qemu_process_uid(id);
    assert_eq!(
        qemu_uid, user.uid,
        "QEMU runs as libvirt's unprivileged user"
    );

    let lines = wait_for_lines(&log, GUEST_READY, 1, BOOT_TIMEOUT).unwrap();
    let booted = start.elapsed();
    let lines = lines.unwrap_or_else(|| {
        panic!(
            "no {GUEST_READY} within {BOOT_TIMEOUT:?}; console:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    assert_eq!(
        lines,
        vec![format!("{GUEST_READY} instance-id={id} key=mykey")]
    );
    let console = std::fs::read_to_string(&log).unwrap();
    assert!(
        console.contains("koala-guest: root disk koala-test-root"),
        "{console}"
    );

    let reset_at = Instant::now();
    hv.reset(id).unwrap();
    let lines = wait_for_lines(&log, GUEST_READY, 2, BOOT_TIMEOUT).unwrap();
    let rebooted = reset_at.elapsed();
    let console = std::fs::read_to_string(&log).unwrap();
    let lines = lines.unwrap_or_else(|| panic!("no marker after a reset; console:\n{console}"));
    assert_eq!(lines[1], lines[0], "console:\n{console}");
    assert_eq!(hv.state(id).unwrap(), Some(DomainState::Running));

    drop(guard);
    assert_eq!(hv.state(id).unwrap(), None);
    assert!(hv.list().unwrap().iter().all(|d| d.name != id));
    assert!(!hv.destroy(id).unwrap());
    // Nothing holds the overlay any more: the node controller's cleanup removes the folder.
    let path = dir.path().to_owned();
    dir.close().unwrap();
    assert!(!overlay.exists() && !path.exists());

    println!(
        "TCG boot: define+start returned (domain running) after {:.0} ms; marker after {:.1} s; \
         after a reset, marker again after {:.1} s",
        started.as_secs_f64() * 1000.0,
        booted.as_secs_f64(),
        rebooted.as_secs_f64()
    );
}

#[test]
fn a_domain_that_cannot_start_leaves_no_definition() {
    let dir = instance_dir();
    let user = qemu_user();
    let id = "i-0badc0de";
    let spec = DomainSpec {
        node: "koala-test".into(),
        name: id.into(),
        accel: Accel::Tcg,
        size: VmSize {
            vcpus: 1,
            memory_mib: 128,
        },
        kernel: dir.path().join("no-such-kernel"),
        initrd: None,
        extra_cmdline: String::new(),
        root_disk: Disk {
            path: dir.path().join("no-such-disk"),
            format: DiskFormat::Raw,
            readonly: false,
        },
        blank_disks: Vec::new(),
        config_drive: None,
        nic: None,
        console_log: console_log(dir.path(), user),
        qemu_user: user,
    };
    let hv = Hypervisor::open(SYSTEM_URI).expect("libvirtd (run scripts/start-libvirt)");
    hv.destroy(id).unwrap();
    let err = hv.define_and_start(&spec.to_xml()).unwrap_err();
    assert!(matches!(err, compute::Error::Libvirt { .. }), "{err}");
    assert_eq!(hv.state(id).unwrap(), None);
}

/// The user id of the domain's QEMU process, from libvirt's pid file.
fn qemu_process_uid(name: &str) -> u32 {
    let pid = std::fs::read_to_string(format!("/run/libvirt/qemu/{name}.pid")).unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    uid_line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn auto_probes_once_and_cleans_up() {
    let _one = one_guest_at_a_time();
    let guest = test_guest();
    let work = instance_dir();
    let probe = Probe {
        guest: ProbeGuest::Marked {
            kernel: guest.vmlinux,
            initrd: guest.initrd,
            disk: guest.disk,
        },
        work_dir: work.path().to_owned(),
        cache: None,
        timeout: Duration::from_secs(10),
        qemu_user: qemu_user(),
    };
    let hv = Hypervisor::open(SYSTEM_URI).expect("libvirtd (run scripts/start-libvirt)");

    assert_eq!(select(AccelChoice::Tcg, &hv, &probe).unwrap(), Accel::Tcg);
    assert_eq!(select(AccelChoice::Kvm, &hv, &probe).unwrap(), Accel::Kvm);

    let first = Instant::now();
    let accel = select(AccelChoice::Auto, &hv, &probe).unwrap();
    let probed_in = first.elapsed();
    let again = Instant::now();
    assert_eq!(select(AccelChoice::Auto, &hv, &probe).unwrap(), accel);
    assert!(
        again.elapsed() < Duration::from_millis(100),
        "the result is cached"
    );

    assert!(hv
        .list()
        .unwrap()
        .iter()
        .all(|d| !d.name.starts_with("koala-kvm-probe")));
    // The probe's own folder is gone; only the work folder is left, empty.
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 0);
    println!(
        "accelerator probe: {accel:?} after {:.1} s",
        probed_in.as_secs_f64()
    );
}

#[test]
fn a_kernel_alone_probe_boots_to_its_panic() {
    let _one = one_guest_at_a_time();
    let guest = test_guest();
    let work = instance_dir();
    let probe = Probe {
        guest: ProbeGuest::Kernel(guest.vmlinux),
        work_dir: work.path().to_owned(),
        cache: Some(work.path().join("accel-probe")),
        timeout: Duration::from_secs(120),
        qemu_user: qemu_user(),
    };
    let hv = Hypervisor::open(SYSTEM_URI).expect("libvirtd (run scripts/start-libvirt)");
    // Under TCG, which always works, the kernel gets through its boot to the panic that
    // proves it: the probe's marker is sound. (Whether KVM works depends on the host.)
    let started = Instant::now();
    assert!(probe.boots_under(&hv, Accel::Tcg).unwrap());
    println!(
        "a kernel alone reached its panic under TCG in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(hv
        .list()
        .unwrap()
        .iter()
        .all(|d| !d.name.starts_with("koala-kvm-probe")));
    assert_eq!(std::fs::read_dir(work.path()).unwrap().count(), 0);
}

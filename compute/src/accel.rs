//! KVM or TCG: which accelerator the node's guests run under.
//!
//! `/dev/kvm` opening proves nothing: on some hosts (a paravirtual KVM) it opens and
//! `KVM_CREATE_VM` succeeds, yet a stock kernel hangs silently. So `auto` boots a real kernel
//! under KVM with a timeout and uses KVM only if the kernel gets through its boot in time;
//! else TCG, QEMU's software emulation, which boots everywhere (slowly). With no probe guest
//! configured the probe boots the host's own kernel (`/boot/vmlinuz-*`), which needs no
//! ramdisk: it runs until it finds no root file system and panics, and that panic on the
//! console is the proof. The result is kept for the process, and in a file beside the node's
//! instances for later starts on the same host kernel.

use std::fs::{OpenOptions, Permissions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::console::{wait_for_lines, GUEST_READY};
use crate::domain::{Disk, DiskFormat, DomainSpec, VmSize};
use crate::hypervisor::Hypervisor;
use crate::qemu_user::QemuUser;
use crate::Error;

/// An accelerator a domain runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation through `/dev/kvm`.
    Kvm,
    /// QEMU's tiny code generator: software emulation.
    Tcg,
}

impl Accel {
    /// The `type` of a libvirt `<domain>` running under this accelerator.
    pub fn domain_type(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "qemu",
        }
    }
}

/// The node's accelerator setting, `[node] accel` in koala.toml: a value it does not name
/// is refused when the file is read, before any role starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccelChoice {
    /// KVM if a probe guest boots under it, else TCG.
    #[default]
    Auto,
    /// Always KVM.
    Kvm,
    /// Always TCG.
    Tcg,
}

/// The guest the KVM probe boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeGuest {
    /// A kernel and ramdisk that print [`GUEST_READY`] on the serial console (Koala's test
    /// guest, `scripts/build-test-guest`), with a raw root disk attached read-only.
    Marked {
        /// The kernel.
        kernel: PathBuf,
        /// The ramdisk.
        initrd: PathBuf,
        /// The root disk (never written).
        disk: PathBuf,
    },
    /// A Linux kernel alone, such as the host's own: it boots until it finds no root file
    /// system and panics ([`KERNEL_PANIC`] on the console).
    Kernel(PathBuf),
}

/// How a kernel's panic line begins (with `printk.time=0`).
pub const KERNEL_PANIC: &str = "Kernel panic";

/// The host's own kernel, for a probe that needs no configuration: the running release's
/// `/boot/vmlinuz-RELEASE`, else the newest `/boot/vmlinuz-*` (containers often have none).
pub fn host_kernel() -> Option<PathBuf> {
    let running = PathBuf::from(format!("/boot/vmlinuz-{}", proc_text("kernel/osrelease")));
    if running.is_file() {
        return Some(running);
    }
    let mut kernels: Vec<PathBuf> = std::fs::read_dir("/boot")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .collect();
    kernels.sort();
    kernels.pop()
}

/// A one-line file of `/proc/sys/`, trimmed (empty when unreadable).
fn proc_text(name: &str) -> String {
    std::fs::read_to_string(Path::new("/proc/sys").join(name))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// How the KVM probe runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// What it boots.
    pub guest: ProbeGuest,
    /// Where the probe's console log is written (a folder QEMU's user can traverse).
    pub work_dir: PathBuf,
    /// A file keeping the result for later starts, with what it was found for (the host's
    /// kernel release, `/dev/kvm`, the probe guest); `None` keeps it for the process only.
    pub cache: Option<PathBuf>,
    /// How long the guest gets to print its marker: a KVM guest that works does it in a
    /// second or two.
    pub timeout: Duration,
    /// The user QEMU runs as.
    pub qemu_user: QemuUser,
}

/// The probe's result, kept for the life of the process.
static PROBED: Mutex<Option<Accel>> = Mutex::new(None);

/// Resolves the node's setting to an accelerator, booting the probe (once per process) for
/// [`AccelChoice::Auto`].
pub fn select(choice: AccelChoice, hypervisor: &Hypervisor, probe: &Probe) -> Result<Accel, Error> {
    match choice {
        AccelChoice::Kvm => Ok(Accel::Kvm),
        AccelChoice::Tcg => Ok(Accel::Tcg),
        AccelChoice::Auto => {
            // A panic elsewhere while holding the lock cannot leave a half-written Option.
            let mut probed = PROBED
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(accel) = *probed {
                return Ok(accel);
            }
            let key = probe.cache_key();
            let cached = probe
                .cache
                .as_ref()
                .and_then(|path| std::fs::read_to_string(path).ok())
                .and_then(|text| {
                    let (found_for, accel) = text.trim_end().rsplit_once('\n')?;
                    if found_for != key {
                        return None;
                    }
                    match accel {
                        "kvm" => Some(Accel::Kvm),
                        "tcg" => Some(Accel::Tcg),
                        _ => None,
                    }
                });
            let accel = match cached {
                Some(accel) => accel,
                None => {
                    let accel = if probe.kvm_boots(hypervisor)? {
                        Accel::Kvm
                    } else {
                        Accel::Tcg
                    };
                    if let Some(path) = &probe.cache {
                        let text = format!("{key}\n{}\n", accel.setting_word());
                        if let Err(e) = identity::write_atomic(path, text.as_bytes(), 0o644) {
                            tracing::warn!("cannot keep the accelerator probe's result: {e}");
                        }
                    }
                    accel
                }
            };
            *probed = Some(accel);
            Ok(accel)
        }
    }
}

impl Accel {
    /// The setting's word for this accelerator (`kvm`, `tcg`).
    fn setting_word(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

impl Probe {
    /// What a kept result was found for: this boot of the host (so a result never outlives
    /// a reboot, a moved machine image or a passing failure for long), its kernel, `/dev/kvm`,
    /// and the probe guest.
    fn cache_key(&self) -> String {
        let kvm = Path::new("/dev/kvm").exists();
        let guest = match &self.guest {
            ProbeGuest::Marked { kernel, .. } | ProbeGuest::Kernel(kernel) => kernel.display(),
        };
        format!(
            "boot {} host {} kvm-device {kvm} probe {guest}",
            proc_text("kernel/random/boot_id"),
            proc_text("kernel/osrelease")
        )
    }

    /// Boots the probe guest under KVM and tells whether its marker reached the console in
    /// time. A domain libvirt or QEMU refuses to start counts as "no"; the probe domain is
    /// destroyed in every case.
    pub fn kvm_boots(&self, hypervisor: &Hypervisor) -> Result<bool, Error> {
        // Without the device there is nothing to probe; with it, only a boot tells.
        if !std::path::Path::new("/dev/kvm").exists() {
            return Ok(false);
        }
        self.boots_under(hypervisor, Accel::Kvm)
    }

    /// Boots the probe guest under `accel` and tells whether it got through in time (under
    /// TCG, which always works, this shows the probe guest itself is sound).
    pub fn boots_under(&self, hypervisor: &Hypervisor, accel: Accel) -> Result<bool, Error> {
        let dir = tempfile::Builder::new()
            .prefix("kvm-probe")
            .tempdir_in(&self.work_dir)
            .map_err(Error::io("create a folder in", &self.work_dir))?;
        std::fs::set_permissions(dir.path(), Permissions::from_mode(0o755))
            .map_err(Error::io("open up", dir.path()))?;
        let console_log = dir.path().join("console.log");
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&console_log)
            .map_err(Error::io("create", &console_log))?;
        self.qemu_user.give(&console_log)?;

        let (kernel, initrd, disk, marker) = match &self.guest {
            ProbeGuest::Marked {
                kernel,
                initrd,
                disk,
            } => (
                kernel.clone(),
                Some(initrd.clone()),
                disk.clone(),
                GUEST_READY,
            ),
            ProbeGuest::Kernel(source) => {
                // A copy QEMU's user may read (the host's kernel is often root's alone), and
                // a blank root disk the kernel cannot mount.
                let kernel = dir.path().join("vmlinuz");
                let disk = dir.path().join("blank.img");
                let prepared = std::fs::copy(source, &kernel)
                    .map_err(Error::io("copy", source))
                    .and_then(|_| self.qemu_user.give(&kernel))
                    .and_then(|()| {
                        std::fs::File::create(&disk)
                            .and_then(|f| f.set_len(1 << 20))
                            .map_err(Error::io("create", &disk))
                    })
                    .and_then(|()| self.qemu_user.give(&disk));
                if let Err(e) = prepared {
                    // No probe is no proof: TCG, and the node starts all the same.
                    tracing::warn!("cannot prepare the KVM probe: {e}");
                    return Ok(false);
                }
                (kernel, None, disk, KERNEL_PANIC)
            }
        };
        let name = format!("koala-kvm-probe-{}", std::process::id());
        let spec = DomainSpec {
            node: "koala-test".into(),
            name: name.clone(),
            accel,
            size: VmSize {
                vcpus: 1,
                memory_mib: 256,
            },
            kernel,
            initrd,
            extra_cmdline: "quiet printk.time=0".into(),
            root_disk: Disk {
                path: disk,
                format: DiskFormat::Raw,
                readonly: true,
            },
            blank_disks: Vec::new(),
            config_drive: None,
            nic: None,
            console_log: console_log.clone(),
            qemu_user: self.qemu_user,
        };
        // A leftover of a crashed probe of this process id would block the define.
        hypervisor.destroy(&name)?;
        let booted = match hypervisor.define_and_start(&spec.to_xml()) {
            Ok(()) => wait_for_lines(&console_log, marker, 1, self.timeout),
            Err(e) => {
                tracing::info!(error = %e, ?accel, "the probe guest was refused");
                Ok(None)
            }
        };
        // Destroyed before any error of the wait is returned: a hung guest spins a core.
        hypervisor.destroy(&name)?;
        let booted = booted?.is_some();
        tracing::info!(?accel, booted, "accelerator probe done");
        Ok(booted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_setting() {
        let parse = |s: &str| serde_json::from_str::<AccelChoice>(&format!("{s:?}"));
        assert_eq!(parse("auto").unwrap(), AccelChoice::Auto);
        assert_eq!(parse("kvm").unwrap(), AccelChoice::Kvm);
        assert_eq!(parse("tcg").unwrap(), AccelChoice::Tcg);
        let refused = parse("KVM").unwrap_err().to_string();
        assert!(
            refused.contains("expected one of `auto`, `kvm`, `tcg`"),
            "{refused}"
        );
        assert_eq!(Accel::Kvm.domain_type(), "kvm");
        assert_eq!(Accel::Tcg.domain_type(), "qemu");
    }
}

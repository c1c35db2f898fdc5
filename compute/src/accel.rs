//! KVM or TCG: which accelerator the node's guests run under.
//!
//! `/dev/kvm` opening proves nothing: on some hosts (a paravirtual KVM) it opens and
//! `KVM_CREATE_VM` succeeds, yet a stock kernel hangs silently. So `auto` boots a tiny probe
//! guest under KVM with a timeout and uses KVM only if the guest's ready marker reaches its
//! console; else TCG, QEMU's software emulation, which boots everywhere (slowly). The probe runs
//! once per process.

use std::fs::{OpenOptions, Permissions};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::str::FromStr;
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

/// The node's accelerator setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccelChoice {
    /// KVM if a probe guest boots under it, else TCG.
    #[default]
    Auto,
    /// Always KVM.
    Kvm,
    /// Always TCG.
    Tcg,
}

impl FromStr for AccelChoice {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "auto" => Ok(AccelChoice::Auto),
            "kvm" => Ok(AccelChoice::Kvm),
            "tcg" => Ok(AccelChoice::Tcg),
            other => Err(Error::UnknownAccel(other.to_owned())),
        }
    }
}

/// The guest the KVM probe boots: a kernel and ramdisk that print [`GUEST_READY`] on the serial
/// console (Koala's test guest, `scripts/build-test-guest`), and a root disk attached
/// read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// The probe guest's kernel.
    pub kernel: PathBuf,
    /// Its ramdisk.
    pub initrd: PathBuf,
    /// Its raw root disk, attached read-only (never written).
    pub disk: PathBuf,
    /// Where the probe's console log is written (a folder QEMU's user can traverse).
    pub work_dir: PathBuf,
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
            let accel = if probe.kvm_boots(hypervisor)? {
                Accel::Kvm
            } else {
                Accel::Tcg
            };
            *probed = Some(accel);
            Ok(accel)
        }
    }
}

impl Probe {
    /// Boots the probe guest under KVM and tells whether its marker reached the console in
    /// time. A domain libvirt or QEMU refuses to start counts as "no"; the probe domain is
    /// destroyed in every case.
    pub fn kvm_boots(&self, hypervisor: &Hypervisor) -> Result<bool, Error> {
        // Without the device there is nothing to probe; with it, only a boot tells.
        if !std::path::Path::new("/dev/kvm").exists() {
            return Ok(false);
        }
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

        let name = format!("koala-kvm-probe-{}", std::process::id());
        let spec = DomainSpec {
            node: "koala-test".into(),
            name: name.clone(),
            accel: Accel::Kvm,
            size: VmSize {
                vcpus: 1,
                memory_mib: 256,
            },
            kernel: self.kernel.clone(),
            initrd: Some(self.initrd.clone()),
            extra_cmdline: "quiet".into(),
            root_disk: Disk {
                path: self.disk.clone(),
                format: DiskFormat::Raw,
                readonly: true,
            },
            blank_disks: Vec::new(),
            config_drive: None,
            console_log: console_log.clone(),
            qemu_user: self.qemu_user,
        };
        // A leftover of a crashed probe of this process id would block the define.
        hypervisor.destroy(&name)?;
        let booted = match hypervisor.define_and_start(&spec.to_xml()) {
            Ok(()) => wait_for_lines(&console_log, GUEST_READY, 1, self.timeout),
            Err(e) => {
                tracing::info!(error = %e, "KVM refused the probe guest; using TCG");
                Ok(None)
            }
        };
        // Destroyed before any error of the wait is returned: a hung guest spins a core.
        hypervisor.destroy(&name)?;
        let booted = booted?.is_some();
        tracing::info!(kvm = booted, "accelerator probe done");
        Ok(booted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_setting() {
        assert_eq!("auto".parse::<AccelChoice>().unwrap(), AccelChoice::Auto);
        assert_eq!("kvm".parse::<AccelChoice>().unwrap(), AccelChoice::Kvm);
        assert_eq!("tcg".parse::<AccelChoice>().unwrap(), AccelChoice::Tcg);
        assert!(matches!(
            "KVM".parse::<AccelChoice>(),
            Err(Error::UnknownAccel(_))
        ));
        assert_eq!(Accel::Kvm.domain_type(), "kvm");
        assert_eq!(Accel::Tcg.domain_type(), "qemu");
    }
}

//! A thin, blocking wrapper over a libvirt connection: the few domain operations the node
//! controller needs.
//!
//! The `virt` crate's `Connect` and `Domain` release their libvirt references in `Drop` and
//! panic if that fails. Version 0.5 has no fallible `close`: a `virConnectClose` or
//! `virDomainFree` fails only for an invalid pointer, which a value made by `virt` never holds,
//! so each handle here is held once and dropped once, never cloned.

use virt::connect::Connect;
use virt::domain::Domain;
use virt::enumutil::Enum;
use virt::error::ErrorNumber;

use crate::Error;

/// The libvirt URI of the host's system-wide QEMU driver, where instances run.
pub const SYSTEM_URI: &str = "qemu:///system";

/// The state of a domain as libvirt reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainState {
    /// Running (or blocked on a resource, which libvirt counts apart).
    Running,
    /// Paused by libvirt or QEMU.
    Paused,
    /// Shutting down.
    ShuttingDown,
    /// Defined but not running.
    ShutOff,
    /// Crashed (kept only when `on_crash` says so).
    Crashed,
    /// Suspended by the guest's power management.
    Suspended,
    /// A state libvirt did not name.
    Unknown,
}

/// A domain libvirt knows: what reconciliation compares with the node's instance folders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSummary {
    /// The domain's name (an instance id for Koala's domains).
    pub name: String,
    /// Its state.
    pub state: DomainState,
}

/// An open connection to libvirt.
pub struct Hypervisor {
    conn: Connect,
}

impl Hypervisor {
    /// Connects to libvirt at `uri` ([`SYSTEM_URI`] for instances; `test:///default` for
    /// libvirt's in-process test driver).
    pub fn open(uri: &str) -> Result<Self, Error> {
        // Errors come back as values; libvirt's default handler would also print each one.
        virt::error::clear_error_callback();
        let conn = Connect::open(Some(uri)).map_err(Error::libvirt(format!("connect to {uri}")))?;
        Ok(Hypervisor { conn })
    }

    /// Defines a persistent domain from `xml` and starts it. If it does not start, the
    /// definition is removed again, so a failed start leaves nothing behind.
    pub fn define_and_start(&self, xml: &str) -> Result<(), Error> {
        self.define_and_create(xml, 0)
    }

    /// As [`Hypervisor::define_and_start`], with the guest's CPUs paused before its first
    /// instruction: its devices (its NIC's tap) exist, and it runs once
    /// [`Hypervisor::resume`]d, so that the node can plug the tap before the guest asks DHCP
    /// for an address.
    pub fn define_and_start_paused(&self, xml: &str) -> Result<(), Error> {
        self.define_and_create(xml, virt::sys::VIR_DOMAIN_START_PAUSED)
    }

    /// Lets a paused domain run.
    pub fn resume(&self, name: &str) -> Result<(), Error> {
        let domain = self
            .lookup(name)?
            .ok_or_else(|| Error::NoDomain(name.to_owned()))?;
        domain
            .resume()
            .map_err(Error::libvirt(format!("resume domain {name}")))
    }

    fn define_and_create(
        &self,
        xml: &str,
        flags: virt::sys::virDomainCreateFlags,
    ) -> Result<(), Error> {
        let domain = self
            .conn
            .define_domain_xml(xml)
            .map_err(Error::libvirt("define a domain"))?;
        if let Err(e) = domain.create_with_flags(flags) {
            let name = domain.name().unwrap_or_default();
            // The start error is the one worth reporting; a failed undefine shows in list().
            let _ = domain.undefine();
            return Err(Error::libvirt(format!("start domain {name}"))(e));
        }
        Ok(())
    }

    /// Resets a running domain, like a press of the reset button: the guest's kernel boots
    /// again without shutting down (a busybox guest ignores ACPI reboot requests).
    pub fn reset(&self, name: &str) -> Result<(), Error> {
        let domain = self
            .lookup(name)?
            .ok_or_else(|| Error::NoDomain(name.to_owned()))?;
        domain
            .reset()
            .map_err(Error::libvirt(format!("reset domain {name}")))
    }

    /// Stops a domain at once if it runs, then removes its definition. Returns whether there
    /// was a domain of that name; destroying one that is already gone is not an error.
    pub fn destroy(&self, name: &str) -> Result<bool, Error> {
        let Some(domain) = self.lookup(name)? else {
            return Ok(false);
        };
        if let Err(e) = domain.destroy() {
            // "domain is not running" is what destroy says of a shut-off domain.
            if !matches!(e.code(), Enum::Known(ErrorNumber::OperationInvalid)) {
                return Err(Error::libvirt(format!("destroy domain {name}"))(e));
            }
        }
        match domain.undefine() {
            Ok(()) => Ok(true),
            // A transient domain vanishes with destroy.
            Err(e) if matches!(e.code(), Enum::Known(ErrorNumber::NoDomain)) => Ok(true),
            Err(e) => Err(Error::libvirt(format!("undefine domain {name}"))(e)),
        }
    }

    /// The state of the domain `name`, or `None` when libvirt knows no such domain.
    pub fn state(&self, name: &str) -> Result<Option<DomainState>, Error> {
        match self.lookup(name)? {
            Some(domain) => state_of(&domain, name).map(Some),
            None => Ok(None),
        }
    }

    /// Every domain libvirt knows, running or only defined.
    pub fn list(&self) -> Result<Vec<DomainSummary>, Error> {
        let domains = self
            .conn
            .list_all_domains(0)
            .map_err(Error::libvirt("list domains"))?;
        domains
            .iter()
            .map(|domain| {
                let name = domain
                    .name()
                    .map_err(Error::libvirt("read a domain's name"))?;
                let state = state_of(domain, &name)?;
                Ok(DomainSummary { name, state })
            })
            .collect()
    }

    /// The names of the domains the node controller `node` defined (marked with
    /// [`crate::domain::KOALA_NS`] metadata naming it): what its reconciliation may destroy.
    pub fn koala_domains(&self, node: &str) -> Result<Vec<String>, Error> {
        /// libvirt's `VIR_DOMAIN_METADATA_ELEMENT`.
        const METADATA_ELEMENT: i32 = 2;
        let domains = self
            .conn
            .list_all_domains(0)
            .map_err(Error::libvirt("list domains"))?;
        Ok(domains
            .iter()
            .filter(|d| {
                d.metadata(METADATA_ELEMENT, Some(crate::domain::KOALA_NS), 0)
                    .is_ok_and(|text| {
                        xml::Element::parse(text.as_bytes())
                            .is_ok_and(|mark| mark.attribute("node") == Some(node))
                    })
            })
            .filter_map(|d| d.name().ok())
            .collect())
    }

    /// Moves running domain `name`'s root disk (`virtio-disk0`, a qcow2 overlay) from the
    /// backing it boots on, the node's NBD export of an image that was arriving, to `base`,
    /// that image complete in the node's cache: QEMU opens the file and drops its NBD
    /// connection, so that the guest no longer needs the node controller's process (a restart
    /// of it would cut the connection). Done through QEMU's monitor, since libvirt has no call
    /// for it (libvirt marks the domain "custom-monitor"): `blockdev-add` of the file read-only
    /// as raw, `blockdev-reopen` of the root's qcow2 node onto it, `blockdev-del` of the NBD
    /// nodes. The overlay's header keeps naming the export: nothing reopens a live instance's
    /// overlay, and `change-backing-file` would record the overlay's own format (qcow2) as the
    /// backing's, letting a raw image be probed.
    pub fn back_root_with_file(&self, name: &str, base: &std::path::Path) -> Result<(), Error> {
        let domain = self
            .lookup(name)?
            .ok_or_else(|| Error::NoDomain(name.to_owned()))?;
        let monitor = |action: &'static str, command: serde_json::Value| {
            let failed = |message: String| Error::Monitor {
                domain: name.to_owned(),
                action,
                message,
            };
            let answer = domain
                .qemu_monitor_command(&command.to_string(), 0)
                .map_err(|e| failed(e.to_string()))?;
            let answer: serde_json::Value =
                serde_json::from_str(&answer).map_err(|e| failed(e.to_string()))?;
            match answer.get("error") {
                Some(error) => Err(failed(error["desc"].as_str().unwrap_or("").to_owned())),
                None => Ok(answer["return"].clone()),
            }
        };
        let blocks = monitor(
            "list its disks",
            serde_json::json!({"execute": "query-block"}),
        )?;
        let root = blocks
            .as_array()
            .into_iter()
            .flatten()
            .find(|b| {
                b["qdev"]
                    .as_str()
                    .is_some_and(|q| q.contains("/virtio-disk0/"))
            })
            .and_then(|b| b["inserted"]["node-name"].as_str())
            .map(str::to_owned);
        // libvirt names a disk's nodes libvirt-N-format (the qcow2 layer) and
        // libvirt-N-storage (its file).
        let (format, storage) = match root.as_deref().and_then(|r| r.strip_suffix("-format")) {
            Some(prefix) => (format!("{prefix}-format"), format!("{prefix}-storage")),
            None => {
                return Err(Error::Monitor {
                    domain: name.to_owned(),
                    action: "find the root disk's nodes",
                    message: format!("its root disk is {root:?}"),
                })
            }
        };
        let nodes = monitor(
            "list its block nodes",
            serde_json::json!({"execute": "query-named-block-nodes", "arguments": {"flat": true}}),
        )?;
        // The NBD layers: the raw format node first, then the nbd protocol node under it.
        let mut exported: Vec<(bool, String)> = nodes
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["file"].as_str().is_some_and(|f| f.starts_with("nbd")))
            .filter_map(|n| Some((n["drv"] == "nbd", n["node-name"].as_str()?.to_owned())))
            .collect();
        exported.sort();
        let cached = format!("koala-cached-{format}");
        monitor(
            "open the cached image",
            serde_json::json!({"execute": "blockdev-add", "arguments": {
                "node-name": cached, "driver": "raw", "read-only": true,
                "file": {"driver": "file", "filename": base.to_string_lossy(), "read-only": true},
            }}),
        )?;
        monitor(
            "move the root disk onto the cached image",
            serde_json::json!({"execute": "blockdev-reopen", "arguments": {"options": [{
                "node-name": format, "driver": "qcow2", "file": storage,
                "backing": cached, "read-only": false,
            }]}}),
        )?;
        for (_, node) in exported {
            monitor(
                "close the NBD export",
                serde_json::json!({"execute": "blockdev-del", "arguments": {"node-name": node}}),
            )?;
        }
        Ok(())
    }

    fn lookup(&self, name: &str) -> Result<Option<Domain>, Error> {
        match self.conn.lookup_domain_by_name(name) {
            Ok(domain) => Ok(Some(domain)),
            Err(e) if matches!(e.code(), Enum::Known(ErrorNumber::NoDomain)) => Ok(None),
            Err(e) => Err(Error::libvirt(format!("look up domain {name}"))(e)),
        }
    }
}

fn state_of(domain: &Domain, name: &str) -> Result<DomainState, Error> {
    use virt::domain::DomainState as S;
    let (state, _reason) = domain
        .state()
        .map_err(Error::libvirt(format!("read the state of domain {name}")))?;
    Ok(match state {
        Enum::Known(S::Running | S::Blocked) => DomainState::Running,
        Enum::Known(S::Paused) => DomainState::Paused,
        Enum::Known(S::Shutdown) => DomainState::ShuttingDown,
        Enum::Known(S::Shutoff) => DomainState::ShutOff,
        Enum::Known(S::Crashed) => DomainState::Crashed,
        Enum::Known(S::PMSuspended) => DomainState::Suspended,
        Enum::Known(S::NoState) | Enum::Unknown(_) => DomainState::Unknown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accel::Accel;
    use crate::domain::{Disk, DiskFormat, DomainSpec, VmSize};
    use crate::qemu_user::QemuUser;

    fn spec(name: &str) -> DomainSpec {
        DomainSpec {
            node: "koala-test".into(),
            name: name.into(),
            accel: Accel::Tcg,
            size: VmSize {
                vcpus: 1,
                memory_mib: 128,
            },
            kernel: "/nonexistent/vmlinux".into(),
            initrd: None,
            extra_cmdline: String::new(),
            root_disk: Disk {
                path: "/nonexistent/disk.img".into(),
                format: DiskFormat::Raw,
                readonly: false,
            },
            blank_disks: Vec::new(),
            config_drive: None,
            nic: None,
            console_log: "/nonexistent/console.log".into(),
            qemu_user: QemuUser {
                uid: 64055,
                gid: 107,
            },
        }
    }

    /// libvirt's in-process test driver: no daemon, no guest, the same API.
    #[test]
    fn domain_lifecycle_on_the_test_driver() {
        let hv = Hypervisor::open("test:///default").unwrap();
        assert_eq!(hv.state("i-0000000a").unwrap(), None);
        hv.define_and_start(&spec("i-0000000a").to_xml()).unwrap();
        assert_eq!(hv.state("i-0000000a").unwrap(), Some(DomainState::Running));
        assert_eq!(
            hv.koala_domains("koala-test").unwrap(),
            vec!["i-0000000a".to_owned()]
        );
        assert!(hv.koala_domains("other-node").unwrap().is_empty());
        assert!(hv.list().unwrap().contains(&DomainSummary {
            name: "i-0000000a".into(),
            state: DomainState::Running
        }));
        // The test driver cannot start a domain paused: compute/tests/nic.rs does, for real.
        assert!(matches!(hv.resume("i-0000000b"), Err(Error::NoDomain(_))));
        hv.reset("i-0000000a").unwrap();
        assert!(matches!(hv.reset("i-0000000b"), Err(Error::NoDomain(_))));
        assert!(hv.destroy("i-0000000a").unwrap());
        assert!(!hv.destroy("i-0000000a").unwrap());
        assert_eq!(hv.state("i-0000000a").unwrap(), None);
        assert!(hv.list().unwrap().iter().all(|d| d.name != "i-0000000a"));
        assert!(matches!(
            hv.define_and_start("<domain type='qemu'>"),
            Err(Error::Libvirt { .. })
        ));
    }
}

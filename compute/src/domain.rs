//! An instance's libvirt domain XML.
//!
//! One shape for every instance: direct kernel boot (the eki as kernel, the eri as initrd), the
//! root disk as `virtio` `/dev/vda`, then its blank disks (ephemeral0 as `/dev/vdb`, as EC2
//! gives it the second disk, then swap), then the NoCloud config drive as a read-only `virtio`
//! disk, last because the guest finds it by its label (the test kernels have no CD-ROM
//! driver), the serial console appended to a log file (what GetConsoleOutput returns), a
//! virtio NIC on a tap when the run order has one (none otherwise), and no USB or balloon
//! device. A guest reboot restarts it; a power-off or a crash ends the domain, which the node
//! controller then sees as the instance's end.

use std::path::PathBuf;

use xml::{Escaping, Writer};

use crate::accel::Accel;
use crate::qemu_user::QemuUser;

/// The XML namespace of the metadata element that marks a domain as a Koala instance, so
/// that the node controller destroys leaked domains of its own and never anyone else's.
pub const KOALA_NS: &str = "https://koala.cloud/xmlns/instance/1";

/// The command line every instance's kernel gets, before what the image or request adds.
pub const BASE_CMDLINE: &str = "console=ttyS0 root=/dev/vda";

/// The size of a virtual machine: what a VM type (m1.small, c1.medium, ...) stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmSize {
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
}

/// The format of a disk image, pinned in the XML so that QEMU never probes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFormat {
    /// A raw image (a reflinked clone, a config drive ISO).
    Raw,
    /// A qcow2 overlay on a cached base image.
    Qcow2,
}

impl DiskFormat {
    fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

/// A disk attached to the domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// The image file (absolute).
    pub path: PathBuf,
    /// Its format.
    pub format: DiskFormat,
    /// Whether the guest sees it read-only.
    pub readonly: bool,
}

/// The guest's NIC: a virtio device on a tap libvirt makes (`<interface type='ethernet'>`),
/// which the node controller then plugs into the guest's bridge itself, so that it can do so
/// in its own network namespace, whatever libvirtd's is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nic {
    /// The guest's MAC, the one the CC's DHCP server knows.
    pub mac: network::Mac,
    /// The tap's name ([`network::tap_name`]), how the node finds it again.
    pub tap: String,
}

/// Everything that makes an instance's domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainSpec {
    /// The domain's name: the instance id (`i-12345678`).
    pub name: String,
    /// The id of the node controller that owns the domain, recorded in its metadata: on a
    /// host with several node controllers (or tests), each sweeps only its own domains.
    pub node: String,
    /// KVM or TCG.
    pub accel: Accel,
    /// vCPUs and memory.
    pub size: VmSize,
    /// The kernel QEMU boots directly.
    pub kernel: PathBuf,
    /// The initial ramdisk, if the image has one.
    pub initrd: Option<PathBuf>,
    /// Kernel parameters after [`BASE_CMDLINE`] (from the image or the request).
    pub extra_cmdline: String,
    /// The root disk, `/dev/vda`.
    pub root_disk: Disk,
    /// The blank disks of the instance store (ephemeral0, swap), `/dev/vdb` onwards in this
    /// order.
    pub blank_disks: Vec<Disk>,
    /// The NoCloud config drive (a raw ISO 9660 image), read-only, after every other disk.
    pub config_drive: Option<PathBuf>,
    /// The NIC, if the instance has one.
    pub nic: Option<Nic>,
    /// The file the serial console is appended to.
    pub console_log: PathBuf,
    /// The user QEMU runs as (see [`crate::qemu_user`]).
    pub qemu_user: QemuUser,
}

impl DomainSpec {
    /// The kernel command line: [`BASE_CMDLINE`] then the extra parameters.
    pub fn cmdline(&self) -> String {
        let extra = self.extra_cmdline.trim();
        if extra.is_empty() {
            BASE_CMDLINE.to_owned()
        } else {
            format!("{BASE_CMDLINE} {extra}")
        }
    }

    /// Renders the domain XML that libvirt defines.
    pub fn to_xml(&self) -> String {
        let mut w = Writer::indented(Escaping::LOSSLESS);
        w.open_with("domain", &[("type", self.accel.domain_type())])
            .elem("name", &self.name)
            .elem_with(
                "memory",
                &[("unit", "MiB")],
                &self.size.memory_mib.to_string(),
            )
            .elem("vcpu", &self.size.vcpus.to_string())
            .open("metadata")
            .empty(
                "koala:instance",
                &[("xmlns:koala", KOALA_NS), ("node", &self.node)],
            )
            .close("metadata")
            .open("os")
            .elem_with("type", &[("arch", "x86_64")], "hvm")
            .elem("kernel", &self.kernel.to_string_lossy());
        if let Some(initrd) = &self.initrd {
            w.elem("initrd", &initrd.to_string_lossy());
        }
        w.elem("cmdline", &self.cmdline())
            .close("os")
            .open("features")
            .empty("acpi", &[])
            .close("features")
            .elem("on_poweroff", "destroy")
            .elem("on_reboot", "restart")
            .elem("on_crash", "destroy")
            .open("devices");
        let config_drive = self.config_drive.as_ref().map(|drive| Disk {
            path: drive.clone(),
            format: DiskFormat::Raw,
            readonly: true,
        });
        let disks = std::iter::once(&self.root_disk)
            .chain(&self.blank_disks)
            .chain(&config_drive);
        // At most four disks: the letters never run out.
        for (disk, letter) in disks.zip(b'a'..=b'z') {
            disk_xml(&mut w, disk, &format!("vd{}", char::from(letter)));
        }
        if let Some(nic) = &self.nic {
            // managed='yes': libvirt makes the tap and it vanishes with QEMU. No option ROM:
            // the kernel boots directly, never from the network, and the ROM costs seconds
            // under TCG.
            w.open_with("interface", &[("type", "ethernet")])
                .empty("mac", &[("address", &nic.mac.to_string())])
                .empty("target", &[("dev", &nic.tap), ("managed", "yes")])
                .empty("model", &[("type", "virtio")])
                .empty("rom", &[("enabled", "no")])
                .close("interface");
        }
        w.open_with("serial", &[("type", "file")])
            .empty(
                "source",
                &[
                    ("path", &self.console_log.to_string_lossy()),
                    ("append", "on"),
                ],
            )
            .empty("target", &[("port", "0")])
            .close("serial")
            .empty("controller", &[("type", "usb"), ("model", "none")])
            .empty("memballoon", &[("model", "none")])
            .close("devices")
            .open_with(
                "seclabel",
                &[("type", "static"), ("model", "dac"), ("relabel", "no")],
            )
            .elem("label", &self.qemu_user.dac_label())
            .close("seclabel")
            .close("domain");
        w.finish()
    }
}

fn disk_xml(w: &mut Writer, disk: &Disk, target: &str) {
    w.open_with("disk", &[("type", "file"), ("device", "disk")])
        .empty(
            "driver",
            &[("name", "qemu"), ("type", disk.format.as_str())],
        )
        .empty("source", &[("file", &disk.path.to_string_lossy())])
        .empty("target", &[("dev", target), ("bus", "virtio")]);
    if disk.readonly {
        w.empty("readonly", &[]);
    }
    w.close("disk");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One element of a parsed document: its path from the root, attributes and text.
    struct Element {
        path: String,
        attrs: Vec<(String, String)>,
        text: String,
    }

    impl Element {
        fn attr(&self, name: &str) -> Option<&str> {
            self.attrs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// Every element of a document, in document order, by path of local names.
    fn parse(text: &str) -> Vec<Element> {
        fn walk(e: &xml::Element, parent: &str, out: &mut Vec<Element>) {
            let path = if parent.is_empty() {
                e.name.clone()
            } else {
                format!("{parent}/{}", e.name)
            };
            out.push(Element {
                path: path.clone(),
                attrs: e.attributes.clone(),
                text: e.text.clone(),
            });
            for c in &e.children {
                walk(c, &path, out);
            }
        }
        let mut out = Vec::new();
        walk(
            &xml::Element::parse(text.as_bytes()).expect("well-formed XML"),
            "",
            &mut out,
        );
        out
    }

    fn one<'a>(doc: &'a [Element], path: &str) -> &'a Element {
        let found: Vec<&Element> = doc.iter().filter(|e| e.path == path).collect();
        assert_eq!(found.len(), 1, "exactly one {path}");
        found[0]
    }

    fn spec() -> DomainSpec {
        DomainSpec {
            node: "koala-test".into(),
            name: "i-12345678".into(),
            accel: Accel::Tcg,
            size: VmSize {
                vcpus: 2,
                memory_mib: 512,
            },
            kernel: "/var/lib/koala/cache/kernel".into(),
            initrd: Some("/var/lib/koala/cache/initrd".into()),
            extra_cmdline: " quiet panic=-1 ".into(),
            root_disk: Disk {
                path: "/var/lib/koala/instances/i-12345678/disk.qcow2".into(),
                format: DiskFormat::Qcow2,
                readonly: false,
            },
            blank_disks: ["ephemeral0", "swap"]
                .into_iter()
                .map(|name| Disk {
                    path: format!("/var/lib/koala/instances/i-12345678/{name}").into(),
                    format: DiskFormat::Raw,
                    readonly: false,
                })
                .collect(),
            config_drive: Some("/var/lib/koala/instances/i-12345678/config.iso".into()),
            nic: None,
            console_log: "/var/lib/koala/instances/i-12345678/console.log".into(),
            qemu_user: QemuUser {
                uid: 64055,
                gid: 107,
            },
        }
    }

    #[test]
    fn renders_a_direct_kernel_boot_domain() {
        let doc = parse(&spec().to_xml());
        assert_eq!(one(&doc, "domain").attr("type"), Some("qemu"));
        assert_eq!(one(&doc, "domain/name").text, "i-12345678");
        assert_eq!(one(&doc, "domain/memory").text, "512");
        assert_eq!(one(&doc, "domain/memory").attr("unit"), Some("MiB"));
        assert_eq!(one(&doc, "domain/vcpu").text, "2");
        assert_eq!(one(&doc, "domain/os/type").text, "hvm");
        assert_eq!(
            one(&doc, "domain/os/kernel").text,
            "/var/lib/koala/cache/kernel"
        );
        assert_eq!(
            one(&doc, "domain/os/initrd").text,
            "/var/lib/koala/cache/initrd"
        );
        assert_eq!(
            one(&doc, "domain/os/cmdline").text,
            "console=ttyS0 root=/dev/vda quiet panic=-1"
        );
        assert_eq!(one(&doc, "domain/on_poweroff").text, "destroy");
        assert_eq!(one(&doc, "domain/on_reboot").text, "restart");
        assert_eq!(one(&doc, "domain/on_crash").text, "destroy");
        assert!(
            doc.iter().all(|e| e.path != "domain/devices/interface"),
            "no NIC"
        );
        assert_eq!(one(&doc, "domain/seclabel").attr("relabel"), Some("no"));
        assert_eq!(one(&doc, "domain/seclabel/label").text, "+64055:+107");
    }

    /// The disks in document order: (target, driver type, source, read-only).
    fn disks(xml: &str) -> Vec<(String, String, String, bool)> {
        let doc = parse(xml);
        let attr = |path: &str, name: &str| -> Vec<String> {
            doc.iter()
                .filter(|e| e.path == path)
                .map(|e| e.attr(name).unwrap_or_default().to_owned())
                .collect()
        };
        let targets = attr("domain/devices/disk/target", "dev");
        let buses = attr("domain/devices/disk/target", "bus");
        assert!(buses.iter().all(|b| b == "virtio"), "{buses:?}");
        let drivers = attr("domain/devices/disk/driver", "type");
        let sources = attr("domain/devices/disk/source", "file");
        // Each <disk> element's slice of the document, to see which holds <readonly/>.
        let readonly: Vec<bool> = xml
            .split("<disk ")
            .skip(1)
            .map(|d| d[..d.find("</disk>").unwrap()].contains("<readonly/>"))
            .collect();
        assert_eq!(targets.len(), readonly.len());
        (0..targets.len())
            .map(|i| {
                (
                    targets[i].clone(),
                    drivers[i].clone(),
                    sources[i].clone(),
                    readonly[i],
                )
            })
            .collect()
    }

    #[test]
    fn attaches_root_blank_disks_config_drive_and_console() {
        let xml = spec().to_xml();
        let dir = "/var/lib/koala/instances/i-12345678";
        let want = |dev: &str, kind: &str, file: &str, ro: bool| {
            (dev.to_owned(), kind.to_owned(), format!("{dir}/{file}"), ro)
        };
        // The root stays /dev/vda, ephemeral0 is the second disk, the config drive comes
        // last and is the only read-only one.
        assert_eq!(
            disks(&xml),
            [
                want("vda", "qcow2", "disk.qcow2", false),
                want("vdb", "raw", "ephemeral0", false),
                want("vdc", "raw", "swap", false),
                want("vdd", "raw", "config.iso", true),
            ]
        );
        let doc = parse(&xml);
        assert_eq!(
            one(&doc, "domain/devices/serial").attr("type"),
            Some("file")
        );
        assert_eq!(
            one(&doc, "domain/devices/serial/source").attr("path"),
            Some("/var/lib/koala/instances/i-12345678/console.log")
        );
    }

    #[test]
    fn without_blank_disks_the_config_drive_follows_the_root() {
        let mut s = spec();
        s.blank_disks.truncate(1);
        let targets: Vec<String> = disks(&s.to_xml()).into_iter().map(|d| d.0).collect();
        assert_eq!(targets, ["vda", "vdb", "vdc"]);
        s.blank_disks.clear();
        let found = disks(&s.to_xml());
        assert_eq!(found.len(), 2);
        assert_eq!(found[1].0, "vdb");
        assert!(found[1].2.ends_with("config.iso") && found[1].3);
    }

    #[test]
    fn a_nic_is_a_virtio_device_on_a_managed_tap() {
        let mut s = spec();
        s.nic = Some(Nic {
            mac: "d0:0d:0a:80:00:22".parse().unwrap(),
            tap: network::tap_name("i-12345678"),
        });
        let doc = parse(&s.to_xml());
        assert_eq!(
            one(&doc, "domain/devices/interface").attr("type"),
            Some("ethernet")
        );
        assert_eq!(
            one(&doc, "domain/devices/interface/mac").attr("address"),
            Some("d0:0d:0a:80:00:22")
        );
        let target = one(&doc, "domain/devices/interface/target");
        assert_eq!(target.attr("dev"), Some("ktap-12345678"));
        assert_eq!(target.attr("managed"), Some("yes"));
        assert_eq!(
            one(&doc, "domain/devices/interface/model").attr("type"),
            Some("virtio")
        );
        assert_eq!(
            one(&doc, "domain/devices/interface/rom").attr("enabled"),
            Some("no")
        );
        // The NIC changes nothing else: the disks keep their letters.
        let targets: Vec<String> = disks(&s.to_xml()).into_iter().map(|d| d.0).collect();
        assert_eq!(targets, ["vda", "vdb", "vdc", "vdd"]);
    }

    #[test]
    fn kvm_and_minimal_instances() {
        let mut s = spec();
        s.accel = Accel::Kvm;
        s.initrd = None;
        s.blank_disks.clear();
        s.config_drive = None;
        s.extra_cmdline = String::new();
        let doc = parse(&s.to_xml());
        assert_eq!(one(&doc, "domain").attr("type"), Some("kvm"));
        assert!(doc.iter().all(|e| e.path != "domain/os/initrd"));
        assert_eq!(
            doc.iter()
                .filter(|e| e.path == "domain/devices/disk")
                .count(),
            1
        );
        assert_eq!(one(&doc, "domain/os/cmdline").text, BASE_CMDLINE);
    }

    #[test]
    fn escapes_names_and_paths() {
        let mut s = spec();
        s.name = "a<b>&'c\"".into();
        s.console_log = "/tmp/it's <here>/console.log".into();
        s.extra_cmdline = "koala.note=\"x&y\"".into();
        let doc = parse(&s.to_xml());
        assert_eq!(one(&doc, "domain/name").text, "a<b>&'c\"");
        assert_eq!(
            one(&doc, "domain/devices/serial/source").attr("path"),
            Some("/tmp/it's <here>/console.log")
        );
        assert_eq!(
            one(&doc, "domain/os/cmdline").text,
            "console=ttyS0 root=/dev/vda koala.note=\"x&y\""
        );
    }
}

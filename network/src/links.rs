//! The host objects a node controller makes for its guests' NICs, through netlink.
//!
//! Each object has one owner. The guest's tap is libvirt's: it makes it when QEMU starts
//! (`<interface type='ethernet'>` with a managed `ktap-…` target) and it vanishes with QEMU.
//! The bridge named by `[network] bridge` (SYSTEM, STATIC, MANAGED-NOVLAN) and the private
//! interface are the site's: Koala plugs into them and never changes or removes them. The
//! per-VLAN bridge `kbr-<vlan>` and its carrier (the VLAN interface `kvl-<vlan>` or the VXLAN
//! interface `kvx-<vlan>`) of MANAGED are Koala's, by their prefixes: each role that uses one
//! (the node controller for its guests, a CC on the same host for its gateway) records it in
//! its record file *before* making or using it, and deletes only what its file names, once
//! nothing else uses the bridge (see [`Links`]), so that a restart finds exactly what it used
//! and no interface without Koala's prefixes is ever deleted.
//!
//! The node controller may work in another network namespace than libvirtd (tests run the
//! cloud inside namespaces, a site may keep Koala's networking in one): every netlink socket
//! here is opened inside a given [`Netns`], by a short-lived thread that enters it, so the
//! process's own namespace is never touched. A tap libvirt made in its namespace is moved
//! into the node's by [`Links::plug`] before it joins its bridge.

use std::collections::BTreeSet;
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use futures_util::TryStreamExt;
use nix::errno::Errno;
use nix::sched::CloneFlags;
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVlan, LinkVxlan};
use serde::{Deserialize, Serialize};

use crate::config::Mode;
use crate::layout::{Carrier, Layout};

/// The prefix of every guest tap's name: what marks a tap as an instance's.
pub const TAP_PREFIX: &str = "ktap-";

/// The prefix of the node controller's per-VLAN bridges (MANAGED).
pub const BRIDGE_PREFIX: &str = "kbr-";

/// How the record names an address Koala added: `addr:INTERFACE/ADDRESS/PREFIX`.
const ADDRESS_PREFIX: &str = "addr:";

/// The prefix of the node controller's VLAN interfaces on the private interface (MANAGED).
pub const VLAN_PREFIX: &str = "kvl-";

/// The prefix of the VXLAN interfaces that carry MANAGED's VLANs when
/// `vlan_transport = "vxlan"`.
pub const VXLAN_PREFIX: &str = "kvx-";

/// The UDP port of VXLAN (IANA's 4789).
const VXLAN_PORT: u16 = 4789;

/// What VXLAN adds to each frame over IPv4: outer IP (20), UDP (8), VXLAN (8) and the inner
/// Ethernet header (14).
const VXLAN_OVERHEAD: u32 = 50;

/// The name of the tap of instance `instance_id`: [`TAP_PREFIX`] and the id's last ten hex
/// digits (all eight of Koala's own ids), within Linux's 15 characters, so that the tap names
/// its instance and the NC can find it again after a restart.
pub fn tap_name(instance_id: &str) -> String {
    let hex: Vec<char> = instance_id
        .rsplit('-')
        .next()
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_hexdigit)
        .collect();
    let tail: String = hex[hex.len().saturating_sub(10)..].iter().collect();
    format!("{TAP_PREFIX}{tail}")
}

/// The node's bridge for the guests of VLAN `vlan` (MANAGED).
pub fn vlan_bridge_name(vlan: u16) -> String {
    format!("{BRIDGE_PREFIX}{vlan}")
}

/// The node's interface carrying `vlan` over the private interface (MANAGED): the VLAN
/// interface tagging it, or the VXLAN interface whose VNI it is.
pub fn vlan_interface_name(carrier: Carrier, vlan: u16) -> String {
    match carrier {
        Carrier::Tagged => format!("{VLAN_PREFIX}{vlan}"),
        Carrier::Vxlan { .. } => format!("{VXLAN_PREFIX}{vlan}"),
    }
}

/// A network namespace, held open by a file so that it stays the same namespace while Koala
/// works in it (a name in `/run/netns` or a process may go; the open file keeps it).
#[derive(Debug)]
pub struct Netns {
    file: File,
    path: PathBuf,
}

impl Netns {
    /// The namespace of the calling thread: where the node controller itself runs.
    pub fn current() -> Result<Netns, LinksError> {
        Netns::open("/proc/thread-self/ns/net")
    }

    /// A namespace of `ip netns` (`/run/netns/NAME`).
    pub fn named(name: &str) -> Result<Netns, LinksError> {
        Netns::open(Path::new("/run/netns").join(name))
    }

    /// The namespace of process `pid`.
    pub fn of_process(pid: u32) -> Result<Netns, LinksError> {
        Netns::open(format!("/proc/{pid}/ns/net"))
    }

    /// The namespace of the process whose id a pid file holds (libvirt's
    /// `/run/libvirt/qemu/<domain>.pid`: QEMU runs in libvirtd's namespace).
    pub fn of_pid_file(pid_file: &Path) -> Result<Netns, LinksError> {
        let bad = |source| LinksError::PidFile {
            path: pid_file.to_owned(),
            source,
        };
        let text = std::fs::read_to_string(pid_file).map_err(bad)?;
        let pid = text.trim().parse().map_err(|_| {
            bad(io::Error::other(format!(
                "{:?} is not a process id",
                text.trim()
            )))
        })?;
        Netns::of_process(pid)
    }

    /// The namespace file at `path` (`/proc/PID/ns/net`, a bind mount of one).
    pub fn open(path: impl Into<PathBuf>) -> Result<Netns, LinksError> {
        let path = path.into();
        match File::open(&path) {
            Ok(file) => Ok(Netns { file, path }),
            Err(source) => Err(LinksError::Namespace { path, source }),
        }
    }

    /// Where it was opened from, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `other` is the same namespace (the same nsfs inode).
    pub fn is(&self, other: &Netns) -> bool {
        match (self.file.metadata(), other.file.metadata()) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }

    /// A rtnetlink connection whose socket lives in this namespace. A socket stays in the
    /// namespace it was made in: a thread of its own enters the namespace, makes the socket
    /// (registered with the caller's runtime) and ends, so no thread of the process is left
    /// in another namespace.
    async fn connect(&self) -> Result<Handle, LinksError> {
        let runtime = tokio::runtime::Handle::current();
        let file = self.file.try_clone().map_err(LinksError::Socket)?;
        let path = self.path.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("koala-netns".into())
            .spawn(move || {
                let made = match nix::sched::setns(&file, CloneFlags::CLONE_NEWNET) {
                    Err(source) => Err(LinksError::Enter { path, source }),
                    Ok(()) => {
                        let _runtime = runtime.enter();
                        rtnetlink::new_connection().map_err(LinksError::Socket)
                    }
                };
                // The receiver gone means the caller gave up; the socket closes here.
                let _ = tx.send(made);
            })
            .map_err(LinksError::Socket)?;
        let (connection, handle, _) = rx.await.map_err(|_| {
            LinksError::Socket(io::Error::other("the namespace thread ended early"))
        })??;
        tokio::spawn(connection);
        Ok(handle)
    }
}

/// Why a NIC could not be plugged, or a bridge made or removed.
#[derive(Debug, thiserror::Error)]
pub enum LinksError {
    /// A namespace file could not be opened.
    #[error("cannot open the network namespace {}", path.display())]
    Namespace {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A thread could not enter a namespace (the node controller needs CAP_SYS_ADMIN).
    #[error("cannot enter the network namespace {}", path.display())]
    Enter {
        /// The namespace file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Errno,
    },
    /// A netlink socket (or the thread making it) could not be made.
    #[error("cannot open a netlink socket")]
    Socket(#[source] io::Error),
    /// The kernel refused a request.
    #[error("netlink could not {action}")]
    Netlink {
        /// What was asked, e.g. "make the bridge kbr-10".
        action: String,
        /// The kernel's answer.
        #[source]
        source: rtnetlink::Error,
    },
    /// An interface the table names is not there.
    #[error("the {what} {name} does not exist in the network namespace {}", netns.display())]
    Missing {
        /// Which key named it ("bridge", "private interface").
        what: &'static str,
        /// Its name.
        name: String,
        /// Where it was looked for.
        netns: PathBuf,
    },
    /// An interface that should be a bridge is not one.
    #[error("{0} is not a bridge")]
    NotABridge(String),
    /// libvirt's tap is neither in the node's namespace nor in libvirtd's.
    #[error("the tap {tap} is in neither the node's network namespace nor libvirtd's ({})", netns.display())]
    TapMissing {
        /// The tap.
        tap: String,
        /// libvirtd's namespace, where it was looked for last.
        netns: PathBuf,
    },
    /// libvirt's pid file of a domain could not be read.
    #[error("cannot read the pid file {}", path.display())]
    PidFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The record of what the node made could not be read or written.
    #[error("cannot use the record of the node's links {}", path.display())]
    Record {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The lock the roles sharing a namespace take turns with could not be taken.
    #[error("cannot take the host's links lock {}", path.display())]
    HostLock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The kernel makes no VLAN interfaces (no 802.1Q support): MANAGED cannot tag here.
    #[error("the kernel cannot make VLAN interfaces (802.1Q, module 8021q), which VLAN {vlan} needs: load 8021q, or carry the VLANs as VXLAN segments (vlan_transport = \"vxlan\")")]
    NoVlanSupport {
        /// The VLAN asked for.
        vlan: u16,
    },
    /// A MANAGED order without a VLAN: the CLC and this node disagree on the mode.
    #[error("mode = \"managed\" needs the NIC's VLAN, and the order has none")]
    NoVlan,
    /// A VLAN in a mode without VLANs: the CLC and this node disagree on the mode.
    #[error("the order's VLAN {vlan} has no meaning in mode = \"{mode}\"")]
    UnexpectedVlan {
        /// The tag.
        vlan: u16,
        /// The node's mode.
        mode: &'static str,
    },
}

/// The record file: the links the node controller made, by name.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Record {
    version: u32,
    links: BTreeSet<String>,
}

/// The version [`Record`] is written with.
const RECORD_VERSION: u32 = 1;

/// A node controller's (or a CC's) hand on its network namespace: plugs guests' taps into
/// their bridges and holds the per-VLAN bridges and carrier interfaces it uses for them. Its
/// operations run one at a time, so a bridge is never removed while a tap is being plugged
/// into it.
///
/// A VLAN's bridge may serve two roles of one host at once (a CC beside a node: the
/// gateway's address and the guests' taps on one bridge): each records the bridge it uses,
/// and the one that leaves it last removes it, so it outlives neither user. Each role calls
/// the methods that make, use or remove VLAN bridges with [`Links::host_lock`] held, so that
/// one never removes a bridge the other is just starting to use.
#[derive(Debug)]
pub struct Links {
    mode: Mode,
    carrier: Option<Carrier>,
    bridge: Option<String>,
    private_interface: Option<String>,
    netns: Netns,
    handle: Handle,
    record: PathBuf,
    /// The names the record file holds; the lock serialises every operation.
    owned: tokio::sync::Mutex<BTreeSet<String>>,
}

/// The host lock of a namespace, held until dropped (see [`Links::host_lock`]).
#[derive(Debug)]
pub struct HostLock {
    _file: File,
}

/// An interface found by name.
struct Found {
    index: u32,
    message: LinkMessage,
}

impl Found {
    fn kind(&self) -> Option<&InfoKind> {
        self.message.attributes.iter().find_map(|a| match a {
            LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
                LinkInfo::Kind(kind) => Some(kind),
                _ => None,
            }),
            _ => None,
        })
    }

    fn controller(&self) -> Option<u32> {
        self.message.attributes.iter().find_map(|a| match a {
            LinkAttribute::Controller(index) => Some(*index),
            _ => None,
        })
    }
}

impl Links {
    /// Opens the node's namespace `netns` for the `[network]` table `layout`, with the record
    /// of what the node made at `record`, and checks that the interfaces the table names are
    /// there: a missing bridge stops the node at start, not at its first instance.
    pub async fn open(layout: &Layout, netns: Netns, record: PathBuf) -> Result<Links, LinksError> {
        let owned = read_record(&record)?;
        let handle = netns.connect().await?;
        let links = Links {
            mode: layout.mode(),
            carrier: layout.carrier(),
            bridge: layout.bridge().map(str::to_owned),
            private_interface: layout.private_interface().map(str::to_owned),
            netns,
            handle,
            record,
            owned: tokio::sync::Mutex::new(owned),
        };
        match links.mode {
            Mode::Managed => {
                links
                    .required("private interface", &links.private_interface)
                    .await?;
            }
            _ => {
                let bridge = links.required("bridge", &links.bridge).await?;
                if bridge.kind() != Some(&InfoKind::Bridge) {
                    return Err(LinksError::NotABridge(
                        links.bridge.clone().unwrap_or_default(),
                    ));
                }
            }
        }
        Ok(links)
    }

    /// The namespace the node's taps and bridges are in.
    pub fn netns(&self) -> &Netns {
        &self.netns
    }

    /// Waits for, then holds, the lock every role working in this namespace takes around a
    /// sequence that makes or uses a VLAN bridge (make it, then plug a tap or put an address
    /// on it) or decides it unused and deletes it, so that a CC and a node controller of one
    /// host never delete a bridge the other is just starting to use. The lock is a file in
    /// `/run/koala` named after the namespace (the same for both roles, in one process or
    /// two), locked with flock; it is released when the [`HostLock`] is dropped.
    pub async fn host_lock(&self) -> Result<HostLock, LinksError> {
        let path = host_lock_path(&self.netns);
        let lock_path = path.clone();
        tokio::task::spawn_blocking(move || {
            let failed = |source| LinksError::HostLock {
                path: path.clone(),
                source,
            };
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(failed)?;
            }
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(failed)?;
            rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
                .map_err(|e| failed(e.into()))?;
            Ok(HostLock { _file: file })
        })
        .await
        .map_err(|e| LinksError::HostLock {
            path: lock_path,
            source: io::Error::other(e.to_string()),
        })?
    }

    /// Plugs the tap `tap` of a guest on VLAN `vlan` (MANAGED; `None` in the other modes) into
    /// its bridge, and brings it up; returns the bridge's name. In MANAGED the VLAN's bridge
    /// and VLAN interface are made if missing. A tap that is not in the node's namespace is
    /// moved there from the namespace of the process `pid_file` names (QEMU's, which libvirtd
    /// started in its own). Plugging a tap that is plugged already changes nothing, so a
    /// restarted node plugs its running guests again safely.
    pub async fn plug(
        &self,
        tap: &str,
        vlan: Option<u16>,
        pid_file: &Path,
    ) -> Result<String, LinksError> {
        let mut owned = self.owned.lock().await;
        let (bridge, bridge_index) = match (self.mode, vlan) {
            (Mode::Managed, Some(vlan)) => self.vlan_bridge(vlan, &mut owned).await?,
            (Mode::Managed, None) => return Err(LinksError::NoVlan),
            (mode, Some(vlan)) => {
                return Err(LinksError::UnexpectedVlan {
                    vlan,
                    mode: mode.name(),
                })
            }
            (_, None) => {
                let found = self.required("bridge", &self.bridge).await?;
                (self.bridge.clone().unwrap_or_default(), found.index)
            }
        };
        let tap_index = match find(&self.handle, tap).await? {
            Some(found) => found.index,
            None => self.move_here(tap, pid_file).await?,
        };
        set(
            &self.handle,
            LinkUnspec::new_with_index(tap_index)
                .controller(bridge_index)
                .up()
                .build(),
            format!("plug the tap {tap} into {bridge}"),
        )
        .await?;
        Ok(bridge)
    }

    /// Whether the tap `tap` is in the node's namespace, plugged into `bridge` and up: what a
    /// plugged guest's NIC looks like from the host.
    pub async fn is_plugged(&self, tap: &str, bridge: &str) -> Result<bool, LinksError> {
        let (Some(tap), Some(bridge)) = (
            find(&self.handle, tap).await?,
            find(&self.handle, bridge).await?,
        ) else {
            return Ok(false);
        };
        let up = tap
            .message
            .header
            .flags
            .contains(rtnetlink::packet_route::link::LinkFlags::Up);
        Ok(up && tap.controller() == Some(bridge.index))
    }

    /// Lets go of the bridge and carrier of `vlan` unless `in_use` (asked while no plug runs)
    /// says a guest of this node is still on the VLAN; whether the VLAN was free. They are
    /// deleted unless another role of this host still uses the bridge (see [`Links`]).
    pub async fn release(
        &self,
        vlan: u16,
        in_use: impl FnOnce() -> bool,
    ) -> Result<bool, LinksError> {
        let mut owned = self.owned.lock().await;
        if in_use() {
            return Ok(false);
        }
        self.remove_vlan(vlan, &mut owned).await?;
        Ok(true)
    }

    /// Lets go of every VLAN bridge and carrier recorded whose VLAN `in_use` says no guest
    /// uses any more (at start: what the node left when it stopped), as [`Links::release`].
    pub async fn sweep(&self, in_use: impl Fn(u16) -> bool) -> Result<(), LinksError> {
        let mut owned = self.owned.lock().await;
        let vlans: BTreeSet<u16> = owned
            .iter()
            .filter_map(|name| {
                name.strip_prefix(BRIDGE_PREFIX)
                    .or_else(|| name.strip_prefix(VLAN_PREFIX))
                    .or_else(|| name.strip_prefix(VXLAN_PREFIX))
                    .and_then(|n| n.parse().ok())
            })
            .collect();
        for vlan in vlans.into_iter().filter(|v| !in_use(*v)) {
            self.remove_vlan(vlan, &mut owned).await?;
        }
        Ok(())
    }

    /// The largest packet a guest may send over a VXLAN-carried VLAN: the private
    /// interface's MTU less VXLAN's 50 bytes of headers, so that DHCP can tell the guests (a
    /// frame over it would be dropped by the bridge). `None` when the VLANs are not VXLAN.
    pub async fn vxlan_mtu(&self) -> Result<Option<u32>, LinksError> {
        if !matches!(self.carrier, Some(Carrier::Vxlan { .. })) {
            return Ok(None);
        }
        let parent = self
            .required("private interface", &self.private_interface)
            .await?;
        let mtu = parent.message.attributes.iter().find_map(|a| match a {
            LinkAttribute::Mtu(mtu) => Some(*mtu),
            _ => None,
        });
        Ok(mtu.map(|m| m.saturating_sub(VXLAN_OVERHEAD)))
    }

    /// The CC's bridge for the guests of VLAN `vlan` (MANAGED), made with its VLAN interface
    /// if missing, as a node's is for its guests; its name. The gateway's address goes on it.
    pub async fn gateway_bridge(&self, vlan: u16) -> Result<String, LinksError> {
        let mut owned = self.owned.lock().await;
        Ok(self.vlan_bridge(vlan, &mut owned).await?.0)
    }

    /// Makes the addresses Koala holds on this namespace's interfaces exactly `wanted`
    /// (interface, address, prefix length): the CC's gateway addresses on the guest bridges and
    /// the public addresses of its guests. Each is recorded before it is added; recorded ones
    /// no longer wanted are removed; an address Koala did not add is never removed.
    pub async fn set_addresses(
        &self,
        wanted: &BTreeSet<(String, Ipv4Addr, u8)>,
    ) -> Result<(), LinksError> {
        let mut owned = self.owned.lock().await;
        let entry = |(name, ip, prefix): &(String, Ipv4Addr, u8)| {
            format!("{ADDRESS_PREFIX}{name}/{ip}/{prefix}")
        };
        let wanted_entries: BTreeSet<String> = wanted.iter().map(entry).collect();
        for (name, ip, prefix) in wanted {
            let Some(found) = find(&self.handle, name).await? else {
                return Err(LinksError::Missing {
                    what: "interface",
                    name: name.clone(),
                    netns: self.netns.path.clone(),
                });
            };
            self.own(&mut owned, &entry(&(name.clone(), *ip, *prefix)))?;
            self.handle
                .address()
                .add(found.index, IpAddr::V4(*ip), *prefix)
                .replace()
                .execute()
                .await
                .map_err(|source| LinksError::Netlink {
                    action: format!("add {ip}/{prefix} to {name}"),
                    source,
                })?;
        }
        let stale: Vec<String> = owned
            .iter()
            .filter(|e| e.starts_with(ADDRESS_PREFIX) && !wanted_entries.contains(*e))
            .cloned()
            .collect();
        for stale_entry in stale {
            let parsed = stale_entry.strip_prefix(ADDRESS_PREFIX).and_then(|rest| {
                let (name, rest) = rest.split_once('/')?;
                let (ip, prefix) = rest.split_once('/')?;
                Some((
                    name.to_owned(),
                    ip.parse::<Ipv4Addr>().ok()?,
                    prefix.parse::<u8>().ok()?,
                ))
            });
            if let Some((name, ip, prefix)) = parsed {
                self.remove_address(&name, ip, prefix).await?;
            }
            owned.remove(&stale_entry);
            write_record(&self.record, &owned)?;
        }
        Ok(())
    }

    /// Deletes `ip/prefix` from interface `name` if it is there.
    async fn remove_address(&self, name: &str, ip: Ipv4Addr, prefix: u8) -> Result<(), LinksError> {
        let Some(found) = find(&self.handle, name).await? else {
            return Ok(());
        };
        let mut addresses = self
            .handle
            .address()
            .get()
            .set_link_index_filter(found.index)
            .set_address_filter(IpAddr::V4(ip))
            .set_prefix_length_filter(prefix)
            .execute();
        while let Some(message) =
            addresses
                .try_next()
                .await
                .map_err(|source| LinksError::Netlink {
                    action: format!("list the addresses of {name}"),
                    source,
                })?
        {
            self.handle
                .address()
                .del(message)
                .execute()
                .await
                .map_err(|source| LinksError::Netlink {
                    action: format!("remove {ip}/{prefix} from {name}"),
                    source,
                })?;
        }
        Ok(())
    }

    /// The VLANs whose bridges the node made and still records.
    pub async fn owned_vlans(&self) -> BTreeSet<u16> {
        self.owned
            .lock()
            .await
            .iter()
            .filter_map(|name| name.strip_prefix(BRIDGE_PREFIX)?.parse().ok())
            .collect()
    }

    /// The interface `name` the table requires (`what` names its key in messages).
    async fn required(
        &self,
        what: &'static str,
        name: &Option<String>,
    ) -> Result<Found, LinksError> {
        let missing = |name: &str| LinksError::Missing {
            what,
            name: name.to_owned(),
            netns: self.netns.path.clone(),
        };
        let name = name
            .as_deref()
            .ok_or_else(|| missing("(none configured)"))?;
        find(&self.handle, name).await?.ok_or_else(|| missing(name))
    }

    /// The bridge of `vlan`, with its carrier (VLAN or VXLAN interface on the private
    /// interface) enslaved to it, both up; made where missing, and recorded as used (before
    /// they are made, so a crash right after cannot leave one the record does not name).
    async fn vlan_bridge(
        &self,
        vlan: u16,
        owned: &mut BTreeSet<String>,
    ) -> Result<(String, u32), LinksError> {
        let carrier = self.carrier.ok_or(LinksError::NoVlan)?;
        let parent = self
            .required("private interface", &self.private_interface)
            .await?;
        let bridge = vlan_bridge_name(vlan);
        self.own(owned, &bridge)?;
        let bridge_index = match find(&self.handle, &bridge).await? {
            Some(found) => found.index,
            None => {
                add(
                    &self.handle,
                    LinkBridge::new(&bridge).build(),
                    format!("make the bridge {bridge}"),
                )
                .await?;
                self.index_of(&bridge).await?
            }
        };
        set(
            &self.handle,
            LinkUnspec::new_with_index(bridge_index).up().build(),
            format!("bring {bridge} up"),
        )
        .await?;
        let carried = vlan_interface_name(carrier, vlan);
        self.own(owned, &carried)?;
        let carried_index = match find(&self.handle, &carried).await? {
            Some(found) => found.index,
            None => {
                let parent_name = self.private_interface.as_deref().unwrap_or_default();
                let message = match carrier {
                    Carrier::Tagged => LinkVlan::new(&carried, parent.index, vlan).build(),
                    Carrier::Vxlan { group } => LinkVxlan::new(&carried, u32::from(vlan))
                        .dev(parent.index)
                        .group(group)
                        .port(VXLAN_PORT)
                        .build(),
                };
                match self.handle.link().add(message).execute().await {
                    Ok(()) => {}
                    Err(e)
                        if errno(&e) == Some(Errno::EOPNOTSUPP) && carrier == Carrier::Tagged =>
                    {
                        return Err(LinksError::NoVlanSupport { vlan })
                    }
                    Err(source) => {
                        return Err(LinksError::Netlink {
                            action: format!(
                                "make {carried}, which carries VLAN {vlan} over {parent_name}"
                            ),
                            source,
                        })
                    }
                }
                self.index_of(&carried).await?
            }
        };
        set(
            &self.handle,
            LinkUnspec::new_with_index(carried_index)
                .controller(bridge_index)
                .up()
                .build(),
            format!("plug {carried} into {bridge}"),
        )
        .await?;
        Ok((bridge, bridge_index))
    }

    /// Lets go of the carrier and bridge of `vlan`: deleted when nothing else uses the bridge
    /// (no port but the carrier, no IPv4 address: another role of this host still serving the
    /// VLAN keeps it), then forgotten either way.
    async fn remove_vlan(&self, vlan: u16, owned: &mut BTreeSet<String>) -> Result<(), LinksError> {
        let bridge = vlan_bridge_name(vlan);
        let carriers = [
            format!("{VLAN_PREFIX}{vlan}"),
            format!("{VXLAN_PREFIX}{vlan}"),
        ];
        if owned.contains(&bridge) && !self.shared(&bridge, &carriers).await? {
            for name in carriers.iter().chain([&bridge]) {
                if !owned.contains(name) {
                    continue;
                }
                if let Some(found) = find(&self.handle, name).await? {
                    match self.handle.link().del(found.index).execute().await {
                        Ok(()) => {}
                        // Gone meanwhile (a VLAN interface goes with its parent).
                        Err(e) if errno(&e) == Some(Errno::ENODEV) => {}
                        Err(source) => {
                            return Err(LinksError::Netlink {
                                action: format!("remove {name}"),
                                source,
                            })
                        }
                    }
                }
            }
        }
        for name in carriers.iter().chain([&bridge]) {
            if owned.remove(name) {
                write_record(&self.record, owned)?;
            }
        }
        Ok(())
    }

    /// Whether the bridge `bridge` serves someone besides this role's guests that have gone:
    /// a port other than its `carriers`, or an IPv4 address on it.
    async fn shared(&self, bridge: &str, carriers: &[String]) -> Result<bool, LinksError> {
        let Some(found) = find(&self.handle, bridge).await? else {
            return Ok(false);
        };
        let failed = |source| LinksError::Netlink {
            action: format!("list what uses {bridge}"),
            source,
        };
        let mut addresses = self
            .handle
            .address()
            .get()
            .set_link_index_filter(found.index)
            .execute();
        while let Some(address) = addresses.try_next().await.map_err(failed)? {
            // (IPv6's link-local address comes with any interface that is up.)
            if address.header.family == rtnetlink::packet_route::AddressFamily::Inet {
                return Ok(true);
            }
        }
        let mut all = self.handle.link().get().execute();
        while let Some(link) = all.try_next().await.map_err(failed)? {
            let port = Found {
                index: link.header.index,
                message: link,
            };
            if port.controller() == Some(found.index) {
                let name = port.message.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfName(name) => Some(name.as_str()),
                    _ => None,
                });
                if !name.is_some_and(|n| carriers.iter().any(|c| c == n)) {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Records `name` as the node's before it is made, so that a crash right after the
    /// making cannot leave an object of the node's that the node does not know.
    fn own(&self, owned: &mut BTreeSet<String>, name: &str) -> Result<(), LinksError> {
        if owned.insert(name.to_owned()) {
            write_record(&self.record, owned)?;
        }
        Ok(())
    }

    async fn index_of(&self, name: &str) -> Result<u32, LinksError> {
        find(&self.handle, name)
            .await?
            .map(|f| f.index)
            .ok_or_else(|| LinksError::Missing {
                what: "interface just made",
                name: name.to_owned(),
                netns: self.netns.path.clone(),
            })
    }

    /// Moves `tap` from libvirtd's namespace (that of the process `pid_file` names) into the
    /// node's; its index there.
    async fn move_here(&self, tap: &str, pid_file: &Path) -> Result<u32, LinksError> {
        let there = Netns::of_pid_file(pid_file)?;
        let missing = || LinksError::TapMissing {
            tap: tap.to_owned(),
            netns: there.path.clone(),
        };
        if there.is(&self.netns) {
            return Err(missing());
        }
        let handle = there.connect().await?;
        let found = find(&handle, tap).await?.ok_or_else(missing)?;
        set(
            &handle,
            LinkUnspec::new_with_index(found.index)
                .setns_by_fd(self.netns.file.as_raw_fd())
                .build(),
            format!(
                "move the tap {tap} from {} to {}",
                there.path.display(),
                self.netns.path.display()
            ),
        )
        .await?;
        drop(handle);
        self.index_of(tap).await
    }
}

/// The host lock file of namespace `netns`: named by the namespace's device and inode, which
/// every process in it sees alike.
fn host_lock_path(netns: &Netns) -> PathBuf {
    let (dev, ino) = netns
        .file
        .metadata()
        .map(|m| (m.dev(), m.ino()))
        .unwrap_or_default();
    PathBuf::from(format!("/run/koala/links-{dev:x}-{ino:x}.lock"))
}

/// The errno of a netlink refusal.
fn errno(e: &rtnetlink::Error) -> Option<Errno> {
    match e {
        rtnetlink::Error::NetlinkError(message) => Some(Errno::from_raw(-message.raw_code())),
        _ => None,
    }
}

/// The interface `name` in the handle's namespace, or `None`.
async fn find(handle: &Handle, name: &str) -> Result<Option<Found>, LinksError> {
    let mut links = handle.link().get().match_name(name).execute();
    match links.try_next().await {
        Ok(Some(message)) => Ok(Some(Found {
            index: message.header.index,
            message,
        })),
        Ok(None) => Ok(None),
        Err(e) if errno(&e) == Some(Errno::ENODEV) => Ok(None),
        Err(source) => Err(LinksError::Netlink {
            action: format!("look up {name}"),
            source,
        }),
    }
}

async fn add(handle: &Handle, message: LinkMessage, action: String) -> Result<(), LinksError> {
    handle
        .link()
        .add(message)
        .execute()
        .await
        .map_err(|source| LinksError::Netlink { action, source })
}

async fn set(handle: &Handle, message: LinkMessage, action: String) -> Result<(), LinksError> {
    handle
        .link()
        .set(message)
        .execute()
        .await
        .map_err(|source| LinksError::Netlink { action, source })
}

fn read_record(path: &Path) -> Result<BTreeSet<String>, LinksError> {
    let bad = |source| LinksError::Record {
        path: path.to_owned(),
        source,
    };
    match std::fs::read(path) {
        Ok(bytes) => {
            let record: Record =
                serde_json::from_slice(&bytes).map_err(|e| bad(io::Error::other(e)))?;
            if record.version != RECORD_VERSION {
                return Err(bad(io::Error::other(format!(
                    "version {} is not {RECORD_VERSION}",
                    record.version
                ))));
            }
            Ok(record.links)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeSet::new()),
        Err(e) => Err(bad(e)),
    }
}

/// Writes the record whole: a temporary file, fsync, rename, fsync of the folder, so that
/// the file always holds one complete record.
fn write_record(path: &Path, owned: &BTreeSet<String>) -> Result<(), LinksError> {
    use std::io::Write;
    let bad = |source| LinksError::Record {
        path: path.to_owned(),
        source,
    };
    let record = Record {
        version: RECORD_VERSION,
        links: owned.clone(),
    };
    let bytes = serde_json::to_vec_pretty(&record).map_err(|e| bad(io::Error::other(e)))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let temp = path.with_extension("json.tmp");
    let written = File::create(&temp)
        .and_then(|mut file| {
            file.write_all(&bytes)?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&temp, path))
        .and_then(|()| File::open(dir)?.sync_all());
    if written.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    written.map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_linux_and_carry_koalas_prefix() {
        assert_eq!(tap_name("i-12345678"), "ktap-12345678");
        let long = tap_name("i-0123456789abcdef0");
        assert_eq!(long, "ktap-789abcdef0");
        assert!(long.len() <= 15);
        assert_eq!(vlan_bridge_name(4094), "kbr-4094");
        assert_eq!(vlan_interface_name(Carrier::Tagged, 10), "kvl-10");
        let group = crate::DEFAULT_VXLAN_GROUP;
        assert_eq!(
            vlan_interface_name(Carrier::Vxlan { group }, 4094),
            "kvx-4094"
        );
    }

    #[test]
    fn the_record_survives_a_round_trip_and_refuses_other_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("links.json");
        assert!(read_record(&path).unwrap().is_empty());
        let owned: BTreeSet<String> = ["kbr-10".to_owned(), "kvl-10".to_owned()].into();
        write_record(&path, &owned).unwrap();
        assert_eq!(read_record(&path).unwrap(), owned);
        std::fs::write(&path, r#"{"version": 2, "links": []}"#).unwrap();
        assert!(matches!(read_record(&path), Err(LinksError::Record { .. })));
    }
}

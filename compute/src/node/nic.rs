//! An instance's NIC on its node: the domain's `<interface>`, and the plugging of its tap.
//!
//! The domain starts paused with a virtio NIC on a tap libvirt makes; the node plugs the tap
//! into the guest's bridge ([`network::Links::plug`], moving it from libvirtd's network
//! namespace into the node's if they differ), then lets the guest run, so that its first DHCP
//! request already reaches the network. The tap vanishes with QEMU; the per-VLAN bridge of
//! MANAGED goes when no guest of the node uses its VLAN any more.

use std::path::{Path, PathBuf};

use network::{Links, LinksError};
use rpc::NicOrder;

use crate::domain::Nic;

/// Where libvirt's system QEMU driver writes the pid of each domain's QEMU (`<name>.pid`):
/// QEMU runs in libvirtd's network namespace, where libvirt makes the tap.
pub const QEMU_PID_DIR: &str = "/run/libvirt/qemu";

/// The pid file of the QEMU of domain `name`.
pub fn qemu_pid_file(name: &str) -> PathBuf {
    Path::new(QEMU_PID_DIR).join(format!("{name}.pid"))
}

/// The NIC of instance `id`'s domain for the NIC its order asks for.
pub fn domain_nic(id: &str, nic: &NicOrder) -> Nic {
    Nic {
        mac: nic.mac,
        tap: network::tap_name(id),
    }
}

/// Plugs the tap of instance `id`, whose domain libvirt started (paused or running), into
/// the bridge of its network; returns the bridge's name. Plugging a plugged tap changes
/// nothing: what a restarted node does for its running guests.
pub async fn plug(links: &Links, id: &str, nic: &NicOrder) -> Result<String, LinksError> {
    let _host = links.host_lock().await?;
    links
        .plug(&network::tap_name(id), nic.vlan, &qemu_pid_file(id))
        .await
}

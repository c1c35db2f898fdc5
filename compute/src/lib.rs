//! Koala's compute crate: the cluster controller and the node controller.
//!
//! The node controller ([`node`]) runs instances as libvirt domains: [`domain`] renders an
//! instance's domain XML (direct kernel boot, a copy-on-write root disk, blank ephemeral and
//! swap disks sized by [`disk_layout`], a NoCloud config drive, the serial console to a log),
//! [`config_drive`] writes that config drive, [`hypervisor`] defines, starts, resets and
//! destroys domains, [`accel`] picks KVM or TCG by booting a probe guest, and [`console`]
//! watches a console log. The cluster controller ([`cluster`]) keeps the registry of nodes
//! and places instances on them. The components talk the signed JSON protocol of [`rpc`].

pub mod accel;
pub mod cluster;
pub mod config_drive;
pub mod console;
pub mod domain;
mod error;
pub mod hypervisor;
pub mod node;
pub mod qemu_user;

pub use error::Error;

pub(crate) use rpc::{error_chain, lock};

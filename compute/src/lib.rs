//! Koala's compute crate: what a node controller needs to run instances as libvirt domains.
//!
//! This first slice boots guests: [`domain`] renders an instance's libvirt domain XML (direct
//! kernel boot, a copy-on-write root disk, a NoCloud config drive, the serial console to a log),
//! [`config_drive`] writes that config drive, [`hypervisor`] defines, starts, resets and
//! destroys domains over a libvirt connection, [`accel`] picks KVM or TCG by booting a probe
//! guest, and [`console`] watches a console log. Every call blocks: the async node controller
//! runs them on `spawn_blocking`.

pub mod accel;
pub mod config_drive;
pub mod console;
pub mod domain;
mod error;
pub mod hypervisor;
pub mod qemu_user;

pub use error::Error;

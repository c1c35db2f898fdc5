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
pub mod disk_layout;
pub mod domain;
mod error;
pub mod hypervisor;
pub mod node;
pub mod qemu_user;
pub mod rpc;
pub mod tls;

pub use error::Error;

/// An error and its chain of causes on one line (`what failed: why: why`): hyper's and
/// libvirt's own messages alone often say only the outermost failure.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Locks a mutex whose data stays consistent even if a holder panicked (every critical
/// section of the crate completes its update before it can panic).
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

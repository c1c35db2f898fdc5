//! The user QEMU runs as, and handing it the files of an instance.
//!
//! Koala renders every domain with a static DAC label and `relabel='no'`: QEMU runs as this
//! unprivileged user (Debian's `libvirt-qemu`), and libvirt never chowns a file. Libvirt's
//! dynamic ownership would otherwise chown the shared, read-only base images, kernels and
//! ramdisks of the node's image cache on every start and back on every stop. Instead the node
//! controller gives the user the few files each instance writes (its root disk overlay and its
//! console log); everything QEMU only reads must be world-readable in traversable folders.

use std::os::unix::fs::chown;
use std::path::Path;

use crate::Error;

/// The name of the user Debian's libvirt runs QEMU as.
pub const DEFAULT_NAME: &str = "libvirt-qemu";

/// A user and group id for QEMU's processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QemuUser {
    /// The user id.
    pub uid: u32,
    /// The group id (the user's primary group).
    pub gid: u32,
}

impl QemuUser {
    /// Looks `name` up in `/etc/passwd`.
    pub fn lookup(name: &str) -> Result<Self, Error> {
        let passwd =
            std::fs::read_to_string("/etc/passwd").map_err(Error::io("read", "/etc/passwd"))?;
        parse_passwd(&passwd, name).ok_or_else(|| Error::NoSuchUser(name.to_owned()))
    }

    /// Makes `path` owned by this user, so that QEMU can write it.
    pub fn give(&self, path: &Path) -> Result<(), Error> {
        chown(path, Some(self.uid), Some(self.gid)).map_err(Error::io("chown", path))
    }

    /// The label of libvirt's DAC security driver: numeric ids, so no name lookup in libvirt.
    pub fn dac_label(&self) -> String {
        format!("+{}:+{}", self.uid, self.gid)
    }
}

fn parse_passwd(passwd: &str, name: &str) -> Option<QemuUser> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some(QemuUser { uid, gid })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_user_in_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      libvirt-qemu:x:64055:107:Libvirt Qemu,,,:/var/lib/libvirt:/usr/sbin/nologin\n";
        assert_eq!(
            parse_passwd(passwd, "libvirt-qemu"),
            Some(QemuUser {
                uid: 64055,
                gid: 107
            })
        );
        assert_eq!(parse_passwd(passwd, "libvirt"), None);
        assert_eq!(
            QemuUser {
                uid: 64055,
                gid: 107
            }
            .dac_label(),
            "+64055:+107"
        );
    }
}

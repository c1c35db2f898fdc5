//! How a VM type's disk is shared among an instance's disks.
//!
//! A Eucalyptus user expects of an instance-store VM type what Eucalyptus gave: the type's
//! disk size (`m1.small`: 5 GiB) covers the root disk, a swap disk and an ephemeral disk
//! (`ephemeral0`, where EC2 images mount `/mnt`). Eucalyptus 3 (`VmTypes.asVmTypeInfo`) made
//! the root as large as the image, the swap 512 MiB, and gave the rest to ephemeral0; an image
//! larger than the type's disk was refused. Koala does the same, with one difference: where
//! the image leaves less than 512 MiB, Eucalyptus refused the launch, Koala leaves the swap
//! disk out and gives what remains to ephemeral0, since the image fits.
//!
//! The CLC computes the layout at RunInstances to refuse an image too large for its type; the
//! node computes it again from the image's real size when it makes the disks.

/// The swap disk's size, as in Eucalyptus (`VmTypes.SWAP_SIZE_BYTES`).
pub const SWAP_BYTES: u64 = 512 << 20;

/// The name of the ephemeral disk (EC2's virtual name) and of its file in the instance folder.
pub const EPHEMERAL0: &str = "ephemeral0";

/// The name of the swap disk (EC2's virtual name) and of its file in the instance folder.
pub const SWAP: &str = "swap";

/// One gibibyte: VM types give their disk in GiB.
const GIB: u64 = 1 << 30;

/// A disk's sector: a guest sees a disk in whole sectors, so blank disks are cut to them.
const SECTOR: u64 = 512;

/// The sizes of an instance's disks, in bytes; a size of 0 means no such disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskLayout {
    /// The root disk: the machine image, as large as it is.
    pub root_bytes: u64,
    /// The ephemeral disk: what the type's disk has left after the root and the swap.
    pub ephemeral_bytes: u64,
    /// The swap disk: [`SWAP_BYTES`] when there is room for it.
    pub swap_bytes: u64,
}

/// A blank disk of an instance (ephemeral0 or swap): made sparse, attached after the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlankDisk {
    /// Its EC2 virtual name ([`EPHEMERAL0`], [`SWAP`]), also its file's name.
    pub name: &'static str,
    /// Its size in bytes, a whole number of sectors.
    pub bytes: u64,
}

/// An image larger than its VM type's disk: the instance cannot have its root disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the image ({} MiB) is larger than the disk of the VM type ({} MiB)",
    image_bytes.div_ceil(1 << 20),
    disk_bytes >> 20
)]
pub struct ImageTooLarge {
    /// The image's size in bytes.
    pub image_bytes: u64,
    /// The type's disk in bytes.
    pub disk_bytes: u64,
}

impl DiskLayout {
    /// The layout for an image of `image_bytes` on a VM type whose disk is `disk_gib` GiB.
    pub fn for_type(image_bytes: u64, disk_gib: u64) -> Result<DiskLayout, ImageTooLarge> {
        let disk_bytes = disk_gib.saturating_mul(GIB);
        let room = disk_bytes.checked_sub(image_bytes).ok_or(ImageTooLarge {
            image_bytes,
            disk_bytes,
        })?;
        let swap_bytes = if room >= SWAP_BYTES { SWAP_BYTES } else { 0 };
        let ephemeral_bytes = (room - swap_bytes) / SECTOR * SECTOR;
        Ok(DiskLayout {
            root_bytes: image_bytes,
            ephemeral_bytes,
            swap_bytes,
        })
    }

    /// The blank disks to make, in the order they are attached after the root disk
    /// (ephemeral0 the guest's second disk, as EC2 gives it, then swap); none of size 0.
    pub fn blank_disks(&self) -> Vec<BlankDisk> {
        [(EPHEMERAL0, self.ephemeral_bytes), (SWAP, self.swap_bytes)]
            .into_iter()
            .filter(|&(_, bytes)| bytes > 0)
            .map(|(name, bytes)| BlankDisk { name, bytes })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn root_is_the_image_swap_is_512_mib_ephemeral_is_the_rest() {
        // The test guest (64 MiB) on m1.small (5 GiB).
        let layout = DiskLayout::for_type(64 * MIB, 5).unwrap();
        assert_eq!(
            layout,
            DiskLayout {
                root_bytes: 64 * MIB,
                ephemeral_bytes: 5 * GIB - 64 * MIB - 512 * MIB,
                swap_bytes: 512 * MIB,
            }
        );
        assert_eq!(
            layout.blank_disks(),
            [
                BlankDisk {
                    name: EPHEMERAL0,
                    bytes: 5 * GIB - 576 * MIB
                },
                BlankDisk {
                    name: SWAP,
                    bytes: 512 * MIB
                },
            ]
        );
        let total = layout.root_bytes + layout.ephemeral_bytes + layout.swap_bytes;
        assert_eq!(total, 5 * GIB, "the three fill the type's disk");
    }

    #[test]
    fn ephemeral_is_cut_to_whole_sectors() {
        let layout = DiskLayout::for_type(10 * MIB + 100, 1).unwrap();
        assert_eq!(layout.root_bytes, 10 * MIB + 100);
        assert_eq!(layout.swap_bytes, 512 * MIB);
        assert_eq!(layout.ephemeral_bytes, GIB - 522 * MIB - SECTOR);
        assert_eq!(layout.ephemeral_bytes % SECTOR, 0);
    }

    #[test]
    fn no_swap_when_the_image_leaves_less_than_512_mib() {
        let layout = DiskLayout::for_type(GIB - 100 * MIB, 1).unwrap();
        assert_eq!(layout.swap_bytes, 0);
        assert_eq!(layout.ephemeral_bytes, 100 * MIB);
        assert_eq!(
            layout.blank_disks(),
            [BlankDisk {
                name: EPHEMERAL0,
                bytes: 100 * MIB
            }]
        );
        // Exactly 512 MiB left: all of it is swap, no ephemeral disk.
        let layout = DiskLayout::for_type(GIB - 512 * MIB, 1).unwrap();
        assert_eq!((layout.ephemeral_bytes, layout.swap_bytes), (0, 512 * MIB));
        assert_eq!(layout.blank_disks().len(), 1);
    }

    #[test]
    fn an_image_filling_the_disk_gets_no_blank_disk() {
        let layout = DiskLayout::for_type(5 * GIB, 5).unwrap();
        assert_eq!(layout.root_bytes, 5 * GIB);
        assert!(layout.blank_disks().is_empty());
        // Less than a sector left: no ephemeral disk either.
        let layout = DiskLayout::for_type(5 * GIB - 100, 5).unwrap();
        assert!(layout.blank_disks().is_empty());
    }

    #[test]
    fn an_image_larger_than_the_disk_is_refused() {
        let err = DiskLayout::for_type(5 * GIB + 1, 5).unwrap_err();
        assert_eq!(
            err,
            ImageTooLarge {
                image_bytes: 5 * GIB + 1,
                disk_bytes: 5 * GIB
            }
        );
        assert_eq!(
            err.to_string(),
            "the image (5121 MiB) is larger than the disk of the VM type (5120 MiB)"
        );
        // A huge type does not overflow.
        assert!(DiskLayout::for_type(u64::MAX, u64::MAX).is_ok());
    }
}

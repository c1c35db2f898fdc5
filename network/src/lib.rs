//! Guest networking as Eucalyptus ran it, in four modes (SYSTEM, STATIC, MANAGED,
//! MANAGED-NOVLAN).
//!
//! The CLC decides who is where: [`NetworkSettings`] is the `[network]` table of koala.toml,
//! checked once at start into a [`Layout`], and the layout says which private subnet and VLAN
//! a security-group network gets, which address and MAC an instance in it gets, and which
//! addresses of the subnet are the gateway's. Nothing here touches the host; the host objects
//! (bridges, taps, VLAN interfaces, nftables rules, the DHCP server) are built from the same
//! layout by the roles that own them.

mod config;
mod layout;

pub use config::{Ipv4Net, Mode, NetworkError, NetworkSettings, StaticHost};
pub use layout::{GroupNetwork, Layout, Mac};

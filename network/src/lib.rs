//! Guest networking as Eucalyptus ran it, in four modes (SYSTEM, STATIC, MANAGED,
//! MANAGED-NOVLAN).
//!
//! The CLC decides who is where: [`NetworkSettings`] is the `[network]` table of koala.toml,
//! checked once at start into a [`Layout`], and the layout says which private subnet and VLAN
//! a security-group network gets, which address and MAC an instance in it gets, and which
//! addresses of the subnet are the gateway's. The host objects (bridges, taps, VLAN
//! interfaces, nftables rules, the DHCP server) are built from the same layout by the roles
//! that own them: [`Plan`] is the CC's security-group and NAT rules, applied through [`Nft`];
//! `Links` (feature `links`) is the node controller's taps, bridges and VLAN interfaces.

mod config;
mod dhcp;
#[cfg(feature = "links")]
mod gateway;
mod guard;
mod layout;
#[cfg(feature = "links")]
mod links;
mod nft;
mod rules;
#[cfg(feature = "links")]
mod sightings;

pub use config::{
    Ipv4Net, Mode, NetworkError, NetworkSettings, StaticHost, VlanTransport,
    DEFAULT_METADATA_LISTEN, DEFAULT_VXLAN_GROUP,
};
pub use dhcp::{Dhcp, DhcpError, DhcpHost};
#[cfg(feature = "links")]
pub use gateway::{Gateway, GatewayError};
pub use guard::{Guard, GuardedNic};
pub use layout::{Carrier, GroupNetwork, Layout, Mac};
#[cfg(feature = "links")]
pub use links::{
    tap_name, vlan_bridge_name, vlan_interface_name, HostLock, Links, LinksError, Netns,
    BRIDGE_PREFIX, TAP_PREFIX, VLAN_PREFIX, VXLAN_PREFIX,
};
pub use nft::{Nft, NftError};
pub use rules::{
    remove, Grant, Guest, Plan, Protocol, RulesError, Source, METADATA_ADDRESS, TABLE,
};
#[cfg(feature = "links")]
pub use sightings::Sightings;

//! The `[network]` table of koala.toml: eucalyptus.conf's `VNET_*` knobs under readable names,
//! checked as a whole at start so that a bad subnet or a missing interface stops the daemon
//! with a sentence, not the first RunInstances.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::layout::{Carrier, Layout, Mac};

/// Eucalyptus' `VNET_MODE`: who gives guests their addresses and who filters their traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// The guest's NIC on the node's own bridge; the site's DHCP server gives the address.
    System,
    /// As SYSTEM, but the CC's DHCP server gives each MAC the address the table maps it to.
    Static,
    /// One private subnet and one VLAN per security group; the CC routes, filters and NATs.
    Managed,
    /// As MANAGED without VLAN tags: the groups are kept apart by rules only.
    ManagedNovlan,
}

impl Mode {
    /// Whether Koala plans the private addresses, filters by security group and gives public
    /// addresses (the two MANAGED modes).
    pub fn is_managed(self) -> bool {
        matches!(self, Mode::Managed | Mode::ManagedNovlan)
    }

    /// The name koala.toml and Eucalyptus use.
    pub fn name(self) -> &'static str {
        match self {
            Mode::System => "system",
            Mode::Static => "static",
            Mode::Managed => "managed",
            Mode::ManagedNovlan => "managed-novlan",
        }
    }
}

/// How MANAGED carries each group network's VLAN between the CC and the nodes
/// (`vlan_transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum VlanTransport {
    /// 802.1Q tags on the private interface, as Eucalyptus did: the switches between the
    /// hosts must trunk the VLANs, and every host's kernel needs 802.1Q.
    #[serde(rename = "802.1q")]
    Tagged,
    /// Each VLAN a VXLAN segment over the private interface's IP network (its VNI the VLAN
    /// number, flooding by multicast): no switch configuration, and hosts whose kernel has no
    /// 802.1Q still keep the groups apart. The default: it works wherever the hosts reach
    /// each other over IP (and it is the transport Koala's tests run).
    #[default]
    #[serde(rename = "vxlan")]
    Vxlan,
}

/// The multicast group MANAGED's VXLAN segments flood through when `vxlan_group` is not
/// set: in the IPv4 local scope (239.255.0.0/16, RFC 2365), which routers never forward
/// past the site.
pub const DEFAULT_VXLAN_GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 75, 1);

/// An IPv4 network in CIDR notation, `10.128.0.0/16`, its address the network's own (no host
/// bits set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Net {
    network: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Net {
    /// The network of `network/prefix`, refused when `network` has host bits set.
    pub fn new(network: Ipv4Addr, prefix: u8) -> Result<Self, NetworkError> {
        let net = Ipv4Net { network, prefix };
        if prefix > 32 {
            return Err(NetworkError::Subnet(
                format!("{network}/{prefix}"),
                "the prefix is over 32",
            ));
        }
        if u32::from(network) & !net.mask() != 0 {
            return Err(NetworkError::Subnet(
                net.to_string(),
                "the address has host bits set (write the network's first address)",
            ));
        }
        Ok(net)
    }

    /// The network `ip/prefix` lies in, host bits cleared: how EC2 reads a rule's CIDR
    /// (`10.1.2.3/8` is `10.0.0.0/8`). `None` when the prefix is over 32.
    pub fn containing(ip: Ipv4Addr, prefix: u8) -> Option<Self> {
        if prefix > 32 {
            return None;
        }
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        Ipv4Net::new(Ipv4Addr::from(u32::from(ip) & mask), prefix).ok()
    }

    /// The network's first address.
    pub fn network(&self) -> Ipv4Addr {
        self.network
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// The netmask as a number.
    fn mask(&self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix))
            .unwrap_or(0)
    }

    /// The netmask in dotted form, as DHCP and eucalyptus.conf write it.
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask())
    }

    /// How many addresses it spans (2^(32 - prefix)).
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }

    /// The last address (the broadcast address of a subnet).
    pub fn last(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !self.mask())
    }

    /// Whether `ip` is inside.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network)
    }

    /// Whether the two share any address.
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        self.contains(other.network) || other.contains(self.network)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = NetworkError;

    fn from_str(text: &str) -> Result<Self, NetworkError> {
        let bad = |why| NetworkError::Subnet(text.to_owned(), why);
        let (ip, prefix) = text
            .split_once('/')
            .ok_or_else(|| bad("it is not ADDRESS/PREFIX"))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad("it is not an IPv4 address"))?;
        let prefix: u8 = prefix
            .parse()
            .map_err(|_| bad("the prefix is not a number"))?;
        Ipv4Net::new(ip, prefix)
    }
}

impl serde::Serialize for Ipv4Net {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Net {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One line of STATIC mode's MAC→IP table (eucalyptus.conf's `VNET_MACMAP`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticHost {
    /// The guest NIC's MAC, `d0:0d:…`.
    pub mac: Mac,
    /// The address DHCP gives it.
    pub ip: Ipv4Addr,
}

/// `[network]` of koala.toml. Without the table, instances get no NIC (the behaviour before
/// guest networking existed); with it, `mode` is required and each mode's keys are checked
/// by [`NetworkSettings::layout`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSettings {
    /// `VNET_MODE`.
    pub mode: Mode,
    /// `VNET_SUBNET`/`VNET_NETMASK` of the MANAGED modes: the space the groups' subnets are
    /// cut from [default: 10.128.0.0/16]; in STATIC, the one subnet of the table.
    pub private_subnet: Option<Ipv4Net>,
    /// `VNET_ADDRSPERNET`: the size of each group's subnet, a power of two from 16 to 4096
    /// [default: 32].
    pub addresses_per_network: Option<u32>,
    /// The VLAN tag of the first group network in MANAGED; the n-th takes `first_vlan + n`
    /// [default: 10].
    pub first_vlan: Option<u16>,
    /// How MANAGED carries the VLANs between hosts: `"vxlan"` [default] or `"802.1q"` tags.
    pub vlan_transport: Option<VlanTransport>,
    /// The multicast group of the VXLAN segments [default: 239.255.75.1].
    pub vxlan_group: Option<Ipv4Addr>,
    /// `VNET_DNS`: the name server DHCP announces.
    pub dns_server: Option<Ipv4Addr>,
    /// `VNET_ROUTER` of STATIC: the gateway DHCP announces.
    pub router: Option<Ipv4Addr>,
    /// `VNET_PUBINTERFACE`: where the public addresses live on the CC.
    pub public_interface: Option<String>,
    /// `VNET_PRIVINTERFACE`: the interface between the CC and the nodes (MANAGED tags its
    /// VLANs on it).
    pub private_interface: Option<String>,
    /// `VNET_BRIDGE`: the node's existing bridge the guests join (SYSTEM, STATIC,
    /// MANAGED-NOVLAN).
    pub bridge: Option<String>,
    /// `VNET_MACMAP` of STATIC.
    #[serde(default)]
    pub hosts: Vec<StaticHost>,
    /// Where the CLC answers the instance metadata service in the MANAGED modes, `HOST:PORT`
    /// (the CC sends guests' 169.254.169.254:80 there) [default: 0.0.0.0:8780]; read through
    /// [`NetworkSettings::metadata_address`].
    pub metadata_listen: Option<SocketAddr>,
}

/// Where the CLC serves instance metadata when `metadata_listen` is not set: every address
/// of the CLC's host (the CC reaches it over the private network), beside the main 8773.
pub const DEFAULT_METADATA_LISTEN: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 8780));

/// What is wrong with a `[network]` table.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NetworkError {
    /// A subnet that cannot be used.
    #[error("network: the subnet {0} cannot be used: {1}")]
    Subnet(String, &'static str),
    /// `addresses_per_network` out of its range.
    #[error("network: addresses_per_network = {0} must be a power of two from 16 to 4096, and no larger than private_subnet")]
    AddressesPerNetwork(u32),
    /// The group networks would need VLAN tags past 4094.
    #[error("network: {networks} group networks from first_vlan = {first} need tags up to {last}, past 4094: raise addresses_per_network or lower first_vlan")]
    Vlans {
        /// The first tag.
        first: u16,
        /// How many networks the subnet holds.
        networks: u32,
        /// The last tag they would need.
        last: u32,
    },
    /// A key the mode needs is missing.
    #[error("network: mode = \"{mode}\" needs {key}")]
    Missing {
        /// The mode.
        mode: &'static str,
        /// The missing key.
        key: &'static str,
    },
    /// A key the mode does not use is set: refused rather than ignored.
    #[error("network: {key} has no meaning in mode = \"{mode}\"")]
    Unused {
        /// The mode.
        mode: &'static str,
        /// The key that is set.
        key: &'static str,
    },
    /// An interface name Linux would refuse.
    #[error("network: {key} = {name:?} is not an interface name (1 to 15 characters, no '/', ':' or spaces)")]
    Interface {
        /// The key.
        key: &'static str,
        /// The name given.
        name: String,
    },
    /// A VXLAN group that is not a multicast address.
    #[error("network: vxlan_group = {0} is not a multicast address (224.0.0.0/4)")]
    VxlanGroup(Ipv4Addr),
    /// A MAC that is not six hex bytes.
    #[error("network: {0:?} is not a MAC (six hex bytes joined by ':')")]
    Mac(String),
    /// A STATIC table line that cannot be served.
    #[error("network: the static host {mac} = {ip}: {why}")]
    StaticHost {
        /// Its MAC.
        mac: Mac,
        /// Its address.
        ip: Ipv4Addr,
        /// Why.
        why: &'static str,
    },
}

/// Whether Linux accepts `name` as an interface name (IFNAMSIZ, and no separator `ip`
/// would misread).
fn valid_interface(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
}

/// The space of the MANAGED modes when none is configured (Eucalyptus' own default).
const DEFAULT_PRIVATE_SUBNET: Ipv4Net = Ipv4Net {
    network: Ipv4Addr::new(10, 128, 0, 0),
    prefix: 16,
};

/// The link-local network of the metadata service: a guest subnet there would hide it.
const LINK_LOCAL: Ipv4Net = Ipv4Net {
    network: Ipv4Addr::new(169, 254, 0, 0),
    prefix: 16,
};

impl NetworkSettings {
    /// Where the CLC serves instance metadata: in the MANAGED modes, `metadata_listen` or
    /// [`DEFAULT_METADATA_LISTEN`]; in the others none (guests there reach no metadata
    /// service through Koala, as in Eucalyptus' SYSTEM and STATIC modes).
    pub fn metadata_address(&self) -> Option<SocketAddr> {
        self.mode
            .is_managed()
            .then(|| self.metadata_listen.unwrap_or(DEFAULT_METADATA_LISTEN))
    }

    /// The table checked as a whole: every key the mode needs, none it would ignore.
    pub fn layout(&self) -> Result<Layout, NetworkError> {
        let carrier = match (self.mode, self.vlan_transport.unwrap_or_default()) {
            (Mode::Managed, VlanTransport::Tagged) => Some(Carrier::Tagged),
            (Mode::Managed, VlanTransport::Vxlan) => Some(Carrier::Vxlan {
                group: self.vxlan_group.unwrap_or(DEFAULT_VXLAN_GROUP),
            }),
            _ => None,
        };
        Ok(self
            .plan()?
            .with_interfaces(self.bridge.clone(), self.private_interface.clone())
            .with_carrier(carrier))
    }

    /// The address plan of [`NetworkSettings::layout`], every key checked.
    fn plan(&self) -> Result<Layout, NetworkError> {
        let mode = self.mode.name();
        for (key, name) in [
            ("public_interface", &self.public_interface),
            ("private_interface", &self.private_interface),
            ("bridge", &self.bridge),
        ] {
            if let Some(name) = name.as_ref().filter(|n| !valid_interface(n)) {
                return Err(NetworkError::Interface {
                    key,
                    name: name.clone(),
                });
            }
        }
        let unused = |key, set: bool| match set {
            true => Err(NetworkError::Unused { mode, key }),
            false => Ok(()),
        };
        let needs = |key, set: bool| match set {
            true => Ok(()),
            false => Err(NetworkError::Missing { mode, key }),
        };
        if !self.mode.is_managed() {
            unused(
                "addresses_per_network",
                self.addresses_per_network.is_some(),
            )?;
            unused("first_vlan", self.first_vlan.is_some())?;
            unused("public_interface", self.public_interface.is_some())?;
            unused("metadata_listen", self.metadata_listen.is_some())?;
            needs("bridge", self.bridge.is_some())?;
        }
        if self.mode != Mode::Static {
            unused("router", self.router.is_some())?;
            unused("hosts", !self.hosts.is_empty())?;
        }
        if self.mode != Mode::Managed {
            unused("first_vlan", self.first_vlan.is_some())?;
            unused("vlan_transport", self.vlan_transport.is_some())?;
            unused("vxlan_group", self.vxlan_group.is_some())?;
        }
        if self.vlan_transport.unwrap_or_default() != VlanTransport::Vxlan {
            unused("vxlan_group", self.vxlan_group.is_some())?;
        }
        if let Some(group) = self.vxlan_group.filter(|g| !g.is_multicast()) {
            return Err(NetworkError::VxlanGroup(group));
        }
        match self.mode {
            Mode::System => {
                unused("private_subnet", self.private_subnet.is_some())?;
                Ok(Layout::unplanned(self.mode))
            }
            Mode::Static => {
                needs("private_subnet", self.private_subnet.is_some())?;
                needs("router", self.router.is_some())?;
                let subnet = self.private_subnet.unwrap_or(DEFAULT_PRIVATE_SUBNET);
                let router = self.router.unwrap_or(Ipv4Addr::UNSPECIFIED);
                check_static(subnet, router, &self.hosts)?;
                Ok(Layout::with_static(subnet, router, self.hosts.clone()))
            }
            Mode::Managed | Mode::ManagedNovlan => {
                if self.mode == Mode::Managed {
                    needs("private_interface", self.private_interface.is_some())?;
                } else {
                    needs("bridge", self.bridge.is_some())?;
                }
                let space = self.private_subnet.unwrap_or(DEFAULT_PRIVATE_SUBNET);
                if space.overlaps(&LINK_LOCAL) {
                    return Err(NetworkError::Subnet(
                        space.to_string(),
                        "it overlaps 169.254.0.0/16, where the metadata service answers",
                    ));
                }
                let per_net = self.addresses_per_network.unwrap_or(32);
                if !per_net.is_power_of_two()
                    || !(16..=4096).contains(&per_net)
                    || u64::from(per_net) > space.size()
                {
                    return Err(NetworkError::AddressesPerNetwork(per_net));
                }
                let networks = (space.size() / u64::from(per_net)) as u32;
                let first_vlan = match self.mode {
                    Mode::Managed => {
                        let first = self.first_vlan.unwrap_or(10);
                        let last = u32::from(first) + networks - 1;
                        if first == 0 || last > 4094 {
                            return Err(NetworkError::Vlans {
                                first,
                                networks,
                                last,
                            });
                        }
                        Some(first)
                    }
                    _ => None,
                };
                Ok(Layout::managed(self.mode, space, per_net, first_vlan))
            }
        }
    }
}

/// STATIC's table: every address inside the subnet and usable, no MAC or address twice.
fn check_static(
    subnet: Ipv4Net,
    router: Ipv4Addr,
    hosts: &[StaticHost],
) -> Result<(), NetworkError> {
    if !subnet.contains(router) || router == subnet.network() || router == subnet.last() {
        return Err(NetworkError::Subnet(
            subnet.to_string(),
            "the router is not a host address inside it",
        ));
    }
    for (i, h) in hosts.iter().enumerate() {
        let bad = |why| NetworkError::StaticHost {
            mac: h.mac,
            ip: h.ip,
            why,
        };
        if !subnet.contains(h.ip) || h.ip == subnet.network() || h.ip == subnet.last() {
            return Err(bad("the address is not a host address of private_subnet"));
        }
        if h.ip == router {
            return Err(bad("the address is the router's"));
        }
        if hosts[..i].iter().any(|o| o.mac == h.mac) {
            return Err(bad("the MAC is in the table twice"));
        }
        if hosts[..i].iter().any(|o| o.ip == h.ip) {
            return Err(bad("the address is in the table twice"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> Result<Layout, String> {
        let s: NetworkSettings = toml::from_str(text).map_err(|e| e.to_string())?;
        s.layout().map_err(|e| e.to_string())
    }

    #[test]
    fn subnets_parse_and_refuse_host_bits() {
        let net: Ipv4Net = "10.128.0.0/16".parse().unwrap();
        assert_eq!(net.netmask(), Ipv4Addr::new(255, 255, 0, 0));
        assert_eq!(net.last(), Ipv4Addr::new(10, 128, 255, 255));
        assert!(net.contains(Ipv4Addr::new(10, 128, 7, 9)));
        assert!(!net.contains(Ipv4Addr::new(10, 129, 0, 0)));
        for bad in [
            "10.128.0.1/16",
            "10.128.0.0",
            "10.128.0.0/33",
            "10.300.0.0/16",
            "x/8",
        ] {
            assert!(bad.parse::<Ipv4Net>().is_err(), "{bad}");
        }
        let wide = Ipv4Net::containing(Ipv4Addr::new(10, 1, 2, 3), 8).unwrap();
        assert_eq!(wide.to_string(), "10.0.0.0/8");
        assert!(Ipv4Net::containing(Ipv4Addr::new(10, 1, 2, 3), 33).is_none());
        assert_eq!(
            Ipv4Net::containing(Ipv4Addr::new(10, 1, 2, 3), 0)
                .unwrap()
                .to_string(),
            "0.0.0.0/0"
        );
        let a: Ipv4Net = "10.0.0.0/8".parse().unwrap();
        assert!(a.overlaps(&net) && net.overlaps(&a));
        assert!(!net.overlaps(&"10.129.0.0/16".parse().unwrap()));
    }

    #[test]
    fn managed_defaults_follow_eucalyptus() {
        let layout = settings("mode = \"managed\"\nprivate_interface = \"eth1\"").unwrap();
        assert_eq!(layout.networks(), 2048);
        let first = layout.network(0).unwrap();
        assert_eq!(first.subnet.to_string(), "10.128.0.0/27");
        assert_eq!(first.gateway, Ipv4Addr::new(10, 128, 0, 1));
        assert_eq!(first.vlan, Some(10));
        assert!(layout.network(2048).is_none());
        assert_eq!(layout.private_interface(), Some("eth1"));
        assert_eq!(layout.bridge(), None);
        let group = DEFAULT_VXLAN_GROUP;
        assert_eq!(layout.carrier(), Some(Carrier::Vxlan { group }));
        let tagged =
            "mode = \"managed\"\nprivate_interface = \"eth1\"\nvlan_transport = \"802.1q\"";
        assert_eq!(settings(tagged).unwrap().carrier(), Some(Carrier::Tagged));
        let vxlan = "mode = \"managed\"\nprivate_interface = \"eth1\"";
        let group = Ipv4Addr::new(239, 1, 2, 3);
        let chosen = format!("{vxlan}\nvxlan_group = \"{group}\"");
        assert_eq!(
            settings(&chosen).unwrap().carrier(),
            Some(Carrier::Vxlan { group })
        );
    }

    #[test]
    fn the_layout_names_the_bridge_the_node_plugs_into() {
        for mode in ["system", "managed-novlan"] {
            let layout = settings(&format!("mode = \"{mode}\"\nbridge = \"br0\"")).unwrap();
            assert_eq!(layout.bridge(), Some("br0"), "{mode}");
        }
    }

    #[test]
    fn metadata_is_served_in_the_managed_modes_only() {
        let parse = |text: &str| toml::from_str::<NetworkSettings>(text).unwrap();
        let managed = parse("mode = \"managed-novlan\"\nbridge = \"br0\"");
        assert_eq!(managed.metadata_address(), Some(DEFAULT_METADATA_LISTEN));
        assert_eq!(DEFAULT_METADATA_LISTEN.to_string(), "0.0.0.0:8780");
        let set = parse(
            "mode = \"managed\"\nprivate_interface = \"eth1\"\nmetadata_listen = \"10.0.0.5:9000\"",
        );
        assert_eq!(
            set.metadata_address(),
            Some("10.0.0.5:9000".parse().unwrap())
        );
        assert!(set.layout().is_ok());
        let system = parse("mode = \"system\"\nbridge = \"br0\"");
        assert_eq!(system.metadata_address(), None);
    }

    #[test]
    fn each_mode_refuses_what_it_cannot_use() {
        let cases = [
            ("mode = \"managed\"", "needs private_interface"),
            ("mode = \"managed-novlan\"", "needs bridge"),
            ("mode = \"system\"", "needs bridge"),
            ("mode = \"system\"\nbridge = \"br0\"\nrouter = \"10.0.0.1\"", "router has no meaning"),
            ("mode = \"managed-novlan\"\nbridge = \"br0\"\nfirst_vlan = 5", "first_vlan has no meaning"),
            ("mode = \"managed-novlan\"\nbridge = \"br0\"\naddresses_per_network = 24", "power of two"),
            ("mode = \"managed-novlan\"\nbridge = \"br0\"\nprivate_subnet = \"10.0.0.0/28\"\naddresses_per_network = 32", "power of two"),
            ("mode = \"managed-novlan\"\nbridge = \"br0\"\nprivate_subnet = \"169.254.0.0/24\"", "metadata"),
            ("mode = \"managed\"\nprivate_interface = \"eth1\"\naddresses_per_network = 16", "past 4094"),
            ("mode = \"managed-novlan\"\nbridge = \"a/b\"", "not an interface name"),
            ("mode = \"managed-novlan\"\nbridge = \"br0\"\nprivate_subnet = \"10.1.0.1/16\"", "host bits"),
            ("mode = \"bridged\"", "unknown variant"),
            ("mode = \"static\"\nbridge = \"br0\"\nprivate_subnet = \"10.1.0.0/24\"", "needs router"),
            ("mode = \"system\"\nbridge = \"br0\"\nmetadata_listen = \"0.0.0.0:8780\"", "metadata_listen has no meaning"),
            ("mode = \"managed-novlan\"\nbridge = \"br0\"\nmetadata_listen = \"8780\"", "invalid socket address"),
            ("mode = \"managed-novlan\"\nbridge = \"br0\"\nvlan_transport = \"vxlan\"", "vlan_transport has no meaning"),
            ("mode = \"managed\"\nprivate_interface = \"eth1\"\nvlan_transport = \"802.1q\"\nvxlan_group = \"239.1.1.1\"", "vxlan_group has no meaning"),
            ("mode = \"managed\"\nprivate_interface = \"eth1\"\nvlan_transport = \"vxlan\"\nvxlan_group = \"10.0.0.1\"", "not a multicast address"),
            ("mode = \"managed\"\nprivate_interface = \"eth1\"\nvlan_transport = \"gre\"", "unknown variant"),
        ];
        for (text, want) in cases {
            let got = settings(text).unwrap_err();
            assert!(got.contains(want), "{text}: {got}");
        }
    }

    #[test]
    fn static_tables_are_checked_line_by_line() {
        let head = "mode = \"static\"\nbridge = \"br0\"\nprivate_subnet = \"10.1.0.0/24\"\nrouter = \"10.1.0.1\"\n";
        let ok = format!("{head}hosts = [{{ mac = \"02:00:00:00:00:05\", ip = \"10.1.0.5\" }}]");
        let layout = settings(&ok).unwrap();
        assert_eq!(layout.static_hosts().len(), 1);
        // The table's MAC for its address; the derived one for any other.
        let ip = Ipv4Addr::new(10, 1, 0, 5);
        assert_eq!(layout.mac_of(ip).to_string(), "02:00:00:00:00:05");
        let other = Ipv4Addr::new(10, 1, 0, 6);
        assert_eq!(layout.mac_of(other), Mac::for_address(other));
        let net = layout.static_network().unwrap();
        assert_eq!(
            (net.index, net.gateway, net.vlan),
            (0, Ipv4Addr::new(10, 1, 0, 1), None)
        );
        assert_eq!(net.subnet.to_string(), "10.1.0.0/24");
        for (hosts, want) in [
            ("{ mac = \"d0:0d:00:00:00:01\", ip = \"10.2.0.5\" }", "not a host address"),
            ("{ mac = \"d0:0d:00:00:00:01\", ip = \"10.1.0.1\" }", "router's"),
            ("{ mac = \"d0:0d:00:00:00:01\", ip = \"10.1.0.5\" }, { mac = \"D0:0D:00:00:00:01\", ip = \"10.1.0.6\" }", "MAC is in the table twice"),
            ("{ mac = \"d0:0d:00:00:00:01\", ip = \"10.1.0.5\" }, { mac = \"d0:0d:00:00:00:02\", ip = \"10.1.0.5\" }", "address is in the table twice"),
            ("{ mac = \"d0:0d:00:00:01\", ip = \"10.1.0.5\" }", "MAC"),
        ] {
            let got = settings(&format!("{head}hosts = [{hosts}]")).unwrap_err();
            assert!(got.contains(want), "{hosts}: {got}");
        }
    }
}

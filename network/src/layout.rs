//! The address plan of a checked `[network]` table: which subnet and VLAN the n-th group
//! network has, which addresses its instances may take, and the MAC each address is given.
//! Pure arithmetic, so the CLC (which allocates) and the CC and NC (which build the host
//! objects) derive the same answer from the same table.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::config::{Ipv4Net, Mode, NetworkError, StaticHost};

/// A guest NIC's hardware address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac([u8; 6]);

impl Mac {
    /// The MAC Koala gives the NIC that holds `ip`: Eucalyptus' `d0:0d` prefix followed by
    /// the address's four bytes, so that a MAC seen on the wire names its instance's address
    /// and no two guests of one cloud share a MAC.
    pub fn for_address(ip: Ipv4Addr) -> Mac {
        let [a, b, c, d] = ip.octets();
        Mac([0xd0, 0x0d, a, b, c, d])
    }
}

impl Mac {
    /// The MAC Koala gives the NIC of instance `instance_id` in SYSTEM, where no address is
    /// planned: the `d0:0d` prefix followed by the last four bytes of the id's hex digits
    /// (all of Koala's `i-XXXXXXXX`), so that each instance of the cloud has its own.
    pub fn for_instance(instance_id: &str) -> Mac {
        let hex: Vec<u8> = instance_id
            .bytes()
            .filter_map(|b| (b as char).to_digit(16).map(|d| d as u8))
            .collect();
        let tail = &hex[hex.len().saturating_sub(8)..];
        let mut bytes = [0xd0, 0x0d, 0, 0, 0, 0];
        for (i, pair) in tail.rchunks(2).enumerate().take(4) {
            let byte = pair.iter().fold(0u8, |acc, d| acc << 4 | d);
            bytes[5 - i] = byte;
        }
        Mac(bytes)
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl FromStr for Mac {
    type Err = NetworkError;

    fn from_str(text: &str) -> Result<Mac, NetworkError> {
        let bad =
            || NetworkError::Subnet(text.to_owned(), "it is not a MAC (six hex bytes with ':')");
        let mut bytes = [0u8; 6];
        let mut parts = text.split(':');
        for byte in &mut bytes {
            let part = parts.next().filter(|p| p.len() == 2).ok_or_else(bad)?;
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        match parts.next() {
            Some(_) => Err(bad()),
            None => Ok(Mac(bytes)),
        }
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Mac, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One security group's network in the MANAGED modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupNetwork {
    /// Its place in the private space, from 0.
    pub index: u32,
    /// Its subnet.
    pub subnet: Ipv4Net,
    /// The CC's address on it, the guests' default route and DHCP server.
    pub gateway: Ipv4Addr,
    /// Its VLAN tag (MANAGED only).
    pub vlan: Option<u16>,
}

impl GroupNetwork {
    /// The addresses its instances may take, in order: all but the network address, the
    /// gateway and the broadcast address.
    pub fn hosts(&self) -> impl Iterator<Item = Ipv4Addr> {
        let first = u32::from(self.gateway) + 1;
        let last = u32::from(self.subnet.last()) - 1;
        (first..=last).map(Ipv4Addr::from)
    }
}

/// What carries a MANAGED group network's VLAN between hosts: the node's (and the CC's)
/// interface that joins the VLAN's bridge to the private interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carrier {
    /// An 802.1Q VLAN interface on the private interface, tagged with the VLAN.
    Tagged,
    /// A VXLAN interface over the private interface, its VNI the VLAN, flooding to `group`.
    Vxlan {
        /// The multicast group every host of the cloud joins.
        group: Ipv4Addr,
    },
}

/// A checked `[network]` table, ready to plan with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    mode: Mode,
    /// The MANAGED space, or STATIC's one subnet.
    space: Option<Ipv4Net>,
    per_net: u32,
    first_vlan: Option<u16>,
    router: Option<Ipv4Addr>,
    hosts: Vec<StaticHost>,
    bridge: Option<String>,
    private_interface: Option<String>,
    carrier: Option<Carrier>,
}

impl Layout {
    /// SYSTEM: nothing to plan, the site's DHCP decides.
    pub(crate) fn unplanned(mode: Mode) -> Layout {
        Layout {
            mode,
            space: None,
            per_net: 0,
            first_vlan: None,
            router: None,
            hosts: Vec::new(),
            bridge: None,
            private_interface: None,
            carrier: None,
        }
    }

    /// STATIC: one subnet, one router, the table.
    pub(crate) fn with_static(subnet: Ipv4Net, router: Ipv4Addr, hosts: Vec<StaticHost>) -> Layout {
        Layout {
            mode: Mode::Static,
            space: Some(subnet),
            per_net: 0,
            first_vlan: None,
            router: Some(router),
            hosts,
            bridge: None,
            private_interface: None,
            carrier: None,
        }
    }

    /// MANAGED and MANAGED-NOVLAN: the space cut into networks of `per_net` addresses.
    pub(crate) fn managed(
        mode: Mode,
        space: Ipv4Net,
        per_net: u32,
        first_vlan: Option<u16>,
    ) -> Layout {
        Layout {
            mode,
            space: Some(space),
            per_net,
            first_vlan,
            router: None,
            hosts: Vec::new(),
            bridge: None,
            private_interface: None,
            carrier: None,
        }
    }

    /// The same plan with the host's interfaces named by the table.
    pub(crate) fn with_interfaces(
        self,
        bridge: Option<String>,
        private_interface: Option<String>,
    ) -> Layout {
        Layout {
            bridge,
            private_interface,
            ..self
        }
    }

    /// The same plan with MANAGED's VLANs carried by `carrier`.
    pub(crate) fn with_carrier(self, carrier: Option<Carrier>) -> Layout {
        Layout { carrier, ..self }
    }

    /// What carries the VLANs between hosts (MANAGED only).
    pub fn carrier(&self) -> Option<Carrier> {
        self.carrier
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// How many group networks the space holds (0 outside the MANAGED modes).
    pub fn networks(&self) -> u32 {
        match (self.mode.is_managed(), self.space) {
            (true, Some(space)) => (space.size() / u64::from(self.per_net)) as u32,
            _ => 0,
        }
    }

    /// The `index`-th group network, if the space holds it.
    pub fn network(&self, index: u32) -> Option<GroupNetwork> {
        let space = self.space?;
        if index >= self.networks() {
            return None;
        }
        let start = u32::from(space.network()) + index * self.per_net;
        let prefix = 32 - self.per_net.trailing_zeros() as u8;
        let subnet = Ipv4Net::new(Ipv4Addr::from(start), prefix).ok()?;
        Some(GroupNetwork {
            index,
            subnet,
            gateway: Ipv4Addr::from(start + 1),
            vlan: self.first_vlan.map(|first| first + index as u16),
        })
    }

    /// The space guests' private addresses come from: the MANAGED modes' `private_subnet`
    /// (its default when unset) or STATIC's subnet; none in SYSTEM. The CLC keeps public
    /// addresses out of it and records it, since the addresses it planned mean nothing in
    /// another space.
    pub fn private_space(&self) -> Option<Ipv4Net> {
        self.space
    }

    /// The size of each group network in the MANAGED modes (`addresses_per_network`); none
    /// in the others. Which network an index names depends on it.
    pub fn addresses_per_network(&self) -> Option<u32> {
        Some(self.per_net).filter(|_| self.mode.is_managed())
    }

    /// The VLAN tag of the first group network (MANAGED only): the n-th network's tag is
    /// this plus n.
    pub fn first_vlan(&self) -> Option<u16> {
        self.first_vlan
    }

    /// STATIC's MAC→IP table.
    pub fn static_hosts(&self) -> &[StaticHost] {
        &self.hosts
    }

    /// The node's existing bridge its guests join (`bridge`: SYSTEM, STATIC, MANAGED-NOVLAN),
    /// so that the node controller plugs taps into the bridge the table names.
    pub fn bridge(&self) -> Option<&str> {
        self.bridge.as_deref()
    }

    /// The interface between the CC and the nodes (`private_interface`): in MANAGED, where
    /// each node tags the VLANs of its guests' networks.
    pub fn private_interface(&self) -> Option<&str> {
        self.private_interface.as_deref()
    }

    /// The MAC of the NIC that holds `ip`: the one STATIC's table maps to it, else
    /// [`Mac::for_address`].
    pub fn mac_of(&self, ip: Ipv4Addr) -> Mac {
        self.hosts
            .iter()
            .find(|h| h.ip == ip)
            .map(|h| h.mac)
            .unwrap_or_else(|| Mac::for_address(ip))
    }

    /// STATIC's one network, as the DHCP server serves it: the subnet, the router as its
    /// gateway, index 0, no VLAN.
    pub fn static_network(&self) -> Option<GroupNetwork> {
        let (subnet, router) = self.static_subnet()?;
        Some(GroupNetwork {
            index: 0,
            subnet,
            gateway: router,
            vlan: None,
        })
    }

    /// STATIC's subnet and router.
    pub fn static_subnet(&self) -> Option<(Ipv4Net, Ipv4Addr)> {
        Some((self.space?, self.router?)).filter(|_| self.mode == Mode::Static)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_name_their_address() {
        let mac = Mac::for_address(Ipv4Addr::new(10, 128, 0, 34));
        assert_eq!(mac.to_string(), "d0:0d:0a:80:00:22");
        assert_eq!("D0:0D:0A:80:00:22".parse::<Mac>().unwrap(), mac);
        for bad in [
            "d0:0d:0a:80:00",
            "d0:0d:0a:80:00:22:01",
            "d0-0d-0a-80-00-22",
            "g0:0d:0a:80:00:22",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
    }

    #[test]
    fn instances_get_macs_of_their_ids() {
        assert_eq!(
            Mac::for_instance("i-0a1b2c3d").to_string(),
            "d0:0d:0a:1b:2c:3d"
        );
        assert_eq!(
            Mac::for_instance("i-0123456789abcdef0").to_string(),
            "d0:0d:9a:bc:de:f0"
        );
        assert_ne!(
            Mac::for_instance("i-00000001"),
            Mac::for_instance("i-00000002")
        );
    }

    #[test]
    fn networks_tile_the_space_without_overlap() {
        let space: Ipv4Net = "10.20.0.0/24".parse().unwrap();
        let layout = Layout::managed(Mode::ManagedNovlan, space, 64, None);
        assert_eq!(layout.networks(), 4);
        let nets: Vec<_> = (0..4).map(|i| layout.network(i).unwrap()).collect();
        assert_eq!(nets[3].subnet.to_string(), "10.20.0.192/26");
        assert_eq!(nets[3].vlan, None);
        for (i, a) in nets.iter().enumerate() {
            assert!(space.contains(a.subnet.network()) && space.contains(a.subnet.last()));
            for b in &nets[i + 1..] {
                assert!(!a.subnet.overlaps(&b.subnet));
            }
        }
        let hosts: Vec<_> = nets[1].hosts().collect();
        assert_eq!(hosts.len(), 61);
        assert_eq!(hosts[0], Ipv4Addr::new(10, 20, 0, 66));
        assert_eq!(hosts[60], Ipv4Addr::new(10, 20, 0, 126));
    }
}

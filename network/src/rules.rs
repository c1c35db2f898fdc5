//! The security-group and NAT rules the CC applies in the MANAGED modes, as one nftables
//! table.
//!
//! The CLC decides; the CC renders what was decided as a [`Plan`] and applies it whole. The
//! table is replaced in one nft transaction (create it if absent, delete it, build it again),
//! so the kernel switches from the old rules to the new ones at one instant: there is never a
//! moment without rules, and a refused batch leaves the old rules in place. Nothing outside
//! Koala's table is read or changed, and its chains look only at packets to or from the group
//! networks' subnets.
//!
//! The table, for a plan with two networks, one grant and one elastic IP:
//!
//! ```text
//! table ip koala {
//!   set guest_nets { type ipv4_addr; flags interval; elements = { 10.128.0.0/27, 10.128.0.32/27 } }
//!   map grants { type ipv4_addr : verdict; flags interval; elements = { 10.128.0.0/27 : jump net_0 } }
//!   map to_private { type ipv4_addr : ipv4_addr; elements = { 192.0.2.10 : 10.128.0.2 } }
//!   map to_public { type ipv4_addr : ipv4_addr; elements = { 10.128.0.2 : 192.0.2.10 } }
//!   chain net_0 { tcp dport 22 accept }                    # one rule per grant
//!   chain inbound { ct state established,related accept; ip daddr vmap @grants; drop }
//!   chain forward { type filter hook forward priority filter; policy accept;
//!                   ip daddr @guest_nets jump inbound }
//!   chain output { type filter hook output priority filter; policy accept;
//!                  ip daddr @guest_nets ct status dnat jump inbound }
//!   chain prerouting { type nat hook prerouting priority dstnat; policy accept;
//!                      ip saddr @guest_nets ip daddr 169.254.169.254 tcp dport 80 dnat to CLC
//!                      dnat to ip daddr map @to_private }
//!   chain nat_output { type nat hook output priority dstnat; policy accept;
//!                      dnat to ip daddr map @to_private }
//!   chain postrouting { type nat hook postrouting priority srcnat; policy accept;
//!                       ct original ip daddr 169.254.169.254 return
//!                       ip daddr != @guest_nets snat to ip saddr map @to_public }
//! }
//! ```
//!
//! A packet is looked up once in `grants` and then meets only its own network's rules, so the
//! cost of a packet does not grow with the number of groups, and a plan of 200 networks is a
//! few thousand small objects, applied in one transaction.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::Ipv4Net;
use crate::layout::GroupNetwork;
use crate::nft::{Nft, NftError};

/// The `ip` table that holds every rule Koala makes: the one object [`Plan::apply`] replaces
/// and [`remove`] deletes, so that other tables on the host are never touched.
pub const TABLE: &str = "koala";

/// Where guests ask for their metadata (EC2's link-local address and port); the CC redirects
/// it to the CLC, [`Plan::metadata`].
pub const METADATA_ADDRESS: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(169, 254, 169, 254), 80);

/// The IP protocol a security-group rule opens, as EC2's `IpProtocol` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// `tcp`: the ports are a destination port range.
    Tcp,
    /// `udp`: the ports are a destination port range.
    Udp,
    /// `icmp`: the "ports" are the ICMP type and code, -1 for any.
    Icmp,
    /// `-1`: every protocol, the ports ignored.
    All,
}

impl Protocol {
    /// The name EC2 uses.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
            Protocol::All => "-1",
        }
    }
}

/// Whom a grant lets in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// Addresses by CIDR (EC2's `CidrIp`); `0.0.0.0/0` is everyone.
    Cidr(Ipv4Net),
    /// The instances of another security group (EC2's `UserIdGroupPairs`), named by the index
    /// of that group's network: its whole subnet is let in.
    Network(u32),
}

/// One security-group rule: traffic of `protocol` and ports from `source` may reach the
/// instances of the group whose network is `to`. Groups deny every other inbound packet
/// that does not belong to a connection already let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Grant {
    /// The index of the group's network.
    pub to: u32,
    /// The protocol let in.
    pub protocol: Protocol,
    /// EC2's `FromPort`: the first destination port for tcp and udp, the ICMP type for icmp
    /// (-1 for any type); ignored for [`Protocol::All`].
    pub from_port: i32,
    /// EC2's `ToPort`: the last destination port for tcp and udp, the ICMP code for icmp
    /// (-1 for any code); ignored for [`Protocol::All`]. tcp and udp with both ports -1 mean
    /// every port.
    pub to_port: i32,
    /// Who is let in.
    pub source: Source,
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}..{} from ",
            self.protocol.name(),
            self.from_port,
            self.to_port
        )?;
        match self.source {
            Source::Cidr(net) => write!(f, "{net}")?,
            Source::Network(index) => write!(f, "network {index}")?,
        }
        write!(f, " to network {}", self.to)
    }
}

/// What a grant's ports mean once checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ports {
    /// Every packet of the protocol.
    Any,
    /// Destination ports `first..=last` (tcp, udp).
    Range(u16, u16),
    /// An ICMP type, and a code or any.
    Icmp(u8, Option<u8>),
}

impl Grant {
    /// The ports under EC2's rules, or why they cannot be applied.
    fn ports(&self) -> Result<Ports, &'static str> {
        let (from, to) = (self.from_port, self.to_port);
        match self.protocol {
            Protocol::All => Ok(Ports::Any),
            Protocol::Tcp | Protocol::Udp => {
                if from == -1 && to == -1 {
                    return Ok(Ports::Any);
                }
                match (u16::try_from(from), u16::try_from(to)) {
                    (Ok(first), Ok(last)) if first <= last => Ok(Ports::Range(first, last)),
                    (Ok(_), Ok(_)) => Err("the first port is above the last"),
                    _ => Err("a port is outside 0..65535"),
                }
            }
            Protocol::Icmp => {
                let code = match to {
                    -1 => None,
                    code => {
                        Some(u8::try_from(code).map_err(|_| "the ICMP code is outside 0..255")?)
                    }
                };
                match from {
                    -1 if code.is_some() => Err("an ICMP code needs an ICMP type"),
                    -1 => Ok(Ports::Any),
                    kind => Ok(Ports::Icmp(
                        u8::try_from(kind).map_err(|_| "the ICMP type is outside 0..255")?,
                        code,
                    )),
                }
            }
        }
    }
}

/// An instance as the CC's rules see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Guest {
    /// Its id, for error messages.
    pub instance_id: String,
    /// The index of its group's network.
    pub network: u32,
    /// Its address in that network's subnet.
    pub private_ip: Ipv4Addr,
    /// Its public (elastic) address: translated both ways at the CC. `None`: its traffic
    /// keeps its private address.
    pub public_ip: Option<Ipv4Addr>,
}

/// Everything the CC's rules say, decided by the CLC: replaced whole on each change, so that
/// the table on the host is always exactly what one plan renders.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The group networks in use; inbound traffic to each is denied but for its grants.
    pub networks: Vec<GroupNetwork>,
    /// The instances, for their public addresses.
    pub guests: Vec<Guest>,
    /// The security groups' rules.
    pub grants: Vec<Grant>,
    /// The CLC's metadata service, where guests' requests to 169.254.169.254:80 are sent.
    /// They keep the guest's private address as source, so the CLC can tell who asks.
    pub metadata: Option<SocketAddrV4>,
}

/// Address pairs of a NAT map, `from → to`.
type Translations = Vec<(Ipv4Addr, Ipv4Addr)>;

/// Why a plan was not applied.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// Two networks share an index.
    #[error("rules: the network {0} is in the plan twice")]
    DuplicateNetwork(u32),
    /// Two networks share addresses: a packet would not know its group.
    #[error("rules: the networks {0} and {1} overlap")]
    OverlappingNetworks(Ipv4Net, Ipv4Net),
    /// A grant that cannot be applied.
    #[error("rules: the grant {grant} cannot be applied: {why}")]
    Grant {
        /// The grant.
        grant: Grant,
        /// Why.
        why: &'static str,
    },
    /// An instance that cannot be placed.
    #[error("rules: the instance {instance_id} cannot be placed: {why}")]
    Guest {
        /// Its id.
        instance_id: String,
        /// Why.
        why: &'static str,
    },
    /// nft refused the batch; the rules in force are the ones before.
    #[error("rules: nft did not apply the batch")]
    Nft(#[from] NftError),
}

/// A JSON object of `fields`, built in place: `json!` would copy every `Value` put in it
/// through the serializer, which made rendering a large plan ten times slower.
fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Object(fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// The JSON nft wants for an address or network in a match or a set.
fn address(net: Ipv4Net) -> Value {
    match net.prefix() {
        32 => json!(net.network().to_string()),
        len => json!({"prefix": {"addr": net.network().to_string(), "len": len}}),
    }
}

/// `ip saddr` or `ip daddr`.
fn ip(field: &str) -> Value {
    json!({"payload": {"protocol": "ip", "field": field}})
}

/// `LEFT OP RIGHT`.
fn matches(left: Value, op: &str, right: Value) -> Value {
    object([(
        "match",
        object([("op", op.into()), ("left", left), ("right", right)]),
    )])
}

/// `add KIND BODY`, with the table's family and name filled in.
fn add(kind: &str, mut body: Value) -> Value {
    if let Value::Object(fields) = &mut body {
        fields.insert("family".into(), json!("ip"));
        fields.insert("table".into(), json!(TABLE));
    }
    object([("add", object([(kind, body)]))])
}

/// `add rule ip koala CHAIN EXPR`.
fn rule(chain: &str, expr: Vec<Value>) -> Value {
    add(
        "rule",
        object([("chain", chain.into()), ("expr", Value::Array(expr))]),
    )
}

/// A base chain on `hook` at `prio`, accepting what its rules do not decide.
fn base_chain(name: &str, kind: &str, hook: &str, prio: i32) -> Value {
    add(
        "chain",
        json!({"name": name, "type": kind, "hook": hook, "prio": prio, "policy": "accept"}),
    )
}

/// The chain holding network `index`'s grants.
fn network_chain(index: u32) -> String {
    format!("net_{index}")
}

/// `add table ip koala` + `delete table ip koala`: drops Koala's table if it exists and
/// succeeds if it does not, in the batch it begins.
fn drop_table() -> [Value; 2] {
    let table = json!({"table": {"family": "ip", "name": TABLE}});
    [json!({"add": table.clone()}), json!({"delete": table})]
}

/// The match and verdict of one grant, `source` resolved to a network.
fn grant_rule(source: Ipv4Net, ports: Ports, protocol: Protocol) -> Vec<Value> {
    let mut expr = Vec::new();
    if source.prefix() > 0 {
        expr.push(matches(ip("saddr"), "==", address(source)));
    }
    let l4proto = |name: &str| matches(json!({"meta": {"key": "l4proto"}}), "==", json!(name));
    let field =
        |protocol: &str, field: &str| json!({"payload": {"protocol": protocol, "field": field}});
    match (protocol, ports) {
        (Protocol::All, _) => {}
        (_, Ports::Any) => expr.push(l4proto(protocol.name())),
        (_, Ports::Range(first, last)) => {
            let right = match first == last {
                true => json!(first),
                false => json!({"range": [first, last]}),
            };
            expr.push(matches(field(protocol.name(), "dport"), "==", right));
        }
        (_, Ports::Icmp(kind, code)) => {
            expr.push(matches(field("icmp", "type"), "==", json!(kind)));
            if let Some(code) = code {
                expr.push(matches(field("icmp", "code"), "==", json!(code)));
            }
        }
    }
    expr.push(json!({"accept": null}));
    expr
}

/// The fixed rules of the filter chains: traffic to a group network is let in when it
/// belongs to a connection already let through or a grant of that network allows it, and is
/// dropped otherwise; nothing else is looked at.
fn filter_rules(batch: &mut Vec<Value>) {
    let to_guests = matches(ip("daddr"), "==", json!("@guest_nets"));
    batch.push(rule(
        "inbound",
        vec![
            matches(
                json!({"ct": {"key": "state"}}),
                "in",
                json!(["established", "related"]),
            ),
            json!({"accept": null}),
        ],
    ));
    batch.push(rule(
        "inbound",
        vec![object([(
            "vmap",
            object([("key", ip("daddr")), ("data", "@grants".into())]),
        )])],
    ));
    batch.push(rule("inbound", vec![json!({"drop": null})]));
    batch.push(rule(
        "forward",
        vec![to_guests.clone(), json!({"jump": {"target": "inbound"}})],
    ));
    // The CC's own connections to a public address meet the groups like the outside's;
    // the rest of what it sends (DHCP answers, the gateway's traffic) is its own business.
    batch.push(rule(
        "output",
        vec![
            to_guests,
            matches(json!({"ct": {"key": "status"}}), "in", json!("dnat")),
            json!({"jump": {"target": "inbound"}}),
        ],
    ));
}

/// The rules of the NAT chains: elastic addresses translated both ways, and guests'
/// metadata requests sent to the CLC (`metadata`) with their private source kept.
fn nat_rules(metadata: Option<SocketAddrV4>, batch: &mut Vec<Value>) {
    // The maps are not named dnat and snat: those are keywords of nft's own language,
    // and `nft list` would print a table that `nft -f` cannot read back.
    let nat_map = |kind: &str, field: &str, name: &str| {
        let map = object([("key", ip(field)), ("data", format!("@{name}").into())]);
        object([(kind, object([("addr", object([("map", map)]))]))])
    };
    let dnat_map = nat_map("dnat", "daddr", "to_private");
    if let Some(clc) = metadata {
        batch.push(rule(
            "prerouting",
            vec![
                matches(ip("saddr"), "==", json!("@guest_nets")),
                matches(ip("daddr"), "==", json!(METADATA_ADDRESS.ip().to_string())),
                matches(
                    json!({"payload": {"protocol": "tcp", "field": "dport"}}),
                    "==",
                    json!(METADATA_ADDRESS.port()),
                ),
                json!({"dnat": {"addr": clc.ip().to_string(), "port": clc.port()}}),
            ],
        ));
        batch.push(rule(
            "postrouting",
            vec![
                matches(
                    json!({"ct": {"key": "daddr", "family": "ip", "dir": "original"}}),
                    "==",
                    json!(METADATA_ADDRESS.ip().to_string()),
                ),
                json!({"return": null}),
            ],
        ));
    }
    batch.push(rule("prerouting", vec![dnat_map.clone()]));
    batch.push(rule("nat_output", vec![dnat_map]));
    batch.push(rule(
        "postrouting",
        vec![
            matches(ip("daddr"), "!=", json!("@guest_nets")),
            nat_map("snat", "saddr", "to_public"),
        ],
    ));
}

impl Plan {
    /// The nft JSON batch that replaces Koala's table with this plan's, refused whole when
    /// any part of the plan could not be applied as meant.
    pub fn ruleset(&self) -> Result<Value, RulesError> {
        let subnets = self.check_networks()?;
        let (dnat, snat) = self.check_guests(&subnets)?;

        // Each network's grant rules, in the order given, without repeats.
        let mut chains: BTreeMap<u32, Vec<Vec<Value>>> = BTreeMap::new();
        for grant in &self.grants {
            let bad = |why| RulesError::Grant { grant: *grant, why };
            if !subnets.contains_key(&grant.to) {
                return Err(bad("its network is not in the plan"));
            }
            let source = match grant.source {
                Source::Cidr(net) => net,
                Source::Network(index) => *subnets
                    .get(&index)
                    .ok_or_else(|| bad("its source network is not in the plan"))?,
            };
            let expr = grant_rule(source, grant.ports().map_err(bad)?, grant.protocol);
            let rules = chains.entry(grant.to).or_default();
            if !rules.contains(&expr) {
                rules.push(expr);
            }
        }

        let mut batch = Vec::new();
        batch.extend(drop_table());
        batch.push(json!({"add": {"table": {"family": "ip", "name": TABLE}}}));

        for index in chains.keys() {
            batch.push(add("chain", json!({"name": network_chain(*index)})));
        }
        batch.push(add("chain", json!({"name": "inbound"})));
        batch.push(base_chain("forward", "filter", "forward", 0));
        batch.push(base_chain("output", "filter", "output", 0));
        batch.push(base_chain("prerouting", "nat", "prerouting", -100));
        batch.push(base_chain("nat_output", "nat", "output", -100));
        batch.push(base_chain("postrouting", "nat", "postrouting", 100));

        let with_elements = |mut body: Value, elem: Vec<Value>| {
            if let (Value::Object(fields), false) = (&mut body, elem.is_empty()) {
                fields.insert("elem".into(), Value::Array(elem));
            }
            body
        };
        let nets = subnets.values().map(|net| address(*net)).collect();
        batch.push(add(
            "set",
            with_elements(
                json!({"name": "guest_nets", "type": "ipv4_addr", "flags": ["interval"]}),
                nets,
            ),
        ));
        let jumps = chains
            .keys()
            .filter_map(|index| subnets.get(index).map(|net| (index, net)))
            .map(|(index, net)| {
                let jump = json!({"jump": {"target": network_chain(*index)}});
                Value::Array(vec![address(*net), jump])
            })
            .collect();
        batch.push(add(
            "map",
            with_elements(
                json!({"name": "grants", "type": "ipv4_addr", "map": "verdict", "flags": ["interval"]}),
                jumps,
            ),
        ));
        for (name, pairs) in [("to_private", dnat), ("to_public", snat)] {
            let elem = pairs
                .iter()
                .map(|(from, to)| json!([from.to_string(), to.to_string()]))
                .collect();
            batch.push(add(
                "map",
                with_elements(
                    json!({"name": name, "type": "ipv4_addr", "map": "ipv4_addr"}),
                    elem,
                ),
            ));
        }

        for (index, rules) in chains {
            let chain = network_chain(index);
            batch.extend(rules.into_iter().map(|expr| rule(&chain, expr)));
        }
        filter_rules(&mut batch);
        nat_rules(self.metadata, &mut batch);
        Ok(object([("nftables", Value::Array(batch))]))
    }

    /// Replaces Koala's table on the host `nft` runs on with this plan's, atomically: the
    /// kernel holds the old rules until the new ones are complete, and keeps them if nft
    /// refuses.
    pub fn apply(&self, nft: &Nft) -> Result<(), RulesError> {
        nft.run(&self.ruleset()?)?;
        Ok(())
    }

    /// The networks by index, checked: no index twice, no two subnets overlapping.
    fn check_networks(&self) -> Result<BTreeMap<u32, Ipv4Net>, RulesError> {
        let mut subnets = BTreeMap::new();
        for net in &self.networks {
            if subnets.insert(net.index, net.subnet).is_some() {
                return Err(RulesError::DuplicateNetwork(net.index));
            }
        }
        let mut sorted: Vec<Ipv4Net> = subnets.values().copied().collect();
        sorted.sort();
        // CIDR blocks either nest or are apart, so an overlap shows between neighbours.
        if let Some(pair) = sorted.windows(2).find(|w| w[0].overlaps(&w[1])) {
            return Err(RulesError::OverlappingNetworks(pair[0], pair[1]));
        }
        Ok(subnets)
    }

    /// The public→private and private→public pairs, checked: each guest inside its network,
    /// no address twice, no public address inside a group network.
    fn check_guests(
        &self,
        subnets: &BTreeMap<u32, Ipv4Net>,
    ) -> Result<(Translations, Translations), RulesError> {
        let mut private = HashMap::new();
        let mut public = HashMap::new();
        let (mut dnat, mut snat) = (Vec::new(), Vec::new());
        for guest in &self.guests {
            let bad = |why| RulesError::Guest {
                instance_id: guest.instance_id.clone(),
                why,
            };
            let subnet = subnets
                .get(&guest.network)
                .ok_or_else(|| bad("its network is not in the plan"))?;
            if !subnet.contains(guest.private_ip) {
                return Err(bad("its private address is outside its network"));
            }
            if private.insert(guest.private_ip, ()).is_some() {
                return Err(bad("its private address is another instance's too"));
            }
            if let Some(ip) = guest.public_ip {
                if subnets.values().any(|net| net.contains(ip)) {
                    return Err(bad("its public address is inside a group network"));
                }
                if public.insert(ip, ()).is_some() {
                    return Err(bad("its public address is another instance's too"));
                }
                dnat.push((ip, guest.private_ip));
                snat.push((guest.private_ip, ip));
            }
        }
        Ok((dnat, snat))
    }
}

/// Deletes Koala's table and every rule in it (when the CC stops managing the host, or
/// before it leaves MANAGED mode). No table is not an error.
pub fn remove(nft: &Nft) -> Result<(), RulesError> {
    nft.run(&object([("nftables", Value::Array(drop_table().into()))]))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(index: u32) -> GroupNetwork {
        let start = u32::from(Ipv4Addr::new(10, 128, 0, 0)) + index * 32;
        GroupNetwork {
            index,
            subnet: Ipv4Net::new(Ipv4Addr::from(start), 27).unwrap(),
            gateway: Ipv4Addr::from(start + 1),
            vlan: None,
        }
    }

    fn grant(to: u32, protocol: Protocol, from_port: i32, to_port: i32) -> Grant {
        Grant {
            to,
            protocol,
            from_port,
            to_port,
            source: Source::Cidr("0.0.0.0/0".parse().unwrap()),
        }
    }

    fn plan() -> Plan {
        Plan {
            networks: vec![network(0), network(1)],
            guests: vec![Guest {
                instance_id: "i-00000001".into(),
                network: 0,
                private_ip: Ipv4Addr::new(10, 128, 0, 2),
                public_ip: Some(Ipv4Addr::new(192, 0, 2, 10)),
            }],
            grants: vec![grant(0, Protocol::Tcp, 22, 22)],
            metadata: Some(SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 100), 8773)),
        }
    }

    /// The expressions of every rule of `chain` in `batch`.
    fn rules(batch: &Value, chain: &str) -> Vec<Value> {
        batch["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["add"].get("rule"))
            .filter(|r| r["chain"] == chain)
            .map(|r| r["expr"].clone())
            .collect()
    }

    #[test]
    fn the_batch_replaces_the_table_before_building_it() {
        let batch = plan().ruleset().unwrap();
        let commands = batch["nftables"].as_array().unwrap();
        let table = json!({"table": {"family": "ip", "name": "koala"}});
        assert_eq!(commands[0], json!({"add": table}));
        assert_eq!(commands[1], json!({"delete": table}));
        assert_eq!(commands[2], json!({"add": table}));
        assert!(commands[3..].iter().all(|c| c.get("add").is_some()));
        for c in &commands[3..] {
            let (_, body) = c["add"].as_object().unwrap().iter().next().unwrap();
            assert_eq!(body["table"], "koala", "{c}");
        }
    }

    #[test]
    fn grants_render_with_ec2_semantics() {
        let mut plan = plan();
        plan.grants = vec![
            grant(0, Protocol::Tcp, 22, 22),
            grant(0, Protocol::Tcp, 22, 22),
            grant(0, Protocol::Udp, 1000, 2000),
            grant(0, Protocol::Udp, -1, -1),
            grant(0, Protocol::Icmp, 8, -1),
            grant(0, Protocol::Icmp, 3, 4),
            grant(0, Protocol::Icmp, -1, -1),
            Grant {
                source: Source::Network(1),
                ..grant(0, Protocol::All, 0, 0)
            },
            Grant {
                source: Source::Cidr("203.0.113.7/32".parse().unwrap()),
                ..grant(1, Protocol::Tcp, 80, 80)
            },
        ];
        let batch = plan.ruleset().unwrap();
        let net0 = rules(&batch, "net_0");
        let dport = |p: &str, right: Value| json!({"match": {"op": "==", "left": {"payload": {"protocol": p, "field": "dport"}}, "right": right}});
        let icmp = |field: &str, n: u8| json!({"match": {"op": "==", "left": {"payload": {"protocol": "icmp", "field": field}}, "right": n}});
        let l4 = |p: &str| json!({"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": p}});
        let accept = json!({"accept": null});
        let from_net1 = json!({"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "10.128.0.32", "len": 27}}}});
        let want = vec![
            json!([dport("tcp", json!(22)), accept]),
            json!([dport("udp", json!({"range": [1000, 2000]})), accept]),
            json!([l4("udp"), accept]),
            json!([icmp("type", 8), accept]),
            json!([icmp("type", 3), icmp("code", 4), accept]),
            json!([l4("icmp"), accept]),
            json!([from_net1, accept]),
        ];
        assert_eq!(net0, want, "the repeated grant is rendered once");
        let net1 = rules(&batch, "net_1");
        assert_eq!(net1.len(), 1);
        assert_eq!(net1[0][0]["match"]["right"], "203.0.113.7");
    }

    #[test]
    fn only_networks_with_grants_get_a_chain() {
        let batch = plan().ruleset().unwrap();
        let maps: Vec<&Value> = batch["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["add"].get("map"))
            .collect();
        let grants = maps.iter().find(|m| m["name"] == "grants").unwrap();
        assert_eq!(
            grants["elem"],
            json!([[{"prefix": {"addr": "10.128.0.0", "len": 27}}, {"jump": {"target": "net_0"}}]])
        );
        let dnat = maps.iter().find(|m| m["name"] == "to_private").unwrap();
        assert_eq!(dnat["elem"], json!([["192.0.2.10", "10.128.0.2"]]));
        let snat = maps.iter().find(|m| m["name"] == "to_public").unwrap();
        assert_eq!(snat["elem"], json!([["10.128.0.2", "192.0.2.10"]]));
        assert!(rules(&batch, "net_1").is_empty());
    }

    #[test]
    fn an_empty_plan_still_denies_nothing_it_does_not_know() {
        let batch = Plan::default().ruleset().unwrap();
        let sets: Vec<&Value> = batch["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|c| c["add"].get("set"))
            .collect();
        assert_eq!(sets.len(), 1);
        assert!(
            sets[0].get("elem").is_none(),
            "nft refuses an empty elem list"
        );
        assert!(
            rules(&batch, "prerouting").len() == 1,
            "no metadata rule without a CLC"
        );
    }

    #[test]
    fn plans_that_cannot_be_applied_are_refused_whole() {
        type Change = Box<dyn Fn(&mut Plan)>;
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|p| p.networks.push(network(0))),
                "network 0 is in the plan twice",
            ),
            (
                Box::new(|p| {
                    let mut n = network(5);
                    n.subnet = "10.128.0.0/24".parse().unwrap();
                    p.networks.push(n);
                }),
                "overlap",
            ),
            (
                Box::new(|p| p.grants.push(grant(7, Protocol::Tcp, 22, 22))),
                "its network is not in the plan",
            ),
            (
                Box::new(|p| {
                    p.grants.push(Grant {
                        source: Source::Network(9),
                        ..grant(0, Protocol::Tcp, 22, 22)
                    })
                }),
                "source network",
            ),
            (
                Box::new(|p| p.grants.push(grant(0, Protocol::Tcp, 30, 20))),
                "above the last",
            ),
            (
                Box::new(|p| p.grants.push(grant(0, Protocol::Udp, 0, 65536))),
                "outside 0..65535",
            ),
            (
                Box::new(|p| p.grants.push(grant(0, Protocol::Tcp, -1, 80))),
                "outside 0..65535",
            ),
            (
                Box::new(|p| p.grants.push(grant(0, Protocol::Icmp, 256, -1))),
                "type is outside",
            ),
            (
                Box::new(|p| p.grants.push(grant(0, Protocol::Icmp, 3, 300))),
                "code is outside",
            ),
            (
                Box::new(|p| p.grants.push(grant(0, Protocol::Icmp, -1, 0))),
                "needs an ICMP type",
            ),
            (
                Box::new(|p| p.guests[0].network = 4),
                "its network is not in the plan",
            ),
            (
                Box::new(|p| p.guests[0].private_ip = Ipv4Addr::new(10, 128, 0, 40)),
                "outside its network",
            ),
            (
                Box::new(|p| p.guests[0].public_ip = Some(Ipv4Addr::new(10, 128, 0, 40))),
                "inside a group network",
            ),
            (
                Box::new(|p| {
                    let mut twin = p.guests[0].clone();
                    twin.private_ip = Ipv4Addr::new(10, 128, 0, 3);
                    p.guests.push(twin);
                }),
                "public address is another instance's",
            ),
            (
                Box::new(|p| {
                    let mut twin = p.guests[0].clone();
                    twin.public_ip = None;
                    p.guests.push(twin);
                }),
                "private address is another instance's",
            ),
        ];
        for (change, want) in cases {
            let mut p = plan();
            change(&mut p);
            let got = p.ruleset().unwrap_err().to_string();
            assert!(got.contains(want), "{want}: {got}");
        }
    }
}

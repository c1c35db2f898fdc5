//! The MANAGED modes' guard on each node's bridges: a guest sends only as itself, and reaches
//! a guest of another group network only through the CC, where that network's rules apply.
//!
//! Without it a guest could take another's address (and so the other's grants), or, on
//! MANAGED-NOVLAN's shared bridge, send straight to a guest of another account at layer 2
//! past every rule (the CC's rules see such frames only where br_netfilter hands bridged
//! traffic to IPv4's hooks). The node controller keeps two chains in its `bridge koala`
//! nftables table, rebuilt whole in one transaction from its running guests' NICs each time
//! one is plugged or ends:
//!
//! - `guard_in` (prerouting): from a guest's tap only its own MAC, only IPv4 from its own
//!   address (or from 0.0.0.0 to a DHCP server's port), only ARP naming its own MAC and
//!   address (or 0.0.0.0, a probe), and nothing else (no IPv6, no VLAN tags: Koala's guest
//!   networks are untagged IPv4);
//! - `guard_out` (postrouting): to a guest's tap, no IPv4 packet from outside its own subnet
//!   sent by a guest's MAC (Koala's `d0:0d` prefix): such a packet comes straight from a guest
//!   of another network, where only the CC, which routes and filters, may bring one.

use std::net::Ipv4Addr;

use serde_json::{json, Value};

use crate::config::Ipv4Net;
use crate::layout::Mac;
use crate::nft::{Nft, NftError};
use crate::rules::TABLE;

/// One guest NIC on this node, as the guard pins it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardedNic {
    /// Its tap (`ktap-…`).
    pub tap: String,
    /// Its MAC.
    pub mac: Mac,
    /// Its address.
    pub ip: Ipv4Addr,
    /// Its group network's subnet.
    pub subnet: Ipv4Net,
}

/// The node's guard chains.
#[derive(Debug, Clone)]
pub struct Guard {
    nft: Nft,
}

impl Guard {
    /// The guard in `nft`'s namespace (the node's).
    pub fn new(nft: Nft) -> Guard {
        Guard { nft }
    }

    /// Makes the chains hold exactly the rules of `nics`, in one transaction. Blocks until nft
    /// exits.
    pub fn apply(&self, nics: &[GuardedNic]) -> Result<(), NftError> {
        self.nft.run(&batch(nics))
    }
}

/// `{"match": {"op": OP, "left": LEFT, "right": RIGHT}}`.
fn matches(op: &str, left: Value, right: Value) -> Value {
    json!({"match": {"op": op, "left": left, "right": right}})
}

fn payload(protocol: &str, field: &str) -> Value {
    json!({"payload": {"protocol": protocol, "field": field}})
}

fn meta(key: &str) -> Value {
    json!({"meta": {"key": key}})
}

/// An anonymous set of values.
fn set(values: &[Value]) -> Value {
    json!({"set": values})
}

fn rule(chain: &str, mut expr: Vec<Value>) -> Value {
    expr.push(json!({"drop": null}));
    json!({"add": {"rule": {"family": "bridge", "table": TABLE, "chain": chain, "expr": expr}}})
}

/// The whole batch: the table, both chains emptied, then each NIC's rules.
fn batch(nics: &[GuardedNic]) -> Value {
    let chain = |name: &str, hook: &str| {
        json!({"family": "bridge", "table": TABLE, "name": name, "type": "filter",
               "hook": hook, "prio": -10, "policy": "accept"})
    };
    let named = |name: &str| json!({"family": "bridge", "table": TABLE, "name": name});
    let mut commands = vec![
        json!({"add": {"table": {"family": "bridge", "name": TABLE}}}),
        json!({"add": {"chain": chain("guard_in", "prerouting")}}),
        json!({"add": {"chain": chain("guard_out", "postrouting")}}),
        json!({"flush": {"chain": named("guard_in")}}),
        json!({"flush": {"chain": named("guard_out")}}),
    ];
    let unspecified = json!("0.0.0.0");
    for nic in nics {
        let from = matches("==", meta("iifname"), json!(nic.tap));
        let mac = json!(nic.mac.to_string());
        let ip = json!(nic.ip.to_string());
        let ether_type = payload("ether", "type");
        commands.extend([
            rule(
                "guard_in",
                vec![from.clone(), matches("!=", payload("ether", "saddr"), mac)],
            ),
            rule(
                "guard_in",
                vec![
                    from.clone(),
                    matches("!=", ether_type.clone(), set(&[json!("ip"), json!("arp")])),
                ],
            ),
            rule(
                "guard_in",
                vec![
                    from.clone(),
                    matches("==", ether_type.clone(), json!("ip")),
                    matches(
                        "!=",
                        payload("ip", "saddr"),
                        set(&[ip.clone(), unspecified.clone()]),
                    ),
                ],
            ),
            rule(
                "guard_in",
                vec![
                    from.clone(),
                    matches("==", payload("ip", "saddr"), unspecified.clone()),
                    matches("!=", meta("l4proto"), json!("udp")),
                ],
            ),
            rule(
                "guard_in",
                vec![
                    from.clone(),
                    matches("==", payload("ip", "saddr"), unspecified.clone()),
                    matches("!=", payload("udp", "dport"), json!(67)),
                ],
            ),
            rule(
                "guard_in",
                vec![
                    from.clone(),
                    matches("==", ether_type.clone(), json!("arp")),
                    matches(
                        "!=",
                        payload("arp", "saddr ether"),
                        json!(nic.mac.to_string()),
                    ),
                ],
            ),
            rule(
                "guard_in",
                vec![
                    from,
                    matches("==", ether_type.clone(), json!("arp")),
                    matches(
                        "!=",
                        payload("arp", "saddr ip"),
                        set(&[ip, unspecified.clone()]),
                    ),
                ],
            ),
            rule(
                "guard_out",
                vec![
                    matches("==", meta("oifname"), json!(nic.tap)),
                    matches("==", ether_type, json!("ip")),
                    matches(
                        "==",
                        json!({"&": [payload("ether", "saddr"), "ff:ff:00:00:00:00"]}),
                        json!("d0:0d:00:00:00:00"),
                    ),
                    matches(
                        "!=",
                        payload("ip", "saddr"),
                        json!({"prefix": {"addr": nic.subnet.network().to_string(),
                                          "len": nic.subnet.prefix()}}),
                    ),
                ],
            ),
        ]);
    }
    json!({ "nftables": commands })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_nic_gets_its_eight_rules_after_the_chains_are_emptied() {
        let nic = GuardedNic {
            tap: "ktap-0000000a".into(),
            mac: Mac::for_address(Ipv4Addr::new(10, 0, 0, 2)),
            ip: Ipv4Addr::new(10, 0, 0, 2),
            subnet: "10.0.0.0/28".parse().unwrap(),
        };
        let batch = batch(&[nic.clone(), nic]);
        let commands = batch["nftables"].as_array().unwrap();
        assert_eq!(commands.len(), 5 + 2 * 8);
        assert!(commands[3].get("flush").is_some() && commands[4].get("flush").is_some());
        let empty = super::batch(&[]);
        assert_eq!(empty["nftables"].as_array().unwrap().len(), 5);
    }
}

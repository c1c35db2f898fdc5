//! SYSTEM mode: the address the site's DHCP server gave each guest, learned as the guest
//! uses it, so that DescribeInstances can show it (Eucalyptus' CC learned it from the ARP
//! table).
//!
//! The node controller keeps one nftables table of the bridge family, `bridge koala`, in its
//! namespace: a rule at the bridge's prerouting hook puts the pair (tap, source IPv4 address)
//! of every ARP and IPv4 packet a guest's tap (`ktap-*`) sends into a dynamic set, each entry
//! expiring an hour after it was last seen. The tap is where the packet came in, which no
//! guest can forge (a MAC it can); addresses no DHCP server gives (0.0.0.0/8, link-local
//! 169.254.0.0/16, multicast and above) are not learned, and the set is bounded. The kernel does the learning on the
//! packet path; the node reads the set only while a guest's address is unknown. The table is
//! Koala's alone (the `ip koala` table of a CC on the same host is another family's), and
//! installing it again keeps what it learned.

use std::net::Ipv4Addr;

use serde_json::{json, Value};

use crate::links::TAP_PREFIX;
use crate::nft::{Nft, NftError};
use crate::rules::TABLE;

/// The set of (MAC, address) pairs seen.
const SEEN: &str = "guests_seen";

/// How long a pair stays in the set after the guest last sent from it, seconds.
const SEEN_FOR_SECS: u64 = 3600;

/// The most pairs the set holds: a guest sending from many addresses fills it, and then
/// only the learning stops.
const SEEN_AT_MOST: u64 = 65536;

/// The node's table of guests' (MAC, address) pairs.
#[derive(Debug, Clone)]
pub struct Sightings {
    nft: Nft,
}

impl Sightings {
    /// The table in `nft`'s namespace (the node's). Nothing is made until
    /// [`Sightings::install`].
    pub fn new(nft: Nft) -> Sightings {
        Sightings { nft }
    }

    /// Makes the table, its set and its rules; a table already there keeps its entries
    /// (its rules are replaced). Blocks until nft exits.
    pub fn install(&self) -> Result<(), NftError> {
        let table = json!({"family": "bridge", "name": TABLE});
        let chain = json!({"family": "bridge", "table": TABLE, "name": "prerouting"});
        let tap = json!({"meta": {"key": "iifname"}});
        let from_tap =
            json!({"match": {"op": "==", "left": tap, "right": format!("{TAP_PREFIX}*")}});
        let prefix = |addr: &str, len: u8| json!({"prefix": {"addr": addr, "len": len}});
        let not_given = json!({"set": [prefix("0.0.0.0", 8), prefix("169.254.0.0", 16),
                                       prefix("224.0.0.0", 3)]});
        let learn = |protocol: &str, field: &str| {
            let source = json!({"payload": {"protocol": protocol, "field": field}});
            json!({"add": {"rule": {
                "family": "bridge", "table": TABLE, "chain": "prerouting",
                "expr": [
                    from_tap,
                    {"match": {"op": "!=", "left": source, "right": not_given}},
                    {"set": {"op": "update", "set": format!("@{SEEN}"), "elem": {"concat": [
                        tap, source]}}},
                ],
            }}})
        };
        let mut batch = vec![json!({"add": {"table": table}})];
        // A set the kernel made dynamic (its rules update it) refuses an `add` of its first
        // definition: it is made only when missing.
        if self.nft.list(&["set", "bridge", TABLE, SEEN]).is_err() {
            batch.push(
                json!({"add": {"set": {"family": "bridge", "table": TABLE, "name": SEEN,
                                              "type": ["ifname", "ipv4_addr"],
                                              "flags": ["timeout"], "timeout": SEEN_FOR_SECS,
                                              "size": SEEN_AT_MOST}}}),
            );
        }
        batch.extend([
            json!({"add": {"chain": {"family": "bridge", "table": TABLE, "name": "prerouting",
                                     "type": "filter", "hook": "prerouting", "prio": 0,
                                     "policy": "accept"}}}),
            json!({"flush": {"chain": chain}}),
            learn("arp", "saddr ip"),
            learn("ip", "saddr"),
        ]);
        self.nft.run(&json!({ "nftables": batch }))
    }

    /// The address each tap was seen sending from last (the most recent, if several). Blocks
    /// until nft exits.
    pub fn read(&self) -> Result<Vec<(String, Ipv4Addr)>, NftError> {
        let listed = self.nft.list(&["set", "bridge", TABLE, SEEN])?;
        Ok(latest(&listed))
    }
}

/// The pairs of a listed set, one per tap: the one that expires last (seen last).
fn latest(listed: &Value) -> Vec<(String, Ipv4Addr)> {
    let mut found: Vec<(String, Ipv4Addr, u64)> = Vec::new();
    let sets = listed["nftables"].as_array().into_iter().flatten();
    let elements = sets.filter_map(|o| o["set"]["elem"].as_array()).flatten();
    for element in elements {
        // `{"elem": {"val": {"concat": [...]}, "expires": N}}` with a timeout, else the concat.
        let (value, expires) = match element.get("elem") {
            Some(e) => (&e["val"], e["expires"].as_u64().unwrap_or(0)),
            None => (element, 0),
        };
        let parts = value["concat"].as_array();
        let pair = parts.and_then(|p| {
            let tap = p.first()?.as_str()?.to_owned();
            let ip = p.get(1)?.as_str()?.parse::<Ipv4Addr>().ok()?;
            Some((tap, ip))
        });
        let Some((tap, ip)) = pair else { continue };
        match found.iter_mut().find(|(t, _, _)| *t == tap) {
            Some(seen) if seen.2 >= expires => {}
            Some(seen) => *seen = (tap, ip, expires),
            None => found.push((tap, ip, expires)),
        }
    }
    found.into_iter().map(|(tap, ip, _)| (tap, ip)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pair_seen_last_wins_for_each_tap() {
        let listed = json!({"nftables": [{"metainfo": {}}, {"set": {"elem": [
            {"elem": {"val": {"concat": ["ktap-00000001", "10.0.0.5"]}, "expires": 100}},
            {"elem": {"val": {"concat": ["ktap-00000001", "10.0.0.9"]}, "expires": 3500}},
            {"elem": {"val": {"concat": ["ktap-00000002", "10.0.0.6"]}, "expires": 3000}},
            {"concat": ["ktap-00000003", "10.0.0.7"]},
            {"elem": {"val": {"concat": ["ktap-00000004", "not an address"]}, "expires": 1}},
        ]}}]});
        let tap = |s: &str| s.to_owned();
        assert_eq!(
            latest(&listed),
            vec![
                (tap("ktap-00000001"), Ipv4Addr::new(10, 0, 0, 9)),
                (tap("ktap-00000002"), Ipv4Addr::new(10, 0, 0, 6)),
                (tap("ktap-00000003"), Ipv4Addr::new(10, 0, 0, 7)),
            ]
        );
        assert!(latest(&json!({"nftables": []})).is_empty());
    }
}

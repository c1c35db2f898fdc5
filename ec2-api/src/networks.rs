//! Instance addresses in the MANAGED modes, decided by the CLC as Eucalyptus' did: each
//! security group that runs instances gets a network of the private space (its own subnet,
//! and VLAN in MANAGED), each instance the lowest free address of its first group's network,
//! and, unless it asked for private addressing, a public address lent from the pool for its
//! life (`cloud.network.public_ips`, shared with elastic IPs).
//!
//! Every choice is made under the state's exclusive lock by the caller and written in the
//! caller's batch with the records it belongs to, so two launches never take one address and
//! an address is never recorded twice. Nothing here touches a host: the CC and NC build the
//! bridges, rules and leases from these records.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use network::{GroupNetwork, Layout};
use serde::{Deserialize, Serialize};

use crate::ec2::Cloud;
use crate::instances::InstanceRecord;
use crate::state::{Batch, Record};
use crate::{properties, QueryError};

/// An instance's network interface as the CLC planned it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nic {
    /// The group network it sits in ([`Layout::network`]).
    pub network: u32,
    /// Its address in that network.
    pub private_ip: Ipv4Addr,
    /// The public address NATed to it, if any.
    pub public_ip: Option<Ipv4Addr>,
    /// Whether `public_ip` is an elastic IP of the account (which keeps it when the
    /// instance ends) rather than one lent from the pool for the instance's life.
    #[serde(default)]
    pub elastic: bool,
}

/// Which network of the private space a security group holds, kept while the group exists
/// so that its instances keep one subnet across launches.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct GroupNetworkRecord {
    /// The group's `sg-` id (the record's key).
    group_id: String,
    /// The network's index in the layout.
    index: u32,
}

impl records::Versioned for GroupNetworkRecord {
    const ENVELOPE: records::Envelope = crate::state::ENVELOPE;
    const VERSION: u32 = 1;
}

impl Record for GroupNetworkRecord {
    const TABLE: &'static str = "groupnet/";
}

/// The instances that hold addresses: all but the terminated.
fn live(cloud: &Cloud) -> Result<Vec<InstanceRecord>, QueryError> {
    Ok(cloud
        .state
        .scan::<InstanceRecord>("")?
        .into_iter()
        .map(|(_, i)| i)
        .filter(|i| i.state != rpc::InstanceState::Terminated)
        .collect())
}

/// The network of `group_id`, given it now if it has none: the lowest index no group holds.
fn network_of(
    cloud: &Cloud,
    layout: &Layout,
    batch: &mut Batch,
    group_id: &str,
) -> Result<GroupNetwork, QueryError> {
    let held = cloud.state.scan::<GroupNetworkRecord>("")?;
    let index = match held.iter().find(|(_, r)| r.group_id == group_id) {
        Some((_, r)) => r.index,
        None => {
            let taken: HashSet<u32> = held.iter().map(|(_, r)| r.index).collect();
            let index = (0..layout.networks())
                .find(|i| !taken.contains(i))
                .ok_or_else(|| {
                    QueryError::InsufficientAddressCapacity(format!(
                        "All {} networks of the private space are held by security groups: delete unused groups, or give the space more networks.",
                        layout.networks()
                    ))
                })?;
            let record = GroupNetworkRecord {
                group_id: group_id.to_owned(),
                index,
            };
            batch.put(group_id, &record);
            index
        }
    };
    layout.network(index).ok_or_else(|| {
        QueryError::InsufficientAddressCapacity(format!(
            "Security group {group_id} holds network {index}, which the configured private space no longer has."
        ))
    })
}

/// The public addresses taken: allocated as elastic IPs, or lent to a live instance.
pub fn public_taken(cloud: &Cloud) -> Result<HashSet<Ipv4Addr>, QueryError> {
    taken_with(cloud, &live(cloud)?)
}

/// [`public_taken`], with the live instances already read.
fn taken_with(cloud: &Cloud, live: &[InstanceRecord]) -> Result<HashSet<Ipv4Addr>, QueryError> {
    let mut taken = crate::addresses::allocated(cloud)?;
    taken.extend(live.iter().filter_map(|i| i.nic.as_ref()?.public_ip));
    Ok(taken)
}

/// The NICs of `count` instances about to be recorded in `group_id`, the first group they
/// name: addresses of the group's network, and public ones lent from the pool when `public`
/// (as many as it has free; the others run with private addresses only). The caller holds
/// the exclusive lock and commits `batch` with the instance records.
pub fn plan(
    cloud: &Cloud,
    layout: &Layout,
    batch: &mut Batch,
    group_id: &str,
    count: u32,
    public: bool,
) -> Result<Vec<Nic>, QueryError> {
    let net = network_of(cloud, layout, batch, group_id)?;
    let live = live(cloud)?;
    let used: HashSet<Ipv4Addr> = live
        .iter()
        .filter_map(|i| i.nic.as_ref())
        .filter(|n| n.network == net.index)
        .map(|n| n.private_ip)
        .collect();
    let private: Vec<Ipv4Addr> = net
        .hosts()
        .filter(|ip| !used.contains(ip))
        .take(count as usize)
        .collect();
    if private.len() < count as usize {
        return Err(QueryError::InsufficientAddressCapacity(format!(
            "Security group {group_id}'s network {} has {} free addresses; {count} were asked for.",
            net.subnet,
            private.len()
        )));
    }
    let mut lent = Vec::new();
    if public {
        let taken = taken_with(cloud, &live)?;
        lent = properties::public_ips(cloud)?
            .into_iter()
            .filter(|ip| !taken.contains(ip))
            .take(count as usize)
            .collect();
    }
    Ok(private
        .into_iter()
        .enumerate()
        .map(|(i, private_ip)| Nic {
            network: net.index,
            private_ip,
            public_ip: lent.get(i).copied(),
            elastic: false,
        })
        .collect())
}

/// A public address to lend an instance whose elastic IP left it, as Eucalyptus gave one
/// back; none when the pool has none free. The caller holds the exclusive lock.
pub fn lend_public(cloud: &Cloud) -> Result<Option<Ipv4Addr>, QueryError> {
    let taken = public_taken(cloud)?;
    Ok(properties::public_ips(cloud)?
        .into_iter()
        .find(|ip| !taken.contains(ip)))
}

/// Frees the network of a group being deleted (which has no live instance), in `batch`.
pub fn forget_group(cloud: &Cloud, batch: &mut Batch, group_id: &str) -> Result<(), QueryError> {
    if cloud.state.get::<GroupNetworkRecord>(group_id)?.is_some() {
        batch.delete::<GroupNetworkRecord>(group_id);
    }
    Ok(())
}

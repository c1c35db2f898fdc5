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

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

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

/// What zone `zone`'s CC must apply: its live instances' NICs, the networks of their groups
/// with those groups' rules, and where guests' metadata requests go. An instance in several
/// groups sits in its first group's network and is guarded by that group's rules, as in
/// Eucalyptus' MANAGED mode.
pub fn zone_plan(cloud: &Cloud, layout: &Layout, zone: &str) -> Result<network::Plan, QueryError> {
    let held: BTreeMap<String, u32> = cloud
        .state
        .scan::<GroupNetworkRecord>("")?
        .into_iter()
        .map(|(_, r)| (r.group_id, r.index))
        .collect();
    let guests: Vec<network::Guest> = live(cloud)?
        .into_iter()
        .filter(|i| i.zone == zone)
        .filter_map(|i| {
            let nic = i.nic?;
            Some(network::Guest {
                instance_id: i.id,
                network: nic.network,
                private_ip: nic.private_ip,
                public_ip: nic.public_ip,
            })
        })
        .collect();
    let used: BTreeSet<u32> = guests.iter().map(|g| g.network).collect();
    let mut plan = network::Plan {
        networks: used.iter().filter_map(|i| layout.network(*i)).collect(),
        guests,
        grants: Vec::new(),
        metadata: cloud.settings.metadata,
    };
    for (group_id, index) in &held {
        if used.contains(index) {
            plan.grants
                .extend(crate::groups::grants(cloud, group_id, *index, |g| {
                    held.get(g).copied()
                })?);
        }
    }
    Ok(plan)
}

/// How long a CC may go without being sent its plan again: a CC that restarted, or lost its
/// rules, has them back within this even if nothing changed.
const REPUSH: Duration = Duration::from_secs(30);

/// Sends each zone's CC its plan when it changes: at once when an action that changes one
/// says so ([`Pusher::changed`]), and every second for changes the instance sync makes.
#[derive(Default)]
pub struct Pusher {
    changed: Notify,
    pushed: Mutex<BTreeMap<String, (network::Plan, Instant)>>,
}

impl Pusher {
    /// Wakes the pusher: an action changed what some CC must apply.
    pub fn changed(&self) {
        self.changed.notify_one();
    }

    /// Runs for the cloud's life (spawned by the daemon when guest networking is on).
    pub async fn run(cloud: Cloud) {
        let Some(layout) = cloud
            .settings
            .network
            .clone()
            .filter(|l| l.mode().is_managed())
        else {
            return;
        };
        loop {
            let pusher = &cloud.guest_networks;
            let _ = tokio::time::timeout(Duration::from_secs(1), pusher.changed.notified()).await;
            for (zone, _, cluster) in cloud.clusters.all() {
                let (c, l, z) = (cloud.clone(), layout.clone(), zone.clone());
                let plan = match tokio::task::spawn_blocking(move || zone_plan(&c, &l, &z)).await {
                    Ok(Ok(plan)) => plan,
                    Ok(Err(e)) => {
                        tracing::warn!(zone, "cannot plan the guest network: {e:?}");
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(zone, "cannot plan the guest network: {e}");
                        continue;
                    }
                };
                let fresh = rpc::lock(&pusher.pushed)
                    .get(&zone)
                    .is_some_and(|(sent, at)| *sent == plan && at.elapsed() < REPUSH);
                if fresh {
                    continue;
                }
                match cluster.set_network(&plan).await {
                    Ok(()) => {
                        rpc::lock(&pusher.pushed).insert(zone, (plan, Instant::now()));
                    }
                    Err(e) => {
                        tracing::warn!(zone, "the cluster did not take its network plan: {e}")
                    }
                }
            }
        }
    }
}

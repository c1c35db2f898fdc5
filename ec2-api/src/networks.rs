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

use network::{GroupNetwork, Ipv4Net, Layout, Mac, Mode};
use serde::{Deserialize, Serialize};

use crate::ec2::Cloud;
use crate::instances::InstanceRecord;
use crate::state::{Batch, CloudState, Record, StateError};
use crate::{properties, QueryError, StartingValues};

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

impl Nic {
    /// A SYSTEM NIC: its address is the site's DHCP server's to give, unknown (0.0.0.0)
    /// until the node sees the guest use one.
    pub fn unplanned() -> Nic {
        Nic {
            network: 0,
            private_ip: Ipv4Addr::UNSPECIFIED,
            public_ip: None,
            elastic: false,
        }
    }

    /// Its private address, once known (always, outside SYSTEM).
    pub fn address(&self) -> Option<Ipv4Addr> {
        Some(self.private_ip).filter(|ip| !ip.is_unspecified())
    }
}

/// The MAC of instance `instance_id`'s NIC `nic` under `layout`: SYSTEM's is the instance's
/// own ([`Mac::for_instance`]), STATIC's the table's, the MANAGED modes' its address's.
pub fn mac_of(layout: Option<&Layout>, instance_id: &str, nic: &Nic) -> Mac {
    match layout {
        Some(l) if l.mode() == Mode::System => Mac::for_instance(instance_id),
        Some(l) => l.mac_of(nic.private_ip),
        None => Mac::for_address(nic.private_ip),
    }
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

/// What of the `[network]` table the addresses the CLC plans depend on: the group networks'
/// subnets and tags, and so every NIC and `groupnet/` record, mean something only under the
/// addressing they were planned with. Interfaces, bridges and servers are left out: changing
/// them moves no address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Addressing {
    mode: Mode,
    private_subnet: Option<Ipv4Net>,
    addresses_per_network: Option<u32>,
    first_vlan: Option<u16>,
}

impl Addressing {
    fn of(layout: &Layout) -> Addressing {
        Addressing {
            mode: layout.mode(),
            private_subnet: layout.private_space(),
            addresses_per_network: layout.addresses_per_network(),
            first_vlan: layout.first_vlan(),
        }
    }

    /// Its keys as koala.toml writes them, those set only: `(key, value)`.
    fn keys(&self) -> Vec<(&'static str, String)> {
        let mut keys = vec![("mode", format!("{:?}", self.mode.name()))];
        keys.extend(
            [
                ("private_subnet", self.private_subnet.map(|n| n.to_string())),
                (
                    "addresses_per_network",
                    self.addresses_per_network.map(|n| n.to_string()),
                ),
                ("first_vlan", self.first_vlan.map(|n| n.to_string())),
            ]
            .into_iter()
            .filter_map(|(key, value)| Some((key, value?))),
        );
        keys
    }

    /// Its keys as a table writes them: `mode = "managed", private_subnet = …`.
    fn written(&self) -> String {
        let keys: Vec<String> = self
            .keys()
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect();
        keys.join(", ")
    }
}

/// The addressing the CLC last started under (`None`: koala.toml had no `[network]` table),
/// kept so that a start under another can tell whether recorded addresses would be stranded.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LayoutRecord {
    addressing: Option<Addressing>,
}

impl records::Versioned for LayoutRecord {
    const ENVELOPE: records::Envelope = crate::state::ENVELOPE;
    const VERSION: u32 = 1;
}

impl Record for LayoutRecord {
    const TABLE: &'static str = "netlayout/";
}

/// The key of the one [`LayoutRecord`].
const LAYOUT_KEY: &str = "current";

/// What the CLC's start made of the configured `[network]` table ([`adopt_layout`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Adopted {
    /// It plans addresses as the recorded one did.
    Same,
    /// None was recorded (a new cloud, or one from before layouts were recorded): the
    /// configured one is recorded as the one in force.
    First,
    /// It differs and no instance held an address planned under the old one: recorded, and
    /// the security groups' networks forgotten, to be planned anew under it.
    Replaced {
        /// What changed, a sentence naming each key, from and to.
        change: String,
        /// How many security groups held a network.
        forgotten: usize,
    },
}

/// Why the CLC refuses to start with the configured `[network]` table.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// The table plans addresses differently from the one live instances' addresses were
    /// planned under: starting would give their networks other subnets and tags, and new
    /// instances addresses they hold.
    #[error("{change} while {}", holding(.instances))]
    Changed {
        /// What changed, a sentence naming each key, from and to.
        change: String,
        /// The live instances holding addresses, by id.
        instances: Vec<String>,
    },
    /// The public pool in force has an address inside the private space of the table.
    #[error("cloud.network.public_ips, {}, is refused: {overlap}{}", set_by(*.overridden), remedy(*.overridden))]
    PublicInPrivate {
        /// The address and the space.
        overlap: PublicInPrivate,
        /// Whether `ModifyPropertyValue` set the pool (else koala.toml's `[properties]`).
        overridden: bool,
    },
    /// The public pool stored is not one (written by a newer Koala, or damaged).
    #[error("the stored value of cloud.network.public_ips is invalid: {0}")]
    StoredPool(String),
    /// The cloud state could not be read or written.
    #[error("cannot check the guest network's layout against the cloud state")]
    Store(#[from] StateError),
}

/// Who holds addresses, the first few by id, and what the administrator may do: "instance
/// i-1 runs with an address planned under it: terminate it first, or restore the table".
fn holding(instances: &[String]) -> String {
    const NAMED: usize = 5;
    let what = match instances {
        [one] => format!("instance {one} runs with an address planned under it"),
        many => {
            let mut ids = many[..many.len().min(NAMED)].join(", ");
            if many.len() > NAMED {
                ids.push_str(&format!(" and {} more", many.len() - NAMED));
            }
            format!(
                "{} instances ({ids}) run with addresses planned under it",
                many.len()
            )
        }
    };
    let them = if instances.len() == 1 { "it" } else { "them" };
    format!("{what}: terminate {them} first, or restore the table")
}

/// Who set the public pool refused at start.
fn set_by(overridden: bool) -> &'static str {
    match overridden {
        true => "as euca-modify-property set it",
        false => "as koala.toml's [properties] sets it",
    }
}

/// How the administrator gets a refused pool out of the way: one set at run time can only be
/// changed by a running cloud.
fn remedy(overridden: bool) -> &'static str {
    match overridden {
        true => "; start under the [network] table the cloud had, take the address out of the pool with euca-modify-property, then change the table",
        false => "",
    }
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// What changes from the recorded addressing to the configured one, as the start of a
/// sentence naming each key.
fn describe_change(old: &Option<Addressing>, new: &Option<Addressing>) -> String {
    match (old, new) {
        (Some(old), Some(new)) => {
            let (before, after) = (old.keys(), new.keys());
            let value = |keys: &[(&str, String)], key| {
                keys.iter()
                    .find(|(k, _)| *k == key)
                    .map_or_else(|| "unset".to_owned(), |(_, v)| v.clone())
            };
            let mut changed: Vec<String> = Vec::new();
            for key in [
                "mode",
                "private_subnet",
                "addresses_per_network",
                "first_vlan",
            ] {
                let (from, to) = (value(&before, key), value(&after, key));
                if from != to {
                    changed.push(format!("{key} from {from} to {to}"));
                }
            }
            format!("koala.toml's [network] changes {}", and_list(&changed))
        }
        (Some(old), None) => format!(
            "koala.toml no longer has the [network] table ({})",
            old.written()
        ),
        (None, Some(new)) => format!(
            "koala.toml has a [network] table ({}) where it had none",
            new.written()
        ),
        (None, None) => "koala.toml's [network] table is unchanged".to_owned(),
    }
}

/// Checks the configured `[network]` table (`None`: there is none) against the one the
/// cloud last started under, before anything is served: the same, or changed while no live
/// instance holds an address, is recorded (on a change the group networks are dropped, to be
/// planned anew); changed while some do is refused, and nothing is written. So is a public
/// pool in force (`properties` are koala.toml's starting values) with an address inside the
/// table's private space. Called by the daemon when it opens the CLC's state, before any
/// cluster controller is started.
pub fn adopt_layout(
    state: &CloudState,
    layout: Option<&Layout>,
    properties: &StartingValues,
) -> Result<Adopted, LayoutError> {
    let _guard = state.exclusive();
    let pool = properties::public_pool_in(state, properties)?;
    let addresses = properties::parse_address_pool(&pool.text).map_err(LayoutError::StoredPool)?;
    check_public_pool(&addresses, layout).map_err(|overlap| LayoutError::PublicInPrivate {
        overlap,
        overridden: pool.overridden,
    })?;
    let configured = layout.map(Addressing::of);
    let record = LayoutRecord {
        addressing: configured.clone(),
    };
    let Some(recorded) = state.get::<LayoutRecord>(LAYOUT_KEY)? else {
        state.put(LAYOUT_KEY, &record)?;
        return Ok(Adopted::First);
    };
    if recorded.addressing == configured {
        return Ok(Adopted::Same);
    }
    let change = describe_change(&recorded.addressing, &configured);
    let instances: Vec<String> = live(state)?
        .into_iter()
        .filter(|i| i.nic.is_some())
        .map(|i| i.id)
        .collect();
    if !instances.is_empty() {
        return Err(LayoutError::Changed { change, instances });
    }
    let groups = state.scan::<GroupNetworkRecord>("")?;
    let mut batch = Batch::new();
    for (group_id, _) in &groups {
        batch.delete::<GroupNetworkRecord>(group_id);
    }
    batch.put(LAYOUT_KEY, &record);
    state.commit(batch)?;
    Ok(Adopted::Replaced {
        change,
        forgotten: groups.len(),
    })
}

/// A public address inside the guests' private space of the MANAGED modes: the CC routes
/// that space to the guest networks, so traffic for the address would go to a guest network
/// instead of being NATed to the instance holding it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{address} is inside the guests' private space {space} ([network] private_subnet), where a public address would be routed to a guest network")]
pub struct PublicInPrivate {
    /// The first such address of the pool.
    pub address: Ipv4Addr,
    /// The private space.
    pub space: Ipv4Net,
}

/// Refuses a public pool with an address inside the private space `layout` plans guests'
/// addresses from (the MANAGED modes; the others route no public address).
pub fn check_public_pool(
    pool: &[Ipv4Addr],
    layout: Option<&Layout>,
) -> Result<(), PublicInPrivate> {
    let Some(space) = layout
        .filter(|l| l.mode().is_managed())
        .and_then(Layout::private_space)
    else {
        return Ok(());
    };
    match pool.iter().find(|ip| space.contains(**ip)) {
        Some(&address) => Err(PublicInPrivate { address, space }),
        None => Ok(()),
    }
}

/// The instances that hold addresses: all but the terminated.
fn live(state: &CloudState) -> Result<Vec<InstanceRecord>, StateError> {
    Ok(state
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
    taken_with(cloud, &live(&cloud.state)?)
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
    let live = live(&cloud.state)?;
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

/// The NICs of `count` instances about to be recorded in STATIC: the first entries of the
/// MAC→IP table no live instance holds, in the table's order (fewer when fewer are free).
/// STATIC has no public addresses and no group networks: every NIC is in network 0, the
/// table's subnet. The caller holds the exclusive lock.
pub fn plan_static(cloud: &Cloud, layout: &Layout, count: u32) -> Result<Vec<Nic>, QueryError> {
    let used: HashSet<Ipv4Addr> = live(&cloud.state)?
        .iter()
        .filter_map(|i| Some(i.nic.as_ref()?.private_ip))
        .collect();
    Ok(layout
        .static_hosts()
        .iter()
        .filter(|h| !used.contains(&h.ip))
        .take(count as usize)
        .map(|h| Nic {
            network: 0,
            private_ip: h.ip,
            public_ip: None,
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
    let guests: Vec<network::Guest> = live(&cloud.state)?
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::instance;
    use rpc::InstanceState;

    /// The layout of a `[network]` table written as JSON.
    fn layout(table: serde_json::Value) -> Layout {
        serde_json::from_value::<network::NetworkSettings>(table)
            .unwrap()
            .layout()
            .unwrap()
    }

    /// A MANAGED-NOVLAN layout cutting `subnet` into networks of 16.
    fn novlan(subnet: &str) -> Layout {
        layout(serde_json::json!({
            "mode": "managed-novlan",
            "bridge": "br0",
            "private_subnet": subnet,
            "addresses_per_network": 16,
        }))
    }

    /// A store on a temp dir that started once under `first` and planned group `sg-00000001`'s
    /// network.
    fn started_under(first: Option<&Layout>) -> (tempfile::TempDir, CloudState) {
        let dir = tempfile::tempdir().unwrap();
        let state = CloudState::open(dir.path()).unwrap();
        assert_eq!(adopt(&state, first).unwrap(), Adopted::First);
        let group = GroupNetworkRecord {
            group_id: "sg-00000001".into(),
            index: 0,
        };
        state.put(&group.group_id, &group).unwrap();
        (dir, state)
    }

    /// [`adopt_layout`] with no starting value of a property.
    fn adopt(state: &CloudState, layout: Option<&Layout>) -> Result<Adopted, LayoutError> {
        adopt_layout(state, layout, &StartingValues::default())
    }

    fn groups(state: &CloudState) -> usize {
        state.scan::<GroupNetworkRecord>("").unwrap().len()
    }

    fn recorded(state: &CloudState) -> Option<Addressing> {
        state
            .get::<LayoutRecord>(LAYOUT_KEY)
            .unwrap()
            .unwrap()
            .addressing
    }

    #[test]
    fn the_same_layout_is_adopted_and_its_networks_kept() {
        let old = novlan("10.77.0.0/24");
        let (_dir, state) = started_under(Some(&old));
        state
            .put(
                "i-00000001",
                &instance("i-00000001", InstanceState::Running, Some(2)),
            )
            .unwrap();
        // Another bridge moves no address: the same layout.
        let moved = layout(serde_json::json!({
            "mode": "managed-novlan",
            "bridge": "br1",
            "private_subnet": "10.77.0.0/24",
            "addresses_per_network": 16,
        }));
        assert_eq!(adopt(&state, Some(&moved)).unwrap(), Adopted::Same);
        assert_eq!(groups(&state), 1);
    }

    #[test]
    fn a_change_with_instances_holding_addresses_is_refused_and_nothing_written() {
        let old = novlan("10.77.0.0/24");
        let (_dir, state) = started_under(Some(&old));
        for (id, s, host) in [
            ("i-00000001", InstanceState::Running, Some(2)),
            ("i-00000002", InstanceState::Pending, Some(3)),
            ("i-00000003", InstanceState::Terminated, Some(4)),
            ("i-00000004", InstanceState::Running, None),
        ] {
            state.put(id, &instance(id, s, host)).unwrap();
        }
        let new = novlan("10.78.0.0/24");
        let err = adopt(&state, Some(&new)).unwrap_err();
        assert!(matches!(&err, LayoutError::Changed { instances, .. } if instances.len() == 2));
        assert_eq!(
            rpc::error_chain(&err),
            "koala.toml's [network] changes private_subnet from 10.77.0.0/24 to 10.78.0.0/24 \
             while 2 instances (i-00000001, i-00000002) run with addresses planned under it: \
             terminate them first, or restore the table"
        );
        // Nothing was touched: the old layout is still the recorded one, its networks kept.
        assert_eq!(recorded(&state), Some(Addressing::of(&old)));
        assert_eq!(groups(&state), 1);

        // A mode change names each key that changes with it.
        let managed = layout(serde_json::json!({
            "mode": "managed",
            "private_interface": "eth1",
            "private_subnet": "10.77.0.0/24",
            "addresses_per_network": 16,
        }));
        let err = adopt(&state, Some(&managed)).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "koala.toml's [network] changes mode from \"managed-novlan\" to \"managed\" \
                 and first_vlan from unset to 10 while 2 instances"
            ),
            "{err}"
        );

        // The table removed: the same refusal, naming what it was.
        let err = adopt(&state, None).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "koala.toml no longer has the [network] table (mode = \"managed-novlan\", \
                 private_subnet = 10.77.0.0/24, addresses_per_network = 16) while 2 instances"
            ),
            "{err}"
        );
        assert_eq!(recorded(&state), Some(Addressing::of(&old)));
        assert_eq!(groups(&state), 1);
    }

    #[test]
    fn one_instance_is_named_alone_and_many_are_counted() {
        let one = holding(&["i-00000001".to_owned()]);
        assert_eq!(
            one,
            "instance i-00000001 runs with an address planned under it: terminate it first, \
             or restore the table"
        );
        let many: Vec<String> = (1..=7).map(|n| format!("i-0000000{n}")).collect();
        assert!(holding(&many).starts_with(
            "7 instances (i-00000001, i-00000002, i-00000003, i-00000004, i-00000005 and 2 \
             more) run"
        ));
    }

    #[test]
    fn a_change_with_no_instance_holding_an_address_is_adopted_and_networks_replanned() {
        let old = novlan("10.77.0.0/24");
        let (_dir, state) = started_under(Some(&old));
        state
            .put(
                "i-00000001",
                &instance("i-00000001", InstanceState::Terminated, Some(2)),
            )
            .unwrap();
        state
            .put(
                "i-00000002",
                &instance("i-00000002", InstanceState::Running, None),
            )
            .unwrap();
        let new = novlan("10.78.0.0/24");
        assert_eq!(
            adopt(&state, Some(&new)).unwrap(),
            Adopted::Replaced {
                change: "koala.toml's [network] changes private_subnet from 10.77.0.0/24 to \
                         10.78.0.0/24"
                    .into(),
                forgotten: 1,
            }
        );
        assert_eq!(recorded(&state), Some(Addressing::of(&new)));
        assert_eq!(groups(&state), 0);
        // Started again under it: the same.
        assert_eq!(adopt(&state, Some(&new)).unwrap(), Adopted::Same);

        // Removed, then added again: both adopted, as nothing holds an address.
        assert!(matches!(
            adopt(&state, None).unwrap(),
            Adopted::Replaced { .. }
        ));
        assert_eq!(recorded(&state), None);
        assert!(matches!(
            adopt(&state, Some(&old)).unwrap(),
            Adopted::Replaced { .. }
        ));
        assert_eq!(recorded(&state), Some(Addressing::of(&old)));
    }

    #[test]
    fn a_table_added_where_none_was_is_adopted() {
        let (_dir, state) = started_under(None);
        assert_eq!(recorded(&state), None);
        let new = novlan("10.77.0.0/24");
        match adopt(&state, Some(&new)).unwrap() {
            Adopted::Replaced { change, .. } => assert_eq!(
                change,
                "koala.toml has a [network] table (mode = \"managed-novlan\", private_subnet = \
                 10.77.0.0/24, addresses_per_network = 16) where it had none"
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(recorded(&state), Some(Addressing::of(&new)));
    }

    #[test]
    fn a_public_pool_inside_the_new_private_space_is_refused_and_nothing_written() {
        let old = novlan("10.77.0.0/24");
        let (_dir, state) = started_under(Some(&old));
        // Set under the old layout, outside its space; inside the new one.
        let pool = properties::Override {
            value: "10.78.0.5-10.78.0.6".into(),
        };
        state.put(properties::PUBLIC_IPS, &pool).unwrap();
        let new = novlan("10.78.0.0/24");
        let err = adopt(&state, Some(&new)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cloud.network.public_ips, as euca-modify-property set it, is refused: 10.78.0.5 is \
             inside the guests' private space 10.78.0.0/24 ([network] private_subnet), where a \
             public address would be routed to a guest network; start under the [network] \
             table the cloud had, take the address out of the pool with euca-modify-property, \
             then change the table"
        );
        // No instance held an address, yet nothing was adopted.
        assert_eq!(recorded(&state), Some(Addressing::of(&old)));
        assert_eq!(groups(&state), 1);
        assert_eq!(adopt(&state, Some(&old)).unwrap(), Adopted::Same);

        // A starting value from koala.toml is checked too (the daemon refuses it earlier,
        // when it reads the file), and the override wins over it.
        let starting =
            StartingValues::new([(properties::PUBLIC_IPS.to_owned(), "10.77.0.9".to_owned())])
                .unwrap();
        assert_eq!(
            adopt_layout(&state, Some(&old), &starting).unwrap(),
            Adopted::Same
        );
        let mut batch = Batch::new();
        batch.delete::<properties::Override>(properties::PUBLIC_IPS);
        state.commit(batch).unwrap();
        let err = adopt_layout(&state, Some(&old), &starting).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "cloud.network.public_ips, as koala.toml's [properties] sets it, is refused: \
                 10.77.0.9 is inside"
            ),
            "{err}"
        );
    }

    /// The record as this version writes it, so that later versions keep reading it.
    #[test]
    fn the_layout_record_is_stored_in_its_format_version_1() {
        let dir = tempfile::tempdir().unwrap();
        {
            let state = CloudState::open(dir.path()).unwrap();
            adopt(&state, Some(&novlan("10.77.0.0/24"))).unwrap();
        }
        let db = rocksdb::DB::open_default(dir.path()).unwrap();
        assert_eq!(
            std::str::from_utf8(&db.get("netlayout/current").unwrap().unwrap()).unwrap(),
            r#"{"v":1,"record":{"addressing":{"mode":"managed-novlan","private_subnet":"10.77.0.0/24","addresses_per_network":16,"first_vlan":null}}}"#
        );
    }
}

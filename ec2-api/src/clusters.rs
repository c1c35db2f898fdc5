//! The cloud's clusters: one cluster controller per availability zone, as in Eucalyptus.
//! The CLC keeps them in its state (`cluster/ZONE` → the CC's URL) and reaches each through a
//! [`Clusters`] client the `koala` binary makes. A cloud administrator registers more with
//! `RegisterCluster` (`euca_conf --register-cluster`), removes one with `DeregisterCluster`,
//! and lists them with `DescribeClusters`; the cluster a process is started with
//! (`koala up`, `koala cloud --cluster-url`) is registered at start.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use rpc::NodeStatus;
use serde::{Deserialize, Serialize};

use crate::ec2::{Call, Clusters, Request};
use crate::error::Resource;
use crate::query::Xml;
use crate::state::{CloudState, Record};
use crate::QueryError;

/// The port a cluster controller listens on when a registration names none.
const DEFAULT_CC_PORT: u16 = 8774;

/// A registered cluster controller.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterRecord {
    /// The availability zone (Eucalyptus' partition) it serves.
    pub zone: String,
    /// Its URL (`https://host:8774`).
    pub url: String,
}

impl records::Versioned for ClusterRecord {
    const ENVELOPE: records::Envelope = crate::state::ENVELOPE;
    const VERSION: u32 = 1;
}

impl Record for ClusterRecord {
    const TABLE: &'static str = "cluster/";
}

/// Makes the client of the CC at a URL.
pub type Connect = dyn Fn(&str) -> Arc<dyn Clusters> + Send + Sync;

/// A registered cluster's URL and client.
type Registered = (String, Arc<dyn Clusters>);

/// Every registered cluster with its client, by zone.
pub struct ClusterSet {
    connect: Box<Connect>,
    zones: RwLock<BTreeMap<String, Registered>>,
}

impl ClusterSet {
    /// The clusters recorded in `state`, reached through clients made by `connect`.
    pub fn open(state: &CloudState, connect: Box<Connect>) -> Result<ClusterSet, QueryError> {
        let zones = state
            .scan::<ClusterRecord>("")?
            .into_iter()
            .map(|(_, r)| {
                let client = connect(&r.url);
                (r.zone, (r.url, client))
            })
            .collect();
        Ok(ClusterSet {
            connect,
            zones: RwLock::new(zones),
        })
    }

    /// Registers (or moves) the cluster of `zone` to `url`, recorded before it is used. A
    /// cluster controller already registered for another zone is refused: one CC in two zones
    /// would have each of its instances reported twice.
    pub fn register(&self, state: &CloudState, zone: &str, url: &str) -> Result<(), QueryError> {
        let url = url.trim_end_matches('/').to_owned();
        if let Some((other, _)) = read(&self.zones)
            .iter()
            .find(|(other, (known, _))| *known == url && *other != zone)
        {
            return Err(QueryError::Validation(format!(
                "The cluster controller at {url} is already registered as the cluster of \
                 {other}."
            )));
        }
        state.put(
            zone,
            &ClusterRecord {
                zone: zone.to_owned(),
                url: url.clone(),
            },
        )?;
        let client = (self.connect)(&url);
        write(&self.zones).insert(zone.to_owned(), (url, client));
        Ok(())
    }

    /// Forgets the cluster of `zone`; whether there was one.
    fn deregister(&self, state: &CloudState, zone: &str) -> Result<bool, QueryError> {
        if !read(&self.zones).contains_key(zone) {
            return Ok(false);
        }
        let mut batch = crate::state::Batch::new();
        batch.delete::<ClusterRecord>(zone);
        state.commit(batch)?;
        write(&self.zones).remove(zone);
        Ok(true)
    }

    /// The zones, in name order.
    pub fn zones(&self) -> Vec<String> {
        read(&self.zones).keys().cloned().collect()
    }

    /// The client of `zone`'s cluster, or `InvalidZone.NotFound`.
    pub fn of(&self, zone: &str) -> Result<Arc<dyn Clusters>, QueryError> {
        read(&self.zones)
            .get(zone)
            .map(|(_, c)| c.clone())
            .ok_or_else(|| QueryError::NotFound(Resource::Zone, zone.to_owned()))
    }

    /// Every zone with its URL and client.
    pub fn all(&self) -> Vec<(String, String, Arc<dyn Clusters>)> {
        read(&self.zones)
            .iter()
            .map(|(zone, (url, client))| (zone.clone(), url.clone(), client.clone()))
            .collect()
    }

    /// The nodes of `zone`'s cluster; an unreachable cluster is `Unavailable`.
    pub async fn nodes(&self, zone: &str) -> Result<Vec<NodeStatus>, QueryError> {
        self.of(zone)?.nodes().await.map_err(|e| {
            QueryError::Unavailable(format!(
                "The cluster controller of {zone} cannot be reached: {e}"
            ))
        })
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether `zone` is a name a zone may have: what Eucalyptus allowed for partitions.
fn valid_zone(zone: &str) -> bool {
    !zone.is_empty()
        && zone.len() <= 64
        && zone
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// The zone a cluster action names: `Partition`, or Eucalyptus' `Name`.
fn partition<'a>(call: &Call<'a>) -> Result<&'a str, QueryError> {
    call.params
        .get("Partition")
        .or_else(|| call.params.get("Name"))
        .filter(|z| !z.is_empty())
        .ok_or_else(|| QueryError::MissingParameter("Partition".into()))
}

fn require_admin(call: &Call<'_>, action: &str) -> Result<(), QueryError> {
    if call.caller.is_cloud_admin() {
        Ok(())
    } else {
        Err(QueryError::AccessDenied(action.to_owned()))
    }
}

/// `RegisterCluster`: `Partition` (the zone), `Host` and `Port` (default 8774) of a cluster
/// controller. Cloud administrators only. A zone already registered is moved to the new
/// address, as re-registering in Eucalyptus did.
pub fn register(call: &Call<'_>) -> Result<String, QueryError> {
    require_admin(call, "RegisterCluster")?;
    let params = call.params;
    let zone = partition(call)?;
    if !valid_zone(zone) {
        return Err(QueryError::Validation(format!(
            "Invalid partition name: [{zone}] (letters, digits, '-', '_' and '.', at most 64)"
        )));
    }
    let host = params
        .get("Host")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| QueryError::MissingParameter("Host".into()))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let v6 = bare.parse::<std::net::Ipv6Addr>().is_ok();
    if !v6
        && !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(QueryError::Validation(format!(
            "Invalid host: [{host}] (a host name or an IP address; the port goes in Port)"
        )));
    }
    let port = match params.get("Port").filter(|p| !p.is_empty()) {
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| QueryError::Validation(format!("Invalid port: [{p}]")))?,
        None => DEFAULT_CC_PORT,
    };
    let host = if v6 {
        format!("[{bare}]")
    } else {
        host.to_owned()
    };
    // Cluster controllers speak HTTPS only.
    let url = format!("https://{host}:{port}");
    call.cloud
        .clusters
        .register(&call.cloud.state, zone, &url)?;
    let mut x = Xml::new();
    x.elem("return", "true");
    Ok(x.finish())
}

/// `DeregisterCluster`: forgets the cluster of `Partition` (or `Name`). Refused while
/// instances live in its zone, whose records would be orphaned.
pub fn deregister(call: &Call<'_>) -> Result<String, QueryError> {
    require_admin(call, "DeregisterCluster")?;
    let zone = partition(call)?;
    // Under the guard RunInstances records new instances with: none can slip in between.
    let _guard = call.cloud.state.exclusive();
    let live = crate::instances::live_in_zone(call.cloud, zone)?;
    if live > 0 {
        return Err(QueryError::Validation(format!(
            "The cluster of {zone} still has {live} instance(s): terminate them first."
        )));
    }
    if !call.cloud.clusters.deregister(&call.cloud.state, zone)? {
        return Err(QueryError::NotFound(Resource::Zone, zone.to_owned()));
    }
    let mut x = Xml::new();
    x.elem("return", "true");
    Ok(x.finish())
}

/// `DescribeClusters`: every registered cluster with its zone, address and state (`ENABLED`
/// when its CC answers, else `NOTREADY`, Eucalyptus' words). Cloud administrators only.
pub async fn describe(req: &Request) -> Result<String, QueryError> {
    require_admin(&req.call(), "DescribeClusters")?;
    let mut listed = Vec::new();
    for (zone, url, client) in req.cloud.clusters.all() {
        let (state, detail) = match client.nodes().await {
            Ok(nodes) => ("ENABLED", format!("{} node(s)", nodes.len())),
            Err(e) => ("NOTREADY", e.to_string()),
        };
        listed.push((zone, url, state, detail));
    }
    let mut x = Xml::new();
    x.nest("clusterInfo", |x| {
        for (zone, url, state, detail) in &listed {
            x.nest("item", |x| {
                x.elem("partition", zone)
                    .elem("name", zone)
                    .elem("url", url)
                    .elem("state", state)
                    .elem("detail", detail);
            });
        }
    });
    Ok(x.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_names_are_checked() {
        assert!(valid_zone("cluster01"));
        assert!(valid_zone("us-east-1a"));
        assert!(!valid_zone(""));
        assert!(!valid_zone("a/b"));
        assert!(!valid_zone(&"z".repeat(65)));
    }
}

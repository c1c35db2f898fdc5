//! Availability zones and regions. A zone is a cluster of nodes (`clusters.rs`): `koala up`
//! runs one, named by `zone` in `koala.toml`, and an administrator registers more. The
//! region is the cloud itself.
//!
//! A cloud administrator's `euca-describe-availability-zones verbose` (`ZoneName.1=verbose`)
//! also lists, as Eucalyptus did, each zone's VM types with free and total instance slots.

use rpc::{NodeStatus, VmSpec};

use std::sync::Arc;

use crate::ec2::{apply_filters, blocking, Call, Request};
use crate::properties::{self, VmType};
use crate::query::Xml;
use crate::QueryError;

/// The state every zone reports while its cluster serves.
const AVAILABLE: &str = "available";

/// Instances of `vm_type` the zone's answering nodes can still start, and at most hold:
/// `(free, max)`.
fn capacity(nodes: &[NodeStatus], vm_type: &VmType) -> (u64, u64) {
    let vm = VmSpec {
        name: vm_type.name.clone(),
        cpus: vm_type.cpus,
        memory_mib: vm_type.memory_mib.into(),
        disk_gib: vm_type.disk_gib.into(),
    };
    nodes
        .iter()
        .filter(|n| n.error.is_none())
        .filter_map(|n| n.resources.as_ref())
        .fold((0, 0), |(free, max), r| {
            (free + r.free_slots(&vm), max + r.max_slots(&vm))
        })
}

/// `DescribeAvailabilityZones`: the zones named by `ZoneName.N` (all when none), narrowed
/// by filters `zone-name`, `state` and `region-name`.
pub async fn describe_zones(req: &Arc<Request>) -> Result<String, QueryError> {
    let call = req.call();
    let zones = listed_zones(&call)?;
    let verbose = wants_verbose(&call);
    // A zone whose CC does not answer shows no room rather than failing the listing.
    let mut nodes: Vec<Vec<NodeStatus>> = Vec::new();
    if verbose {
        for zone in &zones {
            nodes.push(req.cloud.clusters.nodes(zone).await.unwrap_or_default());
        }
    }
    blocking(req, move |call| zones_xml(call, &zones, verbose, &nodes)).await
}

/// Whether a listing is verbose: asked for, by a cloud administrator (capacity is the
/// cloud's business, as in Eucalyptus: users get the plain list).
fn wants_verbose(call: &Call<'_>) -> bool {
    call.params.list("ZoneName").contains(&"verbose") && call.caller.is_cloud_admin()
}

/// The zones a listing names and its filters keep.
fn listed_zones(call: &Call<'_>) -> Result<Vec<String>, QueryError> {
    let settings = &call.cloud.settings;
    let mut names = call.params.list("ZoneName");
    names.retain(|n| *n != "verbose");
    let known = call.cloud.clusters.zones();
    if let Some(unknown) = names.iter().find(|n| !known.iter().any(|k| k == *n)) {
        return Err(QueryError::Validation(format!(
            "Invalid availability zone: [{unknown}]"
        )));
    }
    let named: Vec<String> = known
        .into_iter()
        .filter(|z| names.is_empty() || names.contains(&z.as_str()))
        .collect();
    apply_filters(
        &call.params.filters()?,
        named,
        |zone, filter| match filter {
            "zone-name" => Some(vec![zone.clone()]),
            "state" => Some(vec![AVAILABLE.to_owned()]),
            "region-name" => Some(vec![settings.region.clone()]),
            _ => None,
        },
        |_| Vec::new(),
    )
}

/// The listing of `zones`, with each one's room from `nodes` when verbose.
fn zones_xml(
    call: &Call<'_>,
    zones: &[String],
    verbose: bool,
    nodes: &[Vec<NodeStatus>],
) -> Result<String, QueryError> {
    let settings = &call.cloud.settings;
    let vm_types = if verbose {
        properties::vm_types(call.cloud)?
    } else {
        Vec::new()
    };
    let mut x = Xml::new();
    x.nest("availabilityZoneInfo", |x| {
        for (i, zone) in zones.iter().enumerate() {
            x.nest("item", |x| {
                x.elem("zoneName", zone)
                    .elem("zoneState", AVAILABLE)
                    .elem("regionName", &settings.region)
                    .list("messageSet", Vec::<&str>::new(), |_, _| {});
            });
            if verbose {
                verbose_item(x, "|- vm types", "free / max   cpu   ram  disk");
                for t in &vm_types {
                    let (free, max) = capacity(&nodes[i], t);
                    verbose_item(
                        x,
                        &format!("|- {}", t.name),
                        &format!(
                            "{free:04} / {max:04} {:>3} {:>6} {:>5}",
                            t.cpus, t.memory_mib, t.disk_gib
                        ),
                    );
                }
            }
        }
    });
    Ok(x.finish())
}

/// One of the extra lines of a verbose listing: an item whose name and state carry text.
fn verbose_item(x: &mut Xml, name: &str, state: &str) {
    x.nest("item", |x| {
        x.elem("zoneName", name).elem("zoneState", state);
    });
}

/// `DescribeRegions`: the cloud's one region, with the EC2 endpoint's URL as Eucalyptus gave
/// it (AWS gives a bare host name, which would lose the port and the `/services/compute/`
/// path clients need). `RegionName.N` naming another region is an error; filters
/// `region-name` and `endpoint` apply.
pub fn describe_regions(call: &Call<'_>) -> Result<String, QueryError> {
    let settings = &call.cloud.settings;
    if let Some(unknown) = call
        .params
        .list("RegionName")
        .into_iter()
        .find(|n| *n != settings.region)
    {
        return Err(QueryError::Validation(format!(
            "The region '{unknown}' does not exist."
        )));
    }
    let regions = apply_filters(
        &call.params.filters()?,
        vec![(settings.region.as_str(), settings.ec2_url.as_str())],
        |(name, endpoint), filter| match filter {
            "region-name" => Some(vec![(*name).to_owned()]),
            "endpoint" => Some(vec![(*endpoint).to_owned()]),
            _ => None,
        },
        |_| Vec::new(),
    )?;
    let mut x = Xml::new();
    x.list("regionInfo", regions, |x, (name, endpoint)| {
        x.elem("regionName", name)
            .elem("regionEndpoint", endpoint)
            .elem("optInStatus", "opt-in-not-required");
    });
    Ok(x.finish())
}

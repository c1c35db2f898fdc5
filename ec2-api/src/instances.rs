//! Instances: RunInstances, DescribeInstances, TerminateInstances, RebootInstances,
//! GetConsoleOutput, DescribeInstanceStatus, and the CLC's view of them kept in step with
//! the nodes.
//!
//! The CLC records each instance (who launched what, how) and asks the cluster controller to
//! run it; the nodes are the truth of what runs. [`sync`], called every second by the
//! daemon, reads every node's reports through the CC and moves the records along (pending →
//! running → terminated with the reason). It also ends instances no node admits to: one
//! still pending past its start timeout (its node died mid-boot), one running whose node
//! stopped reporting it. So an instance never stays pending for ever, whatever broke. The
//! other way round, an instance a node runs that the CLC has no live record of (its launch
//! was undone, or its record ended while its node was silent) is ended after a grace period
//! and logged: none runs unseen.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rpc::disk_layout::DiskLayout;
use rpc::RunOutcome;
use rpc::{
    ImageRef, InstanceReport, InstanceState, NicOrder, NodeStatus, RpcCode, RpcError, RunOrder,
    StateReason, VmSpec,
};
use serde::{Deserialize, Serialize};

use crate::ec2::{
    apply_filters, blocking, is_resource_id, new_id, timestamp_now, Call, Cloud, Clusters, Request,
};
use crate::images::{self, ImageKind, ImageRecord};
use crate::networks;
use crate::query::Xml;
use crate::state::{Batch, Record};
use crate::{groups, keypairs, properties, tags, QueryError, Resource};

/// The most user data RunInstances takes (EC2's limit, after base64 decoding).
pub const MAX_USER_DATA: usize = 16 * 1024;

/// How long a terminated instance stays listed, as in EC2.
const TERMINATED_KEPT_MS: u64 = 3600 * 1000;

/// How long a running instance may be missing from every node's reports before it is
/// declared lost (a node restart takes seconds; a dead node never answers again).
const LOST_AFTER_MS: u64 = 120 * 1000;

/// Extra time, beyond the start timeout, a pending instance no node reports is waited for.
const PENDING_GRACE_MS: u64 = 15 * 1000;

/// How long a node may run an instance the CLC has no live record of (an unknown id, or a
/// record already terminated) before the CLC ends it. The reports the sync reads can be a
/// poll period older than the records it compares them with: an instance just terminated, or
/// a launch just undone, may still show as running for a few seconds. One still running a
/// minute later is one no user knows of, which would otherwise run for ever and take room.
const ORPHAN_GRACE_MS: u64 = 60 * 1000;

/// An instance a node runs that the CLC has no live record of: where, and since when it has
/// been seen so (kept in the state so that a CLC restart does not reset its grace).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct OrphanRecord {
    /// The instance id.
    id: String,
    /// The zone whose cluster reported it.
    zone: String,
    /// The node running it.
    node: String,
    /// When it was first seen without a live record, ms since the epoch.
    first_seen_ms: u64,
}

impl records::Versioned for OrphanRecord {
    const ENVELOPE: records::Envelope = crate::state::ENVELOPE;
    const VERSION: u32 = 1;
}

impl Record for OrphanRecord {
    const TABLE: &'static str = "orphan/";
}

/// What a sync round does about orphans.
#[derive(Debug, Default, PartialEq, Eq)]
struct OrphanPlan {
    /// Seen for the first time: to record.
    found: Vec<OrphanRecord>,
    /// Past their grace: to end.
    due: Vec<OrphanRecord>,
    /// No longer orphans (ended, recorded after all, or not reported by a cluster that
    /// answered): to forget.
    gone: Vec<String>,
}

/// Compares the live reports of this round (`(zone, report)`, from the clusters that
/// answered; `silent` lists the zones that did not) with the ids the CLC has a live record of
/// and the orphans known from earlier rounds.
fn plan_orphans(
    live: &BTreeSet<String>,
    reports: &[(String, InstanceReport)],
    silent: &[String],
    known: &[OrphanRecord],
    now: u64,
) -> OrphanPlan {
    let running: BTreeMap<&str, (&str, &InstanceReport)> = reports
        .iter()
        .filter(|(_, r)| matches!(r.state, InstanceState::Pending | InstanceState::Running))
        .filter(|(_, r)| !live.contains(&r.instance_id))
        .map(|(zone, r)| (r.instance_id.as_str(), (zone.as_str(), r)))
        .collect();
    let mut plan = OrphanPlan::default();
    for orphan in known {
        if running.contains_key(orphan.id.as_str()) {
            if now.saturating_sub(orphan.first_seen_ms) >= ORPHAN_GRACE_MS {
                plan.due.push(orphan.clone());
            }
        } else if !silent.contains(&orphan.zone) {
            plan.gone.push(orphan.id.clone());
        }
    }
    for (id, (zone, report)) in running {
        if !known.iter().any(|o| o.id == id) {
            plan.found.push(OrphanRecord {
                id: id.to_owned(),
                zone: zone.to_owned(),
                node: report.node.clone(),
                first_seen_ms: now,
            });
        }
    }
    plan
}

/// An instance as the CLC records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// `i-` id.
    pub id: String,
    /// `r-` id of the RunInstances call that made it.
    pub reservation_id: String,
    /// Owning account.
    pub owner: String,
    /// The machine image.
    pub image_id: String,
    /// The kernel booted.
    pub kernel_id: String,
    /// The ramdisk, if any.
    pub ramdisk_id: Option<String>,
    /// The VM type.
    pub instance_type: String,
    /// The key pair's name.
    pub key_name: Option<String>,
    /// Its security groups, `(id, name)`.
    pub groups: Vec<(String, String)>,
    /// The availability zone.
    pub zone: String,
    /// Its index in the reservation.
    pub launch_index: u32,
    /// When it was launched (EC2 timestamp).
    pub launch_time: String,
    /// The same, in milliseconds since the epoch.
    pub launched_ms: u64,
    /// Its state.
    pub state: InstanceState,
    /// Why it ended (or is ending).
    pub state_reason: Option<StateReason>,
    /// The node it runs on.
    pub node: Option<String>,
    /// The caller's idempotency token.
    pub client_token: Option<String>,
    /// The start timeout it was given, seconds.
    pub start_timeout_secs: u64,
    /// When it became terminated, ms since the epoch.
    pub ended_ms: Option<u64>,
    /// Since when no node has reported it, ms since the epoch.
    #[serde(default)]
    pub missing_since_ms: Option<u64>,
    /// Its NIC, when the CLC plans addresses (the MANAGED modes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nic: Option<crate::networks::Nic>,
    /// The key pair's OpenSSH public key as it was at launch: the metadata service hands
    /// it to the instance even after the key pair is deleted or replaced, as EC2 does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key: Option<String>,
    /// The user data given at launch, base64 (at most [`MAX_USER_DATA`] bytes decoded),
    /// which the metadata service hands to the instance; none when it was given none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<String>,
}

impl records::Versioned for InstanceRecord {
    const ENVELOPE: records::Envelope = crate::state::ENVELOPE;
    const VERSION: u32 = 1;
}

impl Record for InstanceRecord {
    const TABLE: &'static str = "instance/";
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The owner of an instance id, if it exists and is not terminated (addresses and tags ask).
pub fn owner_of(cloud: &Cloud, id: &str) -> Result<Option<String>, QueryError> {
    Ok(cloud
        .state
        .get::<InstanceRecord>(id)?
        .filter(|i| i.state != InstanceState::Terminated)
        .map(|i| i.owner))
}

/// An instance not yet terminated that was launched in security group `group_id`.
pub(crate) fn in_group(cloud: &Cloud, group_id: &str) -> Result<Option<String>, QueryError> {
    Ok(all(cloud)?
        .into_iter()
        .find(|i| {
            i.state != InstanceState::Terminated && i.groups.iter().any(|(g, _)| g == group_id)
        })
        .map(|i| i.id))
}

fn all(cloud: &Cloud) -> Result<Vec<InstanceRecord>, QueryError> {
    Ok(cloud
        .state
        .scan::<InstanceRecord>("")?
        .into_iter()
        .map(|(_, i)| i)
        .collect())
}

/// The ids of the instances of `account` that are not terminated: an account is deleted
/// only once it runs none.
pub(crate) fn live_of(cloud: &Cloud, account: &str) -> Result<Vec<String>, QueryError> {
    Ok(all(cloud)?
        .into_iter()
        .filter(|i| i.owner == account && i.state != InstanceState::Terminated)
        .map(|i| i.id)
        .collect())
}

/// Every account's instances, for a cloud administrator: what Eucalyptus' `DescribeInstances`
/// with `verbose` (euca-describe-instances verbose) shows, and the console's dashboard.
pub fn everyones(
    cloud: &Cloud,
    caller: &identity::Principal,
) -> Result<Vec<InstanceRecord>, QueryError> {
    if !caller.is_cloud_admin() {
        return Err(QueryError::AccessDenied(
            "DescribeInstances verbose".to_owned(),
        ));
    }
    all(cloud)
}

/// How many instances of `vm` the answering nodes can start now.
fn free_slots(nodes: &[NodeStatus], vm: &VmSpec) -> u64 {
    nodes
        .iter()
        .filter(|n| n.error.is_none())
        .filter_map(|n| n.resources.as_ref())
        .map(|r| r.free_slots(vm))
        .sum()
}

/// The zone whose cluster can start the most instances of `vm` now (the first by name on a
/// tie), with its nodes, when a RunInstances names none; zones whose CC does not answer are
/// passed over (the first zone is taken, to fail as unavailable, when none answers).
async fn roomiest_zone(
    cloud: &Cloud,
    vm: &VmSpec,
) -> Result<(String, Vec<NodeStatus>), QueryError> {
    let mut best: Option<(u64, String, Vec<NodeStatus>)> = None;
    let mut first = None;
    for (zone, _, cluster) in cloud.clusters.all() {
        first.get_or_insert_with(|| zone.clone());
        let Ok(nodes) = cluster.nodes().await else {
            continue;
        };
        let free = free_slots(&nodes, vm);
        if best.as_ref().is_none_or(|(most, _, _)| free > *most) {
            best = Some((free, zone, nodes));
        }
    }
    if let Some((_, zone, nodes)) = best {
        return Ok((zone, nodes));
    }
    let zone = first.ok_or_else(|| {
        QueryError::InsufficientCapacity("No cluster is registered with this cloud.".into())
    })?;
    let nodes = cloud.clusters.nodes(&zone).await?;
    Ok((zone, nodes))
}

/// The cluster of an instance's zone; `NotFound`, as from a node that does not have it, when
/// the zone has no cluster (DeregisterCluster refuses while a zone has live instances, so
/// only renaming the configured zone leaves records without one).
fn cluster_of(cloud: &Cloud, record: &InstanceRecord) -> Result<Arc<dyn Clusters>, RpcError> {
    cloud.clusters.of(&record.zone).map_err(|_| {
        RpcError::new(
            RpcCode::NotFound,
            format!("no cluster serves {} any more", record.zone),
        )
    })
}

/// How many instances of `zone` are not terminated (a cluster with some stays registered).
pub fn live_in_zone(cloud: &Cloud, zone: &str) -> Result<usize, QueryError> {
    Ok(all(cloud)?
        .iter()
        .filter(|r| r.zone == zone && r.state != InstanceState::Terminated)
        .count())
}

fn rpc_error(e: RpcError) -> QueryError {
    match e.code {
        RpcCode::InsufficientInstanceCapacity => QueryError::InsufficientCapacity(e.message),
        RpcCode::Unavailable => QueryError::Unavailable(format!(
            "The cluster controller cannot be reached: {}",
            e.message
        )),
        RpcCode::NoAnswer => QueryError::Unavailable(format!(
            "The cluster controller did not answer: {}",
            e.message
        )),
        _ => QueryError::internal(e),
    }
}

/// The instances `account` launched with ClientToken `token`, in launch order, if any: a
/// RunInstances with the same token answers with them instead of launching again.
fn launched_with(
    cloud: &Cloud,
    account: &str,
    token: Option<&str>,
) -> Result<Option<Vec<InstanceRecord>>, QueryError> {
    let Some(token) = token else {
        return Ok(None);
    };
    let mut earlier: Vec<InstanceRecord> = all(cloud)?
        .into_iter()
        .filter(|i| i.owner == account && i.client_token.as_deref() == Some(token))
        .collect();
    earlier.sort_by_key(|i| i.launch_index);
    Ok((!earlier.is_empty()).then_some(earlier))
}

/// An image for a launch: visible to the caller and of the kind wanted.
fn launch_image(call: &Call<'_>, id: &str, kind: ImageKind) -> Result<ImageRecord, QueryError> {
    let image = images::visible(call, id)?;
    if image.kind != kind {
        return Err(QueryError::Validation(format!(
            "{id} is a {} image, not a {} image",
            image.kind.as_str(),
            kind.as_str()
        )));
    }
    Ok(image)
}

fn image_ref(image: &ImageRecord) -> ImageRef {
    ImageRef {
        id: image.id.clone(),
        manifest: image.location.clone(),
        manifest_sha256: image.manifest_sha256.clone(),
        sha256: image.plain_sha256.clone(),
        size: image.plain_sha256.as_ref().map(|_| image.image_size),
    }
}

/// What a RunInstances asks for, checked: everything but where it goes.
struct LaunchPlan {
    client_token: Option<String>,
    image: ImageRecord,
    kernel: ImageRecord,
    ramdisk: Option<ImageRecord>,
    key: Option<(String, String)>,
    vm: VmSpec,
    /// The user data, raw.
    user_data: Vec<u8>,
    groups: Vec<(String, String)>,
    min: i64,
    max: i64,
    asked_zone: Option<String>,
    start_timeout_secs: u64,
    /// Whether the instances get public addresses (`AddressingType` public, the default)
    /// in the modes that give them.
    public_addressing: bool,
}

/// A step of RunInstances: the answer already (a retry with a ClientToken answered with
/// the first launch's instances), or what the next step works with.
enum Step<T> {
    Answered(String),
    Next(T),
}

/// `RunInstances`, in four steps: check the request (blocking: the records), find the zone
/// and its room (waiting for the CC), record the instances (blocking), send the orders
/// (waiting for the CC), then record where each went (blocking). No thread is held while a
/// cluster controller is waited for.
pub async fn run(req: &Arc<Request>) -> Result<String, QueryError> {
    let plan = match blocking(req, plan_launch).await? {
        Step::Answered(xml) => return Ok(xml),
        Step::Next(plan) => Arc::new(plan),
    };
    let cloud = &req.cloud;
    let (zone, nodes) = match &plan.asked_zone {
        Some(asked) => (asked.clone(), cloud.clusters.nodes(asked).await?),
        None => roomiest_zone(cloud, &plan.vm).await?,
    };
    let cluster = cloud.clusters.of(&zone)?;
    let free = free_slots(&nodes, &plan.vm);
    let p = plan.clone();
    let records = match blocking(req, move |call| record_launch(call, &p, &zone, free)).await? {
        Step::Answered(xml) => return Ok(xml),
        Step::Next(records) => records,
    };
    let account = req.caller.account_id.clone();
    let reservation_id = records[0].reservation_id.clone();
    let orders = orders_for(&plan, &records, cloud.settings.network.as_ref());
    let outcome = match cluster.run(&orders).await {
        Ok(outcome) => outcome,
        Err(e) if e.is_unanswered() => {
            // The CC took the orders and its answer was lost: it may be starting them. The
            // records stay pending and the caller is told of them; `sync` settles them (a
            // node's report moves them on, none by their start timeout ends them).
            tracing::warn!(account, reservation = %reservation_id, "the cluster controller did not answer a run; its instances stay pending until a node reports them: {e}");
            return blocking(req, move |call| Ok(reservation_xml(call, &records))).await;
        }
        Err(e) => {
            // The CC answered no, or the orders never left: nothing was started, the records
            // go as if the call never happened.
            blocking(req, move |call| forget_launch(call.cloud, &records)).await?;
            return Err(rpc_error(e));
        }
    };
    for p in &outcome.unconfirmed {
        // Its node took the order and never said so: it stays pending until the node reports
        // it, or its start timeout passes (see `sync`).
        tracing::warn!(instance = %p.instance_id, node = %p.node, "the node did not confirm the start of an instance");
    }
    let placed = outcome.placed.len() + outcome.unconfirmed.len();
    if placed < plan.min as usize {
        // Fewer than MinCount started: none is kept, as EC2 does. One whose end fails here
        // (or that starts later) has no record any more: `sync` ends it.
        for p in outcome.placed.iter().chain(&outcome.unconfirmed) {
            if let Err(e) = cluster.terminate(&p.instance_id).await {
                tracing::warn!(instance = %p.instance_id, "cannot undo a partial launch: {e}");
            }
        }
        blocking(req, move |call| forget_launch(call.cloud, &records)).await?;
        let why = outcome
            .failed
            .first()
            .map(|(_, e)| e.message.clone())
            .unwrap_or_default();
        return Err(QueryError::InsufficientCapacity(format!(
            "Only {placed} of the {} {} instance(s) asked for could start: {why}",
            plan.min, plan.vm.name
        )));
    }
    blocking(req, move |call| settle_launch(call, records, &outcome)).await
}

/// RunInstances' first step: the request checked against the records (images, key pair,
/// groups, quotas), or the answer of the launch its ClientToken names.
fn plan_launch(call: &Call<'_>) -> Result<Step<LaunchPlan>, QueryError> {
    let params = call.params;
    let account = call.account();
    let cloud = call.cloud;
    let client_token = params.get("ClientToken").filter(|t| !t.is_empty());
    if let Some(token) = client_token {
        if token.len() > 64 {
            return Err(QueryError::Validation(
                "ClientToken is at most 64 characters".into(),
            ));
        }
        if let Some(earlier) = launched_with(cloud, account, client_token)? {
            return Ok(Step::Answered(reservation_xml(call, &earlier)));
        }
    }
    let image_id = params.required("ImageId")?;
    let image = launch_image(call, image_id, ImageKind::Machine)?;
    let count = |name: &str| -> Result<i64, QueryError> { Ok(params.integer(name)?.unwrap_or(1)) };
    let (min, max) = (count("MinCount")?, count("MaxCount")?);
    if min < 1 || max < min || max > 1000 {
        return Err(QueryError::Validation(format!(
            "MinCount ({min}) and MaxCount ({max}) must be at least 1, with MinCount <= MaxCount <= 1000"
        )));
    }
    let max = crate::quotas::instance_room(call, min, max)?;
    let type_name = params
        .get("InstanceType")
        .filter(|t| !t.is_empty())
        .unwrap_or("m1.small");
    let vm_type = properties::vm_types(cloud)?
        .into_iter()
        .find(|t| t.name == type_name)
        .ok_or_else(|| {
            QueryError::Validation(format!("Invalid value '{type_name}' for InstanceType."))
        })?;
    let (kernel, ramdisk) = boot_images(call, &image)?;
    let key = match params.get("KeyName").filter(|k| !k.is_empty()) {
        Some(name) => Some((name.to_owned(), keypairs::public_key(call, name)?)),
        None => None,
    };
    let asked_zone = params
        .get("Placement.AvailabilityZone")
        .filter(|z| !z.is_empty());
    if let Some(asked) = asked_zone {
        if cloud.clusters.of(asked).is_err() {
            return Err(QueryError::Validation(format!(
                "Invalid availability zone: [{asked}]"
            )));
        }
    }
    let user_data = user_data(params.get("UserData"))?;
    let groups = groups::for_launch(call)?;
    let vm = VmSpec {
        name: vm_type.name.clone(),
        cpus: vm_type.cpus,
        memory_mib: vm_type.memory_mib.into(),
        disk_gib: vm_type.disk_gib.into(),
    };
    check_fits(&image.id, image.image_size, &vm)?;
    let public_addressing = match params.get("AddressingType").unwrap_or("") {
        "" | "public" => true,
        "private" => false,
        other => {
            return Err(QueryError::Validation(format!(
                "Invalid value '{other}' for AddressingType: give public or private."
            )))
        }
    };
    Ok(Step::Next(LaunchPlan {
        client_token: client_token.map(str::to_owned),
        image,
        kernel,
        ramdisk,
        key,
        vm,
        user_data,
        groups,
        min,
        max,
        asked_zone: asked_zone.map(str::to_owned),
        start_timeout_secs: properties::start_timeout(cloud)?,
        public_addressing,
    }))
}

/// The kernel and ramdisk an instance of `image` boots: the request's, else the image's,
/// else the cloud's `cloud.images.default_kernel` and `default_ramdisk`; a machine image
/// needs a kernel.
fn boot_images(
    call: &Call<'_>,
    image: &ImageRecord,
) -> Result<(ImageRecord, Option<ImageRecord>), QueryError> {
    let kernel_id = match call.params.get("KernelId").filter(|k| !k.is_empty()) {
        Some(k) => k.to_owned(),
        None => match image.kernel_id.clone() {
            Some(k) => k,
            None => {
                let default = properties::value(call.cloud, properties::DEFAULT_KERNEL)?;
                if default.is_empty() {
                    return Err(QueryError::Validation(format!(
                        "{} has no kernel: give KernelId, or set {} (euca-modify-property)",
                        image.id,
                        properties::DEFAULT_KERNEL
                    )));
                }
                default
            }
        },
    };
    let kernel = launch_image(call, &kernel_id, ImageKind::Kernel)?;
    let ramdisk_id = match call.params.get("RamdiskId").filter(|r| !r.is_empty()) {
        Some(r) => Some(r.to_owned()),
        None => image.ramdisk_id.clone().or_else(|| {
            properties::value(call.cloud, properties::DEFAULT_RAMDISK)
                .ok()
                .filter(|r| !r.is_empty())
        }),
    };
    let ramdisk = ramdisk_id
        .as_deref()
        .map(|r| launch_image(call, r, ImageKind::Ramdisk))
        .transpose()?;
    Ok((kernel, ramdisk))
}

/// The user data of a launch, decoded from base64 (whitespace ignored, as EC2 does) and at
/// most [`MAX_USER_DATA`] bytes.
fn user_data(text: Option<&str>) -> Result<Vec<u8>, QueryError> {
    let user_data = match text {
        Some(text) => {
            let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
            STANDARD.decode(compact).map_err(|_| {
                QueryError::Validation("Invalid BASE64 encoding of user data".into())
            })?
        }
        None => Vec::new(),
    };
    if user_data.len() > MAX_USER_DATA {
        return Err(QueryError::Validation(format!(
            "User data is limited to {MAX_USER_DATA} bytes"
        )));
    }
    Ok(user_data)
}

/// RunInstances' third step: the instances recorded, pending, as many as `free` slots of
/// `zone` allow; or the answer of the launch a racing retry with the same ClientToken made.
fn record_launch(
    call: &Call<'_>,
    plan: &LaunchPlan,
    zone: &str,
    free: u64,
) -> Result<Step<Vec<InstanceRecord>>, QueryError> {
    let cloud = call.cloud;
    let account = call.account();
    let token = plan.client_token.as_deref();
    if free < plan.min as u64 {
        // A retry racing its first launch may find the room that launch took.
        if let Some(earlier) = launched_with(cloud, account, token)? {
            return Ok(Step::Answered(reservation_xml(call, &earlier)));
        }
        return Err(QueryError::InsufficientCapacity(format!(
            "There is not enough capacity for {} {} instance(s) in {zone}: {free} can start now.",
            plan.min, plan.vm.name
        )));
    }
    let mut launching = (plan.max as u64).min(free) as u32;
    let reservation_id = new_id("r");
    let launch_time = timestamp_now();
    let launched_ms = now_ms();
    let mut records = Vec::new();
    let user_data = (!plan.user_data.is_empty()).then(|| STANDARD.encode(&plan.user_data));
    let guard = cloud.state.exclusive();
    // A retry with the same token may have launched since the first check: checked again
    // under the guard the records are written under, so that only one launch wins.
    if let Some(earlier) = launched_with(cloud, account, token)? {
        drop(guard);
        return Ok(Step::Answered(reservation_xml(call, &earlier)));
    }
    // The zone may have been deregistered since it was chosen.
    cloud.clusters.of(zone)?;
    let mut batch = Batch::new();
    let planned = match (&cloud.settings.network, plan.groups.first()) {
        (Some(layout), Some((group_id, _))) if layout.mode().is_managed() => Some(enough(
            networks::plan(
                cloud,
                layout,
                &mut batch,
                group_id,
                launching,
                plan.public_addressing,
            )?,
            plan.min,
            &format!("Security group {group_id}'s network"),
            "addresses",
        )?),
        (Some(layout), _) if layout.mode() == network::Mode::System => {
            Some((0..launching).map(|_| networks::Nic::unplanned()).collect())
        }
        (Some(layout), _) if layout.mode() == network::Mode::Static => Some(enough(
            networks::plan_static(cloud, layout, launching)?,
            plan.min,
            "The static network's table ([network] hosts)",
            "entries",
        )?),
        _ => None,
    };
    if let Some(planned) = &planned {
        launching = planned.len() as u32;
    }
    let mut nics = planned.unwrap_or_default().into_iter();
    for launch_index in 0..launching {
        let id = loop {
            let id = new_id("i");
            if cloud.state.get::<InstanceRecord>(&id)?.is_none()
                && !records.iter().any(|r: &InstanceRecord| r.id == id)
            {
                break id;
            }
        };
        let record = InstanceRecord {
            id,
            reservation_id: reservation_id.clone(),
            owner: account.to_owned(),
            image_id: plan.image.id.clone(),
            kernel_id: plan.kernel.id.clone(),
            ramdisk_id: plan.ramdisk.as_ref().map(|r| r.id.clone()),
            instance_type: plan.vm.name.clone(),
            key_name: plan.key.as_ref().map(|(n, _)| n.clone()),
            groups: plan.groups.clone(),
            zone: zone.to_owned(),
            launch_index,
            launch_time: launch_time.clone(),
            launched_ms,
            state: InstanceState::Pending,
            state_reason: None,
            node: None,
            client_token: plan.client_token.clone(),
            start_timeout_secs: plan.start_timeout_secs,
            ended_ms: None,
            missing_since_ms: None,
            nic: nics.next(),
            public_key: plan.key.as_ref().map(|(_, key)| key.clone()),
            user_data: user_data.clone(),
        };
        batch.put(&record.id, &record);
        records.push(record);
    }
    cloud.state.commit(batch)?;
    Ok(Step::Next(records))
}

/// The NICs planned for a launch, one per instance that will start: fewer than `min`
/// refuses the launch, saying what (`source`) had too few free `noun`.
fn enough(
    nics: Vec<networks::Nic>,
    min: i64,
    source: &str,
    noun: &str,
) -> Result<Vec<networks::Nic>, QueryError> {
    if nics.len() < min as usize {
        return Err(QueryError::InsufficientAddressCapacity(format!(
            "{source} has {} free {noun}; {min} instance(s) were asked for.",
            nics.len()
        )));
    }
    Ok(nics)
}

/// The run orders of the recorded instances.
fn orders_for(
    plan: &LaunchPlan,
    records: &[InstanceRecord],
    layout: Option<&network::Layout>,
) -> Vec<RunOrder> {
    let user_data = STANDARD.encode(&plan.user_data);
    records
        .iter()
        .map(|r| RunOrder {
            instance_id: r.id.clone(),
            reservation_id: r.reservation_id.clone(),
            owner: r.owner.clone(),
            image: image_ref(&plan.image),
            kernel: image_ref(&plan.kernel),
            ramdisk: plan.ramdisk.as_ref().map(image_ref),
            vm: plan.vm.clone(),
            key: plan.key.clone(),
            user_data: user_data.clone(),
            start_timeout_secs: plan.start_timeout_secs,
            nic: r.nic.as_ref().map(|n| NicOrder {
                mac: networks::mac_of(layout, &r.id, n),
                private_ip: n.private_ip,
                network: n.network,
                vlan: layout
                    .and_then(|l| l.network(n.network))
                    .and_then(|g| g.vlan),
            }),
        })
        .collect()
}

/// Deletes the records of a launch that started nothing (or fewer than MinCount).
fn forget_launch(cloud: &Cloud, records: &[InstanceRecord]) -> Result<(), QueryError> {
    let mut batch = Batch::new();
    for r in records {
        batch.delete::<InstanceRecord>(&r.id);
    }
    cloud.state.commit(batch)?;
    Ok(())
}

/// RunInstances' last step: each instance's node recorded, those no node took ended with
/// why; the reservation's answer.
fn settle_launch(
    call: &Call<'_>,
    mut records: Vec<InstanceRecord>,
    outcome: &RunOutcome,
) -> Result<String, QueryError> {
    let cloud = call.cloud;
    // Where each instance went, or may have gone.
    let placed: BTreeMap<&str, &str> = outcome
        .placed
        .iter()
        .chain(&outcome.unconfirmed)
        .map(|p| (p.instance_id.as_str(), p.node.as_str()))
        .collect();
    {
        let _guard = cloud.state.exclusive();
        let mut batch = Batch::new();
        for record in &mut records {
            // Re-read: the sync, or a TerminateInstances of an id DescribeInstances showed,
            // may have moved it meanwhile.
            if let Some(current) = cloud.state.get::<InstanceRecord>(&record.id)? {
                *record = current;
            }
            match placed.get(record.id.as_str()) {
                Some(node) => {
                    record.node.get_or_insert_with(|| (*node).to_owned());
                }
                None => {
                    let why = outcome
                        .failed
                        .iter()
                        .find(|(id, _)| *id == record.id)
                        .map(|(_, e)| e.message.clone())
                        .unwrap_or_else(|| "no node took it".into());
                    end(record, StateReason::server_error(why));
                }
            }
            batch.put(&record.id, record);
        }
        cloud.state.commit(batch)?;
    }
    tracing::info!(account = call.account(), reservation = %records[0].reservation_id, count = records.len(), "launched instances");
    Ok(reservation_xml(call, &records))
}

/// Refuses a machine image larger than the VM type's disk, which holds the root disk (the
/// image), the swap and the ephemeral disk (see [`rpc::disk_layout`]), as Eucalyptus did.
/// The size is the manifest's, which Walrus holds the unbundled bytes to: so the launch fails
/// here, at once, instead of on a node after the image was fetched.
fn check_fits(image_id: &str, image_bytes: u64, vm: &VmSpec) -> Result<(), QueryError> {
    DiskLayout::for_type(image_bytes, vm.disk_gib)
        .map(|_| ())
        .map_err(|e| {
            QueryError::InvalidParameterCombination(format!(
                "Image {image_id} does not fit instance type {}: {e}.",
                vm.name
            ))
        })
}

fn end(record: &mut InstanceRecord, reason: StateReason) {
    record.state = InstanceState::Terminated;
    record.state_reason.get_or_insert(reason);
    record.ended_ms.get_or_insert_with(now_ms);
}

/// The body of a RunInstances answer: one reservation.
fn reservation_xml(call: &Call<'_>, records: &[InstanceRecord]) -> String {
    let mut x = Xml::new();
    reservation_fields(call, &mut x, records);
    x.finish()
}

fn reservation_fields(call: &Call<'_>, x: &mut Xml, records: &[InstanceRecord]) {
    let first = &records[0];
    x.elem("reservationId", &first.reservation_id)
        .elem("ownerId", &first.owner);
    x.list("groupSet", &first.groups, |x, (id, name)| {
        x.elem("groupId", id).elem("groupName", name);
    });
    x.list("instancesSet", records, |x, r| instance_item(call, x, r));
}

fn instance_item(call: &Call<'_>, x: &mut Xml, r: &InstanceRecord) {
    x.elem("instanceId", &r.id).elem("imageId", &r.image_id);
    x.nest("instanceState", |x| {
        x.elem("code", &r.state.code().to_string())
            .elem("name", r.state.name());
    });
    // Koala serves no DNS for guests: the names are the addresses, as Eucalyptus showed
    // them without a DNS domain.
    let private_ip = r
        .nic
        .as_ref()
        .and_then(|n| n.address())
        .map(|ip| ip.to_string());
    let public_ip = r
        .nic
        .as_ref()
        .and_then(|n| n.public_ip)
        .map(|ip| ip.to_string());
    x.elem("privateDnsName", private_ip.as_deref().unwrap_or(""))
        .elem("dnsName", public_ip.as_deref().unwrap_or(""))
        .elem(
            "reason",
            r.state_reason
                .as_ref()
                .map(|s| s.message.as_str())
                .unwrap_or(""),
        )
        .opt("keyName", r.key_name.as_deref())
        .elem("amiLaunchIndex", &r.launch_index.to_string())
        .list("productCodes", Vec::<&str>::new(), |_, _| {})
        .elem("instanceType", &r.instance_type)
        .elem("launchTime", &r.launch_time);
    x.nest("placement", |x| {
        x.elem("availabilityZone", &r.zone)
            .elem("groupName", "")
            .elem("tenancy", "default");
    });
    x.elem("kernelId", &r.kernel_id)
        .opt("ramdiskId", r.ramdisk_id.as_deref())
        .opt("ipAddress", public_ip.as_deref())
        .opt("privateIpAddress", private_ip.as_deref());
    x.nest("monitoring", |x| {
        x.elem("state", "disabled");
    });
    x.list("groupSet", &r.groups, |x, (id, name)| {
        x.elem("groupId", id).elem("groupName", name);
    });
    if let Some(reason) = &r.state_reason {
        x.nest("stateReason", |x| {
            x.elem("code", &reason.code)
                .elem("message", &reason.message);
        });
    }
    x.elem("architecture", "x86_64")
        .elem("rootDeviceType", "instance-store")
        .list("blockDeviceMapping", Vec::<&str>::new(), |_, _| {})
        .elem("virtualizationType", "paravirtual")
        .opt("clientToken", r.client_token.as_deref());
    let tags = tags::tags_of(call, &r.id).unwrap_or_default();
    tags::tag_set(x, &tags);
    x.elem("hypervisor", "kvm")
        .list("networkInterfaceSet", Vec::<&str>::new(), |_, _| {})
        .elem("ebsOptimized", "false");
}

/// The caller's instances named by `InstanceId.N` (all when none); a malformed id or one not
/// the caller's is an error. Eucalyptus' `verbose` alone: every account's for a cloud
/// administrator ([`everyones`]), the caller's own for anyone else. Only the Describe
/// actions read instances through here.
fn named(call: &Call<'_>) -> Result<Vec<InstanceRecord>, QueryError> {
    let mut ids = call.params.list("InstanceId");
    if ids == ["verbose"] {
        if call.caller.is_cloud_admin() {
            return everyones(call.cloud, call.caller);
        }
        ids.clear();
    }
    if let Some(bad) = ids.iter().find(|id| !is_resource_id(id, "i")) {
        return Err(QueryError::Malformed(Resource::Instance, (*bad).to_owned()));
    }
    if ids.is_empty() {
        return Ok(all(call.cloud)?
            .into_iter()
            .filter(|i| i.owner == call.account())
            .collect());
    }
    let mut out: Vec<InstanceRecord> = Vec::new();
    for id in ids {
        match call.cloud.state.get::<InstanceRecord>(id)? {
            Some(i) if i.owner == call.account() => {
                if !out.iter().any(|o| o.id == i.id) {
                    out.push(i);
                }
            }
            _ => return Err(QueryError::NotFound(Resource::Instance, id.to_owned())),
        }
    }
    Ok(out)
}

/// `DescribeInstances`: the caller's instances, grouped by reservation, with filters.
pub fn describe(call: &Call<'_>) -> Result<String, QueryError> {
    let filters = call.params.filters()?;
    let instances = apply_filters(
        &filters,
        named(call)?,
        |i, name| {
            Some(match name {
                "instance-id" => vec![i.id.clone()],
                "instance-state-name" => vec![i.state.name().to_owned()],
                "instance-state-code" => vec![i.state.code().to_string()],
                "instance-type" => vec![i.instance_type.clone()],
                "image-id" => vec![i.image_id.clone()],
                "kernel-id" => vec![i.kernel_id.clone()],
                "ramdisk-id" => i.ramdisk_id.clone().into_iter().collect(),
                "key-name" => i.key_name.clone().into_iter().collect(),
                "availability-zone" => vec![i.zone.clone()],
                "reservation-id" => vec![i.reservation_id.clone()],
                "owner-id" => vec![i.owner.clone()],
                "launch-index" => vec![i.launch_index.to_string()],
                "group-id" | "instance.group-id" => i.groups.iter().map(|g| g.0.clone()).collect(),
                "group-name" | "instance.group-name" => {
                    i.groups.iter().map(|g| g.1.clone()).collect()
                }
                "state-reason-code" => i.state_reason.iter().map(|r| r.code.clone()).collect(),
                "root-device-type" => vec!["instance-store".to_owned()],
                "client-token" => i.client_token.clone().into_iter().collect(),
                "private-ip-address" | "network-interface.addresses.private-ip-address" => i
                    .nic
                    .iter()
                    .filter_map(|n| n.address())
                    .map(|ip| ip.to_string())
                    .collect(),
                "ip-address" => i
                    .nic
                    .iter()
                    .filter_map(|n| n.public_ip)
                    .map(|ip| ip.to_string())
                    .collect(),
                "private-dns-name" => i
                    .nic
                    .iter()
                    .filter_map(|n| n.address())
                    .map(|ip| ip.to_string())
                    .collect(),
                "dns-name" => i
                    .nic
                    .iter()
                    .filter_map(|n| n.public_ip)
                    .map(|ip| ip.to_string())
                    .collect(),
                _ => return None,
            })
        },
        |i| tags::tags_of(call, &i.id).unwrap_or_default(),
    )?;
    let mut reservations: BTreeMap<(String, String), Vec<InstanceRecord>> = BTreeMap::new();
    for i in instances {
        reservations
            .entry((i.launch_time.clone(), i.reservation_id.clone()))
            .or_default()
            .push(i);
    }
    let mut x = Xml::new();
    x.list("reservationSet", reservations.values_mut(), |x, members| {
        members.sort_by_key(|m| m.launch_index);
        reservation_fields(call, x, members);
    });
    Ok(x.finish())
}

/// `TerminateInstances`: ends the instances named; previous and current states.
pub async fn terminate(req: &Arc<Request>) -> Result<String, QueryError> {
    if req.params.list("InstanceId").is_empty() {
        return Err(QueryError::MissingParameter("InstanceId".into()));
    }
    let cloud = &req.cloud;
    let mut changes = Vec::new();
    for record in blocking(req, named).await? {
        let previous = record.state;
        let mut current = previous;
        if previous != InstanceState::Terminated {
            let answer = match cluster_of(cloud, &record) {
                Ok(cluster) => cluster.terminate(&record.id).await,
                Err(e) => Err(e),
            };
            let report = match answer {
                Ok(report) => Some(report),
                // No node has it (it never started, or its node is gone): nothing to stop.
                Err(e) if e.code == RpcCode::NotFound => None,
                Err(e) => return Err(rpc_error(e)),
            };
            let id = record.id.clone();
            current = blocking(req, move |call| user_ended(call.cloud, record, report)).await?;
            changes.push((id, previous, current));
            continue;
        }
        changes.push((record.id, previous, current));
    }
    let mut x = Xml::new();
    x.list("instancesSet", &changes, |x, (id, previous, current)| {
        x.elem("instanceId", id);
        x.nest("currentState", |x| {
            x.elem("code", &current.code().to_string())
                .elem("name", current.name());
        });
        x.nest("previousState", |x| {
            x.elem("code", &previous.code().to_string())
                .elem("name", previous.name());
        });
    });
    Ok(x.finish())
}

/// Records that the user ended `record`, as its node answered (`None`: no node has it);
/// its state now.
fn user_ended(
    cloud: &Cloud,
    mut record: InstanceRecord,
    report: Option<InstanceReport>,
) -> Result<InstanceState, QueryError> {
    let _guard = cloud.state.exclusive();
    // Re-read: the sync may have moved it meanwhile.
    if let Some(current) = cloud.state.get::<InstanceRecord>(&record.id)? {
        record = current;
    }
    match report {
        Some(r) if r.state != InstanceState::Terminated => {
            record.state = InstanceState::ShuttingDown;
            record
                .state_reason
                .get_or_insert(StateReason::user_shutdown());
        }
        _ => end(&mut record, StateReason::user_shutdown()),
    }
    let mut batch = Batch::new();
    if record.state == InstanceState::Terminated {
        crate::addresses::detach_ended(cloud, &mut batch, |id| id == record.id)?;
    }
    batch.put(&record.id, &record);
    cloud.state.commit(batch)?;
    tracing::info!(instance = %record.id, "terminated an instance");
    Ok(record.state)
}

/// `RebootInstances`: resets the running instances named.
pub async fn reboot(req: &Arc<Request>) -> Result<String, QueryError> {
    if req.params.list("InstanceId").is_empty() {
        return Err(QueryError::MissingParameter("InstanceId".into()));
    }
    let records = blocking(req, named).await?;
    if let Some(r) = records
        .iter()
        .find(|r| !matches!(r.state, InstanceState::Running | InstanceState::Pending))
    {
        return Err(QueryError::IncorrectInstanceState(format!(
            "The instance '{}' is not in a state from which it can be rebooted ({}).",
            r.id,
            r.state.name()
        )));
    }
    for r in records.iter().filter(|r| r.state == InstanceState::Running) {
        req.cloud
            .clusters
            .of(&r.zone)?
            .reboot(&r.id)
            .await
            .map_err(rpc_error)?;
        tracing::info!(instance = %r.id, "rebooted an instance");
    }
    Ok("<return>true</return>".to_owned())
}

/// `GetConsoleOutput`: the last 64 KiB of the instance's serial console, base64-encoded.
pub async fn console_output(req: &Arc<Request>) -> Result<String, QueryError> {
    let id = req.params.required("InstanceId")?.to_owned();
    if !is_resource_id(&id, "i") {
        return Err(QueryError::Malformed(Resource::Instance, id));
    }
    let record = blocking(req, move |call| {
        match call.cloud.state.get::<InstanceRecord>(&id)? {
            Some(r) if r.owner == call.account() => Ok(r),
            _ => Err(QueryError::NotFound(Resource::Instance, id)),
        }
    })
    .await?;
    let console = match cluster_of(&req.cloud, &record) {
        Ok(cluster) => cluster.console(&record.id).await,
        Err(e) => Err(e),
    };
    let (output, timestamp) = match console {
        Ok(c) => (c.output, c.timestamp),
        Err(e) if e.code == RpcCode::NotFound => (String::new(), now_ms() / 1000),
        Err(e) => return Err(rpc_error(e)),
    };
    let timestamp = time::OffsetDateTime::from_unix_timestamp(timestamp as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(timestamp_now);
    let mut x = Xml::new();
    x.elem("instanceId", &record.id)
        .elem("timestamp", &timestamp)
        .elem("output", &output);
    Ok(x.finish())
}

/// `DescribeInstanceStatus`: running instances (all with `IncludeAllInstances=true`) with
/// their status checks.
pub fn describe_status(call: &Call<'_>) -> Result<String, QueryError> {
    let include_all = call.params.boolean("IncludeAllInstances")?.unwrap_or(false);
    let records: Vec<InstanceRecord> = named(call)?
        .into_iter()
        .filter(|r| include_all || r.state == InstanceState::Running)
        .collect();
    let records = apply_filters(
        &call.params.filters()?,
        records,
        |r, name| {
            Some(match name {
                "availability-zone" => vec![r.zone.clone()],
                "instance-state-name" => vec![r.state.name().to_owned()],
                "instance-state-code" => vec![r.state.code().to_string()],
                _ => return None,
            })
        },
        |_| Vec::new(),
    )?;
    let mut x = Xml::new();
    x.list("instanceStatusSet", &records, |x, r| {
        x.elem("instanceId", &r.id)
            .elem("availabilityZone", &r.zone);
        x.nest("instanceState", |x| {
            x.elem("code", &r.state.code().to_string())
                .elem("name", r.state.name());
        });
        let status = match r.state {
            InstanceState::Running => "ok",
            InstanceState::Pending => "initializing",
            _ => "not-applicable",
        };
        for check in ["systemStatus", "instanceStatus"] {
            x.nest(check, |x| {
                x.elem("status", status);
                x.list("details", [status], |x, s| {
                    x.elem("name", "reachability")
                        .elem("status", if s == "ok" { "passed" } else { "initializing" });
                });
            });
        }
    });
    Ok(x.finish())
}

/// Brings the records in step with what the nodes report: states and reasons, the images'
/// hashes; ends instances no node admits to, and instances nodes run without a live record;
/// forgets terminated ones after an hour. The clusters are waited for on the runtime, the
/// records moved on the blocking pool.
pub async fn sync(cloud: &Cloud) -> Result<(), QueryError> {
    // Read before the records: RunInstances writes its records before it sends the orders,
    // so every instance reported here already has its record below.
    let mut reports: Vec<(String, InstanceReport)> = Vec::new();
    // Records of a zone whose CC does not answer are left as they are until it does.
    let mut silent = Vec::new();
    for (zone, _, cluster) in cloud.clusters.all() {
        match cluster.instances().await {
            Ok(found) => reports.extend(found.into_iter().map(|r| (zone.clone(), r))),
            Err(e) => {
                tracing::warn!(zone = %zone, "cannot ask the cluster for its instances: {e}");
                silent.push(zone);
            }
        }
    }
    let moved = cloud.clone();
    let (due, hashes) =
        tokio::task::spawn_blocking(move || apply_reports(&moved, &reports, &silent))
            .await
            .map_err(|e| QueryError::failed("the instance sync failed", e))??;
    for orphan in due {
        tracing::warn!(instance = %orphan.id, node = %orphan.node, zone = %orphan.zone, "ending an instance the cloud has no live record of");
        let ended = match cloud.clusters.of(&orphan.zone) {
            Ok(cluster) => cluster.terminate(&orphan.id).await,
            Err(e) => Err(RpcError::new(RpcCode::NotFound, e.to_string())),
        };
        if let Err(e) = ended {
            // Tried again at the next round while the node still reports it.
            tracing::warn!(instance = %orphan.id, node = %orphan.node, "cannot end an instance the cloud has no live record of: {e}");
        }
    }
    let cloud = cloud.clone();
    tokio::task::spawn_blocking(move || {
        for (image, sha) in hashes {
            images::record_plain_sha256(&cloud, &image, &sha)?;
        }
        Ok(())
    })
    .await
    .map_err(|e| QueryError::failed("the instance sync failed", e))?
}

/// The orphans due to be ended, and the images' hashes the nodes reported.
type Applied = (Vec<OrphanRecord>, BTreeMap<String, String>);

/// The records moved as the nodes' `reports` say (the zones in `silent` left as they are).
fn apply_reports(
    cloud: &Cloud,
    reports: &[(String, InstanceReport)],
    silent: &[String],
) -> Result<Applied, QueryError> {
    let by_id: BTreeMap<&str, &InstanceReport> = reports
        .iter()
        .map(|(_, r)| (r.instance_id.as_str(), r))
        .collect();
    let now = now_ms();
    let system = cloud
        .settings
        .network
        .as_ref()
        .is_some_and(|l| l.mode() == network::Mode::System);
    let _guard = cloud.state.exclusive();
    let mut batch = Batch::new();
    let mut changed = false;
    let mut hashes: BTreeMap<String, String> = BTreeMap::new();
    // The ids with a record not terminated, once this round has moved them.
    let mut live = BTreeSet::new();
    for mut record in all(cloud)? {
        if record.state == InstanceState::Terminated {
            if record
                .ended_ms
                .is_some_and(|t| now.saturating_sub(t) > TERMINATED_KEPT_MS)
            {
                batch.delete::<InstanceRecord>(&record.id);
                tags::delete_all(cloud, &mut batch, &record.id)?;
                changed = true;
            }
            continue;
        }
        if silent.contains(&record.zone) {
            live.insert(record.id.clone());
            continue;
        }
        let before = (
            record.state,
            record.state_reason.clone(),
            record.node.clone(),
            record.missing_since_ms,
            record.nic.clone(),
        );
        match by_id.get(record.id.as_str()) {
            Some(report) => {
                record.missing_since_ms = None;
                // SYSTEM: the address the node saw the guest use. In the other modes the
                // address is the CLC's plan, whatever a node says.
                if let (true, Some(ip), Some(nic)) =
                    (system, report.private_ip, record.nic.as_mut())
                {
                    nic.private_ip = ip;
                }
                record.node = Some(report.node.clone());
                for image in &report.images {
                    if let Some(sha) = &image.sha256 {
                        hashes.insert(image.id.clone(), sha.clone());
                    }
                }
                match report.state {
                    InstanceState::Terminated => end(
                        &mut record,
                        report
                            .reason
                            .clone()
                            .unwrap_or_else(StateReason::guest_shutdown),
                    ),
                    state => {
                        record.state = state;
                        if let Some(reason) = &report.reason {
                            record.state_reason = Some(reason.clone());
                        }
                    }
                }
            }
            None => {
                let missing_since = *record.missing_since_ms.get_or_insert(now);
                let deadline =
                    record.launched_ms + record.start_timeout_secs * 1000 + PENDING_GRACE_MS;
                let timeout = record.start_timeout_secs;
                let node = record.node.clone().unwrap_or_else(|| "unknown".into());
                match record.state {
                    InstanceState::Pending if now > deadline => end(
                        &mut record,
                        StateReason::server_error(format!(
                            "no node reported the instance within {timeout} s of its launch"
                        )),
                    ),
                    InstanceState::ShuttingDown => end(&mut record, StateReason::user_shutdown()),
                    InstanceState::Running if now.saturating_sub(missing_since) > LOST_AFTER_MS => {
                        end(
                            &mut record,
                            StateReason::server_error(format!(
                                "the instance's node ({node}) stopped reporting it"
                            )),
                        )
                    }
                    _ => {}
                }
            }
        }
        let after = (
            record.state,
            record.state_reason.clone(),
            record.node.clone(),
            record.missing_since_ms,
            record.nic.clone(),
        );
        if before != after {
            batch.put(&record.id, &record);
            changed = true;
        }
        if record.state != InstanceState::Terminated {
            live.insert(record.id.clone());
        }
    }
    let known: Vec<OrphanRecord> = cloud
        .state
        .scan::<OrphanRecord>("")?
        .into_iter()
        .map(|(_, o)| o)
        .collect();
    changed |= crate::addresses::detach_ended(cloud, &mut batch, |id| !live.contains(id))?;
    let orphans = plan_orphans(&live, reports, silent, &known, now);
    for orphan in &orphans.found {
        tracing::warn!(instance = %orphan.id, node = %orphan.node, zone = %orphan.zone, "a node runs an instance the cloud has no live record of; it is ended in {} s unless one appears", ORPHAN_GRACE_MS / 1000);
        batch.put(&orphan.id, orphan);
        changed = true;
    }
    for id in &orphans.gone {
        batch.delete::<OrphanRecord>(id);
        changed = true;
    }
    if changed {
        cloud.state.commit(batch)?;
    }
    Ok((orphans.due, hashes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_larger_than_the_types_disk_is_refused() {
        let small = VmSpec {
            name: "m1.small".into(),
            cpus: 1,
            memory_mib: 256,
            disk_gib: 5,
        };
        assert!(check_fits("emi-12345678", 64 << 20, &small).is_ok());
        assert!(check_fits("emi-12345678", 5 << 30, &small).is_ok());
        match check_fits("emi-12345678", (5 << 30) + 1, &small) {
            Err(QueryError::InvalidParameterCombination(message)) => assert_eq!(
                message,
                "Image emi-12345678 does not fit instance type m1.small: the image (5121 MiB) \
                 is larger than the disk of the VM type (5120 MiB)."
            ),
            other => panic!("expected InvalidParameterCombination, got {other:?}"),
        }
    }

    fn report(id: &str, state: InstanceState) -> (String, InstanceReport) {
        (
            "zone-a".to_owned(),
            InstanceReport {
                instance_id: id.into(),
                state,
                reason: None,
                node: "node-1".into(),
                images: Vec::new(),
                private_ip: None,
            },
        )
    }

    fn live(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|id| (*id).to_owned()).collect()
    }

    #[test]
    fn an_instance_without_a_live_record_is_ended_after_the_grace() {
        let t0 = 1_000_000;
        let reports = [report("i-00000001", InstanceState::Running)];
        let first = plan_orphans(&live(&[]), &reports, &[], &[], t0);
        let orphan = OrphanRecord {
            id: "i-00000001".into(),
            zone: "zone-a".into(),
            node: "node-1".into(),
            first_seen_ms: t0,
        };
        assert_eq!(
            first,
            OrphanPlan {
                found: vec![orphan.clone()],
                ..OrphanPlan::default()
            }
        );
        let known = [orphan.clone()];
        let early = plan_orphans(&live(&[]), &reports, &[], &known, t0 + ORPHAN_GRACE_MS - 1);
        assert_eq!(early, OrphanPlan::default());
        let due = plan_orphans(&live(&[]), &reports, &[], &known, t0 + ORPHAN_GRACE_MS);
        assert_eq!(due.due, [orphan]);
        assert!(due.found.is_empty() && due.gone.is_empty());
    }

    #[test]
    fn live_records_and_ending_instances_are_no_orphans() {
        let reports = [
            report("i-00000001", InstanceState::Pending),
            report("i-00000002", InstanceState::Running),
            report("i-00000003", InstanceState::ShuttingDown),
            report("i-00000004", InstanceState::Terminated),
        ];
        let plan = plan_orphans(&live(&["i-00000001", "i-00000002"]), &reports, &[], &[], 5);
        assert_eq!(plan, OrphanPlan::default());
    }

    #[test]
    fn an_orphan_is_forgotten_once_ended_or_recorded_but_not_while_its_zone_is_silent() {
        let orphan = |id: &str, zone: &str| OrphanRecord {
            id: id.into(),
            zone: zone.into(),
            node: "node-1".into(),
            first_seen_ms: 0,
        };
        let known = [
            orphan("i-00000001", "zone-a"),
            orphan("i-00000002", "zone-a"),
            orphan("i-00000003", "zone-b"),
        ];
        let reports = [
            // Its end went through: the node reports it terminated.
            report("i-00000001", InstanceState::Terminated),
            // A record appeared for it.
            report("i-00000002", InstanceState::Running),
        ];
        let plan = plan_orphans(
            &live(&["i-00000002"]),
            &reports,
            &["zone-b".to_owned()],
            &known,
            ORPHAN_GRACE_MS * 2,
        );
        // zone-b's cluster did not answer: its orphan keeps its grace for when it does.
        assert_eq!(plan.gone, ["i-00000001", "i-00000002"]);
        assert!(plan.found.is_empty() && plan.due.is_empty());
    }
}

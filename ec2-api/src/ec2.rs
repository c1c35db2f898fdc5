//! The EC2 Query API: what every action works with ([`Cloud`], [`Call`]), the API versions
//! spoken, the response envelope, and the table from action names to their handlers (one
//! file per resource: `images.rs`, `keypairs.rs`, `groups.rs`, `addresses.rs`, `zones.rs`,
//! `tags.rs`, `properties.rs`, `instances.rs`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use identity::{Identity, Principal};
use rpc::RunOutcome;
use rpc::{ConsoleOutput, InstanceReport, NodeStatus, RpcError, RunOrder};

use crate::clusters::{self, ClusterSet};
use crate::query::{document, Filter, QueryRequest};
use crate::state::CloudState;
use crate::{addresses, groups, images, instances, keypairs, properties, tags, zones, QueryError};

/// The newest API version spoken, used when a request names none.
pub const LATEST_VERSION: &str = "2016-11-15";
/// The oldest API version accepted (euca2ools 1.x sends 2009-era versions).
const OLDEST_VERSION: &str = "2009-01-01";

/// A future a cross-role trait returns; boxed so that the traits stay object safe.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where the cloud controller reads bundles: the object store, with the rights of the
/// account registering an image. Walrus implements it in the `koala` binary (in the same
/// process, or over the network when it runs apart); keeping it a trait keeps the CLC free
/// of Walrus' internals. Asynchronous: a Walrus apart is waited for without holding a
/// thread.
pub trait BundleStore: Send + Sync {
    /// The size of `bucket/key`, if `account_id` may read it.
    fn size<'a>(
        &'a self,
        account_id: &'a str,
        bucket: &'a str,
        key: &'a str,
    ) -> Pending<'a, Result<u64, BundleAccess>>;
    /// The body of `bucket/key` (at most `limit` bytes), if `account_id` may read it.
    fn read<'a>(
        &'a self,
        account_id: &'a str,
        bucket: &'a str,
        key: &'a str,
        limit: u64,
    ) -> Pending<'a, Result<Vec<u8>, BundleAccess>>;
    /// Tells Walrus that image `image_id` is registered with the manifest at `location`
    /// whose bytes hash to `manifest_sha256`: Walrus keeps the plain image while the
    /// registration lasts. Recording it twice is harmless.
    fn retain<'a>(
        &'a self,
        image_id: &'a str,
        location: &'a str,
        manifest_sha256: &'a str,
    ) -> Pending<'a, Result<(), BundleAccess>>;
    /// Tells Walrus that image `image_id` is no longer registered: its plain image may be
    /// collected. Releasing an image Walrus never recorded succeeds.
    fn release<'a>(&'a self, image_id: &'a str) -> Pending<'a, Result<(), BundleAccess>>;
    /// The names of the buckets account `account_id` owns: an account is deleted only once
    /// it owns none, or its objects would belong to nobody.
    fn buckets_of<'a>(
        &'a self,
        account_id: &'a str,
    ) -> Pending<'a, Result<Vec<String>, BundleAccess>>;
}

/// One cluster as the CLC reaches it: a CC's client in the `koala` binary (over TLS, signed
/// with the CLC's own key). Asynchronous: a slow or hung CC is waited for without holding a
/// thread.
pub trait Clusters: Send + Sync {
    /// Places and starts instances.
    fn run<'a>(&'a self, orders: &'a [RunOrder]) -> Pending<'a, Result<RunOutcome, RpcError>>;
    /// Every instance the nodes know.
    fn instances(&self) -> Pending<'_, Result<Vec<InstanceReport>, RpcError>>;
    /// Terminates an instance on its node.
    fn terminate<'a>(&'a self, id: &'a str) -> Pending<'a, Result<InstanceReport, RpcError>>;
    /// Resets an instance.
    fn reboot<'a>(&'a self, id: &'a str) -> Pending<'a, Result<(), RpcError>>;
    /// An instance's console log.
    fn console<'a>(&'a self, id: &'a str) -> Pending<'a, Result<ConsoleOutput, RpcError>>;
    /// The nodes with their resources.
    fn nodes(&self) -> Pending<'_, Result<Vec<NodeStatus>, RpcError>>;
    /// Hands the CC the guest network it must apply (MANAGED modes), whole.
    fn set_network<'a>(&'a self, plan: &'a network::Plan) -> Pending<'a, Result<(), RpcError>>;
}

/// Walrus could not do what the CLC asked (`doing`, "record the image's use of its
/// bundle"): not the caller's fault, and worth retrying; the answer says why.
pub(crate) fn walrus_unavailable(doing: &str, e: BundleAccess) -> QueryError {
    let why = match e {
        failed @ BundleAccess::Failed(_) => rpc::error_chain(&failed),
        other => format!("{other:?}"),
    };
    QueryError::Unavailable(format!("Walrus cannot {doing} now ({why}); try again."))
}

/// Why a bundle object could not be read, or a registration recorded or released.
#[derive(Debug, thiserror::Error)]
pub enum BundleAccess {
    /// No such bucket or key.
    #[error("the bundle object does not exist")]
    NotFound,
    /// The account may not read it.
    #[error("the account may not read the bundle object")]
    Denied,
    /// Larger than the limit asked for.
    #[error("the bundle object is larger than the limit")]
    TooLarge,
    /// Walrus failed, or could not be reached (not the caller's fault): the cause is kept.
    #[error("Walrus failed")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The cloud-wide settings the EC2 actions need, fixed at start.
#[derive(Debug, Clone)]
pub struct CloudSettings {
    /// The region name (DescribeRegions).
    pub region: String,
    /// The EC2 endpoint clients use (DescribeRegions).
    pub ec2_url: String,
    /// Starting values of cloud properties (from `koala.toml`), by property name; an admin's
    /// `ModifyPropertyValue` overrides them at run time.
    pub property_defaults: crate::StartingValues,
    /// The guest network's address plan (`[network]` of koala.toml); `None` gives instances
    /// no NIC.
    pub network: Option<network::Layout>,
    /// Where the CC sends guests' requests to 169.254.169.254:80: the CLC's metadata
    /// service (address 0.0.0.0: on the CC's own host).
    pub metadata: Option<std::net::SocketAddrV4>,
}

/// Everything the EC2 actions work with. Cheap to clone.
#[derive(Clone)]
pub struct Cloud {
    /// The CLC's own records.
    pub state: CloudState,
    /// Accounts, users and certificates.
    pub identity: Identity,
    /// Where bundles are read from.
    pub bundles: Arc<dyn BundleStore>,
    /// Where instances run: the cluster of each zone.
    pub clusters: Arc<ClusterSet>,
    /// Fixed settings.
    pub settings: Arc<CloudSettings>,
    /// How often each account may have a bundle key unwrapped (RegisterImage).
    pub unwraps: Arc<crate::UnwrapThrottle>,
    /// Sends the CCs their guest networks.
    pub guest_networks: Arc<crate::networks::Pusher>,
}

/// One EC2 request, owned: what the asynchronous actions (those that wait for another role)
/// hand to their blocking steps.
pub struct Request {
    /// The cloud.
    pub cloud: Cloud,
    /// The verified caller.
    pub caller: Principal,
    /// The request's parameters.
    pub params: QueryRequest,
}

impl Request {
    /// The request as the blocking steps see it.
    pub fn call(&self) -> Call<'_> {
        Call {
            cloud: &self.cloud,
            caller: &self.caller,
            params: &self.params,
        }
    }
}

/// Runs a step of an action that blocks (RocksDB writes with fsync, RSA, scans of the
/// records) on the blocking pool, so that the reactor never waits for it.
pub async fn blocking<T: Send + 'static>(
    req: &Arc<Request>,
    step: impl FnOnce(&Call<'_>) -> Result<T, QueryError> + Send + 'static,
) -> Result<T, QueryError> {
    let req = req.clone();
    tokio::task::spawn_blocking(move || step(&req.call()))
        .await
        .map_err(|e| QueryError::failed("an EC2 action failed", e))?
}

/// One EC2 request being served: the cloud, who is calling, and the parameters.
pub struct Call<'a> {
    /// The cloud.
    pub cloud: &'a Cloud,
    /// The verified caller.
    pub caller: &'a Principal,
    /// The request's parameters.
    pub params: &'a QueryRequest,
}

impl Call<'_> {
    /// The caller's account id, which owns what the call creates.
    pub fn account(&self) -> &str {
        &self.caller.account_id
    }
}

/// The API version of a request: given and within the range spoken, or the newest.
pub fn version(params: &QueryRequest) -> Result<String, QueryError> {
    let Some(version) = params.get("Version").filter(|v| !v.is_empty()) else {
        return Ok(LATEST_VERSION.to_owned());
    };
    let date_shaped = version.len() == 10
        && version.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    if date_shaped && (OLDEST_VERSION..=LATEST_VERSION).contains(&version) {
        Ok(version.to_owned())
    } else {
        Err(QueryError::NoSuchVersion(version.to_owned()))
    }
}

/// Runs EC2 action `action` with `params` for `caller` exactly as the Query API runs it (its
/// rules, its checks, its side effects): how the web console acts on images, instances and
/// the rest, so that it has no second code path. The answer is the action's XML result.
pub async fn act(
    cloud: &Cloud,
    caller: &Principal,
    action: &str,
    params: &[(&str, &str)],
) -> Result<String, QueryError> {
    let mut query = format!("Action={action}");
    for (name, value) in params {
        query.push('&');
        query.push_str(name);
        query.push('=');
        query.extend(percent_encoding::utf8_percent_encode(
            value,
            percent_encoding::NON_ALPHANUMERIC,
        ));
    }
    let request = Request {
        cloud: cloud.clone(),
        caller: caller.clone(),
        params: QueryRequest::new(&query, b"", &http::HeaderMap::new()),
    };
    dispatch(Arc::new(request), action.to_owned()).await
}

/// Serves one EC2 action; the body of its response element, or its error. The actions that
/// wait for another role (a cluster controller, a Walrus apart) run here, their blocking
/// steps on the blocking pool; every other runs whole on the blocking pool.
pub async fn dispatch(req: Arc<Request>, action: String) -> Result<String, QueryError> {
    let changes_networks = matches!(
        action.as_str(),
        "RunInstances"
            | "TerminateInstances"
            | "AuthorizeSecurityGroupIngress"
            | "RevokeSecurityGroupIngress"
            | "AssociateAddress"
            | "DisassociateAddress"
            | "ReleaseAddress"
    );
    let answer = serve_action(&req, action).await;
    if changes_networks && answer.is_ok() {
        req.cloud.guest_networks.changed();
    }
    answer
}

/// The action itself, as [`dispatch`] serves it.
async fn serve_action(req: &Arc<Request>, action: String) -> Result<String, QueryError> {
    match action.as_str() {
        "RegisterImage" => images::register(req).await,
        "DeregisterImage" => images::deregister(req).await,
        "RunInstances" => instances::run(req).await,
        "TerminateInstances" => instances::terminate(req).await,
        "RebootInstances" => instances::reboot(req).await,
        "GetConsoleOutput" => instances::console_output(req).await,
        "DescribeAvailabilityZones" => zones::describe_zones(req).await,
        "DescribeClusters" => clusters::describe(req).await,
        _ => blocking(req, move |call| dispatch_blocking(call, &action)).await,
    }
}

/// The actions that keep to the CLC's own records.
fn dispatch_blocking(call: &Call<'_>, action: &str) -> Result<String, QueryError> {
    match action {
        "DescribeImages" => images::describe(call),
        "DescribeImageAttribute" => images::describe_attribute(call),
        "ModifyImageAttribute" => images::modify_attribute(call),
        "ResetImageAttribute" => images::reset_attribute(call),
        "CreateKeyPair" => keypairs::create(call),
        "ImportKeyPair" => keypairs::import(call),
        "DeleteKeyPair" => keypairs::delete(call),
        "DescribeKeyPairs" => keypairs::describe(call),
        "CreateSecurityGroup" => groups::create(call),
        "DeleteSecurityGroup" => groups::delete(call),
        "DescribeSecurityGroups" => groups::describe(call),
        "AuthorizeSecurityGroupIngress" => groups::authorize(call),
        "RevokeSecurityGroupIngress" => groups::revoke(call),
        "AllocateAddress" => addresses::allocate(call),
        "ReleaseAddress" => addresses::release(call),
        "AssociateAddress" => addresses::associate(call),
        "DisassociateAddress" => addresses::disassociate(call),
        "DescribeAddresses" => addresses::describe(call),
        "DescribeRegions" => zones::describe_regions(call),
        "CreateTags" => tags::create(call),
        "DeleteTags" => tags::delete(call),
        "DescribeTags" => tags::describe(call),
        "DescribeInstances" => instances::describe(call),
        "DescribeInstanceStatus" => instances::describe_status(call),
        "DescribeProperties" => properties::describe(call),
        "ModifyPropertyValue" => properties::modify(call),
        "RegisterCluster" => clusters::register(call),
        "DeregisterCluster" => clusters::deregister(call),
        _ => Err(QueryError::InvalidAction(action.to_owned())),
    }
}

/// The response document: `<ActionResponse xmlns=EC2 namespace of the version>` with the
/// request id first, then the action's body (as [`crate::query::Xml`] wrote it). `action` is
/// one the table above served, so it is a name fit for an element.
pub fn envelope(action: &str, version: &str, request_id: &str, body: &str) -> String {
    let root = format!("{action}Response");
    let namespace = format!("http://ec2.amazonaws.com/doc/{version}/");
    let mut w = document();
    w.open_with(&root, &[("xmlns", &namespace)])
        .elem("requestId", request_id)
        .raw(body)
        .close(&root);
    w.finish()
}

/// Keeps the items every filter matches. `fields(item, name)` gives an item's values for a
/// filter name, or `None` when the resource has no such filter (an `InvalidParameterValue`,
/// as AWS answers); `tag:KEY`, `tag-key` and `tag-value` are answered from `tags(item)`.
pub fn apply_filters<T>(
    filters: &[Filter],
    items: Vec<T>,
    fields: impl Fn(&T, &str) -> Option<Vec<String>>,
    tags: impl Fn(&T) -> Vec<(String, String)>,
) -> Result<Vec<T>, QueryError> {
    let mut kept = Vec::with_capacity(items.len());
    for item in items {
        let mut keep = true;
        for filter in filters {
            let values = if let Some(key) = filter.name.strip_prefix("tag:") {
                tags(&item)
                    .into_iter()
                    .filter(|(k, _)| k == key)
                    .map(|(_, v)| v)
                    .collect()
            } else if filter.name == "tag-key" {
                tags(&item).into_iter().map(|(k, _)| k).collect()
            } else if filter.name == "tag-value" {
                tags(&item).into_iter().map(|(_, v)| v).collect()
            } else {
                fields(&item, &filter.name).ok_or_else(|| {
                    QueryError::Validation(format!("The filter '{}' is invalid", filter.name))
                })?
            };
            if !filter.matches(&values) {
                keep = false;
                break;
            }
        }
        if keep {
            kept.push(item);
        }
    }
    Ok(kept)
}

/// A new resource id: `prefix-` and 8 lowercase hex digits, as Eucalyptus makes them.
pub fn new_id(prefix: &str) -> String {
    let n: u32 = rand::random();
    format!("{prefix}-{n:08x}")
}

pub use rpc::is_resource_id;

/// The current time as EC2 writes it (`2026-11-25T19:30:00.000Z`).
pub fn timestamp_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.millisecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(body: &str) -> QueryRequest {
        QueryRequest::form(body)
    }

    #[test]
    fn versions() {
        assert_eq!(version(&params("Action=X")).unwrap(), LATEST_VERSION);
        assert_eq!(
            version(&params("Version=2015-10-01")).unwrap(),
            "2015-10-01"
        );
        assert_eq!(
            version(&params("Version=2009-11-30")).unwrap(),
            "2009-11-30"
        );
        for bad in ["2008-12-01", "2017-01-01", "latest", "2015-10-0x"] {
            assert!(matches!(
                version(&params(&format!("Version={bad}"))),
                Err(QueryError::NoSuchVersion(_))
            ));
        }
    }

    #[test]
    fn the_envelope_is_written_byte_for_byte() {
        assert_eq!(
            envelope(
                "DescribeRegions",
                "2009-11-30",
                "req-1",
                "<regionInfo><item><regionName>r</regionName></item></regionInfo>"
            ),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<DescribeRegionsResponse \
             xmlns=\"http://ec2.amazonaws.com/doc/2009-11-30/\"><requestId>req-1</requestId>\
             <regionInfo><item><regionName>r</regionName></item></regionInfo>\
             </DescribeRegionsResponse>"
        );
    }

    #[test]
    fn new_ids_are_resource_ids() {
        let id = new_id("emi");
        assert!(is_resource_id(&id, "emi"), "{id}");
    }
}

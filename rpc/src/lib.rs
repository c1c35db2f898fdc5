//! The internal protocol between the cloud's components: JSON over HTTP, every request
//! SigV4-signed with the calling component's own access key and verified by the callee
//! against the cloud's identity store, never trusted by address.
//!
//! The CLC calls the CC (`/cluster/...`), the CC calls its NCs (`/node/...`), and an NC calls
//! Walrus' image feed. The messages are defined here once, for both ends.
//!
//! A crate of its own so that the EC2 API and Walrus speak the protocol without linking the
//! node's libvirt or the account store's RocksDB: `lib.rs` (messages, the signed TLS client,
//! the verifier, component keys), `cluster.rs` (the CLC's client of a CC), `tls.rs` (the
//! cloud CA's TLS settings), `disk_layout.rs` (what a guest's disks are).

pub mod cluster;
pub mod disk_layout;
pub mod signer;
pub mod tls;

use signer::{SignableBody, Signer, Style};

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use identity::{
    Answered, AuthError, Authenticated, ComponentKind, CredentialSource, KeyAnswer, KeyQuestion,
    Payload, Principal, RequestParts, SigningScope, Transport,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// An error and its chain of causes on one line (`what failed: why: why`): hyper's and
/// libvirt's own messages alone often say only the outermost failure.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Locks a mutex whose data stays consistent even if a holder panicked (every critical
/// section of the crate completes its update before it can panic).
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The SigV4 service name internal calls are signed for.
pub const SERVICE: &str = identity::INTERNAL_SERVICE;

/// The largest JSON body a component accepts (a run request with 16 KiB of user data is
/// far below).
const MAX_BODY: usize = 1 << 20;

/// A plain image the NC needs (machine image, kernel or ramdisk), named by its bundle and,
/// once Walrus has unbundled it, by its SHA-256 so that a cache hit needs no call to Walrus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    /// The image id (`emi-…`, `eki-…`, `eri-…`).
    pub id: String,
    /// The bundle's manifest, `bucket/key`, for the feed's first unbundling.
    pub manifest: String,
    /// The SHA-256 of the manifest's bytes as registered: Walrus unbundles only a manifest
    /// with exactly these bytes, so a manifest replaced after registration never feeds a
    /// node. Absent for images registered before manifests were pinned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_sha256: Option<String>,
    /// The plain image's SHA-256 in hex, when known.
    pub sha256: Option<String>,
    /// The plain image's size in bytes, when known.
    pub size: Option<u64>,
}

/// The size of an instance: a VM type resolved by the CLC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmSpec {
    /// The type's name (`m1.small`).
    pub name: String,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Root disk in GiB.
    pub disk_gib: u64,
}

/// An order to run one instance: everything the NC needs, so that it never calls the CLC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOrder {
    /// The instance id, `i-…`, also the libvirt domain's name.
    pub instance_id: String,
    /// The reservation it belongs to.
    pub reservation_id: String,
    /// The owning account.
    pub owner: String,
    /// The machine image.
    pub image: ImageRef,
    /// The kernel booted directly.
    pub kernel: ImageRef,
    /// The initial ramdisk, if any.
    pub ramdisk: Option<ImageRef>,
    /// vCPUs, memory, disk.
    pub vm: VmSpec,
    /// The key pair's name and OpenSSH public key.
    pub key: Option<(String, String)>,
    /// The user data, raw bytes base64-encoded.
    pub user_data: String,
    /// How long the instance may take from order to running before it is terminated.
    pub start_timeout_secs: u64,
    /// Its NIC, in the modes where the CLC plans addresses; none: no NIC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nic: Option<NicOrder>,
}

/// The guest NIC the NC plugs: what the CLC planned, so that the NC, the CC's DHCP server and
/// its rules agree on the MAC and the network without asking each other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NicOrder {
    /// The NIC's MAC (the CC's DHCP server gives it `private_ip`).
    pub mac: network::Mac,
    /// The address DHCP will give it (0.0.0.0 in SYSTEM, where the site's DHCP server
    /// decides).
    pub private_ip: std::net::Ipv4Addr,
    /// Its group network's index in the layout.
    pub network: u32,
    /// The group network's VLAN tag (MANAGED), carried to the node's bridge for it.
    pub vlan: Option<u16>,
}

/// An instance's life as EC2 shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    /// Being prepared or booting.
    Pending,
    /// Its domain runs.
    Running,
    /// Being stopped and cleaned up.
    ShuttingDown,
    /// Gone: nothing of it remains but its record and console log.
    Terminated,
}

impl InstanceState {
    /// The EC2 name (`pending`, `running`, `shutting-down`, `terminated`).
    pub fn name(self) -> &'static str {
        match self {
            InstanceState::Pending => "pending",
            InstanceState::Running => "running",
            InstanceState::ShuttingDown => "shutting-down",
            InstanceState::Terminated => "terminated",
        }
    }

    /// The EC2 state code (0, 16, 32, 48).
    pub fn code(self) -> u32 {
        match self {
            InstanceState::Pending => 0,
            InstanceState::Running => 16,
            InstanceState::ShuttingDown => 32,
            InstanceState::Terminated => 48,
        }
    }
}

/// Why an instance ended, in EC2's `stateReason` terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateReason {
    /// EC2's code, e.g. `Server.InternalError`, `Client.UserInitiatedShutdown`.
    pub code: String,
    /// What a person reads, starting with the code as EC2 does.
    pub message: String,
}

impl StateReason {
    /// The user asked for the instance to end.
    pub fn user_shutdown() -> Self {
        StateReason::new(
            "Client.UserInitiatedShutdown",
            "User initiated shutdown".into(),
        )
    }

    /// The guest powered itself off (or its domain vanished).
    pub fn guest_shutdown() -> Self {
        StateReason::new(
            "Client.InstanceInitiatedShutdown",
            "Instance initiated shutdown".into(),
        )
    }

    /// The cloud failed the instance; `why` says how.
    pub fn server_error(why: impl std::fmt::Display) -> Self {
        StateReason::new("Server.InternalError", format!("Internal error: {why}"))
    }

    fn new(code: &str, text: String) -> Self {
        StateReason {
            code: code.into(),
            message: format!("{code}: {text}"),
        }
    }
}

/// What an NC says of one of its instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceReport {
    /// The instance id.
    pub instance_id: String,
    /// Its state.
    pub state: InstanceState,
    /// Why it ended, once terminated (or why it is being stopped).
    pub reason: Option<StateReason>,
    /// The node it is on (its registered host name).
    pub node: String,
    /// The images it was started from, with their SHA-256 and size, once the node knows
    /// them: the CLC records them so that later runs are cache hits without Walrus.
    pub images: Vec<ImageRef>,
    /// SYSTEM: the address the guest was seen using (the site's DHCP server gave it), once
    /// the node saw it; none in the modes where the CLC planned the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_ip: Option<std::net::Ipv4Addr>,
}

/// A node's size and what its instances take of it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeResources {
    /// The node's host name, as registered.
    pub host: String,
    /// Cores offered to instances.
    pub cores: u32,
    /// Memory offered to instances, MiB.
    pub memory_mib: u64,
    /// Disk offered to instances, GiB.
    pub disk_gib: u64,
    /// Cores taken by instances not yet terminated.
    pub used_cores: u32,
    /// Memory taken, MiB.
    pub used_memory_mib: u64,
    /// Disk taken, GiB.
    pub used_disk_gib: u64,
}

impl NodeResources {
    /// How many more instances of `vm` fit on the node.
    pub fn free_slots(&self, vm: &VmSpec) -> u64 {
        let by = |total: u64, used: u64, each: u64| {
            total
                .saturating_sub(used)
                .checked_div(each)
                .unwrap_or(u64::MAX)
        };
        by(self.cores.into(), self.used_cores.into(), vm.cpus.into())
            .min(by(self.memory_mib, self.used_memory_mib, vm.memory_mib))
            .min(by(self.disk_gib, self.used_disk_gib, vm.disk_gib))
    }

    /// How many instances of `vm` the empty node holds.
    pub fn max_slots(&self, vm: &VmSpec) -> u64 {
        NodeResources {
            used_cores: 0,
            used_memory_mib: 0,
            used_disk_gib: 0,
            ..self.clone()
        }
        .free_slots(vm)
    }
}

/// A node as the CC knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Its host name.
    pub host: String,
    /// Where its NC listens (`http://host:8775`).
    pub url: String,
    /// Its last report, `None` while it has never answered.
    pub resources: Option<NodeResources>,
    /// Why its last poll failed, if it did.
    pub error: Option<String>,
}

/// An instance's console log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleOutput {
    /// The log's last bytes, base64-encoded.
    pub output: String,
    /// When it was last written (seconds since the epoch).
    pub timestamp: u64,
}

/// A node registration, as `euca_conf --register-nodes` sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRegistration {
    /// The node's host name.
    pub host: String,
    /// Its NC's URL.
    pub url: String,
}

/// The CC's answer to a run: where each instance went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    /// The instance id.
    pub instance_id: String,
    /// The node it was sent to.
    pub node: String,
}

/// The outcome of a run: the instances placed, those whose node never said, and those no
/// node took, with why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOutcome {
    /// Where each started instance went.
    pub placed: Vec<Placement>,
    /// Instances sent to a node that did not answer, even when asked again: they may be
    /// starting there, so they went to no other node. The CLC keeps them pending until the
    /// node reports them or their start timeout passes.
    #[serde(default)]
    pub unconfirmed: Vec<Placement>,
    /// Instances that could not be placed: their id and the error.
    pub failed: Vec<(String, RpcError)>,
}

/// An account as the key service answers `GET /services/Identity/accounts/<id>` (a 404 when
/// there is none).
#[derive(Debug, Serialize, Deserialize)]
pub struct AccountRecord {
    /// The 12-digit id.
    pub account_id: String,
}

/// Whether `id` is `prefix-` and 8 (or, in AWS's long form, 17) lowercase hex digits: the
/// resource ids the cloud makes (`i-0123abcd`, `emi-...`, `sg-...`). One rule for the EC2 API,
/// which answers `...Malformed` for anything else, and for the node, where an instance id
/// names a folder and a domain, so nothing else may pass.
pub fn is_resource_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|hex| {
            (hex.len() == 8 || hex.len() == 17)
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// Whether `id` is an instance id ([`is_resource_id`] with `i`).
pub fn is_instance_id(id: &str) -> bool {
    is_resource_id(id, "i")
}

/// An error a component answers with: a code the caller can act on, and a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RpcError {
    /// What kind of failure, which decides what the caller does next.
    pub code: RpcCode,
    /// What happened.
    pub message: String,
}

/// The kinds of failure of an internal call. Sent as their names (`"NotFound"`), so a code a
/// newer peer adds reads as [`RpcCode::InternalError`] here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RpcCode {
    /// No node has room for the instances asked for.
    InsufficientInstanceCapacity,
    /// The instance, node or cluster named does not exist there.
    NotFound,
    /// The caller is not who may make this call.
    AuthFailure,
    /// The request does not read (a bad URL, a body that does not decode).
    BadRequest,
    /// The request contradicts what the callee already holds.
    Conflict,
    /// The call was not sent: the callee certainly did not act on it.
    Unavailable,
    /// The call was sent but not answered (it timed out, or the connection broke after the
    /// request went out): the callee may have acted on it, so a caller that changes state (a
    /// run) must find out before acting as if it had not.
    NoAnswer,
    /// The callee failed (or answered with a code this build does not know).
    #[serde(other)]
    InternalError,
}

impl RpcCode {
    /// The code's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            RpcCode::InsufficientInstanceCapacity => "InsufficientInstanceCapacity",
            RpcCode::NotFound => "NotFound",
            RpcCode::AuthFailure => "AuthFailure",
            RpcCode::BadRequest => "BadRequest",
            RpcCode::Conflict => "Conflict",
            RpcCode::Unavailable => "Unavailable",
            RpcCode::NoAnswer => "NoAnswer",
            RpcCode::InternalError => "InternalError",
        }
    }

    fn status(self) -> StatusCode {
        match self {
            RpcCode::AuthFailure => StatusCode::FORBIDDEN,
            RpcCode::NotFound => StatusCode::NOT_FOUND,
            RpcCode::BadRequest => StatusCode::BAD_REQUEST,
            RpcCode::InsufficientInstanceCapacity | RpcCode::Conflict => StatusCode::CONFLICT,
            RpcCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            RpcCode::NoAnswer => StatusCode::GATEWAY_TIMEOUT,
            RpcCode::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl std::fmt::Display for RpcCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl RpcError {
    /// An error with `code`.
    pub fn new(code: RpcCode, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
        }
    }

    /// Whether the outcome of the call is unknown: sent, never answered.
    pub fn is_unanswered(&self) -> bool {
        self.code == RpcCode::NoAnswer
    }

    fn status(&self) -> StatusCode {
        self.code.status()
    }
}

impl IntoResponse for RpcError {
    fn into_response(self) -> Response {
        let status = self.status();
        json_response(status, &self)
    }
}

/// A JSON response.
pub fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// A component's own access key, from its credential file.
#[derive(Clone)]
pub struct ComponentKey {
    /// The access key id.
    pub access_key_id: String,
    /// The secret.
    pub secret_access_key: String,
    /// The region requests are signed for.
    pub region: String,
}

impl std::fmt::Debug for ComponentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentKey")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// A signing HTTP client for internal calls, over TLS to components of one kind.
#[derive(Clone)]
pub struct RpcClient {
    http: Client<HttpsConnector<HttpConnector>, Body>,
    signer: Signer,
}

impl RpcClient {
    /// A client that signs with `key` and calls components of kind `callee` over `tls`: the
    /// callee's certificate must be the cloud's and carry that kind's name
    /// ([`ComponentKind::tls_name`]), whatever address it is reached at.
    pub fn new(key: ComponentKey, tls: &crate::tls::Tls, callee: ComponentKind) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*tls.client()).clone())
            .https_only()
            .with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(
                rustls_pki_types::ServerName::DnsName(
                    rustls_pki_types::DnsName::try_from(callee.tls_name())
                        .expect("the kinds' TLS names are DNS names")
                        .to_owned(),
                ),
            ))
            .enable_http1()
            .wrap_connector(connector);
        RpcClient {
            http: Client::builder(TokioExecutor::new()).build(https),
            signer: Signer::new(
                &key.access_key_id,
                &key.secret_access_key,
                &key.region,
                SERVICE,
            ),
        }
    }

    /// Sends a signed request; the response with its body still streaming. A failure to
    /// connect is `Unavailable` (nothing was sent); a failure after that is
    /// [`RpcCode::NoAnswer`] (the request may have reached the callee).
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        body: Bytes,
    ) -> Result<http::Response<hyper::body::Incoming>, RpcError> {
        self.send_with(method, url, &[], body).await
    }

    /// [`RpcClient::send`] with more headers, signed with the rest (a node's `Range` on
    /// Walrus' image feed).
    pub async fn send_with(
        &self,
        method: Method,
        url: &str,
        extra: &[(&str, &str)],
        body: Bytes,
    ) -> Result<http::Response<hyper::body::Incoming>, RpcError> {
        let failed = |e: hyper_util::client::legacy::Error| {
            if e.is_connect() {
                RpcError::new(RpcCode::Unavailable, format!("cannot reach {url}: {e}"))
            } else {
                RpcError::new(
                    RpcCode::NoAnswer,
                    format!("{url} did not answer: {}", crate::error_chain(&e)),
                )
            }
        };
        // Internal calls run over TLS whatever scheme a URL was written with: registrations
        // made before TLS, or by habit, name http://.
        let https = match url.strip_prefix("http://") {
            Some(rest) => format!("https://{rest}"),
            None => url.to_owned(),
        };
        let uri: http::Uri = https
            .parse()
            .map_err(|e| RpcError::new(RpcCode::BadRequest, format!("bad URL {url}: {e}")))?;
        let host = uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_default();
        let mut headers = vec![("host", host.as_str())];
        headers.extend_from_slice(extra);
        if !body.is_empty() {
            headers.push(("content-type", "application/json"));
        }
        // Verified as S3 requests are: the payload hashed, the path encoded once.
        let signed = self
            .signer
            .sign(
                Style::S3,
                SystemTime::now(),
                method.as_str(),
                url,
                &headers,
                SignableBody::Bytes(&body),
            )
            .map_err(|e| RpcError::new(RpcCode::InternalError, error_chain(&e)))?;
        let mut req = Request::builder().method(method).uri(uri);
        for (name, value) in headers.into_iter() {
            req = req.header(name, value);
        }
        for (name, value) in &signed.headers {
            req = req.header(name.as_str(), value.as_str());
        }
        let req = req
            .body(Body::from(body))
            .map_err(|e| RpcError::new(RpcCode::InternalError, e.to_string()))?;
        self.http.request(req).await.map_err(failed)
    }

    /// Sends a signed JSON call and decodes the JSON answer (or the callee's error). No
    /// answer within `timeout`, or an answer cut short, is [`RpcCode::NoAnswer`].
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        url: &str,
        body: Option<&impl Serialize>,
        timeout: Duration,
    ) -> Result<T, RpcError> {
        let body = match body {
            Some(b) => Bytes::from(serde_json::to_vec(b).unwrap_or_default()),
            None => Bytes::new(),
        };
        let call = async {
            let resp = self.send(method, url, body).await?;
            let status = resp.status();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| {
                    RpcError::new(
                        RpcCode::NoAnswer,
                        format!("{url} broke off its answer: {e}"),
                    )
                })?
                .to_bytes();
            if status.is_success() {
                serde_json::from_slice(&bytes).map_err(|e| {
                    RpcError::new(RpcCode::InternalError, format!("{url} answered badly: {e}"))
                })
            } else {
                Err(
                    serde_json::from_slice::<RpcError>(&bytes).unwrap_or_else(|_| {
                        RpcError::new(
                            RpcCode::InternalError,
                            format!(
                                "{url} answered {status}: {}",
                                String::from_utf8_lossy(&bytes)
                            ),
                        )
                    }),
                )
            }
        };
        tokio::time::timeout(timeout, call).await.map_err(|_| {
            RpcError::new(
                RpcCode::NoAnswer,
                format!("{url} did not answer in {timeout:?}"),
            )
        })?
    }
}

/// Who may call a component: the cloud's identity store where the component runs beside the
/// CLC, else the CLC's key service (`POST /services/Identity/answers`), asked with the
/// component's own key. The key service hands out no secret: a SigV4 signing key of one day,
/// region and service, cached here for a minute (a revoked key stops working within it).
#[derive(Clone)]
pub struct Verifier {
    source: Arc<KeySource>,
}

enum KeySource {
    Local(Arc<dyn CredentialSource + Send + Sync>),
    Remote(Box<RemoteKeys>),
}

/// The CLC's key service, with a cache of signing keys.
struct RemoteKeys {
    client: RpcClient,
    url: String,
    cache: std::sync::Mutex<
        std::collections::HashMap<(String, SigningScope), (std::time::Instant, KeyAnswer)>,
    >,
}

/// How long a signing key learnt from the CLC is trusted without asking again.
const KEY_CACHE: Duration = Duration::from_secs(60);

/// The most signing keys (known or not) a remote verifier remembers.
const KEY_CACHE_ENTRIES: usize = 10_000;

/// How long the CLC may take to answer.
const KEY_SERVICE_TIMEOUT: Duration = Duration::from_secs(10);

impl Verifier {
    /// Verifies against a key store in this process (the identity store).
    pub fn local(source: Arc<dyn CredentialSource + Send + Sync>) -> Self {
        Verifier {
            source: Arc::new(KeySource::Local(source)),
        }
    }

    /// Verifies against the CLC at `cloud_url`, asked with `client`'s key.
    pub fn remote(client: RpcClient, cloud_url: &str) -> Self {
        Verifier {
            source: Arc::new(KeySource::Remote(Box::new(RemoteKeys {
                client,
                url: cloud_url.trim_end_matches('/').to_owned(),
                cache: Default::default(),
            }))),
        }
    }

    /// The key store, when it is in this process.
    pub fn local_keys(&self) -> Option<&dyn CredentialSource> {
        match self.source.as_ref() {
            KeySource::Local(source) => Some(source.as_ref()),
            KeySource::Remote(_) => None,
        }
    }

    /// Checks a signature with `verify` (a verifier call given the key store to use):
    /// directly against a local store, else with the CLC's answers. A CLC that does not
    /// answer is `Unavailable`, not the caller's fault.
    pub async fn check(
        &self,
        verify: impl Fn(&dyn CredentialSource) -> Result<Authenticated, AuthError>,
    ) -> Result<Result<Authenticated, AuthError>, RpcError> {
        match self.local_keys() {
            Some(keys) => Ok(verify(keys)),
            None => identity::verify_remotely(verify, |q| self.answers(q)).await,
        }
    }

    /// The answers to `questions`: from the local store, or from the CLC (signing keys from
    /// the cache when fresh). Only keys of the shape the cloud issues are asked about, and
    /// the cache is bounded, so made-up ids cost nothing.
    pub async fn answers(&self, questions: Vec<KeyQuestion>) -> Result<Answered, RpcError> {
        let remote = match self.source.as_ref() {
            KeySource::Local(source) => {
                return Ok(questions.into_iter().fold(Answered::default(), |a, q| {
                    let answer = identity::answer(source.as_ref(), &q);
                    a.with(q, answer)
                }))
            }
            KeySource::Remote(remote) => remote,
        };
        let cache_key = |q: &KeyQuestion| match q {
            KeyQuestion::SigningKey {
                access_key_id,
                scope,
            } => Some((access_key_id.clone(), scope.clone())),
            KeyQuestion::V2Signature { .. } => None,
        };
        let mut answered = Answered::default();
        let mut ask = Vec::new();
        {
            let cache = crate::lock(&remote.cache);
            for q in questions {
                if !identity::is_access_key_id(q.access_key_id()) {
                    answered = answered.with(q, KeyAnswer::Unknown);
                    continue;
                }
                let cached = cache_key(&q)
                    .and_then(|k| cache.get(&k))
                    .filter(|(at, _)| at.elapsed() < KEY_CACHE)
                    .map(|(_, a)| a.clone());
                match cached {
                    Some(answer) => answered = answered.with(q, answer),
                    None => ask.push(q),
                }
            }
        }
        if ask.is_empty() {
            return Ok(answered);
        }
        let url = format!("{}/services/Identity/answers", remote.url);
        let answers: Vec<KeyAnswer> = remote
            .client
            .call(Method::POST, &url, Some(&ask), KEY_SERVICE_TIMEOUT)
            .await
            .map_err(|e| {
                RpcError::new(
                    RpcCode::Unavailable,
                    format!("cannot check the signature with the cloud controller: {e}"),
                )
            })?;
        if answers.len() != ask.len() {
            return Err(RpcError::new(
                RpcCode::Unavailable,
                "the cloud controller answered another number of questions than asked",
            ));
        }
        let mut cache = crate::lock(&remote.cache);
        if cache.len() >= KEY_CACHE_ENTRIES {
            cache.retain(|_, (at, _)| at.elapsed() < KEY_CACHE);
            if cache.len() >= KEY_CACHE_ENTRIES {
                cache.clear();
            }
        }
        for (q, a) in ask.into_iter().zip(answers) {
            if let Some(k) = cache_key(&q) {
                cache.insert(k, (std::time::Instant::now(), a.clone()));
            }
            answered = answered.with(q, a);
        }
        Ok(answered)
    }
}

/// Checks an internal request's signature; returns the signer and the body, whose hash the
/// signature covers. The signer must be one of the cloud's components or a cloud
/// administrator; each call then says which of them it takes ([`Accepted::require`]).
pub async fn authenticate(
    verifier: &Verifier,
    req: Request<Body>,
) -> Result<(Principal, Bytes), RpcError> {
    let (parts, body) = req.into_parts();
    let denied = |why: String| RpcError::new(RpcCode::AuthFailure, why);
    let peer = match parts.extensions.get::<Transport>() {
        Some(Transport::Tls { peer }) => peer.clone(),
        _ => return Err(denied("internal calls run over TLS".into())),
    };
    let body = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| RpcError::new(RpcCode::BadRequest, "the request body is too large"))?;
    let signed = RequestParts {
        method: parts.method.as_str(),
        raw_path: parts.uri.path(),
        raw_query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
    };
    let now = SystemTime::now();
    let auth = verifier
        .check(|keys| identity::verify_s3(&signed, parts.uri.path(), keys, now))
        .await?
        .map_err(|e| denied(e.to_string()))?;
    let Authenticated::Signed { principal, payload } = auth else {
        return Err(denied("internal calls must be signed".into()));
    };
    match payload {
        Payload::Sha256(expected) if Sha256::digest(&body).as_slice() == expected => {}
        _ => return Err(denied("the body does not match its signed hash".into())),
    }
    if principal.component().is_none() && !principal.is_cloud_admin() {
        return Err(denied(format!(
            "{} is neither one of the cloud's components nor a cloud administrator",
            principal.user_name
        )));
    }
    // A component's key is good only on its own connection: a stolen key without the
    // component's TLS key (or the other way round) calls nothing.
    if principal.component().is_some() && peer.as_deref() != Some(principal.user_name.as_str()) {
        return Err(denied(format!(
            "{} must call over its own TLS certificate",
            principal.user_name
        )));
    }
    Ok((principal, body))
}

/// Who may make an internal call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// A component of this kind.
    Component(ComponentKind),
    /// A cloud administrator (`euca_conf`).
    CloudAdmin,
}

impl Caller {
    fn admits(self, principal: &Principal) -> bool {
        match self {
            Caller::Component(kind) => principal.component() == Some(kind),
            Caller::CloudAdmin => principal.is_cloud_admin(),
        }
    }
}

/// An internal call, verified: what the CC's and NC's routers match on.
pub struct Accepted {
    /// Who signed it.
    pub principal: Principal,
    /// The HTTP method.
    pub method: Method,
    /// The request path.
    pub path: String,
    /// The body, covered by the signature.
    pub body: Bytes,
}

impl Accepted {
    /// The path's segments (`/node/instances/i-1` → `["node", "instances", "i-1"]`).
    pub fn segments(&self) -> Vec<&str> {
        self.path.trim_matches('/').split('/').collect()
    }

    /// `NotFound` for a call no route takes.
    pub fn unknown(&self) -> RpcError {
        RpcError::new(RpcCode::NotFound, format!("no such call: {}", self.path))
    }

    /// `AuthFailure` unless the signer is one of `callers`: each call is open only to the
    /// roles that make it, so a stolen key reaches no further than its role.
    pub fn require(&self, callers: &[Caller]) -> Result<(), RpcError> {
        if callers.iter().any(|c| c.admits(&self.principal)) {
            return Ok(());
        }
        Err(RpcError::new(
            RpcCode::AuthFailure,
            format!(
                "{} may not call {} {}",
                self.principal.user_name, self.method, self.path
            ),
        ))
    }
}

/// Verifies an internal call (see [`authenticate`]) and splits it for routing.
pub async fn accept(verifier: &Verifier, req: Request<Body>) -> Result<Accepted, RpcError> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let (principal, body) = authenticate(verifier, req).await?;
    Ok(Accepted {
        principal,
        method,
        path,
        body,
    })
}

/// Decodes a JSON request body.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, RpcError> {
    serde_json::from_slice(body).map_err(|e| RpcError::new(RpcCode::BadRequest, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::testing::TestPki;

    fn vm(cpus: u32, memory_mib: u64, disk_gib: u64) -> VmSpec {
        VmSpec {
            name: "t".into(),
            cpus,
            memory_mib,
            disk_gib,
        }
    }

    #[test]
    fn free_slots_take_the_scarcest_resource() {
        let node = NodeResources {
            host: "n".into(),
            cores: 4,
            memory_mib: 1024,
            disk_gib: 100,
            used_cores: 1,
            used_memory_mib: 256,
            used_disk_gib: 5,
        };
        assert_eq!(node.free_slots(&vm(1, 256, 5)), 3);
        assert_eq!(node.free_slots(&vm(1, 512, 5)), 1);
        assert_eq!(node.free_slots(&vm(2, 128, 5)), 1);
        assert_eq!(node.max_slots(&vm(1, 256, 5)), 4);
        assert_eq!(node.free_slots(&vm(1, 2048, 5)), 0);
    }

    fn client(pki: &TestPki) -> RpcClient {
        let key = ComponentKey {
            access_key_id: "AKIDTEST".into(),
            secret_access_key: "secret".into(),
            region: "r".into(),
        };
        RpcClient::new(key, &pki.client, ComponentKind::NodeController)
    }

    async fn call(pki: &TestPki, url: &str, timeout: Duration) -> RpcError {
        client(pki)
            .call::<serde_json::Value>(Method::POST, url, Some(&"order"), timeout)
            .await
            .unwrap_err()
    }

    #[tokio::test]
    async fn a_call_that_cannot_connect_was_not_sent() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Nothing listens there any more: refused before a byte of the request went out.
        let e = call(
            &TestPki::with_node(),
            &format!("https://127.0.0.1:{port}/x"),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(e.code, RpcCode::Unavailable, "{e}");
        assert!(!e.is_unanswered());
    }

    #[tokio::test]
    async fn a_call_cut_off_or_unanswered_after_it_was_sent_has_no_answer() {
        use std::io::Read;
        let pki = Arc::new(TestPki::with_node());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("https://{}/x", listener.local_addr().unwrap());
        // The callee takes the request, then closes the connection without answering: it may
        // have acted on it.
        let server = pki.clone();
        let callee = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut conn = server.accept(conn);
            let mut buf = [0u8; 4096];
            let n = conn.read(&mut buf).unwrap();
            assert!(buf[..n].starts_with(b"POST /x "));
            drop(conn);
            listener
        });
        let e = call(&pki, &url, Duration::from_secs(5)).await;
        assert!(e.is_unanswered(), "{e}");
        // The callee takes the request and never answers.
        let listener = callee.join().unwrap();
        let server = pki.clone();
        let callee = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            let mut conn = server.accept(conn);
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            std::thread::sleep(Duration::from_secs(2));
        });
        let e = call(&pki, &url, Duration::from_millis(500)).await;
        assert!(e.is_unanswered(), "{e}");
        assert_eq!(e.status(), StatusCode::GATEWAY_TIMEOUT);
        callee.join().unwrap();
    }

    #[test]
    fn resource_ids_are_the_ones_the_cloud_makes() {
        assert!(is_instance_id("i-0123abcd"));
        assert!(is_instance_id("i-0123456789abcdef0"));
        assert!(is_resource_id("sg-0123456789abcdef0", "sg"));
        assert!(!is_resource_id("emi-0123abcd", "eki"));
        for bad in [
            "i-../../x",
            "i-0123ABCD",
            "i-123",
            "i-1234567g",
            "",
            "x-01234567",
            "i-0123abcd/",
        ] {
            assert!(!is_instance_id(bad), "{bad}");
        }
    }

    #[test]
    fn reasons_read_like_ec2() {
        let r = StateReason::server_error("the image is corrupt");
        assert_eq!(r.code, "Server.InternalError");
        assert_eq!(
            r.message,
            "Server.InternalError: Internal error: the image is corrupt"
        );
        assert_eq!(
            StateReason::user_shutdown().message,
            "Client.UserInitiatedShutdown: User initiated shutdown"
        );
    }
}

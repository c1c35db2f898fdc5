//! The compute roles of the daemon: the cluster controller and the node controller on their
//! own ports, the components' own keys, and the CLC's client of the CC.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use compute::accel::{self, AccelChoice, Probe, ProbeGuest};
use compute::cluster::Cluster;
use compute::hypervisor::{Hypervisor, SYSTEM_URI};
use compute::node::{Node, NodeConfig, WalrusFeed};
use compute::qemu_user::{self, QemuUser};
use ec2_api::{Clusters, Pending};
use identity::{ComponentKind, Identity};
use rpc::cluster::ClusterClient;
use rpc::tls::Tls;
use rpc::{
    ComponentKey, ConsoleOutput, InstanceReport, NodeStatus, RpcClient, RpcCode, RpcError,
    RunOrder, RunOutcome, Verifier,
};
use serde::{Deserialize, Serialize};

use crate::config::{host_name, Config};

/// Why a component of a role (the CLC's, a cluster's or a node's, or Walrus apart) could
/// not get its key or TLS certificate, or could not start.
#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    /// A key or certificate file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A folder could not be made.
    #[error("cannot create {}", path.display())]
    CreateDir {
        /// The folder.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A key or certificate file could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The data dir's real path could not be found.
    #[error("cannot resolve {}", path.display())]
    Resolve {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A component key file holds something else.
    #[error("{} is not a component key", path.display())]
    NotAKey {
        /// The file.
        path: PathBuf,
        /// What did not parse.
        #[source]
        source: serde_json::Error,
    },
    /// A component key could not be encoded to be kept.
    #[error("cannot encode a component key")]
    EncodeKey(#[source] serde_json::Error),
    /// The identity store could not make the component's principal and key.
    #[error("cannot register the component {name}")]
    Register {
        /// The component's principal name.
        name: String,
        /// The store's error.
        #[source]
        source: identity::IdentityError,
    },
    /// The account service refused or could not be asked to register a component apart.
    #[error("cannot register the component {name}")]
    RegisterRemotely {
        /// The component's principal name.
        name: String,
        /// The client's error.
        #[source]
        source: euca2ools::client::ClientError,
    },
    /// A component apart starting for the first time has no admin credentials to register
    /// with.
    #[error(
        "{} has no key yet: source the cloud admin's eucarc for this first start",
        path.display()
    )]
    NoAdminCredentials {
        /// Where the component's key would be.
        path: PathBuf,
        /// What is missing from the environment.
        #[source]
        source: euca2ools::client::ClientError,
    },
    /// Components register and call over TLS only.
    #[error("the cloud URL {0} is not https://: components register and call over TLS")]
    NotHttps(String),
    /// The answer to `RegisterComponent` lacks a field.
    #[error("the response has no <{0}>")]
    NoField(&'static str),
    /// A registration answered, yet left no certificate behind.
    #[error("the registration of {0} left no certificate")]
    NoCertificate(String),
    /// A TLS key could not be made, or the public key of one not derived.
    #[error("cannot make or read the TLS key of {name}")]
    TlsKey {
        /// The component.
        name: String,
        /// The error.
        #[source]
        source: identity::IdentityError,
    },
    /// The identity store has no cloud CA to certify components with.
    #[error("the cloud controller has no certificate authority")]
    NoCertificateAuthority,
    /// The cloud CA could not issue a component's certificate.
    #[error("cannot issue the TLS certificate of {name}")]
    Certify {
        /// The component.
        name: String,
        /// The CA's error.
        #[source]
        source: identity::IdentityError,
    },
    /// A component's certificate, key or the cloud's certificate cannot be used.
    #[error("cannot use the TLS certificate and key of {name}")]
    Tls {
        /// The component.
        name: String,
        /// What is wrong with them.
        #[source]
        source: rpc::tls::TlsError,
    },
    /// A program the node needs is missing (genisoimage).
    #[error(transparent)]
    NodeProgram(compute::Error),
    /// QEMU's user is unknown on this host.
    #[error(
        "cannot find QEMU's user (install libvirt: apt-get install libvirt-daemon-system \
         qemu-system-x86 qemu-utils)"
    )]
    QemuUser(#[source] compute::Error),
    /// KVM or TCG could not be chosen (libvirt did not answer, or the probe failed).
    #[error(
        "cannot choose how guests run: is libvirtd running? (scripts/start-libvirt starts it)"
    )]
    Accel(#[source] compute::Error),
    /// Blocking work of the start (on the blocking pool) panicked or was cancelled.
    #[error("a start-up task failed")]
    Task(#[source] tokio::task::JoinError),
    /// The node controller could not open.
    #[error("cannot start the node controller")]
    Node(#[source] compute::node::NodeError),
    /// The cluster controller could not open its store.
    #[error("cannot open the cluster controller")]
    Cluster(#[source] std::io::Error),
    /// The cluster controller's guest networks could not be opened.
    #[error("cannot open the cluster controller's guest networks")]
    Gateway(#[source] network::GatewayError),
    /// libvirt is not installed on this host.
    #[error(
        "libvirt is not installed (apt-get install libvirt-daemon-system qemu-system-x86 \
         qemu-utils genisoimage)"
    )]
    NoLibvirt,
    /// libvirt's daemons could not be started.
    #[error("cannot start libvirt's daemons")]
    StartLibvirt(#[source] std::io::Error),
    /// Starting libvirt's daemons failed.
    #[error(
        "libvirtd is not running and could not be started (start it as root: \
         scripts/start-libvirt)"
    )]
    LibvirtNotStarted,
    /// libvirtd started but never answered.
    #[error("libvirtd did not open its socket within 30 s")]
    LibvirtSilent,
}

impl RoleError {
    /// For `map_err`: `path` could not be read.
    pub(crate) fn read(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> RoleError {
        let path = path.to_owned();
        move |source| RoleError::Read { path, source }
    }

    /// For `map_err`: the folder `path` could not be made.
    pub(crate) fn create_dir(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> RoleError {
        let path = path.to_owned();
        move |source| RoleError::CreateDir { path, source }
    }

    /// For `map_err`: `path` could not be written.
    pub(crate) fn write(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> RoleError {
        let path = path.to_owned();
        move |source| RoleError::Write { path, source }
    }
}

/// A component key as kept on disk, `DATA_DIR/credentials/components/NAME.json` (0600).
#[derive(Serialize, Deserialize)]
struct KeyFile {
    user: String,
    access_key_id: String,
    secret_access_key: String,
}

impl KeyFile {
    /// Where component `name`'s key is kept.
    fn path(config: &Config, name: &str) -> PathBuf {
        config
            .data_dir
            .join("credentials/components")
            .join(format!("{name}.json"))
    }

    /// The key kept at `path`: `None` when there is none, an error when it is unreadable.
    fn read(path: &std::path::Path) -> Result<Option<KeyFile>, RoleError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|source| RoleError::NotAKey {
                        path: path.to_owned(),
                        source,
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(RoleError::read(path)(e)),
        }
    }

    /// Keeps the key at `path`, readable by its owner only.
    fn save(&self, path: &std::path::Path) -> Result<(), RoleError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(RoleError::create_dir(dir))?;
        }
        let bytes = serde_json::to_vec_pretty(self).map_err(RoleError::EncodeKey)?;
        identity::write_atomic(path, &bytes, 0o600).map_err(RoleError::write(path))
    }

    /// The key, signing for `config`'s region.
    fn into_key(self, config: &Config) -> ComponentKey {
        ComponentKey {
            access_key_id: self.access_key_id,
            secret_access_key: self.secret_access_key,
            region: config.region.clone(),
        }
    }
}

/// The own key of component `name` (`clc`, `cc-ZONE`, `nc-HOST`) of kind `kind`: a user of
/// the cloud admin account with the component's role and its own access key, made on first
/// start and kept in the data dir. Deleting the key (`koala admin delete-access-key --user
/// NAME`) revokes the component.
pub fn component_key(
    identity: &Identity,
    config: &Config,
    kind: ComponentKind,
    name: &str,
) -> Result<ComponentKey, RoleError> {
    let path = KeyFile::path(config, name);
    // A key file that is unreadable, or whose key was revoked, is replaced.
    if let Ok(Some(file)) = KeyFile::read(&path) {
        let current = identity::SecretSource::secret(identity, &file.access_key_id)
            .is_some_and(|(p, _)| p.user_name == file.user && p.component() == Some(kind));
        if current {
            return Ok(file.into_key(config));
        }
    }
    let creds = identity
        .register_component(kind, name)
        .map_err(|source| RoleError::Register {
            name: name.to_owned(),
            source,
        })?;
    let file = KeyFile {
        user: name.to_owned(),
        access_key_id: creds.access_key_id,
        secret_access_key: creds.secret_access_key,
    };
    file.save(&path)?;
    Ok(file.into_key(config))
}

/// The node's name in its cluster.
pub fn node_host(config: &Config) -> String {
    config.node.host.clone().unwrap_or_else(host_name)
}

/// Opens this host's node controller.
pub async fn open_node(
    config: &Config,
    key: ComponentKey,
    tls: &Tls,
    walrus_url: &str,
) -> Result<Node, RoleError> {
    let settings = &config.node;
    // Without a config drive writer every instance would fail at its boot: refuse now.
    compute::config_drive::check_writer().map_err(RoleError::NodeProgram)?;
    let qemu_user = QemuUser::lookup(qemu_user::DEFAULT_NAME).map_err(RoleError::QemuUser)?;
    let uri = settings
        .libvirt_uri
        .clone()
        .unwrap_or_else(|| SYSTEM_URI.to_owned());
    let dir = match &settings.dir {
        Some(dir) => dir.clone(),
        None => default_node_dir(config)?,
    };
    let choice = settings.accel;
    let guest = config
        .probe_guest
        .clone()
        .or_else(|| accel::host_kernel().map(ProbeGuest::Kernel));
    std::fs::create_dir_all(&dir).map_err(RoleError::create_dir(&dir))?;
    let probe = guest.map(|guest| Probe {
        guest,
        work_dir: dir.clone(),
        cache: Some(dir.join("accel-probe")),
        timeout: Duration::from_secs(20),
        qemu_user,
    });
    let accel_uri = uri.clone();
    let accel = tokio::task::spawn_blocking(move || match (choice, probe) {
        (AccelChoice::Auto, None) => {
            crate::say!(
                "No kernel to probe KVM with (no /boot/vmlinuz-*): guests run under TCG; set [node] accel = \"kvm\" to use KVM"
            );
            Ok(compute::accel::Accel::Tcg)
        }
        (choice, probe) => {
            let hv = Hypervisor::open(&accel_uri)?;
            let probe = probe.unwrap_or_else(|| Probe {
                guest: ProbeGuest::Kernel(PathBuf::new()),
                work_dir: PathBuf::new(),
                cache: None,
                timeout: Duration::ZERO,
                qemu_user,
            });
            accel::select(choice, &hv, &probe)
        }
    })
    .await
    .map_err(RoleError::Task)?
    .map_err(RoleError::Accel)?;
    crate::say!(
        "Guests on this node run under {}",
        match accel {
            compute::accel::Accel::Kvm => "KVM",
            compute::accel::Accel::Tcg => "TCG (QEMU's software emulation)",
        }
    );
    let cores = settings.cores.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1)
    });
    let memory_mib = settings
        .memory_mib
        .unwrap_or_else(|| host_memory_mib().saturating_sub(1024).max(256));
    let node_config = NodeConfig {
        host: node_host(config),
        dir,
        cache_limits: cache::Limits {
            max_bytes: settings.cache_mib.unwrap_or(50 << 10) << 20,
            min_age: Duration::from_secs(60),
        },
        libvirt_uri: uri,
        accel,
        qemu_user,
        cores,
        memory_mib,
        disk_gib: settings.disk_gib.unwrap_or(100),
        // The node plugs its guests' taps into the bridges of the cloud's one [network]
        // table, in its own network namespace.
        network: config.network.clone(),
        lazy_images: settings.lazy_images.unwrap_or(true),
    };
    let feed = WalrusFeed::new(RpcClient::new(key, tls, ComponentKind::Walrus), walrus_url);
    Node::open(node_config, feed).await.map_err(RoleError::Node)
}

/// The node's folder when none is configured: `DATA_DIR/node`, unless QEMU's user cannot
/// reach it (a data dir under a closed folder such as root's home), then
/// `/var/lib/koala/nodes/<a hash of the data dir's path>`, as Eucalyptus kept instances under
/// /var/lib/eucalyptus.
fn default_node_dir(config: &Config) -> Result<PathBuf, RoleError> {
    std::fs::create_dir_all(&config.data_dir).map_err(RoleError::create_dir(&config.data_dir))?;
    if compute::node::check_reachable(&config.data_dir).is_ok() {
        return Ok(config.data_dir.join("node"));
    }
    let data_dir =
        std::fs::canonicalize(&config.data_dir).map_err(|source| RoleError::Resolve {
            path: config.data_dir.clone(),
            source,
        })?;
    let dir = PathBuf::from("/var/lib/koala/nodes").join(node_dir_name(&data_dir));
    crate::say!(
        "QEMU's user cannot reach {}: the node keeps its instances and image cache in {}",
        data_dir.display(),
        dir.display()
    );
    Ok(dir)
}

/// The folder name of the node of the data dir `data_dir` (canonical) under /var/lib/koala:
/// 16 hex digits of the SHA-256 of its path, the same from one Rust release to the next (std's
/// `DefaultHasher` makes no such promise, and a new name would lose the node's instances).
fn node_dir_name(data_dir: &std::path::Path) -> String {
    use sha2::Digest;
    use std::os::unix::ffi::OsStrExt;
    let digest = sha2::Sha256::digest(data_dir.as_os_str().as_bytes());
    hex::encode(&digest[..8])
}

/// The host's memory in MiB, from `/proc/meminfo`.
fn host_memory_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kib| kib / 1024)
        .unwrap_or(1024)
}

/// Opens this host's cluster controller; in the MANAGED modes and STATIC with its gateway
/// (STATIC: only its DHCP server), whose interfaces must exist.
pub async fn open_cluster(
    config: &Config,
    key: ComponentKey,
    tls: &Tls,
) -> Result<Cluster, RoleError> {
    let policy = config.cluster.policy;
    let nodes = RpcClient::new(key, tls, ComponentKind::NodeController);
    let gateway = match (&config.network, &config.network_settings) {
        (Some(layout), Some(settings))
            if layout.mode().is_managed() || layout.mode() == network::Mode::Static =>
        {
            Some(
                network::Gateway::open(
                    layout,
                    settings,
                    config.data_dir.join("cluster").join("network"),
                )
                .await
                .map_err(RoleError::Gateway)?,
            )
        }
        _ => None,
    };
    Cluster::open(config.data_dir.join("cluster"), policy, nodes, gateway)
        .map_err(RoleError::Cluster)
}

/// The CLC's view of a cluster: the CC's client.
pub struct CcClusters {
    /// The CC's client.
    pub client: ClusterClient,
}

impl Clusters for CcClusters {
    fn run<'a>(&'a self, orders: &'a [RunOrder]) -> Pending<'a, Result<RunOutcome, RpcError>> {
        Box::pin(self.client.run(orders))
    }

    fn instances(&self) -> Pending<'_, Result<Vec<InstanceReport>, RpcError>> {
        Box::pin(self.client.instances())
    }

    fn terminate<'a>(&'a self, id: &'a str) -> Pending<'a, Result<InstanceReport, RpcError>> {
        Box::pin(self.client.terminate(id))
    }

    fn reboot<'a>(&'a self, id: &'a str) -> Pending<'a, Result<(), RpcError>> {
        Box::pin(self.client.reboot(id))
    }

    fn console<'a>(&'a self, id: &'a str) -> Pending<'a, Result<ConsoleOutput, RpcError>> {
        Box::pin(self.client.console(id))
    }

    fn nodes(&self) -> Pending<'_, Result<Vec<NodeStatus>, RpcError>> {
        Box::pin(self.client.nodes())
    }

    fn set_network<'a>(&'a self, plan: &'a network::Plan) -> Pending<'a, Result<(), RpcError>> {
        Box::pin(self.client.set_network(plan))
    }
}

/// The identity store as the verifier of internal calls.
pub fn verifier(identity: &Identity) -> Verifier {
    Verifier::local(Arc::new(identity.clone()))
}

/// The loopback URL of a port of this host (roles of one process call each other there).
pub fn loopback(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// Makes sure libvirt answers on this host: where no service manager started its daemons
/// (containers, CI machines) and Koala runs as root, starts `virtlogd` and `libvirtd` as
/// scripts/start-libvirt does; else says in one sentence what is missing.
pub async fn ensure_libvirt() -> Result<(), RoleError> {
    const SOCKET: &str = "/run/libvirt/libvirt-sock";
    // A socket file is not enough: one left by a daemon that died (or by a machine image
    // taken while it ran) refuses connections.
    let answers = || std::os::unix::net::UnixStream::connect(SOCKET).is_ok();
    open_kvm_to_qemu().await;
    if answers() {
        return Ok(());
    }
    let installed = |name: &str| {
        ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
            .iter()
            .any(|dir| std::path::Path::new(dir).join(name).exists())
    };
    if !installed("libvirtd") {
        return Err(RoleError::NoLibvirt);
    }
    let status = tokio::task::spawn_blocking(|| {
        std::process::Command::new("sh")
            .arg("-c")
            .arg("pgrep -x virtlogd >/dev/null || virtlogd -d; pgrep -x libvirtd >/dev/null || libvirtd -d")
            .status()
    })
    .await
    .map_err(RoleError::Task)?
    .map_err(RoleError::StartLibvirt)?;
    if !status.success() {
        return Err(RoleError::LibvirtNotStarted);
    }
    for _ in 0..300 {
        if answers() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(RoleError::LibvirtSilent)
}

/// What Debian's udev rules would have done where none ran (containers, CI machines): give
/// `/dev/kvm` to group `kvm` (QEMU's user is in it) with mode 0660. Left root-only, libvirt
/// finds KVM "no longer available" to QEMU's user on every call and probes QEMU's
/// capabilities again each time: the first instances took minutes to start. Only as root,
/// and only when the group exists; otherwise nothing is touched.
async fn open_kvm_to_qemu() {
    const KVM: &str = "/dev/kvm";
    let done = tokio::task::spawn_blocking(|| {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let meta = std::fs::metadata(KVM).ok()?;
        let gid = kvm_group_id()?;
        if meta.gid() == gid && meta.mode() & 0o777 == 0o660 {
            return Some(false);
        }
        // /proc/self belongs to the process' effective user.
        if std::fs::metadata("/proc/self").ok()?.uid() != 0 {
            return None;
        }
        std::os::unix::fs::chown(KVM, None, Some(gid)).ok()?;
        std::fs::set_permissions(KVM, std::fs::Permissions::from_mode(0o660)).ok()?;
        Some(true)
    })
    .await;
    if let Ok(Some(true)) = done {
        crate::say!("Gave {KVM} to group kvm (mode 0660) so that QEMU's user can open it");
    }
}

/// The id of group `kvm`, from `/etc/group`.
fn kvm_group_id() -> Option<u32> {
    std::fs::read_to_string("/etc/group")
        .ok()?
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            (fields.next()? == "kvm").then(|| fields.nth(1)?.parse().ok())?
        })
}

/// The CLC's key service for components on other hosts, under `/services/Identity/`:
/// `POST answers` with a list of [`identity::KeyQuestion`]s (what checking the signatures of
/// their callers takes: a scope's SigV4 signing key, or whether a SigV2 signature is a key's)
/// gives the [`identity::KeyAnswer`]s, and for Walrus `GET accounts/<id>` (grants name
/// accounts). No secret key is ever sent; each component learns only what verifying its own
/// callers takes ([`identity::may_learn`]), anything else reads as an unknown key.
pub async fn key_service(
    identity: Identity,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    use rpc::AccountRecord;
    let path = req.uri().path().to_owned();
    let verifier = verifier(&identity);
    let answer = async {
        let (caller, body) = rpc::authenticate(&verifier, req).await?;
        let refused = |what: &str| RpcError::new(RpcCode::AuthFailure, what.to_owned());
        let kind = caller
            .component()
            .ok_or_else(|| refused("only the cloud's components may ask this"))?;
        let rest = path.strip_prefix("/services/Identity/").unwrap_or_default();
        if rest == "answers" {
            let questions: Vec<identity::KeyQuestion> = rpc::parse(&body)?;
            let now = std::time::SystemTime::now();
            let answers = identity::answers_for(&identity, kind, &questions, now)
                .ok_or_else(|| RpcError::new(RpcCode::BadRequest, "too many questions at once"))?;
            return json(&answers);
        }
        if kind != ComponentKind::Walrus {
            return Err(refused("only Walrus may ask this"));
        }
        if let Some(id) = rest.strip_prefix("accounts/") {
            let failed =
                |e: identity::IdentityError| RpcError::new(RpcCode::InternalError, e.to_string());
            if !identity.account_exists(id).map_err(failed)? {
                return Err(RpcError::new(RpcCode::NotFound, format!("no account {id}")));
            }
            return json(&AccountRecord {
                account_id: id.to_owned(),
            });
        }
        Err(RpcError::new(
            RpcCode::NotFound,
            format!("no such service {path}"),
        ))
    }
    .await;
    match answer {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

/// A 200 with `value` as JSON.
fn json(value: &impl serde::Serialize) -> Result<axum::response::Response, RpcError> {
    Ok(rpc::json_response(http::StatusCode::OK, value))
}

/// The own key and TLS settings of a component on a host without the identity store
/// (`koala cluster`, `koala node`, `koala walrus --cloud-url`): kept in
/// `DATA_DIR/credentials/components/NAME.json` and `DATA_DIR/keys/`; on first start the
/// component is registered through the account service (`RegisterComponent`, over HTTPS
/// trusting the cloud certificate the eucarc names) with the cloud admin's credentials from
/// the environment (the admin's eucarc sourced once, as Eucalyptus' registration copied keys
/// once). Its TLS private key is made here and never sent; the CLC certifies its public key.
pub fn remote_component(
    config: &Config,
    kind: ComponentKind,
    name: &str,
    cloud_url: &str,
) -> Result<(ComponentKey, Tls), RoleError> {
    let path = KeyFile::path(config, name);
    if let (Some(file), Some(tls)) = (KeyFile::read(&path)?, crate::certs::remote(config, name)?) {
        return Ok((file.into_key(config), tls));
    }
    let admin = euca2ools::client::EnvCredentials::from_env().map_err(|source| {
        RoleError::NoAdminCredentials {
            path: path.clone(),
            source,
        }
    })?;
    if !cloud_url.starts_with("https://") {
        return Err(RoleError::NotHttps(cloud_url.to_owned()));
    }
    let public_key = crate::certs::registration_key(config, name)?;
    let hosts = crate::certs::host_names(config);
    let host_params: Vec<(String, &str)> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| (format!("HostName.{}", i + 1), h.as_str()))
        .collect();
    let mut params = vec![
        ("Kind", kind.as_str()),
        ("ComponentName", name),
        ("PublicKey", public_key.as_str()),
    ];
    params.extend(host_params.iter().map(|(k, v)| (k.as_str(), *v)));
    let euare = format!("{}/services/Euare", cloud_url.trim_end_matches('/'));
    let body = euca2ools::client::query_call(
        &euare,
        "iam",
        "2010-05-08",
        "RegisterComponent",
        &params,
        &admin,
    )
    .map_err(|source| RoleError::RegisterRemotely {
        name: name.to_owned(),
        source,
    })?;
    let field = |tag| euca2ools::client::xml_text(&body, tag).ok_or(RoleError::NoField(tag));
    crate::certs::keep_registration(
        config,
        name,
        &field("Certificate")?,
        &field("CloudCertificate")?,
    )?;
    let file = KeyFile {
        user: name.to_owned(),
        access_key_id: field("AccessKeyId")?,
        secret_access_key: field("SecretAccessKey")?,
    };
    file.save(&path)?;
    crate::say!(
        "Registered the component {name}; its key is in {}",
        path.display()
    );
    let tls = crate::certs::remote(config, name)?
        .ok_or_else(|| RoleError::NoCertificate(name.to_owned()))?;
    Ok((file.into_key(config), tls))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_damaged_component_key_is_named_with_its_cause() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("clc.json");
        std::fs::write(&path, "not a key").expect("write");
        let Err(err) = KeyFile::read(&path) else {
            panic!("read a damaged key");
        };
        assert!(matches!(err, RoleError::NotAKey { .. }), "{err:?}");
        let chain = rpc::error_chain(&err);
        let expected = format!("{} is not a component key: expected ", path.display());
        assert!(chain.starts_with(&expected), "{chain}");
    }

    #[test]
    fn the_daemon_prints_a_role_failure_as_the_role_words_it_with_every_cause() {
        let err = crate::server::ServerError::from(RoleError::Node(compute::node::NodeError::Io {
            path: PathBuf::from("/srv/node"),
            source: std::io::Error::other("disk on fire"),
        }));
        assert_eq!(
            rpc::error_chain(&err),
            "cannot start the node controller: cannot use /srv/node: disk on fire"
        );
    }

    #[test]
    fn the_node_folder_name_is_a_stable_hash_of_the_data_dir() {
        // sha256("/srv/koala-data"), first 8 bytes: fixed for good, whatever the toolchain.
        let name = node_dir_name(std::path::Path::new("/srv/koala-data"));
        assert_eq!(name, "437cbc99c0af8af5");
        assert_ne!(
            name,
            node_dir_name(std::path::Path::new("/srv/koala-data2"))
        );
    }
}

//! The cloud's configuration: `DATA_DIR/koala.toml` (Koala's eucalyptus.conf), overridden by
//! environment variables, overridden by command-line flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use compute::accel::{AccelChoice, ProbeGuest};
use compute::cluster::Policy;
use ec2_api::{PropertyError, StartingValues};
use serde::Deserialize;

/// The file's name inside the data dir.
pub const CONFIG_FILE: &str = "koala.toml";

/// The main port's default, Eucalyptus' 8773.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8773";

/// The web console's default address, Eucalyptus' 8443.
pub const DEFAULT_CONSOLE_LISTEN: &str = "0.0.0.0:8443";

/// The region name written into credentials when none is configured (Eucalyptus' own).
pub const DEFAULT_REGION: &str = "eucalyptus";

/// What `koala.toml` may set; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Main listen address, `HOST:PORT`.
    pub listen: Option<String>,
    /// The URL clients should use, when the listen address is not it (NAT, proxy, DNS name).
    pub public_url: Option<String>,
    /// Region name in credentials and bucket locations.
    pub region: Option<String>,
    /// Domain for virtual-host-style S3 (`bucket.DOMAIN`).
    pub virtual_host_domain: Option<String>,
    /// The availability zone of this host's cluster.
    pub zone: Option<String>,
    /// Starting values of cloud properties (`euca-describe-properties` lists them all).
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
    /// The node controller of this host.
    #[serde(default)]
    pub node: NodeSettings,
    /// The cluster controller of this host.
    #[serde(default)]
    pub cluster: ClusterSettings,
    /// TLS on the main port.
    #[serde(default)]
    pub tls: TlsSettings,
    /// What one client may hold of a server.
    #[serde(default)]
    pub limits: LimitSettings,
    /// Walrus on this host.
    #[serde(default)]
    pub walrus: WalrusSettings,
    /// The cloud controller's store.
    #[serde(default)]
    pub cloud: CloudControllerSettings,
    /// The web console.
    #[serde(default)]
    pub console: ConsoleSettings,
    /// The console's mail.
    #[serde(default)]
    pub mail: MailConfig,
    /// Guest networking (eucalyptus.conf's `VNET_*`); without it instances get no NIC.
    pub network: Option<network::NetworkSettings>,
}

/// `[limits]`: what one client may hold of each port of this host; every key is optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSettings {
    /// Seconds a client may take to send a request's head (and to stay idle between
    /// requests) [default: 30].
    pub header_timeout_secs: Option<u64>,
    /// Seconds a request body may send nothing while the server waits for it [default: 60].
    pub body_idle_timeout_secs: Option<u64>,
    /// Connections served at once per port [default: 4096].
    pub max_connections: Option<usize>,
    /// Connections served at once per port from one address [default: 512].
    pub max_connections_per_address: Option<usize>,
}

impl LimitSettings {
    /// The limits in force: the file's, else the defaults.
    fn resolve(&self) -> crate::serve::Limits {
        let default = crate::serve::Limits::default();
        let secs =
            |v: Option<u64>, d: std::time::Duration| v.map_or(d, std::time::Duration::from_secs);
        crate::serve::Limits {
            header_timeout: secs(self.header_timeout_secs, default.header_timeout),
            body_idle_timeout: secs(self.body_idle_timeout_secs, default.body_idle_timeout),
            max_connections: self.max_connections.unwrap_or(default.max_connections),
            max_per_address: self
                .max_connections_per_address
                .unwrap_or(default.max_per_address),
        }
    }
}

/// `[tls]`: how the main port (Walrus, EC2, Euare) speaks. It always answers HTTPS with a
/// certificate of the cloud's CA (clients trust `DATA_DIR/keys/cloud-cert.pem`, the eucarc's
/// `EUCALYPTUS_CERT` and `AWS_CA_BUNDLE`); the ports of the cluster and node controllers
/// speak HTTPS only.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// Whether the main port also answers plain HTTP, for old clients [default: true]; with
    /// false, credentials name `https://` URLs and plain requests get a 400 saying so.
    pub plain_http: Option<bool>,
}

/// `[console]`: the web console the cloud controller serves over HTTPS.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSettings {
    /// Where it listens, `HOST:PORT` [default: 0.0.0.0:8443].
    pub listen: Option<String>,
    /// Whether it is served at all [default: true].
    pub enabled: Option<bool>,
    /// The URL people reach it by, for the links in its mail [default: https://HOST:PORT/
    /// of the listen address, with this host's name for an all-addresses listen].
    pub public_url: Option<String>,
    /// Seconds a link in the console's mail (approve, reject, activate) works [default:
    /// 604800, a week].
    pub link_lifetime_secs: Option<u64>,
}

/// `[mail]`: where the console's mail goes.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    /// The SMTP relay, `HOST:PORT` [default: none: mail is written to DATA_DIR/mail/].
    pub smtp: Option<String>,
    /// The sender [default: koala@HOST].
    pub from: Option<String>,
}

/// `[cloud]`: where the cloud controller keeps its records.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudControllerSettings {
    /// A PostgreSQL database (`postgresql://USER@HOST/DB` or libpq's `host=… dbname=…`)
    /// holding the CLC's records and accounts instead of DATA_DIR/clc and DATA_DIR/identity,
    /// so that cloud controllers on several hosts share them: one leads, the others wait to
    /// take over [default: none, RocksDB in the data dir]. Read by the CLC's roles only.
    pub database: Option<String>,
}

/// `[walrus]`: Walrus on this host.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalrusSettings {
    /// Seconds a plain image no registered image uses is kept after its last use before it
    /// is collected [default: 600].
    pub image_grace_secs: Option<u64>,
    /// Where object bytes are kept: `files` in the data dir, or `rados`, a Ceph pool
    /// [default: files]. Metadata stays in the data dir's RocksDB either way.
    pub backend: Option<WalrusBackend>,
    /// The Ceph cluster's configuration, for `rados` [default: /etc/ceph/ceph.conf].
    pub rados_conf: Option<PathBuf>,
    /// The RADOS pool, for `rados` [default: koala].
    pub rados_pool: Option<String>,
    /// A PostgreSQL database (as `[cloud] database`) holding Walrus' records instead of
    /// the data dir's RocksDB, so that several Walrus front ends serve one namespace over
    /// one RADOS pool; `rados` only [default: none].
    pub database: Option<String>,
    /// With `database`: seconds a data file whose object is gone stays in the pool, so that
    /// a GET streaming it through another front end finishes [default: 600].
    pub removal_grace_secs: Option<u64>,
}

/// `[walrus] backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WalrusBackend {
    /// Files under the data dir.
    Files,
    /// A Ceph RADOS pool.
    Rados,
}

impl WalrusSettings {
    /// Where Walrus keeps object bytes (and its records, when shared: `database` comes
    /// with `rados` only, as [`Config::load`] checks).
    pub fn object_data(&self) -> walrus::ObjectData {
        match self.backend {
            None | Some(WalrusBackend::Files) => walrus::ObjectData::Files,
            Some(WalrusBackend::Rados) => walrus::ObjectData::Rados {
                conf: self
                    .rados_conf
                    .clone()
                    .unwrap_or_else(|| PathBuf::from("/etc/ceph/ceph.conf")),
                pool: self
                    .rados_pool
                    .clone()
                    .unwrap_or_else(|| "koala".to_owned()),
                shared: self.database.clone().map(|database| walrus::SharedRecords {
                    database,
                    removal_grace: std::time::Duration::from_secs(
                        self.removal_grace_secs.unwrap_or(600),
                    ),
                }),
            },
        }
    }

    /// The grace before an unused plain image is collected.
    pub fn image_grace(&self) -> std::time::Duration {
        self.image_grace_secs
            .map_or(walrus::IMAGE_GRACE, std::time::Duration::from_secs)
    }
}

/// `[node]`: what this host's node controller offers and how it runs guests. Every key is
/// optional; the defaults suit one host.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSettings {
    /// The node's name in the cluster [default: this host's name].
    pub host: Option<String>,
    /// `auto` (KVM if a probe kernel boots under it, else TCG), `kvm` or `tcg`.
    #[serde(default)]
    pub accel: AccelChoice,
    /// The kernel `auto` probes KVM with [default: the host's own, `/boot/vmlinuz-*`]; alone
    /// it boots to a panic, or with `probe_initrd` and `probe_disk` a guest that prints
    /// Koala's ready marker (scripts/build-test-guest makes one). No kernel: TCG.
    pub probe_kernel: Option<PathBuf>,
    /// The probe guest's ramdisk.
    pub probe_initrd: Option<PathBuf>,
    /// The probe guest's root disk.
    pub probe_disk: Option<PathBuf>,
    /// Where instances and the image cache live [default: DATA_DIR/node]. On XFS (reflink=1)
    /// or btrfs instance disks are reflinks, else qcow2 overlays.
    pub dir: Option<PathBuf>,
    /// Cores offered to instances [default: the host's].
    pub cores: Option<u32>,
    /// Memory offered to instances, MiB [default: the host's less 1 GiB].
    pub memory_mib: Option<u64>,
    /// Disk offered to instances, GiB [default: 100].
    pub disk_gib: Option<u64>,
    /// The image cache's size limit, MiB [default: 51200].
    pub cache_mib: Option<u64>,
    /// Boot an image the cache lacks as it arrives, each chunk fetched when the guest reads
    /// it and verified, rather than after copying all of it [default: true].
    pub lazy_images: Option<bool>,
    /// The libvirt URI [default: qemu:///system].
    pub libvirt_uri: Option<String>,
}

/// `[cluster]`: the cluster controller of this host.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// `least-loaded` (default) or `round-robin`.
    #[serde(default)]
    pub policy: Policy,
}

/// Values given on the command line or in the environment (clap reads both).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Overrides {
    /// Main listen address [default: 0.0.0.0:8773].
    #[arg(long, env = "KOALA_LISTEN")]
    pub listen: Option<String>,
    /// Public base URL clients should use (e.g. http://cloud.example.com:8773).
    #[arg(long, env = "KOALA_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Region name [default: eucalyptus].
    #[arg(long, env = "KOALA_REGION")]
    pub region: Option<String>,
    /// Domain for virtual-host-style S3 requests (`bucket.DOMAIN`).
    #[arg(long, env = "KOALA_VIRTUAL_HOST_DOMAIN")]
    pub virtual_host_domain: Option<String>,
    /// The web console's listen address [default: 0.0.0.0:8443; port 0: any free port].
    #[arg(long, env = "KOALA_CONSOLE_LISTEN")]
    pub console_listen: Option<String>,
}

/// The configuration in force.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where all state lives.
    pub data_dir: PathBuf,
    /// Main listen address.
    pub listen: SocketAddr,
    /// Public base URL override.
    pub public_url: Option<String>,
    /// Region name.
    pub region: String,
    /// Domain for virtual-host-style S3.
    pub virtual_host_domain: Option<String>,
    /// The availability zone of this host's cluster.
    pub zone: String,
    /// Starting values of cloud properties, checked.
    pub properties: StartingValues,
    /// The node controller's settings.
    pub node: NodeSettings,
    /// The guest the node's KVM probe boots, when `[node] probe_*` names one [default: the
    /// host's own kernel].
    pub probe_guest: Option<ProbeGuest>,
    /// The cluster controller's settings.
    pub cluster: ClusterSettings,
    /// Whether the main port answers plain HTTP beside HTTPS.
    pub plain_http: bool,
    /// The limits of every port.
    pub limits: crate::serve::Limits,
    /// Walrus' settings.
    pub walrus: WalrusSettings,
    /// The CLC's PostgreSQL database, if it keeps its records there.
    pub database: Option<String>,
    /// The guest network's address plan, checked.
    pub network: Option<network::Layout>,
    /// The `[network]` table as written: the interfaces and servers the CC and NC use.
    pub network_settings: Option<network::NetworkSettings>,
    /// Where the CLC serves the instance metadata service (`[network] metadata_listen`):
    /// only in the MANAGED modes, where the CC sends guests' 169.254.169.254:80 to it.
    pub metadata_listen: Option<SocketAddr>,
    /// Where the CLC serves the web console; `None` when `[console] enabled = false`.
    pub console_listen: Option<SocketAddr>,
    /// The rest of `[console]`.
    pub console: ConsoleSettings,
    /// `[mail]`.
    pub mail: MailConfig,
}

/// The zone name when none is configured (Eucalyptus' first cluster's conventional name).
pub const DEFAULT_ZONE: &str = "cluster01";

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML, has unknown keys or a value a key does not take.
    #[error("{} is not a valid Koala configuration: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong and where (the key, its table and line).
        message: String,
    },
    /// The listen address is not `HOST:PORT`.
    #[error("listen address {0:?} is not HOST:PORT")]
    Listen(String),
    /// A starting value in `[properties]` names no property or is not one it takes.
    #[error("{} is not a valid Koala configuration: [properties]", path.display())]
    Property {
        /// The file.
        path: PathBuf,
        /// What is wrong with the value.
        #[source]
        source: PropertyError,
    },
    /// `[network]` that cannot be served.
    #[error("{} is not a valid Koala configuration", path.display())]
    Network {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: network::NetworkError,
    },
    /// `[walrus] database` without `backend = "rados"`: records shared by front ends whose
    /// bytes are each on their own disk would name files the others cannot read.
    #[error(
        "{} is not a valid Koala configuration: [walrus] database needs backend = \"rados\"",
        path.display()
    )]
    WalrusDatabase {
        /// The file.
        path: PathBuf,
    },
    /// `[node] probe_initrd` or `probe_disk` without the other two `probe_*` keys.
    #[error(
        "{} is not a valid Koala configuration: [node] probe_initrd and probe_disk go together, with probe_kernel",
        path.display()
    )]
    Probe {
        /// The file.
        path: PathBuf,
    },
}

impl Config {
    /// Loads `data_dir/koala.toml` if present and applies the overrides.
    pub fn load(data_dir: &Path, overrides: &Overrides) -> Result<Config, ConfigError> {
        Config::load_for_role(data_dir, overrides, DEFAULT_LISTEN)
    }

    /// Like [`Config::load`], for a role whose listen address defaults to `default_listen`
    /// (`koala cluster` 8774, `koala node` 8775).
    pub fn load_for_role(
        data_dir: &Path,
        overrides: &Overrides,
        default_listen: &str,
    ) -> Result<Config, ConfigError> {
        let path = data_dir.join(CONFIG_FILE);
        let file = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str::<FileConfig>(&text).map_err(|e| ConfigError::Parse {
                path: path.clone(),
                message: match e.span() {
                    Some(span) => format!("{}: {}", location(&text, span.start), e.message()),
                    None => e.message().to_owned(),
                },
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => FileConfig::default(),
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        let properties =
            StartingValues::new(file.properties).map_err(|source| ConfigError::Property {
                path: path.clone(),
                source,
            })?;
        let metadata_listen = file
            .network
            .as_ref()
            .and_then(network::NetworkSettings::metadata_address);
        let network = match &file.network {
            Some(settings) => Some(settings.layout().map_err(|source| ConfigError::Network {
                path: path.clone(),
                source,
            })?),
            None => None,
        };
        properties
            .check_network(network.as_ref())
            .map_err(|source| ConfigError::Property {
                path: path.clone(),
                source,
            })?;
        let node = &file.node;
        let probe_guest = match (&node.probe_kernel, &node.probe_initrd, &node.probe_disk) {
            (Some(kernel), Some(initrd), Some(disk)) => Some(ProbeGuest::Marked {
                kernel: kernel.clone(),
                initrd: initrd.clone(),
                disk: disk.clone(),
            }),
            (Some(kernel), None, None) => Some(ProbeGuest::Kernel(kernel.clone())),
            (None, None, None) => None,
            _ => return Err(ConfigError::Probe { path }),
        };
        let walrus = &file.walrus;
        if walrus.database.is_some() && walrus.backend != Some(WalrusBackend::Rados) {
            return Err(ConfigError::WalrusDatabase { path });
        }
        let listen = overrides
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| default_listen.to_owned());
        let console_listen = match file.console.enabled {
            Some(false) => None,
            _ => {
                let console = overrides
                    .console_listen
                    .clone()
                    .or(file.console.listen.clone())
                    .unwrap_or_else(|| DEFAULT_CONSOLE_LISTEN.to_owned());
                Some(console.parse().map_err(|_| ConfigError::Listen(console))?)
            }
        };
        Ok(Config {
            data_dir: absolute(data_dir)?,
            listen: listen.parse().map_err(|_| ConfigError::Listen(listen))?,
            public_url: overrides.public_url.clone().or(file.public_url),
            region: overrides
                .region
                .clone()
                .or(file.region)
                .unwrap_or_else(|| DEFAULT_REGION.to_owned()),
            virtual_host_domain: overrides
                .virtual_host_domain
                .clone()
                .or(file.virtual_host_domain),
            zone: file.zone.unwrap_or_else(|| DEFAULT_ZONE.to_owned()),
            properties,
            node: file.node,
            probe_guest,
            cluster: file.cluster,
            plain_http: file.tls.plain_http.unwrap_or(true),
            limits: file.limits.resolve(),
            walrus: file.walrus,
            database: file.cloud.database,
            network,
            network_settings: file.network,
            metadata_listen,
            console_listen,
            console: file.console,
            mail: file.mail,
        })
    }

    /// The base URL clients use: the public URL if configured, else the listen address, with
    /// the host's name in place of an all-addresses listen.
    pub fn base_url(&self) -> String {
        if let Some(url) = &self.public_url {
            return url.trim_end_matches('/').to_owned();
        }
        let port = self.listen.port();
        let host = match self.listen.ip() {
            ip if ip.is_unspecified() => host_name(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        let scheme = if self.plain_http { "http" } else { "https" };
        format!("{scheme}://{host}:{port}")
    }
}

/// Where the byte `at` of a koala.toml is, for an error message: the key on its line, with
/// the table it is in, and the line's number (`[node] accel (line 14)`).
fn location(text: &str, at: usize) -> String {
    let before = text.get(..at).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let number = before.matches('\n').count() + 1;
    let line = text.lines().nth(number - 1).unwrap_or_default().trim();
    let key = line.split('=').next().unwrap_or_default().trim();
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.split_inclusive(']').next().unwrap_or(l));
    match table {
        Some(table) if !key.starts_with('[') => format!("{table} {key} (line {number})"),
        _ => format!("{key} (line {number})"),
    }
}

/// `path` made absolute against the working directory (not resolved through links): every
/// path Koala hands to another program (libvirt opens console logs and disks, QEMU its
/// backing files) must mean the same from that program's working directory.
fn absolute(path: &Path) -> Result<PathBuf, ConfigError> {
    std::path::absolute(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

/// This host's name, for URLs when listening on all addresses.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The commented file written on first start, so an admin finds every knob in one place.
pub const DEFAULT_FILE: &str = r#"# Koala configuration (the counterpart of eucalyptus.conf).
# Command-line flags and KOALA_* environment variables override these values.

# Main listen address: Walrus (S3), the EC2 API and Euare share this port.
# listen = "0.0.0.0:8773"

# The URL clients should use, when the listen address is not it.
# public_url = "http://cloud.example.com:8773"

# Region name written into credentials.
# region = "eucalyptus"

# Serve virtual-host-style S3 requests for BUCKET.DOMAIN.
# virtual_host_domain = "walrus.example.com"

# The availability zone of this host's cluster.
# zone = "cluster01"

# Starting values of cloud properties; `euca-describe-properties` lists them all and
# `euca-modify-property -p NAME=VALUE` changes them while the cloud runs.
[properties]
# "cloud.network.public_ips" = "192.168.100.10-192.168.100.50"
# "cloud.images.default_kernel" = "eki-12345678"
# "cloud.images.default_ramdisk" = "eri-12345678"
# "cloud.instances.start_timeout" = "600"
# "cloud.quota.images_per_account" = "unlimited"     # or a whole number; so are
# "cloud.quota.instances_per_account" = "unlimited"  # the quotas below
# "walrus.quota.buckets_per_account" = "unlimited"
# "walrus.quota.bytes_per_account" = "unlimited"

# This host's node controller (under `koala up`, on the main port + 2).
[node]
# accel = "auto"          # auto (KVM if the host's kernel boots under it, else TCG), kvm or tcg
# probe_kernel = "/boot/vmlinuz-6.1.0-27-amd64"  # the kernel `auto` probes with
# dir = "/var/lib/koala/node"   # instances and image cache; XFS with reflink=1 avoids qcow2
# cores = 8
# memory_mib = 16384
# disk_gib = 100
# cache_mib = 51200
# lazy_images = true      # on a miss, boot while the image arrives (false: copy it first)

# This host's cluster controller (under `koala up`, on the main port + 1).
[cluster]
# policy = "least-loaded" # or round-robin

# The main port answers HTTPS (a certificate of the cloud's CA: keys/cloud-cert.pem) and,
# for old clients, plain HTTP; the cluster and node controllers' ports speak HTTPS only.
[tls]
# plain_http = true       # false: HTTPS only, and credentials name https:// URLs

# What one client may hold of each port.
[limits]
# header_timeout_secs = 30          # to send a request's head; also the keep-alive idle time
# body_idle_timeout_secs = 60       # a request body sending nothing this long ends the request
# max_connections = 4096            # served at once per port; more wait in the backlog
# max_connections_per_address = 512 # from one address; more are closed at once

# The web console (https://HOST:8443/, the cloud's certificate); first sign-in admin / admin.
[console]
# listen = "0.0.0.0:8443"
# enabled = true
# public_url = "https://cloud.example.com:8443/"  # for the links in its mail
# link_lifetime_secs = 604800                      # approve, reject and activate links

# The console's mail (applications, approvals); without a relay it is written to DATA_DIR/mail/.
[mail]
# smtp = "localhost:25"
# from = "Koala <koala@cloud.example.com>"

# The cloud controller's records and accounts: in DATA_DIR (RocksDB) unless a PostgreSQL
# database is named; cloud controllers on several hosts naming one database share the cloud,
# one leading and the others waiting to take over (give each a copy of DATA_DIR/keys/).
[cloud]
# database = "postgresql://koala@db.example.com/koala"

# Walrus on this host.
[walrus]
# image_grace_secs = 600  # a plain image no registered image uses is removed after this
# backend = "files"       # or "rados": object bytes in a Ceph pool
# rados_conf = "/etc/ceph/ceph.conf"
# rados_pool = "koala"
# database = "postgresql://koala@db.example.com/koala"  # rados only: front ends share records
# removal_grace_secs = 600  # with database: a removed object's bytes stay this long for readers

# Guest networking (eucalyptus.conf's VNET_*); without this table instances get no NIC.
# [network]
# mode = "managed-novlan"          # system, static, managed or managed-novlan
# bridge = "br0"                   # the nodes' bridge (managed: private_interface = "eth1")
# private_subnet = "10.128.0.0/16" # the MANAGED modes cut each security group's subnet here
# addresses_per_network = 32
#                                  # managed: the VLANs cross hosts as VXLAN segments;
#                                  # vlan_transport = "802.1q" tags them instead
# metadata_listen = "0.0.0.0:8780" # MANAGED modes: where the CLC answers the instance
#                                  # metadata service (the CC sends guests' 169.254.169.254
#                                  # there); it answers each guest by its private address
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_file_beat_defaults() {
        let dir = std::env::temp_dir().join(format!("koala-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join(CONFIG_FILE),
            "listen = \"127.0.0.1:9000\"\nregion = \"r1\"\n",
        )
        .unwrap();
        let none = Overrides::default();
        let config = Config::load(&dir, &none).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:9000");
        assert_eq!(config.region, "r1");
        assert_eq!(config.base_url(), "http://127.0.0.1:9000");
        let flags = Overrides {
            listen: Some("127.0.0.2:9001".into()),
            ..Overrides::default()
        };
        assert_eq!(
            Config::load(&dir, &flags).unwrap().listen.to_string(),
            "127.0.0.2:9001"
        );
        std::fs::write(dir.join(CONFIG_FILE), "lsiten = 1\n").unwrap();
        assert!(matches!(
            Config::load(&dir, &none),
            Err(ConfigError::Parse { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// What loading a koala.toml holding `text` refuses with, as the daemon prints it.
    fn refusal(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), text).unwrap();
        let err = Config::load(dir.path(), &Overrides::default()).unwrap_err();
        rpc::error_chain(&err)
    }

    #[test]
    fn a_bad_accelerator_is_refused_naming_the_key_and_the_values() {
        let message = refusal("region = \"r1\"\n\n[node]\ncores = 2\naccel = \"kvmm\"\n");
        assert!(message.contains("[node] accel (line 5)"), "{message}");
        assert!(
            message.contains("expected one of `auto`, `kvm`, `tcg`"),
            "{message}"
        );
    }

    #[test]
    fn a_bad_placement_policy_is_refused_naming_the_key_and_the_values() {
        let message = refusal("[cluster] # the CC\npolicy = \"greedy\"\n");
        assert!(message.contains("[cluster] policy (line 2)"), "{message}");
        assert!(
            message.contains("expected `least-loaded` or `round-robin`"),
            "{message}"
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let message = refusal("[node]\naccell = \"kvm\"\n");
        assert!(message.contains("[node] accell (line 2)"), "{message}");
        assert!(message.contains("unknown field `accell`"), "{message}");
        let message = refusal("[nodes]\naccel = \"kvm\"\n");
        assert!(message.contains("unknown field `nodes`"), "{message}");
    }

    #[test]
    fn bad_property_values_are_refused_at_load() {
        let message = refusal("[properties]\n\"cloud.vmtypes.m1.small\" = \"one\"\n");
        assert!(
            message.contains("[properties]: cloud.vmtypes.m1.small"),
            "{message}"
        );
        let message = refusal("[properties]\n\"cloud.nothing\" = \"1\"\n");
        assert!(
            message.contains("no cloud property cloud.nothing"),
            "{message}"
        );
    }

    #[test]
    fn a_public_pool_inside_the_guests_private_space_is_refused_at_load() {
        let table = "[network]\nmode = \"managed-novlan\"\nbridge = \"br0\"\nprivate_subnet = \"10.77.0.0/24\"\n";
        let message = refusal(&format!(
            "[properties]\n\"cloud.network.public_ips\" = \"10.98.0.1, 10.77.0.9\"\n{table}"
        ));
        assert!(
            message.contains(
                "[properties]: cloud.network.public_ips = \"10.98.0.1,10.77.0.9\" is refused: \
                 10.77.0.9 is inside the guests' private space 10.77.0.0/24"
            ),
            "{message}"
        );
    }

    #[test]
    fn probe_keys_go_together() {
        let message = refusal("[node]\nprobe_initrd = \"/i\"\n");
        assert!(
            message.contains("probe_initrd and probe_disk go together"),
            "{message}"
        );
    }

    #[test]
    fn a_walrus_database_needs_rados() {
        let message = refusal("[walrus]\ndatabase = \"host=/tmp dbname=koala\"\n");
        assert!(
            message.contains("[walrus] database needs backend = \"rados\""),
            "{message}"
        );
    }

    #[test]
    fn valid_values_load() {
        let dir = tempfile::tempdir().unwrap();
        let text =
            "[node]\naccel = \"tcg\"\nprobe_kernel = \"/k\"\n[cluster]\npolicy = \"round-robin\"\n";
        std::fs::write(dir.path().join(CONFIG_FILE), text).unwrap();
        let config = Config::load(dir.path(), &Overrides::default()).unwrap();
        assert_eq!(config.node.accel, AccelChoice::Tcg);
        assert_eq!(config.cluster.policy, Policy::RoundRobin);
        assert_eq!(config.probe_guest, Some(ProbeGuest::Kernel("/k".into())));
    }

    #[test]
    fn default_file_parses() {
        toml::from_str::<FileConfig>(DEFAULT_FILE).unwrap();
    }

    #[test]
    fn metadata_is_served_where_the_network_table_says_in_the_managed_modes() {
        let load = |text: &str| {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(CONFIG_FILE), text).unwrap();
            Config::load(dir.path(), &Overrides::default()).unwrap()
        };
        assert_eq!(load("").metadata_listen, None);
        let system = load("[network]\nmode = \"system\"\nbridge = \"br0\"\n");
        assert_eq!(system.metadata_listen, None);
        // The sample's [network] lines, uncommented, are a MANAGED network with the default.
        let (_, sample) = DEFAULT_FILE.split_once("# [network]\n").unwrap();
        let sample: String = sample
            .lines()
            .map(|l| format!("{}\n", l.strip_prefix("# ").unwrap_or(l)))
            .collect();
        let managed = load(&format!("[network]\n{sample}"));
        assert!(managed.network.is_some());
        assert_eq!(
            managed.metadata_listen,
            Some(network::DEFAULT_METADATA_LISTEN)
        );
        let set = load(&format!(
            "[network]\n{}",
            sample.replace("0.0.0.0:8780", "127.0.0.1:9780")
        ));
        assert_eq!(set.metadata_listen, Some("127.0.0.1:9780".parse().unwrap()));
        let message = refusal(
            "[network]\nmode = \"system\"\nbridge = \"br0\"\nmetadata_listen = \"0.0.0.0:1\"\n",
        );
        assert!(
            message.contains("metadata_listen has no meaning in mode = \"system\""),
            "{message}"
        );
    }
}

//! The node controller (NC): runs instances as libvirt domains booted from copy-on-write
//! clones of cached images.
//!
//! Each instance has a folder `DIR/instances/<id>/` holding its state file (`state.json`: the
//! run order, the state, why it ended), its disks (`root`, and the blank `ephemeral0` and
//! `swap` that share the VM type's disk with it, see [`rpc::disk_layout`]), its config drive
//! and its console log.
//! The folders are the node's truth: at start the node reads them back, compares them with
//! libvirt, adopts the domains still running, ends the instances whose start a crash
//! interrupted, and destroys Koala domains that no folder claims. Nothing is leaked.
//!
//! An instance's start (image lookup, fetch into the cache, clone, config drive, domain, its
//! NIC plugged) runs in its own task under a time limit: whatever fails or takes too long ends
//! the instance in `terminated` with the reason, never in a `pending` that lasts for ever. A
//! monitor notices guests that power off and domains that vanish.
//!
//! With `[network]`, an order's NIC becomes a tap the node plugs into the guest's bridge
//! ([`nic`]) while the domain is paused; the per-VLAN bridges the node makes for MANAGED are
//! recorded in `DIR/links.json`, kept while a guest of the node uses them and removed after.

mod feed;
pub mod http;
pub mod nic;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use cache::{
    Base, CacheError, FillState, ImageCache, LazyImage, Lease, Limits, NbdExport, Sha256Digest,
};
use serde::{Deserialize, Serialize};
use tokio::task::AbortHandle;

pub use feed::{ImageFetch, WalrusFeed};

use crate::accel::Accel;
use crate::config_drive::ConfigDrive;
use crate::domain::{Disk, DiskFormat, DomainSpec, VmSize};
use crate::hypervisor::{DomainState, Hypervisor};
use crate::lock;
use crate::qemu_user::QemuUser;
use rpc::disk_layout::{DiskLayout, ImageTooLarge, EPHEMERAL0, SWAP};
use rpc::{
    ConsoleOutput, ImageRef, InstanceReport, InstanceState, NicOrder, NodeResources, RpcCode,
    RpcError, RunOrder, StateReason,
};

/// How often the monitor looks at the domains.
const MONITOR_PERIOD: Duration = Duration::from_secs(1);

/// How long a terminated instance stays listed (EC2 shows them for about an hour).
const TERMINATED_KEPT: Duration = Duration::from_secs(3600);

/// The most console output returned, as EC2 does (its last 64 KiB).
const CONSOLE_MAX: u64 = 64 * 1024;

/// The root disk's file in the instance folder.
const ROOT_FILE: &str = "root";

/// The config drive's file in the instance folder.
const CONFIG_FILE: &str = "config.iso";

/// How long a node remembers a run order it refused, to refuse it again: the CC asks a node
/// that did not answer an order by sending it again, and moves it to another node only if
/// this node says no; the first order, maybe still on its way, must not land afterwards.
const REFUSED_KEPT: Duration = Duration::from_secs(3600);

/// The files an instance's end deletes: its disks and config drive (the console log and the
/// state file stay while the instance is listed).
const DISPOSABLE_FILES: [&str; 4] = [ROOT_FILE, EPHEMERAL0, SWAP, CONFIG_FILE];

/// What a node offers and where it keeps things.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The node's registered host name.
    pub host: String,
    /// The node's folder: `instances/` and `cache/` below it.
    pub dir: PathBuf,
    /// The image cache's limits.
    pub cache_limits: Limits,
    /// The libvirt URI (`qemu:///system`).
    pub libvirt_uri: String,
    /// KVM or TCG, already chosen (see [`crate::accel::select`]).
    pub accel: Accel,
    /// The user QEMU runs as.
    pub qemu_user: QemuUser,
    /// Cores offered to instances.
    pub cores: u32,
    /// Memory offered to instances, MiB.
    pub memory_mib: u64,
    /// Disk offered to instances, GiB.
    pub disk_gib: u64,
    /// Guest networking, the `[network]` table checked: which bridge each guest's tap joins,
    /// in the node controller's own network namespace (taps libvirt makes in another are
    /// moved there). `None`: instances have no NIC, and an order with one fails.
    pub network: Option<network::Layout>,
    /// On a miss, boot from the root image as it arrives (filled on demand through an NBD
    /// export) rather than after copying all of it: the start no longer waits for the image.
    pub lazy_images: bool,
}

/// A running node controller; cheap to clone.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    config: NodeConfig,
    /// This node controller's id (in `DIR/node-id`), written into its domains' metadata.
    node_id: String,
    cache: ImageCache,
    feed: WalrusFeed,
    hypervisor: Hypervisor,
    /// The guests' taps and the bridges the node makes for them, with `[network]`.
    links: Option<network::Links>,
    /// SYSTEM: where the node learns the addresses the site's DHCP gave its guests.
    sightings: Option<network::Sightings>,
    /// The MANAGED modes: the bridge rules pinning each guest to its MAC and address. Each
    /// rebuild takes its look at the instances and applies it under the lock, in a blocking
    /// task that runs to its end even if its caller is aborted, so the last applied is the
    /// newest look.
    guard: Option<(network::Guard, Mutex<()>)>,
    instances: Mutex<BTreeMap<String, Instance>>,
    /// The NBD exports of the images being filled, while an instance uses them.
    exports: Mutex<HashMap<Sha256Digest, Weak<NbdExport>>>,
    /// Numbers the exports' sockets, so that a new export never shares a path with one
    /// being dropped.
    next_export: std::sync::atomic::AtomicU64,
    /// The ids of the run orders refused lately, with when (ms since the epoch).
    refused: Mutex<BTreeMap<String, u64>>,
}

/// An instance in memory: its persisted record and what it holds.
struct Instance {
    record: InstanceFile,
    /// What keeps the images its disk and domain use.
    leases: Vec<Hold>,
    /// Its start task, while it runs.
    start: Option<AbortHandle>,
    /// Its state file.
    state_file: Arc<StateFile>,
    /// The version of `record`, counted up by each snapshot taken to be written.
    version: u64,
}

/// An instance's `state.json`, written so that the newest state always wins: writers take
/// their snapshot and its version under the node's lock, then write outside it (fsync is
/// slow), so two writers may reach the disk in the wrong order.
struct StateFile {
    /// The instance's folder.
    dir: PathBuf,
    /// The version on disk.
    written: Mutex<u64>,
}

impl StateFile {
    fn new(dir: PathBuf) -> StateFile {
        StateFile {
            dir,
            written: Mutex::new(0),
        }
    }

    /// Writes `record`, the instance's state at `version`, unless that or a newer version is
    /// on disk already; whether it wrote.
    fn write(&self, version: u64, record: &InstanceFile) -> std::io::Result<bool> {
        let mut written = lock(&self.written);
        if *written >= version {
            return Ok(false);
        }
        save(&self.dir, record)?;
        *written = version;
        Ok(true)
    }
}

/// The instance's `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct InstanceFile {
    order: RunOrder,
    state: InstanceState,
    reason: Option<StateReason>,
    /// The images with their hashes, once resolved.
    images: Vec<ImageRef>,
    /// SYSTEM: the address the guest was seen sending from (the site's DHCP server's), once
    /// seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    address: Option<std::net::Ipv4Addr>,
    /// When the order came, when libvirt was asked to start the domain, when it ran and when
    /// it ended (milliseconds since the epoch): the start latency split.
    timings: Timings,
}

/// The moments of an instance's start, in milliseconds since the epoch (in `state.json`,
/// where the start latency benchmark reads them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Timings {
    /// The run order arrived.
    received: u64,
    /// Everything was ready and libvirt was asked to start the domain.
    libvirt_asked: Option<u64>,
    /// The domain was running.
    running: Option<u64>,
    /// How long plugging the guest's NIC took, microseconds (the guest waits paused
    /// meanwhile): Koala's own share of its network setup, which the network benchmark
    /// reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nic_plug_us: Option<u64>,
    /// For a root image booted as it arrives: the bytes of it the node had fetched when the
    /// domain was running (the rest arrives behind). The network's share of a cold start,
    /// which the start latency benchmark reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    base_fetched_bytes: Option<u64>,
    /// The instance ended.
    ended: Option<u64>,
}

/// Why the node could not open.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The image cache failed to open.
    #[error("cannot open the image cache")]
    Cache(#[from] CacheError),
    /// libvirt failed.
    #[error(transparent)]
    Compute(#[from] crate::Error),
    /// QEMU's user cannot reach the node's folder: a folder above it is closed to others.
    #[error(
        "QEMU's user cannot reach {0}: give others search permission on it (chmod o+x) or \
         set [node] dir to a folder under an open path"
    )]
    Unreachable(PathBuf),
    /// The guests' network cannot be served: an interface `[network]` names is missing, or
    /// the record of the links the node made is unreadable.
    #[error("cannot set up the guests' network")]
    Network(#[from] network::LinksError),
    /// SYSTEM's table of the addresses guests use could not be made.
    #[error("cannot set up the table that learns the guests' addresses")]
    Sightings(#[from] network::NftError),
    /// The node's folder failed.
    #[error("cannot use {}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Why the bridge guard could not be rebuilt.
#[derive(Debug, thiserror::Error)]
enum GuardError {
    /// An instance's NIC names a group network this node's `[network]` table does not have
    /// (the CLC's table and the node's differ).
    #[error("instance {instance}'s NIC is on network {network}, which this node's [network] table does not have")]
    UnknownNetwork {
        /// The instance.
        instance: String,
        /// The network's index.
        network: u32,
    },
    /// nft refused the rules.
    #[error("nft refused the guard's rules")]
    Nft(#[source] network::NftError),
    /// The blocking task ended early.
    #[error("the guard's task failed: {0}")]
    Task(String),
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The images of an order once in the cache (or, for a root image arriving on demand, once
/// served): their references with digests, their sizes and what keeps them, in the order's
/// order (root, kernel, ramdisk).
#[derive(Default)]
struct Fetched {
    images: Vec<ImageRef>,
    sizes: Vec<u64>,
    leases: Vec<Hold>,
}

/// What keeps an image an instance uses available to its domain.
enum Hold {
    /// An image in the cache, pinned.
    Lease(Lease),
    /// A root image still arriving, which the domain reads through the node's NBD export of
    /// it (kept while any instance uses it).
    Lazy {
        image: LazyImage,
        export: Arc<NbdExport>,
    },
}

impl Hold {
    /// The cached file of the image (a kernel or ramdisk is always one).
    fn path(&self) -> Option<PathBuf> {
        match self {
            Hold::Lease(lease) => Some(lease.path()),
            Hold::Lazy { .. } => None,
        }
    }
}

impl Node {
    /// Opens the node: its folder, its cache, libvirt; reconciles the instance folders with
    /// libvirt's domains; starts the monitor.
    pub async fn open(config: NodeConfig, feed: WalrusFeed) -> Result<Node, NodeError> {
        let instances_dir = config.dir.join("instances");
        for dir in [&config.dir, &instances_dir] {
            std::fs::create_dir_all(dir).map_err(|source| NodeError::Io {
                path: dir.clone(),
                source,
            })?;
            // QEMU's user must reach the disks and logs inside.
            set_mode(dir, 0o755).map_err(|source| NodeError::Io {
                path: dir.clone(),
                source,
            })?;
        }
        check_reachable(&instances_dir)?;
        let cache = ImageCache::open(config.dir.join("cache"), config.cache_limits).await?;
        set_mode(&config.dir.join("cache"), 0o755).map_err(|source| NodeError::Io {
            path: config.dir.join("cache"),
            source,
        })?;
        let uri = config.libvirt_uri.clone();
        let hypervisor = tokio::task::spawn_blocking(move || Hypervisor::open(&uri))
            .await
            .map_err(|e| NodeError::Io {
                path: config.dir.clone(),
                source: std::io::Error::other(e.to_string()),
            })??;
        let node_id = node_id(&config.dir).map_err(|source| NodeError::Io {
            path: config.dir.join("node-id"),
            source,
        })?;
        let links = match &config.network {
            Some(layout) => {
                let netns = network::Netns::current()?;
                let record = config.dir.join("links.json");
                Some(network::Links::open(layout, netns, record).await?)
            }
            None => None,
        };
        let sightings = match &config.network {
            Some(layout) if layout.mode() == network::Mode::System => {
                let sightings = network::Sightings::new(network::Nft::here());
                let installing = sightings.clone();
                tokio::task::spawn_blocking(move || installing.install())
                    .await
                    .map_err(|e| NodeError::Io {
                        path: config.dir.clone(),
                        source: std::io::Error::other(e.to_string()),
                    })??;
                Some(sightings)
            }
            _ => None,
        };
        let guard = config
            .network
            .as_ref()
            .filter(|layout| layout.mode().is_managed())
            .map(|_| (network::Guard::new(network::Nft::here()), Mutex::new(())));
        let node = Node {
            inner: Arc::new(Inner {
                config,
                node_id,
                cache,
                feed,
                hypervisor,
                links,
                sightings,
                guard,
                instances: Mutex::new(BTreeMap::new()),
                exports: Mutex::new(HashMap::new()),
                next_export: std::sync::atomic::AtomicU64::new(0),
                refused: Mutex::new(BTreeMap::new()),
            }),
        };
        node.reconcile().await?;
        let monitor = node.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(MONITOR_PERIOD);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                monitor.monitor().await;
            }
        });
        Ok(node)
    }

    /// The node's registered host name.
    pub fn host(&self) -> &str {
        &self.inner.config.host
    }

    fn instance_dir(&self, id: &str) -> PathBuf {
        self.inner.config.dir.join("instances").join(id)
    }

    /// Accepts a run order: checks it and the room for it, records the instance as pending
    /// and starts it in the background. The instance id is the order's idempotency key: the
    /// same order again is answered with the instance as it is, or refused again if it was
    /// refused (for [`REFUSED_KEPT`]).
    pub fn run(&self, order: RunOrder) -> Result<InstanceReport, RpcError> {
        if !rpc::is_instance_id(&order.instance_id) {
            return Err(RpcError::new(
                RpcCode::BadRequest,
                format!("{:?} is not an instance id", order.instance_id),
            ));
        }
        base64::engine::general_purpose::STANDARD
            .decode(&order.user_data)
            .map_err(|_| RpcError::new(RpcCode::BadRequest, "the user data is not base64"))?;
        let id = order.instance_id.clone();
        let mut instances = lock(&self.inner.instances);
        if let Some(existing) = instances.get(&id) {
            // A repeated order (the CC retrying) is answered with the instance as it is.
            if existing.record.order == order {
                return Ok(self.report(existing));
            }
            return Err(RpcError::new(
                RpcCode::Conflict,
                format!("{id} already exists"),
            ));
        }
        if lock(&self.inner.refused).contains_key(&id) {
            return Err(RpcError::new(
                RpcCode::Conflict,
                format!("node {} refused {id} before", self.host()),
            ));
        }
        let free = self.resources_locked(&instances).free_slots(&order.vm);
        if free == 0 {
            self.refused(&id);
            return Err(RpcError::new(
                RpcCode::InsufficientInstanceCapacity,
                format!("node {} has no room for a {}", self.host(), order.vm.name),
            ));
        }
        let dir = self.instance_dir(&id);
        let state_file = Arc::new(StateFile::new(dir.clone()));
        let record = InstanceFile {
            order,
            state: InstanceState::Pending,
            reason: None,
            images: Vec::new(),
            address: None,
            timings: Timings {
                received: now_ms(),
                ..Timings::default()
            },
        };
        std::fs::create_dir(&dir)
            .and_then(|()| set_mode(&dir, 0o755))
            .and_then(|()| state_file.write(1, &record))
            .map_err(|e| {
                self.refused(&id);
                RpcError::new(RpcCode::InternalError, format!("cannot record {id}: {e}"))
            })?;
        let mut instance = Instance {
            record,
            leases: Vec::new(),
            start: None,
            state_file,
            version: 1,
        };
        let node = self.clone();
        let task_id = id.clone();
        let task = tokio::spawn(async move { node.start(task_id).await });
        instance.start = Some(task.abort_handle());
        let report = self.report(&instance);
        instances.insert(id, instance);
        Ok(report)
    }

    /// Remembers that the order of `id` was refused (see [`REFUSED_KEPT`]).
    fn refused(&self, id: &str) {
        let now = now_ms();
        let mut refused = lock(&self.inner.refused);
        refused.retain(|_, at| now.saturating_sub(*at) < REFUSED_KEPT.as_millis() as u64);
        refused.insert(id.to_owned(), now);
    }

    /// Starts an instance within its time limit; on failure or timeout, ends it with why.
    async fn start(&self, id: String) {
        let Some(timeout) = self.with_instance(&id, |i| {
            Duration::from_secs(i.record.order.start_timeout_secs)
        }) else {
            return;
        };
        let outcome = match tokio::time::timeout(timeout, self.boot(&id)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(StateReason::server_error(format!(
                "the instance did not start within {} s",
                timeout.as_secs()
            ))),
        };
        match outcome {
            Ok(()) => {
                self.update(&id, |i| {
                    i.start = None;
                    if i.record.state == InstanceState::Pending {
                        i.record.state = InstanceState::Running;
                        i.record.timings.running = Some(now_ms());
                        if let Some(Hold::Lazy { image, .. }) = i.leases.first() {
                            i.record.timings.base_fetched_bytes = Some(image.fetched_bytes());
                            // The rest of the image now, behind the guest's own reads.
                            image.fill_in_background();
                        }
                    }
                });
                // Recorded, so that a restart adopts the domain instead of ending it.
                self.persist(&id);
            }
            Err(reason) => {
                tracing::warn!(instance = %id, reason = %reason.message, "instance failed to start");
                self.update(&id, |i| i.start = None);
                self.end(&id, reason).await;
            }
        }
    }

    /// Fetches the images, makes the disks and the config drive, and starts the domain:
    /// each step in a function of its own, the instance's record updated between them so a
    /// termination meanwhile stops the boot.
    async fn boot(&self, id: &str) -> Result<(), StateReason> {
        let order = self
            .with_instance(id, |i| i.record.order.clone())
            .ok_or_else(|| StateReason::server_error("the instance was forgotten"))?;
        if order.nic.is_some() && self.inner.links.is_none() {
            return Err(StateReason::server_error(format!(
                "node {} has no [network] table: it cannot give the instance a NIC",
                self.host()
            )));
        }
        let fetched = self.fetch_images(&order).await?;
        // The CLC refused an image larger than its type's disk by the size its manifest
        // gives; this checks the size of the bytes the node got.
        let layout = DiskLayout::for_type(fetched.sizes[0], order.vm.disk_gib)
            .map_err(|e| image_too_large(&fetched.images[0].id, &order.vm.name, e))?;
        let (boot_files, root_kind) = self.clone_root(id, fetched).await?;
        let nic = order.nic.clone();
        let node = self.clone();
        let id_owned = id.to_owned();
        let spec = tokio::task::spawn_blocking(move || {
            node.domain_spec(&id_owned, &order, &layout, &boot_files, root_kind)
        })
        .await
        .map_err(|e| StateReason::server_error(format!("the start task failed: {e}")))??;
        self.start_domain(id, spec, nic.as_ref()).await
    }

    /// Resolves and fetches the order's images (root, kernel, ramdisk) into the cache
    /// together: one slow image does not delay the others. With `lazy_images` a root image
    /// the cache lacks is not waited for: it is served as it arrives.
    async fn fetch_images(&self, order: &RunOrder) -> Result<Fetched, StateReason> {
        let mut wanted = vec![order.image.clone(), order.kernel.clone()];
        wanted.extend(order.ramdisk.clone());
        let patience = Duration::from_secs(order.start_timeout_secs);
        let fetches = wanted.into_iter().enumerate().map(|(n, image)| {
            let node = self.clone();
            async move {
                let failed = |e: &dyn std::error::Error| {
                    StateReason::server_error(format!(
                        "image {}: {}",
                        image.id,
                        crate::error_chain(e)
                    ))
                };
                let (digest, size) = node.inner.feed.resolve(&image).await.map_err(|e| {
                    StateReason::server_error(format!("image {}: {}", image.id, e.message))
                })?;
                let fetch = node.inner.feed.for_image(&image);
                let hold = match n == 0 && node.inner.config.lazy_images {
                    true => match node
                        .inner
                        .cache
                        .open_lazy(digest, size, Arc::new(fetch), patience)
                        .await
                        .map_err(|e| failed(&e))?
                    {
                        Base::Cached(lease) => Hold::Lease(lease),
                        Base::Filling(image) => {
                            let export = node.export(&image).map_err(|e| failed(&e))?;
                            Hold::Lazy { image, export }
                        }
                    },
                    false => Hold::Lease(
                        node.inner
                            .cache
                            .get_or_fetch(digest, size, fetch)
                            .await
                            .map_err(|e| failed(&e))?,
                    ),
                };
                let resolved = ImageRef {
                    sha256: Some(digest.to_hex()),
                    size: Some(size),
                    ..image
                };
                Ok::<_, StateReason>((resolved, size, hold))
            }
        });
        let mut fetched = Fetched::default();
        for one in futures_util::future::join_all(fetches).await {
            let (image, size, hold) = one?;
            fetched.images.push(image);
            fetched.sizes.push(size);
            fetched.leases.push(hold);
        }
        Ok(fetched)
    }

    /// The node's NBD export of an image being filled: the one already serving it, or a new
    /// one on a socket QEMU's user may connect to.
    fn export(&self, image: &LazyImage) -> Result<Arc<NbdExport>, crate::Error> {
        let mut exports = lock(&self.inner.exports);
        exports.retain(|_, e| e.strong_count() > 0);
        // The export of this very image: one of the same digest may serve an image that
        // failed, whose instances are still ending.
        if let Some(export) = exports
            .get(&image.digest())
            .and_then(Weak::upgrade)
            .filter(|e| e.image().is(image))
        {
            return Ok(export);
        }
        let dir = self.inner.config.dir.join("nbd");
        std::fs::create_dir_all(&dir).map_err(crate::Error::io("create the folder", &dir))?;
        // Short names: a Unix socket's path must fit in 108 bytes.
        let n = self
            .inner
            .next_export
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let hex = image.digest().to_hex();
        let socket = dir.join(format!("{}-{n}.sock", &hex[..16]));
        let export = Arc::new(NbdExport::serve(image.clone(), &socket)?);
        self.inner.config.qemu_user.give(&socket)?;
        exports.insert(image.digest(), Arc::downgrade(&export));
        Ok(export)
    }

    /// Follows the image instance `id` boots from as it arrives: if it fails (a chunk damaged
    /// on Walrus, or Walrus away past the start timeout) the instance ends, its guest reading
    /// no more of it; once it is complete and the guest runs, the guest's root moves from the
    /// export to the cached file, so that the guest no longer needs this process.
    fn watch_lazy_root(&self, id: &str, image: &LazyImage) {
        let mut state = image.state();
        let node = self.clone();
        let id = id.to_owned();
        let image_id = self
            .with_instance(&id, |i| i.record.order.image.id.clone())
            .unwrap_or_default();
        let digest = image.digest();
        tokio::spawn(async move {
            let end = state
                .wait_for(|s| !matches!(s, FillState::Filling { .. }))
                .await
                .map(|s| s.clone());
            let instance_state = || node.with_instance(&id, |i| i.record.state);
            match end {
                Ok(FillState::Failed(e)) => {
                    if matches!(
                        instance_state(),
                        Some(InstanceState::Pending | InstanceState::Running)
                    ) {
                        let reason = StateReason::server_error(format!(
                            "image {image_id}: {}",
                            crate::error_chain(&e)
                        ));
                        node.end(&id, reason).await;
                    }
                }
                Ok(FillState::Complete) => {
                    while instance_state() == Some(InstanceState::Pending) {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    if instance_state() == Some(InstanceState::Running) {
                        node.back_root_with_cache(&id, digest).await;
                    }
                }
                _ => {}
            }
        });
    }

    /// Moves running instance `id`'s root from the export of its image to the image's cached
    /// file, and holds the image by a lease instead of the export. A failure is logged: the
    /// guest keeps reading through the export, which serves the cached file as long as this
    /// process runs.
    async fn back_root_with_cache(&self, id: &str, digest: Sha256Digest) {
        let lease = match self.inner.cache.pin(&digest) {
            Ok(lease) => lease,
            Err(e) => {
                tracing::warn!(instance = %id, "cannot hold the cached image: {}", crate::error_chain(&e));
                return;
            }
        };
        let node = self.clone();
        let name = id.to_owned();
        let path = lease.path();
        let moved = tokio::task::spawn_blocking(move || {
            node.inner.hypervisor.back_root_with_file(&name, &path)
        })
        .await;
        match moved {
            Ok(Ok(())) => {
                let replaced = self.update(id, |i| match i.leases.first_mut() {
                    Some(hold @ Hold::Lazy { .. }) => {
                        Some(std::mem::replace(hold, Hold::Lease(lease)))
                    }
                    _ => None,
                });
                tracing::info!(instance = %id, image = %digest, "the guest's root now reads the cached image");
                // The export goes with its last instance (outside the instances' lock).
                drop(replaced);
            }
            Ok(Err(e)) => {
                tracing::warn!(instance = %id, "the guest's root stays on the export: {}", crate::error_chain(&e))
            }
            Err(e) => tracing::warn!(instance = %id, "the task moving the root failed: {e}"),
        }
    }

    /// Clones the root image into the instance's folder (an overlay on its NBD export if it
    /// is still arriving) and records the images and what holds them with the instance: the
    /// kernel's and ramdisk's cached files, and how the root was cloned.
    async fn clone_root(
        &self,
        id: &str,
        fetched: Fetched,
    ) -> Result<(Vec<PathBuf>, cache::CloneKind), StateReason> {
        let boot_files: Vec<PathBuf> = fetched.leases[1..].iter().filter_map(Hold::path).collect();
        let root = self.instance_dir(id).join(ROOT_FILE);
        let (cloned, lazy) = match &fetched.leases[0] {
            Hold::Lease(lease) => (lease.clone_for_instance(&root).await, None),
            Hold::Lazy { image, export } => (
                image.clone_for_instance(export, &root).await,
                Some(image.clone()),
            ),
        };
        let kind = cloned.map_err(|e| {
            StateReason::server_error(format!("cannot clone the disk: {}", crate::error_chain(&e)))
        })?;
        let kept = self.update(id, |i| {
            i.record.images = fetched.images;
            i.leases = fetched.leases;
        });
        if kept.is_none() {
            return Err(StateReason::user_shutdown());
        }
        self.persist(id);
        // Watched once the disk is made and recorded, so that an end it causes removes it.
        if let Some(image) = lazy {
            self.watch_lazy_root(id, &image);
        }
        Ok((boot_files, kind))
    }

    /// Makes the instance's blank disks, config drive and console log, owned by the QEMU
    /// user, and the domain that boots them (blocking: call it off the reactor).
    fn domain_spec(
        &self,
        id: &str,
        order: &RunOrder,
        layout: &DiskLayout,
        boot_files: &[PathBuf],
        root_kind: cache::CloneKind,
    ) -> Result<DomainSpec, StateReason> {
        let config = &self.inner.config;
        let dir = self.instance_dir(id);
        let give = |path: &Path| {
            config
                .qemu_user
                .give(path)
                .map_err(|e| StateReason::server_error(crate::error_chain(&e)))
        };
        give(&dir.join(ROOT_FILE))?;
        let mut blank_disks = Vec::new();
        for blank in layout.blank_disks() {
            let path = dir.join(blank.name);
            cache::create_ephemeral(&path, blank.bytes).map_err(|e| {
                StateReason::server_error(format!(
                    "cannot make the {} disk: {}",
                    blank.name,
                    crate::error_chain(&e)
                ))
            })?;
            give(&path)?;
            blank_disks.push(Disk {
                path,
                format: DiskFormat::Raw,
                readonly: false,
            });
        }
        let user_data = base64::engine::general_purpose::STANDARD
            .decode(&order.user_data)
            .unwrap_or_default();
        let drive = ConfigDrive {
            instance_id: id.to_owned(),
            hostname: id.to_owned(),
            public_keys: order.key.clone().into_iter().collect(),
            user_data,
        };
        let config_drive = dir.join(CONFIG_FILE);
        drive.write(&config_drive).map_err(|e| {
            StateReason::server_error(format!(
                "cannot write the config drive: {}",
                crate::error_chain(&e)
            ))
        })?;
        let console_log = dir.join("console.log");
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&console_log)
            .map_err(|e| {
                StateReason::server_error(format!("cannot create the console log: {e}"))
            })?;
        give(&console_log)?;
        Ok(DomainSpec {
            node: self.inner.node_id.clone(),
            name: id.to_owned(),
            accel: config.accel,
            size: VmSize {
                vcpus: order.vm.cpus,
                memory_mib: order.vm.memory_mib,
            },
            kernel: boot_files[0].clone(),
            initrd: boot_files.get(1).cloned(),
            extra_cmdline: String::new(),
            root_disk: Disk {
                path: dir.join(ROOT_FILE),
                format: match root_kind {
                    cache::CloneKind::Reflink => DiskFormat::Raw,
                    cache::CloneKind::Qcow2Overlay => DiskFormat::Qcow2,
                },
                readonly: false,
            },
            blank_disks,
            config_drive: Some(config_drive),
            nic: order.nic.as_ref().map(|n| nic::domain_nic(id, n)),
            console_log,
            qemu_user: config.qemu_user,
        })
    }

    /// Defines and starts the domain through libvirt, unless the instance ended meanwhile.
    /// With a NIC the domain starts paused, its tap is plugged, then it runs: the guest's
    /// first packet already reaches its network.
    async fn start_domain(
        &self,
        id: &str,
        spec: DomainSpec,
        nic: Option<&NicOrder>,
    ) -> Result<(), StateReason> {
        if self
            .update(id, |i| i.record.timings.libvirt_asked = Some(now_ms()))
            .is_none()
        {
            return Err(StateReason::user_shutdown());
        }
        let node = self.clone();
        let xml = spec.to_xml();
        let paused = nic.is_some();
        tokio::task::spawn_blocking(move || match paused {
            true => node.inner.hypervisor.define_and_start_paused(&xml),
            false => node.inner.hypervisor.define_and_start(&xml),
        })
        .await
        .map_err(|e| StateReason::server_error(format!("the start task failed: {e}")))?
        .map_err(|e| {
            StateReason::server_error(format!(
                "libvirt refused the domain: {}",
                crate::error_chain(&e)
            ))
        })?;
        let Some(nic) = nic else {
            return Ok(());
        };
        // `boot` refused a NIC on a node without [network] before anything was made.
        let links = self.inner.links.as_ref().ok_or_else(|| {
            StateReason::server_error("the node has no [network] table for the instance's NIC")
        })?;
        let plugging = std::time::Instant::now();
        // The guard's rules name the tap, so they are made while the tap is plugged.
        let (plugged, guarded) = tokio::join!(nic::plug(links, id, nic), self.reguard());
        plugged.map_err(|e| {
            StateReason::server_error(format!(
                "cannot plug the instance's NIC: {}",
                crate::error_chain(&e)
            ))
        })?;
        guarded.map_err(|e| {
            StateReason::server_error(format!(
                "cannot guard the instance's NIC: {}",
                crate::error_chain(&e)
            ))
        })?;
        let took = plugging.elapsed().as_micros() as u64;
        self.update(id, |i| i.record.timings.nic_plug_us = Some(took));
        let node = self.clone();
        let name = id.to_owned();
        tokio::task::spawn_blocking(move || node.inner.hypervisor.resume(&name))
            .await
            .map_err(|e| StateReason::server_error(format!("the start task failed: {e}")))?
            .map_err(|e| {
                StateReason::server_error(format!(
                    "the plugged guest could not be let run: {}",
                    crate::error_chain(&e)
                ))
            })
    }

    /// Removes the bridge of `vlan` the node made once no other live instance of the node is
    /// on it (`id`'s domain is gone); a failure is logged, and the next start sweeps it.
    async fn release_vlan(&self, id: &str, vlan: u16) {
        let Some(links) = &self.inner.links else {
            return;
        };
        let in_use = || {
            lock(&self.inner.instances).values().any(|i| {
                i.record.order.instance_id != id
                    && matches!(
                        i.record.state,
                        InstanceState::Pending | InstanceState::Running
                    )
                    && i.record.order.nic.as_ref().and_then(|n| n.vlan) == Some(vlan)
            })
        };
        let released = match links.host_lock().await {
            Ok(_host) => links.release(vlan, in_use).await,
            Err(e) => Err(e),
        };
        if let Err(e) = released {
            tracing::warn!(instance = %id, vlan, "cannot remove the VLAN's bridge: {}", crate::error_chain(&e));
        }
    }

    /// Ends an instance: destroys its domain, deletes its disks (root, ephemeral0, swap) and
    /// config drive, releases its images, and records it as terminated with `reason`. Its
    /// console log stays.
    async fn end(&self, id: &str, reason: StateReason) {
        let leases = self.update(id, |i| {
            if let Some(start) = i.start.take() {
                start.abort();
            }
            if i.record.state != InstanceState::Terminated {
                i.record.state = InstanceState::ShuttingDown;
                i.record.reason = Some(reason.clone());
            }
            std::mem::take(&mut i.leases)
        });
        let Some(leases) = leases else { return };
        self.persist(id);
        let node = self.clone();
        let dir = self.instance_dir(id);
        let name = id.to_owned();
        let cleaned = tokio::task::spawn_blocking(move || {
            let destroyed = node.inner.hypervisor.destroy(&name).map(|_| ());
            remove_disposable(&dir, &name);
            destroyed
        })
        .await;
        match cleaned {
            Ok(Ok(())) => {}
            // The monitor's sweep destroys the domain later; the instance ends anyway.
            Ok(Err(e)) => {
                tracing::warn!(instance = %id, "cannot destroy the domain yet: {}", crate::error_chain(&e))
            }
            Err(e) => tracing::warn!(instance = %id, "the cleanup task failed: {e}"),
        }
        // The disks are gone: the images may be evicted once nothing else uses them. A root
        // image that was arriving is still completed (an instance that ended before its guest
        // ran did not start the fill): the cache keeps no half image.
        for hold in &leases {
            if let Hold::Lazy { image, .. } = hold {
                image.fill_in_background();
            }
        }
        drop(leases);
        // The tap went with QEMU; its VLAN's bridge goes with the VLAN's last guest here.
        if let Some(vlan) = self
            .with_instance(id, |i| i.record.order.nic.as_ref().and_then(|n| n.vlan))
            .flatten()
        {
            self.release_vlan(id, vlan).await;
        }
        self.update(id, |i| {
            i.record.state = InstanceState::Terminated;
            i.record.timings.ended.get_or_insert_with(now_ms);
        });
        self.persist(id);
        if let Err(e) = self.reguard().await {
            tracing::warn!(instance = %id, "cannot remove the NIC's guard: {}", crate::error_chain(&e));
        }
    }

    /// The MANAGED modes: rebuilds the bridge guard from the NICs of the instances whose
    /// guests may run (pending, running, shutting down: see `network::Guard`); nothing in the
    /// other modes.
    async fn reguard(&self) -> Result<(), GuardError> {
        if self.inner.guard.is_none() {
            return Ok(());
        }
        let node = self.clone();
        tokio::task::spawn_blocking(move || {
            let Some((guard, applying)) = &node.inner.guard else {
                return Ok(());
            };
            let _one_at_a_time = lock(applying);
            let nics = node.guarded_nics()?;
            guard.apply(&nics).map_err(GuardError::Nft)
        })
        .await
        .map_err(|e| GuardError::Task(e.to_string()))?
    }

    /// The NICs the guard pins: those of the instances whose guests may run. A NIC whose
    /// network the node's `[network]` table lacks is refused rather than left unguarded.
    fn guarded_nics(&self) -> Result<Vec<network::GuardedNic>, GuardError> {
        let Some(layout) = &self.inner.config.network else {
            return Ok(Vec::new());
        };
        let instances = lock(&self.inner.instances);
        let mut nics = Vec::new();
        for i in instances.values() {
            let (true, Some(nic)) = (
                matches!(
                    i.record.state,
                    InstanceState::Pending | InstanceState::Running | InstanceState::ShuttingDown
                ),
                i.record.order.nic.as_ref(),
            ) else {
                continue;
            };
            let id = &i.record.order.instance_id;
            let net = layout
                .network(nic.network)
                .ok_or_else(|| GuardError::UnknownNetwork {
                    instance: id.clone(),
                    network: nic.network,
                })?;
            nics.push(network::GuardedNic {
                tap: network::tap_name(id),
                mac: nic.mac,
                ip: nic.private_ip,
                subnet: net.subnet,
            });
        }
        Ok(nics)
    }

    /// Terminates an instance at the user's request.
    pub async fn terminate(&self, id: &str) -> Result<InstanceReport, RpcError> {
        let state = self
            .with_instance(id, |i| i.record.state)
            .ok_or_else(|| not_found(id))?;
        if state != InstanceState::Terminated {
            self.end(id, StateReason::user_shutdown()).await;
        }
        self.with_instance(id, |i| self.report(i))
            .ok_or_else(|| not_found(id))
    }

    /// Resets a running instance (EC2's RebootInstances).
    pub async fn reboot(&self, id: &str) -> Result<(), RpcError> {
        let state = self
            .with_instance(id, |i| i.record.state)
            .ok_or_else(|| not_found(id))?;
        if state != InstanceState::Running {
            return Err(RpcError::new(
                RpcCode::Conflict,
                format!("{id} is {}, not running", state.name()),
            ));
        }
        let node = self.clone();
        let name = id.to_owned();
        tokio::task::spawn_blocking(move || node.inner.hypervisor.reset(&name))
            .await
            .map_err(|e| RpcError::new(RpcCode::InternalError, e.to_string()))?
            .map_err(|e| RpcError::new(RpcCode::InternalError, crate::error_chain(&e)))
    }

    /// The last 64 KiB of an instance's console log.
    pub async fn console(&self, id: &str) -> Result<ConsoleOutput, RpcError> {
        if self.with_instance(id, |_| ()).is_none() {
            return Err(not_found(id));
        }
        let log = self.instance_dir(id).join("console.log");
        tokio::task::spawn_blocking(move || read_tail(&log))
            .await
            .map_err(|e| RpcError::new(RpcCode::InternalError, e.to_string()))?
            .map_err(|e| {
                RpcError::new(
                    RpcCode::InternalError,
                    format!("cannot read the console: {e}"),
                )
            })
    }

    /// Every instance the node knows, terminated ones included (for an hour).
    pub fn reports(&self) -> Vec<InstanceReport> {
        lock(&self.inner.instances)
            .values()
            .map(|i| self.report(i))
            .collect()
    }

    /// The node's size and what its live instances take.
    pub fn resources(&self) -> NodeResources {
        self.resources_locked(&lock(&self.inner.instances))
    }

    fn resources_locked(&self, instances: &BTreeMap<String, Instance>) -> NodeResources {
        let config = &self.inner.config;
        let mut resources = NodeResources {
            host: config.host.clone(),
            cores: config.cores,
            memory_mib: config.memory_mib,
            disk_gib: config.disk_gib,
            ..NodeResources::default()
        };
        // An instance takes its type's whole disk: its root, ephemeral0 and swap disks at their
        // apparent sizes (sparse or copy-on-write as they are: the guest may fill them).
        for i in instances.values() {
            if i.record.state != InstanceState::Terminated {
                resources.used_cores += i.record.order.vm.cpus;
                resources.used_memory_mib += i.record.order.vm.memory_mib;
                resources.used_disk_gib += i.record.order.vm.disk_gib;
            }
        }
        resources
    }

    fn report(&self, i: &Instance) -> InstanceReport {
        InstanceReport {
            instance_id: i.record.order.instance_id.clone(),
            state: i.record.state,
            reason: i.record.reason.clone(),
            node: self.host().to_owned(),
            images: i.record.images.clone(),
            private_ip: i.record.address,
        }
    }

    fn with_instance<T>(&self, id: &str, f: impl FnOnce(&Instance) -> T) -> Option<T> {
        lock(&self.inner.instances).get(id).map(f)
    }

    fn update<T>(&self, id: &str, f: impl FnOnce(&mut Instance) -> T) -> Option<T> {
        lock(&self.inner.instances).get_mut(id).map(f)
    }

    /// Writes an instance's state file, never over a newer state written meanwhile; a
    /// failure is logged (the memory state stays right, and the next write or the
    /// reconciliation at start repairs the file).
    fn persist(&self, id: &str) {
        let Some((file, version, record)) = self.update(id, |i| {
            i.version += 1;
            (i.state_file.clone(), i.version, i.record.clone())
        }) else {
            return;
        };
        if let Err(e) = file.write(version, &record) {
            tracing::error!(instance = %id, "cannot write the state file: {e}");
        }
    }

    /// SYSTEM: the addresses of the running guests whose address is not known yet, from
    /// what the node's table saw their taps send from; each recorded in its state.
    async fn learn_addresses(&self) {
        let Some(sightings) = self.inner.sightings.clone() else {
            return;
        };
        let wanting: Vec<String> = lock(&self.inner.instances)
            .values()
            .filter(|i| i.record.state == InstanceState::Running && i.record.address.is_none())
            .filter(|i| i.record.order.nic.is_some())
            .map(|i| i.record.order.instance_id.clone())
            .collect();
        if wanting.is_empty() {
            return;
        }
        let seen = match tokio::task::spawn_blocking(move || sightings.read()).await {
            Ok(Ok(seen)) => seen,
            Ok(Err(e)) => {
                tracing::warn!(
                    "cannot read the guests' addresses: {}",
                    crate::error_chain(&e)
                );
                return;
            }
            Err(_) => return,
        };
        for id in wanting {
            let tap = network::tap_name(&id);
            if let Some((_, ip)) = seen.iter().find(|(t, _)| *t == tap) {
                tracing::info!(instance = %id, %ip, "learned the guest's address");
                self.update(&id, |i| i.record.address = Some(*ip));
                self.persist(&id);
            }
        }
    }

    /// One look at the domains: guests that powered off end; Koala domains no live instance
    /// claims are destroyed; terminated instances past their hour are forgotten.
    async fn monitor(&self) {
        self.learn_addresses().await;
        // Only these can be judged gone: an instance that became running during the look
        // below may be missing from it, or seen shut off between its domain's define and
        // start, and must not be ended for that.
        let running_before: BTreeSet<String> = lock(&self.inner.instances)
            .values()
            .filter(|i| i.record.state == InstanceState::Running)
            .map(|i| i.record.order.instance_id.clone())
            .collect();
        let node = self.clone();
        let seen = tokio::task::spawn_blocking(move || {
            let hv = &node.inner.hypervisor;
            let names = hv.koala_domains(&node.inner.node_id)?;
            let mut states = BTreeMap::new();
            for name in names {
                if let Some(state) = hv.state(&name)? {
                    states.insert(name, state);
                }
            }
            Ok::<_, crate::Error>(states)
        })
        .await;
        let states = match seen {
            Ok(Ok(states)) => states,
            Ok(Err(e)) => {
                tracing::warn!("cannot list the domains: {}", crate::error_chain(&e));
                return;
            }
            Err(_) => return,
        };
        let (gone, leaked, expired) = {
            let instances = lock(&self.inner.instances);
            let gone: Vec<String> = instances
                .values()
                .filter(|i| i.record.state == InstanceState::Running)
                .filter(|i| running_before.contains(&i.record.order.instance_id))
                .filter(|i| {
                    !matches!(
                        states.get(&i.record.order.instance_id),
                        Some(
                            DomainState::Running | DomainState::Paused | DomainState::ShuttingDown
                        )
                    )
                })
                .map(|i| i.record.order.instance_id.clone())
                .collect();
            let leaked: Vec<String> = states
                .keys()
                .filter(|name| {
                    !instances.get(*name).is_some_and(|i| {
                        matches!(
                            i.record.state,
                            InstanceState::Pending | InstanceState::Running
                        )
                    })
                })
                .cloned()
                .collect();
            let cutoff = now_ms().saturating_sub(TERMINATED_KEPT.as_millis() as u64);
            let expired: Vec<String> = instances
                .values()
                .filter(|i| i.record.timings.ended.is_some_and(|t| t < cutoff))
                .map(|i| i.record.order.instance_id.clone())
                .collect();
            (gone, leaked, expired)
        };
        for id in gone {
            self.end(&id, StateReason::guest_shutdown()).await;
        }
        for name in leaked {
            let node = self.clone();
            let result =
                tokio::task::spawn_blocking(move || node.inner.hypervisor.destroy(&name)).await;
            if let Ok(Err(e)) = result {
                tracing::warn!("cannot destroy a leaked domain: {}", crate::error_chain(&e));
            }
        }
        for id in expired {
            lock(&self.inner.instances).remove(&id);
            if let Err(e) = std::fs::remove_dir_all(self.instance_dir(&id)) {
                tracing::warn!(instance = %id, "cannot delete the folder: {e}");
            }
        }
    }

    /// Plugs the taps of the running instances again (a restart may follow a change of their
    /// bridges) and removes the VLAN bridges the node made that no live instance uses. A tap
    /// that cannot be plugged is logged: its guest runs on, unreachable, rather than ended.
    async fn replug(&self) {
        let Some(links) = &self.inner.links else {
            return;
        };
        let running: Vec<(String, NicOrder)> = lock(&self.inner.instances)
            .values()
            .filter(|i| i.record.state == InstanceState::Running)
            .filter_map(|i| {
                Some((
                    i.record.order.instance_id.clone(),
                    i.record.order.nic.clone()?,
                ))
            })
            .collect();
        for (id, order) in &running {
            if let Err(e) = nic::plug(links, id, order).await {
                tracing::warn!(instance = %id, "cannot plug the NIC again: {}", crate::error_chain(&e));
            }
        }
        if let Err(e) = self.reguard().await {
            tracing::warn!("cannot guard the NICs again: {}", crate::error_chain(&e));
        }
        let in_use = |vlan| {
            lock(&self.inner.instances).values().any(|i| {
                matches!(
                    i.record.state,
                    InstanceState::Pending | InstanceState::Running
                ) && i.record.order.nic.as_ref().and_then(|n| n.vlan) == Some(vlan)
            })
        };
        let swept = match links.host_lock().await {
            Ok(_host) => links.sweep(in_use).await,
            Err(e) => Err(e),
        };
        if let Err(e) = swept {
            tracing::warn!(
                "cannot remove the unused VLAN bridges: {}",
                crate::error_chain(&e)
            );
        }
    }

    /// Reads the instance folders back after a restart and makes them agree with libvirt.
    async fn reconcile(&self) -> Result<(), NodeError> {
        let dir = self.inner.config.dir.join("instances");
        let entries = std::fs::read_dir(&dir).map_err(|source| NodeError::Io {
            path: dir.clone(),
            source,
        })?;
        let node = self.clone();
        let running: Vec<String> = tokio::task::spawn_blocking(move || {
            let hv = &node.inner.hypervisor;
            let mut running = Vec::new();
            for name in hv.koala_domains(&node.inner.node_id)? {
                if hv.state(&name)? == Some(DomainState::Running) {
                    running.push(name);
                }
            }
            Ok::<_, crate::Error>(running)
        })
        .await
        .map_err(|e| NodeError::Io {
            path: dir.clone(),
            source: std::io::Error::other(e.to_string()),
        })??;
        let mut to_end = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let record = std::fs::read(path.join("state.json"))
                .ok()
                .and_then(|bytes| serde_json::from_slice::<InstanceFile>(&bytes).ok());
            let Some(mut record) = record.filter(|r| r.order.instance_id == name) else {
                // Not an instance the node finished recording: nothing in it is live.
                tracing::warn!(
                    "removing {}, which holds no instance record",
                    path.display()
                );
                let _ = std::fs::remove_dir_all(&path);
                continue;
            };
            let mut leases = Vec::new();
            let mut reason = None;
            match record.state {
                // Ended; a disk written by a start task still running when it ended goes now.
                InstanceState::Terminated => remove_disposable(&path, &name),
                InstanceState::Pending => {
                    reason = Some(StateReason::server_error(
                        "the node restarted while the instance was starting",
                    ));
                }
                InstanceState::ShuttingDown => {
                    reason = record
                        .reason
                        .clone()
                        .or_else(|| Some(StateReason::user_shutdown()));
                }
                InstanceState::Running if running.contains(&name) => {
                    for image in &record.images {
                        let pinned = image
                            .sha256
                            .as_deref()
                            .and_then(|s| s.parse::<Sha256Digest>().ok())
                            .map(|d| self.inner.cache.pin(&d));
                        match pinned {
                            Some(Ok(lease)) => leases.push(Hold::Lease(lease)),
                            _ => {
                                reason = Some(StateReason::server_error(format!(
                                    "image {} left the node's cache",
                                    image.id
                                )))
                            }
                        }
                    }
                }
                InstanceState::Running => {
                    reason = Some(StateReason::server_error(
                        "the instance's domain was gone when the node restarted",
                    ));
                }
            }
            if reason.is_some() {
                // `end` keeps the first reason recorded; make this the one.
                record.reason = None;
                to_end.push((name.clone(), reason));
            }
            lock(&self.inner.instances).insert(
                name,
                Instance {
                    record,
                    leases,
                    start: None,
                    state_file: Arc::new(StateFile::new(path)),
                    version: 0,
                },
            );
        }
        for (id, reason) in to_end {
            if let Some(reason) = reason {
                self.end(&id, reason).await;
            }
        }
        self.replug().await;
        // Koala domains no folder claims are destroyed by the first monitor pass.
        self.monitor().await;
        Ok(())
    }
}

/// Why an instance whose image does not fit its VM type ended: the launch asked for what
/// cannot be, EC2's `Client.InternalError` ("a client error caused the instance to terminate
/// during launch").
fn image_too_large(image: &str, vm_type: &str, e: ImageTooLarge) -> StateReason {
    const CODE: &str = "Client.InternalError";
    StateReason {
        code: CODE.into(),
        message: format!("{CODE}: Client error on launch: image {image} does not fit instance type {vm_type}: {e}"),
    }
}

fn not_found(id: &str) -> RpcError {
    RpcError::new(RpcCode::NotFound, format!("this node has no instance {id}"))
}

/// Checks that every folder from `/` down to `dir` (which must exist) lets others search
/// it: QEMU runs as an unprivileged user and must open the disks and logs below.
pub fn check_reachable(dir: &Path) -> Result<(), NodeError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::fs::canonicalize(dir).map_err(|source| NodeError::Io {
        path: dir.to_owned(),
        source,
    })?;
    for folder in dir.ancestors() {
        let meta = std::fs::metadata(folder).map_err(|source| NodeError::Io {
            path: folder.to_owned(),
            source,
        })?;
        if meta.permissions().mode() & 0o001 == 0 {
            return Err(NodeError::Unreachable(folder.to_owned()));
        }
    }
    Ok(())
}

/// The node controller's id, made once: random, kept in `DIR/node-id`.
fn node_id(dir: &Path) -> std::io::Result<String> {
    let path = dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        Ok(_) => Err(std::io::Error::other("node-id is empty")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let bytes: [u8; 8] = rand::random();
            let id = format!("nc-{}", hex::encode(bytes));
            identity::write_atomic(&path, id.as_bytes(), 0o644)?;
            Ok(id)
        }
        Err(e) => Err(e),
    }
}

/// Deletes an instance's disks and config drive from its folder `dir`, those that exist.
fn remove_disposable(dir: &Path, id: &str) {
    for file in DISPOSABLE_FILES {
        match std::fs::remove_file(dir.join(file)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(instance = %id, "cannot delete {file}: {e}"),
        }
    }
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

fn save(dir: &Path, record: &InstanceFile) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(record).map_err(std::io::Error::other)?;
    identity::write_atomic(&dir.join("state.json"), &bytes, 0o644)
}

fn read_tail(log: &Path) -> std::io::Result<ConsoleOutput> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match std::fs::File::open(log) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(ConsoleOutput {
                output: String::new(),
                timestamp: now_ms() / 1000,
            })
        }
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    let start = meta.len().saturating_sub(CONSOLE_MAX);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::with_capacity((meta.len() - start) as usize);
    file.read_to_end(&mut bytes)?;
    let timestamp = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Ok(ConsoleOutput {
        output: base64::engine::general_purpose::STANDARD.encode(bytes),
        timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_error_tells_its_cause_once() {
        let err = NodeError::Io {
            path: PathBuf::from("/srv/node/instances"),
            source: std::io::Error::other("disk on fire"),
        };
        assert_eq!(
            rpc::error_chain(&err),
            "cannot use /srv/node/instances: disk on fire"
        );
    }

    fn record(state: InstanceState) -> InstanceFile {
        let image = ImageRef {
            id: "emi-00000001".into(),
            manifest: "b/k".into(),
            manifest_sha256: None,
            sha256: None,
            size: None,
        };
        InstanceFile {
            order: RunOrder {
                instance_id: "i-00000001".into(),
                reservation_id: "r-00000001".into(),
                owner: "000000000001".into(),
                image: image.clone(),
                kernel: image,
                ramdisk: None,
                vm: rpc::VmSpec {
                    name: "m1.small".into(),
                    cpus: 1,
                    memory_mib: 256,
                    disk_gib: 5,
                },
                key: None,
                user_data: String::new(),
                start_timeout_secs: 60,
                nic: None,
            },
            state,
            reason: None,
            images: Vec::new(),
            address: None,
            timings: Timings::default(),
        }
    }

    fn on_disk(dir: &Path) -> InstanceState {
        let bytes = std::fs::read(dir.join("state.json")).unwrap();
        serde_json::from_slice::<InstanceFile>(&bytes)
            .unwrap()
            .state
    }

    #[test]
    fn an_older_state_never_overwrites_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().to_owned());
        // Two writers took their snapshots (pending, then terminated) and reached the disk
        // in the other order.
        assert!(file.write(2, &record(InstanceState::Terminated)).unwrap());
        assert!(!file.write(1, &record(InstanceState::Pending)).unwrap());
        assert_eq!(on_disk(dir.path()), InstanceState::Terminated);
    }

    #[test]
    fn racing_writers_leave_the_newest_state() {
        let states = [
            InstanceState::Pending,
            InstanceState::Running,
            InstanceState::ShuttingDown,
            InstanceState::Terminated,
        ];
        for _ in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let file = Arc::new(StateFile::new(dir.path().to_owned()));
            let writers: Vec<_> = states
                .iter()
                .enumerate()
                .rev()
                .map(|(version, state)| {
                    let file = file.clone();
                    let record = record(*state);
                    std::thread::spawn(move || file.write(version as u64 + 1, &record).unwrap())
                })
                .collect();
            for w in writers {
                w.join().unwrap();
            }
            assert_eq!(on_disk(dir.path()), InstanceState::Terminated);
        }
    }
}

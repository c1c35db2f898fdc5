//! The cluster controller (CC): the registry of a cluster's nodes, their health and size,
//! and the placement of instances on them.
//!
//! Nodes are registered by the admin (`euca_conf --register-nodes`) and kept in
//! `DIR/nodes.json`. The CC polls each node for its resources and instances every few
//! seconds; placement uses the last poll plus what the CC placed since, so that a burst of
//! runs does not pile onto one node. The CC keeps no instance state of its own: the nodes are
//! the truth, and a CC restart loses nothing.

pub mod http;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::http::Method;
use serde::{Deserialize, Serialize};

use crate::lock;
use rpc::{
    ConsoleOutput, InstanceReport, NodeRegistration, NodeResources, NodeStatus, Placement,
    RpcClient, RpcCode, RpcError, RunOrder, RunOutcome,
};

/// How often nodes are polled; the CLC's questions are answered from the last poll.
const POLL_PERIOD: Duration = Duration::from_secs(1);

/// How long a node may take to answer a call.
const NODE_TIMEOUT: Duration = Duration::from_secs(10);

/// How instances are spread over nodes: `[cluster] policy` in koala.toml, whose other
/// values are refused when the file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// The node with the most free room for the instance's type (Eucalyptus' GREEDY is the
    /// other way round; spreading keeps guests fast).
    #[default]
    LeastLoaded,
    /// Each node in turn, skipping full ones.
    RoundRobin,
}

/// What became of an order sent to a node, as far as the CC can tell.
#[derive(Debug)]
enum Sent {
    /// The node took it (or had it already): its report.
    Accepted(InstanceReport),
    /// The node answered no, or the order never left: the instance is not there.
    Refused(RpcError),
    /// The order went out and no answer came: the instance may be starting there.
    Unknown(RpcError),
}

impl From<Result<InstanceReport, RpcError>> for Sent {
    fn from(result: Result<InstanceReport, RpcError>) -> Sent {
        match result {
            Ok(report) => Sent::Accepted(report),
            Err(e) if e.is_unanswered() => Sent::Unknown(e),
            Err(e) => Sent::Refused(e),
        }
    }
}

/// A running cluster controller; cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    policy: Policy,
    client: RpcClient,
    nodes: Mutex<BTreeMap<String, NodeEntry>>,
    next: AtomicUsize,
    /// The guest networks this CC applies on its host (MANAGED modes).
    gateway: Option<Arc<network::Gateway>>,
}

#[derive(Debug, Clone, Default)]
struct NodeEntry {
    url: String,
    resources: Option<NodeResources>,
    error: Option<String>,
    /// The instances the node reported last (and those placed on it since).
    instances: Vec<InstanceReport>,
    /// Bumped by each change made here (a placement, a terminate), so that a poll that
    /// began before it does not overwrite it with what the node said earlier.
    generation: u64,
}

impl Cluster {
    /// Opens the cluster's registry in `dir` and starts polling its nodes; calls to nodes are
    /// signed by `client`. With a `gateway` (MANAGED modes), the guest networks it applied
    /// last are applied again before any plan from the CLC arrives.
    pub fn open(
        dir: PathBuf,
        policy: Policy,
        client: RpcClient,
        gateway: Option<network::Gateway>,
    ) -> std::io::Result<Cluster> {
        let cluster = Cluster::unpolled(dir, policy, client, gateway.map(Arc::new))?;
        if let Some(gateway) = cluster.inner.gateway.clone() {
            tokio::spawn(async move {
                if let Err(e) = gateway.restore().await {
                    tracing::error!(
                        "cannot restore the guest networks: {}",
                        rpc::error_chain(&e)
                    );
                }
            });
        }
        let poller = cluster.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL_PERIOD);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                poller.poll().await;
            }
        });
        Ok(cluster)
    }

    /// The cluster's registry, with no poller.
    fn unpolled(
        dir: PathBuf,
        policy: Policy,
        client: RpcClient,
        gateway: Option<Arc<network::Gateway>>,
    ) -> std::io::Result<Cluster> {
        std::fs::create_dir_all(&dir)?;
        let registered: Vec<NodeRegistration> = match std::fs::read(dir.join("nodes.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let nodes = registered
            .into_iter()
            .map(|r| {
                (
                    r.host,
                    NodeEntry {
                        url: r.url,
                        ..NodeEntry::default()
                    },
                )
            })
            .collect();
        Ok(Cluster {
            inner: Arc::new(Inner {
                dir,
                policy,
                client,
                nodes: Mutex::new(nodes),
                next: AtomicUsize::new(0),
                gateway,
            }),
        })
    }

    /// Registers a node (or changes its URL) and polls it at once. A URL already registered
    /// under another name is that node, answered as it is: one node counted twice would be
    /// offered twice its cores (`euca_conf -addnode 127.0.0.1` on a `koala up` host, whose node
    /// registered itself by its host name).
    pub async fn register(&self, node: NodeRegistration) -> Result<NodeStatus, RpcError> {
        if node.host.is_empty() || !node.url.starts_with("http") {
            return Err(RpcError::new(
                RpcCode::BadRequest,
                "a node needs a host name and an http:// URL",
            ));
        }
        let host = {
            let mut nodes = lock(&self.inner.nodes);
            match nodes
                .iter()
                .find(|(host, e)| e.url == node.url && **host != node.host)
            {
                Some((known, _)) => known.clone(),
                None => {
                    let entry = nodes.entry(node.host.clone()).or_default();
                    entry.url = node.url.clone();
                    self.save(&nodes)?;
                    node.host.clone()
                }
            }
        };
        self.poll().await;
        Ok(self
            .nodes()
            .into_iter()
            .find(|n| n.host == host)
            .unwrap_or(NodeStatus {
                host,
                url: node.url,
                resources: None,
                error: None,
            }))
    }

    /// Removes a node from the cluster: no instance is placed on it any more. `host` is the
    /// name it was registered by, or the `HOST:PORT` of its URL.
    pub fn deregister(&self, host: &str) -> Result<(), RpcError> {
        let mut nodes = lock(&self.inner.nodes);
        let name = match nodes.contains_key(host) {
            true => Some(host.to_owned()),
            false => nodes
                .iter()
                .find(|(_, e)| e.url.split_once("://").map(|(_, a)| a) == Some(host))
                .map(|(name, _)| name.clone()),
        };
        if name.and_then(|name| nodes.remove(&name)).is_none() {
            return Err(RpcError::new(
                RpcCode::NotFound,
                format!("no node {host} is registered"),
            ));
        }
        self.save(&nodes)
    }

    /// The registered nodes with their last report.
    pub fn nodes(&self) -> Vec<NodeStatus> {
        lock(&self.inner.nodes)
            .iter()
            .map(|(host, e)| NodeStatus {
                host: host.clone(),
                url: e.url.clone(),
                resources: e.resources.clone(),
                error: e.error.clone(),
            })
            .collect()
    }

    fn save(&self, nodes: &BTreeMap<String, NodeEntry>) -> Result<(), RpcError> {
        let list: Vec<NodeRegistration> = nodes
            .iter()
            .map(|(host, e)| NodeRegistration {
                host: host.clone(),
                url: e.url.clone(),
            })
            .collect();
        let bytes = serde_json::to_vec_pretty(&list).unwrap_or_default();
        identity::write_atomic(&self.inner.dir.join("nodes.json"), &bytes, 0o644).map_err(|e| {
            RpcError::new(
                RpcCode::InternalError,
                format!("cannot save the nodes: {e}"),
            )
        })
    }

    /// Asks every node for its resources and instances, and keeps the answers.
    async fn poll(&self) {
        let targets: Vec<(String, String, u64)> = lock(&self.inner.nodes)
            .iter()
            .map(|(h, e)| (h.clone(), e.url.clone(), e.generation))
            .collect();
        let polls = targets.into_iter().map(|(host, url, generation)| {
            let client = self.inner.client.clone();
            async move {
                let resources = client
                    .call::<NodeResources>(
                        Method::GET,
                        &format!("{url}/node/resources"),
                        None::<&()>,
                        NODE_TIMEOUT,
                    )
                    .await;
                let instances = match &resources {
                    Ok(_) => {
                        client
                            .call::<Vec<InstanceReport>>(
                                Method::GET,
                                &format!("{url}/node/instances"),
                                None::<&()>,
                                NODE_TIMEOUT,
                            )
                            .await
                    }
                    Err(e) => Err(e.clone()),
                };
                (host, generation, resources, instances)
            }
        });
        let results = futures_util::future::join_all(polls).await;
        let mut nodes = lock(&self.inner.nodes);
        for (host, generation, resources, instances) in results {
            let Some(entry) = nodes.get_mut(&host) else {
                continue;
            };
            if entry.generation != generation {
                // Changed while the node was asked: its answer may predate the change.
                continue;
            }
            match (resources, instances) {
                (Ok(resources), Ok(instances)) => {
                    // The node's own name (its principal is nc-NAME) beside the address it
                    // was registered by.
                    entry.resources = Some(resources);
                    entry.error = None;
                    entry.instances = instances;
                }
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(node = %host, "node poll failed: {e}");
                    entry.error = Some(e.to_string());
                }
            }
        }
    }

    /// Every instance of every node that answered the last poll (at most a poll period old,
    /// so the CLC's once-a-second sync costs the nodes nothing more).
    pub fn instances(&self) -> Vec<InstanceReport> {
        lock(&self.inner.nodes)
            .values()
            .filter(|e| e.error.is_none())
            .flat_map(|e| e.instances.iter().cloned())
            .collect()
    }

    /// Applies the guest networks the CLC planned for this cluster.
    pub async fn set_network(&self, plan: network::Plan) -> Result<(), RpcError> {
        let Some(gateway) = self.inner.gateway.clone() else {
            return Err(RpcError::new(
                RpcCode::BadRequest,
                "this cluster controller has no [network] table in a MANAGED mode",
            ));
        };
        gateway
            .apply(&plan)
            .await
            .map_err(|e| RpcError::new(RpcCode::InternalError, rpc::error_chain(&e)))
    }

    /// Places and starts instances: each order goes to the node the policy picks among those
    /// with room; a node that refuses is skipped for the next one. A node that does not
    /// answer is asked again before any other is tried, so that an instance never starts on
    /// two nodes: only its definite "no" lets the order move on.
    pub async fn run(&self, orders: Vec<RunOrder>) -> RunOutcome {
        let mut outcome = RunOutcome::default();
        for order in orders {
            let mut tried: Vec<String> = Vec::new();
            loop {
                let Some((host, url)) = self.pick(&order, &tried) else {
                    let why = match tried.is_empty() {
                        true => format!("no node has room for a {}", order.vm.name),
                        false => format!("no node took the instance (tried {})", tried.join(", ")),
                    };
                    outcome.failed.push((
                        order.instance_id.clone(),
                        RpcError::new(RpcCode::InsufficientInstanceCapacity, why),
                    ));
                    break;
                };
                let mut sent = self.send_order(&url, &order).await;
                if let Sent::Unknown(e) = &sent {
                    // The instance id is the idempotency key: the same order again asks the
                    // node whether it has the instance. It answers with the instance if the
                    // first order landed (or starts it now, where it was meant to go), or
                    // refuses it, and then refuses it for good (a first order still on its
                    // way cannot land later).
                    tracing::warn!(node = %host, instance = %order.instance_id, "no answer to a run order, asking the node again: {e}");
                    sent = self.send_order(&url, &order).await;
                }
                let placement = Placement {
                    instance_id: order.instance_id.clone(),
                    node: host.clone(),
                };
                match sent {
                    Sent::Accepted(report) => {
                        self.count_placed(&host, &order, Some(report));
                        outcome.placed.push(placement);
                        break;
                    }
                    Sent::Refused(e) => {
                        tracing::warn!(node = %host, instance = %order.instance_id, "node refused: {e}");
                        tried.push(host);
                    }
                    Sent::Unknown(e) => {
                        // It may be starting there: nowhere else. The node's reports settle it.
                        tracing::warn!(node = %host, instance = %order.instance_id, "the node did not answer twice; the instance may be starting there: {e}");
                        self.count_placed(&host, &order, None);
                        outcome.unconfirmed.push(placement);
                        break;
                    }
                }
            }
        }
        outcome
    }

    /// Sends a run order to the node at `url`.
    async fn send_order(&self, url: &str, order: &RunOrder) -> Sent {
        self.inner
            .client
            .call::<InstanceReport>(
                Method::POST,
                &format!("{url}/node/instances"),
                Some(order),
                NODE_TIMEOUT,
            )
            .await
            .into()
    }

    /// Counts an instance placed on `host` (with the node's report, when it answered) until
    /// the next poll says what the node holds.
    fn count_placed(&self, host: &str, order: &RunOrder, report: Option<InstanceReport>) {
        let mut nodes = lock(&self.inner.nodes);
        if let Some(entry) = nodes.get_mut(host) {
            if let Some(r) = entry.resources.as_mut() {
                r.used_cores += order.vm.cpus;
                r.used_memory_mib += order.vm.memory_mib;
                r.used_disk_gib += order.vm.disk_gib;
            }
            entry.instances.extend(report);
            entry.generation += 1;
        }
    }

    /// The node for an instance: among answering nodes with room and not yet tried, the
    /// least loaded (most free slots of this type) or the next in turn.
    fn pick(&self, order: &RunOrder, tried: &[String]) -> Option<(String, String)> {
        let nodes = lock(&self.inner.nodes);
        let candidates: Vec<(&String, &NodeEntry, u64)> = nodes
            .iter()
            .filter(|(host, e)| e.error.is_none() && !tried.contains(host))
            .filter_map(|(host, e)| {
                let free = e.resources.as_ref()?.free_slots(&order.vm);
                (free > 0).then_some((host, e, free))
            })
            .collect();
        let chosen = match self.inner.policy {
            Policy::LeastLoaded => candidates.iter().max_by_key(|(_, _, free)| *free),
            Policy::RoundRobin => {
                let n = candidates.len().max(1);
                candidates.get(self.inner.next.fetch_add(1, Ordering::Relaxed) % n)
            }
        }?;
        Some((chosen.0.clone(), chosen.1.url.clone()))
    }

    /// The URL of the node holding `id`, polling again if the last poll did not show it.
    async fn node_of(&self, id: &str) -> Result<String, RpcError> {
        if !rpc::is_instance_id(id) {
            return Err(RpcError::new(
                RpcCode::NotFound,
                format!("{id:?} is not an instance id"),
            ));
        }
        let find = || {
            lock(&self.inner.nodes)
                .values()
                .find(|e| e.instances.iter().any(|i| i.instance_id == id))
                .map(|e| e.url.clone())
        };
        if let Some(url) = find() {
            return Ok(url);
        }
        self.poll().await;
        find().ok_or_else(|| RpcError::new(RpcCode::NotFound, format!("no node has instance {id}")))
    }

    /// Terminates an instance on its node; the node's answer replaces the last poll's report,
    /// so the CLC never sees the instance running again after it asked.
    pub async fn terminate(&self, id: &str) -> Result<InstanceReport, RpcError> {
        let url = self.node_of(id).await?;
        let report: InstanceReport = self
            .inner
            .client
            .call(
                Method::POST,
                &format!("{url}/node/instances/{id}/terminate"),
                None::<&()>,
                NODE_TIMEOUT,
            )
            .await?;
        for entry in lock(&self.inner.nodes).values_mut() {
            if let Some(cached) = entry.instances.iter_mut().find(|i| i.instance_id == id) {
                *cached = report.clone();
                entry.generation += 1;
            }
        }
        Ok(report)
    }

    /// Reboots an instance on its node.
    pub async fn reboot(&self, id: &str) -> Result<(), RpcError> {
        let url = self.node_of(id).await?;
        self.inner
            .client
            .call::<serde_json::Value>(
                Method::POST,
                &format!("{url}/node/instances/{id}/reboot"),
                None::<&()>,
                NODE_TIMEOUT,
            )
            .await
            .map(|_| ())
    }

    /// An instance's console output, from its node.
    pub async fn console(&self, id: &str) -> Result<ConsoleOutput, RpcError> {
        let url = self.node_of(id).await?;
        self.inner
            .client
            .call(
                Method::GET,
                &format!("{url}/node/instances/{id}/console"),
                None::<&()>,
                NODE_TIMEOUT,
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rpc::tls::testing::TestPki;
    use rpc::{ComponentKey, ImageRef, VmSpec};

    fn order(id: &str) -> RunOrder {
        let image = ImageRef {
            id: "emi-00000001".into(),
            manifest: "b/k".into(),
            manifest_sha256: None,
            sha256: None,
            size: None,
        };
        RunOrder {
            instance_id: id.into(),
            reservation_id: "r-00000001".into(),
            owner: "000000000001".into(),
            image: image.clone(),
            kernel: image,
            ramdisk: None,
            vm: VmSpec {
                name: "m1.small".into(),
                cpus: 1,
                memory_mib: 256,
                disk_gib: 5,
            },
            key: None,
            user_data: String::new(),
            start_timeout_secs: 60,
            nic: None,
        }
    }

    fn node(cores: u32, used: u32, error: Option<&str>) -> NodeEntry {
        NodeEntry {
            url: "http://127.0.0.1:1".into(),
            resources: Some(NodeResources {
                host: "n".into(),
                cores,
                memory_mib: 4096,
                disk_gib: 100,
                used_cores: used,
                used_memory_mib: 256 * u64::from(used),
                used_disk_gib: 5 * u64::from(used),
            }),
            error: error.map(str::to_owned),
            instances: Vec::new(),
            generation: 0,
        }
    }

    async fn cluster(policy: Policy, nodes: &[(&str, NodeEntry)]) -> (Cluster, tempfile::TempDir) {
        cluster_with(&TestPki::with_node(), policy, nodes).await
    }

    async fn cluster_with(
        pki: &TestPki,
        policy: Policy,
        nodes: &[(&str, NodeEntry)],
    ) -> (Cluster, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let key = ComponentKey {
            access_key_id: "AKIDTEST".into(),
            secret_access_key: "secret".into(),
            region: "r".into(),
        };
        let client = RpcClient::new(key, &pki.client, identity::ComponentKind::NodeController);
        let cluster = Cluster::unpolled(dir.path().to_owned(), policy, client, None).unwrap();
        let mut registry = lock(&cluster.inner.nodes);
        for (host, entry) in nodes {
            registry.insert((*host).to_owned(), entry.clone());
        }
        drop(registry);
        (cluster, dir)
    }

    #[tokio::test]
    async fn least_loaded_takes_the_node_with_the_most_room() {
        let (cc, _dir) = cluster(
            Policy::LeastLoaded,
            &[
                ("a", node(4, 3, None)),
                ("b", node(4, 1, None)),
                ("c", node(8, 0, Some("down"))),
            ],
        )
        .await;
        // c has the most room but does not answer; b has more room than a.
        assert_eq!(cc.pick(&order("i-00000001"), &[]).unwrap().0, "b");
        // b refused: the next best.
        assert_eq!(cc.pick(&order("i-00000001"), &["b".into()]).unwrap().0, "a");
        assert!(cc
            .pick(&order("i-00000001"), &["a".into(), "b".into()])
            .is_none());
    }

    #[tokio::test]
    async fn a_node_registered_again_by_its_address_is_not_counted_twice() {
        // `koala up`'s node registered itself by its host name; the admin types the 1.5
        // guide's `euca_conf -addnode 127.0.0.1`.
        let (cc, _dir) = cluster(Policy::LeastLoaded, &[("debian", node(4, 0, None))]).await;
        let answered = cc
            .register(NodeRegistration {
                host: "127.0.0.1:1".into(),
                url: "http://127.0.0.1:1".into(),
            })
            .await
            .unwrap();
        assert_eq!(answered.host, "debian");
        let hosts: Vec<String> = cc.nodes().into_iter().map(|n| n.host).collect();
        assert_eq!(hosts, ["debian"]);
        // `-delnode 127.0.0.1` removes it by the same address.
        cc.deregister("127.0.0.1:1").unwrap();
        assert!(cc.nodes().is_empty());
        assert_eq!(
            cc.deregister("127.0.0.1:1").unwrap_err().code,
            RpcCode::NotFound
        );
    }

    #[tokio::test]
    async fn round_robin_turns_and_skips_full_nodes() {
        let (cc, _dir) = cluster(
            Policy::RoundRobin,
            &[
                ("a", node(2, 0, None)),
                ("b", node(2, 2, None)),
                ("c", node(2, 0, None)),
            ],
        )
        .await;
        let picks: Vec<String> = (0..4)
            .map(|_| cc.pick(&order("i-00000001"), &[]).unwrap().0)
            .collect();
        assert_eq!(picks, ["a", "c", "a", "c"]);
    }

    #[tokio::test]
    async fn a_run_with_no_room_says_so_for_each_instance() {
        let (cc, _dir) = cluster(Policy::LeastLoaded, &[("a", node(1, 1, None))]).await;
        let outcome = cc.run(vec![order("i-00000001"), order("i-00000002")]).await;
        assert!(outcome.placed.is_empty());
        assert_eq!(outcome.failed.len(), 2);
        assert!(outcome
            .failed
            .iter()
            .all(|(_, e)| e.code == RpcCode::InsufficientInstanceCapacity));
    }

    /// A node that reads each request and closes the connection without answering, as one
    /// that died after taking it; stop it with the flag, and it says how many run orders
    /// came.
    fn dropping_node(
        pki: &Arc<TestPki>,
    ) -> (
        String,
        Arc<std::sync::atomic::AtomicBool>,
        std::thread::JoinHandle<usize>,
    ) {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let pki = pki.clone();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let node = std::thread::spawn(move || {
            let mut orders = 0;
            while !stopped.load(Ordering::SeqCst) {
                let Ok((conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(Duration::from_millis(300)))
                    .unwrap();
                let mut conn = pki.accept(conn);
                let mut request = Vec::new();
                let mut buf = [0u8; 8192];
                while let Ok(n @ 1..) = conn.read(&mut buf) {
                    request.extend_from_slice(&buf[..n]);
                }
                if request.starts_with(b"POST /node/instances ") {
                    orders += 1;
                }
            }
            orders
        });
        (url, stop, node)
    }

    fn at(url: &str, entry: NodeEntry) -> NodeEntry {
        NodeEntry {
            url: url.to_owned(),
            ..entry
        }
    }

    #[tokio::test]
    async fn a_node_that_does_not_answer_is_asked_again_and_never_replaced() {
        let pki = Arc::new(TestPki::with_node());
        let (a_url, a_stop, a) = dropping_node(&pki);
        let (b_url, b_stop, b) = dropping_node(&pki);
        // a has the most room: it gets the order, takes it and never answers.
        let (cc, _dir) = cluster_with(
            &pki,
            Policy::LeastLoaded,
            &[
                ("a", at(&a_url, node(4, 0, None))),
                ("b", at(&b_url, node(2, 0, None))),
            ],
        )
        .await;
        let outcome = cc.run(vec![order("i-00000001")]).await;
        a_stop.store(true, Ordering::SeqCst);
        b_stop.store(true, Ordering::SeqCst);
        // The instance may be starting on a: it is reported there, unconfirmed, and b never
        // heard of it (else it could run twice).
        assert_eq!(
            outcome.unconfirmed,
            [Placement {
                instance_id: "i-00000001".into(),
                node: "a".into()
            }]
        );
        assert!(outcome.placed.is_empty() && outcome.failed.is_empty());
        assert_eq!(
            a.join().unwrap(),
            2,
            "the order, then the same order as a question"
        );
        assert_eq!(b.join().unwrap(), 0);
        // a's room counts the instance until the next poll says what a holds.
        let a_room = cc.nodes()[0].resources.clone().unwrap();
        assert_eq!(a_room.used_cores, 1);
    }

    #[tokio::test]
    async fn a_node_never_reached_is_a_definite_no() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_url = format!("https://{}", closed.local_addr().unwrap());
        drop(closed);
        let pki = Arc::new(TestPki::with_node());
        let (b_url, b_stop, b) = dropping_node(&pki);
        let (cc, _dir) = cluster_with(
            &pki,
            Policy::LeastLoaded,
            &[
                ("a", at(&closed_url, node(4, 0, None))),
                ("b", at(&b_url, node(2, 0, None))),
            ],
        )
        .await;
        let outcome = cc.run(vec![order("i-00000001")]).await;
        b_stop.store(true, Ordering::SeqCst);
        // Refused connection to a: nothing was sent, the order moves on to b.
        assert_eq!(
            outcome.unconfirmed,
            [Placement {
                instance_id: "i-00000001".into(),
                node: "b".into()
            }]
        );
        assert_eq!(b.join().unwrap(), 2);
    }
}

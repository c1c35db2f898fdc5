//! The client of a cluster controller's API (see `compute::cluster::http` for the server):
//! what the CLC places and ends instances with, and `euca_conf` registers nodes with.

use std::time::Duration;

use http::Method;

use crate::{
    ConsoleOutput, InstanceReport, NodeRegistration, NodeStatus, RpcClient, RpcError, RunOrder,
    RunOutcome,
};

/// How long the CC may take: a run waits for each node to accept its orders.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the CC may take to answer from what it holds (instances, nodes): a CC that
/// hangs must not hold up the CLC's once-a-second sync, or its other zones, for long.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// A node to deregister, by the address it was registered by.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Deregistration {
    /// The node's address as registered.
    pub host: String,
}

/// The CLC's (and `euca_conf`'s) client of a CC.
#[derive(Clone)]
pub struct ClusterClient {
    rpc: RpcClient,
    url: String,
}

impl ClusterClient {
    /// A client of the CC at `url` (`http://host:8774`), signing with `rpc`'s key.
    pub fn new(rpc: RpcClient, url: &str) -> Self {
        ClusterClient {
            rpc,
            url: url.trim_end_matches('/').to_owned(),
        }
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl serde::Serialize>,
    ) -> Result<T, RpcError> {
        let timeout = match method {
            Method::GET if path == "/cluster/instances" || path == "/cluster/nodes" => {
                LOOKUP_TIMEOUT
            }
            _ => CLUSTER_TIMEOUT,
        };
        self.rpc
            .call(method, &format!("{}{path}", self.url), body, timeout)
            .await
    }

    /// Places and starts instances.
    pub async fn run(&self, orders: &[RunOrder]) -> Result<RunOutcome, RpcError> {
        self.call(Method::POST, "/cluster/instances", Some(&orders))
            .await
    }

    /// Every instance of the cluster's nodes.
    pub async fn instances(&self) -> Result<Vec<InstanceReport>, RpcError> {
        self.call(Method::GET, "/cluster/instances", None::<&()>)
            .await
    }

    /// Terminates an instance.
    pub async fn terminate(&self, id: &str) -> Result<InstanceReport, RpcError> {
        self.call(
            Method::POST,
            &format!("/cluster/instances/{id}/terminate"),
            None::<&()>,
        )
        .await
    }

    /// Reboots an instance.
    pub async fn reboot(&self, id: &str) -> Result<(), RpcError> {
        self.call::<serde_json::Value>(
            Method::POST,
            &format!("/cluster/instances/{id}/reboot"),
            None::<&()>,
        )
        .await
        .map(|_| ())
    }

    /// An instance's console output.
    pub async fn console(&self, id: &str) -> Result<ConsoleOutput, RpcError> {
        self.call(
            Method::GET,
            &format!("/cluster/instances/{id}/console"),
            None::<&()>,
        )
        .await
    }

    /// Hands the CC the guest network it must apply.
    pub async fn set_network(&self, plan: &network::Plan) -> Result<(), RpcError> {
        self.call::<serde_json::Value>(Method::PUT, "/cluster/network", Some(plan))
            .await
            .map(|_| ())
    }

    /// The cluster's nodes.
    pub async fn nodes(&self) -> Result<Vec<NodeStatus>, RpcError> {
        self.call(Method::GET, "/cluster/nodes", None::<&()>).await
    }

    /// Registers a node.
    pub async fn register(&self, node: &NodeRegistration) -> Result<NodeStatus, RpcError> {
        self.call(Method::POST, "/cluster/nodes", Some(node)).await
    }

    /// Deregisters a node.
    pub async fn deregister(&self, host: &str) -> Result<(), RpcError> {
        self.call::<serde_json::Value>(
            Method::POST,
            "/cluster/nodes/deregister",
            Some(&Deregistration {
                host: host.to_owned(),
            }),
        )
        .await
        .map(|_| ())
    }
}

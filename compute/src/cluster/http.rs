//! The CC's HTTP API, called by the CLC (instances, and the nodes' list) and by cloud
//! administrators through `euca_conf` (nodes), each call open to those alone, and the client
//! the CLC calls it with:
//!
//! - `GET /cluster/nodes`, `POST /cluster/nodes` ([`NodeRegistration`]),
//!   `POST /cluster/nodes/deregister` (`{"host": ...}`: addresses hold colons, kept out of
//!   the signed path);
//! - `POST /cluster/instances` with a list of [`RunOrder`]s: a [`RunOutcome`];
//! - `GET /cluster/instances`: every node's instance reports;
//! - `POST /cluster/instances/<id>/terminate` and `/reboot`, `GET .../console`.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode};

use super::{Cluster, RunOutcome};
use identity::ComponentKind;

use crate::rpc::{
    self, json_response, Caller, ConsoleOutput, InstanceReport, NodeRegistration, NodeStatus,
    RpcClient, RpcError, RunOrder, Verifier,
};

/// How long the CC may take: a run waits for each node to accept its orders.
const CLUSTER_TIMEOUT: Duration = Duration::from_secs(60);

/// How long the CC may take to answer from what it holds (instances, nodes): a CC that
/// hangs must not hold up the CLC's once-a-second sync, or its other zones, for long.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The CC's router.
pub fn router(cluster: Cluster, verifier: Verifier) -> axum::Router {
    axum::Router::new()
        .fallback(serve)
        .with_state((cluster, verifier))
}

async fn serve(
    State((cluster, verifier)): State<(Cluster, Verifier)>,
    req: Request,
) -> Response<Body> {
    match handle(&cluster, &verifier, req).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn handle(
    cluster: &Cluster,
    verifier: &Verifier,
    req: Request,
) -> Result<Response<Body>, RpcError> {
    let call = rpc::accept(verifier, req).await?;
    let body = &call.body;
    let ok = StatusCode::OK;
    // The CLC places and ends instances; administrators (euca_conf) manage the nodes.
    let clc = Caller::Component(ComponentKind::CloudController);
    let admin = Caller::CloudAdmin;
    let segments = call.segments();
    match (&call.method, segments.as_slice()) {
        (&Method::GET, ["cluster", "nodes"]) => call.require(&[clc, admin])?,
        (_, ["cluster", "nodes", ..]) => call.require(&[admin])?,
        _ => call.require(&[clc])?,
    }
    Ok(match (call.method.clone(), segments.as_slice()) {
        (Method::GET, ["cluster", "nodes"]) => json_response(ok, &cluster.nodes()),
        (Method::POST, ["cluster", "nodes"]) => {
            let registration: NodeRegistration = rpc::parse(body)?;
            json_response(ok, &cluster.register(registration).await?)
        }
        (Method::POST, ["cluster", "nodes", "deregister"]) => {
            let node: Deregistration = rpc::parse(body)?;
            cluster.deregister(&node.host)?;
            json_response(ok, &serde_json::json!({}))
        }
        (Method::POST, ["cluster", "instances"]) => {
            let orders: Vec<RunOrder> = rpc::parse(body)?;
            json_response(ok, &cluster.run(orders).await)
        }
        (Method::GET, ["cluster", "instances"]) => json_response(ok, &cluster.instances()),
        (Method::POST, ["cluster", "instances", id, "terminate"]) => {
            json_response(ok, &cluster.terminate(id).await?)
        }
        (Method::POST, ["cluster", "instances", id, "reboot"]) => {
            cluster.reboot(id).await?;
            json_response(ok, &serde_json::json!({}))
        }
        (Method::GET, ["cluster", "instances", id, "console"]) => {
            json_response(ok, &cluster.console(id).await?)
        }
        _ => return Err(call.unknown()),
    })
}

/// A node to deregister, by the address it was registered by.
#[derive(serde::Serialize, serde::Deserialize)]
struct Deregistration {
    host: String,
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

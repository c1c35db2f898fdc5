//! The CC's HTTP API, called by the CLC (instances, and the nodes' list) and by cloud
//! administrators through `euca_conf` (nodes), each call open to those alone (its client is
//! `rpc::cluster::ClusterClient`):
//!
//! - `GET /cluster/nodes`, `POST /cluster/nodes` ([`NodeRegistration`]),
//!   `POST /cluster/nodes/deregister` (`{"host": ...}`: addresses hold colons, kept out of
//!   the signed path);
//! - `POST /cluster/instances` with a list of [`RunOrder`]s: a [`RunOutcome`];
//! - `GET /cluster/instances`: every node's instance reports;
//! - `PUT /cluster/network` with a `network::Plan`: the guest networks to apply (MANAGED);
//! - `POST /cluster/instances/<id>/terminate` and `/reboot`, `GET .../console`.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode};

use identity::ComponentKind;
use rpc::cluster::Deregistration;
use rpc::{json_response, Caller, NodeRegistration, RpcError, RunOrder, Verifier};

use super::Cluster;

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
        (Method::PUT, ["cluster", "network"]) => {
            cluster.set_network(rpc::parse(body)?).await?;
            json_response(ok, &serde_json::json!({}))
        }
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

//! The NC's HTTP API, called by cluster controllers alone, with a signed request:
//!
//! - `GET /node/resources`: the node's size and use ([`NodeResources`]);
//! - `GET /node/instances`: every instance's report;
//! - `POST /node/instances` with a [`RunOrder`]: starts an instance;
//! - `POST /node/instances/<id>/terminate` and `/reboot`;
//! - `GET /node/instances/<id>/console`: the console log's tail.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use http::{Method, StatusCode};

use super::Node;
use identity::ComponentKind;

use rpc::{self, json_response, Caller, RpcError, RunOrder, Verifier};

/// The NC's router.
pub fn router(node: Node, verifier: Verifier) -> axum::Router {
    axum::Router::new()
        .fallback(serve)
        .with_state((node, verifier))
}

async fn serve(State((node, verifier)): State<(Node, Verifier)>, req: Request) -> Response<Body> {
    match handle(&node, &verifier, req).await {
        Ok(resp) => resp,
        Err(e) => axum::response::IntoResponse::into_response(e),
    }
}

async fn handle(
    node: &Node,
    verifier: &Verifier,
    req: Request,
) -> Result<Response<Body>, RpcError> {
    let call = rpc::accept(verifier, req).await?;
    // Only cluster controllers call nodes.
    call.require(&[Caller::Component(ComponentKind::ClusterController)])?;
    let body = &call.body;
    match (call.method.clone(), call.segments().as_slice()) {
        (Method::GET, ["node", "resources"]) => {
            Ok(json_response(StatusCode::OK, &node.resources()))
        }
        (Method::GET, ["node", "instances"]) => Ok(json_response(StatusCode::OK, &node.reports())),
        (Method::POST, ["node", "instances"]) => {
            let order: RunOrder = rpc::parse(body)?;
            Ok(json_response(StatusCode::OK, &node.run(order)?))
        }
        (Method::POST, ["node", "instances", id, "terminate"]) => {
            Ok(json_response(StatusCode::OK, &node.terminate(id).await?))
        }
        (Method::POST, ["node", "instances", id, "reboot"]) => {
            node.reboot(id).await?;
            Ok(json_response(StatusCode::OK, &serde_json::json!({})))
        }
        (Method::GET, ["node", "instances", id, "console"]) => {
            Ok(json_response(StatusCode::OK, &node.console(id).await?))
        }
        _ => Err(call.unknown()),
    }
}

//! The cloud controller's Query APIs: the form-encoded `Action=...` protocol shared by EC2
//! (`/services/compute`, `/services/Eucalyptus`, or `/` with an `Action`) and Eucalyptus'
//! account service Euare (`/services/Euare`). Requests are verified once by `identity` and
//! dispatched by service; each service renders its own error dialect. The CLC's instance
//! metadata service ([`metadata`]), served on a port of its own, reads the same records.

mod addresses;
pub mod clusters;
pub mod ec2;
pub mod error;
pub mod euare;
mod groups;
mod images;
pub mod instances;
mod keypairs;
pub mod metadata;
pub mod networks;
pub mod properties;
pub mod query;
pub mod quotas;
mod remote_walrus;
pub mod state;
mod tags;
#[cfg(test)]
mod testing;
mod throttle;
mod zones;

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use http::{Request, Response};
use identity::{Authenticated, Identity, RequestParts, ServiceUrls};

pub use clusters::ClusterSet;
pub use ec2::{BundleAccess, BundleStore, Cloud, CloudSettings, Clusters, Pending};
pub use error::{QueryError, Resource};
pub use images::{visible_images, ImageKind, ImageRecord};
pub use properties::{PropertyError, StartingValues};
use query::{Dialect, QueryRequest};
pub use remote_walrus::WalrusOverHttp;
pub use state::CloudState;
pub use throttle::{Throttle, UnwrapThrottle};

/// Largest form body a Query API accepts; EC2 and IAM requests are a few KiB at most.
const MAX_FORM_BODY: usize = 1 << 20;

/// The Query API front: verifies the caller and hands the action to its service.
#[derive(Clone)]
pub struct QueryApi {
    identity: Identity,
    urls: ServiceUrls,
    cloud: Cloud,
}

impl QueryApi {
    /// A front that authenticates callers against `identity`; `urls` are the endpoints
    /// written into the credentials it hands out; `cloud` serves the EC2 actions.
    pub fn new(identity: Identity, urls: ServiceUrls, cloud: Cloud) -> QueryApi {
        QueryApi {
            identity,
            urls,
            cloud,
        }
    }

    /// The cloud the EC2 actions serve (other internal services of the cloud controller
    /// read it too).
    pub fn cloud(&self) -> &Cloud {
        &self.cloud
    }

    /// Whether a request belongs to a Query API rather than to S3: the service mount points,
    /// or the root of the port with an `Action` parameter (in the query, or a form POST).
    pub fn claims(req: &Request<Body>) -> bool {
        let path = req.uri().path();
        if Dialect::for_path(path).is_some() {
            return true;
        }
        if path != "/" {
            return false;
        }
        let has_action = req
            .uri()
            .query()
            .map(|q| {
                query::parse_form(q.as_bytes())
                    .iter()
                    .any(|(k, _)| k == "Action")
            })
            .unwrap_or(false);
        has_action || (req.method() == http::Method::POST && query::is_form(req.headers()))
    }

    /// Serves one Query API request; every failure becomes the service's XML error.
    pub async fn handle(&self, req: Request<Body>) -> Response<Body> {
        let dialect = Dialect::for_path(req.uri().path()).unwrap_or(Dialect::Ec2);
        let request_id = query::request_id();
        match self.serve(req, dialect, &request_id).await {
            Ok(body) => query::xml_response(http::StatusCode::OK, body, &request_id),
            Err(err) => err.render(dialect, &request_id),
        }
    }

    async fn serve(
        &self,
        req: Request<Body>,
        dialect: Dialect,
        request_id: &str,
    ) -> Result<String, QueryError> {
        // RocksDB writes with fsync, RSA (certificates, key pairs, manifests) and reads of
        // bundles all block: the actions run on the blocking pool.
        let (parts, body) = req.into_parts();
        let body = axum::body::to_bytes(body, MAX_FORM_BODY)
            .await
            .map_err(|_| QueryError::RequestTooLarge)?;
        let raw_query = parts.uri.query().unwrap_or("");
        let signed = RequestParts {
            method: parts.method.as_str(),
            raw_path: parts.uri.path(),
            raw_query,
            headers: &parts.headers,
        };
        let principal =
            match identity::verify_query(&signed, &body, &self.identity, SystemTime::now())? {
                Authenticated::Signed { principal, .. } => principal,
                Authenticated::Anonymous => return Err(QueryError::MissingAuthentication),
            };
        // The cloud's components call no public API: a stolen component key runs no
        // instance and creates no account.
        if principal.component().is_some() {
            return Err(QueryError::NotAuthorized(format!(
                "{} is one of the cloud's components, which call no public API.",
                principal.user_name
            )));
        }
        let request = QueryRequest::new(raw_query, &body, &parts.headers);
        let action = request.required("Action")?.to_owned();
        match dialect {
            Dialect::Euare if action == euare::DELETE_ACCOUNT => {
                euare::serve_delete_account(&self.cloud, &principal, &request, request_id).await
            }
            Dialect::Euare => {
                let identity = self.identity.clone();
                // The Walrus URL an administrator set (the console's first run) goes into
                // the credentials GetCredentials hands out, as into the console's.
                let urls = properties::service_urls(&self.cloud, &self.urls)?;
                let request_id = request_id.to_owned();
                tokio::task::spawn_blocking(move || {
                    euare::dispatch(
                        &euare::Context {
                            identity: &identity,
                            urls: &urls,
                            caller: &principal,
                            request: &request,
                            request_id: &request_id,
                        },
                        &action,
                    )
                })
                .await
                .map_err(|e| QueryError::failed("a Euare action panicked", e))?
            }
            Dialect::Ec2 => {
                let version = ec2::version(&request)?;
                let req = Arc::new(ec2::Request {
                    cloud: self.cloud.clone(),
                    caller: principal,
                    params: request,
                });
                let body = ec2::dispatch(req, action.clone()).await?;
                Ok(ec2::envelope(&action, &version, request_id, &body))
            }
        }
    }
}

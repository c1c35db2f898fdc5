//! The storage quotas Walrus enforces come from the cloud controller's properties
//! (`walrus.quota.*`): read from its state when Walrus runs in the same process
//! ([`CloudQuotas`]); asked of it, with Walrus' component key, by a Walrus on a host of its
//! own ([`ClcQuotas`], answered by [`serve`] at [`QUOTAS_PATH`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::response::{IntoResponse, Response};
use ec2_api::quotas::StorageLimits;
use ec2_api::Cloud;
use http::Method;
use identity::{ComponentKind, Identity};
use rpc::{RpcClient, RpcCode, RpcError};
use walrus::{DirectoryFuture, QuotaError, QuotaSource, StorageQuotas};

/// Where the cloud controller answers a Walrus apart with the storage quotas in force.
pub const QUOTAS_PATH: &str = "/services/Quotas/storage";

/// How long a Walrus apart uses the quotas it learnt before asking again: a change made
/// with `euca-modify-property` is enforced within this.
const REFRESH: Duration = Duration::from_secs(5);

/// How long a Walrus apart waits for the answer (a write waits with it).
const ASK_TIMEOUT: Duration = Duration::from_secs(3);

fn storage_quotas(limits: StorageLimits) -> StorageQuotas {
    StorageQuotas {
        buckets_per_account: limits.buckets_per_account,
        bytes_per_account: limits.bytes_per_account,
    }
}

/// The quotas of the cloud controller in the same process.
pub struct CloudQuotas(pub Cloud);

impl QuotaSource for CloudQuotas {
    fn quotas(&self) -> DirectoryFuture<'_, Result<StorageQuotas, QuotaError>> {
        let answer = ec2_api::quotas::storage(&self.0)
            .map(storage_quotas)
            .map_err(|e| QuotaError::Failed(Box::new(e)));
        Box::pin(async move { answer })
    }
}

/// The quotas of the cloud controller at a URL, for a Walrus apart: learnt at most every
/// [`REFRESH`]; when the cloud controller does not answer, the last ones learnt stay in
/// force.
pub struct ClcQuotas {
    client: RpcClient,
    url: String,
    learnt: tokio::sync::Mutex<Learnt>,
}

/// What a Walrus apart last learnt, and when it last asked.
#[derive(Default)]
struct Learnt {
    quotas: Option<StorageQuotas>,
    asked: Option<Instant>,
}

impl ClcQuotas {
    /// Asks the cloud controller at `cloud_url` with `client` (Walrus' own key and
    /// certificate).
    pub fn new(client: RpcClient, cloud_url: &str) -> Arc<ClcQuotas> {
        Arc::new(ClcQuotas {
            client,
            url: format!("{}{QUOTAS_PATH}", cloud_url.trim_end_matches('/')),
            learnt: tokio::sync::Mutex::default(),
        })
    }
}

impl QuotaSource for ClcQuotas {
    fn quotas(&self) -> DirectoryFuture<'_, Result<StorageQuotas, QuotaError>> {
        Box::pin(async move {
            let mut learnt = self.learnt.lock().await;
            if learnt.asked.is_none_or(|at| at.elapsed() >= REFRESH) {
                learnt.asked = Some(Instant::now());
                match self
                    .client
                    .call::<StorageQuotas>(Method::GET, &self.url, None::<&()>, ASK_TIMEOUT)
                    .await
                {
                    Ok(quotas) => learnt.quotas = Some(quotas),
                    Err(e) => tracing::warn!(
                        "cannot learn the storage quotas from the cloud controller, the last \
                         ones learnt stay in force: {e}"
                    ),
                }
            }
            learnt.quotas.ok_or(QuotaError::NotLearnt)
        })
    }
}

/// Answers `GET` [`QUOTAS_PATH`]: the storage quotas in force, as JSON, to Walrus' own
/// principal only.
pub async fn serve(identity: Identity, cloud: Cloud, req: axum::extract::Request) -> Response {
    let verifier = crate::roles::verifier(&identity);
    let answer = async {
        let (caller, _) = rpc::authenticate(&verifier, req).await?;
        if caller.component() != Some(ComponentKind::Walrus) {
            return Err(RpcError::new(
                RpcCode::AuthFailure,
                "only Walrus may ask this",
            ));
        }
        let limits = tokio::task::spawn_blocking(move || ec2_api::quotas::storage(&cloud))
            .await
            .map_err(|e| RpcError::new(RpcCode::InternalError, e.to_string()))?
            .map_err(|e| RpcError::new(RpcCode::InternalError, rpc::error_chain(&e)))?;
        Ok(rpc::json_response(
            http::StatusCode::OK,
            &storage_quotas(limits),
        ))
    }
    .await;
    answer.unwrap_or_else(IntoResponse::into_response)
}

//! The cloud controller with Walrus on another host (`koala cloud --walrus-url`): the CLC
//! reads the bundles an account registers, and records registrations, at Walrus' internal
//! endpoints, with that account's rights and the CLC's own SigV4 key.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use rpc::RpcClient;

use crate::{BundleAccess, BundleStore, Pending};

/// How long one call to the other role may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The longest list of an account's bucket names read (64-byte names, a line each: room for
/// far more buckets than any quota allows).
const MAX_BUCKET_LIST: u64 = 1 << 20;

/// Why a call to Walrus got no usable answer: the source of [`BundleAccess::Failed`].
#[derive(Debug, thiserror::Error)]
enum CallError {
    /// The request could not be sent, or no answer came.
    #[error("the call failed")]
    Send(#[source] rpc::RpcError),
    /// The answer's body could not be read (or was longer than asked for).
    #[error("its answer could not be read")]
    Body(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// No answer within [`CALL_TIMEOUT`].
    #[error("no answer came within {} s", CALL_TIMEOUT.as_secs())]
    Timeout,
    /// Walrus refused in a way that is not the caller's fault.
    #[error("it answered {status}: {body}")]
    Refused {
        /// The answer's status.
        status: StatusCode,
        /// The answer's body (an S3 error document).
        body: String,
    },
    /// A HEAD answered without a length.
    #[error("it named no size")]
    NoSize,
}

impl From<CallError> for BundleAccess {
    fn from(e: CallError) -> BundleAccess {
        BundleAccess::Failed(Box::new(e))
    }
}

/// The CLC's bundle store when Walrus runs on another host: its internal objects and
/// registrations endpoints, waited for on the runtime.
pub struct WalrusOverHttp {
    client: RpcClient,
    /// `https://host:port/services/Walrus`.
    base: String,
}

impl WalrusOverHttp {
    /// Reads from the Walrus at `s3_url` with `client` (the CLC's key and certificate).
    pub fn new(client: RpcClient, s3_url: &str) -> Self {
        WalrusOverHttp {
            client,
            base: s3_url.trim_end_matches('/').to_owned(),
        }
    }

    /// Calls `url`; the status, headers and body of the answer (at most `limit` bytes of
    /// body, and a little for an error's XML).
    async fn call(
        &self,
        method: Method,
        url: &str,
        limit: u64,
    ) -> Result<(StatusCode, http::HeaderMap, Bytes), BundleAccess> {
        let call = async {
            let resp = self
                .client
                .send(method, url, Bytes::new())
                .await
                .map_err(CallError::Send)?;
            let (parts, body) = resp.into_parts();
            let most = usize::try_from(limit).unwrap_or(usize::MAX);
            let body = http_body_util::Limited::new(body, most.saturating_add(64 << 10))
                .collect()
                .await
                .map_err(CallError::Body)?
                .to_bytes();
            Ok::<_, CallError>((parts.status, parts.headers, body))
        };
        Ok(tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .unwrap_or(Err(CallError::Timeout))?)
    }

    /// Asks for `bucket/key` as `account_id`: the status, headers and body of the answer.
    async fn fetch(
        &self,
        method: Method,
        account_id: &str,
        bucket: &str,
        key: &str,
        limit: Option<u64>,
    ) -> Result<(StatusCode, http::HeaderMap, Bytes), BundleAccess> {
        let mut url = format!(
            "{}/_koala/objects?account={}&bucket={}&key={}",
            self.base,
            enc(account_id),
            enc(bucket),
            enc(key)
        );
        if let Some(limit) = limit {
            url.push_str(&format!("&limit={limit}"));
        }
        self.call(method, &url, limit.unwrap_or(0)).await
    }

    /// Records or releases a registration at Walrus' internal endpoint.
    async fn registration(&self, method: Method, url: &str) -> Result<(), BundleAccess> {
        let (status, _, body) = self.call(method, url, 0).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(refusal(status, &body))
        }
    }
}

/// A path or query value percent-encoded as AWS encodes it.
fn enc(s: &str) -> String {
    identity::uri_encode(s.as_bytes(), false)
}

/// What a refusal of the objects endpoint means for the CLC.
fn refusal(status: StatusCode, body: &[u8]) -> BundleAccess {
    match status {
        StatusCode::NOT_FOUND => BundleAccess::NotFound,
        StatusCode::FORBIDDEN => BundleAccess::Denied,
        StatusCode::BAD_REQUEST if body.windows(14).any(|w| w == b"EntityTooLarge") => {
            BundleAccess::TooLarge
        }
        _ => CallError::Refused {
            status,
            body: String::from_utf8_lossy(body).into_owned(),
        }
        .into(),
    }
}

impl BundleStore for WalrusOverHttp {
    fn size<'a>(
        &'a self,
        account_id: &'a str,
        bucket: &'a str,
        key: &'a str,
    ) -> Pending<'a, Result<u64, BundleAccess>> {
        Box::pin(async move {
            let (status, headers, body) = self
                .fetch(Method::HEAD, account_id, bucket, key, None)
                .await?;
            if !status.is_success() {
                return Err(refusal(status, &body));
            }
            headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse().ok())
                .ok_or_else(|| CallError::NoSize.into())
        })
    }

    fn read<'a>(
        &'a self,
        account_id: &'a str,
        bucket: &'a str,
        key: &'a str,
        limit: u64,
    ) -> Pending<'a, Result<Vec<u8>, BundleAccess>> {
        Box::pin(async move {
            let (status, _, body) = self
                .fetch(Method::GET, account_id, bucket, key, Some(limit))
                .await?;
            if !status.is_success() {
                return Err(refusal(status, &body));
            }
            Ok(body.to_vec())
        })
    }

    fn retain<'a>(
        &'a self,
        image_id: &'a str,
        location: &'a str,
        manifest_sha256: &'a str,
    ) -> Pending<'a, Result<(), BundleAccess>> {
        let url = format!(
            "{}/_koala/registrations/{}?manifest={}&manifest-sha256={}",
            self.base,
            enc(image_id),
            enc(location),
            enc(manifest_sha256)
        );
        Box::pin(async move { self.registration(Method::PUT, &url).await })
    }

    fn release<'a>(&'a self, image_id: &'a str) -> Pending<'a, Result<(), BundleAccess>> {
        let url = format!("{}/_koala/registrations/{}", self.base, enc(image_id));
        Box::pin(async move { self.registration(Method::DELETE, &url).await })
    }

    fn buckets_of<'a>(
        &'a self,
        account_id: &'a str,
    ) -> Pending<'a, Result<Vec<String>, BundleAccess>> {
        let url = format!("{}/_koala/accounts/{}/buckets", self.base, enc(account_id));
        Box::pin(async move {
            let (status, _, body) = self.call(Method::GET, &url, MAX_BUCKET_LIST).await?;
            if !status.is_success() {
                return Err(refusal(status, &body));
            }
            let text = std::str::from_utf8(&body).map_err(|e| CallError::Body(Box::new(e)))?;
            Ok(text.lines().map(str::to_owned).collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walrus_refusals_read_as_bundle_access() {
        assert!(matches!(
            refusal(StatusCode::NOT_FOUND, b""),
            BundleAccess::NotFound
        ));
        assert!(matches!(
            refusal(
                StatusCode::FORBIDDEN,
                b"<Error><Code>AccessDenied</Code></Error>"
            ),
            BundleAccess::Denied
        ));
        let too_large = b"<Error><Code>EntityTooLarge</Code></Error>";
        assert!(matches!(
            refusal(StatusCode::BAD_REQUEST, too_large),
            BundleAccess::TooLarge
        ));
        match refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            b"<Error><Code>SlowDown</Code></Error>",
        ) {
            failed @ BundleAccess::Failed(_) => {
                let why = rpc::error_chain(&failed);
                assert!(
                    why.starts_with("Walrus failed: it answered 503 Service Unavailable: <Error>"),
                    "{why}"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}

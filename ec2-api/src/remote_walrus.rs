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
        let failed = |e: &dyn std::fmt::Display| BundleAccess::Failed(format!("Walrus: {e}"));
        let call = async {
            let resp = self
                .client
                .send(method, url, Bytes::new())
                .await
                .map_err(|e| failed(&e))?;
            let (parts, body) = resp.into_parts();
            let most = usize::try_from(limit).unwrap_or(usize::MAX);
            let body = http_body_util::Limited::new(body, most.saturating_add(64 << 10))
                .collect()
                .await
                .map_err(|e| failed(&e))?
                .to_bytes();
            Ok((parts.status, parts.headers, body))
        };
        tokio::time::timeout(CALL_TIMEOUT, call)
            .await
            .unwrap_or_else(|_| Err(failed(&"no answer in time")))
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
        _ => BundleAccess::Failed(format!(
            "Walrus answered {status}: {}",
            String::from_utf8_lossy(body)
        )),
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
                .ok_or_else(|| BundleAccess::Failed("Walrus named no size".into()))
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
            BundleAccess::Failed(why) => assert!(why.contains("503"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}

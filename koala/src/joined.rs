//! How Walrus and the cloud controller work on different hosts (`koala walrus --cloud-url`,
//! `koala cloud --walrus-url`): Walrus asks the CLC's key service what checking a request's
//! signature takes (never a secret) and which accounts exist ([`ClcDirectory`]), and decrypts bundles with the cloud's key, which
//! the administrator copies to its host as Eucalyptus' registration did (it never crosses
//! the network); the CLC reads the bundles an account registers from Walrus' internal
//! endpoint with that account's rights ([`WalrusOverHttp`]). Both sides call with their
//! component's own SigV4 key.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use ec2_api::{BundleAccess, BundleStore, Pending};
use http::{Method, StatusCode};
use http_body_util::BodyExt;
use identity::{Answered, CredentialSource, KeyQuestion};
use rpc::{RpcClient, RpcCode, Verifier};
use serde::{Deserialize, Serialize};
use walrus::{Directory, DirectoryFuture};

/// An account as the key service answers `GET /services/Identity/accounts/<id>` (a 404 when
/// there is none).
#[derive(Debug, Serialize, Deserialize)]
pub struct AccountRecord {
    /// The 12-digit id.
    pub account_id: String,
}

/// How long one call to the other role may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Walrus' directory when the identity store is on the CLC's host.
pub struct ClcDirectory {
    keys: Verifier,
    client: RpcClient,
    cloud_url: String,
    cloud_key: bundler::PrivateKey,
}

impl ClcDirectory {
    /// A directory asking the CLC at `cloud_url` with `client` (Walrus' own key and
    /// certificate), and decrypting bundles with the cloud's private key from
    /// `cloud_key_file` (the CLC's `DATA_DIR/keys/cloud-pk.pem`, copied by the
    /// administrator).
    pub fn open(
        client: RpcClient,
        cloud_url: &str,
        cloud_key_file: &Path,
    ) -> Result<ClcDirectory, String> {
        let pem = std::fs::read_to_string(cloud_key_file).map_err(|e| {
            format!(
                "cannot read the cloud's key {}: {e}; copy it from the cloud controller's DATA_DIR/keys/{} (readable by root only)",
                cloud_key_file.display(),
                identity::CLOUD_KEY_FILE
            )
        })?;
        let cloud_key = bundler::read_private_key(&pem)
            .map_err(|e| format!("{} is no RSA private key: {e}", cloud_key_file.display()))?;
        let cloud_url = cloud_url.trim_end_matches('/').to_owned();
        Ok(ClcDirectory {
            keys: Verifier::remote(client.clone(), &cloud_url),
            client,
            cloud_url,
            cloud_key,
        })
    }
}

impl Directory for ClcDirectory {
    fn local_keys(&self) -> Option<&dyn CredentialSource> {
        None
    }

    fn answer<'a>(
        &'a self,
        questions: Vec<KeyQuestion>,
    ) -> DirectoryFuture<'a, Result<Answered, String>> {
        Box::pin(async move {
            self.keys
                .answers(questions)
                .await
                .map_err(|e| e.to_string())
        })
    }

    fn account_exists<'a>(
        &'a self,
        account_id: &'a str,
    ) -> DirectoryFuture<'a, Result<bool, String>> {
        Box::pin(async move {
            if account_id.is_empty() || !account_id.bytes().all(|b| b.is_ascii_digit()) {
                return Ok(false);
            }
            let url = format!("{}/services/Identity/accounts/{account_id}", self.cloud_url);
            match self
                .client
                .call::<AccountRecord>(Method::GET, &url, None::<&()>, CALL_TIMEOUT)
                .await
            {
                Ok(_) => Ok(true),
                Err(e) if e.code == RpcCode::NotFound => Ok(false),
                Err(e) => Err(e.to_string()),
            }
        })
    }

    fn cloud_key(&self) -> Option<&bundler::PrivateKey> {
        Some(&self.cloud_key)
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

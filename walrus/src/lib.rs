//! Walrus: Koala's S3-compatible object store.
//!
//! [`Walrus::handle`] serves one S3 request; the `koala` binary owns the listener and hands
//! every request that is not for another service to it. The HTTP layer lives in `s3/` (one
//! file per protocol area), the storage engine in `store/`.

mod access;
pub mod acl;
mod directory;
mod feed;
pub mod names;
mod policy;
mod quota;
mod remote;
mod s3;
pub mod store;

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use http::Method;

pub use access::AccessError;
pub use directory::{Directory, DirectoryError, DirectoryFuture};
pub use feed::{FeedError, FeedImage, FeedStats, IMAGE_GRACE};
pub use quota::{QuotaError, QuotaSource};
pub use remote::ClcDirectory;
pub use store::{ObjectData, SharedRecords, StorageQuotas};

/// How Walrus is set up by the binary.
#[derive(Clone, Debug)]
pub struct WalrusConfig {
    /// The data directory; the store lives under `data_dir/walrus`.
    pub data_dir: PathBuf,
    /// When set, a Host of `<bucket>.<domain>` addresses a bucket (virtual-host style).
    pub virtual_host_domain: Option<String>,
    /// The region Walrus reports to clients.
    pub region: String,
    /// How long a plain image no registered image uses is kept after its last use before it
    /// is collected ([`IMAGE_GRACE`] unless configured).
    pub image_grace: std::time::Duration,
    /// Where object bytes are kept: files in the data dir, or a Ceph RADOS pool.
    pub object_data: ObjectData,
}

/// Why Walrus could not start.
#[derive(Debug, thiserror::Error)]
pub enum WalrusError {
    /// The object store could not be opened.
    #[error("The object store could not be opened.")]
    Store(#[from] store::StoreError),
    /// The image feed's directories could not be prepared.
    #[error("The image store could not be opened.")]
    Images(#[source] std::io::Error),
    /// A Walrus apart could not read the cloud's private key, which decrypts bundles.
    #[error(
        "cannot read the cloud's key {} (copy it from the cloud controller's DATA_DIR/keys/{}, readable by root only)",
        path.display(),
        identity::CLOUD_KEY_FILE
    )]
    CloudKey {
        /// Where the key was looked for.
        path: std::path::PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// The file where the cloud's private key belongs holds no RSA private key.
    #[error("{} is no RSA private key", path.display())]
    NotACloudKey {
        /// The file.
        path: std::path::PathBuf,
        /// What the bundler found wrong.
        #[source]
        source: bundler::Error,
    },
}

/// The S3 service. Cheap to clone; every clone serves the same store.
#[derive(Clone)]
pub struct Walrus {
    shared: Arc<s3::Shared>,
}

impl Walrus {
    /// Opens the store under data_dir/walrus, verifying callers against `directory`.
    pub fn open(
        config: WalrusConfig,
        directory: Arc<dyn Directory>,
    ) -> Result<Walrus, WalrusError> {
        let dir = config.data_dir.join("walrus");
        let store = store::Store::open(&dir, &config.object_data)?;
        let images =
            feed::ImageFeed::open(&dir, store.clone(), directory.clone(), config.image_grace)
                .map_err(WalrusError::Images)?;
        Ok(Walrus {
            shared: Arc::new(s3::Shared {
                store,
                directory,
                virtual_host_domain: config.virtual_host_domain,
                region: config.region,
                images,
                quota_source: std::sync::OnceLock::new(),
            }),
        })
    }

    /// Makes Walrus enforce the quotas `source` gives (once; a second source is ignored).
    /// Until then, and for a Walrus of its own, nothing is limited.
    pub fn set_quota_source(&self, source: Arc<dyn QuotaSource>) {
        if self.shared.quota_source.set(source).is_err() {
            tracing::warn!("Walrus already has a quota source; the new one is ignored");
        }
    }

    /// The plain image of the bundle whose manifest is `bucket/key`, unbundled now if it was
    /// not before: for a cloud controller on the same host that wants the image's SHA-256
    /// without an HTTP round trip. The caller is trusted (no rights are checked).
    pub async fn unbundled_image(&self, bucket: &str, key: &str) -> Result<FeedImage, FeedError> {
        match (
            names::BucketName::parse(bucket),
            names::ObjectKey::parse(key),
        ) {
            (Some(b), Some(k)) => self.shared.images.image_for_manifest(&b, &k, None).await,
            _ => Err(FeedError::ManifestNotFound),
        }
    }

    /// Records that the cloud's image `image_id` is registered with the bundle manifest at
    /// `location` whose bytes hash to `manifest_sha256`: the plain image it unbundles into
    /// is kept while the registration lasts. For the cloud controller, at RegisterImage;
    /// blocking (a synced write).
    pub fn retain_image(
        &self,
        image_id: &str,
        location: &str,
        manifest_sha256: &str,
    ) -> Result<(), FeedError> {
        self.shared
            .images
            .retain(image_id, location, manifest_sha256)
    }

    /// Ends the registration of the cloud's image `image_id` (DeregisterImage, or a
    /// RegisterImage that failed): its plain image is collected after the grace period if
    /// no other registration uses it. Blocking (a synced write).
    pub fn release_image(&self, image_id: &str) -> Result<(), FeedError> {
        self.shared.images.release(image_id)
    }

    /// What the image feed has done since Walrus opened.
    pub fn image_feed_stats(&self) -> FeedStats {
        self.shared.images.stats()
    }

    /// Serves one S3 request. `req` is the whole request as received (path may carry the
    /// `/services/Walrus` or `/services/objectstorage` mount prefix, which is stripped; the
    /// prefix is not part of the SigV2 resource). Never panics; client mistakes get S3 XML
    /// errors.
    ///
    /// Requests whose header section exceeds 8 KiB are refused first, as AWS does.
    ///
    /// The work runs in its own task so that a client going away mid-request never cancels
    /// a commit halfway, and so that a bug that panics costs one 500, not the connection.
    pub async fn handle(&self, req: http::Request<Body>) -> http::Response<Body> {
        let request_id = s3::new_request_id();
        let (parts, body) = req.into_parts();
        let is_head = parts.method == Method::HEAD;
        // A cross-origin request (not a preflight) gets its bucket's CORS headers, whatever
        // its outcome.
        let cors = parts
            .headers
            .get(http::header::ORIGIN)
            .filter(|_| parts.method != Method::OPTIONS)
            .map(|origin| s3::cors::Asked {
                origin: origin.clone(),
                method: parts
                    .headers
                    .get("access-control-request-method")
                    .and_then(|m| m.to_str().ok())
                    .unwrap_or(parts.method.as_str())
                    .to_owned(),
            });
        let close_after = expects_continue_without_body(&parts.headers);
        let at = s3::addressed(&parts, self.shared.virtual_host_domain.as_deref());
        let shared = self.shared.clone();
        let id = request_id.clone();
        let result = match s3::check_header_section(&parts.headers) {
            Err(e) => Err(e),
            Ok(()) => {
                let task = tokio::spawn(async move { s3::dispatch(shared, id, parts, body).await });
                match task.await {
                    Ok(r) => r,
                    Err(join) => Err(s3::error::S3Error::internal(format!(
                        "request task failed: {join}"
                    ))),
                }
            }
        };
        let resp = match result {
            Ok(resp) => resp,
            Err(e) => s3::error_response(e, &at, &request_id, is_head),
        };
        let mut resp = s3::finalize(resp, &request_id);
        if let (Some(asked), Some(bucket)) = (cors, &at.bucket) {
            s3::cors::decorate(&self.shared.store, bucket, &asked, &mut resp);
        }
        if close_after {
            resp.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        resp
    }
}

/// Whether a request announces `Expect: 100-continue` with an empty body. hyper rightly
/// sends no interim 100 for it (RFC 9110 §10.1.1), but botocore then takes the final
/// response for the interim one and misreads the next response on that kept-alive
/// connection, stalling until its read timeout (boto/botocore#3755; `aws s3 sync` of an
/// empty file hits it). Closing the connection after such a response resets botocore's
/// connection state; the cost is one reconnect per empty upload.
fn expects_continue_without_body(headers: &http::HeaderMap) -> bool {
    let expects = headers
        .get(http::header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));
    let empty = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "0");
    expects && empty
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_expect_continue_is_detected() {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::EXPECT, "100-Continue".parse().unwrap());
        headers.insert(http::header::CONTENT_LENGTH, "0".parse().unwrap());
        assert!(expects_continue_without_body(&headers));
        headers.insert(http::header::CONTENT_LENGTH, "5".parse().unwrap());
        assert!(!expects_continue_without_body(&headers));
        headers.remove(http::header::EXPECT);
        headers.insert(http::header::CONTENT_LENGTH, "0".parse().unwrap());
        assert!(!expects_continue_without_body(&headers));
    }
}

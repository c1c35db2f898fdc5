//! The node's side of Walrus' image feed: learning an image's SHA-256 from its bundle (the
//! first run of an image makes Walrus unbundle it) and streaming the plain image into the
//! cache by that hash (unbundled again first should Walrus have collected it).

use std::time::Duration;

use bytes::Bytes;
use cache::{FetchError, Fetcher, ImageSink, Sha256Digest};
use http::Method;
use http_body_util::BodyExt;

use rpc::{ImageRef, RpcClient, RpcCode, RpcError};

/// The header in which Walrus names a plain image's SHA-256.
const SHA256_HEADER: &str = "x-koala-image-sha256";

/// How long Walrus may take to unbundle an image on first use (a few GiB at ~100–200 MB/s).
const UNBUNDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// Walrus' image feed, called with the node's own key.
#[derive(Clone)]
pub struct WalrusFeed {
    client: RpcClient,
    /// `http://host:port/services/Walrus`.
    base: String,
}

impl WalrusFeed {
    /// A feed client for the Walrus at `s3_url` (its `/services/Walrus` URL).
    pub fn new(client: RpcClient, s3_url: &str) -> Self {
        WalrusFeed {
            client,
            base: s3_url.trim_end_matches('/').to_owned(),
        }
    }

    /// The SHA-256 and size of an image: given by the CLC when it knows them, else asked of
    /// Walrus (which unbundles the image once, if no one did before), pinning the manifest
    /// as registered so that Walrus refuses a manifest replaced since.
    pub async fn resolve(&self, image: &ImageRef) -> Result<(Sha256Digest, u64), RpcError> {
        if let (Some(sha), Some(size)) = (&image.sha256, image.size) {
            if let Ok(digest) = sha.parse() {
                return Ok((digest, size));
            }
        }
        let mut url = format!(
            "{}/_koala/images?manifest={}",
            self.base,
            identity::uri_encode(image.manifest.as_bytes(), false)
        );
        if let Some(pin) = &image.manifest_sha256 {
            url.push_str(&format!(
                "&manifest-sha256={}",
                identity::uri_encode(pin.as_bytes(), false)
            ));
        }
        let resp = self.within_unbundle_time(image, Method::HEAD, &url).await?;
        if !resp.status().is_success() {
            // A HEAD answer has no body: ask once more for the error document, which says why.
            let status = resp.status();
            let why = match self.within_unbundle_time(image, Method::GET, &url).await {
                Ok(resp) if !resp.status().is_success() => error_message(resp).await,
                _ => None,
            };
            return Err(RpcError::new(
                RpcCode::InternalError,
                format!(
                    "Walrus cannot provide image {} from {} (HTTP {status}){}",
                    image.id,
                    image.manifest,
                    why.map(|m| format!(": {m}")).unwrap_or_default()
                ),
            ));
        }
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let digest = header(SHA256_HEADER)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| RpcError::new(RpcCode::InternalError, "Walrus named no image hash"))?;
        let size = header("content-length")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| RpcError::new(RpcCode::InternalError, "Walrus gave no image size"))?;
        Ok((digest, size))
    }

    /// One request to the feed about `image`, allowed the time an unbundling may take.
    async fn within_unbundle_time(
        &self,
        image: &ImageRef,
        method: Method,
        url: &str,
    ) -> Result<http::Response<hyper::body::Incoming>, RpcError> {
        let call = self.client.send(method, url, Bytes::new());
        tokio::time::timeout(UNBUNDLE_TIMEOUT, call)
            .await
            .map_err(|_| {
                RpcError::new(
                    RpcCode::Unavailable,
                    format!("Walrus did not unbundle {} in time", image.manifest),
                )
            })?
    }
}

/// The `<Message>` of an S3 error document (a few KiB at most are read).
async fn error_message(resp: http::Response<hyper::body::Incoming>) -> Option<String> {
    let body = http_body_util::Limited::new(resp.into_body(), 64 << 10)
        .collect()
        .await
        .ok()?
        .to_bytes();
    let error = xml::Element::parse(&body).ok()?;
    error.find("Message").map(|m| m.text.clone())
}

/// The fetcher of one image: by its hash, and, should Walrus have collected the plain image
/// meanwhile (an image no registration used for a while), unbundled again from its pinned
/// manifest first, which makes the same image.
pub struct ImageFetch {
    feed: WalrusFeed,
    image: ImageRef,
}

impl WalrusFeed {
    /// The fetcher of `image`'s bytes for the cache.
    pub fn for_image(&self, image: &ImageRef) -> ImageFetch {
        ImageFetch {
            feed: self.clone(),
            image: image.clone(),
        }
    }
}

impl Fetcher for ImageFetch {
    async fn fetch(&self, digest: &Sha256Digest, sink: &mut ImageSink) -> Result<(), FetchError> {
        let feed = &self.feed;
        let url = format!("{}/_koala/images/{}", feed.base, digest.to_hex());
        let mut resp = feed.client.send(Method::GET, &url, Bytes::new()).await?;
        if resp.status() == http::StatusCode::NOT_FOUND {
            let by_manifest = ImageRef {
                sha256: None,
                size: None,
                ..self.image.clone()
            };
            let (again, _) = feed.resolve(&by_manifest).await?;
            if again != *digest {
                return Err(format!(
                    "Walrus unbundled {} into image {again}, not {digest}",
                    self.image.manifest
                )
                .into());
            }
            resp = feed.client.send(Method::GET, &url, Bytes::new()).await?;
        }
        if !resp.status().is_success() {
            return Err(format!("Walrus answered {} for image {digest}", resp.status()).into());
        }
        let mut body = resp.into_body();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame?.into_data() {
                sink.write(data).await?;
            }
        }
        Ok(())
    }
}

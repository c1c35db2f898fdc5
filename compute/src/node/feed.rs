//! The node's side of Walrus' image feed: learning an image's SHA-256 from its bundle (the
//! first run of an image makes Walrus unbundle it) and streaming the plain image into the
//! cache by that hash (unbundled again first should Walrus have collected it), or giving the
//! cache its chunk list and ranges to fill it on demand.

use std::time::Duration;

use bytes::Bytes;
use cache::{BoxFuture, ChunkList, ChunkSource, FetchError, Fetcher, ImageSink, Sha256Digest};
use http::Method;
use http_body_util::BodyExt;

use rpc::{ImageRef, RpcClient, RpcCode, RpcError};

/// The header in which Walrus names a plain image's SHA-256.
const SHA256_HEADER: &str = "x-koala-image-sha256";

/// The header in which Walrus gives the bytes each entry of a chunk list covers.
const CHUNK_SIZE_HEADER: &str = "x-koala-chunk-size";

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

impl ImageFetch {
    /// GETs `path` of the image feed (below `/_koala/images/<sha256>`) with `headers`; should
    /// Walrus have collected the plain image meanwhile (an image no registration used for a
    /// while), it is unbundled again from its pinned manifest first, which makes the same image.
    async fn get(
        &self,
        digest: &Sha256Digest,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<http::Response<hyper::body::Incoming>, FetchError> {
        let feed = &self.feed;
        let url = format!("{}/_koala/images/{}{path}", feed.base, digest.to_hex());
        let resp = feed
            .client
            .send_with(Method::GET, &url, headers, Bytes::new())
            .await?;
        if resp.status() != http::StatusCode::NOT_FOUND {
            return Ok(resp);
        }
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
        Ok(feed
            .client
            .send_with(Method::GET, &url, headers, Bytes::new())
            .await?)
    }

    /// A whole answer of the feed, within [`PIECE_TIMEOUT`]: a chunk list or a range.
    async fn get_piece(
        &self,
        digest: &Sha256Digest,
        path: &str,
        headers: &[(&str, &str)],
        expected: http::StatusCode,
    ) -> Result<(http::HeaderMap, Bytes), FetchError> {
        let piece = async {
            let resp = self.get(digest, path, headers).await?;
            if resp.status() != expected {
                return Err(FetchError::from(format!(
                    "Walrus answered {} for image {digest}{path}",
                    resp.status()
                )));
            }
            let (parts, body) = resp.into_parts();
            let body = http_body_util::Limited::new(body, MAX_PIECE)
                .collect()
                .await?
                .to_bytes();
            Ok((parts.headers, body))
        };
        tokio::time::timeout(PIECE_TIMEOUT, piece)
            .await
            .map_err(|_| format!("Walrus did not send {digest}{path} in time"))?
    }
}

/// The longest a chunk list or a range may take to arrive before it is asked for again.
const PIECE_TIMEOUT: Duration = Duration::from_secs(30);

/// The most bytes of one chunk list or range read into memory (a 64 GiB image's chunk list
/// is 2 MiB; ranges are a chunk).
const MAX_PIECE: usize = 16 << 20;

impl Fetcher for ImageFetch {
    async fn fetch(&self, digest: &Sha256Digest, sink: &mut ImageSink) -> Result<(), FetchError> {
        let resp = self.get(digest, "", &[]).await?;
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

/// The same fetcher serves a lazily filled image: the chunk list Walrus recorded when it
/// unbundled the image, and ranges of it, over the node's authenticated TLS channel.
impl ChunkSource for ImageFetch {
    fn chunk_list<'a>(
        &'a self,
        digest: &'a Sha256Digest,
    ) -> BoxFuture<'a, Result<ChunkList, FetchError>> {
        Box::pin(async move {
            let (headers, body) = self
                .get_piece(digest, "/chunks", &[], http::StatusCode::OK)
                .await?;
            let chunk_size = headers
                .get(CHUNK_SIZE_HEADER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .ok_or("Walrus gave no chunk size")?;
            if body.len() % 32 != 0 {
                return Err("Walrus sent a chunk list that is not whole digests".into());
            }
            let digests = body
                .chunks_exact(32)
                .map(|d| Sha256Digest::from_bytes(d.try_into().unwrap_or([0; 32])))
                .collect();
            Ok(ChunkList {
                chunk_size,
                digests,
            })
        })
    }

    fn read_range<'a>(
        &'a self,
        digest: &'a Sha256Digest,
        offset: u64,
        len: u64,
    ) -> BoxFuture<'a, Result<Bytes, FetchError>> {
        Box::pin(async move {
            let range = format!("bytes={offset}-{}", offset + len - 1);
            let (_, body) = self
                .get_piece(
                    digest,
                    "",
                    &[("range", range.as_str())],
                    http::StatusCode::PARTIAL_CONTENT,
                )
                .await?;
            Ok(body)
        })
    }
}

//! The feed's internal HTTP endpoint, under Walrus' mounts (`/services/Walrus/_koala/...`,
//! `/services/objectstorage/_koala/...` or the root of the port): `_koala` is no valid
//! bucket name, so the S3 namespace is untouched. Only the cloud's own components may call
//! it, over TLS with their own certificate, each for what its role needs:
//!
//! - `GET|HEAD /_koala/images?manifest=BUCKET/KEY[&manifest-sha256=HEX]`: the plain image
//!   of that bundle, unbundled first if needed; with the SHA-256 of the manifest's bytes as
//!   registered, only the image of exactly that manifest (409 BadDigest if the manifest was
//!   replaced and that one was never unbundled); for node controllers.
//! - `GET|HEAD /_koala/images/<sha256>`: an image already unbundled, by its hash; for node
//!   controllers.
//! - `GET /_koala/images/<sha256>/chunks`: the image's chunk list, the SHA-256 of each 1 MiB
//!   chunk in order (32 bytes each, `x-koala-chunk-size` says the size), so that a node
//!   checks every range it fetches before using it; for node controllers.
//! - `GET|HEAD /_koala/objects?account=ID&bucket=B&key=K[&limit=N]`: an object, if that
//!   account may read it; for the cloud controller alone, which reads the bundles accounts
//!   register.
//! - `PUT /_koala/registrations/<image-id>?manifest=BUCKET/KEY&manifest-sha256=HEX` (200)
//!   and `DELETE /_koala/registrations/<image-id>` (204): the cloud controller records which
//!   manifest a registered image uses, and releases it when the image is deregistered, so
//!   that plain images no registration uses are collected; for the cloud controller alone.
//! - `GET /_koala/accounts/<account-id>/buckets`: the names of the buckets the account owns,
//!   one per line (`text/plain`); the cloud controller deletes only accounts that own none.
//!
//! The image endpoints answer with `Content-Length`, `ETag` and `x-koala-image-sha256` (the image's
//! SHA-256) and honour a single `Range`.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use http::{HeaderValue, Method, Response, StatusCode};
use identity::{ComponentKind, Transport};

use crate::access::AccessError;
use crate::names::{BucketName, ObjectKey};
use crate::s3::error::S3Error;
use crate::s3::get::parse_range;
use crate::s3::ident::{self, Authenticated, RequestParts};
use crate::s3::router::{strip_mount, Query};
use crate::s3::{empty_response, etag_value, Shared};

/// The query parameter pinning the manifest (the SHA-256 of its bytes as registered).
pub const MANIFEST_SHA256_PARAM: &str = "manifest-sha256";

/// The header naming the image's SHA-256.
pub const SHA256_HEADER: &str = "x-koala-image-sha256";

/// Serves a request for `path`, the part of the request path after `/_koala/`.
pub async fn serve(
    shared: Arc<Shared>,
    path: &str,
    parts: &http::request::Parts,
) -> Result<Response<Body>, S3Error> {
    let raw_path = parts.uri.path();
    let raw_query = parts.uri.query().unwrap_or("");
    let req = RequestParts {
        method: parts.method.as_str(),
        raw_path,
        raw_query,
        headers: &parts.headers,
    };
    let now = SystemTime::now();
    let auth = ident::verify_with(shared.directory.as_ref(), |keys| {
        ident::verify_s3(&req, strip_mount(raw_path), keys, now)
    })
    .await?;
    // A component's key is good only over its own TLS connection (its certificate names it).
    let peer = match parts.extensions.get::<Transport>() {
        Some(Transport::Tls { peer }) => peer.as_deref(),
        _ => None,
    };
    let caller = match auth {
        Authenticated::Signed { principal, .. } if peer == Some(principal.user_name.as_str()) => {
            principal.component()
        }
        _ => None,
    };
    if let Some(image_id) = path.strip_prefix("registrations/") {
        // Registrations are the cloud controller's to record.
        if caller != Some(ComponentKind::CloudController) {
            return Err(S3Error::access_denied());
        }
        return registration(shared, image_id, &parts.method, raw_query).await;
    }
    if let Some(account) = path
        .strip_prefix("accounts/")
        .and_then(|rest| rest.strip_suffix("/buckets"))
    {
        // Which buckets an account owns is the cloud controller's to ask (DeleteAccount).
        if caller != Some(ComponentKind::CloudController) {
            return Err(S3Error::access_denied());
        }
        if parts.method != Method::GET {
            return Err(S3Error::MethodNotAllowed);
        }
        return buckets_of(shared, account).await;
    }
    let head = match parts.method {
        Method::GET => false,
        Method::HEAD => true,
        _ => return Err(S3Error::MethodNotAllowed),
    };
    // Reading as any account is the cloud controller's right alone; images are the nodes'.
    let allowed = match path {
        "objects" => ComponentKind::CloudController,
        _ => ComponentKind::NodeController,
    };
    if caller != Some(allowed) {
        return Err(S3Error::access_denied());
    }
    if path == "objects" {
        return object_for_account(shared, raw_query, head).await;
    }
    let sha256 = match path {
        "images" => {
            let query = Query::parse(raw_query);
            let (bucket, key) = manifest_location(query.get("manifest"))?;
            let pin = match query.get(MANIFEST_SHA256_PARAM) {
                Some(pin) if super::is_sha256_hex(pin) => Some(pin),
                Some(_) => {
                    return Err(S3Error::InvalidArgument(format!(
                        "The {MANIFEST_SHA256_PARAM} parameter is a SHA-256 in 64 lowercase hexadecimal digits."
                    )))
                }
                None => None,
            };
            shared
                .images
                .image_for_manifest(&bucket, &key, pin)
                .await?
                .sha256
        }
        _ => match path.strip_prefix("images/") {
            Some(rest) if rest.ends_with("/chunks") => {
                let hash = rest.trim_end_matches("/chunks");
                if !super::is_sha256_hex(hash) {
                    return Err(S3Error::InvalidArgument(
                        "An image is named by its SHA-256 in 64 lowercase hexadecimal digits."
                            .into(),
                    ));
                }
                return chunk_list(shared, hash.to_owned(), head).await;
            }
            Some(hash) if super::is_sha256_hex(hash) => hash.to_owned(),
            Some(_) => {
                return Err(S3Error::InvalidArgument(
                    "An image is named by its SHA-256 in 64 lowercase hexadecimal digits.".into(),
                ))
            }
            None => return Err(S3Error::NoSuchKey),
        },
    };
    let (file, size) = shared
        .images
        .open_image(&sha256)?
        .ok_or(S3Error::NoSuchKey)?;
    let range = parse_range(
        parts
            .headers
            .get(http::header::RANGE)
            .and_then(|v| v.to_str().ok()),
        size,
    )?;

    let mut resp = empty_response(StatusCode::OK);
    let h = resp.headers_mut();
    h.insert(http::header::ETAG, etag_value(&sha256));
    if let Ok(v) = HeaderValue::from_str(&sha256) {
        h.insert(SHA256_HEADER, v);
    }
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        http::header::ACCEPT_RANGES,
        HeaderValue::from_static("bytes"),
    );
    let (offset, len) = match range {
        Some((first, last)) if size > 0 => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {first}-{last}/{size}")) {
                h.insert(http::header::CONTENT_RANGE, v);
            }
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
            (first, last - first + 1)
        }
        _ => (0, size),
    };
    resp.headers_mut()
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
    if !head && len > 0 {
        *resp.body_mut() = Body::from_stream(crate::store::stream_file(file, offset, len));
    }
    Ok(resp)
}

/// The header saying how many bytes each entry of a chunk list covers.
pub const CHUNK_SIZE_HEADER: &str = "x-koala-chunk-size";

/// Image `sha256`'s chunk list (made off the reactor if it must be read out of the image).
async fn chunk_list(
    shared: Arc<Shared>,
    sha256: String,
    head: bool,
) -> Result<Response<Body>, S3Error> {
    let images = shared.images.clone();
    let hash = sha256.clone();
    let list = tokio::task::spawn_blocking(move || images.chunk_list(&hash))
        .await
        .map_err(|e| S3Error::internal(format!("the chunk list task failed: {e}")))??
        .ok_or(S3Error::NoSuchKey)?;
    let mut resp = empty_response(StatusCode::OK);
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&sha256) {
        h.insert(SHA256_HEADER, v);
    }
    h.insert(CHUNK_SIZE_HEADER, HeaderValue::from(super::CHUNK_SIZE));
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(list.len()));
    if !head {
        *resp.body_mut() = Body::from(list);
    }
    Ok(resp)
}

/// An object read with the rights of the account named in the query (`account`, `bucket`,
/// `key`, and for GET `limit`): how a cloud controller on another host reads the manifests
/// an account registers, with that account's rights and no more.
async fn object_for_account(
    shared: Arc<Shared>,
    raw_query: &str,
    head: bool,
) -> Result<Response<Body>, S3Error> {
    let query = Query::parse(raw_query);
    let param = |name: &str| {
        query
            .get(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| S3Error::InvalidArgument(format!("The {name} parameter is required.")))
    };
    let (account, bucket, key) = (param("account")?, param("bucket")?, param("key")?);
    let walrus = crate::Walrus { shared };
    let refused = |e: AccessError| match e {
        AccessError::NotFound { .. } => S3Error::NoSuchKey,
        AccessError::Denied { .. } => S3Error::access_denied(),
        AccessError::TooLarge { .. } => S3Error::EntityTooLarge,
        e @ AccessError::Failed(_) => S3Error::Internal(Box::new(e)),
    };
    let mut resp = empty_response(StatusCode::OK);
    if head {
        let size = walrus
            .object_size_for(account, bucket, key)
            .map_err(refused)?;
        resp.headers_mut()
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from(size));
        return Ok(resp);
    }
    let limit = param("limit")?
        .parse()
        .map_err(|_| S3Error::InvalidArgument("The limit parameter must be a number.".into()))?;
    let body = walrus
        .read_object_for(account, bucket, key, limit)
        .await
        .map_err(refused)?;
    resp.headers_mut()
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    *resp.body_mut() = Body::from(body);
    Ok(resp)
}

/// The buckets `account` owns, a name per line.
async fn buckets_of(shared: Arc<Shared>, account: &str) -> Result<Response<Body>, S3Error> {
    let walrus = crate::Walrus { shared };
    let account = account.to_owned();
    let names = tokio::task::spawn_blocking(move || walrus.buckets_of(&account))
        .await
        .map_err(|e| S3Error::internal(format!("the bucket listing task failed: {e}")))?
        .map_err(|e| S3Error::Internal(Box::new(e)))?;
    let mut text = String::new();
    for name in names {
        text.push_str(&name);
        text.push('\n');
    }
    let mut resp = empty_response(StatusCode::OK);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(text.len()));
    *resp.body_mut() = Body::from(text);
    Ok(resp)
}

/// Records (PUT) or releases (DELETE) the registration of image `image_id`.
async fn registration(
    shared: Arc<Shared>,
    image_id: &str,
    method: &Method,
    raw_query: &str,
) -> Result<Response<Body>, S3Error> {
    if !is_image_id(image_id) {
        return Err(S3Error::InvalidArgument(format!(
            "'{image_id}' is not an image id (emi-, eki- or eri- and 8 or 17 hexadecimal digits)."
        )));
    }
    let images = shared.images.clone();
    let image_id = image_id.to_owned();
    let (done, status) = match *method {
        Method::PUT => {
            let query = Query::parse(raw_query);
            let (bucket, key) = manifest_location(query.get("manifest"))?;
            let pin = query
                .get(MANIFEST_SHA256_PARAM)
                .filter(|p| super::is_sha256_hex(p))
                .ok_or_else(|| {
                    S3Error::InvalidArgument(format!(
                        "The {MANIFEST_SHA256_PARAM} parameter, a SHA-256 in 64 lowercase hexadecimal digits, is required."
                    ))
                })?
                .to_owned();
            let location = format!("{}/{}", bucket.as_str(), key.as_str());
            let done =
                tokio::task::spawn_blocking(move || images.retain(&image_id, &location, &pin))
                    .await;
            (done, StatusCode::OK)
        }
        Method::DELETE => {
            let done = tokio::task::spawn_blocking(move || images.release(&image_id)).await;
            (done, StatusCode::NO_CONTENT)
        }
        _ => return Err(S3Error::MethodNotAllowed),
    };
    done.map_err(|e| S3Error::internal(format!("the registration task failed: {e}")))??;
    Ok(empty_response(status))
}

/// Whether `id` is shaped as the cloud's image ids: `emi-`, `eki-` or `eri-` and 8 (or, in
/// AWS' long form, 17) lowercase hexadecimal digits.
fn is_image_id(id: &str) -> bool {
    let hex = |s: &str| {
        (s.len() == 8 || s.len() == 17) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    ["emi-", "eki-", "eri-"]
        .iter()
        .any(|prefix| id.strip_prefix(prefix).is_some_and(hex))
}

/// `BUCKET/KEY` of the `manifest` parameter.
fn manifest_location(value: Option<&str>) -> Result<(BucketName, ObjectKey), S3Error> {
    let invalid = || {
        S3Error::InvalidArgument(
            "The manifest parameter must name a manifest as BUCKET/KEY.".into(),
        )
    };
    let (bucket, key) = value.and_then(|v| v.split_once('/')).ok_or_else(invalid)?;
    match (BucketName::parse(bucket), ObjectKey::parse(key)) {
        (Some(b), Some(k)) => Ok((b, k)),
        _ => Err(invalid()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_ids() {
        for good in ["emi-0123abcd", "eki-00000000", "eri-0123456789abcdef0"] {
            assert!(is_image_id(good), "{good}");
        }
        for bad in [
            "emi-0123ABCD",
            "ami-0123abcd",
            "emi-0123abc",
            "emi-",
            "emi-0123abcd/x",
            "",
        ] {
            assert!(!is_image_id(bad), "{bad}");
        }
    }
}

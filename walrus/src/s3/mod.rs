//! The S3 HTTP layer: one file per protocol area (Garage's layout). [`router`] turns a
//! request into an [`router::Endpoint`] carrying its typed parameters, [`auth`] says who is
//! calling, and the handlers in `bucket`, `list`, `put`, `get`, `copy`, `delete`,
//! `multipart`, `post`, `acl`, `tagging`, `cors`, `attributes`, `versioning`, `lock` and `policy` do the work, [`access`] decides who may; [`error`] and [`xml`] render what goes back.

pub mod access;
pub mod acl;
pub mod attributes;
pub mod auth;
pub mod bucket;
pub mod copy;
pub mod cors;
pub mod delete;
pub mod error;
pub mod get;
pub mod ident;
pub mod list;
pub mod lock;
pub mod multipart;
pub mod policy;
pub mod post;
pub mod put;
pub mod router;
pub mod tagging;
pub mod versioning;
pub mod xml;

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use error::{Addressed, S3Error};
use ident::{Authenticated, Payload, Principal, RequestParts};
use router::{Endpoint, Query};

use crate::acl::{Acl, CannedAcl, Grant, Grantee, Permission};
use crate::store::{StorageQuotas, Store};

/// What Walrus holds for the lifetime of the process.
pub struct Shared {
    /// The object store.
    pub store: Store,
    /// Access keys and accounts, for signature verification and grants.
    pub directory: Arc<dyn crate::Directory>,
    /// `<bucket>.<domain>` Host names address buckets.
    pub virtual_host_domain: Option<String>,
    /// The region Walrus reports (GetBucketLocation, HeadBucket).
    pub region: String,
    /// The image feed (internal endpoint `/_koala/images`).
    pub images: crate::feed::ImageFeed,
    /// Where the per-account quotas come from, once the binary supplies it.
    pub quota_source: std::sync::OnceLock<Arc<dyn crate::QuotaSource>>,
}

/// One request being served: what every handler needs besides the body and the endpoint's
/// parameters.
pub struct Ctx {
    /// Process-wide state.
    pub shared: Arc<Shared>,
    /// The decoded query, for the parameters the router leaves to the handlers.
    pub query: Query,
    /// The request's headers.
    pub headers: HeaderMap,
    /// Who signed it, if anyone.
    pub principal: Option<Principal>,
    /// This request's id (also in `x-amz-request-id`).
    pub request_id: String,
    /// The address the request came from (policies' `aws:SourceIp`), when the server
    /// says.
    pub source_ip: Option<std::net::IpAddr>,
    /// Whether the request came over TLS (policies' `aws:SecureTransport`), when the
    /// server says.
    pub secure_transport: Option<bool>,
}

impl Ctx {
    /// The store.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// A header as a string, when present and visible ASCII.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A query parameter.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query.get(name)
    }

    /// The caller's account id, or AccessDenied for anonymous callers.
    pub fn account_id(&self) -> Result<&str, S3Error> {
        Ok(&auth::require_signed(self.principal.as_ref())?.account_id)
    }

    /// The ACL a new bucket or object gets from `x-amz-acl` or `x-amz-grant-*` (default:
    /// private). `owner` owns the new resource; `bucket_owner` matters for `bucket-owner-*`.
    pub async fn requested_acl(&self, owner: &str, bucket_owner: &str) -> Result<Acl, S3Error> {
        let grants = acl::grant_headers(&self.headers)?;
        self.check_grantees(&grants).await?;
        match self.header("x-amz-acl") {
            Some(_) if !grants.is_empty() => Err(S3Error::InvalidRequest(
                "Specifying both Canned ACLs and Header Grants is not allowed".into(),
            )),
            Some(v) => CannedAcl::parse(v.trim())
                .map(|c| c.to_acl(owner, bucket_owner))
                .ok_or_else(|| S3Error::InvalidArgument(format!("Invalid canned ACL: {v}"))),
            None if !grants.is_empty() => {
                let mut all = vec![Grant {
                    grantee: Grantee::Account(owner.to_owned()),
                    permission: Permission::FullControl,
                }];
                all.extend(grants);
                Ok(Acl {
                    owner: owner.to_owned(),
                    grants: all,
                })
            }
            None => Ok(CannedAcl::Private.to_acl(owner, bucket_owner)),
        }
    }

    /// InvalidArgument "Invalid id" unless every account a grant names exists (as AWS
    /// refuses grants to canonical ids that are no account).
    pub async fn check_grantees(&self, grants: &[Grant]) -> Result<(), S3Error> {
        let mut checked: Vec<&str> = Vec::new();
        for g in grants {
            let Grantee::Account(id) = &g.grantee else {
                continue;
            };
            if checked.contains(&id.as_str()) {
                continue;
            }
            let exists = self
                .shared
                .directory
                .account_exists(id)
                .await
                .map_err(|e| S3Error::Internal(Box::new(e)))?;
            if !exists {
                return Err(S3Error::InvalidArgument("Invalid id".into()));
            }
            checked.push(id);
        }
        Ok(())
    }

    /// The quotas in force: unlimited without a source, and when the source cannot tell now
    /// (a write is never refused for want of the cloud controller).
    pub async fn quotas(&self) -> StorageQuotas {
        let Some(source) = self.shared.quota_source.get() else {
            return StorageQuotas::UNLIMITED;
        };
        match source.quotas().await {
            Ok(quotas) => quotas,
            Err(e) => {
                tracing::warn!(
                    "the quotas cannot be learnt now, so none is enforced: {}",
                    rpc::error_chain(&e)
                );
                StorageQuotas::UNLIMITED
            }
        }
    }

    /// `QuotaExceeded` at once, before any byte of a body of `len` bytes is received, when
    /// `owner` would then store more than `quotas` allow, even counting the `freed` bytes of
    /// what the write replaces. The store checks again, exactly, when the write commits.
    pub fn check_room(
        &self,
        quotas: &StorageQuotas,
        owner: &str,
        len: Option<u64>,
        freed: u64,
    ) -> Result<(), S3Error> {
        let (Some(max), Some(len)) = (quotas.bytes_per_account, len) else {
            return Ok(());
        };
        let held = self.store().usage(owner).bytes.saturating_sub(freed);
        if held.saturating_add(len) > max {
            return Err(S3Error::QuotaExceeded);
        }
        Ok(())
    }

    /// Display name for an account id: the caller's account name when it is theirs.
    pub fn display_name(&self, account_id: &str) -> String {
        match &self.principal {
            Some(p) if p.account_id == account_id => p.account_name.clone(),
            _ => account_id.to_owned(),
        }
    }
}

/// A response with an XML body.
pub fn xml_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Body::from(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    resp
}

/// An empty response.
pub fn empty_response(status: StatusCode) -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = status;
    resp
}

/// A quoted ETag header value.
pub fn etag_value(etag: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{etag}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("\"\""))
}

/// S3's timestamp form in XML: `2009-10-12T17:50:30.000Z`.
pub fn iso8601(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        dt.year(),
        dt.month() as u8,
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second(),
        dt.millisecond()
    )
}

/// A fresh request id: 16 uppercase hex digits, as AWS' are.
pub fn new_request_id() -> String {
    format!("{:016X}", rand::random::<u64>())
}

/// The most bytes of request headers (names plus values) S3 accepts, as in AWS.
pub const MAX_HEADER_SECTION: usize = 8192;

/// RequestHeaderSectionTooLarge when the headers' names and values exceed
/// [`MAX_HEADER_SECTION`]; AWS checks this before anything else.
pub fn check_header_section(headers: &HeaderMap) -> Result<(), S3Error> {
    let size: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if size > MAX_HEADER_SECTION {
        return Err(S3Error::RequestHeaderSectionTooLarge);
    }
    Ok(())
}

/// Routes, authenticates and serves one request. Errors are rendered by the caller.
pub async fn dispatch(
    shared: Arc<Shared>,
    request_id: String,
    parts: http::request::Parts,
    body: Body,
) -> Result<Response<Body>, S3Error> {
    let raw_path = parts.uri.path();
    let raw_query = parts.uri.query().unwrap_or("");
    let host = host_of(&parts);
    if let Some(rest) = router::internal_path(raw_path, host, shared.virtual_host_domain.as_deref())
    {
        return crate::feed::http::serve(shared.clone(), rest, &parts).await;
    }
    let route = router::route(
        &parts.method,
        raw_path,
        raw_query,
        host,
        shared.virtual_host_domain.as_deref(),
        parts.headers.contains_key("x-amz-copy-source"),
    )?;
    let req = RequestParts {
        method: parts.method.as_str(),
        raw_path,
        raw_query,
        headers: &parts.headers,
    };
    let now = SystemTime::now();
    // A browser's CORS preflight carries no credentials of its own, whatever its URL says
    // (a presigned URL's query is for the request it prepares): it is never verified.
    let auth = if matches!(route.endpoint, Endpoint::PreflightCors(_)) {
        Authenticated::Anonymous
    } else {
        let sigv2 = is_sigv2(&parts.headers, raw_query);
        ident::verify_with(shared.directory.as_ref(), |keys| {
            let auth = ident::verify_s3(&req, &route.v2_resource, keys, now);
            if !(matches!(auth, Err(ident::AuthError::SignatureDoesNotMatch)) && sigv2) {
                return auth;
            }
            route
                .v2_alternatives(raw_path)
                .into_iter()
                .map(|alt| ident::verify_s3(&req, &alt, keys, now))
                .find(Result::is_ok)
                .unwrap_or(auth)
        })
        .await?
    };
    let (principal, payload) = match auth {
        Authenticated::Anonymous => (None, Payload::Unverified),
        // The cloud's components call Walrus only on its internal endpoints, never S3: a
        // stolen component key reads and writes no user's data.
        Authenticated::Signed { principal, .. } if principal.component().is_some() => {
            return Err(S3Error::access_denied())
        }
        Authenticated::Signed { principal, payload } => (Some(principal), payload),
    };
    tracing::debug!(request_id, endpoint = route.endpoint.name(), "s3 request");
    let source_ip = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_canonical());
    let secure_transport = parts
        .extensions
        .get::<identity::Transport>()
        .map(|t| matches!(t, identity::Transport::Tls { .. }));
    let ctx = Ctx {
        shared,
        query: route.query,
        headers: parts.headers,
        principal,
        request_id,
        source_ip,
        secure_transport,
    };
    use Endpoint as E;
    match route.endpoint {
        E::ListBuckets => bucket::list_buckets(&ctx),
        E::CreateBucket(b) => bucket::create_bucket(&ctx, &b, body, payload).await,
        E::DeleteBucket(b) => bucket::delete_bucket(&ctx, &b).await,
        E::HeadBucket(b) => bucket::head_bucket(&ctx, &b),
        E::GetBucketLocation(b) => bucket::get_bucket_location(&ctx, &b),
        E::ListObjects(b) => list::list_objects(&ctx, &b, false),
        E::ListObjectsV2(b) => list::list_objects(&ctx, &b, true),
        E::ListObjectVersions(b) => list::list_object_versions(&ctx, &b),
        E::DeleteObjects(b) => delete::delete_objects(&ctx, &b, body, payload).await,
        E::PostObject(b) => post::post_object(&ctx, &b, body).await,
        E::GetBucketAcl(b) => acl::get_bucket_acl(&ctx, &b),
        E::PutBucketAcl(b) => acl::put_bucket_acl(&ctx, &b, body, payload).await,
        E::ListMultipartUploads(b) => multipart::list_uploads(&ctx, &b),
        E::GetBucketTagging(b) => tagging::get_bucket_tagging(&ctx, &b),
        E::PutBucketTagging(b) => tagging::put_bucket_tagging(&ctx, &b, body, payload).await,
        E::DeleteBucketTagging(b) => tagging::delete_bucket_tagging(&ctx, &b),
        E::GetBucketCors(b) => cors::get_bucket_cors(&ctx, &b),
        E::PutBucketCors(b) => cors::put_bucket_cors(&ctx, &b, body, payload).await,
        E::DeleteBucketCors(b) => cors::delete_bucket_cors(&ctx, &b),
        E::GetBucketVersioning(b) => versioning::get_bucket_versioning(&ctx, &b),
        E::PutBucketVersioning(b) => {
            versioning::put_bucket_versioning(&ctx, &b, body, payload).await
        }
        E::GetBucketPolicy(b) => policy::get_bucket_policy(&ctx, &b),
        E::PutBucketPolicy(b) => policy::put_bucket_policy(&ctx, &b, body, payload).await,
        E::DeleteBucketPolicy(b) => policy::delete_bucket_policy(&ctx, &b),
        E::GetBucketPolicyStatus(b) => policy::get_bucket_policy_status(&ctx, &b),
        E::GetPublicAccessBlock(b) => policy::get_public_access_block(&ctx, &b),
        E::PutPublicAccessBlock(b) => {
            policy::put_public_access_block(&ctx, &b, body, payload).await
        }
        E::DeletePublicAccessBlock(b) => policy::delete_public_access_block(&ctx, &b),
        E::GetBucketOwnershipControls(b) => policy::get_ownership_controls(&ctx, &b),
        E::PutBucketOwnershipControls(b) => {
            policy::put_ownership_controls(&ctx, &b, body, payload).await
        }
        E::DeleteBucketOwnershipControls(b) => policy::delete_ownership_controls(&ctx, &b),
        E::GetObjectLockConfiguration(b) => lock::get_configuration(&ctx, &b),
        E::PutObjectLockConfiguration(b) => lock::put_configuration(&ctx, &b, body, payload).await,
        E::GetObjectRetention(o) => lock::get_retention(&ctx, &o),
        E::PutObjectRetention(o) => lock::put_retention(&ctx, &o, body, payload).await,
        E::GetObjectLegalHold(o) => lock::get_legal_hold(&ctx, &o),
        E::PutObjectLegalHold(o) => lock::put_legal_hold(&ctx, &o, body, payload).await,
        E::PreflightCors(b) => cors::preflight(&ctx, &b),
        E::PutObject(o) => put::put_object(&ctx, &o, body, payload).await,
        E::GetObject {
            object,
            part_number,
        } => get::get_object(&ctx, &object, part_number, false),
        E::HeadObject {
            object,
            part_number,
        } => get::get_object(&ctx, &object, part_number, true),
        E::DeleteObject(o) => delete::delete_object(&ctx, &o).await,
        E::CopyObject(o) => copy::copy_object(&ctx, &o).await,
        E::GetObjectAcl(o) => acl::get_object_acl(&ctx, &o),
        E::PutObjectAcl(o) => acl::put_object_acl(&ctx, &o, body, payload).await,
        E::GetObjectTagging(o) => tagging::get_object_tagging(&ctx, &o),
        E::GetObjectAttributes(o) => attributes::get_object_attributes(&ctx, &o),
        E::PutObjectTagging(o) => tagging::put_object_tagging(&ctx, &o, body, payload).await,
        E::DeleteObjectTagging(o) => tagging::delete_object_tagging(&ctx, &o),
        E::CreateMultipartUpload(o) => multipart::create(&ctx, &o).await,
        E::UploadPart {
            object,
            upload_id,
            part_number,
        } => multipart::upload_part(&ctx, &object, &upload_id, part_number, body, payload).await,
        E::UploadPartCopy {
            object,
            upload_id,
            part_number,
        } => copy::upload_part_copy(&ctx, &object, &upload_id, part_number).await,
        E::CompleteMultipartUpload { object, upload_id } => {
            multipart::complete(&ctx, &object, &upload_id, body, payload).await
        }
        E::AbortMultipartUpload { object, upload_id } => {
            multipart::abort(&ctx, &object, &upload_id).await
        }
        E::ListParts { object, upload_id } => multipart::list_parts(&ctx, &object, &upload_id),
        E::NotImplemented(op) => Err(S3Error::NotImplemented(op.name())),
    }
}

/// The Host the request was sent to (header, or the URI's authority).
fn host_of(parts: &http::request::Parts) -> Option<&str> {
    parts
        .headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or(parts.uri.host())
}

/// What the request addresses, for its error document: routed as [`dispatch`] routes it,
/// or only the path when it cannot be routed.
pub fn addressed(parts: &http::request::Parts, virtual_host_domain: Option<&str>) -> Addressed {
    let raw_path = parts.uri.path();
    let routed = router::route(
        &parts.method,
        raw_path,
        parts.uri.query().unwrap_or(""),
        host_of(parts),
        virtual_host_domain,
        false,
    )
    .ok();
    Addressed {
        resource: router::resource_for_errors(raw_path),
        bucket: routed
            .as_ref()
            .and_then(|r| r.bucket.as_ref())
            .map(|b| b.as_str().to_owned()),
        key: routed
            .as_ref()
            .and_then(|r| r.key.as_ref())
            .map(|k| k.as_str().to_owned()),
    }
}

/// Whether the request is signed with SigV2 (header `AWS id:sig` or query `Signature`),
/// whose resource string is the only part of the signature that may need alternatives.
fn is_sigv2(headers: &HeaderMap, raw_query: &str) -> bool {
    match headers.get(http::header::AUTHORIZATION) {
        Some(a) => a.as_bytes().starts_with(b"AWS "),
        None => raw_query
            .split('&')
            .any(|p| p.starts_with("AWSAccessKeyId=")),
    }
}

/// Renders an error: XML body (none for HEAD and 304), status, extra headers. Internal
/// errors are logged with the request id the client sees.
pub fn error_response(
    err: S3Error,
    at: &Addressed,
    request_id: &str,
    is_head: bool,
) -> Response<Body> {
    let (_, status) = err.code_and_status();
    if let S3Error::Internal(source) = &err {
        let error = rpc::error_chain(source.as_ref());
        tracing::error!(request_id, error, "internal error serving S3 request");
    }
    let mut resp = if is_head || status == StatusCode::NOT_MODIFIED {
        empty_response(status)
    } else {
        xml_response(status, err.to_xml(at, request_id))
    };
    for (name, value) in err.extra_headers() {
        resp.headers_mut().insert(name, value);
    }
    resp
}

/// Adds the headers every response carries: request id, Date, Server, and Content-Length
/// when the body's size is known and the handler did not set it.
pub fn finalize(mut resp: Response<Body>, request_id: &str) -> Response<Body> {
    let size = http_body::Body::size_hint(resp.body()).exact();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amz-request-id", v.clone());
        h.insert("x-amz-id-2", v);
    }
    if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(SystemTime::now())) {
        h.insert(http::header::DATE, v);
    }
    h.insert(
        http::header::SERVER,
        HeaderValue::from_static("Koala Walrus"),
    );
    if !h.contains_key(http::header::CONTENT_LENGTH) {
        if let Some(n) = size {
            h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(n));
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_255_369_830_123);
        assert_eq!(iso8601(t), "2009-10-12T17:50:30.123Z");
    }

    #[test]
    fn header_section_is_limited_to_8_kib() {
        let mut h = HeaderMap::new();
        h.insert("x-amz-meta-a", "v".repeat(8192 - 12).parse().expect("hv"));
        assert!(check_header_section(&h).is_ok());
        h.insert("x", "".parse().expect("hv"));
        assert!(matches!(
            check_header_section(&h),
            Err(S3Error::RequestHeaderSectionTooLarge)
        ));
    }

    #[test]
    fn head_errors_have_no_body() {
        let at = Addressed {
            resource: "/b/k".into(),
            ..Addressed::default()
        };
        let r = error_response(S3Error::NoSuchKey, &at, "R", true);
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(http_body::Body::size_hint(r.body()).exact(), Some(0));
        let r = finalize(error_response(S3Error::NotModified, &at, "R", false), "R");
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(r.headers()["x-amz-request-id"], "R");
        let r = finalize(
            error_response(S3Error::InvalidRange { size: 5 }, &at, "R", false),
            "R",
        );
        assert_eq!(r.headers()["content-range"], "bytes */5");
        assert!(r.headers().contains_key("content-length"));
    }
}

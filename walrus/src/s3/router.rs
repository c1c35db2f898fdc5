//! From an HTTP request to an S3 endpoint. Every operation S3 defines is an [`Endpoint`], so
//! a request Walrus recognises but does not implement gets 501 NotImplemented, distinct from
//! a request that means nothing (405 MethodNotAllowed). Each implemented endpoint carries the
//! parameters its handler needs, parsed and checked here once: handlers take them as typed
//! values and never look at the path or those query parameters again.
//!
//! Addressing: path style at the root of the port and under the Eucalyptus mount points
//! (`/services/Walrus`, `/services/objectstorage`), virtual-host style when the Host is
//! `<bucket>.<virtual_host_domain>`. Keys come from the raw path, percent-decoded and kept
//! verbatim (a `+` in the path is a plus, `a//b` and `../x` are keys like any other).

use http::Method;
use percent_encoding::percent_decode_str;

use super::error::S3Error;
use crate::names::{BucketName, ObjectKey, MAX_KEY_LEN};
use crate::store::VersionRef;

/// Where Eucalyptus mounts its object store; the prefix is not part of the SigV2 resource.
pub const MOUNT_PREFIXES: [&str; 2] = ["/services/Walrus", "/services/objectstorage"];

/// The bucket and key an object endpoint addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectPath {
    /// The bucket.
    pub bucket: BucketName,
    /// The key in it.
    pub key: ObjectKey,
    /// The version the request names (`versionId`); `None` for the current one.
    pub version: Option<VersionRef>,
}

/// The `uploadId` parameter as the client sent it (empty when absent). Only the store knows
/// which values name an upload; any other is NoSuchUpload, answered after the bucket and
/// access checks as AWS orders them, so the router does not judge it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadId(String);

impl UploadId {
    fn from_query(query: &Query) -> UploadId {
        UploadId(query.get("uploadId").unwrap_or_default().to_owned())
    }

    /// The id as a string slice, for the store.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A part number S3 allows, 1 to [`PartNumber::MAX`]: of a part being uploaded, or of the
/// part of an object a GET or HEAD asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartNumber(u32);

impl PartNumber {
    /// Highest part number S3 allows.
    pub const MAX: u32 = 10_000;

    /// Parses a `partNumber` value: InvalidArgument unless it is an integer from 1 to MAX.
    pub fn parse(value: &str) -> Result<PartNumber, S3Error> {
        value
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=PartNumber::MAX).contains(n))
            .map(PartNumber)
            .ok_or_else(|| {
                S3Error::InvalidArgument(
                    "Part number must be an integer between 1 and 10000, inclusive".into(),
                )
            })
    }

    /// The number.
    pub fn get(self) -> u32 {
        self.0
    }
}

/// Every S3 operation the router recognises (AWS' operation names), with what its handler
/// needs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // the names are AWS' operation names
pub enum Endpoint {
    ListBuckets,
    CreateBucket(BucketName),
    DeleteBucket(BucketName),
    HeadBucket(BucketName),
    GetBucketLocation(BucketName),
    ListObjects(BucketName),
    ListObjectsV2(BucketName),
    ListObjectVersions(BucketName),
    DeleteObjects(BucketName),
    /// A browser's form upload (`multipart/form-data`) to the bucket.
    PostObject(BucketName),
    GetBucketAcl(BucketName),
    PutBucketAcl(BucketName),
    ListMultipartUploads(BucketName),
    GetBucketTagging(BucketName),
    PutBucketTagging(BucketName),
    DeleteBucketTagging(BucketName),
    GetBucketCors(BucketName),
    PutBucketCors(BucketName),
    GetBucketVersioning(BucketName),
    PutBucketVersioning(BucketName),
    GetBucketPolicy(BucketName),
    PutBucketPolicy(BucketName),
    DeleteBucketPolicy(BucketName),
    GetBucketPolicyStatus(BucketName),
    GetBucketOwnershipControls(BucketName),
    PutBucketOwnershipControls(BucketName),
    DeleteBucketOwnershipControls(BucketName),
    GetObjectLockConfiguration(BucketName),
    PutObjectLockConfiguration(BucketName),
    GetPublicAccessBlock(BucketName),
    PutPublicAccessBlock(BucketName),
    DeletePublicAccessBlock(BucketName),
    DeleteBucketCors(BucketName),
    /// A browser's CORS preflight, on the bucket or one of its objects (AWS has no
    /// operation name for it).
    PreflightCors(BucketName),
    PutObject(ObjectPath),
    GetObject {
        object: ObjectPath,
        part_number: Option<PartNumber>,
    },
    HeadObject {
        object: ObjectPath,
        part_number: Option<PartNumber>,
    },
    DeleteObject(ObjectPath),
    CopyObject(ObjectPath),
    GetObjectAcl(ObjectPath),
    PutObjectAcl(ObjectPath),
    GetObjectTagging(ObjectPath),
    GetObjectAttributes(ObjectPath),
    GetObjectRetention(ObjectPath),
    PutObjectRetention(ObjectPath),
    GetObjectLegalHold(ObjectPath),
    PutObjectLegalHold(ObjectPath),
    PutObjectTagging(ObjectPath),
    DeleteObjectTagging(ObjectPath),
    CreateMultipartUpload(ObjectPath),
    UploadPart {
        object: ObjectPath,
        upload_id: UploadId,
        part_number: PartNumber,
    },
    UploadPartCopy {
        object: ObjectPath,
        upload_id: UploadId,
        part_number: PartNumber,
    },
    CompleteMultipartUpload {
        object: ObjectPath,
        upload_id: UploadId,
    },
    AbortMultipartUpload {
        object: ObjectPath,
        upload_id: UploadId,
    },
    ListParts {
        object: ObjectPath,
        upload_id: UploadId,
    },
    /// Recognised, not implemented: 501 NotImplemented.
    NotImplemented(Unimplemented),
}

impl Endpoint {
    /// The AWS operation name, for the log.
    pub fn name(&self) -> &'static str {
        match self {
            E::ListBuckets => "ListBuckets",
            E::CreateBucket(_) => "CreateBucket",
            E::DeleteBucket(_) => "DeleteBucket",
            E::HeadBucket(_) => "HeadBucket",
            E::GetBucketLocation(_) => "GetBucketLocation",
            E::ListObjects(_) => "ListObjects",
            E::ListObjectsV2(_) => "ListObjectsV2",
            E::ListObjectVersions(_) => "ListObjectVersions",
            E::DeleteObjects(_) => "DeleteObjects",
            E::PostObject(_) => "PostObject",
            E::GetBucketAcl(_) => "GetBucketAcl",
            E::PutBucketAcl(_) => "PutBucketAcl",
            E::ListMultipartUploads(_) => "ListMultipartUploads",
            E::GetBucketTagging(_) => "GetBucketTagging",
            E::PutBucketTagging(_) => "PutBucketTagging",
            E::DeleteBucketTagging(_) => "DeleteBucketTagging",
            E::GetBucketCors(_) => "GetBucketCors",
            E::PutBucketCors(_) => "PutBucketCors",
            E::GetBucketVersioning(_) => "GetBucketVersioning",
            E::PutBucketVersioning(_) => "PutBucketVersioning",
            E::GetBucketPolicy(_) => "GetBucketPolicy",
            E::PutBucketPolicy(_) => "PutBucketPolicy",
            E::DeleteBucketPolicy(_) => "DeleteBucketPolicy",
            E::GetBucketPolicyStatus(_) => "GetBucketPolicyStatus",
            E::GetBucketOwnershipControls(_) => "GetBucketOwnershipControls",
            E::PutBucketOwnershipControls(_) => "PutBucketOwnershipControls",
            E::DeleteBucketOwnershipControls(_) => "DeleteBucketOwnershipControls",
            E::GetObjectLockConfiguration(_) => "GetObjectLockConfiguration",
            E::PutObjectLockConfiguration(_) => "PutObjectLockConfiguration",
            E::GetObjectRetention(_) => "GetObjectRetention",
            E::PutObjectRetention(_) => "PutObjectRetention",
            E::GetObjectLegalHold(_) => "GetObjectLegalHold",
            E::PutObjectLegalHold(_) => "PutObjectLegalHold",
            E::GetPublicAccessBlock(_) => "GetPublicAccessBlock",
            E::PutPublicAccessBlock(_) => "PutPublicAccessBlock",
            E::DeletePublicAccessBlock(_) => "DeletePublicAccessBlock",
            E::DeleteBucketCors(_) => "DeleteBucketCors",
            E::PreflightCors(_) => "OPTIONS",
            E::PutObject(_) => "PutObject",
            E::GetObject { .. } => "GetObject",
            E::HeadObject { .. } => "HeadObject",
            E::DeleteObject(_) => "DeleteObject",
            E::CopyObject(_) => "CopyObject",
            E::GetObjectAcl(_) => "GetObjectAcl",
            E::PutObjectAcl(_) => "PutObjectAcl",
            E::GetObjectTagging(_) => "GetObjectTagging",
            E::GetObjectAttributes(_) => "GetObjectAttributes",
            E::PutObjectTagging(_) => "PutObjectTagging",
            E::DeleteObjectTagging(_) => "DeleteObjectTagging",
            E::CreateMultipartUpload(_) => "CreateMultipartUpload",
            E::UploadPart { .. } => "UploadPart",
            E::UploadPartCopy { .. } => "UploadPartCopy",
            E::CompleteMultipartUpload { .. } => "CompleteMultipartUpload",
            E::AbortMultipartUpload { .. } => "AbortMultipartUpload",
            E::ListParts { .. } => "ListParts",
            E::NotImplemented(op) => op.name(),
        }
    }
}

macro_rules! unimplemented_endpoints {
    ($($u:ident),* $(,)?) => {
        /// The S3 operations Walrus recognises but does not implement (AWS' operation
        /// names): each is answered 501 NotImplemented, never mistaken for another.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[allow(missing_docs)] // the names are AWS' operation names
        pub enum Unimplemented { $($u,)* }

        impl Unimplemented {
            /// The AWS operation name, for the 501's message.
            pub fn name(self) -> &'static str {
                match self { $(Unimplemented::$u => stringify!($u),)* }
            }
        }
    };
}

unimplemented_endpoints! {
    GetBucketLifecycleConfiguration, PutBucketLifecycleConfiguration, DeleteBucketLifecycle,
    GetBucketWebsite, PutBucketWebsite, DeleteBucketWebsite,
    GetBucketLogging, PutBucketLogging,
    GetBucketNotificationConfiguration, PutBucketNotificationConfiguration,
    GetBucketReplication, PutBucketReplication, DeleteBucketReplication,
    GetBucketEncryption, PutBucketEncryption, DeleteBucketEncryption,
    GetBucketAccelerateConfiguration, PutBucketAccelerateConfiguration,
    GetBucketRequestPayment, PutBucketRequestPayment,
    GetBucketAnalyticsConfiguration, PutBucketAnalyticsConfiguration,
    DeleteBucketAnalyticsConfiguration,
    GetBucketInventoryConfiguration, PutBucketInventoryConfiguration,
    DeleteBucketInventoryConfiguration,
    GetBucketMetricsConfiguration, PutBucketMetricsConfiguration,
    DeleteBucketMetricsConfiguration,
    GetBucketIntelligentTieringConfiguration, PutBucketIntelligentTieringConfiguration,
    DeleteBucketIntelligentTieringConfiguration,
    GetObjectTorrent, RestoreObject, SelectObjectContent,
}

use Endpoint as E;
use Unimplemented as U;

/// Sub-resources of unimplemented bucket operations by method, in priority order; the first
/// present wins. The implemented sub-resources (`acl`, `location`, `uploads`, `tagging`,
/// `cors`) come first.
const BUCKET_GET: &[(&str, Unimplemented)] = &[
    ("lifecycle", U::GetBucketLifecycleConfiguration),
    ("website", U::GetBucketWebsite),
    ("logging", U::GetBucketLogging),
    ("notification", U::GetBucketNotificationConfiguration),
    ("replication", U::GetBucketReplication),
    ("encryption", U::GetBucketEncryption),
    ("accelerate", U::GetBucketAccelerateConfiguration),
    ("requestPayment", U::GetBucketRequestPayment),
    ("analytics", U::GetBucketAnalyticsConfiguration),
    ("inventory", U::GetBucketInventoryConfiguration),
    ("metrics", U::GetBucketMetricsConfiguration),
    (
        "intelligent-tiering",
        U::GetBucketIntelligentTieringConfiguration,
    ),
];

const BUCKET_PUT: &[(&str, Unimplemented)] = &[
    ("lifecycle", U::PutBucketLifecycleConfiguration),
    ("website", U::PutBucketWebsite),
    ("logging", U::PutBucketLogging),
    ("notification", U::PutBucketNotificationConfiguration),
    ("replication", U::PutBucketReplication),
    ("encryption", U::PutBucketEncryption),
    ("accelerate", U::PutBucketAccelerateConfiguration),
    ("requestPayment", U::PutBucketRequestPayment),
    ("analytics", U::PutBucketAnalyticsConfiguration),
    ("inventory", U::PutBucketInventoryConfiguration),
    ("metrics", U::PutBucketMetricsConfiguration),
    (
        "intelligent-tiering",
        U::PutBucketIntelligentTieringConfiguration,
    ),
];

const BUCKET_DELETE: &[(&str, Unimplemented)] = &[
    ("lifecycle", U::DeleteBucketLifecycle),
    ("website", U::DeleteBucketWebsite),
    ("replication", U::DeleteBucketReplication),
    ("encryption", U::DeleteBucketEncryption),
    ("analytics", U::DeleteBucketAnalyticsConfiguration),
    ("inventory", U::DeleteBucketInventoryConfiguration),
    ("metrics", U::DeleteBucketMetricsConfiguration),
    (
        "intelligent-tiering",
        U::DeleteBucketIntelligentTieringConfiguration,
    ),
];

/// The same for objects; the implemented sub-resources (`acl`, `tagging`, `uploads`,
/// `uploadId`) come first.
const OBJECT_GET: &[(&str, Unimplemented)] = &[("torrent", U::GetObjectTorrent)];

const OBJECT_POST: &[(&str, Unimplemented)] = &[
    ("restore", U::RestoreObject),
    ("select", U::SelectObjectContent),
];

/// The first unimplemented operation of `table` whose sub-resource the query names.
fn unimplemented(table: &[(&str, Unimplemented)], query: &Query) -> Option<Unimplemented> {
    table
        .iter()
        .find(|(name, _)| query.has(name))
        .map(|(_, op)| *op)
}

/// The decoded query string: names and values percent-decoded (`+` is a space, as in forms).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Parses a raw query string.
    pub fn parse(raw: &str) -> Query {
        let decode = |s: &str| {
            let s = s.replace('+', " ");
            percent_decode_str(&s).decode_utf8_lossy().into_owned()
        };
        Query(
            raw.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (decode(k), decode(v)),
                    None => (decode(p), String::new()),
                })
                .collect(),
        )
    }

    /// The first value of a parameter.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the parameter is present (with or without a value).
    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }
}

/// A routed request.
#[derive(Clone, Debug)]
pub struct Route {
    /// The operation, with its handler's parameters.
    pub endpoint: Endpoint,
    /// The bucket, when addressed, whatever the endpoint: SigV2's resource and error
    /// documents depend on it.
    pub bucket: Option<BucketName>,
    /// The key, when addressed, whatever the endpoint.
    pub key: Option<ObjectKey>,
    /// The SigV2 canonical resource: `/bucket/key` as received (still percent-encoded),
    /// mount prefix stripped, virtual-host bucket prepended.
    pub v2_resource: String,
    /// The decoded query.
    pub query: Query,
}

impl Route {
    /// Other SigV2 resources a legitimate client may have signed, tried only after the
    /// canonical one fails: botocore signs bucket requests as `/bucket/` and keeps the
    /// endpoint's path (`/services/Walrus/bucket/`), while euca2ools signs `/bucket` without
    /// the mount prefix. Each is still a signature over the resource as addressed.
    pub fn v2_alternatives(&self, raw_path: &str) -> Vec<String> {
        let mut bases = vec![self.v2_resource.clone()];
        if self.bucket.is_some() && self.key.is_none() {
            match self.v2_resource.strip_suffix('/') {
                Some(without) => bases.push(without.to_owned()),
                None => bases.push(format!("{}/", self.v2_resource)),
            }
        }
        let prefix = &raw_path[..raw_path.len() - strip_mount(raw_path).len()];
        let mut out: Vec<String> = bases[1..].to_vec();
        if !prefix.is_empty() && self.v2_resource.len() > 1 {
            out.extend(bases.iter().map(|b| format!("{prefix}{b}")));
        }
        out
    }
}

/// Where the request points before the endpoint is chosen: useful for error `Resource`s.
pub fn resource_for_errors(raw_path: &str) -> String {
    let path = strip_mount(raw_path);
    percent_decode_str(path).decode_utf8_lossy().into_owned()
}

/// The path with a mount prefix removed (an empty remainder is the root).
pub fn strip_mount(raw_path: &str) -> &str {
    for prefix in MOUNT_PREFIXES {
        if let Some(rest) = raw_path.strip_prefix(prefix) {
            if rest.is_empty() {
                return "/";
            }
            if rest.starts_with('/') {
                return rest;
            }
        }
    }
    raw_path
}

/// Where the cloud's internal endpoints (the image feed) live under each mount: `_koala` is
/// no valid bucket name, so no bucket can be shadowed.
pub const INTERNAL_PREFIX: &str = "/_koala/";

/// The rest of the path after [`INTERNAL_PREFIX`] when the request is for an internal
/// endpoint: path style only, since under a virtual-host bucket `/_koala/...` is a key.
pub fn internal_path<'a>(
    raw_path: &'a str,
    host: Option<&str>,
    domain: Option<&str>,
) -> Option<&'a str> {
    if vhost_bucket(host, domain).is_some() {
        return None;
    }
    strip_mount(raw_path).strip_prefix(INTERNAL_PREFIX)
}

/// The bucket named by a virtual-host style Host header, if any.
fn vhost_bucket<'a>(host: Option<&'a str>, domain: Option<&str>) -> Option<&'a str> {
    let domain = domain?.trim_end_matches('.');
    let host = host?;
    // Strip a port (IPv6 literals never name a bucket, so a plain split is enough).
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let host = host.trim_end_matches('.');
    if host.len() <= domain.len() + 1 {
        return None;
    }
    let (bucket, rest) = host.split_at(host.len() - domain.len() - 1);
    let rest = &rest[1..];
    (host.as_bytes()[bucket.len()] == b'.' && rest.eq_ignore_ascii_case(domain)).then_some(bucket)
}

/// Routes a request. `host` is the Host header, `domain` the configured virtual-host domain.
pub fn route(
    method: &Method,
    raw_path: &str,
    raw_query: &str,
    host: Option<&str>,
    domain: Option<&str>,
    has_copy_source: bool,
) -> Result<Route, S3Error> {
    let query = Query::parse(raw_query);
    let path = strip_mount(raw_path);
    let path = path.strip_prefix('/').unwrap_or(path);

    let (raw_bucket, raw_key, v2_resource) = match vhost_bucket(host, domain) {
        Some(b) => (Some(b), path, format!("/{b}/{path}")),
        None => match path.split_once('/') {
            Some((b, k)) => (Some(b), k, format!("/{path}")),
            None if path.is_empty() => (None, "", "/".to_owned()),
            None => (Some(path), "", format!("/{path}")),
        },
    };

    let bucket = match raw_bucket {
        Some(b) => {
            let decoded = percent_decode_str(b)
                .decode_utf8()
                .map_err(|_| S3Error::InvalidBucketName)?;
            Some(BucketName::parse(&decoded).ok_or(S3Error::InvalidBucketName)?)
        }
        None => None,
    };
    let key = if raw_key.is_empty() {
        None
    } else {
        let bytes: Vec<u8> = percent_decode_str(raw_key).collect();
        if bytes.len() > MAX_KEY_LEN {
            return Err(S3Error::KeyTooLong);
        }
        let s = String::from_utf8(bytes).map_err(|_| S3Error::InvalidUri)?;
        Some(ObjectKey::parse(&s).ok_or(S3Error::InvalidUri)?)
    };

    let endpoint = match (&bucket, &key) {
        (None, _) => match *method {
            Method::GET => E::ListBuckets,
            _ => return Err(S3Error::MethodNotAllowed),
        },
        (Some(bucket), None) => bucket_endpoint(method, &query, bucket.clone())?,
        (Some(bucket), Some(key)) => {
            let version = match query.get("versionId") {
                None => None,
                Some(v) => Some(VersionRef::parse(v).ok_or_else(|| {
                    S3Error::InvalidArgument("Invalid version id specified".into())
                })?),
            };
            let object = ObjectPath {
                bucket: bucket.clone(),
                key: key.clone(),
                version,
            };
            object_endpoint(method, &query, object, has_copy_source)?
        }
    };

    Ok(Route {
        endpoint,
        bucket,
        key,
        v2_resource,
        query,
    })
}

/// The endpoint of a request that names a bucket and no key.
fn bucket_endpoint(
    method: &Method,
    query: &Query,
    bucket: BucketName,
) -> Result<Endpoint, S3Error> {
    let endpoint = match *method {
        Method::GET if query.has("acl") => E::GetBucketAcl(bucket),
        Method::GET if query.has("location") => E::GetBucketLocation(bucket),
        Method::GET if query.has("uploads") => E::ListMultipartUploads(bucket),
        Method::GET if query.has("tagging") => E::GetBucketTagging(bucket),
        Method::GET if query.has("cors") => E::GetBucketCors(bucket),
        Method::GET if query.has("versions") => E::ListObjectVersions(bucket),
        Method::GET if query.has("versioning") => E::GetBucketVersioning(bucket),
        Method::GET if query.has("policyStatus") => E::GetBucketPolicyStatus(bucket),
        Method::GET if query.has("object-lock") => E::GetObjectLockConfiguration(bucket),
        Method::GET if query.has("ownershipControls") => E::GetBucketOwnershipControls(bucket),
        Method::GET if query.has("policy") => E::GetBucketPolicy(bucket),
        Method::GET if query.has("publicAccessBlock") => E::GetPublicAccessBlock(bucket),
        Method::GET => match unimplemented(BUCKET_GET, query) {
            Some(op) => E::NotImplemented(op),
            None if query.get("list-type") == Some("2") => E::ListObjectsV2(bucket),
            None => E::ListObjects(bucket),
        },
        Method::HEAD => E::HeadBucket(bucket),
        Method::PUT if query.has("acl") => E::PutBucketAcl(bucket),
        Method::PUT if query.has("tagging") => E::PutBucketTagging(bucket),
        Method::PUT if query.has("cors") => E::PutBucketCors(bucket),
        Method::PUT if query.has("versioning") => E::PutBucketVersioning(bucket),
        Method::PUT if query.has("policy") => E::PutBucketPolicy(bucket),
        Method::PUT if query.has("object-lock") => E::PutObjectLockConfiguration(bucket),
        Method::PUT if query.has("ownershipControls") => E::PutBucketOwnershipControls(bucket),
        Method::PUT if query.has("publicAccessBlock") => E::PutPublicAccessBlock(bucket),
        Method::PUT => match unimplemented(BUCKET_PUT, query) {
            Some(op) => E::NotImplemented(op),
            None => E::CreateBucket(bucket),
        },
        Method::DELETE if query.has("tagging") => E::DeleteBucketTagging(bucket),
        Method::DELETE if query.has("cors") => E::DeleteBucketCors(bucket),
        Method::DELETE if query.has("policy") => E::DeleteBucketPolicy(bucket),
        Method::DELETE if query.has("ownershipControls") => {
            E::DeleteBucketOwnershipControls(bucket)
        }
        Method::DELETE if query.has("publicAccessBlock") => E::DeletePublicAccessBlock(bucket),
        Method::DELETE => match unimplemented(BUCKET_DELETE, query) {
            Some(op) => E::NotImplemented(op),
            None => E::DeleteBucket(bucket),
        },
        Method::POST if query.has("delete") => E::DeleteObjects(bucket),
        Method::OPTIONS => E::PreflightCors(bucket),
        Method::POST => E::PostObject(bucket),
        _ => return Err(S3Error::MethodNotAllowed),
    };
    Ok(endpoint)
}

/// The endpoint of a request that names a bucket and a key.
fn object_endpoint(
    method: &Method,
    query: &Query,
    object: ObjectPath,
    has_copy_source: bool,
) -> Result<Endpoint, S3Error> {
    // The part of an object to read, when one is asked for.
    let part_to_read = || query.get("partNumber").map(PartNumber::parse).transpose();
    let endpoint = match *method {
        Method::GET if query.has("acl") => E::GetObjectAcl(object),
        Method::GET if query.has("tagging") => E::GetObjectTagging(object),
        Method::GET if query.has("attributes") => E::GetObjectAttributes(object),
        Method::GET if query.has("retention") => E::GetObjectRetention(object),
        Method::GET if query.has("legal-hold") => E::GetObjectLegalHold(object),
        Method::GET if query.has("uploadId") => E::ListParts {
            object,
            upload_id: UploadId::from_query(query),
        },
        Method::GET => match unimplemented(OBJECT_GET, query) {
            Some(op) => E::NotImplemented(op),
            None => E::GetObject {
                object,
                part_number: part_to_read()?,
            },
        },
        Method::HEAD => E::HeadObject {
            object,
            part_number: part_to_read()?,
        },
        Method::PUT if query.has("uploadId") || query.has("partNumber") => {
            let upload_id = UploadId::from_query(query);
            // A part to write needs a number: an absent one is as invalid as a wrong one.
            let part_number = PartNumber::parse(query.get("partNumber").unwrap_or_default())?;
            if has_copy_source {
                E::UploadPartCopy {
                    object,
                    upload_id,
                    part_number,
                }
            } else {
                E::UploadPart {
                    object,
                    upload_id,
                    part_number,
                }
            }
        }
        Method::PUT if query.has("acl") => E::PutObjectAcl(object),
        Method::PUT if query.has("tagging") => E::PutObjectTagging(object),
        Method::PUT if query.has("retention") => E::PutObjectRetention(object),
        Method::PUT if query.has("legal-hold") => E::PutObjectLegalHold(object),
        Method::PUT if has_copy_source => E::CopyObject(object),
        Method::PUT => E::PutObject(object),
        Method::POST if query.has("uploads") => E::CreateMultipartUpload(object),
        Method::POST if query.has("uploadId") => E::CompleteMultipartUpload {
            object,
            upload_id: UploadId::from_query(query),
        },
        Method::POST => match unimplemented(OBJECT_POST, query) {
            Some(op) => E::NotImplemented(op),
            None => return Err(S3Error::MethodNotAllowed),
        },
        Method::DELETE if query.has("uploadId") => E::AbortMultipartUpload {
            object,
            upload_id: UploadId::from_query(query),
        },
        Method::DELETE if query.has("tagging") => E::DeleteObjectTagging(object),
        Method::OPTIONS => E::PreflightCors(object.bucket),
        Method::DELETE => E::DeleteObject(object),
        _ => return Err(S3Error::MethodNotAllowed),
    };
    Ok(endpoint)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(method: Method, path: &str, query: &str) -> Endpoint {
        route(&method, path, query, Some("localhost:8773"), None, false)
            .expect("routes")
            .endpoint
    }

    #[test]
    fn internal_paths_sit_beside_the_bucket_namespace() {
        let d = Some("s3.koala.test");
        let at = |path, host| internal_path(path, Some(host), d);
        assert_eq!(at("/services/Walrus/_koala/images", "h"), Some("images"));
        assert_eq!(
            at("/services/objectstorage/_koala/images/ab", "h"),
            Some("images/ab")
        );
        assert_eq!(at("/_koala/images", "h"), Some("images"));
        // Under a virtual-host bucket the same path is a key of that bucket.
        assert_eq!(at("/_koala/images", "b.s3.koala.test"), None);
        assert_eq!(at("/services/Walrus/_koala", "h"), None);
        assert_eq!(at("/services/Walrus/koala/images", "h"), None);
        // And no bucket can be named `_koala`.
        assert!(matches!(
            route(&Method::PUT, "/_koala", "", Some("h"), d, false),
            Err(S3Error::InvalidBucketName)
        ));
    }

    fn b1b() -> BucketName {
        BucketName::parse("b1b").expect("bucket")
    }

    fn b1b_k() -> ObjectPath {
        ObjectPath {
            bucket: b1b(),
            key: ObjectKey::parse("k").expect("key"),
            version: None,
        }
    }

    fn upload(id: &str) -> UploadId {
        UploadId(id.to_owned())
    }

    #[test]
    fn classifies_endpoints() {
        assert_eq!(ep(Method::GET, "/", ""), E::ListBuckets);
        assert_eq!(ep(Method::PUT, "/b1b", ""), E::CreateBucket(b1b()));
        assert_eq!(ep(Method::PUT, "/b1b/", ""), E::CreateBucket(b1b()));
        assert_eq!(ep(Method::GET, "/b1b", ""), E::ListObjects(b1b()));
        assert_eq!(
            ep(Method::GET, "/b1b", "list-type=2&prefix=a"),
            E::ListObjectsV2(b1b())
        );
        assert_eq!(
            ep(Method::GET, "/b1b", "location"),
            E::GetBucketLocation(b1b())
        );
        assert_eq!(
            ep(Method::GET, "/b1b", "uploads"),
            E::ListMultipartUploads(b1b())
        );
        assert_eq!(ep(Method::POST, "/b1b", "delete"), E::DeleteObjects(b1b()));
        assert_eq!(
            ep(Method::GET, "/b1b", "versioning"),
            E::GetBucketVersioning(b1b())
        );
        assert_eq!(
            ep(Method::PUT, "/b1b", "versioning"),
            E::PutBucketVersioning(b1b())
        );
        assert!(matches!(
            route(&Method::GET, "/b1b/k", "versionId=zz", None, None, false),
            Err(S3Error::InvalidArgument(_))
        ));
        assert_eq!(ep(Method::PUT, "/b1b", "acl"), E::PutBucketAcl(b1b()));
        assert_eq!(
            ep(Method::DELETE, "/b1b", "cors"),
            E::DeleteBucketCors(BucketName::parse("b1b").expect("name"))
        );
        assert_eq!(ep(Method::HEAD, "/b1b", ""), E::HeadBucket(b1b()));
        assert_eq!(ep(Method::PUT, "/b1b/k", ""), E::PutObject(b1b_k()));
        assert_eq!(
            ep(Method::PUT, "/b1b/k", "partNumber=1&uploadId=x"),
            E::UploadPart {
                object: b1b_k(),
                upload_id: upload("x"),
                part_number: PartNumber(1),
            }
        );
        assert_eq!(
            ep(Method::POST, "/b1b/k", "uploads"),
            E::CreateMultipartUpload(b1b_k())
        );
        assert_eq!(
            ep(Method::POST, "/b1b/k", "uploadId=x"),
            E::CompleteMultipartUpload {
                object: b1b_k(),
                upload_id: upload("x"),
            }
        );
        assert_eq!(
            ep(Method::DELETE, "/b1b/k", "uploadId=x"),
            E::AbortMultipartUpload {
                object: b1b_k(),
                upload_id: upload("x"),
            }
        );
        assert_eq!(
            ep(Method::GET, "/b1b/k", "uploadId=x"),
            E::ListParts {
                object: b1b_k(),
                upload_id: upload("x"),
            }
        );
        assert_eq!(ep(Method::GET, "/b1b/k", "acl"), E::GetObjectAcl(b1b_k()));
        assert_eq!(
            ep(Method::GET, "/b1b/k", "tagging"),
            E::GetObjectTagging(b1b_k())
        );
        assert_eq!(
            ep(Method::DELETE, "/b1b/k", "tagging"),
            E::DeleteObjectTagging(b1b_k())
        );
        assert_eq!(
            ep(Method::PUT, "/b1b", "tagging"),
            E::PutBucketTagging(BucketName::parse("b1b").expect("name"))
        );
        assert_eq!(
            ep(Method::GET, "/b1b/k", "retention"),
            E::GetObjectRetention(b1b_k())
        );
        assert_eq!(
            ep(Method::PUT, "/b1b/k", "legal-hold"),
            E::PutObjectLegalHold(b1b_k())
        );
        assert_eq!(
            ep(Method::POST, "/b1b/k", "restore"),
            E::NotImplemented(U::RestoreObject)
        );
        assert_eq!(
            ep(Method::GET, "/b1b/k", ""),
            E::GetObject {
                object: b1b_k(),
                part_number: None,
            }
        );
        assert_eq!(E::NotImplemented(U::RestoreObject).name(), "RestoreObject");
        let r = route(
            &Method::PUT,
            "/b1b/k",
            "partNumber=2&uploadId=u",
            None,
            None,
            true,
        )
        .expect("r");
        assert_eq!(
            r.endpoint,
            E::UploadPartCopy {
                object: b1b_k(),
                upload_id: upload("u"),
                part_number: PartNumber(2),
            }
        );
        assert_eq!(r.endpoint.name(), "UploadPartCopy");
        let r = route(&Method::PUT, "/b1b/k", "", None, None, true).expect("r");
        assert_eq!(r.endpoint, E::CopyObject(b1b_k()));
        assert!(matches!(
            route(&Method::PATCH, "/b1b/k", "", None, None, false),
            Err(S3Error::MethodNotAllowed)
        ));
        assert!(matches!(
            route(&Method::POST, "/b1b/k", "", None, None, false),
            Err(S3Error::MethodNotAllowed)
        ));
    }

    #[test]
    fn part_numbers_and_upload_ids() {
        let at = |method: Method, query: &str| route(&method, "/b1b/k", query, None, None, false);
        for bad in ["0", "10001", "x", "", "-1", "4294967296"] {
            for (method, upload) in [
                (Method::PUT, "&uploadId=u"),
                (Method::GET, ""),
                (Method::HEAD, ""),
            ] {
                assert!(
                    matches!(
                        at(method.clone(), &format!("partNumber={bad}{upload}")),
                        Err(S3Error::InvalidArgument(m))
                            if m == "Part number must be an integer between 1 and 10000, inclusive"
                    ),
                    "{method} {bad:?}"
                );
            }
        }
        // A part to write needs its number.
        assert!(matches!(
            at(Method::PUT, "uploadId=u"),
            Err(S3Error::InvalidArgument(_))
        ));
        assert_eq!(
            at(Method::PUT, "partNumber=%2010000").expect("r").endpoint,
            E::UploadPart {
                object: b1b_k(),
                upload_id: upload(""),
                part_number: PartNumber(PartNumber::MAX),
            }
        );
        assert_eq!(
            at(Method::HEAD, "partNumber=3").expect("r").endpoint,
            E::HeadObject {
                object: b1b_k(),
                part_number: Some(PartNumber(3)),
            }
        );
        // Another operation's sub-resource wins over a part number it does not read.
        assert_eq!(
            at(Method::GET, "tagging&partNumber=0").expect("r").endpoint,
            E::GetObjectTagging(b1b_k())
        );
        assert_eq!(
            at(Method::DELETE, "uploadId").expect("r").endpoint,
            E::AbortMultipartUpload {
                object: b1b_k(),
                upload_id: upload(""),
            }
        );
    }

    #[test]
    fn mount_prefixes_are_stripped() {
        for prefix in ["", "/services/Walrus", "/services/objectstorage"] {
            let r = route(
                &Method::GET,
                &format!("{prefix}/bkt/a%20b"),
                "",
                None,
                None,
                false,
            )
            .expect("r");
            assert_eq!(r.endpoint.name(), "GetObject");
            assert_eq!(r.bucket.as_ref().map(|b| b.as_str()), Some("bkt"));
            assert_eq!(r.key.as_ref().map(|k| k.as_str()), Some("a b"));
            assert_eq!(r.v2_resource, "/bkt/a%20b");
            let r = route(&Method::GET, prefix, "", None, None, false).expect("r");
            assert_eq!(r.endpoint, E::ListBuckets);
            assert_eq!(r.v2_resource, "/");
        }
        let r = route(&Method::GET, "/services/Walrus/", "", None, None, false).expect("r");
        assert_eq!(r.endpoint, E::ListBuckets);
        // `services` itself is reserved, and other prefixes are not mount points.
        assert!(matches!(
            route(&Method::GET, "/services/Other", "", None, None, false),
            Err(S3Error::InvalidBucketName)
        ));
        assert!(matches!(
            route(&Method::GET, "/services/WalrusX/k", "", None, None, false),
            Err(S3Error::InvalidBucketName)
        ));
    }

    #[test]
    fn virtual_host_style() {
        let d = Some("s3.example.com");
        let r = route(
            &Method::GET,
            "/a/b",
            "",
            Some("bkt.s3.example.com:8773"),
            d,
            false,
        )
        .expect("r");
        assert_eq!(r.bucket.as_ref().map(|b| b.as_str()), Some("bkt"));
        assert_eq!(r.key.as_ref().map(|k| k.as_str()), Some("a/b"));
        assert_eq!(r.v2_resource, "/bkt/a/b");
        let r = route(
            &Method::GET,
            "/",
            "",
            Some("My.Bkt.S3.example.com"),
            d,
            false,
        );
        assert!(matches!(r, Err(S3Error::InvalidBucketName)));
        let r = route(&Method::GET, "/", "", Some("bkt.s3.example.com"), d, false).expect("r");
        assert_eq!(
            r.endpoint,
            E::ListObjects(BucketName::parse("bkt").expect("bucket"))
        );
        assert_eq!(r.v2_resource, "/bkt/");
        // The bare domain is path style.
        let r = route(&Method::GET, "/bkt/k", "", Some("s3.example.com"), d, false).expect("r");
        assert_eq!(r.key.as_ref().map(|k| k.as_str()), Some("k"));
        let r = route(&Method::GET, "/", "", Some("s3.example.com"), d, false).expect("r");
        assert_eq!(r.endpoint, E::ListBuckets);
    }

    #[test]
    fn keys_are_verbatim() {
        for (raw, key) in [
            ("../x", "../x"),
            ("a//b", "a//b"),
            ("a+b", "a+b"),
            ("a%2Bb", "a+b"),
            ("%26%20%01", "& \u{1}"),
            ("%C3%A9t%C3%A9", "été"),
            ("/lead", "/lead"),
        ] {
            let r = route(&Method::GET, &format!("/bkt/{raw}"), "", None, None, false).expect("r");
            assert_eq!(r.key.as_ref().map(|k| k.as_str()), Some(key), "{raw}");
        }
        assert!(matches!(
            route(&Method::GET, "/bkt/%FF", "", None, None, false),
            Err(S3Error::InvalidUri)
        ));
        let long = "k".repeat(1025);
        assert!(matches!(
            route(&Method::GET, &format!("/bkt/{long}"), "", None, None, false),
            Err(S3Error::KeyTooLong)
        ));
        assert!(matches!(
            route(&Method::GET, "/Bad_Bucket/k", "", None, None, false),
            Err(S3Error::InvalidBucketName)
        ));
    }

    #[test]
    fn sigv2_alternatives() {
        let r = route(&Method::PUT, "/services/Walrus/bkt", "", None, None, false).expect("r");
        assert_eq!(r.v2_resource, "/bkt");
        assert_eq!(
            r.v2_alternatives("/services/Walrus/bkt"),
            vec!["/bkt/", "/services/Walrus/bkt", "/services/Walrus/bkt/"]
        );
        let r = route(&Method::GET, "/bkt/k", "", None, None, false).expect("r");
        assert!(r.v2_alternatives("/bkt/k").is_empty());
        let r = route(
            &Method::GET,
            "/services/objectstorage/bkt/k",
            "",
            None,
            None,
            false,
        )
        .expect("r");
        assert_eq!(
            r.v2_alternatives("/services/objectstorage/bkt/k"),
            vec!["/services/objectstorage/bkt/k"]
        );
    }

    #[test]
    fn query_decoding() {
        let q = Query::parse("prefix=a+b%2Bc&delimiter=%2F&acl&max-keys=");
        assert_eq!(q.get("prefix"), Some("a b+c"));
        assert_eq!(q.get("delimiter"), Some("/"));
        assert!(q.has("acl"));
        assert_eq!(q.get("max-keys"), Some(""));
        assert_eq!(q.get("nope"), None);
    }

    /// The real euca2ools 3.4 S3 requests (SigV2, `Date: ... -0000`) verify through our
    /// routing, at the root and under both mount prefixes (signed without the prefix).
    #[test]
    fn euca2ools_sigv2_requests_verify_through_the_router() {
        use crate::s3::ident::{verify_s3, Authenticated, Principal, RequestParts};
        struct Keys;
        impl identity::SecretSource for Keys {
            fn secret(&self, id: &str) -> Option<(Principal, String)> {
                (id == "AKIAEUCATEST00000001").then(|| {
                    let p = Principal {
                        account_id: "123456789012".into(),
                        account_name: "test".into(),
                        user_name: "admin".into(),
                        access_key_id: id.into(),
                        role: identity::Role::User,
                    };
                    (p, "euca2oolsTestSecretKey0000000000000000000".into())
                })
            }
        }
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/vectors/signatures/euca2ools-3.4-requests.jsonl"
        );
        let Ok(text) = std::fs::read_to_string(path) else {
            eprintln!("skipping: {path} not found");
            return;
        };
        let mut checked = 0;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let v: serde_json::Value = serde_json::from_str(line).expect("json");
            let hdrs = v["headers"].as_object().expect("headers");
            let auth = hdrs
                .get("Authorization")
                .and_then(|a| a.as_str())
                .unwrap_or("");
            if !auth.starts_with("AWS ") {
                continue;
            }
            let method =
                Method::from_bytes(v["method"].as_str().expect("m").as_bytes()).expect("method");
            let query: Vec<String> = v["query"]
                .as_array()
                .expect("q")
                .iter()
                .map(|p| {
                    let k = p[0].as_str().expect("k");
                    match p[1].as_str() {
                        Some("") | None => k.to_owned(),
                        Some(val) => format!("{k}={val}"),
                    }
                })
                .collect();
            let raw_query = query.join("&");
            let mut headers = http::HeaderMap::new();
            for (k, val) in hdrs {
                headers.insert(
                    http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                    val.as_str().expect("v").parse().expect("value"),
                );
            }
            let date = hdrs["Date"].as_str().expect("date").replace("-0000", "GMT");
            let now = httpdate::parse_http_date(&date).expect("date");
            for prefix in ["", "/services/Walrus", "/services/objectstorage"] {
                let raw_path = format!("{prefix}{}", v["path"].as_str().expect("path"));
                let r = route(&method, &raw_path, &raw_query, None, None, false).expect("route");
                let parts = RequestParts {
                    method: method.as_str(),
                    raw_path: &raw_path,
                    raw_query: &raw_query,
                    headers: &headers,
                };
                let auth = verify_s3(&parts, &r.v2_resource, &Keys, now)
                    .unwrap_or_else(|e| panic!("{raw_path}?{raw_query}: {e}"));
                assert!(matches!(auth, Authenticated::Signed { .. }));
                checked += 1;
            }
        }
        assert!(checked >= 3 * 5, "only {checked} S3 requests checked");
    }
}

//! From an HTTP request to an S3 endpoint. Every operation S3 defines is a variant of
//! [`Endpoint`], so a request Walrus recognises but does not implement gets 501
//! NotImplemented, distinct from a request that means nothing (405 MethodNotAllowed).
//!
//! Addressing: path style at the root of the port and under the Eucalyptus mount points
//! (`/services/Walrus`, `/services/objectstorage`), virtual-host style when the Host is
//! `<bucket>.<virtual_host_domain>`. Keys come from the raw path, percent-decoded and kept
//! verbatim (a `+` in the path is a plus, `a//b` and `../x` are keys like any other).

use http::Method;
use percent_encoding::percent_decode_str;

use super::error::S3Error;
use crate::names::{BucketName, ObjectKey, MAX_KEY_LEN};

/// Where Eucalyptus mounts its object store; the prefix is not part of the SigV2 resource.
pub const MOUNT_PREFIXES: [&str; 2] = ["/services/Walrus", "/services/objectstorage"];

macro_rules! endpoints {
    (implemented: [$($i:ident),* $(,)?], not_implemented: [$($u:ident),* $(,)?] $(,)?) => {
        /// Every S3 operation the router recognises (AWS' operation names).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[allow(missing_docs)] // the names are AWS' operation names
        pub enum Endpoint { $($i,)* $($u,)* }

        impl Endpoint {
            /// The AWS operation name.
            pub fn name(self) -> &'static str {
                match self { $(Endpoint::$i => stringify!($i),)* $(Endpoint::$u => stringify!($u),)* }
            }

            /// Whether Walrus implements it (otherwise: 501 NotImplemented).
            pub fn is_implemented(self) -> bool {
                match self { $(Endpoint::$i => true,)* $(Endpoint::$u => false,)* }
            }
        }
    };
}

endpoints! {
    implemented: [
        ListBuckets,
        CreateBucket, DeleteBucket, HeadBucket, GetBucketLocation,
        ListObjects, ListObjectsV2, DeleteObjects, GetBucketAcl, PutBucketAcl,
        PutObject, GetObject, HeadObject, DeleteObject, CopyObject,
        GetObjectAcl, PutObjectAcl,
        CreateMultipartUpload, UploadPart, UploadPartCopy, CompleteMultipartUpload,
        AbortMultipartUpload, ListParts, ListMultipartUploads,
    ],
    not_implemented: [
        ListObjectVersions, PostObject,
        GetBucketVersioning, PutBucketVersioning,
        GetBucketLifecycleConfiguration, PutBucketLifecycleConfiguration, DeleteBucketLifecycle,
        GetBucketPolicy, PutBucketPolicy, DeleteBucketPolicy, GetBucketPolicyStatus,
        GetBucketCors, PutBucketCors, DeleteBucketCors,
        GetBucketTagging, PutBucketTagging, DeleteBucketTagging,
        GetBucketWebsite, PutBucketWebsite, DeleteBucketWebsite,
        GetBucketLogging, PutBucketLogging,
        GetBucketNotificationConfiguration, PutBucketNotificationConfiguration,
        GetBucketReplication, PutBucketReplication, DeleteBucketReplication,
        GetBucketEncryption, PutBucketEncryption, DeleteBucketEncryption,
        GetObjectLockConfiguration, PutObjectLockConfiguration,
        GetBucketAccelerateConfiguration, PutBucketAccelerateConfiguration,
        GetBucketRequestPayment, PutBucketRequestPayment,
        GetBucketOwnershipControls, PutBucketOwnershipControls, DeleteBucketOwnershipControls,
        GetPublicAccessBlock, PutPublicAccessBlock, DeletePublicAccessBlock,
        GetBucketAnalyticsConfiguration, PutBucketAnalyticsConfiguration,
        DeleteBucketAnalyticsConfiguration,
        GetBucketInventoryConfiguration, PutBucketInventoryConfiguration,
        DeleteBucketInventoryConfiguration,
        GetBucketMetricsConfiguration, PutBucketMetricsConfiguration,
        DeleteBucketMetricsConfiguration,
        GetBucketIntelligentTieringConfiguration, PutBucketIntelligentTieringConfiguration,
        DeleteBucketIntelligentTieringConfiguration,
        GetObjectTagging, PutObjectTagging, DeleteObjectTagging,
        GetObjectRetention, PutObjectRetention, GetObjectLegalHold, PutObjectLegalHold,
        GetObjectTorrent, GetObjectAttributes, RestoreObject, SelectObjectContent,
    ],
}

use Endpoint as E;

/// Bucket-level sub-resources by method, in priority order; the first present wins.
const BUCKET_GET: &[(&str, Endpoint)] = &[
    ("acl", E::GetBucketAcl),
    ("location", E::GetBucketLocation),
    ("uploads", E::ListMultipartUploads),
    ("versions", E::ListObjectVersions),
    ("versioning", E::GetBucketVersioning),
    ("lifecycle", E::GetBucketLifecycleConfiguration),
    ("policy", E::GetBucketPolicy),
    ("policyStatus", E::GetBucketPolicyStatus),
    ("cors", E::GetBucketCors),
    ("tagging", E::GetBucketTagging),
    ("website", E::GetBucketWebsite),
    ("logging", E::GetBucketLogging),
    ("notification", E::GetBucketNotificationConfiguration),
    ("replication", E::GetBucketReplication),
    ("encryption", E::GetBucketEncryption),
    ("object-lock", E::GetObjectLockConfiguration),
    ("accelerate", E::GetBucketAccelerateConfiguration),
    ("requestPayment", E::GetBucketRequestPayment),
    ("ownershipControls", E::GetBucketOwnershipControls),
    ("publicAccessBlock", E::GetPublicAccessBlock),
    ("analytics", E::GetBucketAnalyticsConfiguration),
    ("inventory", E::GetBucketInventoryConfiguration),
    ("metrics", E::GetBucketMetricsConfiguration),
    (
        "intelligent-tiering",
        E::GetBucketIntelligentTieringConfiguration,
    ),
];

const BUCKET_PUT: &[(&str, Endpoint)] = &[
    ("acl", E::PutBucketAcl),
    ("versioning", E::PutBucketVersioning),
    ("lifecycle", E::PutBucketLifecycleConfiguration),
    ("policy", E::PutBucketPolicy),
    ("cors", E::PutBucketCors),
    ("tagging", E::PutBucketTagging),
    ("website", E::PutBucketWebsite),
    ("logging", E::PutBucketLogging),
    ("notification", E::PutBucketNotificationConfiguration),
    ("replication", E::PutBucketReplication),
    ("encryption", E::PutBucketEncryption),
    ("object-lock", E::PutObjectLockConfiguration),
    ("accelerate", E::PutBucketAccelerateConfiguration),
    ("requestPayment", E::PutBucketRequestPayment),
    ("ownershipControls", E::PutBucketOwnershipControls),
    ("publicAccessBlock", E::PutPublicAccessBlock),
    ("analytics", E::PutBucketAnalyticsConfiguration),
    ("inventory", E::PutBucketInventoryConfiguration),
    ("metrics", E::PutBucketMetricsConfiguration),
    (
        "intelligent-tiering",
        E::PutBucketIntelligentTieringConfiguration,
    ),
];

const BUCKET_DELETE: &[(&str, Endpoint)] = &[
    ("lifecycle", E::DeleteBucketLifecycle),
    ("policy", E::DeleteBucketPolicy),
    ("cors", E::DeleteBucketCors),
    ("tagging", E::DeleteBucketTagging),
    ("website", E::DeleteBucketWebsite),
    ("replication", E::DeleteBucketReplication),
    ("encryption", E::DeleteBucketEncryption),
    ("ownershipControls", E::DeleteBucketOwnershipControls),
    ("publicAccessBlock", E::DeletePublicAccessBlock),
    ("analytics", E::DeleteBucketAnalyticsConfiguration),
    ("inventory", E::DeleteBucketInventoryConfiguration),
    ("metrics", E::DeleteBucketMetricsConfiguration),
    (
        "intelligent-tiering",
        E::DeleteBucketIntelligentTieringConfiguration,
    ),
];

const OBJECT_GET: &[(&str, Endpoint)] = &[
    ("acl", E::GetObjectAcl),
    ("uploadId", E::ListParts),
    ("tagging", E::GetObjectTagging),
    ("torrent", E::GetObjectTorrent),
    ("retention", E::GetObjectRetention),
    ("legal-hold", E::GetObjectLegalHold),
    ("attributes", E::GetObjectAttributes),
];

const OBJECT_PUT: &[(&str, Endpoint)] = &[
    ("acl", E::PutObjectAcl),
    ("tagging", E::PutObjectTagging),
    ("retention", E::PutObjectRetention),
    ("legal-hold", E::PutObjectLegalHold),
];

const OBJECT_POST: &[(&str, Endpoint)] = &[
    ("uploads", E::CreateMultipartUpload),
    ("uploadId", E::CompleteMultipartUpload),
    ("restore", E::RestoreObject),
    ("select", E::SelectObjectContent),
];

const OBJECT_DELETE: &[(&str, Endpoint)] = &[
    ("uploadId", E::AbortMultipartUpload),
    ("tagging", E::DeleteObjectTagging),
];

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
    /// The operation.
    pub endpoint: Endpoint,
    /// The bucket, when addressed.
    pub bucket: Option<BucketName>,
    /// The key, when addressed.
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

    let pick = |table: &[(&str, Endpoint)], default: Endpoint| {
        table
            .iter()
            .find(|(name, _)| query.has(name))
            .map(|(_, e)| *e)
            .unwrap_or(default)
    };

    let endpoint = match (bucket.is_some(), key.is_some()) {
        (false, _) => match *method {
            Method::GET => E::ListBuckets,
            _ => return Err(S3Error::MethodNotAllowed),
        },
        (true, false) => match *method {
            Method::GET => {
                let list = if query.get("list-type") == Some("2") {
                    E::ListObjectsV2
                } else {
                    E::ListObjects
                };
                pick(BUCKET_GET, list)
            }
            Method::HEAD => E::HeadBucket,
            Method::PUT => pick(BUCKET_PUT, E::CreateBucket),
            Method::DELETE => pick(BUCKET_DELETE, E::DeleteBucket),
            Method::POST if query.has("delete") => E::DeleteObjects,
            Method::POST => E::PostObject,
            _ => return Err(S3Error::MethodNotAllowed),
        },
        (true, true) => match *method {
            Method::GET => pick(OBJECT_GET, E::GetObject),
            Method::HEAD => E::HeadObject,
            Method::PUT if query.has("uploadId") || query.has("partNumber") => {
                if has_copy_source {
                    E::UploadPartCopy
                } else {
                    E::UploadPart
                }
            }
            Method::PUT => pick(
                OBJECT_PUT,
                if has_copy_source {
                    E::CopyObject
                } else {
                    E::PutObject
                },
            ),
            Method::POST => match OBJECT_POST.iter().find(|(name, _)| query.has(name)) {
                Some((_, e)) => *e,
                None => return Err(S3Error::MethodNotAllowed),
            },
            Method::DELETE => pick(OBJECT_DELETE, E::DeleteObject),
            _ => return Err(S3Error::MethodNotAllowed),
        },
    };

    Ok(Route {
        endpoint,
        bucket,
        key,
        v2_resource,
        query,
    })
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

    #[test]
    fn classifies_endpoints() {
        assert_eq!(ep(Method::GET, "/", ""), E::ListBuckets);
        assert_eq!(ep(Method::PUT, "/b1b", ""), E::CreateBucket);
        assert_eq!(ep(Method::PUT, "/b1b/", ""), E::CreateBucket);
        assert_eq!(ep(Method::GET, "/b1b", ""), E::ListObjects);
        assert_eq!(
            ep(Method::GET, "/b1b", "list-type=2&prefix=a"),
            E::ListObjectsV2
        );
        assert_eq!(ep(Method::GET, "/b1b", "location"), E::GetBucketLocation);
        assert_eq!(ep(Method::GET, "/b1b", "uploads"), E::ListMultipartUploads);
        assert_eq!(ep(Method::POST, "/b1b", "delete"), E::DeleteObjects);
        assert_eq!(
            ep(Method::GET, "/b1b", "versioning"),
            E::GetBucketVersioning
        );
        assert_eq!(ep(Method::PUT, "/b1b", "acl"), E::PutBucketAcl);
        assert_eq!(ep(Method::DELETE, "/b1b", "cors"), E::DeleteBucketCors);
        assert_eq!(ep(Method::HEAD, "/b1b", ""), E::HeadBucket);
        assert_eq!(ep(Method::PUT, "/b1b/k", ""), E::PutObject);
        assert_eq!(
            ep(Method::PUT, "/b1b/k", "partNumber=1&uploadId=x"),
            E::UploadPart
        );
        assert_eq!(
            ep(Method::POST, "/b1b/k", "uploads"),
            E::CreateMultipartUpload
        );
        assert_eq!(
            ep(Method::POST, "/b1b/k", "uploadId=x"),
            E::CompleteMultipartUpload
        );
        assert_eq!(
            ep(Method::DELETE, "/b1b/k", "uploadId=x"),
            E::AbortMultipartUpload
        );
        assert_eq!(ep(Method::GET, "/b1b/k", "uploadId=x"), E::ListParts);
        assert_eq!(ep(Method::GET, "/b1b/k", "acl"), E::GetObjectAcl);
        assert_eq!(ep(Method::GET, "/b1b/k", "tagging"), E::GetObjectTagging);
        assert!(!E::GetObjectTagging.is_implemented());
        assert!(E::GetObject.is_implemented());
        assert_eq!(E::UploadPartCopy.name(), "UploadPartCopy");
        let r = route(
            &Method::PUT,
            "/b1b/k",
            "partNumber=2&uploadId=u",
            None,
            None,
            true,
        )
        .expect("r");
        assert_eq!(r.endpoint, E::UploadPartCopy);
        let r = route(&Method::PUT, "/b1b/k", "", None, None, true).expect("r");
        assert_eq!(r.endpoint, E::CopyObject);
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
            assert_eq!(r.endpoint, E::GetObject);
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
        assert_eq!(r.endpoint, E::ListObjects);
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

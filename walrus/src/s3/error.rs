//! S3 errors: one enum, one `match` from variant to AWS code and HTTP status, and the XML
//! body rendered in one place, so every handler fails the way AWS clients expect.

use bytes::Bytes;
use http::{HeaderValue, StatusCode};

use super::ident::AuthError;
use super::xml;
use crate::feed::FeedError;
use crate::store::StoreError;

/// What a request addressed, as its error document names it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Addressed {
    /// The path as the client addressed it (`<Resource>`).
    pub resource: String,
    /// The bucket, when the request named one (`<BucketName>` of NoSuchBucket).
    pub bucket: Option<String>,
    /// The key, when the request named one (`<Key>` of NoSuchKey).
    pub key: Option<String>,
}

/// Everything a request can fail with. Client mistakes carry their S3 code; internal failures
/// become a 500 whose request id lets an operator find the cause in the log.
#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The caller may not do this (no grant, or a presigned URL that has expired).
    #[error("{0}")]
    AccessDenied(String),
    /// The access key is unknown or inactive.
    #[error("The AWS Access Key Id you provided does not exist in our records.")]
    InvalidAccessKeyId,
    /// The signature does not match the request.
    #[error("The request signature we calculated does not match the signature you provided. Check your key and signing method.")]
    SignatureDoesNotMatch,
    /// The request's date is too far from the server's clock.
    #[error("The difference between the request time and the current time is too large.")]
    RequestTimeTooSkewed,
    /// The `Authorization` header cannot be parsed.
    #[error("{0}")]
    AuthorizationHeaderMalformed(String),
    /// Presigned-URL parameters that cannot be parsed.
    #[error("{0}")]
    AuthorizationQueryParametersError(String),
    /// The body does not hash to the signed `x-amz-content-sha256`.
    #[error("The provided 'x-amz-content-sha256' header does not match what was computed.")]
    ContentSha256Mismatch,
    /// The body does not match Content-MD5 or an `x-amz-checksum-*` value.
    #[error("{0}")]
    BadDigest(String),
    /// Content-MD5 is not a base64 MD5.
    #[error("The Content-MD5 you specified is not valid.")]
    InvalidDigest,
    /// The Range lies beyond the end of the object.
    #[error("The requested range is not satisfiable")]
    InvalidRange {
        /// The object's size, for `Content-Range: bytes */size`.
        size: u64,
    },
    /// An `If-*` precondition failed.
    #[error("At least one of the pre-conditions you specified did not hold")]
    PreconditionFailed,
    /// `If-None-Match` / `If-Modified-Since` say the client's copy is current (304, no body).
    #[error("Not Modified")]
    NotModified,
    /// An XML body is not what the operation expects.
    #[error("The XML you provided was not well-formed or did not validate against our published schema.")]
    MalformedXml,
    /// A request body beyond what the operation accepts.
    #[error("Your request was too big.")]
    MaxMessageLengthExceeded,
    /// A parameter or header has an invalid value.
    #[error("{0}")]
    InvalidArgument(String),
    /// The request as a whole is not acceptable.
    #[error("{0}")]
    InvalidRequest(String),
    /// The body exceeds the largest single upload.
    #[error("Your proposed upload exceeds the maximum allowed object size.")]
    EntityTooLarge,
    /// The request's headers add up to more than 8 KiB.
    #[error("Your request header section exceeds the maximum allowed size.")]
    RequestHeaderSectionTooLarge,
    /// The `x-amz-meta-*` headers exceed 2 KB.
    #[error("Your metadata headers exceed the maximum allowed metadata size.")]
    MetadataTooLarge,
    /// A multipart part other than the last is below 5 MiB.
    #[error("Your proposed upload is smaller than the minimum allowed object size.")]
    EntityTooSmall,
    /// The client stopped sending the body before it was complete.
    #[error("Your socket connection to the server was not read from or written to within the timeout period. Idle connections will be closed.")]
    RequestTimeout,
    /// The body was shorter or longer than announced.
    #[error(
        "You did not provide the number of bytes specified by the Content-Length HTTP header."
    )]
    IncompleteBody,
    /// A part named at completion is missing or its ETag differs.
    #[error("One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag.")]
    InvalidPart,
    /// The completion list is not in ascending part order.
    #[error("The list of parts was not in ascending order. Parts must be ordered by part number.")]
    InvalidPartOrder,
    /// The multipart upload does not exist.
    #[error("The specified multipart upload does not exist. The upload ID might be invalid, or the multipart upload might have been aborted or completed.")]
    NoSuchUpload,
    /// The key does not exist.
    #[error("The specified key does not exist.")]
    NoSuchKey,
    /// The bucket does not exist.
    #[error("The specified bucket does not exist.")]
    NoSuchBucket,
    /// The bucket still holds objects or uploads.
    #[error("The bucket you tried to delete is not empty.")]
    BucketNotEmpty,
    /// Another account owns that bucket name.
    #[error("The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again.")]
    BucketAlreadyExists,
    /// The bucket's owner has as many buckets as its quota allows.
    #[error("You have attempted to create more buckets than allowed.")]
    TooManyBuckets,
    /// The bucket's owner would store more bytes than its quota allows (Ceph RGW's code).
    #[error("The bucket owner's storage quota is exceeded: delete objects or abort uploads to make room.")]
    QuotaExceeded,
    /// The caller already owns that bucket.
    #[error("Your previous request to create the named bucket succeeded and you already own it.")]
    BucketAlreadyOwnedByYou,
    /// The bucket name breaks S3's naming rules (or is the reserved `services`).
    #[error("The specified bucket is not valid.")]
    InvalidBucketName,
    /// The key is longer than 1024 bytes.
    #[error("Your key is too long.")]
    KeyTooLong,
    /// The path cannot be decoded (e.g. a key that is not UTF-8).
    #[error("Couldn't parse the specified URI.")]
    InvalidUri,
    /// The method is not allowed on this resource.
    #[error("The specified method is not allowed against this resource.")]
    MethodNotAllowed,
    /// An upload without Content-Length or chunked framing.
    #[error("You must provide the Content-Length HTTP header.")]
    MissingContentLength,
    /// A tag set over its limits (count, key or value length), with a duplicate key, or
    /// naming a key reserved for the system (`aws:`).
    #[error("{0}")]
    InvalidTag(String),
    /// A POST Object body that is not well-formed `multipart/form-data`.
    #[error("The body of your POST request is not well-formed multipart/form-data.")]
    MalformedPostRequest,
    /// A POST Object policy document that cannot be read (not base64 JSON, no expiration
    /// or conditions, a condition of no known shape).
    #[error("{0}")]
    InvalidPolicyDocument(String),
    /// A grant names its grantee by an e-mail address, which names no account Walrus knows.
    #[error("The e-mail address you provided does not match any account on record.")]
    UnresolvableGrantByEmailAddress,
    /// A request S3 calls plainly bad (a CORS preflight without `Origin` or a valid
    /// `Access-Control-Request-Method`).
    #[error("{0}")]
    BadRequest(String),
    /// A CORS preflight that no rule of the bucket allows (or a bucket without CORS).
    #[error("CORSResponse: This CORS request is not allowed. This is usually because the evalution of Origin, request method / Access-Control-Request-Method or Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.")]
    CorsForbidden,
    /// GetBucketCors of a bucket that has no CORS configuration.
    #[error("The CORS configuration does not exist")]
    NoSuchCorsConfiguration,
    /// The key has no version of the id asked for.
    #[error("The specified version does not exist.")]
    NoSuchVersion,
    /// GET or HEAD of a key without a current version: NoSuchKey, saying in its headers
    /// whether a delete marker hides the key (and which), as S3 and RGW do.
    #[error("The specified key does not exist.")]
    NoCurrentVersion {
        /// The delete marker on top of the key's versions, if that is why.
        delete_marker: Option<String>,
    },
    /// A request named a delete marker's version: it has no body, tags or ACL (405 naming
    /// the marker).
    #[error("The specified method is not allowed against this resource.")]
    DeleteMarkerAsked {
        /// The marker's version id ("null" for a null marker).
        version_id: String,
    },
    /// A bucket policy S3 would not take (not JSON, a required field missing, an unknown
    /// effect, action, resource form or condition operator, over 20 KiB).
    #[error("{0}")]
    MalformedPolicy(String),
    /// GetBucketPolicy of a bucket that has no policy.
    #[error("The bucket policy does not exist")]
    NoSuchBucketPolicy,
    /// GetPublicAccessBlock of a bucket that has none.
    #[error("The public access block configuration was not found")]
    NoSuchPublicAccessBlockConfiguration,
    /// The bucket's state does not allow the request (object lock without versioning,
    /// suspending a locked bucket's versioning).
    #[error("{0}")]
    InvalidBucketState(String),
    /// GetObjectLockConfiguration of a bucket without object lock.
    #[error("Object Lock configuration does not exist for this bucket")]
    ObjectLockConfigurationNotFound,
    /// GetObjectRetention or GetObjectLegalHold of a version that has none.
    #[error("The specified object does not have a ObjectLock configuration")]
    NoSuchObjectLockConfiguration,
    /// A default retention of no positive number of days or years.
    #[error("Default retention period must be a positive integer value.")]
    InvalidRetentionPeriod,
    /// An ACL for a bucket whose ownership controls turn ACLs off.
    #[error("The bucket does not allow ACLs")]
    AccessControlListNotSupported,
    /// Turning ACLs off for a bucket whose ACL grants to others.
    #[error("Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting")]
    InvalidBucketAclWithObjectOwnership,
    /// GetBucketOwnershipControls of a bucket that has none.
    #[error("The bucket ownership controls were not found")]
    OwnershipControlsNotFound,
    /// The object changed between the check of the caller's rights and the change asked for.
    #[error(
        "A conflicting operation is currently in progress against this resource. Please try again."
    )]
    OperationAborted,
    /// GetBucketTagging of a bucket that has no tags.
    #[error("The TagSet does not exist")]
    NoSuchTagSet,
    /// An operation the router knows but Walrus does not implement.
    #[error("{0} is not implemented by Walrus.")]
    NotImplemented(&'static str),
    /// An image feed request named a manifest that cannot be unbundled as it stands: not
    /// parseable, not encrypted for this cloud, or listing a part that is not there.
    #[error("{0}")]
    InvalidManifest(String),
    /// A bundle's stored bytes disagree with its manifest (a part's or the tar stream's
    /// SHA-1, a size, the padding, the gzip or tar framing), or the manifest disagrees with
    /// the SHA-256 the image was registered with: nothing was stored.
    #[error("{0}")]
    BundleDigestMismatch(String),
    /// This Walrus lacks what the request needs (the cloud's private key for the image
    /// feed): the operator's to fix, not the caller's.
    #[error("{0}")]
    ServiceUnavailable(String),
    /// A failure on our side: disk, database, or a bug.
    #[error("We encountered an internal error. Please try again.")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl S3Error {
    /// `AccessDenied` with AWS' usual message.
    pub fn access_denied() -> S3Error {
        S3Error::AccessDenied("Access Denied".to_owned())
    }

    /// An internal error from anything printable (logged with the request id).
    pub fn internal(msg: impl Into<String>) -> S3Error {
        S3Error::Internal(msg.into().into())
    }

    /// The S3 error code and HTTP status: the one place they are decided.
    pub fn code_and_status(&self) -> (&'static str, StatusCode) {
        use S3Error::*;
        match self {
            AccessDenied(_) => ("AccessDenied", StatusCode::FORBIDDEN),
            InvalidAccessKeyId => ("InvalidAccessKeyId", StatusCode::FORBIDDEN),
            SignatureDoesNotMatch => ("SignatureDoesNotMatch", StatusCode::FORBIDDEN),
            RequestTimeTooSkewed => ("RequestTimeTooSkewed", StatusCode::FORBIDDEN),
            AuthorizationHeaderMalformed(_) => {
                ("AuthorizationHeaderMalformed", StatusCode::BAD_REQUEST)
            }
            AuthorizationQueryParametersError(_) => {
                ("AuthorizationQueryParametersError", StatusCode::BAD_REQUEST)
            }
            ContentSha256Mismatch => ("XAmzContentSHA256Mismatch", StatusCode::BAD_REQUEST),
            BadDigest(_) => ("BadDigest", StatusCode::BAD_REQUEST),
            InvalidDigest => ("InvalidDigest", StatusCode::BAD_REQUEST),
            InvalidRange { .. } => ("InvalidRange", StatusCode::RANGE_NOT_SATISFIABLE),
            PreconditionFailed => ("PreconditionFailed", StatusCode::PRECONDITION_FAILED),
            NotModified => ("NotModified", StatusCode::NOT_MODIFIED),
            MalformedXml => ("MalformedXML", StatusCode::BAD_REQUEST),
            MaxMessageLengthExceeded => ("MaxMessageLengthExceeded", StatusCode::BAD_REQUEST),
            InvalidArgument(_) => ("InvalidArgument", StatusCode::BAD_REQUEST),
            InvalidRequest(_) => ("InvalidRequest", StatusCode::BAD_REQUEST),
            EntityTooLarge => ("EntityTooLarge", StatusCode::BAD_REQUEST),
            RequestHeaderSectionTooLarge => {
                ("RequestHeaderSectionTooLarge", StatusCode::BAD_REQUEST)
            }
            MetadataTooLarge => ("MetadataTooLarge", StatusCode::BAD_REQUEST),
            EntityTooSmall => ("EntityTooSmall", StatusCode::BAD_REQUEST),
            IncompleteBody => ("IncompleteBody", StatusCode::BAD_REQUEST),
            RequestTimeout => ("RequestTimeout", StatusCode::BAD_REQUEST),
            InvalidPart => ("InvalidPart", StatusCode::BAD_REQUEST),
            InvalidPartOrder => ("InvalidPartOrder", StatusCode::BAD_REQUEST),
            NoSuchUpload => ("NoSuchUpload", StatusCode::NOT_FOUND),
            NoSuchKey => ("NoSuchKey", StatusCode::NOT_FOUND),
            NoSuchVersion => ("NoSuchVersion", StatusCode::NOT_FOUND),
            NoCurrentVersion { .. } => ("NoSuchKey", StatusCode::NOT_FOUND),
            DeleteMarkerAsked { .. } => ("MethodNotAllowed", StatusCode::METHOD_NOT_ALLOWED),
            NoSuchBucket => ("NoSuchBucket", StatusCode::NOT_FOUND),
            BucketNotEmpty => ("BucketNotEmpty", StatusCode::CONFLICT),
            BucketAlreadyExists => ("BucketAlreadyExists", StatusCode::CONFLICT),
            BucketAlreadyOwnedByYou => ("BucketAlreadyOwnedByYou", StatusCode::CONFLICT),
            TooManyBuckets => ("TooManyBuckets", StatusCode::BAD_REQUEST),
            QuotaExceeded => ("QuotaExceeded", StatusCode::FORBIDDEN),
            InvalidBucketName => ("InvalidBucketName", StatusCode::BAD_REQUEST),
            KeyTooLong => ("KeyTooLongError", StatusCode::BAD_REQUEST),
            InvalidUri => ("InvalidURI", StatusCode::BAD_REQUEST),
            MethodNotAllowed => ("MethodNotAllowed", StatusCode::METHOD_NOT_ALLOWED),
            MissingContentLength => ("MissingContentLength", StatusCode::LENGTH_REQUIRED),
            InvalidTag(_) => ("InvalidTag", StatusCode::BAD_REQUEST),
            BadRequest(_) => ("BadRequest", StatusCode::BAD_REQUEST),
            MalformedPostRequest => ("MalformedPOSTRequest", StatusCode::BAD_REQUEST),
            InvalidPolicyDocument(_) => ("InvalidPolicyDocument", StatusCode::BAD_REQUEST),
            UnresolvableGrantByEmailAddress => {
                ("UnresolvableGrantByEmailAddress", StatusCode::BAD_REQUEST)
            }
            CorsForbidden => ("AccessForbidden", StatusCode::FORBIDDEN),
            NoSuchCorsConfiguration => ("NoSuchCORSConfiguration", StatusCode::NOT_FOUND),
            NoSuchTagSet => ("NoSuchTagSet", StatusCode::NOT_FOUND),
            MalformedPolicy(_) => ("MalformedPolicy", StatusCode::BAD_REQUEST),
            InvalidBucketState(_) => ("InvalidBucketState", StatusCode::CONFLICT),
            OperationAborted => ("OperationAborted", StatusCode::CONFLICT),
            AccessControlListNotSupported => {
                ("AccessControlListNotSupported", StatusCode::BAD_REQUEST)
            }
            InvalidBucketAclWithObjectOwnership => (
                "InvalidBucketAclWithObjectOwnership",
                StatusCode::BAD_REQUEST,
            ),
            OwnershipControlsNotFound => ("OwnershipControlsNotFoundError", StatusCode::NOT_FOUND),
            ObjectLockConfigurationNotFound => (
                "ObjectLockConfigurationNotFoundError",
                StatusCode::NOT_FOUND,
            ),
            NoSuchObjectLockConfiguration => {
                ("NoSuchObjectLockConfiguration", StatusCode::NOT_FOUND)
            }
            InvalidRetentionPeriod => ("InvalidRetentionPeriod", StatusCode::BAD_REQUEST),
            NoSuchBucketPolicy => ("NoSuchBucketPolicy", StatusCode::NOT_FOUND),
            NoSuchPublicAccessBlockConfiguration => (
                "NoSuchPublicAccessBlockConfiguration",
                StatusCode::NOT_FOUND,
            ),
            NotImplemented(_) => ("NotImplemented", StatusCode::NOT_IMPLEMENTED),
            InvalidManifest(_) => ("InvalidManifest", StatusCode::BAD_REQUEST),
            // The request is sound; the stored bundle conflicts with its own manifest, and
            // asking again cannot succeed until the bundle is uploaded anew.
            BundleDigestMismatch(_) => ("BadDigest", StatusCode::CONFLICT),
            ServiceUnavailable(_) => ("ServiceUnavailable", StatusCode::SERVICE_UNAVAILABLE),
            Internal(_) => ("InternalError", StatusCode::INTERNAL_SERVER_ERROR),
        }
    }

    /// The `<Error>` document for a request that addressed `at`. As in AWS, NoSuchKey names
    /// the `<Key>` and NoSuchBucket the `<BucketName>`.
    pub fn to_xml(&self, at: &Addressed, request_id: &str) -> Bytes {
        let (code, _) = self.code_and_status();
        let mut w = xml::document();
        w.open("Error");
        w.elem("Code", code);
        w.elem("Message", &self.to_string());
        match (self, &at.bucket, &at.key) {
            (S3Error::NoSuchKey | S3Error::NoCurrentVersion { .. }, _, Some(key)) => {
                w.elem("Key", key);
            }
            (S3Error::NoSuchBucket, Some(bucket), _) => {
                w.elem("BucketName", bucket);
            }
            _ => {}
        }
        w.elem("Resource", &at.resource);
        w.elem("RequestId", request_id);
        w.close("Error");
        w.finish().into()
    }

    /// Extra headers some errors carry (416's `Content-Range`).
    pub fn extra_headers(&self) -> Vec<(http::HeaderName, HeaderValue)> {
        match self {
            S3Error::InvalidRange { size } => {
                match HeaderValue::from_str(&format!("bytes */{size}")) {
                    Ok(v) => vec![(http::header::CONTENT_RANGE, v)],
                    Err(_) => vec![],
                }
            }
            S3Error::NoCurrentVersion { delete_marker } => {
                super::versioning::marker_headers(delete_marker.as_deref())
            }
            S3Error::DeleteMarkerAsked { version_id } => {
                super::versioning::marker_headers(Some(version_id))
            }
            _ => vec![],
        }
    }
}

impl From<StoreError> for S3Error {
    fn from(e: StoreError) -> S3Error {
        match e {
            StoreError::NoSuchBucket => S3Error::NoSuchBucket,
            StoreError::BucketAlreadyExists => S3Error::BucketAlreadyExists,
            StoreError::BucketAlreadyOwnedByYou => S3Error::BucketAlreadyOwnedByYou,
            StoreError::BucketNotEmpty => S3Error::BucketNotEmpty,
            StoreError::TooManyBuckets => S3Error::TooManyBuckets,
            StoreError::QuotaExceeded => S3Error::QuotaExceeded,
            StoreError::NoSuchKey => S3Error::NoSuchKey,
            StoreError::NoSuchVersion => S3Error::NoSuchVersion,
            StoreError::MethodNotAllowed => S3Error::MethodNotAllowed,
            StoreError::PreconditionFailed => S3Error::PreconditionFailed,
            StoreError::Changed => S3Error::OperationAborted,
            StoreError::InvalidBucketState(msg) => S3Error::InvalidBucketState(msg.into()),
            // A locked version is refused as S3 refuses it: the caller may not do that.
            StoreError::ObjectLocked => S3Error::access_denied(),
            e @ StoreError::ChecksumMismatch => S3Error::BadDigest(e.to_string()),
            StoreError::NoSuchUpload => S3Error::NoSuchUpload,
            StoreError::InvalidPart => S3Error::InvalidPart,
            StoreError::InvalidPartOrder => S3Error::InvalidPartOrder,
            StoreError::EntityTooSmall => S3Error::EntityTooSmall,
            StoreError::IncompleteBody => S3Error::IncompleteBody,
            StoreError::Body(io) => body_error(io),
            e @ StoreError::Conflict => S3Error::ServiceUnavailable(e.to_string()),
            StoreError::Internal(e) => S3Error::Internal(e),
        }
    }
}

/// A body stream failure: our own body wrappers put an `S3Error` inside the `io::Error` (a
/// bad chunk signature, a body over the size limit); anything else is the client going away.
pub fn body_error(io: std::io::Error) -> S3Error {
    if io.kind() == std::io::ErrorKind::TimedOut || io.get_ref().is_some_and(timed_out) {
        return S3Error::RequestTimeout;
    }
    let kind = io.kind();
    match io.into_inner() {
        Some(inner) => match inner.downcast::<S3Error>() {
            Ok(s3) => *s3,
            Err(other) => {
                S3Error::InvalidRequest(format!("The request body could not be read: {other}"))
            }
        },
        None => S3Error::InvalidRequest(format!("The request body could not be read: {kind}")),
    }
}

/// Whether an error is, or is caused by, a timeout (the server's idle-body limit).
fn timed_out(err: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    let err: &(dyn std::error::Error + 'static) = err;
    let mut next = Some(err);
    while let Some(e) = next {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        {
            return true;
        }
        next = e.source();
    }
    false
}

impl From<FeedError> for S3Error {
    fn from(e: FeedError) -> S3Error {
        match e {
            FeedError::ManifestNotFound => S3Error::NoSuchKey,
            FeedError::InvalidManifest(m) => S3Error::InvalidManifest(m),
            FeedError::Corrupt(m) | FeedError::ManifestReplaced(m) => {
                S3Error::BundleDigestMismatch(m)
            }
            FeedError::NoCloudKey => S3Error::ServiceUnavailable(FeedError::NoCloudKey.to_string()),
            e @ FeedError::Internal { .. } => S3Error::Internal(Box::new(e)),
        }
    }
}

impl From<AuthError> for S3Error {
    fn from(e: AuthError) -> S3Error {
        super::ident::map_auth_error(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_error_xml() {
        let at = Addressed {
            resource: "/b/a&b".into(),
            bucket: Some("b".into()),
            key: Some("a&b".into()),
        };
        let body = S3Error::NoSuchKey.to_xml(&at, "REQ1");
        let s = String::from_utf8(body.to_vec()).expect("utf8");
        assert!(s.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>"));
        assert!(s.contains("<Code>NoSuchKey</Code>"));
        assert!(s.contains("<Key>a&amp;b</Key>"));
        assert!(!s.contains("<BucketName>"));
        assert!(s.contains("<Resource>/b/a&amp;b</Resource>"));
        assert!(s.contains("<RequestId>REQ1</RequestId>"));
        assert_eq!(
            S3Error::NoSuchKey.code_and_status().1,
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn no_such_bucket_names_the_bucket() {
        let at = Addressed {
            resource: "/b".into(),
            bucket: Some("b".into()),
            key: None,
        };
        let s = String::from_utf8(S3Error::NoSuchBucket.to_xml(&at, "R").to_vec()).expect("utf8");
        assert!(s.contains("<Code>NoSuchBucket</Code><Message>The specified bucket does not exist.</Message><BucketName>b</BucketName>"));
        let s =
            String::from_utf8(S3Error::access_denied().to_xml(&at, "R").to_vec()).expect("utf8");
        assert!(!s.contains("<BucketName>") && !s.contains("<Key>"));
    }

    #[test]
    fn statuses() {
        assert_eq!(
            S3Error::MissingContentLength.code_and_status().1.as_u16(),
            411
        );
        assert_eq!(
            S3Error::InvalidRange { size: 3 }
                .code_and_status()
                .1
                .as_u16(),
            416
        );
        assert_eq!(
            S3Error::NotImplemented("x").code_and_status().1.as_u16(),
            501
        );
        assert_eq!(S3Error::KeyTooLong.code_and_status().0, "KeyTooLongError");
        let h = S3Error::InvalidRange { size: 10 }.extra_headers();
        assert_eq!(h[0].1, "bytes */10");
    }

    #[test]
    fn body_errors_carry_s3_errors() {
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, S3Error::EntityTooLarge);
        assert!(matches!(body_error(io), S3Error::EntityTooLarge));
    }
}

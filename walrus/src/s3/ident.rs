//! The identity crate's verification API as Walrus uses it, and the one mapping from its
//! [`AuthError`] to S3 errors.
//!
//! TEMPORARY: until `identity` compiles, this module mirrors its contract (same names and
//! shapes) so the S3 layer builds and its unit tests run; every request is anonymous and any
//! signature is refused. It becomes `pub use identity::{..}` when the crate lands.
#![allow(dead_code)]

use std::time::SystemTime;

use super::error::S3Error;

/// Mirror of `identity::AuthError`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("The AWS access key Id you provided does not exist in our records.")]
    InvalidAccessKeyId,
    #[error("The request signature we calculated does not match the signature you provided. Check your key and signing method.")]
    SignatureDoesNotMatch,
    #[error("The difference between the request time and the current time is too large.")]
    RequestTimeTooSkewed,
    #[error("Request has expired")]
    Expired,
    #[error("Request is not valid yet")]
    NotYetValid,
    #[error("AWS authentication requires a valid Date or x-amz-date header")]
    MissingDate,
    #[error("The authorization header is malformed; {0}")]
    AuthorizationHeaderMalformed(String),
    #[error("The query-string authentication parameters are malformed: {0}")]
    AuthorizationQueryParametersError(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("The provided 'x-amz-content-sha256' header does not match what was computed.")]
    ContentSha256Mismatch,
    #[error(
        "You did not provide the number of bytes specified by the Content-Length HTTP header."
    )]
    IncompleteBody,
    #[error("The aws-chunked body is malformed: {0}")]
    InvalidChunk(String),
}

/// Mirror of `identity::Principal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub account_id: String,
    pub account_name: String,
    pub user_name: String,
    pub access_key_id: String,
}

impl Principal {
    pub fn is_cloud_admin(&self) -> bool {
        self.account_name == "eucalyptus"
    }
}

/// Mirror of `identity::CredentialSource`.
pub trait CredentialSource {
    fn lookup(&self, access_key_id: &str) -> Option<(Principal, String)>;
}

/// Mirror of `identity::Identity` (knows no keys).
#[derive(Clone, Debug, Default)]
pub struct Identity;

impl CredentialSource for Identity {
    fn lookup(&self, _access_key_id: &str) -> Option<(Principal, String)> {
        None
    }
}

/// Mirror of `identity::RequestParts`.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    pub method: &'a str,
    pub raw_path: &'a str,
    pub raw_query: &'a str,
    pub headers: &'a http::HeaderMap,
}

/// Mirror of `identity::Authenticated`.
#[derive(Debug)]
pub enum Authenticated {
    Anonymous,
    Signed {
        principal: Principal,
        payload: Payload,
    },
}

/// Mirror of `identity::Payload`.
#[derive(Debug)]
pub enum Payload {
    Unverified,
    Sha256([u8; 32]),
    Streaming(AwsChunkedDecoder),
    UnsignedTrailer(AwsChunkedDecoder),
}

/// Mirror of `identity::AwsChunkedDecoder` (never constructed here).
#[derive(Debug)]
pub struct AwsChunkedDecoder;

impl AwsChunkedDecoder {
    pub fn push(&mut self, _input: &[u8]) -> Result<bytes::Bytes, AuthError> {
        Err(AuthError::SignatureDoesNotMatch)
    }
    pub fn finish(self) -> Result<Vec<(String, String)>, AuthError> {
        Err(AuthError::SignatureDoesNotMatch)
    }
}

/// Mirror of `identity::verify_s3`: anonymous unless signed, and signatures always fail.
pub fn verify_s3(
    req: &RequestParts,
    _v2_resource: &str,
    _creds: &dyn CredentialSource,
    _now: SystemTime,
) -> Result<Authenticated, AuthError> {
    if req.headers.contains_key(http::header::AUTHORIZATION) || req.raw_query.contains("Signature")
    {
        return Err(AuthError::InvalidAccessKeyId);
    }
    Ok(Authenticated::Anonymous)
}

/// The S3 error for a verification failure (AWS' codes: expired presigned URLs are
/// AccessDenied "Request has expired").
pub fn map_auth_error(e: AuthError) -> S3Error {
    #[allow(unreachable_patterns)] // identity's enum is non_exhaustive
    match e {
        AuthError::InvalidAccessKeyId => S3Error::InvalidAccessKeyId,
        AuthError::SignatureDoesNotMatch => S3Error::SignatureDoesNotMatch,
        AuthError::RequestTimeTooSkewed => S3Error::RequestTimeTooSkewed,
        AuthError::Expired | AuthError::NotYetValid | AuthError::MissingDate => {
            S3Error::AccessDenied(e.to_string())
        }
        AuthError::AuthorizationHeaderMalformed(_) => {
            S3Error::AuthorizationHeaderMalformed(e.to_string())
        }
        AuthError::AuthorizationQueryParametersError(_) => {
            S3Error::AuthorizationQueryParametersError(e.to_string())
        }
        AuthError::InvalidArgument(m) => S3Error::InvalidArgument(m),
        AuthError::InvalidRequest(_) | AuthError::InvalidChunk(_) => {
            S3Error::InvalidRequest(e.to_string())
        }
        AuthError::ContentSha256Mismatch => S3Error::ContentSha256Mismatch,
        AuthError::IncompleteBody => S3Error::IncompleteBody,
        _ => S3Error::AccessDenied(e.to_string()),
    }
}

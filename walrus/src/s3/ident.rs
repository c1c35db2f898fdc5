//! The identity crate's verification API as Walrus uses it, and the one mapping from its
//! [`AuthError`] to S3 errors.

pub use identity::{
    verify_s3, AuthError, Authenticated, AwsChunkedDecoder, Payload, Principal, RequestParts,
};

use super::error::S3Error;

/// Makes the key a request is signed with ready for verification (a Walrus apart fetches it
/// from the cloud controller); `ServiceUnavailable` when the directory cannot answer now.
pub async fn prepare_signer(
    directory: &dyn crate::Directory,
    req: &RequestParts<'_>,
) -> Result<(), S3Error> {
    let Some(key) = identity::signing_key_id(req) else {
        return Ok(());
    };
    directory.prepare(&key).await.map_err(|e| {
        S3Error::ServiceUnavailable(format!("The signature cannot be checked now: {e}"))
    })
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

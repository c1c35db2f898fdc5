//! The identity crate's verification API as Walrus uses it, and the one mapping from its
//! [`AuthError`] to S3 errors.

pub use identity::{
    verify_s3, AuthError, Authenticated, AwsChunkedDecoder, Payload, Principal, RequestParts,
};

use super::error::S3Error;

/// Checks a request's signature with `verify` (a call of [`verify_s3`] with the key store it
/// is given) against the directory: directly when its key store is in this process, else
/// with the answers the directory fetches; `ServiceUnavailable` when it cannot answer now.
pub async fn verify_with(
    directory: &dyn crate::Directory,
    verify: impl Fn(&dyn identity::CredentialSource) -> Result<Authenticated, AuthError>,
) -> Result<Authenticated, S3Error> {
    let outcome = match directory.local_keys() {
        Some(keys) => verify(keys),
        None => identity::verify_remotely(verify, |questions| directory.answer(questions))
            .await
            .map_err(|e| {
                S3Error::ServiceUnavailable(format!("The signature cannot be checked now: {e}"))
            })?,
    };
    outcome.map_err(map_auth_error)
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

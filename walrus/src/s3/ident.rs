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
                // The body names the cloud controller's own error rather than this context, as
                // it always has.
                let cause = match e {
                    crate::DirectoryError::Remote(e) => e.to_string(),
                    e => e.to_string(),
                };
                S3Error::ServiceUnavailable(format!("The signature cannot be checked now: {cause}"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Directory, DirectoryError, DirectoryFuture};
    use identity::{Answered, CredentialSource, KeyQuestion};
    use rpc::{RpcCode, RpcError};

    /// A directory on another host whose cloud controller does not answer.
    struct Unreachable;

    impl Directory for Unreachable {
        fn local_keys(&self) -> Option<&dyn CredentialSource> {
            None
        }

        fn answer<'a>(
            &'a self,
            _: Vec<KeyQuestion>,
        ) -> DirectoryFuture<'a, Result<Answered, DirectoryError>> {
            Box::pin(async {
                Err(DirectoryError::Remote(RpcError::new(
                    RpcCode::Unavailable,
                    "https://clc:8773 did not answer",
                )))
            })
        }

        fn account_exists<'a>(
            &'a self,
            _: &'a str,
        ) -> DirectoryFuture<'a, Result<bool, DirectoryError>> {
            Box::pin(async { Ok(false) })
        }

        fn cloud_key(&self) -> Option<&rsa::RsaPrivateKey> {
            None
        }
    }

    #[tokio::test]
    async fn a_directory_that_cannot_answer_is_service_unavailable_naming_the_cloud_controllers_error(
    ) {
        let asks = |keys: &dyn CredentialSource| {
            let _ = keys.check_v2("AKID", identity::V2Algorithm::HmacSha1, "to sign", b"sig");
            Err(AuthError::SignatureDoesNotMatch)
        };
        let Err(err) = verify_with(&Unreachable, asks).await else {
            panic!("verified without a directory");
        };
        let S3Error::ServiceUnavailable(message) = &err else {
            panic!("{err:?}");
        };
        assert_eq!(
            message,
            "The signature cannot be checked now: Unavailable: https://clc:8773 did not answer"
        );
    }
}

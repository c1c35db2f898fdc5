//! The two things that can go wrong here: a request that does not prove who sent it
//! ([`AuthError`]), and the account store failing or refusing a change ([`IdentityError`]).
//! Each maps to its AWS error code in one place so that Walrus, the EC2 API and Euare answer
//! the same failure with the same code.

/// Why a request's signature was not accepted. Callers turn it into their protocol's error
/// (S3 XML, EC2 `Response/Errors`); [`AuthError::s3_code`] and [`AuthError::http_status`] give
/// the S3 mapping.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The access key id is unknown or its key is inactive.
    #[error("The AWS access key Id you provided does not exist in our records.")]
    InvalidAccessKeyId,
    /// The signature (request, chunk or trailer) does not match what the secret gives.
    #[error("The request signature we calculated does not match the signature you provided. Check your key and signing method.")]
    SignatureDoesNotMatch,
    /// The request's date is more than 15 minutes away from the server's clock.
    #[error("The difference between the request time and the current time is too large.")]
    RequestTimeTooSkewed,
    /// A presigned URL (or SigV2 `Expires`) is past its expiry time.
    #[error("Request has expired")]
    Expired,
    /// A presigned URL is dated in the future beyond the allowed clock skew.
    #[error("Request is not valid yet")]
    NotYetValid,
    /// A signed request carries neither `Date` nor `x-amz-date` (nor a usable `X-Amz-Date`).
    #[error("AWS authentication requires a valid Date or x-amz-date header")]
    MissingDate,
    /// The `Authorization` header could not be parsed.
    #[error("The authorization header is malformed; {0}")]
    AuthorizationHeaderMalformed(String),
    /// The presigned-URL query parameters could not be parsed.
    #[error("The query-string authentication parameters are malformed: {0}")]
    AuthorizationQueryParametersError(String),
    /// A parameter or header has a value the protocol does not allow.
    #[error("{0}")]
    InvalidArgument(String),
    /// The request lacks something the chosen signing method requires.
    #[error("{0}")]
    InvalidRequest(String),
    /// The body does not hash to the signed `x-amz-content-sha256`.
    #[error("The provided 'x-amz-content-sha256' header does not match what was computed.")]
    ContentSha256Mismatch,
    /// An aws-chunked body ended before its final chunk, or its decoded length differs from
    /// `x-amz-decoded-content-length`.
    #[error(
        "You did not provide the number of bytes specified by the Content-Length HTTP header."
    )]
    IncompleteBody,
    /// An aws-chunked body is not framed as the protocol says.
    #[error("The aws-chunked body is malformed: {0}")]
    InvalidChunk(String),
}

impl AuthError {
    /// The S3 error code AWS answers with for this failure.
    pub fn s3_code(&self) -> &'static str {
        match self {
            AuthError::InvalidAccessKeyId => "InvalidAccessKeyId",
            AuthError::SignatureDoesNotMatch => "SignatureDoesNotMatch",
            AuthError::RequestTimeTooSkewed => "RequestTimeTooSkewed",
            AuthError::Expired | AuthError::NotYetValid | AuthError::MissingDate => "AccessDenied",
            AuthError::AuthorizationHeaderMalformed(_) => "AuthorizationHeaderMalformed",
            AuthError::AuthorizationQueryParametersError(_) => "AuthorizationQueryParametersError",
            AuthError::InvalidArgument(_) => "InvalidArgument",
            AuthError::InvalidRequest(_) | AuthError::InvalidChunk(_) => "InvalidRequest",
            AuthError::ContentSha256Mismatch => "XAmzContentSHA256Mismatch",
            AuthError::IncompleteBody => "IncompleteBody",
        }
    }

    /// The HTTP status AWS S3 answers with for this failure.
    pub fn http_status(&self) -> u16 {
        match self {
            AuthError::InvalidAccessKeyId
            | AuthError::SignatureDoesNotMatch
            | AuthError::RequestTimeTooSkewed
            | AuthError::Expired
            | AuthError::NotYetValid
            | AuthError::MissingDate => 403,
            AuthError::AuthorizationHeaderMalformed(_)
            | AuthError::AuthorizationQueryParametersError(_)
            | AuthError::InvalidArgument(_)
            | AuthError::InvalidRequest(_)
            | AuthError::ContentSha256Mismatch
            | AuthError::IncompleteBody
            | AuthError::InvalidChunk(_) => 400,
        }
    }
}

/// Why an account-store operation failed. [`IdentityError::euare_code`] gives the IAM/Euare
/// error code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The account database (RocksDB) failed to open, read or write. Boxed so that the
    /// crate's verifiers build without RocksDB (feature `store` off) for the client tools.
    #[error("The identity database failed.")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// A stored value could not be decoded (damaged bytes, or a format version newer than
    /// this code reads).
    #[error("A stored identity record is unreadable.")]
    Corrupt(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// An account with this name already exists.
    #[error("An account named {0} already exists.")]
    AccountExists(String),
    /// A user with this name already exists in the account.
    #[error("A user named {0} already exists in this account.")]
    UserExists(String),
    /// No account has this name or id.
    #[error("The account {0} does not exist.")]
    NoSuchAccount(String),
    /// The account has no user with this name.
    #[error("The user {0} does not exist.")]
    NoSuchUser(String),
    /// The user has no access key with this id.
    #[error("The access key {0} does not exist.")]
    NoSuchAccessKey(String),
    /// An account or user name breaks the naming rules.
    #[error("{0}")]
    InvalidName(String),
    /// The user already holds the maximum number of access keys.
    #[error("Cannot exceed quota for AccessKeysPerUser: {0}.")]
    TooManyAccessKeys(usize),
    /// The operating system's random source failed.
    #[error("The system random number generator failed.")]
    Random,
    /// The cloud CA could not be read, made or used (keys, certificates).
    #[error("The cloud certificate authority failed: {0}.")]
    Certificate(String),
    /// Certificates are asked for but this store was opened without the cloud CA.
    #[error("This identity store has no certificate authority.")]
    NoCertificateAuthority,
    /// A new password breaks the password rules (IAM's `PasswordPolicyViolation`).
    #[error("{0}")]
    PasswordPolicy(String),
    /// A password could not be hashed or a stored hash not read.
    #[error("The password hash failed: {0}.")]
    PasswordHash(String),
}

#[cfg(feature = "store")]
impl From<records::RecordError> for IdentityError {
    fn from(e: records::RecordError) -> Self {
        match e {
            records::RecordError::Db(e) => IdentityError::Storage(Box::new(e)),
            e @ (records::RecordError::Database(_) | records::RecordError::NotLeader) => {
                IdentityError::Storage(Box::new(e))
            }
            e => IdentityError::Corrupt(Box::new(e)),
        }
    }
}

impl IdentityError {
    /// The IAM (Euare) error code for this failure.
    pub fn euare_code(&self) -> &'static str {
        match self {
            IdentityError::Storage(_)
            | IdentityError::Corrupt(_)
            | IdentityError::Random
            | IdentityError::Certificate(_)
            | IdentityError::NoCertificateAuthority
            | IdentityError::PasswordHash(_) => "ServiceFailure",
            IdentityError::AccountExists(_) | IdentityError::UserExists(_) => "EntityAlreadyExists",
            IdentityError::NoSuchAccount(_)
            | IdentityError::NoSuchUser(_)
            | IdentityError::NoSuchAccessKey(_) => "NoSuchEntity",
            IdentityError::InvalidName(_) => "ValidationError",
            IdentityError::TooManyAccessKeys(_) => "LimitExceeded",
            IdentityError::PasswordPolicy(_) => "PasswordPolicyViolation",
        }
    }
}

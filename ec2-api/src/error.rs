//! The Query APIs' errors: one enum, mapped to each service's code and HTTP status in one
//! place, rendered in the service's XML dialect.

use axum::body::Body;
use http::{Response, StatusCode};
use identity::{AuthError, IdentityError};

use crate::query::{document, xml_response, Dialect};

/// Everything a Query API request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The signature could not be verified.
    #[error("{0}")]
    Auth(#[from] AuthError),
    /// The request carried no credentials at all.
    #[error("Request is missing Authentication Token.")]
    MissingAuthentication,
    /// The caller may not perform this action.
    #[error("User is not authorized to perform {0}.")]
    AccessDenied(String),
    /// The caller may not use this resource (another account's manifest or image).
    #[error("{0}")]
    NotAuthorized(String),
    /// The action is unknown to this service (or not built yet).
    #[error("The action {0} is not valid for this web service.")]
    InvalidAction(String),
    /// A parameter the action needs is missing.
    #[error("The request must contain the parameter {0}.")]
    MissingParameter(String),
    /// A parameter's value is not acceptable.
    #[error("{0}")]
    Validation(String),
    /// The entity to create exists already.
    #[error("{0}")]
    EntityAlreadyExists(String),
    /// The account, user or key named does not exist.
    #[error("{0}")]
    NoSuchEntity(String),
    /// The entity cannot be deleted while it still owns or is named by something (an
    /// account with instances, images, buckets or addresses).
    #[error("{0}")]
    DeleteConflict(String),
    /// A quota is reached (access keys per user).
    #[error("{0}")]
    LimitExceeded(String),
    /// The request body is larger than any Query request can be.
    #[error("The request body is too large.")]
    RequestTooLarge,
    /// The API version asked for is not one this service speaks.
    #[error("{0} is not a valid API version.")]
    NoSuchVersion(String),
    /// An EC2 resource id or name that does not exist (or belongs to someone else).
    #[error("The {noun} '{id}' does not exist", noun = .0.noun(), id = .1)]
    NotFound(Resource, String),
    /// An EC2 resource that exists already.
    #[error("The {noun} '{id}' already exists", noun = .0.noun(), id = .1)]
    Duplicate(Resource, String),
    /// An EC2 resource id of the wrong shape.
    #[error("Invalid id: \"{id}\"", id = .1)]
    Malformed(Resource, String),
    /// A name the cloud keeps for itself (the `default` security group).
    #[error("{0}")]
    ReservedGroup(String),
    /// A resource still in use cannot be deleted or changed.
    #[error("{1}")]
    InUse(Resource, String),
    /// A bundle manifest that is unreadable, unsigned, tampered, not for this cloud, or
    /// whose parts are not all there.
    #[error("{0}")]
    InvalidManifest(String),
    /// Parameters that cannot be used together.
    #[error("{0}")]
    InvalidParameterCombination(String),
    /// A public key that cannot be imported.
    #[error("{0}")]
    InvalidKeyFormat(String),
    /// A resource would carry more tags than allowed.
    #[error("{0}")]
    TagLimitExceeded(String),
    /// The public address pool is exhausted.
    #[error("There are no more public addresses to allocate.")]
    AddressLimitExceeded,
    /// The account has as many images registered as its quota allows.
    #[error("{0}")]
    ResourceLimitExceeded(String),
    /// The account has as many instances as its quota allows.
    #[error("{0}")]
    InstanceLimitExceeded(String),
    /// The cloud has no room for the instances asked for.
    #[error("{0}")]
    InsufficientCapacity(String),
    /// The private space (or a group's network) has no address left for the instances
    /// asked for.
    #[error("{0}")]
    InsufficientAddressCapacity(String),
    /// The instance is not in a state the action applies to.
    #[error("{0}")]
    IncorrectInstanceState(String),
    /// The action has no meaning in the cloud as configured (elastic IPs in a networking
    /// mode that routes no public address).
    #[error("{0}")]
    UnsupportedOperation(String),
    /// The caller sent more requests of a rate-limited kind than allowed; it may retry
    /// later.
    #[error("{0}")]
    RequestLimitExceeded(String),
    /// A component of the cloud (the cluster controller) cannot be reached now.
    #[error("{0}")]
    Unavailable(String),
    /// A failure of ours, not the caller's: the caller is told only that, the log gets the
    /// cause with its chain of sources.
    #[error("An internal error occurred.")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// What was being done when an internal failure happened, over its cause.
#[derive(Debug, thiserror::Error)]
#[error("{doing}")]
struct Failure {
    /// What failed, as a sentence fragment ("RSA key generation failed").
    doing: String,
    /// Why.
    #[source]
    source: Box<dyn std::error::Error + Send + Sync>,
}

/// The kinds of EC2 resources, which name the `...NotFound` and `...Duplicate` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// `emi-`, `eki-`, `eri-` images.
    Image,
    /// Image names, unique per account.
    ImageName,
    /// Key pairs, by name.
    KeyPair,
    /// Security groups, by name or `sg-` id.
    Group,
    /// A rule of a security group.
    Permission,
    /// Elastic IPs.
    Address,
    /// Availability zones.
    Zone,
    /// Regions.
    Region,
    /// Instances (`i-`).
    Instance,
    /// Cloud properties.
    Property,
    /// A resource id whose kind is unknown (tags).
    Id,
}

impl Resource {
    /// How messages name the resource.
    fn noun(self) -> &'static str {
        match self {
            Resource::Image => "image id",
            Resource::ImageName => "image name",
            Resource::KeyPair => "key pair",
            Resource::Group => "security group",
            Resource::Permission => "permission",
            Resource::Address => "address",
            Resource::Zone => "availability zone",
            Resource::Region => "region",
            Resource::Instance => "instance ID",
            Resource::Property => "property",
            Resource::Id => "ID",
        }
    }

    /// The `...NotFound`, `...Duplicate` and `...Malformed` codes of the kind.
    fn codes(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Resource::Image => (
                "InvalidAMIID.NotFound",
                "InvalidAMIID.Duplicate",
                "InvalidAMIID.Malformed",
            ),
            Resource::ImageName => (
                "InvalidAMIName.NotFound",
                "InvalidAMIName.Duplicate",
                "InvalidAMIName.Malformed",
            ),
            Resource::KeyPair => (
                "InvalidKeyPair.NotFound",
                "InvalidKeyPair.Duplicate",
                "InvalidKeyPair.Format",
            ),
            Resource::Group => (
                "InvalidGroup.NotFound",
                "InvalidGroup.Duplicate",
                "InvalidGroupId.Malformed",
            ),
            Resource::Permission => (
                "InvalidPermission.NotFound",
                "InvalidPermission.Duplicate",
                "InvalidPermission.Malformed",
            ),
            Resource::Address => (
                "InvalidAddress.NotFound",
                "InvalidAddress.Duplicate",
                "InvalidAddress.Malformed",
            ),
            Resource::Zone => (
                "InvalidZone.NotFound",
                "InvalidZone.Duplicate",
                "InvalidParameterValue",
            ),
            Resource::Region => (
                "InvalidRegion.NotFound",
                "InvalidRegion.Duplicate",
                "InvalidParameterValue",
            ),
            Resource::Instance => (
                "InvalidInstanceID.NotFound",
                "InvalidInstanceID.Duplicate",
                "InvalidInstanceID.Malformed",
            ),
            Resource::Property => (
                "InvalidParameterValue",
                "InvalidParameterValue",
                "InvalidParameterValue",
            ),
            Resource::Id => ("InvalidID", "InvalidID", "InvalidID"),
        }
    }
}

/// The account store's refusals as the caller's errors; its failures as ours.
impl From<IdentityError> for QueryError {
    fn from(err: IdentityError) -> QueryError {
        match err {
            IdentityError::AccountExists(_) | IdentityError::UserExists(_) => {
                QueryError::EntityAlreadyExists(err.to_string())
            }
            IdentityError::NoSuchAccount(_)
            | IdentityError::NoSuchUser(_)
            | IdentityError::NoSuchAccessKey(_) => QueryError::NoSuchEntity(err.to_string()),
            IdentityError::InvalidName(_) => QueryError::Validation(err.to_string()),
            IdentityError::TooManyAccessKeys(_) => QueryError::LimitExceeded(err.to_string()),
            other => QueryError::internal(other),
        }
    }
}

impl QueryError {
    /// An internal failure: an error (kept as the source) or a sentence saying what broke.
    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> QueryError {
        QueryError::Internal(cause.into())
    }

    /// An internal failure while `doing` something, caused by `source` (kept for the log).
    pub fn failed(
        doing: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> QueryError {
        QueryError::Internal(Box::new(Failure {
            doing: doing.into(),
            source: Box::new(source),
        }))
    }

    /// The AWS error code and HTTP status of this error in `dialect`.
    fn code(&self, dialect: Dialect) -> (&'static str, StatusCode) {
        use Dialect::{Ec2, Euare};
        match (self, dialect) {
            (QueryError::Auth(err), Ec2) => match err {
                AuthError::RequestTimeTooSkewed | AuthError::Expired => {
                    ("RequestExpired", StatusCode::BAD_REQUEST)
                }
                _ => ("AuthFailure", StatusCode::UNAUTHORIZED),
            },
            (QueryError::Auth(err), Euare) => match err {
                AuthError::InvalidAccessKeyId => ("InvalidClientTokenId", StatusCode::FORBIDDEN),
                AuthError::RequestTimeTooSkewed | AuthError::Expired => {
                    ("RequestExpired", StatusCode::BAD_REQUEST)
                }
                _ => ("SignatureDoesNotMatch", StatusCode::FORBIDDEN),
            },
            (QueryError::MissingAuthentication, Ec2) => ("AuthFailure", StatusCode::UNAUTHORIZED),
            (QueryError::MissingAuthentication, Euare) => {
                ("MissingAuthenticationToken", StatusCode::FORBIDDEN)
            }
            (QueryError::AccessDenied(_), Ec2) => ("UnauthorizedOperation", StatusCode::FORBIDDEN),
            (QueryError::AccessDenied(_), Euare) => ("AccessDenied", StatusCode::FORBIDDEN),
            (QueryError::NotAuthorized(_), Ec2) => ("AuthFailure", StatusCode::UNAUTHORIZED),
            (QueryError::NotAuthorized(_), Euare) => ("AccessDenied", StatusCode::FORBIDDEN),
            (QueryError::InvalidAction(_), _) => ("InvalidAction", StatusCode::BAD_REQUEST),
            (QueryError::MissingParameter(_), _) => ("MissingParameter", StatusCode::BAD_REQUEST),
            (QueryError::Validation(_), Ec2) => ("InvalidParameterValue", StatusCode::BAD_REQUEST),
            (QueryError::Validation(_), Euare) => ("ValidationError", StatusCode::BAD_REQUEST),
            (QueryError::EntityAlreadyExists(_), _) => {
                ("EntityAlreadyExists", StatusCode::CONFLICT)
            }
            (QueryError::NoSuchEntity(_), _) => ("NoSuchEntity", StatusCode::NOT_FOUND),
            (QueryError::LimitExceeded(_), _) => ("LimitExceeded", StatusCode::CONFLICT),
            (QueryError::DeleteConflict(_), _) => ("DeleteConflict", StatusCode::CONFLICT),
            (QueryError::RequestTooLarge, _) => {
                ("RequestEntityTooLarge", StatusCode::PAYLOAD_TOO_LARGE)
            }
            (QueryError::NoSuchVersion(_), _) => ("NoSuchVersion", StatusCode::BAD_REQUEST),
            (QueryError::NotFound(kind, _), _) => (kind.codes().0, StatusCode::BAD_REQUEST),
            (QueryError::Duplicate(kind, _), _) => (kind.codes().1, StatusCode::BAD_REQUEST),
            (QueryError::Malformed(kind, _), _) => (kind.codes().2, StatusCode::BAD_REQUEST),
            (QueryError::ReservedGroup(_), _) => ("InvalidGroup.Reserved", StatusCode::BAD_REQUEST),
            (QueryError::InUse(Resource::Group, _), _) => {
                ("InvalidGroup.InUse", StatusCode::BAD_REQUEST)
            }
            (QueryError::InUse(_, _), _) => ("ResourceInUse", StatusCode::BAD_REQUEST),
            (QueryError::InvalidManifest(_), _) => ("InvalidManifest", StatusCode::BAD_REQUEST),
            (QueryError::InvalidParameterCombination(_), _) => {
                ("InvalidParameterCombination", StatusCode::BAD_REQUEST)
            }
            (QueryError::InvalidKeyFormat(_), _) => ("InvalidKey.Format", StatusCode::BAD_REQUEST),
            (QueryError::TagLimitExceeded(_), _) => ("TagLimitExceeded", StatusCode::BAD_REQUEST),
            (QueryError::AddressLimitExceeded, _) => {
                ("AddressLimitExceeded", StatusCode::BAD_REQUEST)
            }
            (QueryError::ResourceLimitExceeded(_), _) => {
                ("ResourceLimitExceeded", StatusCode::BAD_REQUEST)
            }
            (QueryError::InstanceLimitExceeded(_), _) => {
                ("InstanceLimitExceeded", StatusCode::BAD_REQUEST)
            }
            (QueryError::InsufficientCapacity(_), _) => (
                "InsufficientInstanceCapacity",
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (QueryError::InsufficientAddressCapacity(_), _) => (
                "InsufficientAddressCapacity",
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (QueryError::IncorrectInstanceState(_), _) => {
                ("IncorrectInstanceState", StatusCode::BAD_REQUEST)
            }
            (QueryError::UnsupportedOperation(_), _) => {
                ("UnsupportedOperation", StatusCode::BAD_REQUEST)
            }
            (QueryError::RequestLimitExceeded(_), _) => {
                ("RequestLimitExceeded", StatusCode::SERVICE_UNAVAILABLE)
            }
            (QueryError::Unavailable(_), _) => ("Unavailable", StatusCode::SERVICE_UNAVAILABLE),
            (QueryError::Internal(_), Ec2) => ("InternalError", StatusCode::INTERNAL_SERVER_ERROR),
            (QueryError::Internal(_), Euare) => {
                ("ServiceFailure", StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }

    /// The error as the service's XML document.
    pub fn render(&self, dialect: Dialect, request_id: &str) -> Response<Body> {
        if let QueryError::Internal(cause) = self {
            let detail = rpc::error_chain(cause.as_ref());
            tracing::error!(request_id, detail, "internal error in a Query API request");
        }
        let (code, status) = self.code(dialect);
        let message = self.to_string();
        let mut w = document();
        match dialect {
            Dialect::Ec2 => {
                w.open("Response")
                    .open("Errors")
                    .open("Error")
                    .elem("Code", code)
                    .elem("Message", &message)
                    .close("Error")
                    .close("Errors")
                    .elem("RequestID", request_id)
                    .close("Response");
            }
            Dialect::Euare => {
                let kind = if status.is_server_error() {
                    "Receiver"
                } else {
                    "Sender"
                };
                w.open_with("ErrorResponse", &[("xmlns", crate::euare::NAMESPACE)])
                    .open("Error")
                    .elem("Type", kind)
                    .elem("Code", code)
                    .elem("Message", &message)
                    .close("Error")
                    .elem("RequestId", request_id)
                    .close("ErrorResponse");
            }
        }
        xml_response(status, w.finish(), request_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The status and body of a rendered error.
    async fn sent(err: &QueryError, dialect: Dialect) -> (StatusCode, String) {
        let response = err.render(dialect, "req-1");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn error_documents_are_written_byte_for_byte() {
        // A message echoing a caller's markup, quotes and characters XML cannot carry.
        let err = QueryError::Validation("Value (a<b> & \"c\" 'd'\u{1}\r\n) is bad.".into());
        let message = "Value (a&lt;b&gt; &amp; &quot;c&quot; 'd'\u{fffd}&#xD;\n) is bad.";
        assert_eq!(
            sent(&err, Dialect::Ec2).await,
            (
                StatusCode::BAD_REQUEST,
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error>\
                     <Code>InvalidParameterValue</Code><Message>{message}</Message></Error>\
                     </Errors><RequestID>req-1</RequestID></Response>"
                )
            )
        );
        assert_eq!(
            sent(&err, Dialect::Euare).await,
            (
                StatusCode::BAD_REQUEST,
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse \
                     xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><Error><Type>Sender\
                     </Type><Code>ValidationError</Code><Message>{message}</Message></Error>\
                     <RequestId>req-1</RequestId></ErrorResponse>"
                )
            )
        );
        let ours = QueryError::internal("disk on fire");
        assert_eq!(
            sent(&ours, Dialect::Euare).await,
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse \
                 xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><Error><Type>Receiver\
                 </Type><Code>ServiceFailure</Code><Message>An internal error occurred.\
                 </Message></Error><RequestId>req-1</RequestId></ErrorResponse>"
                    .to_owned()
            )
        );
    }

    #[test]
    fn internal_errors_keep_their_cause_for_the_log_and_tell_the_caller_nothing() {
        let cause = std::io::Error::other("disk on fire");
        let err = QueryError::failed("cannot encode a private key", cause);
        assert_eq!(
            rpc::error_chain(&err),
            "An internal error occurred.: cannot encode a private key: disk on fire"
        );
        let response = err.render(Dialect::Ec2, "req-1");
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            err.code(Dialect::Euare),
            ("ServiceFailure", StatusCode::INTERNAL_SERVER_ERROR)
        );
        assert_eq!(err.to_string(), "An internal error occurred.");
    }
}

//! The Query APIs' errors: one enum, mapped to each service's code and HTTP status in one
//! place, rendered in the service's XML dialect.

use axum::body::Body;
use http::{Response, StatusCode};
use identity::{AuthError, IdentityError};

use crate::query::{escape, xml_response, Dialect};

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
    /// A quota is reached (access keys per user).
    #[error("{0}")]
    LimitExceeded(String),
    /// The request body is larger than any Query request can be.
    #[error("The request body is too large.")]
    RequestTooLarge,
    /// A failure of ours, not the caller's.
    #[error("An internal error occurred.")]
    Internal(String),
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
            other => QueryError::Internal(other.to_string()),
        }
    }
}

impl QueryError {
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
            (QueryError::InvalidAction(_), _) => ("InvalidAction", StatusCode::BAD_REQUEST),
            (QueryError::MissingParameter(_), _) => ("MissingParameter", StatusCode::BAD_REQUEST),
            (QueryError::Validation(_), Ec2) => ("InvalidParameterValue", StatusCode::BAD_REQUEST),
            (QueryError::Validation(_), Euare) => ("ValidationError", StatusCode::BAD_REQUEST),
            (QueryError::EntityAlreadyExists(_), _) => {
                ("EntityAlreadyExists", StatusCode::CONFLICT)
            }
            (QueryError::NoSuchEntity(_), _) => ("NoSuchEntity", StatusCode::NOT_FOUND),
            (QueryError::LimitExceeded(_), _) => ("LimitExceeded", StatusCode::CONFLICT),
            (QueryError::RequestTooLarge, _) => {
                ("RequestEntityTooLarge", StatusCode::PAYLOAD_TOO_LARGE)
            }
            (QueryError::Internal(_), Ec2) => ("InternalError", StatusCode::INTERNAL_SERVER_ERROR),
            (QueryError::Internal(_), Euare) => {
                ("ServiceFailure", StatusCode::INTERNAL_SERVER_ERROR)
            }
        }
    }

    /// The error as the service's XML document.
    pub fn render(&self, dialect: Dialect, request_id: &str) -> Response<Body> {
        if let QueryError::Internal(detail) = self {
            tracing::error!(request_id, detail, "internal error in a Query API request");
        }
        let (code, status) = self.code(dialect);
        let message = escape(&self.to_string());
        let body = match dialect {
            Dialect::Ec2 => format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>"
            ),
            Dialect::Euare => {
                let kind = if status.is_server_error() { "Receiver" } else { "Sender" };
                format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ErrorResponse xmlns=\"{ns}\"><Error><Type>{kind}</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>",
                    ns = crate::euare::NAMESPACE
                )
            }
        };
        xml_response(status, body, request_id)
    }
}

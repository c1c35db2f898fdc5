//! What goes wrong in the console, each as the status and page a person sees, in one place.
//! Mistakes in a form are not errors: the form comes back with the message beside its field.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::page::{render, MessagePage};

/// Why a request was not done.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// A form without its CSRF token (or with another session's), or from another site.
    #[error("This form has expired or did not come from this console. Go back, reload the page and try again.")]
    Forgery,
    /// The page is for the cloud's administrators.
    #[error("This page is for the cloud's administrators.")]
    NotAdmin,
    /// No such page.
    #[error("There is no such page.")]
    NotFound,
    /// A request the console cannot read (a form too large, not a form).
    #[error("{0}")]
    BadRequest(String),
    /// The cloud refused the action, with its reason (the API's own error, as a page).
    #[error("{1}")]
    Refused(StatusCode, String),
    /// Too many attempts: wait this long.
    #[error("Too many attempts. Try again in {} seconds.", .0.as_secs().max(1))]
    Throttled(Duration),
    /// The cloud's stores failed: the person can do nothing about it.
    #[error("The console could not do this: {0}")]
    Internal(String),
}

impl ConsoleError {
    fn status(&self) -> StatusCode {
        match self {
            ConsoleError::Forgery | ConsoleError::NotAdmin => StatusCode::FORBIDDEN,
            ConsoleError::NotFound => StatusCode::NOT_FOUND,
            ConsoleError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ConsoleError::Refused(status, _) => *status,
            ConsoleError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            ConsoleError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<identity::IdentityError> for ConsoleError {
    fn from(e: identity::IdentityError) -> Self {
        ConsoleError::Internal(e.to_string())
    }
}

impl From<ec2_api::QueryError> for ConsoleError {
    /// The API's refusal, with the status a person's mistake gets: the same rules, the same
    /// reasons, as a page.
    fn from(e: ec2_api::QueryError) -> Self {
        use ec2_api::QueryError as Q;
        match e {
            Q::AccessDenied(_) | Q::NotAuthorized(_) => ConsoleError::NotAdmin,
            Q::Internal(_) | Q::Unavailable(_) | Q::Auth(_) | Q::MissingAuthentication => {
                ConsoleError::Internal(e.to_string())
            }
            Q::NotFound(..) | Q::NoSuchEntity(_) => {
                ConsoleError::Refused(StatusCode::NOT_FOUND, e.to_string())
            }
            Q::Duplicate(..) | Q::EntityAlreadyExists(_) | Q::InUse(..) | Q::DeleteConflict(_) => {
                ConsoleError::Refused(StatusCode::CONFLICT, e.to_string())
            }
            _ => ConsoleError::Refused(StatusCode::BAD_REQUEST, e.to_string()),
        }
    }
}

impl From<ec2_api::state::StateError> for ConsoleError {
    fn from(e: ec2_api::state::StateError) -> Self {
        ConsoleError::Internal(e.to_string())
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        if let ConsoleError::Internal(why) = &self {
            tracing::error!("console: {why}");
        }
        let status = self.status();
        let mut response = render(
            status,
            &MessagePage {
                title: status.canonical_reason().unwrap_or("Error"),
                message: &self.to_string(),
                signed_in: false,
            },
        );
        if let ConsoleError::Throttled(wait) = self {
            if let Ok(value) = wait.as_secs().max(1).to_string().parse() {
                response
                    .headers_mut()
                    .insert(http::header::RETRY_AFTER, value);
            }
        }
        response
    }
}

//! The personal page a person lands on after signing in.

use askama::Template;
use axum::extract::{Request, State};
use axum::response::Response;
use http::StatusCode;
use identity::SignedIn;

use crate::page::{render, see_other};
use crate::{ConsoleError, Shared};

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage<'a> {
    csrf: &'a str,
    who: &'a SignedIn,
    admin: bool,
    ec2_url: &'a str,
    walrus_url: &'a str,
    /// For the administrator: where mail goes when no relay is set.
    mail_dir: Option<String>,
}

/// `GET /`: the personal page; sign-in first, and the first run before anything else.
pub async fn show(State(console): State<Shared>, req: Request) -> Result<Response, ConsoleError> {
    let Some(session) = console.sessions.current(req.headers()) else {
        return Ok(see_other("/login"));
    };
    if session.who.must_change {
        return Ok(see_other("/first-run"));
    }
    let urls = crate::service_urls(&console)?;
    Ok(render(
        StatusCode::OK,
        &HomePage {
            csrf: &console.sessions.csrf_token(&session),
            who: &session.who,
            admin: session.is_admin(),
            ec2_url: urls.ec2_url.as_deref().unwrap_or_default(),
            walrus_url: &urls.s3_url,
            mail_dir: (session.is_admin() && console.outbox.to_files())
                .then(|| console.outbox.dir().display().to_string()),
        },
    ))
}

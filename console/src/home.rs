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
    /// The person's access keys, when Euare lets them manage keys.
    keys: Option<Vec<KeyRow>>,
}

/// An access key as the page lists it.
struct KeyRow {
    id: String,
    active: bool,
    created: String,
}

/// `GET /`: the personal page; sign-in first, and the first run before anything else.
pub async fn show(State(console): State<Shared>, req: Request) -> Result<Response, ConsoleError> {
    let Some(session) = crate::signed_in(&console, req.headers()) else {
        return Ok(see_other("/login"));
    };
    if session.who.must_change {
        return Ok(see_other("/first-run"));
    }
    let urls = crate::service_urls(&console)?;
    let identity = &console.setup.cloud.identity;
    let keys = match ec2_api::euare::managed_account(identity, &session.who.principal(), None) {
        Ok(account) => Some(
            identity
                .list_access_keys(&account, &session.who.user_name)?
                .into_iter()
                .map(|k| KeyRow {
                    active: k.status == identity::AccessKeyStatus::Active,
                    created: httpdate::fmt_http_date(k.created),
                    id: k.access_key_id,
                })
                .collect(),
        ),
        Err(_) => None,
    };
    Ok(render(
        StatusCode::OK,
        &HomePage {
            csrf: &console.sessions.csrf_token(&session),
            who: &session.who,
            admin: session.is_admin(),
            ec2_url: urls.ec2_url.as_deref().unwrap_or_default(),
            walrus_url: &urls.s3_url,
            keys,
            mail_dir: (session.is_admin() && console.outbox.to_files())
                .then(|| console.outbox.dir().display().to_string()),
        },
    ))
}

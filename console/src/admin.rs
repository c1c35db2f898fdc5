//! The administrators' pages (cloud administrators only; anyone else signed in gets 403):
//! users, with the applications waiting for a decision.
//!
//! Approving or rejecting here does what the mail's links do (`signup::carry_out`), and
//! disabling a user is Euare's `DisableUser` (`ec2_api::euare::set_user_enabled`).

use askama::Template;
use axum::extract::{Path, Request, State};
use axum::response::Response;
use ec2_api::state::Batch;
use http::StatusCode;
use identity::{Role, SignedIn};

use crate::page::{render, see_other, Form, MessagePage};
use crate::session::Session;
use crate::signup::{carry_out, Application, Purpose, Status};
use crate::{ConsoleError, Shared};

/// The session of a signed-in administrator; a person signed out goes to sign-in, anyone
/// else is refused.
fn administrator(
    console: &Shared,
    headers: &http::HeaderMap,
) -> Result<Result<Session, Response>, ConsoleError> {
    let Some(session) = crate::signed_in(console, headers) else {
        return Ok(Err(see_other("/login")));
    };
    if session.who.must_change {
        return Ok(Err(see_other("/first-run")));
    }
    if !session.is_admin() {
        return Err(ConsoleError::NotAdmin);
    }
    Ok(Ok(session))
}

struct UserRow {
    account: String,
    account_id: String,
    name: String,
    role: &'static str,
    enabled: bool,
    email: String,
}

#[derive(Template)]
#[template(path = "admin_users.html")]
struct UsersPage<'a> {
    csrf: &'a str,
    who: &'a SignedIn,
    pending: Vec<Application>,
    users: Vec<UserRow>,
}

/// `GET /admin/users`.
pub async fn users(State(console): State<Shared>, req: Request) -> Result<Response, ConsoleError> {
    let session = match administrator(&console, req.headers())? {
        Ok(session) => session,
        Err(redirect) => return Ok(redirect),
    };
    let identity = &console.setup.cloud.identity;
    let mut pending: Vec<Application> = console
        .setup
        .cloud
        .state
        .scan::<Application>("")?
        .into_iter()
        .map(|(_, a)| a)
        .filter(|a| a.status == Status::Pending)
        .collect();
    pending.sort_by_key(|a| a.created);
    let mut users = Vec::new();
    for (account_id, account) in identity.list_accounts()? {
        for user in identity.users_of(&account_id)? {
            let role = match user.role {
                Role::CloudAdmin => "Cloud administrator",
                Role::User if user.name == identity::ADMIN_USER => "Account administrator",
                Role::User => "User",
                Role::Component(_) => continue,
            };
            users.push(UserRow {
                email: identity
                    .email_of(&account_id, &user.name)?
                    .unwrap_or_default(),
                account: account.clone(),
                account_id: account_id.clone(),
                name: user.name,
                role,
                enabled: user.enabled,
            });
        }
    }
    users.sort_by(|a, b| (&a.account, &a.name).cmp(&(&b.account, &b.name)));
    Ok(render(
        StatusCode::OK,
        &UsersPage {
            csrf: &console.sessions.csrf_token(&session),
            who: &session.who,
            pending,
            users,
        },
    ))
}

/// `POST /admin/users`: fields `account`, `user`, `action` (`disable` or `enable`).
pub async fn change_user(
    State(console): State<Shared>,
    req: Request,
) -> Result<Response, ConsoleError> {
    let headers = req.headers().clone();
    let session = match administrator(&console, &headers)? {
        Ok(session) => session,
        Err(redirect) => return Ok(redirect),
    };
    let form = Form::read(req).await?;
    console
        .sessions
        .check_form(&session, &headers, form.get("csrf"))?;
    let enabled = match form.get("action") {
        "enable" => true,
        "disable" => false,
        other => {
            return Err(ConsoleError::BadRequest(format!(
                "{other:?} is not something a user can be."
            )))
        }
    };
    ec2_api::euare::set_user_enabled(
        &console.setup.cloud.identity,
        &session.who.principal(),
        Some(form.get("account")),
        form.get("user"),
        enabled,
    )?;
    Ok(see_other("/admin/users"))
}

/// `POST /admin/applications/ID`: field `action`, `approve` or `reject`.
pub async fn decide(
    State(console): State<Shared>,
    Path(id): Path<String>,
    req: Request,
) -> Result<Response, ConsoleError> {
    let headers = req.headers().clone();
    let session = match administrator(&console, &headers)? {
        Ok(session) => session,
        Err(redirect) => return Ok(redirect),
    };
    let form = Form::read(req).await?;
    console
        .sessions
        .check_form(&session, &headers, form.get("csrf"))?;
    let purpose = match form.get("action") {
        "approve" => Purpose::Approve,
        "reject" => Purpose::Reject,
        other => {
            return Err(ConsoleError::BadRequest(format!(
                "{other:?} is not a decision."
            )))
        }
    };
    let state = &console.setup.cloud.state;
    let guard = state.exclusive();
    let Some(mut application) = state
        .get::<Application>(&id)?
        .filter(|a| a.status == Status::Pending)
    else {
        return Err(ConsoleError::Refused(
            StatusCode::GONE,
            "This application was decided already.".into(),
        ));
    };
    let mut batch = Batch::new();
    let (title, message) = match carry_out(&console, &mut batch, &mut application, purpose)? {
        Ok(done) => done,
        Err(page) => return Ok(page),
    };
    batch.put(&application.id, &application);
    state.commit(batch)?;
    drop(guard);
    console.outbox.wake();
    Ok(render(
        StatusCode::OK,
        &MessagePage {
            title,
            message: &message,
            signed_in: true,
        },
    ))
}

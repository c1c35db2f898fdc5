//! A person's own credentials: the zip `euca_conf --get-credentials` writes, their access
//! keys (create, deactivate, activate, delete) and their password. Each is the account
//! service's operation under its rules (`ec2_api::euare::credentials`, `managed_account`), so
//! the console lets nobody do what Euare would refuse them.

use askama::Template;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};
use identity::{AccessKeyStatus, IdentityError, SignedIn, MIN_PASSWORD_LENGTH};

use crate::page::{render, see_other, MessagePage};
use crate::session::Session;
use crate::{blocking, ConsoleError, Shared};

/// The account whose keys the person manages (their own, if Euare lets them).
fn own_account(console: &Shared, who: &SignedIn) -> Result<String, ConsoleError> {
    Ok(ec2_api::euare::managed_account(
        &console.setup.cloud.identity,
        &who.principal(),
        None,
    )?)
}

/// `POST /credentials`: the person's credentials zip, as a download.
pub async fn download(
    State(console): State<Shared>,
    req: Request,
) -> Result<Response, ConsoleError> {
    let (session, _) = match crate::posted_form(&console, req, crate::Who::Person).await? {
        Ok(found) => found,
        Err(redirect) => return Ok(redirect),
    };
    let urls = crate::service_urls(&console)?;
    let identity = console.setup.cloud.identity.clone();
    let who = session.who.clone();
    let zip = blocking(&console, move || {
        ec2_api::euare::credentials(
            &identity,
            &urls,
            &who.principal(),
            Some(&who.account_name),
            Some(&who.user_name),
        )
    })
    .await??;
    let name = format!(
        "attachment; filename=\"koala-{}-{}-credentials.zip\"",
        session.who.account_name, session.who.user_name
    );
    Ok((
        [
            (header::CONTENT_TYPE, "application/zip".to_owned()),
            (header::CONTENT_DISPOSITION, name),
        ],
        zip,
    )
        .into_response())
}

#[derive(Template)]
#[template(path = "new_key.html")]
struct NewKeyPage<'a> {
    csrf: &'a str,
    who: &'a SignedIn,
    access_key_id: &'a str,
    secret_access_key: &'a str,
}

/// `POST /keys`: a new access key, its secret shown this once.
pub async fn create(State(console): State<Shared>, req: Request) -> Result<Response, ConsoleError> {
    let (session, _) = match crate::posted_form(&console, req, crate::Who::Person).await? {
        Ok(found) => found,
        Err(redirect) => return Ok(redirect),
    };
    let account = own_account(&console, &session.who)?;
    let creds = match console
        .setup
        .cloud
        .identity
        .create_access_key(&account, &session.who.user_name)
    {
        Ok(creds) => creds,
        Err(e @ IdentityError::TooManyAccessKeys(_)) => {
            return Err(ConsoleError::Refused(
                StatusCode::CONFLICT,
                format!("{e} Delete a key before making another."),
            ))
        }
        Err(e) => return Err(e.into()),
    };
    Ok(render(
        StatusCode::OK,
        &NewKeyPage {
            csrf: &console.sessions.csrf_token(&session),
            who: &session.who,
            access_key_id: &creds.access_key_id,
            secret_access_key: &creds.secret_access_key,
        },
    ))
}

/// `POST /keys/ID`, field `action`: `deactivate`, `activate` or `delete`.
pub async fn change(
    State(console): State<Shared>,
    Path(key): Path<String>,
    req: Request,
) -> Result<Response, ConsoleError> {
    let (session, form) = match crate::posted_form(&console, req, crate::Who::Person).await? {
        Ok(found) => found,
        Err(redirect) => return Ok(redirect),
    };
    let account = own_account(&console, &session.who)?;
    let identity = &console.setup.cloud.identity;
    let user = &session.who.user_name;
    let done = match form.get("action") {
        "deactivate" => {
            identity.set_access_key_status(&account, user, &key, AccessKeyStatus::Inactive)
        }
        "activate" => identity.set_access_key_status(&account, user, &key, AccessKeyStatus::Active),
        "delete" => identity.delete_access_key(&account, user, &key),
        other => {
            return Err(ConsoleError::BadRequest(format!(
                "{other:?} is not something a key can do."
            )))
        }
    };
    match done {
        Ok(()) => Ok(see_other("/#keys")),
        Err(IdentityError::NoSuchAccessKey(_)) => Err(ConsoleError::Refused(
            StatusCode::NOT_FOUND,
            format!("You have no access key {key}."),
        )),
        Err(e) => Err(e.into()),
    }
}

#[derive(Template)]
#[template(path = "password.html")]
struct PasswordPage<'a> {
    csrf: &'a str,
    who: &'a SignedIn,
    min_length: usize,
    current_error: Option<String>,
    password_error: Option<String>,
    password2_error: Option<String>,
}

fn password_page(
    console: &Shared,
    session: &Session,
    status: StatusCode,
    errors: [Option<String>; 3],
) -> Response {
    let [current_error, password_error, password2_error] = errors;
    render(
        status,
        &PasswordPage {
            csrf: &console.sessions.csrf_token(session),
            who: &session.who,
            min_length: MIN_PASSWORD_LENGTH,
            current_error,
            password_error,
            password2_error,
        },
    )
}

/// `GET /password`.
pub async fn password_form(
    State(console): State<Shared>,
    req: Request,
) -> Result<Response, ConsoleError> {
    let Some(session) = crate::signed_in(&console, req.headers()) else {
        return Ok(see_other("/login"));
    };
    if session.who.must_change {
        return Ok(see_other("/first-run"));
    }
    Ok(password_page(
        &console,
        &session,
        StatusCode::OK,
        Default::default(),
    ))
}

/// `POST /password`: the current password, then the new one twice.
pub async fn password_submit(
    State(console): State<Shared>,
    req: Request,
) -> Result<Response, ConsoleError> {
    let (session, form) = match crate::posted_form(&console, req, crate::Who::Person).await? {
        Ok(found) => found,
        Err(redirect) => return Ok(redirect),
    };
    let (current, new) = (form.get("current"), form.get("password"));
    let mut errors: [Option<String>; 3] = Default::default();
    if new.chars().count() < MIN_PASSWORD_LENGTH {
        errors[1] = Some(format!(
            "Choose a password of at least {MIN_PASSWORD_LENGTH} characters."
        ));
    } else if new != form.get("password2") {
        errors[2] = Some("The two passwords differ.".into());
    }
    if errors.iter().all(Option::is_none) {
        crate::sign_in::take_attempt(&console, &session.who)?;
        let identity = console.setup.cloud.identity.clone();
        let who = session.who.clone();
        let (current, new) = (current.to_owned(), new.to_owned());
        let outcome = blocking(&console, move || {
            match identity.check_password(&who.account_name, &who.user_name, &current)? {
                None => Ok(Some(None)),
                Some(_) => {
                    match identity.set_password(&who.account_id, &who.user_name, &new, false) {
                        Ok(()) => Ok(None),
                        Err(IdentityError::PasswordPolicy(why)) => Ok(Some(Some(why))),
                        Err(e) => Err(e),
                    }
                }
            }
        })
        .await??;
        match outcome {
            None => {
                crate::sign_in::give_back_attempt(&console, &session.who);
                return Ok(render(
                    StatusCode::OK,
                    &MessagePage {
                        title: "Password changed",
                        message: "Your new password works from your next sign-in.",
                        signed_in: true,
                    },
                ));
            }
            Some(None) => errors[0] = Some("This is not your current password.".into()),
            Some(Some(why)) => errors[1] = Some(why),
        }
    }
    Ok(password_page(
        &console,
        &session,
        StatusCode::BAD_REQUEST,
        errors,
    ))
}

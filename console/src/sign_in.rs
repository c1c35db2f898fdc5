//! Signing in and out, and the first run: a person whose password was set by someone else (the
//! cloud admin's default `admin`) chooses their own before anything else; the administrator
//! also gives an e-mail address and confirms Walrus' URL.
//!
//! Sign-in attempts are limited per address and per user name (a token bucket each, given
//! back on success), whatever the name: a refusal tells nothing of whether the user exists,
//! and neither does the message or the time a wrong attempt takes (an unknown user's password
//! is checked against a decoy hash).

use std::time::Duration;

use askama::Template;
use axum::extract::{Request, State};
use axum::response::Response;
use ec2_api::Throttle;
use http::{header, StatusCode};
use identity::{IdentityError, SignedIn, ADMIN_ACCOUNT, ADMIN_USER, MIN_PASSWORD_LENGTH};

use crate::page::{render, see_other, Form};
use crate::session::Session;
use crate::{blocking, ConsoleError, Shared};

/// Wrong attempts one address may make back to back, then one more every
/// [`ADDRESS_EVERY`] (a whole office behind one NAT still signs in).
const ADDRESS_BURST: u32 = 30;
/// See [`ADDRESS_BURST`].
const ADDRESS_EVERY: Duration = Duration::from_secs(2);
/// Wrong attempts for one user name back to back, then one more every [`USER_EVERY`]:
/// 2,880 guesses a day at most, from any number of addresses.
const USER_BURST: u32 = 5;
/// See [`USER_BURST`].
const USER_EVERY: Duration = Duration::from_secs(30);

/// Applications one address may send back to back, then one more every
/// [`APPLICATION_EVERY`] (each sends a mail: no mail bombing through the form).
const APPLICATION_BURST: u32 = 5;
/// See [`APPLICATION_BURST`].
const APPLICATION_EVERY: Duration = Duration::from_secs(60);

/// The limits on what anyone may try before signing in.
pub struct Limits {
    per_address: Throttle,
    per_user: Throttle,
    /// Applications per address.
    pub applications: Throttle,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_address: Throttle::new(ADDRESS_EVERY, ADDRESS_BURST),
            per_user: Throttle::new(USER_EVERY, USER_BURST),
            applications: Throttle::new(APPLICATION_EVERY, APPLICATION_BURST),
        }
    }
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    csrf: &'a str,
    name: &'a str,
    error: Option<String>,
}

/// What a person types as their user name: `admin` is the cloud's administrator, `ACCOUNT`
/// the `admin` user of that account, `USER@ACCOUNT` another user of it.
fn principal_of(name: &str) -> (&str, &str) {
    match name.rsplit_once('@') {
        Some((user, account)) => (account, user),
        None if name == ADMIN_USER => (ADMIN_ACCOUNT, ADMIN_USER),
        None => (name, ADMIN_USER),
    }
}

fn login_page(
    console: &Shared,
    headers: &http::HeaderMap,
    status: StatusCode,
    name: &str,
    error: Option<String>,
) -> Result<Response, ConsoleError> {
    let (csrf, cookie) = console.sessions.pre_token(headers)?;
    let mut response = render(
        status,
        &LoginPage {
            csrf: &csrf,
            name,
            error,
        },
    );
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// `GET /login`.
pub async fn form(State(console): State<Shared>, req: Request) -> Result<Response, ConsoleError> {
    if crate::signed_in(&console, req.headers()).is_some() {
        return Ok(see_other("/"));
    }
    login_page(&console, req.headers(), StatusCode::OK, "", None)
}

/// `POST /login`.
pub async fn submit(State(console): State<Shared>, req: Request) -> Result<Response, ConsoleError> {
    let peer = crate::peer_of(&req).to_string();
    let headers = req.headers().clone();
    let form = Form::read(req).await?;
    console
        .sessions
        .check_pre_form(&headers, form.get("csrf"))?;
    let name = form.get("name").trim();
    let password = form.get("password");
    if name.is_empty() || password.is_empty() {
        let error = "Enter your user name and your password.".to_owned();
        return login_page(
            &console,
            &headers,
            StatusCode::BAD_REQUEST,
            name,
            Some(error),
        );
    }
    let user_key = name.to_lowercase();
    let limits = &console.limits;
    let allowed = limits.per_address.take(&peer).and_then(|()| {
        limits.per_user.take(&user_key).inspect_err(|_| {
            limits.per_address.give_back(&peer);
        })
    });
    if let Err(wait) = allowed {
        let error = ConsoleError::Throttled(wait).to_string();
        let mut response = login_page(
            &console,
            &headers,
            StatusCode::TOO_MANY_REQUESTS,
            name,
            Some(error),
        )?;
        if let Ok(value) = wait.as_secs().max(1).to_string().parse() {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return Ok(response);
    }
    let (account, user) = principal_of(name);
    let (account, user, password) = (account.to_owned(), user.to_owned(), password.to_owned());
    let identity = console.setup.cloud.identity.clone();
    let checked = blocking(&console, move || {
        identity.check_password(&account, &user, &password)
    })
    .await??;
    let Some(who) = checked else {
        let error = "The user name or password is wrong.".to_owned();
        return login_page(
            &console,
            &headers,
            StatusCode::UNAUTHORIZED,
            name,
            Some(error),
        );
    };
    limits.per_address.give_back(&peer);
    limits.per_user.give_back(&user_key);
    let next = if who.must_change { "/first-run" } else { "/" };
    let cookie = console.sessions.start(who, &headers)?;
    let mut response = see_other(next);
    response.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(response)
}

/// `POST /logout`.
pub async fn sign_out(
    State(console): State<Shared>,
    req: Request,
) -> Result<Response, ConsoleError> {
    let headers = req.headers().clone();
    let Some(session) = crate::signed_in(&console, &headers) else {
        return Ok(see_other("/login"));
    };
    let form = Form::read(req).await?;
    console
        .sessions
        .check_form(&session, &headers, form.get("csrf"))?;
    let cookie = console.sessions.end(&session);
    let mut response = see_other("/login");
    response.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(response)
}

#[derive(Template)]
#[template(path = "first_run.html")]
struct FirstRunPage<'a> {
    csrf: &'a str,
    who: &'a SignedIn,
    admin: bool,
    email: &'a str,
    walrus_url: &'a str,
    min_length: usize,
    errors: FirstRunErrors,
}

/// The first-run form's mistakes, each shown beside its field.
#[derive(Default)]
struct FirstRunErrors {
    password: Option<String>,
    password2: Option<String>,
    email: Option<String>,
    walrus_url: Option<String>,
}

impl FirstRunErrors {
    fn any(&self) -> bool {
        self.password.is_some()
            || self.password2.is_some()
            || self.email.is_some()
            || self.walrus_url.is_some()
    }
}

/// `GET /first-run`.
pub async fn first_run_form(
    State(console): State<Shared>,
    req: Request,
) -> Result<Response, ConsoleError> {
    let Some(session) = crate::signed_in(&console, req.headers()) else {
        return Ok(see_other("/login"));
    };
    if !session.who.must_change {
        return Ok(see_other("/"));
    }
    let walrus_url = crate::service_urls(&console)?.s3_url;
    Ok(first_run_page(
        &console,
        &session,
        StatusCode::OK,
        session.who.email.as_deref().unwrap_or_default(),
        &walrus_url,
        FirstRunErrors::default(),
    ))
}

fn first_run_page(
    console: &Shared,
    session: &Session,
    status: StatusCode,
    email: &str,
    walrus_url: &str,
    errors: FirstRunErrors,
) -> Response {
    render(
        status,
        &FirstRunPage {
            csrf: &console.sessions.csrf_token(session),
            who: &session.who,
            admin: session.is_admin(),
            email,
            walrus_url,
            min_length: MIN_PASSWORD_LENGTH,
            errors,
        },
    )
}

/// `POST /first-run`.
pub async fn first_run_submit(
    State(console): State<Shared>,
    req: Request,
) -> Result<Response, ConsoleError> {
    let headers = req.headers().clone();
    let Some(session) = crate::signed_in(&console, &headers) else {
        return Ok(see_other("/login"));
    };
    let form = Form::read(req).await?;
    console
        .sessions
        .check_form(&session, &headers, form.get("csrf"))?;
    if !session.who.must_change {
        return Ok(see_other("/"));
    }
    let admin = session.is_admin();
    let (password, email, walrus_url) = (
        form.get("password"),
        form.get("email").trim(),
        form.get("walrus_url").trim(),
    );
    let mut errors = FirstRunErrors::default();
    if password.chars().count() < MIN_PASSWORD_LENGTH {
        errors.password = Some(format!(
            "Choose a password of at least {MIN_PASSWORD_LENGTH} characters."
        ));
    } else if password != form.get("password2") {
        errors.password2 = Some("The two passwords differ.".into());
    }
    if admin && !identity::plausible_email(email) {
        errors.email = Some("Enter an e-mail address, such as admin@example.com.".into());
    }
    let walrus_property = ec2_api::properties::WALRUS_URL;
    if admin {
        if let Err(e) =
            ec2_api::properties::check(&console.setup.cloud, walrus_property, walrus_url)
        {
            errors.walrus_url = Some(e.to_string());
        }
    }
    if admin && !errors.any() {
        // The property's own rule and store: what euca-modify-property would do. The
        // cloud's own URL is left as the default, so it follows the cloud if it moves.
        let value = if walrus_url == console.setup.urls.s3_url {
            None
        } else {
            Some(walrus_url)
        };
        let principal = session.who.principal();
        let cloud = &console.setup.cloud;
        ec2_api::properties::set(cloud, &principal, walrus_property, value)?;
    }
    if !errors.any() {
        let identity = console.setup.cloud.identity.clone();
        let who = session.who.clone();
        let new = password.to_owned();
        let set = blocking(&console, move || {
            identity.set_password(&who.account_id, &who.user_name, &new, false)
        })
        .await?;
        match set {
            Ok(()) => {}
            Err(IdentityError::PasswordPolicy(why)) => errors.password = Some(why),
            Err(e) => return Err(e.into()),
        }
    }
    if errors.any() {
        return Ok(first_run_page(
            &console,
            &session,
            StatusCode::BAD_REQUEST,
            email,
            walrus_url,
            errors,
        ));
    }
    let mut who = session.who.clone();
    who.must_change = false;
    if admin {
        console
            .setup
            .cloud
            .identity
            .set_email(&who.account_id, &who.user_name, email)?;
        who.email = Some(email.to_owned());
    }
    console.sessions.update(&session, who);
    Ok(see_other("/"))
}

/// The name `who` signs in with, as the per-user limit counts it.
fn login_name(who: &SignedIn) -> String {
    match (who.account_name.as_str(), who.user_name.as_str()) {
        (ADMIN_ACCOUNT, ADMIN_USER) => ADMIN_USER.to_owned(),
        (account, ADMIN_USER) => account.to_owned(),
        (account, user) => format!("{user}@{account}"),
    }
    .to_lowercase()
}

/// Takes one password attempt of `who` (a password change checks the current one): the
/// same limit as sign-in, so a stolen session cannot guess the password faster.
pub fn take_attempt(console: &Shared, who: &SignedIn) -> Result<(), ConsoleError> {
    console
        .limits
        .per_user
        .take(&login_name(who))
        .map_err(ConsoleError::Throttled)
}

/// Gives back the attempt of a right password.
pub fn give_back_attempt(console: &Shared, who: &SignedIn) {
    console.limits.per_user.give_back(&login_name(who));
}

//! The web console, Eucalyptus' `https://CLOUD:8443`: people sign in with a password and drive
//! the cloud from server-rendered pages.
//!
//! Every action is the operation the APIs expose, called on the same stores with the same
//! rules (`identity` for accounts, users and passwords; `ec2-api` for the cloud's state): the
//! console has no rules of its own, only sessions, forms and pages.
//!
//! - [`session`]: who is signed in (a random id in a `__Host-` cookie, the session itself in
//!   memory), and the CSRF token every form carries.
//! - [`sign_in`]: sign-in with its rate limits, sign-out, and the first run (a password that
//!   must be changed, the admin's e-mail and Walrus' URL).
//! - [`signup`]: applications, approval and activation by mail links.
//! - [`mail`]: the outbox, delivered by SMTP or to files.
//! - [`home`]: the personal page; [`keys`]: the person's credentials zip, access keys and
//!   password.
//! - [`page`]: templates, the static files and the headers every answer carries.
//! - [`resources`]: a person's instances, images, key pairs, groups and addresses, as the
//!   Describe actions answer them.
//! - [`admin`]: the administrators' pages: a dashboard of what runs where, users and
//!   applications, images, configuration.
//! - [`error`]: what goes wrong, as the page and status a person sees.

mod admin;
mod error;
mod home;
mod keys;
mod mail;
mod page;
mod resources;
mod session;
mod sign_in;
mod signup;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{get, post};
use ec2_api::Cloud;
use identity::ServiceUrls;

pub use error::ConsoleError;
pub use mail::MailSettings;

/// What the console serves from: the cloud controller (its account store, state and
/// operations) and the URLs of its services.
#[derive(Clone)]
pub struct ConsoleSetup {
    /// The cloud controller: `identity` for accounts, users, passwords and keys, `state` for
    /// the rest (the console's applications, links and mail live there too).
    pub cloud: Cloud,
    /// The URLs clients use, as credentials name them (before the Walrus URL property).
    pub urls: ServiceUrls,
    /// The console's own URL, ending in `/`, for the links in its mail.
    pub url: String,
    /// How long a link in a mail works.
    pub link_lifetime: std::time::Duration,
    /// Where mail goes.
    pub mail: MailSettings,
}

/// The console's shared state: the setup, the sessions and the sign-in limits.
struct Console {
    setup: ConsoleSetup,
    sessions: session::Sessions,
    limits: sign_in::Limits,
    outbox: Arc<mail::Outbox>,
    /// Turns for password hashing and key generation: two per core.
    heavy: tokio::sync::Semaphore,
}

/// The state every handler gets.
type Shared = Arc<Console>;

/// The console's routes, ready to serve over HTTPS, and its mail delivery started (call
/// within the Tokio runtime). Requests must carry axum's `ConnectInfo<SocketAddr>` (sign-in
/// attempts and applications are limited per address).
pub fn router(setup: ConsoleSetup) -> Result<axum::Router, ConsoleError> {
    let outbox = mail::Outbox::new(setup.cloud.state.clone(), setup.mail.clone());
    tokio::spawn(outbox.clone().run());
    let console = Arc::new(Console {
        setup,
        sessions: session::Sessions::new()?,
        limits: sign_in::Limits::default(),
        outbox,
        heavy: tokio::sync::Semaphore::new(
            std::thread::available_parallelism().map_or(2, |n| n.get() * 2),
        ),
    });
    Ok(axum::Router::new()
        .route("/", get(home::show))
        .route("/login", get(sign_in::form).post(sign_in::submit))
        .route("/logout", post(sign_in::sign_out))
        .route(
            "/first-run",
            get(sign_in::first_run_form).post(sign_in::first_run_submit),
        )
        .route("/apply", get(signup::form).post(signup::submit))
        .route("/credentials", post(keys::download))
        .route("/keys", post(keys::create))
        .route("/keys/{key}", post(keys::change))
        .route("/resources", get(resources::show))
        .route(
            "/resources/instances/{id}/terminate",
            post(resources::terminate),
        )
        .route(
            "/password",
            get(keys::password_form).post(keys::password_submit),
        )
        .route("/admin", get(admin::dashboard))
        .route("/admin/users", get(admin::users).post(admin::change_user))
        .route("/admin/applications/{id}", post(admin::decide))
        .route("/admin/accounts", post(admin::add_account))
        .route("/admin/images", get(admin::images))
        .route("/admin/images/{id}/deregister", post(admin::deregister))
        .route(
            "/admin/config",
            get(admin::config).post(admin::set_property),
        )
        .route("/static/{file}", get(page::static_file))
        .route("/{purpose}/{token}", get(signup::confirm).post(signup::act))
        .fallback(page::not_found)
        .layer(axum::middleware::map_response(page::with_headers))
        .layer(axum::middleware::from_fn(page::timed))
        .with_state(console))
}

/// The address a request came from: what serve gives as `ConnectInfo`, else unspecified (every
/// such request then shares one sign-in limit).
fn peer_of(req: &axum::extract::Request) -> std::net::IpAddr {
    req.extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |c| c.0.ip())
}

/// Seconds since the epoch.
fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// This host's name, for the greeting of SMTP.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Runs work that hashes passwords (argon2: tens of milliseconds and 19 MiB each) or makes
/// RSA keys off the reactor, a few at a time: a flood of sign-ins from many addresses waits
/// its turn instead of taking every core and gigabytes of memory.
async fn blocking<T: Send + 'static>(
    console: &Console,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ConsoleError> {
    let _turn = console
        .heavy
        .acquire()
        .await
        .map_err(|e| ConsoleError::Internal(e.to_string()))?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ConsoleError::Internal(e.to_string()))
}

/// The URLs credentials name, the Walrus URL property applied: what `GetCredentials` uses.
fn service_urls(console: &Console) -> Result<ServiceUrls, ConsoleError> {
    Ok(ec2_api::properties::service_urls(
        &console.setup.cloud,
        &console.setup.urls,
    )?)
}

/// The live session of a request whose person is still enabled: a user disabled while signed
/// in is signed out at their next request.
fn signed_in(console: &Console, headers: &http::HeaderMap) -> Option<session::Session> {
    let session = console.sessions.current(headers)?;
    let who = &session.who;
    match console
        .setup
        .cloud
        .identity
        .user_enabled(&who.account_id, &who.user_name)
    {
        Ok(true) => Some(session),
        _ => {
            console.sessions.end(&session);
            None
        }
    }
}

/// Who may post a form.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Who {
    /// Anyone signed in who has done the first run.
    Person,
    /// A cloud administrator (anyone else is refused with 403).
    Admin,
}

/// The session and form of a POST whose token was checked, for `who`; otherwise where the
/// browser goes (sign-in, the first run).
async fn posted_form(
    console: &Console,
    req: axum::extract::Request,
    who: Who,
) -> Result<Result<(session::Session, page::Form), axum::response::Response>, ConsoleError> {
    let headers = req.headers().clone();
    let Some(session) = signed_in(console, &headers) else {
        return Ok(Err(page::see_other("/login")));
    };
    if session.who.must_change {
        return Ok(Err(page::see_other("/first-run")));
    }
    if who == Who::Admin && !session.is_admin() {
        return Err(ConsoleError::NotAdmin);
    }
    let form = page::Form::read(req).await?;
    console
        .sessions
        .check_form(&session, &headers, form.get("csrf"))?;
    Ok(Ok((session, form)))
}

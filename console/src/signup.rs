//! Sign-up, as Eucalyptus' console had it: a person applies ("Apply": a name for their
//! account, their name, e-mail, password and affiliation); the administrator gets a mail with
//! two links, approve and reject; on approval the applicant gets a mail with an activation
//! link; activating makes the account (its `admin` user signs in with the password chosen at
//! application) and the person signs in.
//!
//! Applications (`consoleapp/`) and link tokens (`consoletoken/`) are in the cloud
//! controller's state, so a restart loses nothing and every link still works. A link carries
//! 32 random bytes; only their SHA-256 is stored. Each link works once, until it expires
//! (`[console] link_lifetime_secs`, 7 days by default); following a link (GET) only shows
//! what it will do, since mail scanners fetch links: the button on that page (POST) does it.
//! Nothing exists in the account store before activation, so an applicant, pending, rejected
//! or approved but not activated, can neither sign in nor use a key.
//!
//! The apply page answers the same whatever the name: a name already taken is told to the
//! applicant by mail, not on the page (no enumeration of accounts).

use askama::Template;
use axum::extract::{Path, Request, State};
use axum::response::Response;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ec2_api::state::{Batch, Record};
use http::{header, StatusCode};
use identity::{IdentityError, MIN_PASSWORD_LENGTH};
use rand::RngCore;
use ring::digest;
use serde::{Deserialize, Serialize};

use crate::mail::{Mail, Outbox};
use crate::page::{render, Form, MessagePage};
use crate::{blocking, now_secs, ConsoleError, Shared};

/// Where an application stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Waiting for the administrator.
    Pending,
    /// Approved: waiting for the applicant to activate.
    Approved,
    /// Declined by the administrator.
    Rejected,
    /// The account exists.
    Activated,
}

/// One application for an account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Application {
    /// Its id (random, hex).
    pub id: String,
    /// The account's name, which is also what the person signs in as.
    pub name: String,
    /// The person's full name.
    pub full_name: String,
    /// Where the person gets mail.
    pub email: String,
    /// Affiliation and notes, for the administrator.
    pub notes: String,
    /// The chosen password, hashed (argon2id PHC); empty when an administrator added the
    /// account, whose person chooses it at activation.
    #[serde(default)]
    password: String,
    /// Where it stands.
    pub status: Status,
    /// When it was made (seconds since the epoch).
    pub created: u64,
    /// When it was last decided or activated.
    pub decided: Option<u64>,
}

impl records::Versioned for Application {
    const ENVELOPE: records::Envelope = ec2_api::state::ENVELOPE;
    const VERSION: u32 = 1;
}

impl Record for Application {
    const TABLE: &'static str = "consoleapp/";
}

/// What a link does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Purpose {
    /// The administrator approves an application.
    Approve,
    /// The administrator declines it.
    Reject,
    /// The applicant activates the approved account.
    Activate,
}

impl Purpose {
    fn path(self) -> &'static str {
        match self {
            Purpose::Approve => "approve",
            Purpose::Reject => "reject",
            Purpose::Activate => "activate",
        }
    }
}

/// A link's record, under the SHA-256 of its token.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LinkToken {
    purpose: Purpose,
    application: String,
    expires: u64,
    used: Option<u64>,
}

impl records::Versioned for LinkToken {
    const ENVELOPE: records::Envelope = ec2_api::state::ENVELOPE;
    const VERSION: u32 = 1;
}

impl Record for LinkToken {
    const TABLE: &'static str = "consoletoken/";
}

fn token_key(token: &str) -> String {
    hex::encode(digest::digest(&digest::SHA256, token.as_bytes()))
}

/// A new link for `application`, added to `batch`; its URL.
fn new_link(
    console: &Shared,
    batch: &mut Batch,
    purpose: Purpose,
    application: &str,
) -> Result<String, ConsoleError> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|_| ConsoleError::Internal("the system random source failed".into()))?;
    let token = URL_SAFE_NO_PAD.encode(bytes);
    batch.put(
        &token_key(&token),
        &LinkToken {
            purpose,
            application: application.to_owned(),
            expires: now_secs() + console.setup.link_lifetime.as_secs(),
            used: None,
        },
    );
    Ok(format!("{}{}/{token}", console.setup.url, purpose.path()))
}

#[derive(Template)]
#[template(path = "apply.html")]
struct ApplyPage<'a> {
    csrf: &'a str,
    form: ApplyFields<'a>,
    errors: ApplyErrors,
    min_length: usize,
}

#[derive(Default)]
struct ApplyFields<'a> {
    name: &'a str,
    full_name: &'a str,
    email: &'a str,
    notes: &'a str,
}

#[derive(Default)]
struct ApplyErrors {
    name: Option<String>,
    full_name: Option<String>,
    email: Option<String>,
    password: Option<String>,
    password2: Option<String>,
    notes: Option<String>,
}

impl ApplyErrors {
    fn any(&self) -> bool {
        self.name.is_some()
            || self.full_name.is_some()
            || self.email.is_some()
            || self.password.is_some()
            || self.password2.is_some()
            || self.notes.is_some()
    }
}

fn apply_page(
    console: &Shared,
    headers: &http::HeaderMap,
    status: StatusCode,
    form: ApplyFields<'_>,
    errors: ApplyErrors,
) -> Result<Response, ConsoleError> {
    let (csrf, cookie) = console.sessions.pre_token(headers)?;
    let mut response = render(
        status,
        &ApplyPage {
            csrf: &csrf,
            form,
            errors,
            min_length: MIN_PASSWORD_LENGTH,
        },
    );
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// `GET /apply`.
pub async fn form(State(console): State<Shared>, req: Request) -> Result<Response, ConsoleError> {
    apply_page(
        &console,
        req.headers(),
        StatusCode::OK,
        ApplyFields::default(),
        ApplyErrors::default(),
    )
}

/// Names nobody may apply for: the cloud's own account and what sign-in reads specially.
const RESERVED: &[&str] = &[
    identity::ADMIN_ACCOUNT,
    identity::ADMIN_USER,
    "koala",
    "root",
];

/// `POST /apply`.
pub async fn submit(State(console): State<Shared>, req: Request) -> Result<Response, ConsoleError> {
    let peer = crate::peer_of(&req).to_string();
    let headers = req.headers().clone();
    let form = Form::read(req).await?;
    console
        .sessions
        .check_pre_form(&headers, form.get("csrf"))?;
    let fields = ApplyFields {
        name: form.get("name").trim(),
        full_name: form.get("full_name").trim(),
        email: form.get("email").trim(),
        notes: form.get("notes").trim(),
    };
    let password = form.get("password");
    let mut errors = ApplyErrors::default();
    if let Err(e) = identity::validate_account_name(fields.name) {
        errors.name = Some(e.to_string());
    } else if RESERVED.contains(&fields.name) {
        errors.name = Some(format!("{} is reserved: choose another name.", fields.name));
    }
    if fields.full_name.is_empty() || fields.full_name.chars().count() > 128 {
        errors.full_name = Some("Enter your name (at most 128 characters).".into());
    }
    if !identity::plausible_email(fields.email) {
        errors.email = Some("Enter an e-mail address, such as you@example.com.".into());
    }
    if fields.notes.chars().count() > 2000 {
        errors.notes = Some("At most 2,000 characters.".into());
    }
    if password != form.get("password2") {
        errors.password2 = Some("The two passwords differ.".into());
    }
    if !errors.any() {
        // Each application hashes a password and sends a mail: limited before either.
        console
            .limits
            .applications
            .take(&peer)
            .map_err(ConsoleError::Throttled)?;
    }
    let phc = if errors.any() {
        None
    } else {
        let (name, password) = (fields.name.to_owned(), password.to_owned());
        match blocking(&console, move || {
            identity::hash_new_password(&name, &password)
        })
        .await?
        {
            Ok(phc) => Some(phc),
            Err(IdentityError::PasswordPolicy(why)) => {
                errors.password = Some(why);
                None
            }
            Err(e) => return Err(e.into()),
        }
    };
    let Some(phc) = phc else {
        return apply_page(&console, &headers, StatusCode::BAD_REQUEST, fields, errors);
    };
    record_application(&console, &fields, phc)?;
    Ok(render(
        StatusCode::OK,
        &MessagePage {
            title: "Application sent",
            message: &format!(
                "Thank you. The cloud's administrator will decide on your application; \
                 you will get an e-mail at {} either way.",
                fields.email
            ),
            signed_in: false,
        },
    ))
}

/// Records the application and queues its mail: to the administrator with the links, or to
/// the applicant when the name is taken.
fn record_application(
    console: &Shared,
    fields: &ApplyFields<'_>,
    phc: String,
) -> Result<(), ConsoleError> {
    let state = &console.setup.cloud.state;
    let identity = &console.setup.cloud.identity;
    let _guard = state.exclusive();
    let taken = identity.account_id(fields.name)?.is_some()
        || state.scan::<Application>("")?.iter().any(|(_, a)| {
            a.name == fields.name && matches!(a.status, Status::Pending | Status::Approved)
        });
    let mut batch = Batch::new();
    if taken {
        let body = format!(
            "Hello {},\n\nSomeone (we hope you) applied for an account named \"{}\" on this \
             cloud, but that name is taken. Apply again with another name:\n\n  {}apply\n",
            fields.full_name, fields.name, console.setup.url
        );
        Outbox::queue(
            &mut batch,
            &Mail::new(
                fields.email,
                "Your application: the name is taken".into(),
                body,
            ),
        );
    } else {
        let id = hex::encode(random16()?);
        let approve = new_link(console, &mut batch, Purpose::Approve, &id)?;
        let reject = new_link(console, &mut batch, Purpose::Reject, &id)?;
        let application = Application {
            id: id.clone(),
            name: fields.name.to_owned(),
            full_name: fields.full_name.to_owned(),
            email: fields.email.to_owned(),
            notes: fields.notes.to_owned(),
            password: phc,
            status: Status::Pending,
            created: now_secs(),
            decided: None,
        };
        batch.put(&id, &application);
        match admin_email(console)? {
            Some(admin) => {
                let body = format!(
                    "{} <{}> applies for an account named \"{}\".\n\nAffiliation and notes:\n{}\n\n\
                     Approve: {approve}\nReject:  {reject}\n\nEach link works once; both expire in {} days.\n",
                    application.full_name,
                    application.email,
                    application.name,
                    if application.notes.is_empty() { "(none)" } else { &application.notes },
                    console.setup.link_lifetime.as_secs().div_ceil(86_400),
                );
                Outbox::queue(
                    &mut batch,
                    &Mail::new(
                        &admin,
                        format!("Koala: {} applies for an account", application.name),
                        body,
                    ),
                );
            }
            None => tracing::warn!(
                "console: an application for {} waits, but the administrator has no e-mail address yet (the first run sets it)",
                application.name
            ),
        }
    }
    state.commit(batch)?;
    console.outbox.wake();
    Ok(())
}

fn admin_email(console: &Shared) -> Result<Option<String>, ConsoleError> {
    let identity = &console.setup.cloud.identity;
    let Some(account) = identity.account_id(identity::ADMIN_ACCOUNT)? else {
        return Ok(None);
    };
    Ok(identity.email_of(&account, identity::ADMIN_USER)?)
}

fn random16() -> Result<[u8; 16], ConsoleError> {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|_| ConsoleError::Internal("the system random source failed".into()))?;
    Ok(bytes)
}

/// Why a link does nothing.
fn dead_link(message: &str) -> Response {
    render(
        StatusCode::GONE,
        &MessagePage {
            title: "This link no longer works",
            message,
            signed_in: false,
        },
    )
}

/// The live link `token` for `purpose` and its application; otherwise the page saying why not.
fn live_link(
    console: &Shared,
    purpose: Purpose,
    token: &str,
) -> Result<Result<(String, LinkToken, Application), Response>, ConsoleError> {
    let state = &console.setup.cloud.state;
    let key = token_key(token);
    let found = state.get::<LinkToken>(&key)?;
    let Some(link) = found.filter(|l| l.purpose == purpose) else {
        return Ok(Err(render(
            StatusCode::NOT_FOUND,
            &MessagePage {
                title: "Unknown link",
                message:
                    "This link is not one this console sent. Copy the whole link from the mail.",
                signed_in: false,
            },
        )));
    };
    if link.used.is_some() {
        return Ok(Err(dead_link(
            "This link was already used: each link works once.",
        )));
    }
    if now_secs() >= link.expires {
        return Ok(Err(dead_link("This link has expired.")));
    }
    let Some(application) = state.get::<Application>(&link.application)? else {
        return Ok(Err(dead_link("The application of this link is gone.")));
    };
    let wanted = match purpose {
        Purpose::Approve | Purpose::Reject => Status::Pending,
        Purpose::Activate => Status::Approved,
    };
    if application.status != wanted {
        let message = match application.status {
            Status::Pending => "The application waits for the administrator.",
            Status::Approved => "The application was approved already.",
            Status::Rejected => "The application was rejected already.",
            Status::Activated => "The account exists already: sign in.",
        };
        return Ok(Err(dead_link(message)));
    }
    Ok(Ok((key, link, application)))
}

#[derive(Template)]
#[template(path = "decide.html")]
struct DecidePage<'a> {
    csrf: &'a str,
    action: &'a str,
    title: &'a str,
    button: &'a str,
    application: &'a Application,
    /// Activating an account an administrator added: the person chooses a password here.
    choose_password: bool,
    min_length: usize,
    password_error: Option<String>,
}

/// `GET /approve/TOKEN`, `/reject/TOKEN`, `/activate/TOKEN`: what the link will do, with the
/// button that does it.
pub async fn confirm(
    State(console): State<Shared>,
    Path((purpose, token)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ConsoleError> {
    let purpose = purpose_of(&purpose)?;
    let (_, _, application) = match live_link(&console, purpose, &token)? {
        Ok(found) => found,
        Err(page) => return Ok(page),
    };
    decide_page(
        &console,
        req.headers(),
        purpose,
        &token,
        &application,
        StatusCode::OK,
        None,
    )
}

fn decide_page(
    console: &Shared,
    headers: &http::HeaderMap,
    purpose: Purpose,
    token: &str,
    application: &Application,
    status: StatusCode,
    password_error: Option<String>,
) -> Result<Response, ConsoleError> {
    let (csrf, cookie) = console.sessions.pre_token(headers)?;
    let (title, button) = match purpose {
        Purpose::Approve => ("Approve this application?", "Approve"),
        Purpose::Reject => ("Reject this application?", "Reject"),
        Purpose::Activate => ("Activate your account", "Activate my account"),
    };
    let action = format!("/{}/{token}", purpose.path());
    let mut response = render(
        status,
        &DecidePage {
            csrf: &csrf,
            action: &action,
            title,
            button,
            application,
            choose_password: purpose == Purpose::Activate && application.password.is_empty(),
            min_length: MIN_PASSWORD_LENGTH,
            password_error,
        },
    );
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

fn purpose_of(path: &str) -> Result<Purpose, ConsoleError> {
    match path {
        "approve" => Ok(Purpose::Approve),
        "reject" => Ok(Purpose::Reject),
        "activate" => Ok(Purpose::Activate),
        _ => Err(ConsoleError::NotFound),
    }
}

/// `POST /approve/TOKEN`, `/reject/TOKEN`, `/activate/TOKEN`.
pub async fn act(
    State(console): State<Shared>,
    Path((purpose, token)): Path<(String, String)>,
    req: Request,
) -> Result<Response, ConsoleError> {
    let purpose = purpose_of(&purpose)?;
    let headers = req.headers().clone();
    let form = Form::read(req).await?;
    console
        .sessions
        .check_pre_form(&headers, form.get("csrf"))?;
    // An account an administrator added: the person chooses the password now (hashed before
    // the state's lock is taken).
    let mut chosen = None;
    if purpose == Purpose::Activate {
        let (_, _, application) = match live_link(&console, purpose, &token)? {
            Ok(found) => found,
            Err(page) => return Ok(page),
        };
        if application.password.is_empty() {
            let password = form.get("password");
            let refused = |why: String| {
                decide_page(
                    &console,
                    &headers,
                    purpose,
                    &token,
                    &application,
                    StatusCode::BAD_REQUEST,
                    Some(why),
                )
            };
            if password != form.get("password2") {
                return refused("The two passwords differ.".into());
            }
            let (name, password) = (application.name.clone(), password.to_owned());
            match blocking(&console, move || {
                identity::hash_new_password(&name, &password)
            })
            .await?
            {
                Ok(phc) => chosen = Some(phc),
                Err(IdentityError::PasswordPolicy(why)) => return refused(why),
                Err(e) => return Err(e.into()),
            }
        }
    }
    let state = console.setup.cloud.state.clone();
    let guard = state.exclusive();
    let (key, mut link, mut application) = match live_link(&console, purpose, &token)? {
        Ok(found) => found,
        Err(page) => return Ok(page),
    };
    if let Some(phc) = chosen {
        application.password = phc;
    }
    link.used = Some(now_secs());
    let mut batch = Batch::new();
    let (title, message) = match carry_out(&console, &mut batch, &mut application, purpose)? {
        Ok(done) => done,
        Err(page) => return Ok(page),
    };
    batch.put(&key, &link);
    batch.put(&application.id, &application);
    state.commit(batch)?;
    drop(guard);
    console.outbox.wake();
    Ok(render(
        StatusCode::OK,
        &MessagePage {
            title,
            message: &message,
            signed_in: false,
        },
    ))
}

/// Does what `purpose` says to `application` (pending for a decision, approved for
/// activation): its new status, and the mail it sends, in `batch`; the page's title and
/// message, or the page saying why it cannot be done. The caller holds the state's lock,
/// checked the application's status and commits the batch with the application.
pub fn carry_out(
    console: &Shared,
    batch: &mut Batch,
    application: &mut Application,
    purpose: Purpose,
) -> Result<Result<(&'static str, String), Response>, ConsoleError> {
    application.decided = Some(now_secs());
    let done = match purpose {
        Purpose::Approve => {
            if console
                .setup
                .cloud
                .identity
                .account_id(&application.name)?
                .is_some()
            {
                return Ok(Err(dead_link(&format!(
                    "An account named {} exists already: reject this application.",
                    application.name
                ))));
            }
            application.status = Status::Approved;
            let activate = new_link(console, batch, Purpose::Activate, &application.id)?;
            let body = format!(
                "Hello {},\n\nYour application for the account \"{}\" was approved. Activate it \
                 here (the link works once and expires in {} days):\n\n  {activate}\n\n\
                 Then sign in as \"{}\" with the password you chose.\n",
                application.full_name,
                application.name,
                console.setup.link_lifetime.as_secs().div_ceil(86_400),
                application.name,
            );
            Outbox::queue(
                batch,
                &Mail::new(&application.email, "Your account was approved".into(), body),
            );
            (
                "Application approved",
                format!("{} has been sent an activation link.", application.email),
            )
        }
        Purpose::Reject => {
            application.status = Status::Rejected;
            let body = format!(
                "Hello {},\n\nYour application for the account \"{}\" was declined by the \
                 cloud's administrator.\n",
                application.full_name, application.name
            );
            Outbox::queue(
                batch,
                &Mail::new(
                    &application.email,
                    "Your application was declined".into(),
                    body,
                ),
            );
            (
                "Application rejected",
                format!("{} has been told.", application.email),
            )
        }
        Purpose::Activate => {
            let made = console.setup.cloud.identity.create_account_with_login(
                &application.name,
                &application.password,
                &application.email,
            );
            match made {
                Ok(_) => {}
                Err(IdentityError::AccountExists(_)) => {
                    return Ok(Err(dead_link(&format!(
                        "An account named {} was made since your application was approved: \
                         apply again with another name.",
                        application.name
                    ))))
                }
                Err(e) => return Err(e.into()),
            }
            application.status = Status::Activated;
            (
                "Your account is ready",
                format!(
                    "Sign in as {} with the password you chose.",
                    application.name
                ),
            )
        }
    };
    Ok(Ok(done))
}

/// An account an administrator adds (`/admin/users`): recorded as an approved application
/// whose person gets the activation mail and chooses a password when activating. The name
/// follows the sign-up rules; `Err` says what is wrong with the form.
pub fn add_by_admin(
    console: &Shared,
    admin: &str,
    name: &str,
    full_name: &str,
    email: &str,
) -> Result<Result<(), String>, ConsoleError> {
    if let Err(e) = identity::validate_account_name(name) {
        return Ok(Err(e.to_string()));
    }
    if RESERVED.contains(&name) {
        return Ok(Err(format!("{name} is reserved.")));
    }
    if !identity::plausible_email(email) {
        return Ok(Err(format!("{email:?} is not an e-mail address.")));
    }
    let state = &console.setup.cloud.state;
    let _guard = state.exclusive();
    let taken = console.setup.cloud.identity.account_id(name)?.is_some()
        || state
            .scan::<Application>("")?
            .iter()
            .any(|(_, a)| a.name == name && matches!(a.status, Status::Pending | Status::Approved));
    if taken {
        return Ok(Err(format!(
            "An account named {name} exists or is waiting already."
        )));
    }
    let id = hex::encode(random16()?);
    let mut batch = Batch::new();
    let activate = new_link(console, &mut batch, Purpose::Activate, &id)?;
    let full_name = if full_name.is_empty() {
        name
    } else {
        full_name
    };
    let body = format!(
        "Hello {full_name},\n\nAn account named \"{name}\" was made for you on this cloud. \
         Activate it and choose your password here (the link works once and expires in {} \
         days):\n\n  {activate}\n\nThen sign in as \"{name}\".\n",
        console.setup.link_lifetime.as_secs().div_ceil(86_400),
    );
    Outbox::queue(
        &mut batch,
        &Mail::new(email, "An account was made for you".into(), body),
    );
    batch.put(
        &id,
        &Application {
            id: id.clone(),
            name: name.to_owned(),
            full_name: full_name.to_owned(),
            email: email.to_owned(),
            notes: format!("Added by {admin}."),
            password: String::new(),
            status: Status::Approved,
            created: now_secs(),
            decided: Some(now_secs()),
        },
    );
    state.commit(batch)?;
    console.outbox.wake();
    Ok(Ok(()))
}

//! Who is signed in: a session is 32 random bytes in the `__Host-koala` cookie (Secure,
//! HttpOnly, SameSite=Lax, host-only), and the server keeps what it means, in memory under the
//! id's SHA-256 (a memory dump holds no usable cookie). A session ends when its person signs
//! out, after [`IDLE`] without a request, after [`LIFETIME`] in all, and when the console
//! restarts (people sign in again).
//!
//! Every form carries a CSRF token, the HMAC of the session id under a key made at start:
//! another site can make a browser post a form, but cannot read the token. Forms shown before
//! sign-in (the sign-in form itself, so nobody is signed in to an attacker's account unawares)
//! get a `__Host-koala-pre` cookie and the HMAC of it instead. A request whose `Origin` names
//! another site is refused too.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::{header, HeaderMap, HeaderValue};
use identity::{Role, SignedIn};
use rand::rngs::OsRng;
use rand::RngCore;
use ring::{digest, hmac};

use crate::ConsoleError;

/// The session cookie's name (`__Host-`: only ever set over HTTPS, for this host, path `/`).
const SESSION_COOKIE: &str = "__Host-koala";

/// The cookie tying a sign-in form to the browser that fetched it.
const PRE_COOKIE: &str = "__Host-koala-pre";

/// A session unused this long ends.
pub const IDLE: Duration = Duration::from_secs(60 * 60);

/// A session ends this long after sign-in whatever happens (the AWS console's 12 hours).
pub const LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// Sessions kept at most; past it the oldest are dropped (a flood of sign-ins cannot grow the
/// console's memory without bound).
const MAX_SESSIONS: usize = 100_000;

/// A person signed in.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who.
    pub who: SignedIn,
    /// The session's id, to derive its CSRF token.
    id: String,
    started: Instant,
    last_seen: Instant,
}

impl Session {
    /// Whether this person administers the cloud.
    pub fn is_admin(&self) -> bool {
        self.who.role == Role::CloudAdmin
    }
}

/// The sessions of this console and its CSRF key.
pub struct Sessions {
    key: hmac::Key,
    live: Mutex<HashMap<Vec<u8>, Session>>,
}

impl Sessions {
    /// No session yet; a new CSRF key.
    pub fn new() -> Result<Sessions, ConsoleError> {
        Ok(Sessions {
            key: hmac::Key::new(hmac::HMAC_SHA256, &random_bytes()?),
            live: Mutex::default(),
        })
    }

    /// Starts a session for `who`; the `Set-Cookie` value to answer with. Any session the
    /// browser had ends (no fixation).
    pub fn start(&self, who: SignedIn, headers: &HeaderMap) -> Result<HeaderValue, ConsoleError> {
        let id = URL_SAFE_NO_PAD.encode(random_bytes()?);
        let now = Instant::now();
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = cookie(headers, SESSION_COOKIE) {
            live.remove(&hashed(old));
        }
        if live.len() >= MAX_SESSIONS {
            live.retain(|_, s| fresh(s, now));
            if live.len() >= MAX_SESSIONS {
                if let Some(oldest) = live
                    .iter()
                    .min_by_key(|(_, s)| s.last_seen)
                    .map(|(k, _)| k.clone())
                {
                    live.remove(&oldest);
                }
            }
        }
        live.insert(
            hashed(&id),
            Session {
                who,
                id: id.clone(),
                started: now,
                last_seen: now,
            },
        );
        set_cookie(SESSION_COOKIE, &id, true)
    }

    /// The session the request's cookie names, if it is live (its idle time starts again).
    pub fn current(&self, headers: &HeaderMap) -> Option<Session> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let now = Instant::now();
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let key = hashed(id);
        let session = live.get_mut(&key)?;
        if !fresh(session, now) {
            live.remove(&key);
            return None;
        }
        session.last_seen = now;
        Some(session.clone())
    }

    /// Changes what the session knows of its person (a password changed at first run).
    pub fn update(&self, session: &Session, who: SignedIn) {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = live.get_mut(&hashed(&session.id)) {
            s.who = who;
        }
    }

    /// Ends the session; the `Set-Cookie` value that clears the cookie.
    pub fn end(&self, session: &Session) -> HeaderValue {
        let mut live = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        live.remove(&hashed(&session.id));
        HeaderValue::from_static("__Host-koala=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0")
    }

    /// The CSRF token of a signed-in person's forms.
    pub fn csrf_token(&self, session: &Session) -> String {
        self.token("session", &session.id)
    }

    /// Checks a signed-in person's form: its token and where it came from.
    pub fn check_form(
        &self,
        session: &Session,
        headers: &HeaderMap,
        token: &str,
    ) -> Result<(), ConsoleError> {
        same_origin(headers)?;
        self.verify("session", &session.id, token)
    }

    /// The token of a form shown before sign-in, and the `Set-Cookie` value when the browser
    /// had no pre-session cookie yet.
    pub fn pre_token(
        &self,
        headers: &HeaderMap,
    ) -> Result<(String, Option<HeaderValue>), ConsoleError> {
        if let Some(pre) = cookie(headers, PRE_COOKIE) {
            return Ok((self.token("pre", pre), None));
        }
        let pre = URL_SAFE_NO_PAD.encode(random_bytes()?);
        Ok((
            self.token("pre", &pre),
            Some(set_cookie(PRE_COOKIE, &pre, false)?),
        ))
    }

    /// Checks a form shown before sign-in.
    pub fn check_pre_form(&self, headers: &HeaderMap, token: &str) -> Result<(), ConsoleError> {
        same_origin(headers)?;
        let pre = cookie(headers, PRE_COOKIE).ok_or(ConsoleError::Forgery)?;
        self.verify("pre", pre, token)
    }

    fn token(&self, purpose: &str, id: &str) -> String {
        let tag = hmac::sign(&self.key, format!("{purpose}\n{id}").as_bytes());
        URL_SAFE_NO_PAD.encode(tag.as_ref())
    }

    fn verify(&self, purpose: &str, id: &str, token: &str) -> Result<(), ConsoleError> {
        let tag = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| ConsoleError::Forgery)?;
        hmac::verify(&self.key, format!("{purpose}\n{id}").as_bytes(), &tag)
            .map_err(|_| ConsoleError::Forgery)
    }
}

fn fresh(session: &Session, now: Instant) -> bool {
    now.duration_since(session.last_seen) < IDLE && now.duration_since(session.started) < LIFETIME
}

fn hashed(id: &str) -> Vec<u8> {
    digest::digest(&digest::SHA256, id.as_bytes())
        .as_ref()
        .to_vec()
}

fn random_bytes() -> Result<[u8; 32], ConsoleError> {
    let mut bytes = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|_| ConsoleError::Internal("the system random source failed".into()))?;
    Ok(bytes)
}

/// A `Set-Cookie` value; a session cookie lives with the browser (no `Max-Age`), a
/// pre-session one for a day.
fn set_cookie(name: &str, value: &str, session: bool) -> Result<HeaderValue, ConsoleError> {
    let age = if session { "" } else { "; Max-Age=86400" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax{age}"
    ))
    .map_err(|_| ConsoleError::Internal("a cookie did not encode".into()))
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Refuses a form posted from another site: browsers send `Origin` with every POST, and
/// `Sec-Fetch-Site` names a cross-site request outright.
fn same_origin(headers: &HeaderMap) -> Result<(), ConsoleError> {
    let header_str = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if header_str("sec-fetch-site").is_some_and(|site| site == "cross-site") {
        return Err(ConsoleError::Forgery);
    }
    match (header_str("origin"), header_str("host")) {
        (None, _) => Ok(()),
        (Some(origin), Some(host)) if origin.strip_prefix("https://") == Some(host) => Ok(()),
        _ => Err(ConsoleError::Forgery),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn person() -> SignedIn {
        SignedIn {
            account_id: "123456789012".into(),
            account_name: "alice".into(),
            user_name: "admin".into(),
            role: Role::User,
            must_change: false,
            email: None,
        }
    }

    fn with_cookie(set: &HeaderValue) -> HeaderMap {
        let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, pair.parse().unwrap());
        headers.insert("host", "cloud:8443".parse().unwrap());
        headers
    }

    #[test]
    fn a_token_holds_for_its_own_session_only() {
        let sessions = Sessions::new().unwrap();
        let a = with_cookie(&sessions.start(person(), &HeaderMap::new()).unwrap());
        let b = with_cookie(&sessions.start(person(), &HeaderMap::new()).unwrap());
        let (sa, sb) = (sessions.current(&a).unwrap(), sessions.current(&b).unwrap());
        let token_a = sessions.csrf_token(&sa);
        sessions.check_form(&sa, &a, &token_a).unwrap();
        assert!(sessions.check_form(&sb, &b, &token_a).is_err());
        assert!(sessions.check_form(&sa, &a, "").is_err());
        let mut foreign = a.clone();
        foreign.insert("origin", "https://evil.example".parse().unwrap());
        assert!(sessions.check_form(&sa, &foreign, &token_a).is_err());
        let mut same = a.clone();
        same.insert("origin", "https://cloud:8443".parse().unwrap());
        sessions.check_form(&sa, &same, &token_a).unwrap();
    }

    #[test]
    fn an_ended_session_is_gone_and_a_new_one_replaces_the_old() {
        let sessions = Sessions::new().unwrap();
        let a = with_cookie(&sessions.start(person(), &HeaderMap::new()).unwrap());
        let session = sessions.current(&a).unwrap();
        sessions.end(&session);
        assert!(sessions.current(&a).is_none());
        let b = with_cookie(&sessions.start(person(), &HeaderMap::new()).unwrap());
        let _c = sessions.start(person(), &b).unwrap();
        assert!(
            sessions.current(&b).is_none(),
            "sign-in replaces the old session"
        );
    }

    #[test]
    fn a_pre_session_token_needs_its_cookie() {
        let sessions = Sessions::new().unwrap();
        let (token, set) = sessions.pre_token(&HeaderMap::new()).unwrap();
        let headers = with_cookie(&set.unwrap());
        sessions.check_pre_form(&headers, &token).unwrap();
        let (again, none) = sessions.pre_token(&headers).unwrap();
        assert_eq!((again, none), (token.clone(), None));
        assert!(sessions.check_pre_form(&HeaderMap::new(), &token).is_err());
    }
}

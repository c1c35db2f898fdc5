//! Pages: templates compiled in (askama, escaped by default), the static files (compiled in
//! too: the console fetches nothing from anywhere else), forms read from request bodies, and
//! the headers every answer carries.

use askama::Template;
use axum::body::Body;
use axum::extract::{Path, Request};
use axum::response::{IntoResponse, Redirect, Response};
use http::{header, HeaderValue, StatusCode};

use crate::ConsoleError;

/// The largest form the console reads: its forms are a few fields.
const MAX_FORM: usize = 64 * 1024;

/// The style sheet: one file, for phones and desktops alike.
const CONSOLE_CSS: &str = include_str!("../static/console.css");

/// A page with a title and one message (errors, confirmations).
#[derive(Template)]
#[template(path = "message.html")]
pub struct MessagePage<'a> {
    /// The page's title.
    pub title: &'a str,
    /// What happened.
    pub message: &'a str,
    /// Whether to offer sign-out in the header.
    pub signed_in: bool,
}

/// `template` rendered as an HTML answer with `status`.
pub fn render<T: Template>(status: StatusCode, template: &T) -> Response {
    match template.render() {
        Ok(html) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
        Err(e) => {
            tracing::error!("console: a page did not render: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "The page did not render.",
            )
                .into_response()
        }
    }
}

/// A 303 to `to`: after a form, the browser fetches the next page with GET (a reload does not
/// send the form again).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// The fields of an `application/x-www-form-urlencoded` request body.
pub struct Form(Vec<(String, String)>);

impl Form {
    /// Reads the body of `req` (at most [`MAX_FORM`] bytes).
    pub async fn read(req: Request) -> Result<Form, ConsoleError> {
        let body = axum::body::to_bytes(req.into_body(), MAX_FORM)
            .await
            .map_err(|_| ConsoleError::BadRequest("The form is too large.".into()))?;
        Ok(Form(ec2_api::query::parse_form(&body)))
    }

    /// A field's value, empty when absent.
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// `GET /static/FILE`.
pub async fn static_file(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "console.css" => (
            [
                (header::CONTENT_TYPE, "text/css; charset=utf-8"),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            CONSOLE_CSS,
        )
            .into_response(),
        _ => ConsoleError::NotFound.into_response(),
    }
}

/// Any other path.
pub async fn not_found() -> ConsoleError {
    ConsoleError::NotFound
}

/// Adds `Server-Timing: app;dur=MS`, the time the console took to answer (what
/// `koala-bench console` reads; browsers' developer tools show it too).
pub async fn timed(req: Request, next: axum::middleware::Next) -> Response {
    let started = std::time::Instant::now();
    let mut response = next.run(req).await;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Ok(value) = HeaderValue::from_str(&format!("app;dur={ms:.3}")) {
        response.headers_mut().insert("server-timing", value);
    }
    response
}

/// The headers every answer carries: nothing is loaded from elsewhere or framed (clickjacking),
/// no URL leaks to other sites, and no page with a person's data is kept in a cache.
pub async fn with_headers(mut response: Response<Body>) -> Response<Body> {
    let headers = response.headers_mut();
    let fixed = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "same-origin"),
    ];
    for (name, value) in fixed {
        headers.insert(name, HeaderValue::from_static(value));
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

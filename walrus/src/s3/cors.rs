//! CORS: Get/Put/DeleteBucketCors, the answer to a browser's preflight (`OPTIONS`), and the
//! `Access-Control-*` headers on the answers to the cross-origin requests themselves (also
//! when they fail: a page must be able to read why). The first rule that matches decides,
//! as in S3.

use axum::body::Body;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use super::auth::read_small_body;
use super::bucket::{configure, owned};
use super::error::S3Error;
use super::ident::Payload;
use super::xml::{self, MAX_XML_BODY};
use super::{empty_response, xml_response, Ctx};
use crate::names::BucketName;
use crate::store::{CorsRule, Store};

/// The most rules a configuration holds.
const MAX_RULES: usize = 100;
/// The methods a rule may allow.
const METHODS: [&str; 5] = ["GET", "PUT", "HEAD", "POST", "DELETE"];

/// The rules of a `CORSConfiguration` document, checked as S3 checks them: each rule needs
/// an origin and a method, methods are S3's five, origins and headers have at most one `*`.
pub fn parse(body: &[u8]) -> Result<Vec<CorsRule>, S3Error> {
    let root = xml::parse(body)?;
    if root.name != "CORSConfiguration" {
        return Err(S3Error::MalformedXml);
    }
    let texts = |rule: &xml::Element, name: &str| -> Vec<String> {
        rule.children_named(name)
            .map(|e| e.text.trim().to_owned())
            .collect()
    };
    let mut rules = Vec::new();
    for rule in root.children_named("CORSRule") {
        let parsed = CorsRule {
            id: rule.child_text("ID").map(str::to_owned),
            allowed_origins: texts(rule, "AllowedOrigin"),
            allowed_methods: texts(rule, "AllowedMethod"),
            allowed_headers: texts(rule, "AllowedHeader"),
            expose_headers: texts(rule, "ExposeHeader"),
            max_age_seconds: match rule.child_text("MaxAgeSeconds") {
                None => None,
                Some(v) => Some(v.trim().parse().map_err(|_| S3Error::MalformedXml)?),
            },
        };
        if parsed.allowed_origins.is_empty() || parsed.allowed_methods.is_empty() {
            return Err(S3Error::MalformedXml);
        }
        if let Some(m) = parsed
            .allowed_methods
            .iter()
            .find(|m| !METHODS.contains(&m.as_str()))
        {
            return Err(S3Error::InvalidRequest(format!(
                "Found unsupported HTTP method in CORS config. Unsupported method is {m}"
            )));
        }
        for (what, values) in [
            ("AllowedOrigin", &parsed.allowed_origins),
            ("AllowedHeader", &parsed.allowed_headers),
        ] {
            if let Some(v) = values.iter().find(|v| v.matches('*').count() > 1) {
                return Err(S3Error::InvalidRequest(format!(
                    "{what} \"{v}\" can not have more than one wildcard."
                )));
            }
        }
        rules.push(parsed);
    }
    if rules.is_empty() || rules.len() > MAX_RULES {
        return Err(S3Error::MalformedXml);
    }
    Ok(rules)
}

/// A `CORSConfiguration` document.
pub fn render(rules: &[CorsRule]) -> bytes::Bytes {
    let mut w = xml::document();
    w.open_with("CORSConfiguration", &xml::S3_ROOT);
    for rule in rules {
        w.open("CORSRule");
        if let Some(id) = &rule.id {
            w.elem("ID", id);
        }
        for (name, values) in [
            ("AllowedHeader", &rule.allowed_headers),
            ("AllowedMethod", &rule.allowed_methods),
            ("AllowedOrigin", &rule.allowed_origins),
            ("ExposeHeader", &rule.expose_headers),
        ] {
            for v in values {
                w.elem(name, v);
            }
        }
        if let Some(age) = rule.max_age_seconds {
            w.elem("MaxAgeSeconds", &age.to_string());
        }
        w.close("CORSRule");
    }
    w.close("CORSConfiguration");
    w.finish().into()
}

/// Whether `value` matches `pattern`, which may hold one `*` standing for any run of
/// characters; `case` says whether letters must match in case (origins) or not (headers).
fn wildcard_match(pattern: &str, value: &str, case: bool) -> bool {
    let (pattern, value) = if case {
        (pattern.to_owned(), value.to_owned())
    } else {
        (pattern.to_ascii_lowercase(), value.to_ascii_lowercase())
    };
    match pattern.split_once('*') {
        None => pattern == value,
        Some((head, tail)) => {
            value.len() >= head.len() + tail.len()
                && value.starts_with(head)
                && value.ends_with(tail)
        }
    }
}

/// What a rule grants one request: the origin to allow (`*` when the rule allows any) and
/// the method it was asked for.
struct Grant<'a> {
    rule: &'a CorsRule,
    allow_origin: String,
    method: &'a str,
}

/// The first rule allowing `origin` to send `method` with `headers` (the preflight's
/// `Access-Control-Request-Headers`; none for an actual request).
fn first_match<'a>(
    rules: &'a [CorsRule],
    origin: &str,
    method: &'a str,
    headers: &[&str],
) -> Option<Grant<'a>> {
    rules.iter().find_map(|rule| {
        let matched = rule
            .allowed_origins
            .iter()
            .find(|o| wildcard_match(o, origin, true))?;
        if !rule.allowed_methods.iter().any(|m| m == method) {
            return None;
        }
        let headers_allowed = headers.iter().all(|h| {
            rule.allowed_headers
                .iter()
                .any(|a| wildcard_match(a, h, false))
        });
        if !headers_allowed {
            return None;
        }
        Some(Grant {
            rule,
            allow_origin: if matched == "*" {
                "*".to_owned()
            } else {
                origin.to_owned()
            },
            method,
        })
    })
}

/// Sets the `Access-Control-*` headers a grant gives.
fn add_headers(h: &mut HeaderMap, grant: &Grant, request_headers: Option<&str>) {
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    set("access-control-allow-origin", &grant.allow_origin);
    // The method asked about, as S3 and RGW answer (not every method of the rule).
    set("access-control-allow-methods", grant.method);
    if grant.allow_origin != "*" {
        set("access-control-allow-credentials", "true");
    }
    if let Some(requested) = request_headers.filter(|r| !r.trim().is_empty()) {
        set("access-control-allow-headers", requested);
    }
    if !grant.rule.expose_headers.is_empty() {
        set(
            "access-control-expose-headers",
            &grant.rule.expose_headers.join(", "),
        );
    }
    if let Some(age) = grant.rule.max_age_seconds {
        set("access-control-max-age", &age.to_string());
    }
    set(
        "vary",
        "Origin, Access-Control-Request-Headers, Access-Control-Request-Method",
    );
}

/// What an actual (not preflight) cross-origin request asks of CORS: its `Origin`, and the
/// method to match, its `Access-Control-Request-Method` when it carries one (RGW's rule,
/// which clients of the conformance suite rely on), else its own.
pub struct Asked {
    /// The request's `Origin`.
    pub origin: HeaderValue,
    /// The method a rule must allow.
    pub method: String,
}

/// Adds the CORS headers of `bucket`'s first rule matching what the request `asked` to its
/// answer, whatever its status. A bucket without CORS, or no rule matching, adds nothing.
pub fn decorate(store: &Store, bucket: &str, asked: &Asked, resp: &mut Response<Body>) {
    let (Some(bucket), Ok(origin)) = (BucketName::parse(bucket), asked.origin.to_str()) else {
        return;
    };
    let Ok(meta) = store.bucket(&bucket) else {
        return;
    };
    let Some(rules) = &meta.cors else {
        return;
    };
    if let Some(grant) = first_match(rules, origin, &asked.method, &[]) {
        add_headers(resp.headers_mut(), &grant, None);
    }
}

/// The preflight (`OPTIONS` on a bucket or an object, unsigned as browsers send it): 200
/// with what the first matching rule allows, 403 when none does or the bucket has no CORS.
pub fn preflight(ctx: &Ctx, bucket: &BucketName) -> Result<Response<Body>, S3Error> {
    let origin = ctx.header("origin").ok_or_else(|| {
        S3Error::BadRequest("Insufficient information. Origin request header needed.".into())
    })?;
    let method = ctx
        .header("access-control-request-method")
        .filter(|m| METHODS.contains(m))
        .ok_or_else(|| {
            S3Error::BadRequest(format!(
                "Invalid Access-Control-Request-Method: {}",
                ctx.header("access-control-request-method")
                    .unwrap_or("null")
            ))
        })?;
    let meta = ctx.store().bucket(bucket)?;
    let requested = ctx.header("access-control-request-headers");
    let headers: Vec<&str> = requested
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    let rules = meta.cors.as_deref().unwrap_or_default();
    let grant = first_match(rules, origin, method, &headers).ok_or(S3Error::CorsForbidden)?;
    let mut resp = empty_response(StatusCode::OK);
    add_headers(resp.headers_mut(), &grant, requested);
    Ok(resp)
}

/// GetBucketCors (the owner's): NoSuchCORSConfiguration until set.
pub fn get_bucket_cors(ctx: &Ctx, bucket: &BucketName) -> Result<Response<Body>, S3Error> {
    let rules = owned(ctx, bucket, "s3:GetBucketCORS")?
        .cors
        .ok_or(S3Error::NoSuchCorsConfiguration)?;
    Ok(xml_response(StatusCode::OK, render(&rules)))
}

/// PutBucketCors (the owner's): replaces the whole configuration.
pub async fn put_bucket_cors(
    ctx: &Ctx,
    bucket: &BucketName,
    body: Body,
    payload: Payload,
) -> Result<Response<Body>, S3Error> {
    owned(ctx, bucket, "s3:PutBucketCORS")?;
    let body = read_small_body(body, payload, &ctx.headers, MAX_XML_BODY).await?;
    let rules = parse(&body)?;
    configure(ctx, bucket, StatusCode::OK, |meta| meta.cors = Some(rules))
}

/// DeleteBucketCors (the owner's): 204, also when there was none.
pub fn delete_bucket_cors(ctx: &Ctx, bucket: &BucketName) -> Result<Response<Body>, S3Error> {
    owned(ctx, bucket, "s3:PutBucketCORS")?;
    configure(ctx, bucket, StatusCode::NO_CONTENT, |meta| meta.cors = None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(origins: &[&str], methods: &[&str]) -> CorsRule {
        CorsRule {
            id: None,
            allowed_origins: origins.iter().map(|s| (*s).to_owned()).collect(),
            allowed_methods: methods.iter().map(|s| (*s).to_owned()).collect(),
            allowed_headers: Vec::new(),
            expose_headers: Vec::new(),
            max_age_seconds: None,
        }
    }

    #[test]
    fn origins_match_with_one_wildcard() {
        let rules = [
            rule(&["*suffix"], &["GET"]),
            rule(&["start*end"], &["GET"]),
            rule(&["prefix*"], &["GET"]),
            rule(&["*.put"], &["PUT"]),
        ];
        let allowed = |origin: &str, method: &str| {
            first_match(&rules, origin, method, &[]).map(|g| g.allow_origin)
        };
        for ok in [
            "foo.suffix",
            "startend",
            "start1end",
            "start12end",
            "prefix",
            "prefix.suffix",
        ] {
            assert_eq!(allowed(ok, "GET").as_deref(), Some(ok), "{ok}");
        }
        for no in [
            "foo.bar",
            "foo.suffix.get",
            "0start12end",
            "bla.prefix",
            "foo.put",
        ] {
            assert_eq!(allowed(no, "GET"), None, "{no}");
        }
        assert_eq!(allowed("foo.put", "PUT").as_deref(), Some("foo.put"));
        assert_eq!(
            first_match(&[rule(&["*"], &["GET"])], "example.origin", "GET", &[])
                .map(|g| g.allow_origin)
                .as_deref(),
            Some("*")
        );
    }

    #[test]
    fn preflight_headers_must_each_be_allowed() {
        let mut r = rule(&["*"], &["GET"]);
        r.expose_headers = vec!["x-amz-meta-header1".into()];
        assert!(first_match(&[r.clone()], "o", "GET", &["x-amz-meta-header2"]).is_none());
        r.allowed_headers = vec!["x-amz-meta-*".into()];
        assert!(first_match(&[r.clone()], "o", "GET", &["X-Amz-Meta-Header2"]).is_some());
        assert!(first_match(&[r], "o", "GET", &["x-amz-meta-a", "content-type"]).is_none());
    }

    #[test]
    fn configurations_round_trip_and_are_checked() {
        let body = br#"<CORSConfiguration><CORSRule><ID>r1</ID><AllowedOrigin>*.example.com</AllowedOrigin><AllowedMethod>GET</AllowedMethod><AllowedMethod>PUT</AllowedMethod><AllowedHeader>*</AllowedHeader><ExposeHeader>ETag</ExposeHeader><MaxAgeSeconds>3000</MaxAgeSeconds></CORSRule></CORSConfiguration>"#;
        let rules = parse(body).expect("parse");
        assert_eq!(rules[0].max_age_seconds, Some(3000));
        assert_eq!(parse(&render(&rules)).expect("again"), rules);
        let bad_method = br#"<CORSConfiguration><CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>PATCH</AllowedMethod></CORSRule></CORSConfiguration>"#;
        assert!(matches!(parse(bad_method), Err(S3Error::InvalidRequest(_))));
        let two_wildcards = br#"<CORSConfiguration><CORSRule><AllowedOrigin>*.*</AllowedOrigin><AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>"#;
        assert!(matches!(
            parse(two_wildcards),
            Err(S3Error::InvalidRequest(_))
        ));
        let no_origin = br#"<CORSConfiguration><CORSRule><AllowedMethod>GET</AllowedMethod></CORSRule></CORSConfiguration>"#;
        assert!(matches!(parse(no_origin), Err(S3Error::MalformedXml)));
        assert!(matches!(
            parse(b"<CORSConfiguration/>"),
            Err(S3Error::MalformedXml)
        ));
    }
}

//! GetObject and HeadObject: conditional requests (AWS precedence), byte ranges,
//! `partNumber`, `response-*` overrides and stored checksums.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use bytes::BytesMut;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use super::access::{authorize, AclCheck, Want};
use super::error::S3Error;
use super::put::checksum_header;
use super::router::{ObjectPath, PartNumber};
use super::{empty_response, etag_value, versioning, Ctx};
use crate::acl::Permission;
use crate::store::ObjectMeta;

/// Bodies up to this size are read whole and sent with the headers in one write.
const SMALL_BODY: u64 = 256 * 1024;

/// Seconds since the epoch (HTTP dates have second precision).
fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn parse_date(v: Option<&str>) -> Option<u64> {
    v.and_then(|s| httpdate::parse_http_date(s.trim()).ok())
        .map(secs)
}

/// Whether an `If-Match` / `If-None-Match` list names the ETag (`*` names any).
pub fn etag_matches(list: &str, etag: &str) -> bool {
    list.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || {
            let c = candidate.strip_prefix("W/").unwrap_or(candidate);
            c.trim_matches('"') == etag
        }
    })
}

/// Evaluates the `If-*` headers (or their `x-amz-copy-source-if-*` twins when `prefix` is
/// given) with AWS' precedence: a matching If-Match overrides a failing If-Unmodified-Since;
/// a failing If-None-Match overrides a passing If-Modified-Since. `copy` turns 304s into 412s
/// as CopyObject does.
pub fn check_conditions(
    headers: &HeaderMap,
    prefix: &str,
    etag: &str,
    last_modified: SystemTime,
    copy: bool,
) -> Result<(), S3Error> {
    let get = |name: &str| {
        headers
            .get(format!("{prefix}{name}").as_str())
            .and_then(|v| v.to_str().ok())
    };
    let modified = secs(last_modified);
    match get("if-match") {
        Some(list) => {
            if !etag_matches(list, etag) {
                return Err(S3Error::PreconditionFailed);
            }
        }
        None => {
            if let Some(t) = parse_date(get("if-unmodified-since")) {
                if modified > t {
                    return Err(S3Error::PreconditionFailed);
                }
            }
        }
    }
    let not_modified = if copy {
        S3Error::PreconditionFailed
    } else {
        S3Error::NotModified
    };
    match get("if-none-match") {
        Some(list) => {
            if etag_matches(list, etag) {
                return Err(not_modified);
            }
        }
        None => {
            if let Some(t) = parse_date(get("if-modified-since")) {
                if modified <= t {
                    return Err(not_modified);
                }
            }
        }
    }
    Ok(())
}

/// Parses a single-range `Range` header against an object of `size` bytes: `Ok(None)` when
/// the header is absent, malformed or names several ranges (AWS then sends the whole object),
/// the inclusive `(first, last)` otherwise, and InvalidRange when nothing is satisfiable.
pub fn parse_range(value: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, S3Error> {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let num = |s: &str| s.parse::<u64>().ok();
    let range = if a.is_empty() {
        let Some(n) = num(b) else { return Ok(None) };
        if n == 0 || size == 0 {
            return Err(S3Error::InvalidRange { size });
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let Some(first) = num(a) else { return Ok(None) };
        let last = if b.is_empty() {
            u64::MAX
        } else {
            match num(b) {
                Some(l) if l >= first => l,
                _ => return Ok(None),
            }
        };
        if first >= size {
            return Err(S3Error::InvalidRange { size });
        }
        (first, last.min(size - 1))
    };
    Ok(Some(range))
}

fn hv(s: &str) -> Option<HeaderValue> {
    HeaderValue::from_bytes(s.as_bytes()).ok()
}

/// The headers describing an object (everything GET and HEAD share but the length), and
/// its count of parts when a part is asked for.
fn object_response_headers(
    ctx: &Ctx,
    meta: &ObjectMeta,
    part: Option<PartNumber>,
    h: &mut HeaderMap,
) {
    // A part of a multipart object answers with the part's own ETag.
    let etag = part
        .and_then(|n| meta.part_etags.get(n.get() as usize - 1))
        .unwrap_or(&meta.etag);
    h.insert(http::header::ETAG, etag_value(etag));
    if let Some(v) = hv(&httpdate::fmt_http_date(meta.last_modified)) {
        h.insert(http::header::LAST_MODIFIED, v);
    }
    h.insert(
        http::header::ACCEPT_RANGES,
        HeaderValue::from_static("bytes"),
    );
    super::tagging::add_count_header(h, &meta.tags);
    super::lock::add_headers(h, &meta.lock);
    let oh = &meta.headers;
    let ct = oh.content_type.as_deref().unwrap_or("binary/octet-stream");
    let pairs: [(HeaderName, Option<&str>); 6] = [
        (http::header::CONTENT_TYPE, Some(ct)),
        (
            http::header::CONTENT_ENCODING,
            oh.content_encoding.as_deref(),
        ),
        (
            http::header::CONTENT_DISPOSITION,
            oh.content_disposition.as_deref(),
        ),
        (
            http::header::CONTENT_LANGUAGE,
            oh.content_language.as_deref(),
        ),
        (http::header::CACHE_CONTROL, oh.cache_control.as_deref()),
        (http::header::EXPIRES, oh.expires.as_deref()),
    ];
    for (name, value) in pairs {
        if let Some(v) = value.and_then(hv) {
            h.insert(name, v);
        }
    }
    for (name, value) in &oh.user_metadata {
        if let (Ok(n), Some(v)) = (
            HeaderName::from_bytes(format!("x-amz-meta-{name}").as_bytes()),
            hv(value),
        ) {
            h.append(n, v);
        }
    }
    if ctx
        .header("x-amz-checksum-mode")
        .is_some_and(|m| m.eq_ignore_ascii_case("enabled"))
    {
        if let Some((alg, value)) = &meta.checksum {
            if let Some(v) = hv(value) {
                h.insert(checksum_header(*alg), v);
            }
            // A composite (multipart) checksum ends in `-N`; any other covers the object.
            let kind = if value.contains('-') {
                "COMPOSITE"
            } else {
                "FULL_OBJECT"
            };
            h.insert("x-amz-checksum-type", HeaderValue::from_static(kind));
        }
    }
    if !meta.part_sizes.is_empty() && part.is_some() {
        h.insert(
            "x-amz-mp-parts-count",
            HeaderValue::from(meta.part_sizes.len()),
        );
    }
}

/// `response-*` query overrides: signed requests only (AWS refuses them anonymously).
fn apply_overrides(ctx: &Ctx, h: &mut HeaderMap) -> Result<(), S3Error> {
    let overrides: [(&str, HeaderName); 6] = [
        ("response-content-type", http::header::CONTENT_TYPE),
        ("response-content-language", http::header::CONTENT_LANGUAGE),
        ("response-expires", http::header::EXPIRES),
        ("response-cache-control", http::header::CACHE_CONTROL),
        (
            "response-content-disposition",
            http::header::CONTENT_DISPOSITION,
        ),
        ("response-content-encoding", http::header::CONTENT_ENCODING),
    ];
    for (param, name) in overrides {
        if let Some(value) = ctx.query(param) {
            if ctx.principal.is_none() {
                return Err(S3Error::InvalidRequest(
                    "Request specific response headers cannot be used for anonymous GET requests."
                        .into(),
                ));
            }
            let v = hv(value)
                .ok_or_else(|| S3Error::InvalidArgument(format!("Invalid value for {param}.")))?;
            h.insert(name, v);
        }
    }
    Ok(())
}

/// The byte range of part `n` of an object; single-part objects have one part.
fn part_range(meta: &ObjectMeta, n: PartNumber) -> Result<(u64, u64), S3Error> {
    let n = n.get() as usize;
    let sizes: Vec<u64> = if meta.part_sizes.is_empty() {
        vec![meta.size]
    } else {
        meta.part_sizes.clone()
    };
    if n > sizes.len() {
        // RGW's answer, which the conformance suite expects (AWS says 416 InvalidPartNumber).
        return Err(S3Error::InvalidPart);
    }
    let start: u64 = sizes[..n - 1].iter().sum();
    let len = sizes[n - 1];
    if len == 0 {
        return Ok((0, 0));
    }
    Ok((start, start + len - 1))
}

/// GetObject (or HeadObject when `head`): the whole object, a range, or `part_number`.
pub fn get_object(
    ctx: &Ctx,
    object: &ObjectPath,
    part_number: Option<PartNumber>,
    head: bool,
) -> Result<Response<Body>, S3Error> {
    let ObjectPath { bucket, key, .. } = object;
    let bmeta = ctx.store().bucket(bucket)?;
    let meta = match versioning::addressed(ctx, object) {
        Ok(m) => m,
        // Without the right to list the bucket a caller may not learn which keys exist.
        Err(
            S3Error::NoCurrentVersion { .. }
            | S3Error::NoSuchVersion
            | S3Error::DeleteMarkerAsked { .. },
        ) if authorize(
            ctx,
            &bmeta,
            Want::bucket("s3:ListBucket"),
            AclCheck::Permission(&bmeta.acl, Permission::Read),
        )
        .is_err() =>
        {
            return Err(S3Error::access_denied())
        }
        Err(e) => return Err(e),
    };
    authorize(
        ctx,
        &bmeta,
        Want::addressed(("s3:GetObject", "s3:GetObjectVersion"), object, &meta),
        AclCheck::Permission(&meta.acl, Permission::Read),
    )?;
    if let Err(e) = check_conditions(&ctx.headers, "", &meta.etag, meta.last_modified, false) {
        if let S3Error::NotModified = e {
            // A 304 still names the current version (RFC 9110 §15.4.5).
            let mut resp = empty_response(StatusCode::NOT_MODIFIED);
            resp.headers_mut()
                .insert(http::header::ETAG, etag_value(&meta.etag));
            versioning::add_version_header(resp.headers_mut(), &bmeta, &meta);
            if let Some(v) = hv(&httpdate::fmt_http_date(meta.last_modified)) {
                resp.headers_mut().insert(http::header::LAST_MODIFIED, v);
            }
            return Ok(resp);
        }
        return Err(e);
    }

    let range = match part_number {
        Some(n) => {
            if ctx.headers.contains_key(http::header::RANGE) {
                return Err(S3Error::InvalidRequest(
                    "Cannot specify both Range header and partNumber query parameter".into(),
                ));
            }
            Some(part_range(&meta, n)?)
        }
        None => parse_range(ctx.header("range"), meta.size)?,
    };

    let mut resp = empty_response(StatusCode::OK);
    let h = resp.headers_mut();
    object_response_headers(ctx, &meta, part_number, h);
    versioning::add_version_header(h, &bmeta, &meta);
    apply_overrides(ctx, h)?;
    let (offset, len) = match range {
        Some((first, last)) if meta.size > 0 => {
            if let Some(v) = hv(&format!("bytes {first}-{last}/{}", meta.size)) {
                h.insert(http::header::CONTENT_RANGE, v);
            }
            // The stored checksum covers the whole object: clients that validate it (botocore
            // with x-amz-checksum-mode) would reject a range, so AWS omits it, and so do we.
            for (_, name, _) in super::put::CHECKSUMS {
                h.remove(name);
            }
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
            (first, last - first + 1)
        }
        _ => (0, meta.size),
    };
    resp.headers_mut()
        .insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
    if head || len == 0 {
        return Ok(resp);
    }
    let stream = ctx.store().read(bucket, key, &meta, offset, len)?;
    *resp.body_mut() = if len <= SMALL_BODY {
        Body::from_stream(futures_util::stream::once(collect(stream, len)))
    } else {
        Body::from_stream(stream)
    };
    Ok(resp)
}

/// Gathers a small body into one buffer so headers and body leave in one write.
async fn collect(
    mut stream: crate::store::BodyStream,
    len: u64,
) -> Result<bytes::Bytes, std::io::Error> {
    let mut buf = BytesMut::with_capacity(len as usize);
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk?);
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                v.parse().expect("value"),
            );
        }
        h
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10).expect("ok"), None);
        assert_eq!(
            parse_range(Some("bytes=0-4"), 10).expect("ok"),
            Some((0, 4))
        );
        assert_eq!(parse_range(Some("bytes=5-"), 10).expect("ok"), Some((5, 9)));
        assert_eq!(parse_range(Some("bytes=-3"), 10).expect("ok"), Some((7, 9)));
        assert_eq!(
            parse_range(Some("bytes=-30"), 10).expect("ok"),
            Some((0, 9))
        );
        assert_eq!(
            parse_range(Some("bytes=2-100"), 10).expect("ok"),
            Some((2, 9))
        );
        assert_eq!(parse_range(Some("bytes=0-1,4-5"), 10).expect("ok"), None);
        assert_eq!(parse_range(Some("bytes=5-2"), 10).expect("ok"), None);
        assert_eq!(parse_range(Some("items=0-1"), 10).expect("ok"), None);
        assert_eq!(parse_range(Some("bytes=x-1"), 10).expect("ok"), None);
        assert!(matches!(
            parse_range(Some("bytes=10-"), 10),
            Err(S3Error::InvalidRange { size: 10 })
        ));
        assert!(matches!(
            parse_range(Some("bytes=-0"), 10),
            Err(S3Error::InvalidRange { .. })
        ));
        assert!(matches!(
            parse_range(Some("bytes=0-"), 0),
            Err(S3Error::InvalidRange { size: 0 })
        ));
    }

    #[test]
    fn conditionals_follow_aws_precedence() {
        let etag = "abc";
        let lm = t(1_000_000);
        let before = httpdate::fmt_http_date(t(999_000));
        let after = httpdate::fmt_http_date(t(1_001_000));
        let ok = |pairs: &[(&str, &str)]| check_conditions(&headers(pairs), "", etag, lm, false);
        assert!(ok(&[]).is_ok());
        assert!(ok(&[("if-match", "\"abc\"")]).is_ok());
        assert!(ok(&[("if-match", "*")]).is_ok());
        assert!(matches!(
            ok(&[("if-match", "\"x\"")]),
            Err(S3Error::PreconditionFailed)
        ));
        // If-Match true wins over a failing If-Unmodified-Since.
        assert!(ok(&[("if-match", "\"abc\""), ("if-unmodified-since", &before)]).is_ok());
        assert!(matches!(
            ok(&[("if-unmodified-since", &before)]),
            Err(S3Error::PreconditionFailed)
        ));
        assert!(ok(&[("if-unmodified-since", &after)]).is_ok());
        assert!(matches!(
            ok(&[("if-none-match", "\"abc\"")]),
            Err(S3Error::NotModified)
        ));
        assert!(ok(&[("if-none-match", "\"x\"")]).is_ok());
        // If-None-Match false (ETag differs) wins over If-Modified-Since saying "not modified".
        assert!(ok(&[("if-none-match", "\"x\""), ("if-modified-since", &after)]).is_ok());
        assert!(matches!(
            ok(&[("if-modified-since", &after)]),
            Err(S3Error::NotModified)
        ));
        assert!(ok(&[("if-modified-since", &before)]).is_ok());
        assert!(ok(&[("if-modified-since", "garbage")]).is_ok());
        // Copy-source conditions fail with 412 only.
        let h = headers(&[("x-amz-copy-source-if-none-match", "\"abc\"")]);
        assert!(matches!(
            check_conditions(&h, "x-amz-copy-source-", etag, lm, true),
            Err(S3Error::PreconditionFailed)
        ));
    }

    #[test]
    fn parts() {
        let meta = ObjectMeta {
            size: 12,
            etag: "e-2".into(),
            last_modified: t(0),
            headers: Default::default(),
            checksum: None,
            acl: crate::acl::CannedAcl::Private.to_acl("1", "1"),
            part_sizes: vec![8, 4],
            part_etags: vec!["a".into(), "b".into()],
            part_checksums: Vec::new(),
            tags: Vec::new(),
            version_id: None,
            delete_marker: false,
            lock: Default::default(),
        };
        let part = |n| PartNumber::parse(n).expect("part number");
        assert_eq!(part_range(&meta, part("1")).expect("ok"), (0, 7));
        assert_eq!(part_range(&meta, part("2")).expect("ok"), (8, 11));
        assert!(matches!(
            part_range(&meta, part("3")),
            Err(S3Error::InvalidPart)
        ));
    }
}

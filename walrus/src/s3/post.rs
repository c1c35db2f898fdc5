//! POST Object: uploads from a browser's HTML form (`multipart/form-data` to the bucket's
//! URL). The form carries the key, the object's headers and ACL, and, unless the bucket lets
//! anyone write, a policy document (base64 JSON: an expiration and conditions every form
//! field must meet) signed with SigV2 (`AWSAccessKeyId`, `signature`: the HMAC-SHA1 of the
//! policy) or SigV4 (`x-amz-credential`, `x-amz-signature`: the policy signed with the
//! scope's signing key). The file field comes last; fields after it are ignored, and its
//! bytes stream to the store as a PUT's do.

use std::time::SystemTime;

use axum::body::Body;
use base64::Engine;
use bytes::{Buf, BytesMut};
use futures_util::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use identity::{Authenticated, SigningScope, V2Algorithm};
use serde_json::Value;

use super::access::{authorize_as, new_object_acl, AclCheck, Want};
use super::auth::{incoming, MAX_OBJECT_SIZE};
use super::error::{body_error, S3Error};
use super::ident::{self, Payload};
use super::put::{object_headers, CHECKSUMS};
use super::xml;
use super::{empty_response, etag_value, xml_response, Ctx};
use crate::acl::{CannedAcl, Permission};
use crate::names::{BucketName, ObjectKey, MAX_KEY_LEN};
use crate::store::{BodyStream, DigestRequest, NewObject};

/// The most bytes of form fields before the file (the policy is the longest of them).
const MAX_FIELDS: usize = 64 * 1024;
/// What each field costs against [`MAX_FIELDS`] beyond its name and value (its framing).
const PART_OVERHEAD: usize = 64;
/// The most bytes of one part's headers.
const MAX_PART_HEAD: usize = 8 * 1024;
/// Room for the form's framing around the file, beyond the largest object.
const MAX_FRAMING: u64 = 1024 * 1024;

/// Fields that need no condition in the policy (AWS' list), besides `x-ignore-*` ones.
const UNCONDITIONED: [&str; 5] = [
    "awsaccesskeyid",
    "signature",
    "policy",
    "x-amz-signature",
    "file",
];

/// The form's fields before the file, names lowercased (S3 matches them without case),
/// values as sent.
struct Fields(Vec<(String, String)>);

impl Fields {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A `multipart/form-data` body read part by part: the fields are read whole, the file is
/// streamed.
struct Form {
    stream: BodyStream,
    buf: BytesMut,
    /// `\r\n--BOUNDARY`: what ends every part.
    delimiter: Vec<u8>,
}

/// One part's name and, for a file, the file name the browser sent.
struct PartHead {
    name: String,
    filename: Option<String>,
}

fn malformed() -> S3Error {
    S3Error::MalformedPostRequest
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl Form {
    /// The form in `stream`, whose boundary the Content-Type names.
    fn new(stream: BodyStream, content_type: &str) -> Result<Form, S3Error> {
        let (kind, params) = content_type.split_once(';').unwrap_or((content_type, ""));
        if !kind.trim().eq_ignore_ascii_case("multipart/form-data") {
            return Err(malformed());
        }
        let boundary = params
            .split(';')
            .filter_map(|p| p.trim().split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
            .map(|(_, v)| v.trim().trim_matches('"').to_owned())
            .filter(|b| !b.is_empty() && b.len() <= 70)
            .ok_or_else(malformed)?;
        // The first boundary has no CRLF before it: pretend it had one.
        let mut buf = BytesMut::new();
        buf.extend_from_slice(b"\r\n");
        Ok(Form {
            stream,
            buf,
            delimiter: format!("\r\n--{boundary}").into_bytes(),
        })
    }

    /// Reads more of the body; false at its end.
    async fn fill(&mut self) -> Result<bool, S3Error> {
        match self.stream.next().await {
            Some(chunk) => {
                self.buf.extend_from_slice(&chunk.map_err(body_error)?);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Reads until `needle` is in the buffer (at most `limit` bytes before it); its offset.
    /// Each byte is searched once (a body sent a byte at a time costs no more), and the
    /// needle must start within `limit` bytes.
    async fn until(&mut self, needle: &[u8], limit: usize) -> Result<usize, S3Error> {
        let mut from = 0;
        loop {
            if let Some(at) = find(&self.buf[from..], needle).map(|i| from + i) {
                return if at > limit { Err(malformed()) } else { Ok(at) };
            }
            // The needle may straddle what is here and what comes next.
            from = self.buf.len().saturating_sub(needle.len() - 1);
            if from > limit || !self.fill().await? {
                return Err(malformed());
            }
        }
    }

    /// Skips to the next part and reads its headers; None after the closing boundary.
    async fn next_part(&mut self) -> Result<Option<PartHead>, S3Error> {
        let delimiter = self.delimiter.clone();
        let at = self.until(&delimiter, MAX_FIELDS).await?;
        self.buf.advance(at + delimiter.len());
        while self.buf.len() < 2 {
            if !self.fill().await? {
                return Err(malformed());
            }
        }
        if self.buf.starts_with(b"--") {
            return Ok(None);
        }
        let end = self.until(b"\r\n\r\n", MAX_PART_HEAD).await?;
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.advance(end + 4);
        let disposition = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-disposition"))
            .map(|(_, v)| v.to_owned())
            .ok_or_else(malformed)?;
        let param = |name: &str| {
            disposition
                .split(';')
                .filter_map(|p| p.trim().split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
                .map(|(_, v)| v.trim().trim_matches('"').to_owned())
        };
        Ok(Some(PartHead {
            name: param("name").ok_or_else(malformed)?.to_ascii_lowercase(),
            filename: param("filename"),
        }))
    }

    /// The whole value of the current part (a field); `budget` is what is left of
    /// [`MAX_FIELDS`]. The delimiter after it stays in the buffer.
    async fn value(&mut self, budget: usize) -> Result<String, S3Error> {
        let delimiter = self.delimiter.clone();
        let at = self
            .until(&delimiter, budget)
            .await
            .map_err(|_| S3Error::InvalidArgument("The form's fields are too large.".into()))?;
        Ok(String::from_utf8_lossy(&self.buf[..at]).into_owned())
    }

    /// The current part's bytes (the file), streamed, at most `max` of them (EntityTooLarge
    /// past it); the stream ends at the delimiter, and fails if the body ends before it.
    fn file(self, max: u64) -> BodyStream {
        let state = (self, 0u64, false);
        Box::pin(futures_util::stream::unfold(
            state,
            move |(mut form, sent, done)| async move {
                if done {
                    return None;
                }
                let io = |e: S3Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
                loop {
                    let keep = form.delimiter.len();
                    let (chunk, finished) = match find(&form.buf, &form.delimiter) {
                        Some(at) => (form.buf.split_to(at).freeze(), true),
                        None if form.buf.len() > keep => {
                            let n = form.buf.len() - keep;
                            (form.buf.split_to(n).freeze(), false)
                        }
                        None => match form.fill().await {
                            Ok(true) => continue,
                            Ok(false) => {
                                return Some((Err(io(S3Error::IncompleteBody)), (form, sent, true)))
                            }
                            Err(e) => return Some((Err(io(e)), (form, sent, true))),
                        },
                    };
                    let sent = sent + chunk.len() as u64;
                    if sent > max {
                        return Some((Err(io(S3Error::EntityTooLarge)), (form, sent, true)));
                    }
                    if chunk.is_empty() && finished {
                        return None;
                    }
                    return Some((Ok(chunk), (form, sent, finished)));
                }
            },
        ))
    }
}

/// What a policy allows: the form fields' conditions and the file's size.
struct Policy {
    /// `(field, operator, value)`: `eq` or `starts-with`, field names lowercased.
    conditions: Vec<(String, String, String)>,
    /// `content-length-range`, when given.
    length: Option<(u64, u64)>,
}

fn invalid_policy(why: &str) -> S3Error {
    S3Error::InvalidPolicyDocument(format!("Invalid Policy: {why}"))
}

fn policy_failed(why: String) -> S3Error {
    S3Error::AccessDenied(format!("Invalid according to Policy: {why}"))
}

/// Reads a policy document (base64 JSON), refusing it once expired at `now`.
fn parse_policy(encoded: &str, now: SystemTime) -> Result<Policy, S3Error> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| invalid_policy("Invalid 'POST' policy document: not base64."))?;
    let doc: Value = serde_json::from_slice(&raw).map_err(|_| invalid_policy("Invalid JSON."))?;
    let expiration = doc
        .get("expiration")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid_policy("Policy missing expiration."))?;
    // ISO 8601 in UTC as AWS writes it (`2026-12-05T12:00:00Z`, milliseconds allowed).
    let iso = expiration.as_bytes().get(10) == Some(&b'T') && expiration.ends_with('Z');
    let expires =
        time::OffsetDateTime::parse(expiration, &time::format_description::well_known::Rfc3339)
            .ok()
            .filter(|_| iso)
            .ok_or_else(|| invalid_policy("Invalid 'expiration' value."))?;
    if SystemTime::from(expires) < now {
        return Err(policy_failed("Policy expired.".into()));
    }
    let list = doc
        .get("conditions")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid_policy("Policy missing conditions."))?;
    let mut policy = Policy {
        conditions: Vec::new(),
        length: None,
    };
    for condition in list {
        match condition {
            Value::Object(map) => {
                let mut entries = map.iter();
                let (Some((field, value)), None) = (entries.next(), entries.next()) else {
                    return Err(invalid_policy("Invalid condition: one field per object."));
                };
                let value = value
                    .as_str()
                    .ok_or_else(|| invalid_policy("Condition values must be strings."))?;
                policy
                    .conditions
                    .push((field.to_ascii_lowercase(), "eq".into(), value.to_owned()));
            }
            Value::Array(items) => {
                let op = items
                    .first()
                    .and_then(Value::as_str)
                    .map(str::to_ascii_lowercase)
                    .ok_or_else(|| invalid_policy("Invalid condition."))?;
                if op == "content-length-range" {
                    let bound = |i: usize| {
                        items
                            .get(i)
                            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
                            .ok_or_else(|| invalid_policy("Invalid content-length-range."))
                    };
                    if items.len() != 3 {
                        return Err(invalid_policy("Invalid content-length-range."));
                    }
                    policy.length = Some((bound(1)?, bound(2)?));
                    continue;
                }
                let (Some(field), Some(value), 3) = (
                    items.get(1).and_then(Value::as_str),
                    items.get(2).and_then(Value::as_str),
                    items.len(),
                ) else {
                    return Err(invalid_policy("Invalid condition."));
                };
                if op != "eq" && op != "starts-with" {
                    return Err(invalid_policy(&format!("Unknown condition {op}.")));
                }
                let field = field
                    .strip_prefix('$')
                    .ok_or_else(|| invalid_policy("Condition fields start with $."))?;
                policy
                    .conditions
                    .push((field.to_ascii_lowercase(), op, value.to_owned()));
            }
            _ => return Err(invalid_policy("Invalid condition.")),
        }
    }
    Ok(policy)
}

/// AccessDenied unless every condition holds for `fields` (and `bucket`) and every field is
/// named by a condition.
fn check_policy(policy: &Policy, fields: &Fields, bucket: &str) -> Result<(), S3Error> {
    let value_of = |name: &str| match name {
        "bucket" => Some(bucket),
        _ => fields.get(name),
    };
    for (field, op, want) in &policy.conditions {
        let got = value_of(field).unwrap_or_default();
        let holds = match op.as_str() {
            "eq" => got == want,
            _ if field == "content-type" => got
                .split(',')
                .all(|t| t.trim_start().starts_with(want.as_str())),
            _ => got.starts_with(want.as_str()),
        };
        if !holds {
            return Err(policy_failed(format!(
                "Policy Condition failed: [\"{op}\", \"${field}\", \"{want}\"]"
            )));
        }
    }
    // The bucket is a field of every form, given or not: the policy must name it.
    let named = |name: &str| policy.conditions.iter().any(|(f, _, _)| f == name);
    if !named("bucket") {
        return Err(policy_failed("Policy missing condition: bucket".into()));
    }
    for (name, _) in &fields.0 {
        // A checksum widens nothing a policy grants: it can only refuse the upload.
        let free = UNCONDITIONED.contains(&name.as_str())
            || name.starts_with("x-ignore-")
            || name.starts_with("x-amz-checksum-");
        if !free && !named(name) {
            return Err(policy_failed(format!("Extra input fields: {name}")));
        }
    }
    Ok(())
}

/// Who signed the form, checked against the key store; Anonymous for a form without keys.
async fn signer(ctx: &Ctx, fields: &Fields) -> Result<Option<identity::Principal>, S3Error> {
    let Some(policy) = fields.get("policy") else {
        if fields.get("awsaccesskeyid").is_some() || fields.get("x-amz-credential").is_some() {
            return Err(S3Error::InvalidArgument(
                "Bucket POST must contain a field named 'policy'.".into(),
            ));
        }
        return Ok(None);
    };
    let missing = |name: &str| {
        S3Error::InvalidArgument(format!("Bucket POST must contain a field named '{name}'."))
    };
    let policy = policy.to_owned();
    let auth = if let Some(credential) = fields.get("x-amz-credential") {
        let signature = fields
            .get("x-amz-signature")
            .ok_or_else(|| missing("x-amz-signature"))?;
        if fields.get("x-amz-algorithm") != Some("AWS4-HMAC-SHA256") {
            return Err(S3Error::InvalidArgument(
                "Only AWS4-HMAC-SHA256 is supported for x-amz-algorithm.".into(),
            ));
        }
        let parts: Vec<&str> = credential.split('/').collect();
        let [akid, date, region, "s3", "aws4_request"] = parts[..] else {
            return Err(S3Error::InvalidArgument(
                "The x-amz-credential field is malformed.".into(),
            ));
        };
        let scope = SigningScope {
            date: date.to_owned(),
            region: region.to_owned(),
            service: "s3".to_owned(),
        };
        let akid = akid.to_owned();
        let signature =
            hex::decode(signature.trim()).map_err(|_| S3Error::SignatureDoesNotMatch)?;
        ident::verify_with(ctx.shared.directory.as_ref(), |keys| {
            let (principal, key) = keys
                .signing_key(&akid, &scope)
                .ok_or(identity::AuthError::InvalidAccessKeyId)?;
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
            ring::hmac::verify(&key, policy.as_bytes(), &signature)
                .map_err(|_| identity::AuthError::SignatureDoesNotMatch)?;
            Ok(Authenticated::Signed {
                principal,
                payload: Payload::Unverified,
            })
        })
        .await?
    } else {
        let akid = fields
            .get("awsaccesskeyid")
            .ok_or_else(|| missing("AWSAccessKeyId"))?;
        let signature = fields
            .get("signature")
            .ok_or_else(|| missing("signature"))?;
        let signature = base64::engine::general_purpose::STANDARD
            .decode(signature.trim())
            .map_err(|_| S3Error::SignatureDoesNotMatch)?;
        let akid = akid.to_owned();
        ident::verify_with(ctx.shared.directory.as_ref(), |keys| {
            match keys.check_v2(&akid, V2Algorithm::HmacSha1, &policy, &signature) {
                None => Err(identity::AuthError::InvalidAccessKeyId),
                Some((_, false)) => Err(identity::AuthError::SignatureDoesNotMatch),
                Some((principal, true)) => Ok(Authenticated::Signed {
                    principal,
                    payload: Payload::Unverified,
                }),
            }
        })
        .await?
    };
    match auth {
        // The cloud's components never write through S3.
        Authenticated::Signed { principal, .. } if principal.component().is_none() => {
            Ok(Some(principal))
        }
        _ => Err(S3Error::access_denied()),
    }
}

/// The headers an object made from the form gets: Content-Type and the other content
/// headers, and `x-amz-meta-*`, from fields of those names.
fn form_headers(fields: &Fields) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in &fields.0 {
        let content = matches!(
            name.as_str(),
            "content-type"
                | "content-encoding"
                | "content-disposition"
                | "content-language"
                | "cache-control"
                | "expires"
        );
        if content || name.starts_with("x-amz-meta-") {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.append(n, v);
            }
        }
    }
    headers
}

/// POST Object.
pub async fn post_object(
    ctx: &Ctx,
    bucket: &BucketName,
    body: Body,
) -> Result<Response<Body>, S3Error> {
    let bmeta = ctx.store().bucket(bucket)?;
    let content_type = ctx.header("content-type").unwrap_or_default().to_owned();
    let stream = incoming(
        body,
        Payload::Unverified,
        &ctx.headers,
        MAX_OBJECT_SIZE + MAX_FRAMING,
        false,
    )?
    .stream;
    let mut form = Form::new(stream, &content_type)?;

    // The fields, up to the file.
    let mut fields = Fields(Vec::new());
    let mut used = 0;
    let filename = loop {
        let Some(part) = form.next_part().await? else {
            return Err(S3Error::InvalidArgument(
                "POST requires exactly one file upload per request.".into(),
            ));
        };
        if part.name == "file" {
            break part.filename.unwrap_or_default();
        }
        // A field counts its name and framing too, so that no count of empty fields is free;
        // a field given twice could meet the policy with one value and be stored with both.
        used += part.name.len() + PART_OVERHEAD;
        if fields.get(&part.name).is_some() {
            return Err(S3Error::InvalidArgument(format!(
                "The form field {} is given more than once.",
                part.name
            )));
        }
        let value = form.value(MAX_FIELDS.saturating_sub(used)).await?;
        used += value.len();
        fields.0.push((part.name, value));
    };

    // `${filename}` in the key is the file's name, before the policy judges the key.
    for (name, value) in fields.0.iter_mut() {
        if name == "key" {
            *value = value.replace("${filename}", &filename);
        }
    }
    let principal = signer(ctx, &fields).await?;
    let policy = match fields.get("policy") {
        Some(p) => Some(parse_policy(p, SystemTime::now())?),
        None => None,
    };
    if let Some(policy) = &policy {
        check_policy(policy, &fields, bucket.as_str())?;
    }
    let key_field = fields.get("key").ok_or_else(|| {
        S3Error::InvalidArgument("Bucket POST must contain a field named 'key'.".into())
    })?;
    if key_field.len() > MAX_KEY_LEN {
        return Err(S3Error::KeyTooLong);
    }
    let key = ObjectKey::parse(key_field)
        .ok_or_else(|| S3Error::InvalidArgument("The key field is not a valid key.".into()))?;
    authorize_as(
        ctx,
        principal.as_ref(),
        &bmeta,
        Want::object("s3:PutObject", &key, None),
        AclCheck::Permission(&bmeta.acl, Permission::Write),
    )?;
    let owner = principal
        .as_ref()
        .map(|p| p.account_id.clone())
        .unwrap_or_else(|| bmeta.acl.owner.clone());
    let acl = match fields.get("acl") {
        None => CannedAcl::Private.to_acl(&owner, &bmeta.acl.owner),
        Some(v) => CannedAcl::parse(v.trim())
            .map(|c| c.to_acl(&owner, &bmeta.acl.owner))
            .ok_or_else(|| S3Error::InvalidArgument(format!("Invalid canned ACL: {v}")))?,
    };
    let acl = new_object_acl(&bmeta, acl, fields.get("acl"))?;
    let headers = object_headers(&form_headers(&fields))?;
    let tags = match fields.get("tagging") {
        None => Vec::new(),
        Some(doc) => {
            super::tagging::from_document(doc.as_bytes(), super::tagging::MAX_OBJECT_TAGS)?
        }
    };

    let (min, max) = policy
        .as_ref()
        .and_then(|p| p.length)
        .unwrap_or((0, MAX_OBJECT_SIZE));
    // A checksum field (`x-amz-checksum-sha256`, ...) is checked against the file.
    let claimed = CHECKSUMS
        .iter()
        .find_map(|(alg, name, _)| fields.get(name).map(|v| (*alg, v.trim().to_owned())));
    let staged = ctx
        .store()
        .stage(
            form.file(max.min(MAX_OBJECT_SIZE)),
            None,
            DigestRequest {
                sha256: false,
                checksum: claimed.as_ref().map(|(alg, _)| *alg),
            },
        )
        .await?;
    if staged.size < min {
        return Err(S3Error::EntityTooSmall);
    }
    let checksum = match (&claimed, &staged.digests.checksum) {
        (Some((alg, given)), Some((_, raw))) => {
            let computed = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, raw);
            if *given != computed {
                return Err(S3Error::BadDigest(format!(
                    "The {} you specified did not match the calculated checksum.",
                    super::put::checksum_name(*alg)
                )));
            }
            Some((*alg, computed))
        }
        _ => None,
    };
    let quotas = ctx.quotas().await;
    let object = NewObject {
        headers,
        checksum,
        acl,
        tags,
        condition: Default::default(),
        lock: super::lock::requested(
            ctx,
            &form_headers(&fields),
            super::lock::Writer {
                principal: principal.as_ref(),
                bucket: &bmeta,
                key: &key,
            },
        )?,
    };
    let meta = ctx
        .store()
        .commit_object(bucket, &key, staged, object, &quotas)
        .await?;
    let mut resp = answer(&fields, bucket, &key, &meta.etag)?;
    super::versioning::add_written_version(resp.headers_mut(), &meta);
    Ok(resp)
}

/// The answer the form asked for: a redirect (`success_action_redirect`), 200, 201 with a
/// `PostResponse` document, or 204 (`success_action_status`, anything else).
fn answer(
    fields: &Fields,
    bucket: &BucketName,
    key: &ObjectKey,
    etag: &str,
) -> Result<Response<Body>, S3Error> {
    let encode = |s: &str| xml::url_encode(s).replace('/', "%2F");
    let redirect = fields
        .get("success_action_redirect")
        .or_else(|| fields.get("redirect"))
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"));
    let mut resp = if let Some(url) = redirect {
        let sep = if url.contains('?') { '&' } else { '?' };
        let location = format!(
            "{url}{sep}bucket={}&key={}&etag={}",
            encode(bucket.as_str()),
            encode(key.as_str()),
            encode(&format!("\"{etag}\""))
        );
        let mut resp = empty_response(StatusCode::SEE_OTHER);
        if let Ok(v) = HeaderValue::from_str(&location) {
            resp.headers_mut().insert(http::header::LOCATION, v);
        }
        resp
    } else {
        match fields.get("success_action_status") {
            Some("200") => empty_response(StatusCode::OK),
            Some("201") => {
                let mut w = xml::document();
                w.open("PostResponse");
                w.elem(
                    "Location",
                    &format!("/{}/{}", bucket.as_str(), key.as_str()),
                );
                w.elem("Bucket", bucket.as_str());
                w.elem("Key", key.as_str());
                w.elem("ETag", &format!("\"{etag}\""));
                w.close("PostResponse");
                xml_response(StatusCode::CREATED, w.finish())
            }
            _ => empty_response(StatusCode::NO_CONTENT),
        }
    };
    resp.headers_mut()
        .insert(http::header::ETAG, etag_value(etag));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn encode(doc: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(doc)
    }

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        Fields(
            pairs
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    #[test]
    fn policies_are_read_and_checked_as_s3_does() {
        let now = SystemTime::now();
        let doc = r#"{"expiration": "2099-01-01T00:00:00Z", "conditions": [
            {"bUcKeT": "b"}, ["StArTs-WiTh", "$KeY", "foo"], {"acl": "private"},
            ["starts-with", "$Content-Type", "text/"], ["content-length-range", 0, 1024]]}"#;
        let policy = parse_policy(&encode(doc), now).expect("policy");
        assert_eq!(policy.length, Some((0, 1024)));
        let ok = fields(&[
            ("key", "foo.txt"),
            ("acl", "private"),
            ("content-type", "text/plain"),
            ("policy", "p"),
            ("awsaccesskeyid", "a"),
            ("signature", "s"),
            ("x-ignore-me", "1"),
        ]);
        check_policy(&policy, &ok, "b").expect("holds");
        assert!(matches!(
            check_policy(&policy, &ok, "other"),
            Err(S3Error::AccessDenied(_))
        ));
        let extra = fields(&[
            ("key", "foo"),
            ("acl", "private"),
            ("content-type", "text/plain"),
            ("x-amz-meta-foo", "bar"),
        ]);
        assert!(matches!(
            check_policy(&policy, &extra, "b"),
            Err(S3Error::AccessDenied(_))
        ));
        let wrong_key = fields(&[
            ("key", "bar"),
            ("acl", "private"),
            ("content-type", "text/x"),
        ]);
        assert!(check_policy(&policy, &wrong_key, "b").is_err());
    }

    #[test]
    fn bad_policies_are_invalid_and_old_ones_expired() {
        let now = SystemTime::now();
        for doc in [
            r#"{"conditions": []}"#,
            r#"{"EXPIRATION": "2099-01-01T00:00:00Z", "conditions": []}"#,
            r#"{"expiration": "2099-01-01 00:00:00+00:00", "conditions": []}"#,
            r#"{"expiration": "2099-01-01T00:00:00Z"}"#,
            r#"{"expiration": "2099-01-01T00:00:00Z", "CONDITIONS": []}"#,
            r#"{"expiration": "2099-01-01T00:00:00Z", "conditions": [{}]}"#,
            r#"{"expiration": "2099-01-01T00:00:00Z", "conditions": [["content-length-range", 0]]}"#,
            r#"{"expiration": "2099-01-01T00:00:00Z", "conditions": [["content-length-range", -1, 0]]}"#,
            "not json",
        ] {
            assert!(
                matches!(
                    parse_policy(&encode(doc), now),
                    Err(S3Error::InvalidPolicyDocument(_))
                ),
                "{doc}"
            );
        }
        let old = r#"{"expiration": "2000-01-01T00:00:00.000Z", "conditions": []}"#;
        assert!(matches!(
            parse_policy(&encode(old), now),
            Err(S3Error::AccessDenied(_))
        ));
    }

    #[tokio::test]
    async fn forms_are_read_field_by_field_and_the_file_streamed() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"kEy\"\r\n\r\nfoo.txt\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n\
                    Content-Type: text/plain\r\n\r\nline1\r\nline2\r\n--XyZ--\r\n";
        // Split into small chunks so the delimiter straddles them.
        let chunks: Vec<Result<Bytes, std::io::Error>> = body
            .as_bytes()
            .chunks(3)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let stream: BodyStream = Box::pin(futures_util::stream::iter(chunks));
        let mut form = Form::new(stream, "multipart/form-data; boundary=XyZ").expect("form");
        let part = form.next_part().await.expect("part").expect("some");
        assert_eq!(part.name, "key");
        assert_eq!(form.value(MAX_FIELDS).await.expect("value"), "foo.txt");
        let file = form.next_part().await.expect("part").expect("some");
        assert_eq!(
            (file.name.as_str(), file.filename.as_deref()),
            ("file", Some("a.txt"))
        );
        let mut got = Vec::new();
        let mut stream = form.file(1024);
        while let Some(chunk) = stream.next().await {
            got.extend_from_slice(&chunk.expect("chunk"));
        }
        assert_eq!(got, b"line1\r\nline2");
    }
}

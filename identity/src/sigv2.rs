//! AWS Signature Version 2, still what euca2ools 3.4 uses for S3 (`Authorization: AWS
//! AKID:sig`, HMAC-SHA1) and for `euca-install-image`'s RegisterImage (Query API, parameters
//! `SignatureVersion=2`, HMAC-SHA256), plus S3's query-string form (`AWSAccessKeyId`,
//! `Expires`, `Signature`).

use std::collections::BTreeMap;
use std::time::SystemTime;

use base64::Engine;

use crate::canon::{
    find_param, fold_spaces, header_str, parse_http_date, parse_iso8601, unix_seconds, uri_encode,
    within_skew, Param,
};
use crate::{AuthError, Authenticated, CredentialSource, Payload, RequestParts, V2Algorithm};

/// The query parameters S3's SigV2 resource includes ("sub-resources"), with their values;
/// everything else in the query (`max-keys`, `prefix`...) is not signed.
const SUB_RESOURCES: &[&str] = &[
    "accelerate",
    "acl",
    "analytics",
    "cors",
    "delete",
    "inventory",
    "lifecycle",
    "location",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "partNumber",
    "policy",
    "replication",
    "requestPayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "select",
    "select-type",
    "tagging",
    "torrent",
    "uploadId",
    "uploads",
    "versionId",
    "versioning",
    "versions",
    "website",
];

/// Verifies `Authorization: AWS AKID:signature` (`rest` is what follows `AWS `).
pub(crate) fn verify_s3_header(
    req: &RequestParts,
    rest: &str,
    v2_resource: &str,
    query: &[Param],
    creds: &dyn CredentialSource,
    now: SystemTime,
) -> Result<Authenticated, AuthError> {
    let (akid, signature) = rest.trim().split_once(':').ok_or_else(|| {
        AuthError::AuthorizationHeaderMalformed("expected 'AWS AccessKeyId:Signature'".into())
    })?;
    if akid.is_empty() || signature.is_empty() {
        return Err(AuthError::AuthorizationHeaderMalformed(
            "expected 'AWS AccessKeyId:Signature'".into(),
        ));
    }
    // With x-amz-date present, the Date line of the string to sign is empty.
    let (date_line, when) = match header_str(req.headers, "x-amz-date") {
        Some(v) => (
            String::new(),
            parse_http_date(v).ok_or(AuthError::MissingDate)?,
        ),
        None => {
            let v = header_str(req.headers, "date").ok_or(AuthError::MissingDate)?;
            (
                raw_header(req, "date"),
                parse_http_date(v).ok_or(AuthError::MissingDate)?,
            )
        }
    };
    let sts = s3_string_to_sign(req, &date_line, v2_resource, query);
    let (principal, matches) = check(creds, akid, V2Algorithm::HmacSha1, &sts, signature)?;
    if !within_skew(when, now) {
        return Err(AuthError::RequestTimeTooSkewed);
    }
    if !matches {
        return Err(AuthError::SignatureDoesNotMatch);
    }
    Ok(Authenticated::Signed {
        principal,
        payload: Payload::Unverified,
    })
}

/// Verifies S3's query-string authentication (`AWSAccessKeyId`, `Expires`, `Signature`).
pub(crate) fn verify_s3_query(
    req: &RequestParts,
    v2_resource: &str,
    query: &[Param],
    creds: &dyn CredentialSource,
    now: SystemTime,
) -> Result<Authenticated, AuthError> {
    let missing = || {
        AuthError::AuthorizationQueryParametersError(
            "Query-string authentication requires the Signature, Expires and AWSAccessKeyId parameters".into(),
        )
    };
    let akid = find_param(query, "AWSAccessKeyId")
        .ok_or_else(missing)?
        .value_str();
    let signature = signature_param(query).ok_or_else(missing)?;
    let expires_text = find_param(query, "Expires")
        .ok_or_else(missing)?
        .value_str();
    let expires = unix_seconds(&expires_text).ok_or_else(|| {
        AuthError::AuthorizationQueryParametersError(format!(
            "Expires '{expires_text}' is not a Unix time in seconds"
        ))
    })?;
    let sts = s3_string_to_sign(req, &expires_text, v2_resource, query);
    let (principal, matches) = check(creds, &akid, V2Algorithm::HmacSha1, &sts, &signature)?;
    if now > expires {
        return Err(AuthError::Expired);
    }
    if !matches {
        return Err(AuthError::SignatureDoesNotMatch);
    }
    Ok(Authenticated::Signed {
        principal,
        payload: Payload::Unverified,
    })
}

/// A header's value for the SigV2 string to sign: all its values, trimmed, joined by `,`.
fn raw_header(req: &RequestParts, name: &str) -> String {
    let values: Vec<String> = req
        .headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned())
        .collect();
    values.join(",")
}

/// `METHOD\nContent-MD5\nContent-Type\nDate\n` + canonical `x-amz-*` headers + resource.
fn s3_string_to_sign(
    req: &RequestParts,
    date_line: &str,
    v2_resource: &str,
    query: &[Param],
) -> String {
    let mut sts = format!(
        "{}\n{}\n{}\n{date_line}\n",
        req.method,
        raw_header(req, "content-md5"),
        raw_header(req, "content-type"),
    );
    let mut amz: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in req.headers {
        let name = name.as_str();
        if name.starts_with("x-amz-") {
            amz.entry(name.to_owned())
                .or_default()
                .push(fold_spaces(&String::from_utf8_lossy(value.as_bytes())));
        }
    }
    for (name, values) in &amz {
        sts.push_str(name);
        sts.push(':');
        sts.push_str(&values.join(","));
        sts.push('\n');
    }
    sts.push_str(if v2_resource.is_empty() {
        "/"
    } else {
        v2_resource
    });
    let mut subs: Vec<(&[u8], &Param)> = query
        .iter()
        .filter(|p| {
            SUB_RESOURCES
                .iter()
                .any(|s| s.as_bytes() == p.key.as_slice())
        })
        .map(|p| (p.key.as_slice(), p))
        .collect();
    subs.sort_by(|a, b| a.0.cmp(b.0).then_with(|| a.1.value.cmp(&b.1.value)));
    for (i, (_, p)) in subs.iter().enumerate() {
        sts.push(if i == 0 { '?' } else { '&' });
        sts.push_str(&String::from_utf8_lossy(&p.key));
        if p.has_eq {
            sts.push('=');
            sts.push_str(&String::from_utf8_lossy(&p.value));
        }
    }
    sts
}

/// The `Signature` parameter; a `+` of the base64 that the client left unescaped may have
/// been decoded as a space.
fn signature_param(params: &[Param]) -> Option<String> {
    find_param(params, "Signature").map(|p| p.value_str().replace(' ', "+"))
}

/// Asks the key store whether `signature` (base64) is the key's HMAC of `sts`: the key's owner
/// and the verdict, or `InvalidAccessKeyId`. A signature that is not base64 cannot match.
fn check(
    creds: &dyn CredentialSource,
    akid: &str,
    algorithm: V2Algorithm,
    sts: &str,
    signature: &str,
) -> Result<(crate::Principal, bool), AuthError> {
    let provided = base64::engine::general_purpose::STANDARD
        .decode(signature.trim())
        .unwrap_or_default();
    creds
        .check_v2(akid, algorithm, sts, &provided)
        .ok_or(AuthError::InvalidAccessKeyId)
}

/// Verifies a SigV2 Query API request; `params` are the query's and the form body's.
pub(crate) fn verify_query_v2(
    req: &RequestParts,
    params: &[Param],
    creds: &dyn CredentialSource,
    now: SystemTime,
) -> Result<Authenticated, AuthError> {
    let required = |name: &str| {
        find_param(params, name)
            .map(Param::value_str)
            .ok_or_else(|| {
                AuthError::InvalidArgument(format!("The request must contain the parameter {name}"))
            })
    };
    let akid = required("AWSAccessKeyId")?;
    let signature = signature_param(params).ok_or_else(|| {
        AuthError::InvalidArgument("The request must contain the parameter Signature".into())
    })?;
    let version = required("SignatureVersion")?;
    if version != "2" {
        return Err(AuthError::InvalidArgument(format!(
            "SignatureVersion '{version}' is not supported; use 2 or Signature Version 4"
        )));
    }
    let algorithm = match find_param(params, "SignatureMethod")
        .map(Param::value_str)
        .as_deref()
    {
        None | Some("HmacSHA256") => V2Algorithm::HmacSha256,
        Some("HmacSHA1") => V2Algorithm::HmacSha1,
        Some(other) => {
            return Err(AuthError::InvalidArgument(format!(
                "SignatureMethod '{other}' is not supported; use HmacSHA256 or HmacSHA1"
            )))
        }
    };
    let timestamp = find_param(params, "Timestamp").map(Param::value_str);
    let expires = find_param(params, "Expires").map(Param::value_str);
    let verdicts = signed_candidates(req, params)
        .iter()
        .map(|sts| check(creds, &akid, algorithm, sts, &signature))
        .collect::<Result<Vec<_>, AuthError>>()?;
    match (timestamp, expires) {
        (Some(_), Some(_)) => {
            return Err(AuthError::InvalidArgument(
                "Timestamp and Expires cannot both be given".into(),
            ))
        }
        (Some(ts), None) => {
            let when = parse_iso8601(&ts).ok_or_else(|| {
                AuthError::InvalidArgument(format!("Timestamp '{ts}' is not an ISO 8601 time"))
            })?;
            if !within_skew(when, now) {
                return Err(AuthError::RequestTimeTooSkewed);
            }
        }
        (None, Some(ex)) => {
            let until = parse_iso8601(&ex).ok_or_else(|| {
                AuthError::InvalidArgument(format!("Expires '{ex}' is not an ISO 8601 time"))
            })?;
            if now > until {
                return Err(AuthError::Expired);
            }
        }
        (None, None) => {
            return Err(AuthError::InvalidArgument(
                "The request must contain the parameter Timestamp or Expires".into(),
            ))
        }
    }

    match verdicts.into_iter().find(|(_, matches)| *matches) {
        Some((principal, _)) => Ok(Authenticated::Signed {
            principal,
            payload: Payload::Unverified,
        }),
        None => Err(AuthError::SignatureDoesNotMatch),
    }
}

/// The strings a Query API client may have signed: one per spelling of the host line.
fn signed_candidates(req: &RequestParts, params: &[Param]) -> Vec<String> {
    let mut pairs: Vec<(&[u8], &[u8])> = params
        .iter()
        .filter(|p| p.key != b"Signature")
        .map(|p| (p.key.as_slice(), p.value.as_slice()))
        .collect();
    pairs.sort();
    let canonical: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", uri_encode(k, false), uri_encode(v, false)))
        .collect();
    let canonical = canonical.join("&");
    let path = if req.raw_path.is_empty() {
        "/"
    } else {
        req.raw_path
    };
    host_candidates(header_str(req.headers, "host").unwrap_or_default())
        .into_iter()
        .map(|host| format!("{}\n{host}\n{path}\n{canonical}", req.method))
        .collect()
}

/// The host line as the client may have written it: as sent (lowercased), and with or without
/// a default port, which HTTP libraries drop from `Host` but signers may keep.
fn host_candidates(host: &str) -> Vec<String> {
    let host = host.to_ascii_lowercase();
    let mut out = vec![host.clone()];
    let has_port = host
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && !host.ends_with(']');
    if has_port {
        for suffix in [":80", ":443"] {
            if let Some(bare) = host.strip_suffix(suffix) {
                out.push(bare.to_owned());
            }
        }
    } else {
        out.push(format!("{host}:80"));
        out.push(format!("{host}:443"));
    }
    out
}

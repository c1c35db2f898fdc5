//! A small signed client for Koala's admin commands: SigV4 by the `aws-sigv4` crate (AWS's
//! own signer, independent of our verifier), form-encoded Query API calls over plain HTTP.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

/// Failures of a client call, phrased for a person at a terminal.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A required environment variable is missing (the eucarc was not sourced).
    #[error("{0} is not set: source the eucarc of an account first (`. DATA_DIR/credentials/admin/eucarc`)")]
    MissingEnv(&'static str),
    /// The request could not be signed.
    #[error("could not sign the request: {0}")]
    Signing(String),
    /// The service could not be reached.
    #[error("could not reach {url}: {reason}")]
    Transport {
        /// The URL called.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The service answered with an AWS error.
    #[error("error ({code}): {message}")]
    Service {
        /// The AWS error code.
        code: String,
        /// The error message.
        message: String,
    },
}

/// The caller's credentials and region, from the environment a eucarc sets.
pub struct EnvCredentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret key.
    pub secret_access_key: String,
    /// The region to sign for (any name is accepted by Koala).
    pub region: String,
}

impl EnvCredentials {
    /// Reads `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (or euca2ools 1.x's `EC2_ACCESS_KEY`/
    /// `EC2_SECRET_KEY`) and `AWS_DEFAULT_REGION`.
    pub fn from_env() -> Result<EnvCredentials, ClientError> {
        let var = |names: &[&'static str]| names.iter().find_map(|n| std::env::var(n).ok());
        Ok(EnvCredentials {
            access_key_id: var(&["AWS_ACCESS_KEY_ID", "EC2_ACCESS_KEY"])
                .ok_or(ClientError::MissingEnv("AWS_ACCESS_KEY_ID"))?,
            secret_access_key: var(&["AWS_SECRET_ACCESS_KEY", "EC2_SECRET_KEY"])
                .ok_or(ClientError::MissingEnv("AWS_SECRET_ACCESS_KEY"))?,
            region: var(&["AWS_DEFAULT_REGION"]).unwrap_or_else(|| "eucalyptus".to_owned()),
        })
    }
}

/// Posts a Query API action (`Action=...` plus `params`) to `url`, signed with SigV4 for
/// `service`, and returns the response body, or the service's error.
pub fn query_call(
    url: &str,
    service: &str,
    version: &str,
    action: &str,
    params: &[(&str, &str)],
    creds: &EnvCredentials,
) -> Result<String, ClientError> {
    let mut form = format!("Action={}&Version={}", encode(action), encode(version));
    for (name, value) in params {
        form.push('&');
        form.push_str(&encode(name));
        form.push('=');
        form.push_str(&encode(value));
    }
    let content_type = "application/x-www-form-urlencoded; charset=utf-8";
    let signed = sign_headers(
        "POST",
        url,
        &[("content-type", content_type)],
        form.as_bytes(),
        service,
        SigningSettings::default(),
        creds,
    )?;
    let mut request = ureq::post(url).set("content-type", content_type);
    for (name, value) in &signed {
        request = request.set(name, value);
    }
    match request.send_bytes(form.as_bytes()) {
        Ok(response) => response.into_string().map_err(|e| ClientError::Transport {
            url: url.to_owned(),
            reason: e.to_string(),
        }),
        Err(ureq::Error::Status(status, response)) => {
            let body = response.into_string().unwrap_or_default();
            Err(ClientError::Service {
                code: xml_text(&body, "Code").unwrap_or_else(|| format!("HTTP {status}")),
                message: xml_text(&body, "Message").unwrap_or(body),
            })
        }
        Err(err) => Err(ClientError::Transport {
            url: url.to_owned(),
            reason: err.to_string(),
        }),
    }
}

/// Sends an empty-bodied S3 request (`GET`, `HEAD`, `DELETE`) to `url`, SigV4-signed as S3
/// clients sign (`x-amz-content-sha256`, the path as given), and returns the HTTP status and
/// body whatever the status: callers check refusals as well as successes.
pub fn s3_request(
    method: &str,
    url: &str,
    creds: &EnvCredentials,
) -> Result<(u16, String), ClientError> {
    let mut settings = SigningSettings::default();
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    let signed = sign_headers(method, url, &[], b"", "s3", settings, creds)?;
    let mut request = ureq::request(method, url);
    for (name, value) in &signed {
        request = request.set(name, value);
    }
    let transport = |reason: String| ClientError::Transport {
        url: url.to_owned(),
        reason,
    };
    let response = match request.call() {
        Ok(response) | Err(ureq::Error::Status(_, response)) => response,
        Err(err) => return Err(transport(err.to_string())),
    };
    let status = response.status();
    let body = response
        .into_string()
        .map_err(|e| transport(e.to_string()))?;
    Ok((status, body))
}

/// The account service's URL from the environment a eucarc sets: `EUARE_URL` (or
/// `AWS_IAM_URL`), else the Walrus URL's base with `/services/Euare`.
pub fn euare_url_from_env() -> Result<String, ClientError> {
    for name in ["EUARE_URL", "AWS_IAM_URL"] {
        if let Ok(url) = std::env::var(name) {
            return Ok(url);
        }
    }
    let s3 = std::env::var("S3_URL").map_err(|_| ClientError::MissingEnv("EUARE_URL"))?;
    let base = s3
        .trim_end_matches('/')
        .trim_end_matches("/services/Walrus")
        .trim_end_matches("/services/objectstorage");
    Ok(format!("{base}/services/Euare"))
}

/// The SigV4 headers (`authorization`, `x-amz-date`, ...) for a request.
fn sign_headers(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    service: &str,
    settings: SigningSettings,
    creds: &EnvCredentials,
) -> Result<Vec<(String, String)>, ClientError> {
    let identity: Identity = Credentials::new(
        &creds.access_key_id,
        &creds.secret_access_key,
        None,
        None,
        "koala-env",
    )
    .into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&creds.region)
        .name(service)
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .map_err(|e| ClientError::Signing(e.to_string()))?
        .into();
    let signable = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| ClientError::Signing(e.to_string()))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| ClientError::Signing(e.to_string()))?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect())
}

/// Percent-encodes a form value the way AWS expects (RFC 3986 unreserved kept).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The text of the first `<tag>` element of a small, trusted-shape XML response.
pub fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    Some(unescape(&xml[start..end]))
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_text_finds_and_unescapes() {
        let xml = "<R><Code>A&amp;B</Code><Message>m</Message></R>";
        assert_eq!(xml_text(xml, "Code").as_deref(), Some("A&B"));
        assert_eq!(xml_text(xml, "Nope"), None);
    }

    #[test]
    fn form_encoding() {
        assert_eq!(encode("a b+c/é"), "a%20b%2Bc%2F%C3%A9");
    }
}

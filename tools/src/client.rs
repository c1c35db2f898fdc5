//! A small signed client for Koala's admin commands and euca2ools family: SigV4 by
//! [`rpc::signer`] (AWS's own signer, independent of our verifier), form-encoded Query API
//! calls and path-style S3 requests, over HTTP or HTTPS (trusting the cloud's certificate).

use std::io::Read;
use std::time::SystemTime;

use md5::{Digest, Md5};
use rpc::signer::{SignableBody, Signer, Style};

/// Failures of a client call, phrased for a person at a terminal.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A required environment variable is missing (the eucarc was not sourced).
    #[error("{0} is not set: source the eucarc of an account first (`. DATA_DIR/credentials/admin/eucarc`)")]
    MissingEnv(&'static str),
    /// The request could not be signed.
    #[error(transparent)]
    Signing(#[from] rpc::signer::SignError),
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
    /// An upload's ETag is not the MD5 of the bytes sent: they were damaged on the way.
    #[error("the ETag of {url} is {etag:?}, not the MD5 of the bytes sent ({md5})")]
    EtagMismatch {
        /// The object's URL.
        url: String,
        /// The ETag the service returned (empty when there was none).
        etag: String,
        /// The hex MD5 of what was sent.
        md5: String,
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
    /// Reads `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY` (or `AWS_ACCESS_KEY`/`AWS_SECRET_KEY`,
    /// or euca2ools 1.x's `EC2_ACCESS_KEY`/`EC2_SECRET_KEY`) and `AWS_DEFAULT_REGION`.
    pub fn from_env() -> Result<EnvCredentials, ClientError> {
        EnvCredentials::from_env_or(None, None, None)
    }

    /// Like [`EnvCredentials::from_env`], with values given on a command line (euca2ools'
    /// `-I`, `-S`, the region name) taking precedence over the environment's.
    pub fn from_env_or(
        access_key_id: Option<&str>,
        secret_access_key: Option<&str>,
        region: Option<&str>,
    ) -> Result<EnvCredentials, ClientError> {
        let var = |given: Option<&str>, names: &[&'static str]| {
            given
                .map(str::to_owned)
                .or_else(|| names.iter().find_map(|n| std::env::var(n).ok()))
        };
        Ok(EnvCredentials {
            access_key_id: var(
                access_key_id,
                &["AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY", "EC2_ACCESS_KEY"],
            )
            .ok_or(ClientError::MissingEnv("AWS_ACCESS_KEY_ID"))?,
            secret_access_key: var(
                secret_access_key,
                &["AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY", "EC2_SECRET_KEY"],
            )
            .ok_or(ClientError::MissingEnv("AWS_SECRET_ACCESS_KEY"))?,
            region: var(region, &["AWS_AUTH_REGION", "AWS_DEFAULT_REGION"])
                .unwrap_or_else(|| "eucalyptus".to_owned()),
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
        SignableBody::Bytes(form.as_bytes()),
        service,
        Style::Query,
        creds,
    )?;
    let request = with_headers(
        agent().post(url),
        &[("content-type", content_type)],
        &signed,
    );
    match request.send_bytes(form.as_bytes()) {
        Ok(response) => response.into_string().map_err(|e| ClientError::Transport {
            url: url.to_owned(),
            reason: e.to_string(),
        }),
        Err(ureq::Error::Status(status, response)) => Err(service_error(
            status,
            &response.into_string().unwrap_or_default(),
        )),
        Err(err) => Err(ClientError::Transport {
            url: url.to_owned(),
            reason: err.to_string(),
        }),
    }
}

/// The HTTP agent of every call: over https it trusts the cloud's certificate as well as
/// the public authorities, named by `EUCALYPTUS_CERT` (which a eucarc sets) or
/// `AWS_CA_BUNDLE` (as the aws CLI reads it).
fn agent() -> &'static ureq::Agent {
    static AGENT: std::sync::OnceLock<ureq::Agent> = std::sync::OnceLock::new();
    AGENT.get_or_init(|| {
        let bundle = ["EUCALYPTUS_CERT", "AWS_CA_BUNDLE"]
            .iter()
            .find_map(std::env::var_os)
            .and_then(|path| std::fs::read(path).ok());
        match bundle.and_then(|pem| tls_trusting(&pem)) {
            Some(config) => ureq::AgentBuilder::new().tls_config(config).build(),
            None => ureq::agent(),
        }
    })
}

/// A TLS client configuration trusting the certificates in `pem` and the public authorities.
fn tls_trusting(pem: &[u8]) -> Option<std::sync::Arc<rustls::ClientConfig>> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem) {
        roots.add(cert.ok()?).ok()?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Some(std::sync::Arc::new(config))
}

/// The error a refusal's body describes: `<Code>`/`<Message>` of an EC2 (`Response/Errors/
/// Error`) or S3 (`Error`) error document, else the HTTP status and the body as it came.
pub fn service_error(status: u16, body: &str) -> ClientError {
    ClientError::Service {
        code: xml_text(body, "Code").unwrap_or_else(|| format!("HTTP {status}")),
        message: xml_text(body, "Message").unwrap_or_else(|| body.to_owned()),
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
    s3_request_with(method, url, b"", creds)
}

/// [`s3_request`] with a small body in memory, signed with its SHA-256 (bucket creation's
/// `CreateBucketConfiguration`).
pub fn s3_request_with(
    method: &str,
    url: &str,
    body: &[u8],
    creds: &EnvCredentials,
) -> Result<(u16, String), ClientError> {
    let signed = sign_headers(
        method,
        url,
        &[],
        SignableBody::Bytes(body),
        "s3",
        Style::S3,
        creds,
    )?;
    let request = with_headers(agent().request(method, url), &[], &signed);
    let transport = |reason: String| ClientError::Transport {
        url: url.to_owned(),
        reason,
    };
    // GET and HEAD go without a body, so without a `Content-Length: 0` either.
    let sent = match method {
        "GET" | "HEAD" => request.call(),
        _ => request.send_bytes(body),
    };
    let response = match sent {
        Ok(response) | Err(ureq::Error::Status(_, response)) => response,
        Err(err) => return Err(transport(err.to_string())),
    };
    let status = response.status();
    let body = response
        .into_string()
        .map_err(|e| transport(e.to_string()))?;
    Ok((status, body))
}

/// PUTs `len` bytes read from `body` to `url` as one object, streamed (`UNSIGNED-PAYLOAD`:
/// nothing is read twice), with extra headers such as `x-amz-acl` (signed). Returns the
/// object's ETag once it is checked against the MD5 of the bytes sent, hashed as they went.
pub fn s3_put_object(
    url: &str,
    body: impl Read,
    len: u64,
    headers: &[(&str, &str)],
    creds: &EnvCredentials,
) -> Result<String, ClientError> {
    let length = len.to_string();
    let mut all = vec![("content-length", length.as_str())];
    all.extend_from_slice(headers);
    let signed = sign_headers(
        "PUT",
        url,
        &all,
        SignableBody::UnsignedPayload,
        "s3",
        Style::S3,
        creds,
    )?;
    let request = with_headers(agent().put(url), &all, &signed);
    let mut hashing = Md5Reader {
        inner: body,
        md5: Md5::new(),
    };
    let response = match request.send(&mut hashing) {
        Ok(response) => response,
        Err(ureq::Error::Status(status, response)) => {
            return Err(service_error(
                status,
                &response.into_string().unwrap_or_default(),
            ))
        }
        Err(err) => {
            return Err(ClientError::Transport {
                url: url.to_owned(),
                reason: err.to_string(),
            })
        }
    };
    let md5 = hex::encode(hashing.md5.finalize());
    let etag = response.header("etag").unwrap_or_default().to_owned();
    if !etag.trim_matches('"').eq_ignore_ascii_case(&md5) {
        return Err(ClientError::EtagMismatch {
            url: url.to_owned(),
            etag,
            md5,
        });
    }
    Ok(etag)
}

/// A path-style S3 URL: `base` (an `S3_URL`, with or without a trailing slash), the bucket,
/// and the key with each byte outside RFC 3986's unreserved set percent-encoded except `/`.
pub fn s3_url(base: &str, bucket: &str, key: &str) -> String {
    let mut url = format!("{}/{}", base.trim_end_matches('/'), encode(bucket));
    if !key.is_empty() {
        url.push('/');
        let segments: Vec<String> = key.split('/').map(encode).collect();
        url.push_str(&segments.join("/"));
    }
    url
}

/// `request` with the caller's headers and the signature's.
fn with_headers(
    mut request: ureq::Request,
    headers: &[(&str, &str)],
    signed: &[(String, String)],
) -> ureq::Request {
    for (name, value) in headers {
        request = request.set(name, value);
    }
    for (name, value) in signed {
        request = request.set(name, value);
    }
    request
}

/// A reader that hashes what passes through it, so an upload's MD5 costs no second read.
struct Md5Reader<R> {
    inner: R,
    md5: Md5,
}

impl<R: Read> Read for Md5Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.md5.update(&buf[..n]);
        Ok(n)
    }
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
    body: SignableBody<'_>,
    service: &str,
    style: Style,
    creds: &EnvCredentials,
) -> Result<Vec<(String, String)>, ClientError> {
    let signer = Signer::new(
        &creds.access_key_id,
        &creds.secret_access_key,
        &creds.region,
        service,
    );
    let signature = signer.sign(style, SystemTime::now(), method, url, headers, body)?;
    Ok(signature.headers)
}

/// Percent-encodes a form value the way AWS expects (RFC 3986 unreserved kept).
fn encode(text: &str) -> String {
    identity::uri_encode(text.as_bytes(), false)
}

/// The text of the first `<tag>` element, at any depth, of a small XML response: for the
/// calls whose answer is one value (`<Credentials>`, `<AccessKeyId>`) or an error's `<Code>`.
pub fn xml_text(body: &str, tag: &str) -> Option<String> {
    let root = xml::Element::parse(body.as_bytes()).ok()?;
    root.find(tag).map(|e| e.text.clone())
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

    #[test]
    fn s3_urls_keep_the_key_slashes() {
        assert_eq!(
            s3_url("http://h:8773/services/Walrus/", "bkt", "pre/a b+c.part.00"),
            "http://h:8773/services/Walrus/bkt/pre/a%20b%2Bc.part.00"
        );
        assert_eq!(
            s3_url("http://h:8773/services/Walrus", "bkt", ""),
            "http://h:8773/services/Walrus/bkt"
        );
    }
}

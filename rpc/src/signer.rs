//! The one SigV4 signer of every client in the tree: the internal protocol's client (which
//! signs as S3 clients do), the euca2ools commands, `koala-bench` and the Walrus tests. It
//! wraps `aws-sigv4` (a signer written independently of our verifier in `identity`, so a test
//! signed here checks the verifier against AWS's own reading of the rules) and hides its
//! builder and settings behind the three ways Koala's clients sign.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, PercentEncodingMode, SignableRequest, SignatureLocation,
    SigningSettings, UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;

pub use aws_sigv4::http_request::SignableBody;

/// How a request is signed, by the kind of client that sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A Query API call (EC2, Euare): aws-sigv4's defaults, as the AWS SDKs sign them.
    Query,
    /// An S3 request: the payload's hash in `x-amz-content-sha256`, the path encoded once
    /// and never normalised (S3 keys may hold `//` and `.`).
    S3,
    /// A presigned S3 URL valid for the duration: the signature in the query string.
    S3Presigned(Duration),
}

impl Style {
    fn settings(self) -> SigningSettings {
        let mut settings = SigningSettings::default();
        if self == Style::Query {
            return settings;
        }
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        match self {
            Style::S3 => settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256,
            Style::S3Presigned(expires) => {
                settings.signature_location = SignatureLocation::QueryParams;
                settings.expires_in = Some(expires);
            }
            Style::Query => {}
        }
        settings
    }
}

/// Why a request could not be signed (a URL or header the signer cannot read).
#[derive(Debug, thiserror::Error)]
#[error("cannot sign the request")]
pub struct SignError(#[source] Box<dyn std::error::Error + Send + Sync>);

/// What signing adds to a request: headers (`authorization`, `x-amz-date`, ...) or, for a
/// presigned URL, query parameters; and the seed signature aws-chunked bodies chain from.
#[derive(Debug, Clone, Default)]
pub struct Signature {
    /// Headers to send as given.
    pub headers: Vec<(String, String)>,
    /// Query parameters to append, not yet percent-encoded.
    pub params: Vec<(String, String)>,
    /// The request's signature, the seed of a streaming upload's chunk signatures.
    pub seed: String,
}

impl Signature {
    /// `url` with the signature's query parameters appended, percent-encoded as AWS's
    /// `UriEncode` does.
    pub fn presigned_url(&self, url: &str) -> String {
        let mut out = url.to_owned();
        for (name, value) in &self.params {
            out.push(if out.contains('?') { '&' } else { '?' });
            out.push_str(&identity::uri_encode(name.as_bytes(), false));
            out.push('=');
            out.push_str(&identity::uri_encode(value.as_bytes(), false));
        }
        out
    }
}

/// A key and the scope it signs in (region and service).
#[derive(Debug, Clone)]
pub struct Signer {
    identity: Identity,
    region: String,
    service: String,
}

impl Signer {
    /// A signer for `service` in `region` with the access key's id and secret.
    pub fn new(access_key_id: &str, secret_access_key: &str, region: &str, service: &str) -> Self {
        let identity = Credentials::new(
            access_key_id,
            secret_access_key.to_owned(),
            None,
            None,
            "koala",
        )
        .into();
        Signer {
            identity,
            region: region.to_owned(),
            service: service.to_owned(),
        }
    }

    /// Signs a request at `time`: `headers` are the ones the caller sends and wants signed
    /// (`host` is taken from the URL).
    pub fn sign(
        &self,
        style: Style,
        time: SystemTime,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: SignableBody<'_>,
    ) -> Result<Signature, SignError> {
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name(&self.service)
            .time(time)
            .settings(style.settings())
            .build()
            .map_err(|e| SignError(Box::new(e)))?
            .into();
        let signable = SignableRequest::new(method, url, headers.iter().copied(), body)
            .map_err(|e| SignError(Box::new(e)))?;
        let (instructions, seed) = sign(signable, &params)
            .map_err(|e| SignError(Box::new(e)))?
            .into_parts();
        let (headers, params) = instructions.into_parts();
        Ok(Signature {
            headers: headers
                .into_iter()
                .map(|h| (h.name().to_owned(), h.value().to_owned()))
                .collect(),
            params: params
                .into_iter()
                .map(|(n, v)| (n.to_owned(), v.into_owned()))
                .collect(),
            seed,
        })
    }

    /// The signature of one chunk of an aws-chunked body (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`)
    /// signed at `time`, chained from the previous chunk's signature (the request's seed
    /// for the first).
    pub fn sign_chunk(
        &self,
        time: SystemTime,
        chunk: &[u8],
        previous: &str,
    ) -> Result<String, SignError> {
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(&self.region)
            .name(&self.service)
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| SignError(Box::new(e)))?;
        let signed = v4::sign_chunk(&bytes::Bytes::copy_from_slice(chunk), previous, &params)
            .map_err(|e| SignError(Box::new(e)))?;
        Ok(signed.signature().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://walrus.koala.internal:8773/services/Walrus/b/a%20key";

    fn signer() -> Signer {
        Signer::new(
            "AKIDEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "us-east-1",
            "s3",
        )
    }

    fn header<'a>(signature: &'a Signature, name: &str) -> Option<&'a str> {
        signature
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn s3_style_sends_the_payload_hash_and_query_style_does_not() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let body = SignableBody::Bytes(b"");
        let s3 = signer().sign(Style::S3, at, "GET", URL, &[], body.clone());
        let s3 = s3.expect("signs");
        assert_eq!(
            header(&s3, "x-amz-content-sha256"),
            Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        assert_eq!(header(&s3, "x-amz-date"), Some("20231114T221320Z"));
        let auth = header(&s3, "authorization").expect("authorization");
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/us-east-1/s3/"));
        let query = signer().sign(Style::Query, at, "GET", URL, &[], body);
        assert_eq!(header(&query.expect("signs"), "x-amz-content-sha256"), None);
    }

    #[test]
    fn presigned_urls_carry_the_signature_encoded() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let expires = Duration::from_secs(300);
        let signature = signer()
            .sign(
                Style::S3Presigned(expires),
                at,
                "GET",
                URL,
                &[],
                SignableBody::UnsignedPayload,
            )
            .expect("signs");
        assert!(signature.headers.is_empty());
        let url = signature.presigned_url(URL);
        assert!(url.starts_with(&format!("{URL}?")));
        assert!(url.contains("X-Amz-Expires=300"));
        assert!(
            url.contains("X-Amz-Credential=AKIDEXAMPLE%2F20231114%2Fus-east-1%2Fs3%2Faws4_request")
        );
        assert!(url.contains("X-Amz-Signature="));
    }

    #[test]
    fn a_url_the_signer_cannot_read_is_an_error_that_tells_its_cause_once() {
        let result = signer().sign(
            Style::S3,
            SystemTime::now(),
            "GET",
            "not a url",
            &[],
            SignableBody::Bytes(b""),
        );
        let err = result.expect_err("refused");
        assert_eq!(err.to_string(), "cannot sign the request");
        let cause = std::error::Error::source(&err)
            .expect("a cause")
            .to_string();
        let chain = crate::error_chain(&err);
        assert!(chain.starts_with("cannot sign the request: "), "{chain}");
        assert_eq!(chain.matches(cause.as_str()).count(), 1, "{chain}");
    }
}

//! Identity: who is calling. Accounts, users and access keys (persisted in RocksDB), and the
//! verification of AWS request signatures (SigV4 header, presigned and streaming; SigV2
//! header and query), shared by Walrus and the EC2 API so that both agree on who a caller is.
//!
//! - [`verify_s3`] authenticates an S3 request (Walrus); [`verify_query`] a Query API request
//!   (EC2, Euare). Both take the clock as an argument so tests can replay captured requests.
//! - [`Identity`] is the account store; it is a [`CredentialSource`] for the verifiers, which
//!   never need a secret outside it (`keys.rs`).
//! - [`Credentials::eucarc`] renders the shell file users source to reach the cloud, and
//!   [`Identity::credential_bundle`] the zip of Eucalyptus' "Download credentials".
//! - [`CloudCa`] is the cloud's certificate authority (`DATA_DIR/keys/`), which issues the
//!   users' signing certificates.
//!
//! Files by area: `sigv4.rs` and `sigv2.rs` (the two signature versions), `chunked.rs`
//! (aws-chunked bodies), `canon.rs` (encodings and dates both versions share), `store.rs`
//! (RocksDB), `ca.rs` (the cloud CA), `credentials.rs` (bundles), `eucarc.rs`, `error.rs`.

mod ca;
mod canon;
mod chunked;
mod credentials;
mod error;
mod eucarc;
mod fsutil;
mod keys;
#[cfg(feature = "store")]
mod login;
mod role;
mod sigv2;
mod sigv4;
#[cfg(feature = "store")]
mod store;

use std::time::SystemTime;

pub use ca::{
    certificate_principal, new_tls_key, public_tls_key, CloudCa, IssuedCertificate,
    CLOUD_CERT_FILE, CLOUD_KEY_FILE,
};
pub use canon::uri_encode;
pub use chunked::AwsChunkedDecoder;
pub use credentials::{BundleFile, CredentialBundle, KeyFiles, EUCA2OOLS_INI, EUCARC};
pub use error::{AuthError, IdentityError};
pub use eucarc::ServiceUrls;
pub use fsutil::write_atomic;
pub use keys::{
    answer, answers_for, may_learn, questions_of, verify_remotely, Answered, CredentialSource,
    KeyAnswer, KeyQuestion, SecretSource, SigningScope, V2Algorithm, INTERNAL_SERVICE,
};
#[cfg(feature = "store")]
pub use login::{
    hash_new_password, plausible_email, SignedIn, DEFAULT_ADMIN_PASSWORD, MIN_PASSWORD_LENGTH,
};
pub use role::{ComponentKind, Role};
#[cfg(feature = "store")]
pub use store::{
    validate_account_name, AccessKeyInfo, AccessKeyStatus, Identity, SigningCertificate, UserInfo,
};

use canon::{find_param, header_str, parse_params};

/// The account name of the cloud administrators (Eucalyptus' convention).
pub const ADMIN_ACCOUNT: &str = "eucalyptus";
/// The user created with every new account, holding its first access key.
pub const ADMIN_USER: &str = "admin";

/// Who signed a request: the account, the user and the key used. Authorization decisions
/// (bucket ACLs, image ownership) are made on it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Principal {
    /// 12-digit account id.
    pub account_id: String,
    /// Unique account name (`eucalyptus` for the cloud administrators).
    pub account_name: String,
    /// User name inside the account.
    pub user_name: String,
    /// The access key the request was signed with.
    pub access_key_id: String,
    /// What the user is to the cloud, from its record (never from its name).
    pub role: Role,
}

impl Principal {
    /// Whether the principal is a cloud administrator, who may manage accounts, clusters and
    /// properties and see every resource.
    pub fn is_cloud_admin(&self) -> bool {
        self.role == Role::CloudAdmin
    }

    /// The kind of component the principal is, if it is one of the cloud's components.
    pub fn component(&self) -> Option<ComponentKind> {
        match self.role {
            Role::Component(kind) => Some(kind),
            _ => None,
        }
    }
}

/// A user's access key with its secret, as handed out once at creation (eucarc, Euare
/// `CreateAccessKey`). Its `Debug` output hides the secret, so it can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// 12-digit account id.
    pub account_id: String,
    /// Account name.
    pub account_name: String,
    /// User name inside the account.
    pub user_name: String,
    /// Access key id (`AKIA...`, 20 characters).
    pub access_key_id: String,
    /// Secret access key (40 characters).
    pub secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("account_id", &self.account_id)
            .field("account_name", &self.account_name)
            .field("user_name", &self.user_name)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// What the verifier needs to see of a request (raw, as received).
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// HTTP method, uppercase (`GET`, `PUT`...).
    pub method: &'a str,
    /// The request path exactly as received, still percent-encoded.
    pub raw_path: &'a str,
    /// The query string exactly as received, without the `?` (empty when none).
    pub raw_query: &'a str,
    /// The request headers.
    pub headers: &'a http::HeaderMap,
}

/// How a request reached a server: the cloud's components call each other over TLS only,
/// each presenting its certificate; a component's signed call is accepted only from the
/// connection of that component. Servers put it in every request's extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// Plain HTTP (users' old clients on the main port).
    Plain,
    /// TLS; `peer` is the principal the client's certificate names, when it presented one
    /// the cloud's CA issued.
    Tls {
        /// The principal of the client's certificate.
        peer: Option<String>,
    },
}

/// Whether `id` has the shape of the access key ids this cloud issues (`AKIA` and 16
/// base-32 characters): a remote key lookup is made for no other, so made-up ids in
/// anonymous requests cost a verifier nothing.
pub fn is_access_key_id(id: &str) -> bool {
    id.len() == 20
        && id.starts_with("AKIA")
        && id
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
}

/// The access key id a request is signed with, from whichever of the four places S3 allows
/// (SigV4 or SigV2, header or query), for verifiers that fetch keys before verifying.
pub fn signing_key_id(req: &RequestParts<'_>) -> Option<String> {
    let from_credential = |credential: &str| credential.split('/').next().map(str::to_owned);
    if let Some(auth) = req
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(rest) = auth.strip_prefix("AWS ") {
            return rest.split(':').next().map(|k| k.trim().to_owned());
        }
        let credential = auth.split("Credential=").nth(1)?;
        return from_credential(credential.split(',').next()?);
    }
    let query = parse_params(req.raw_query, false);
    if let Some(p) = find_param(&query, "X-Amz-Credential") {
        return from_credential(&p.value_str());
    }
    find_param(&query, "AWSAccessKeyId").map(|p| p.value_str())
}

/// The outcome of a successful verification.
#[derive(Debug)]
pub enum Authenticated {
    /// The request carries no signature at all; only public resources may be served.
    Anonymous,
    /// The request was signed by `principal`; `payload` says what is left to check on the body.
    Signed {
        /// Who signed the request.
        principal: Principal,
        /// What the body must still satisfy.
        payload: Payload,
    },
}

/// What the signature promised about the body, which only the body reader can check.
#[derive(Debug)]
pub enum Payload {
    /// Nothing to check on the body (SigV2, `UNSIGNED-PAYLOAD`).
    Unverified,
    /// The body must hash (SHA-256) to this, else `XAmzContentSHA256Mismatch`.
    Sha256([u8; 32]),
    /// `STREAMING-AWS4-HMAC-SHA256-PAYLOAD(-TRAILER)`: feed the body through the decoder, which
    /// checks every chunk signature (and the trailer's).
    Streaming(AwsChunkedDecoder),
    /// `STREAMING-UNSIGNED-PAYLOAD-TRAILER`: aws-chunked framing without chunk signatures; the
    /// trailer carries a checksum (`x-amz-checksum-*`) the caller must verify.
    UnsignedTrailer(AwsChunkedDecoder),
}

/// Authenticates an S3 request: SigV4 header (streaming included) or presigned query, SigV2
/// header or query, else anonymous.
///
/// `v2_resource` is the SigV2 canonical resource path, `/bucket/key` still percent-encoded as
/// received, mount prefix (`/services/Walrus`) stripped, virtual-host bucket prepended; the
/// verifier appends the signed sub-resources from the query.
pub fn verify_s3(
    req: &RequestParts,
    v2_resource: &str,
    creds: &dyn CredentialSource,
    now: SystemTime,
) -> Result<Authenticated, AuthError> {
    let query = parse_params(req.raw_query, false);
    let presigned_v4 = find_param(&query, "X-Amz-Algorithm").is_some();
    let presigned_v2 =
        find_param(&query, "AWSAccessKeyId").is_some() && find_param(&query, "Signature").is_some();
    match header_str(req.headers, "authorization") {
        Some(auth) => {
            if presigned_v4 || presigned_v2 {
                return Err(AuthError::InvalidArgument(
                    "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified".into(),
                ));
            }
            if auth.starts_with(sigv4::ALGORITHM) {
                sigv4::verify_header(req, auth, None, creds, now)
            } else if let Some(rest) = auth.strip_prefix("AWS ") {
                sigv2::verify_s3_header(req, rest, v2_resource, &query, creds, now)
            } else {
                Err(AuthError::InvalidArgument(
                    "Unsupported Authorization Type".into(),
                ))
            }
        }
        None if presigned_v4 => sigv4::verify_presigned(req, &query, None, creds, now),
        None if presigned_v2 => sigv2::verify_s3_query(req, v2_resource, &query, creds, now),
        None => Ok(Authenticated::Anonymous),
    }
}

/// Authenticates a Query API request (EC2, Euare): SigV4 header (any service, any region) or
/// presigned query, SigV2 in the query string or the form body, else anonymous.
///
/// `form_body` is the whole `application/x-www-form-urlencoded` body (empty for a GET); SigV4
/// covers its hash and SigV2 its parameters. When the request is signed with a body hash, the
/// body has already been checked against it here.
pub fn verify_query(
    req: &RequestParts,
    form_body: &[u8],
    creds: &dyn CredentialSource,
    now: SystemTime,
) -> Result<Authenticated, AuthError> {
    if let Some(auth) = header_str(req.headers, "authorization") {
        if auth.starts_with(sigv4::ALGORITHM) {
            return sigv4::verify_header(req, auth, Some(form_body), creds, now);
        }
        return Err(AuthError::InvalidArgument(
            "Unsupported Authorization Type".into(),
        ));
    }
    let query = parse_params(req.raw_query, true);
    if find_param(&query, "X-Amz-Algorithm").is_some() {
        let raw_query = parse_params(req.raw_query, false);
        return sigv4::verify_presigned(req, &raw_query, Some(form_body), creds, now);
    }
    let mut params = query;
    if !form_body.is_empty() {
        params.extend(parse_params(&String::from_utf8_lossy(form_body), true));
    }
    if find_param(&params, "Signature").is_some() || find_param(&params, "AWSAccessKeyId").is_some()
    {
        return sigv2::verify_query_v2(req, &params, creds, now);
    }
    Ok(Authenticated::Anonymous)
}

#[cfg(test)]
mod signing_key_tests {
    use super::*;

    fn key_of(headers: &[(&str, &str)], query: &str) -> Option<String> {
        let mut map = http::HeaderMap::new();
        for (name, value) in headers {
            map.insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        signing_key_id(&RequestParts {
            method: "GET",
            raw_path: "/b/k",
            raw_query: query,
            headers: &map,
        })
    }

    #[test]
    fn finds_the_key_in_each_place_s3_allows() {
        let v4 = "AWS4-HMAC-SHA256 Credential=AKIAV4/20261126/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=ab";
        assert_eq!(key_of(&[("authorization", v4)], ""), Some("AKIAV4".into()));
        assert_eq!(
            key_of(&[("authorization", "AWS AKIAV2:c2ln")], ""),
            Some("AKIAV2".into())
        );
        assert_eq!(
            key_of(&[], "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAQ4%2F20261126%2Fus-east-1%2Fs3%2Faws4_request"),
            Some("AKIAQ4".into())
        );
        assert_eq!(
            key_of(&[], "AWSAccessKeyId=AKIAQ2&Signature=x&Expires=1"),
            Some("AKIAQ2".into())
        );
        assert_eq!(key_of(&[], "list-type=2"), None);
    }

    #[test]
    fn only_ids_of_the_issued_shape_are_access_key_ids() {
        assert!(is_access_key_id("AKIAABCDEFGHIJ234567"));
        assert!(!is_access_key_id("AKIAABCDEFGHIJ23456"));
        assert!(!is_access_key_id("AKIAabcdefghij234567"));
        assert!(!is_access_key_id("XKIAABCDEFGHIJ234567"));
        assert!(!is_access_key_id("AKIAABCDEFGHIJ234568"));
    }
}

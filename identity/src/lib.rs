//! Identity: who is calling. Accounts, users and access keys (persisted in RocksDB), and the
//! verification of AWS request signatures (SigV4 header, presigned and streaming; SigV2
//! header and query), shared by Walrus and the EC2 API so that both agree on who a caller is.
//!
//! CONTRACT (written before the implementation so Walrus can be built against it; the
//! author may add to it but should not change these signatures without telling Walrus'
//! author):
//!
//! ```ignore
//! pub struct Identity;                       // Clone (Arc inside)
//! impl Identity {
//!     pub fn open(dir: &Path) -> Result<Identity, IdentityError>;
//!     /// Creates account `eucalyptus` with user `admin` and an access key on first call;
//!     /// returns its credentials and whether they were just created.
//!     pub fn ensure_admin(&self) -> Result<(Credentials, bool), IdentityError>;
//!     /// A new account with its `admin` user and a first access key.
//!     pub fn create_account(&self, name: &str) -> Result<Credentials, IdentityError>;
//! }
//! impl CredentialSource for Identity { .. }
//!
//! pub trait CredentialSource {
//!     /// The principal owning an active access key, and its secret.
//!     fn lookup(&self, access_key_id: &str) -> Option<(Principal, String)>;
//! }
//!
//! pub struct Principal { pub account_id: String, pub account_name: String,
//!                        pub user_name: String, pub access_key_id: String }
//! impl Principal { pub fn is_cloud_admin(&self) -> bool }   // account "eucalyptus"
//!
//! pub struct Credentials { pub account_id, account_name, user_name, access_key_id,
//!                          secret_access_key: String }
//! impl Credentials { pub fn eucarc(&self, urls: &ServiceUrls) -> String }
//!
//! /// What the verifier needs to see of a request (raw, as received).
//! pub struct RequestParts<'a> { pub method: &'a str, pub raw_path: &'a str,
//!                               pub raw_query: &'a str, pub headers: &'a http::HeaderMap }
//!
//! /// S3: `v2_resource` is the SigV2 canonical resource path, `/bucket/key` still
//! /// percent-encoded as received, mount prefix (`/services/Walrus`) stripped, virtual-host
//! /// bucket prepended; the verifier appends the signed sub-resources from the query.
//! pub fn verify_s3(req: &RequestParts, v2_resource: &str, creds: &dyn CredentialSource,
//!                  now: SystemTime) -> Result<Authenticated, AuthError>;
//! /// Query APIs (EC2, Euare): SigV4 header (any service), SigV2 in query or form body.
//! pub fn verify_query(req: &RequestParts, form_body: &[u8], creds: &dyn CredentialSource,
//!                     now: SystemTime) -> Result<Authenticated, AuthError>;
//!
//! pub enum Authenticated { Anonymous, Signed { principal: Principal, payload: Payload } }
//! pub enum Payload {
//!     Unverified,            // SigV2, UNSIGNED-PAYLOAD: nothing to check on the body
//!     Sha256([u8; 32]),      // the body must hash to this (XAmzContentSHA256Mismatch)
//!     Streaming(AwsChunkedDecoder),  // STREAMING-AWS4-HMAC-SHA256-PAYLOAD(-TRAILER)
//!     UnsignedTrailer(AwsChunkedDecoder), // STREAMING-UNSIGNED-PAYLOAD-TRAILER
//! }
//! /// Removes aws-chunked framing, verifying chunk (and trailer) signatures when signed.
//! pub struct AwsChunkedDecoder;
//! impl AwsChunkedDecoder {
//!     /// Feeds raw body bytes; returns decoded payload bytes available so far.
//!     pub fn push(&mut self, input: &[u8]) -> Result<bytes::Bytes, AuthError>;
//!     /// After the last input: checks the final chunk was seen; returns the trailers
//!     /// (lowercase name, value), e.g. ("x-amz-checksum-crc32", "base64").
//!     pub fn finish(self) -> Result<Vec<(String, String)>, AuthError>;
//! }
//!
//! pub enum AuthError { MissingAuth?, InvalidAccessKeyId, SignatureDoesNotMatch,
//!     RequestTimeTooSkewed, Expired (presigned), AuthorizationHeaderMalformed(String),
//!     InvalidArgument(String), IncompleteBody/InvalidChunk, ... }   // mapped to codes by callers
//! ```

#![allow(missing_docs)] // until the implementation lands

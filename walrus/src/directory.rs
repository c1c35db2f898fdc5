//! Who Walrus' callers are: the [`Directory`] of access keys, accounts and the cloud's key.
//! Walrus beside the cloud controller reads the identity store in its own process; a Walrus
//! on a host of its own asks the cloud controller (the `koala` binary supplies that client),
//! so Walrus itself never cares which.

use std::future::Future;
use std::pin::Pin;

use identity::{CredentialSource, RequestParts};
use rsa::RsaPrivateKey;

/// A future a [`Directory`] returns; boxed so the trait stays object safe.
pub type DirectoryFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The accounts and keys Walrus verifies requests against.
pub trait Directory: CredentialSource + Send + Sync + 'static {
    /// Makes the key `access_key_id` ready for [`CredentialSource::lookup`] (a remote
    /// directory asks the cloud controller; a local one has nothing to do). Called before a
    /// signature is verified, as verification itself does not wait.
    fn prepare<'a>(&'a self, access_key_id: &'a str) -> DirectoryFuture<'a, ()> {
        let _ = access_key_id;
        Box::pin(async {})
    }

    /// Whether `account_id` names an account (grants to other ids are refused).
    fn account_exists<'a>(
        &'a self,
        account_id: &'a str,
    ) -> DirectoryFuture<'a, Result<bool, String>>;

    /// The cloud's private key, which bundles are encrypted for; `None` while it is not known
    /// (a remote directory that has not reached the cloud controller yet).
    fn cloud_key(&self) -> Option<&RsaPrivateKey>;

    /// The same directory as a plain credential source, for the verifiers.
    fn credentials(&self) -> &dyn CredentialSource;
}

impl Directory for identity::Identity {
    fn account_exists<'a>(
        &'a self,
        account_id: &'a str,
    ) -> DirectoryFuture<'a, Result<bool, String>> {
        let found = identity::Identity::account_exists(self, account_id).map_err(|e| e.to_string());
        Box::pin(async move { found })
    }

    fn cloud_key(&self) -> Option<&RsaPrivateKey> {
        self.cloud_ca().map(|ca| ca.private_key())
    }

    fn credentials(&self) -> &dyn CredentialSource {
        self
    }
}

/// The access key id a request is signed with, from whichever of the four places S3 allows
/// (SigV4 or SigV2, header or query), so a remote directory can fetch it before verification.
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
    for pair in req.raw_query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_encoding::percent_decode_str(value).decode_utf8_lossy();
        match name {
            "X-Amz-Credential" => return from_credential(&value),
            "AWSAccessKeyId" => return Some(value.into_owned()),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
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
}

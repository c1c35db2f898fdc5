//! Walrus on a host of its own (`koala walrus --cloud-url`): the identity store stays with
//! the cloud controller, so Walrus asks the CLC's key service what checking a request's
//! signature takes (never a secret) and which accounts exist. It decrypts bundles with the
//! cloud's key, which the administrator copies to its host as Eucalyptus' registration did
//! (it never crosses the network).

use std::path::Path;
use std::time::Duration;

use http::Method;
use identity::{Answered, CredentialSource, KeyQuestion};
use rpc::{AccountRecord, RpcClient, RpcCode, Verifier};

use crate::{Directory, DirectoryError, DirectoryFuture, WalrusError};

/// How long one call to the other role may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Walrus' directory when the identity store is on the CLC's host.
pub struct ClcDirectory {
    keys: Verifier,
    client: RpcClient,
    cloud_url: String,
    cloud_key: bundler::PrivateKey,
}

impl ClcDirectory {
    /// A directory asking the CLC at `cloud_url` with `client` (Walrus' own key and
    /// certificate), and decrypting bundles with the cloud's private key from
    /// `cloud_key_file` (the CLC's `DATA_DIR/keys/cloud-pk.pem`, copied by the
    /// administrator).
    pub fn open(
        client: RpcClient,
        cloud_url: &str,
        cloud_key_file: &Path,
    ) -> Result<ClcDirectory, WalrusError> {
        let path = || cloud_key_file.to_owned();
        let pem =
            std::fs::read_to_string(cloud_key_file).map_err(|source| WalrusError::CloudKey {
                path: path(),
                source,
            })?;
        let cloud_key =
            bundler::read_private_key(&pem).map_err(|source| WalrusError::NotACloudKey {
                path: path(),
                source,
            })?;
        let cloud_url = cloud_url.trim_end_matches('/').to_owned();
        Ok(ClcDirectory {
            keys: Verifier::remote(client.clone(), &cloud_url),
            client,
            cloud_url,
            cloud_key,
        })
    }
}

impl Directory for ClcDirectory {
    fn local_keys(&self) -> Option<&dyn CredentialSource> {
        None
    }

    fn answer<'a>(
        &'a self,
        questions: Vec<KeyQuestion>,
    ) -> DirectoryFuture<'a, Result<Answered, DirectoryError>> {
        Box::pin(async move {
            self.keys
                .answers(questions)
                .await
                .map_err(DirectoryError::Remote)
        })
    }

    fn account_exists<'a>(
        &'a self,
        account_id: &'a str,
    ) -> DirectoryFuture<'a, Result<bool, DirectoryError>> {
        Box::pin(async move {
            if account_id.is_empty() || !account_id.bytes().all(|b| b.is_ascii_digit()) {
                return Ok(false);
            }
            let url = format!("{}/services/Identity/accounts/{account_id}", self.cloud_url);
            match self
                .client
                .call::<AccountRecord>(Method::GET, &url, None::<&()>, CALL_TIMEOUT)
                .await
            {
                Ok(_) => Ok(true),
                Err(e) if e.code == RpcCode::NotFound => Ok(false),
                Err(e) => Err(DirectoryError::Remote(e)),
            }
        })
    }

    fn cloud_key(&self) -> Option<&bundler::PrivateKey> {
        Some(&self.cloud_key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_bad_cloud_key_is_refused_with_where_it_comes_from_and_why() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ca, _) = identity::CloudCa::open_or_create(dir.path()).expect("a CA");
        let tls = rpc::tls::Tls::new(ca.cert_pem(), None).expect("TLS settings");
        let key = rpc::ComponentKey {
            access_key_id: "AKID".into(),
            secret_access_key: "secret".into(),
            region: "eucalyptus".into(),
        };
        let client = RpcClient::new(key, &tls, identity::ComponentKind::CloudController);
        let url = "https://clc:8773";

        let missing = dir
            .path()
            .join("walrus-host")
            .join(identity::CLOUD_KEY_FILE);
        let Err(err) = ClcDirectory::open(client.clone(), url, &missing) else {
            panic!("opened without a key");
        };
        let chain = rpc::error_chain(&err);
        let expected = format!(
            "cannot read the cloud's key {} (copy it from the cloud controller's \
             DATA_DIR/keys/cloud-pk.pem, readable by root only): ",
            missing.display()
        );
        assert!(chain.starts_with(&expected), "{chain}");
        assert!(std::error::Error::source(&err).is_some());

        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "not a key").expect("write");
        let Err(err) = ClcDirectory::open(client, url, &bad) else {
            panic!("opened with no key");
        };
        assert!(matches!(err, WalrusError::NotACloudKey { .. }), "{err:?}");
        assert!(
            rpc::error_chain(&err)
                .starts_with(&format!("{} is no RSA private key: ", bad.display())),
            "{err}"
        );
    }
}

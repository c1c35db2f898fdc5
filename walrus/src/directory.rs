//! Who Walrus' callers are: the [`Directory`] of access keys, accounts and the cloud's key.
//! Walrus beside the cloud controller reads the identity store in its own process; a Walrus
//! on a host of its own asks the cloud controller (the `koala` binary supplies that client),
//! so Walrus itself never cares which.

use std::future::Future;
use std::pin::Pin;

use identity::CredentialSource;
use rsa::RsaPrivateKey;

/// A future a [`Directory`] returns; boxed so the trait stays object safe.
pub type DirectoryFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The accounts and keys Walrus verifies requests against.
pub trait Directory: CredentialSource + Send + Sync + 'static {
    /// Makes the key `access_key_id` ready for [`CredentialSource::lookup`] (a remote
    /// directory asks the cloud controller; a local one has nothing to do). Called before a
    /// signature is verified, as verification itself does not wait. An error means the
    /// directory cannot answer now (the caller is not at fault).
    fn prepare<'a>(&'a self, access_key_id: &'a str) -> DirectoryFuture<'a, Result<(), String>> {
        let _ = access_key_id;
        Box::pin(async { Ok(()) })
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

//! Who Walrus' callers are: the [`Directory`] of access keys, accounts and the cloud's key.
//! Walrus beside the cloud controller reads the identity store in its own process; a Walrus
//! on a host of its own asks the cloud controller (the `koala` binary supplies that client),
//! which answers what checking a signature takes and never hands out a secret. Walrus itself
//! never cares which.

use std::future::Future;
use std::pin::Pin;

use identity::{Answered, CredentialSource, KeyQuestion};
use rsa::RsaPrivateKey;

/// A future a [`Directory`] returns; boxed so the trait stays object safe.
pub type DirectoryFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The accounts and keys Walrus verifies requests against.
pub trait Directory: Send + Sync + 'static {
    /// The key store, when it is in this process: signatures are checked against it
    /// directly. `None` for a directory on another host, which [`Directory::answer`]s.
    fn local_keys(&self) -> Option<&dyn CredentialSource>;

    /// The answers to what checking one request's signature asks (a remote directory asks
    /// the cloud controller). An error means the directory cannot answer now (the caller is
    /// not at fault).
    fn answer<'a>(
        &'a self,
        questions: Vec<KeyQuestion>,
    ) -> DirectoryFuture<'a, Result<Answered, DirectoryError>> {
        let answered = match self.local_keys() {
            Some(keys) => Ok(questions.into_iter().fold(Answered::default(), |a, q| {
                let answer = identity::answer(keys, &q);
                a.with(q, answer)
            })),
            None => Err(DirectoryError::NoKeyStore),
        };
        Box::pin(async move { answered })
    }

    /// Whether `account_id` names an account (grants to other ids are refused).
    fn account_exists<'a>(
        &'a self,
        account_id: &'a str,
    ) -> DirectoryFuture<'a, Result<bool, DirectoryError>>;

    /// The cloud's private key, which bundles are encrypted for; `None` while it is not known
    /// (a remote directory that has not reached the cloud controller yet).
    fn cloud_key(&self) -> Option<&RsaPrivateKey>;
}

/// Why a [`Directory`] cannot answer now: never the caller's fault.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// A directory without a key store in this process that does not fetch answers either.
    #[error("this directory has no key store")]
    NoKeyStore,
    /// The cloud controller could not be asked, or failed to answer.
    #[error("the cloud controller cannot answer")]
    Remote(#[source] rpc::RpcError),
    /// The identity store in this process failed.
    #[error("the identity store cannot answer")]
    Store(#[source] identity::IdentityError),
}

impl Directory for identity::Identity {
    fn local_keys(&self) -> Option<&dyn CredentialSource> {
        Some(self)
    }

    fn account_exists<'a>(
        &'a self,
        account_id: &'a str,
    ) -> DirectoryFuture<'a, Result<bool, DirectoryError>> {
        let found =
            identity::Identity::account_exists(self, account_id).map_err(DirectoryError::Store);
        Box::pin(async move { found })
    }

    fn cloud_key(&self) -> Option<&RsaPrivateKey> {
        self.cloud_ca().map(|ca| ca.private_key())
    }
}

//! Where Walrus learns the per-account quotas it enforces: cloud properties of the cloud
//! controller (`walrus.quota.*`). Beside the cloud controller they are read from its state;
//! a Walrus on a host of its own asks the cloud controller (the `koala` binary supplies both
//! sources), so Walrus itself never cares which. Without a source nothing is limited.

use crate::store::StorageQuotas;
use crate::DirectoryFuture;

/// The quotas in force, as the cloud's administrators set them.
pub trait QuotaSource: Send + Sync + 'static {
    /// The quotas now. An error means they cannot be learnt now (the caller is not at
    /// fault): Walrus then limits nothing rather than refuse every write.
    fn quotas(&self) -> DirectoryFuture<'_, Result<StorageQuotas, QuotaError>>;
}

/// Why a [`QuotaSource`] cannot tell the quotas now.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    /// The source has not learnt any quotas yet (a Walrus apart whose cloud controller has
    /// not answered since it started).
    #[error("the cloud controller has not told its quotas yet")]
    NotLearnt,
    /// Reading the quotas failed.
    #[error("cannot read the storage quotas")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync>),
}

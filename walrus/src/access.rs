//! Reads of stored objects by the cloud's other components, on behalf of an account: the
//! cloud controller reads a bundle's manifest and checks its parts at `RegisterImage` with the
//! rights of the account registering it, so a user can register only what they may read.

use futures_util::StreamExt;

use crate::acl::{Permission, Requester};
use crate::names::{BucketName, ObjectKey};
use crate::store::{ObjectMeta, StoreError};
use crate::Walrus;

/// Why an object could not be read for an account.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    /// The bucket or the key does not exist, or the name is not a valid one.
    #[error("{bucket}/{key} does not exist")]
    NotFound {
        /// The bucket asked for.
        bucket: String,
        /// The key asked for.
        key: String,
    },
    /// The object exists but the account may not read it.
    #[error("access to {bucket}/{key} is denied")]
    Denied {
        /// The bucket asked for.
        bucket: String,
        /// The key asked for.
        key: String,
    },
    /// The object is larger than the caller accepts.
    #[error("{bucket}/{key} is larger than {limit} bytes")]
    TooLarge {
        /// The bucket asked for.
        bucket: String,
        /// The key asked for.
        key: String,
        /// The caller's limit.
        limit: u64,
    },
    /// The store failed (a database or disk error, or the object's data could not be read).
    #[error("the object store failed")]
    Failed(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Walrus {
    /// The size of `bucket/key`, if `account_id` may read it.
    pub fn object_size_for(
        &self,
        account_id: &str,
        bucket: &str,
        key: &str,
    ) -> Result<u64, AccessError> {
        self.readable_meta(account_id, bucket, key)
            .map(|(_, _, meta)| meta.size)
    }

    /// The record of `bucket/key`, if `account_id` may read it.
    fn readable_meta(
        &self,
        account_id: &str,
        bucket: &str,
        key: &str,
    ) -> Result<(BucketName, ObjectKey, ObjectMeta), AccessError> {
        let (bucket_name, object_key) = names(bucket, key)?;
        let meta = match self.shared.store.object(&bucket_name, &object_key) {
            Ok(meta) => meta,
            Err(StoreError::NoSuchBucket | StoreError::NoSuchKey) => {
                return Err(not_found(bucket, key))
            }
            Err(e) => return Err(AccessError::Failed(e.into())),
        };
        let who = Requester::Account { account_id };
        if !meta.acl.allows(who, Permission::Read) {
            return Err(AccessError::Denied {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
            });
        }
        Ok((bucket_name, object_key, meta))
    }

    /// The names of the buckets `account_id` owns, in name order: the cloud controller
    /// deletes an account only once it owns none (its objects would be nobody's).
    pub fn buckets_of(&self, account_id: &str) -> Result<Vec<String>, AccessError> {
        Ok(self
            .shared
            .store
            .list_buckets()
            .map_err(|e| AccessError::Failed(e.into()))?
            .into_iter()
            .filter(|b| b.acl.owner == account_id)
            .map(|b| b.name)
            .collect())
    }

    /// The whole body of `bucket/key` (at most `limit` bytes), if `account_id` may read it.
    /// The version whose rights and size were checked is the one read, even if the key is
    /// replaced meanwhile.
    pub async fn read_object_for(
        &self,
        account_id: &str,
        bucket: &str,
        key: &str,
        limit: u64,
    ) -> Result<Vec<u8>, AccessError> {
        let (bucket_name, object_key, meta) = self.readable_meta(account_id, bucket, key)?;
        if meta.size > limit {
            return Err(AccessError::TooLarge {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                limit,
            });
        }
        let store = &self.shared.store;
        let mut stream = match store.read(&bucket_name, &object_key, &meta, 0, meta.size) {
            Ok(stream) => stream,
            Err(StoreError::NoSuchBucket | StoreError::NoSuchKey) => {
                return Err(not_found(bucket, key))
            }
            Err(e) => return Err(AccessError::Failed(e.into())),
        };
        let mut body = Vec::with_capacity(usize::try_from(meta.size).unwrap_or(0));
        while let Some(chunk) = stream.next().await {
            body.extend_from_slice(&chunk.map_err(|e| AccessError::Failed(e.into()))?);
        }
        Ok(body)
    }
}

fn names(bucket: &str, key: &str) -> Result<(BucketName, ObjectKey), AccessError> {
    match (BucketName::parse(bucket), ObjectKey::parse(key)) {
        (Some(b), Some(k)) => Ok((b, k)),
        _ => Err(not_found(bucket, key)),
    }
}

fn not_found(bucket: &str, key: &str) -> AccessError {
    AccessError::NotFound {
        bucket: bucket.to_owned(),
        key: key.to_owned(),
    }
}

//! Per-account quotas, cloud properties an administrator sets at run time
//! (`euca-modify-property`), all unlimited until set: images registered and instances not
//! terminated, checked here for the EC2 API; buckets and bytes stored, which Walrus
//! enforces and learns through [`storage`].

use rpc::InstanceState;

use crate::ec2::{Call, Cloud};
use crate::instances::InstanceRecord;
use crate::properties::{self, BUCKETS_PER_ACCOUNT, BYTES_PER_ACCOUNT, INSTANCES_PER_ACCOUNT};
use crate::QueryError;

/// The storage quotas Walrus enforces for every account; `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageLimits {
    /// Buckets an account may own.
    pub buckets_per_account: Option<u64>,
    /// Bytes an account may store.
    pub bytes_per_account: Option<u64>,
}

/// The storage quotas in force, for Walrus.
pub fn storage(cloud: &Cloud) -> Result<StorageLimits, QueryError> {
    Ok(StorageLimits {
        buckets_per_account: properties::limit(cloud, BUCKETS_PER_ACCOUNT)?,
        bytes_per_account: properties::limit(cloud, BYTES_PER_ACCOUNT)?,
    })
}

/// `ResourceLimitExceeded` when an account that has `registered` images may register no
/// more.
pub(crate) fn check_images(cloud: &Cloud, registered: usize) -> Result<(), QueryError> {
    match properties::limit(cloud, properties::IMAGES_PER_ACCOUNT)? {
        Some(limit) if registered as u64 >= limit => {
            Err(QueryError::ResourceLimitExceeded(format!(
                "You have reached the limit of {limit} registered images for this account \
                 ({}): deregister one first.",
                properties::IMAGES_PER_ACCOUNT
            )))
        }
        _ => Ok(()),
    }
}

/// How many instances the caller may launch now, at most `max`: `InstanceLimitExceeded`
/// when fewer than `min` fit in the account's quota of instances not terminated.
pub fn instance_room(call: &Call<'_>, min: i64, max: i64) -> Result<i64, QueryError> {
    let Some(limit) = properties::limit(call.cloud, INSTANCES_PER_ACCOUNT)? else {
        return Ok(max);
    };
    let live = call
        .cloud
        .state
        .scan::<InstanceRecord>("")?
        .into_iter()
        .filter(|(_, i)| i.owner == call.account() && i.state != InstanceState::Terminated)
        .count() as u64;
    let room = limit.saturating_sub(live);
    if room < min.unsigned_abs() {
        return Err(QueryError::InstanceLimitExceeded(format!(
            "Your quota allows for {room} more running instance(s): this account may have \
             {limit} instances that are not terminated ({INSTANCES_PER_ACCOUNT}), and has \
             {live}. You requested at least {min}."
        )));
    }
    Ok(max.min(i64::try_from(room).unwrap_or(i64::MAX)))
}

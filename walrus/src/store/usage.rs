//! What each account holds: its buckets, and the bytes of the objects and of the parts of
//! uploads in progress in them (charged to the bucket's owner, who pays for what lies in
//! their buckets, as on AWS and Ceph RGW). The per-account quotas are checked against it.
//!
//! Durable and exact: the `usage` column family holds one value per account, changed by a
//! merge operand (a delta RocksDB adds up) in the same write batch as the record whose
//! change it counts, so that a crash never separates them and concurrent writers never lose
//! an update. A mirror in memory, loaded at open, is what quotas are checked against: a
//! change is reserved there under its lock before its batch is written and undone if the
//! write fails, so concurrent writers cannot pass a limit together.
//!
//! Stores made before usage was kept are counted once at open (the `usage-v1` marker says
//! it was done).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use rocksdb::MergeOperands;
use serde::{Deserialize, Serialize};

use super::db::{self, ObjectRecord, PartRecord};
use super::meta::{Batch, Cf, Meta, SharedTotals};
use super::{internal, BucketMeta, StoreError, UploadMeta};

/// The merge operator's name, stored by RocksDB with the column family.
pub(super) const MERGE_NAME: &str = "koala-usage-add";

/// Key in the default column family marking that usage has been counted for this store.
const COUNTED_KEY: &[u8] = b"usage-v1";

/// The value format: version, bytes (i64 LE), buckets (i64 LE).
const FORMAT_V1: u8 = 1;
const VALUE_LEN: usize = 17;

/// The most an account may hold, as the cloud's quotas say; `None` is unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageQuotas {
    /// Buckets an account may own.
    pub buckets_per_account: Option<u64>,
    /// Bytes an account may store: its objects and the parts of its uploads in progress.
    pub bytes_per_account: Option<u64>,
}

impl StorageQuotas {
    /// No limit at all.
    pub const UNLIMITED: StorageQuotas = StorageQuotas {
        buckets_per_account: None,
        bytes_per_account: None,
    };
}

/// What an account holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Bytes of objects and of parts of uploads in progress in its buckets.
    pub bytes: u64,
    /// Buckets it owns.
    pub buckets: u64,
}

/// Signed totals, as stored: a value that went negative by a bug must not wrap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Totals {
    bytes: i64,
    buckets: i64,
}

impl Totals {
    fn encode(self) -> Vec<u8> {
        let mut v = Vec::with_capacity(VALUE_LEN);
        v.push(FORMAT_V1);
        v.extend_from_slice(&self.bytes.to_le_bytes());
        v.extend_from_slice(&self.buckets.to_le_bytes());
        v
    }

    fn decode(v: &[u8]) -> Option<Totals> {
        if v.len() != VALUE_LEN || v[0] != FORMAT_V1 {
            return None;
        }
        let mut bytes = [0u8; 8];
        let mut buckets = [0u8; 8];
        bytes.copy_from_slice(&v[1..9]);
        buckets.copy_from_slice(&v[9..17]);
        Some(Totals {
            bytes: i64::from_le_bytes(bytes),
            buckets: i64::from_le_bytes(buckets),
        })
    }

    fn add(self, other: Totals) -> Totals {
        Totals {
            bytes: self.bytes.saturating_add(other.bytes),
            buckets: self.buckets.saturating_add(other.buckets),
        }
    }

    fn usage(self) -> Usage {
        Usage {
            bytes: u64::try_from(self.bytes).unwrap_or(0),
            buckets: u64::try_from(self.buckets).unwrap_or(0),
        }
    }
}

/// The merge operator of the `usage` column family: adds up the deltas.
pub(super) fn merge(
    _key: &[u8],
    existing: Option<&[u8]>,
    operands: &MergeOperands,
) -> Option<Vec<u8>> {
    let mut total = existing.and_then(Totals::decode).unwrap_or_default();
    for operand in operands.iter() {
        match Totals::decode(operand) {
            Some(delta) => total = total.add(delta),
            None => tracing::error!("a usage delta of an unknown format was ignored"),
        }
    }
    Some(total.encode())
}

/// The same merge, of one delta, as PostgreSQL's writer applies it with the row locked.
pub(super) fn merge_one(existing: Option<&[u8]>, operand: &[u8]) -> Vec<u8> {
    let total = existing.and_then(Totals::decode).unwrap_or_default();
    match Totals::decode(operand) {
        Some(delta) => total.add(delta).encode(),
        None => {
            tracing::error!("a usage delta of an unknown format was ignored");
            total.encode()
        }
    }
}

/// A change of one account's usage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Delta {
    /// The account charged: the bucket's owner.
    pub account: String,
    /// Bytes added (negative: freed).
    pub bytes: i64,
    /// Buckets added (negative: deleted).
    pub buckets: i64,
}

/// The mirror in memory of the `usage` column family, plus what is reserved and not yet
/// written. With shared records the totals change through every front end, so the mirror
/// holds only this front end's reservations not yet written, and each check adds them to
/// the totals read from the database then.
#[derive(Default)]
pub(super) struct Ledger {
    accounts: Mutex<HashMap<String, Totals>>,
    shared: Option<SharedTotals>,
}

impl Ledger {
    /// Loads every account's usage, counting it first if this store never did.
    pub(super) fn open(db: &Meta) -> Result<Ledger, StoreError> {
        if db.get(Cf::Default, COUNTED_KEY)?.is_none() {
            count_all(db)?;
        }
        let shared = db.shared_totals();
        let mut accounts = HashMap::new();
        if shared.is_none() {
            for (k, v) in db.entries(Cf::Usage)? {
                let totals = Totals::decode(&v).ok_or_else(|| internal("bad usage record"))?;
                accounts.insert(String::from_utf8_lossy(&k).into_owned(), totals);
            }
        }
        Ok(Ledger {
            accounts: Mutex::new(accounts),
            shared,
        })
    }

    /// With shared records: `account`'s totals as the database holds them now (a failed
    /// read counts as nothing held: quotas are a limit, not a lock).
    fn stored(&self, account: &str) -> Totals {
        self.shared
            .as_ref()
            .and_then(|shared| match shared.get(account) {
                Ok(found) => found.as_deref().and_then(Totals::decode),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read an account's usage");
                    None
                }
            })
            .unwrap_or_default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Totals>> {
        self.accounts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What `account` holds, counting changes being written.
    pub(super) fn usage(&self, account: &str) -> Usage {
        let stored = self.stored(account);
        let here = self.lock().get(account).copied().unwrap_or_default();
        stored.add(here).usage()
    }

    /// Reserves `delta` unless it makes the account grow past `quotas`: a delta that does
    /// not grow what it changes is always allowed (deleting works over a lowered quota).
    /// The reservation is undone when dropped unless [`Reservation::keep`] is called once
    /// its batch is written.
    pub(super) fn reserve(
        &self,
        delta: Delta,
        quotas: &StorageQuotas,
    ) -> Result<Reservation<'_>, StoreError> {
        // Read only when a limit could refuse the change.
        let limited = (delta.buckets > 0 && quotas.buckets_per_account.is_some())
            || (delta.bytes > 0 && quotas.bytes_per_account.is_some());
        let stored = match limited {
            true => self.stored(&delta.account),
            false => Totals::default(),
        };
        let mut accounts = self.lock();
        let here = accounts.get(&delta.account).copied().unwrap_or_default();
        let now = stored.add(here);
        let over = |added: i64, held: i64, limit: Option<u64>| {
            added > 0
                && limit
                    .is_some_and(|limit| i128::from(held) + i128::from(added) > i128::from(limit))
        };
        if over(delta.buckets, now.buckets, quotas.buckets_per_account) {
            return Err(StoreError::TooManyBuckets);
        }
        if over(delta.bytes, now.bytes, quotas.bytes_per_account) {
            return Err(StoreError::QuotaExceeded);
        }
        let change = Totals {
            bytes: delta.bytes,
            buckets: delta.buckets,
        };
        accounts.insert(delta.account.clone(), here.add(change));
        Ok(Reservation {
            ledger: self,
            account: delta.account,
            change,
            kept: false,
        })
    }
}

/// A change of usage counted in the mirror, to be written with its record.
pub(super) struct Reservation<'a> {
    ledger: &'a Ledger,
    account: String,
    change: Totals,
    kept: bool,
}

impl Reservation<'_> {
    /// Adds the change to the batch that writes its record.
    pub(super) fn add_to(&self, batch: &mut Batch) {
        if self.change != Totals::default() {
            batch.merge(Cf::Usage, self.account.as_bytes(), self.change.encode());
        }
    }

    /// The batch was written: the change stays (shared records: in the database, so it
    /// leaves the reservations).
    pub(super) fn keep(mut self) {
        self.kept = self.ledger.shared.is_none();
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        // Not kept: undone; kept with shared records: written, and no longer reserved.
        if !self.kept {
            let undo = Totals {
                bytes: -self.change.bytes,
                buckets: -self.change.buckets,
            };
            let mut accounts = self.ledger.lock();
            let now = accounts.get(&self.account).copied().unwrap_or_default();
            accounts.insert(self.account.clone(), now.add(undo));
        }
    }
}

/// Counts every account's usage from the records (a store made before usage was kept) and
/// writes it, with the marker, in one synced batch.
fn count_all(db: &Meta) -> Result<(), StoreError> {
    let mut owners: HashMap<String, String> = HashMap::new();
    let mut totals: HashMap<String, Totals> = HashMap::new();
    for (_, v) in db.entries(Cf::Buckets)? {
        let bucket: BucketMeta = db::decode_json(&v)?;
        totals.entry(bucket.acl.owner.clone()).or_default().buckets += 1;
        owners.insert(bucket.name, bucket.acl.owner);
    }
    let mut charge = |bucket: &str, bytes: u64| {
        if let Some(owner) = owners.get(bucket) {
            let t = totals.entry(owner.clone()).or_default();
            t.bytes = t
                .bytes
                .saturating_add(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    };
    for (k, v) in db.entries(Cf::Objects)? {
        let bucket = k.split(|b| *b == 0).next().unwrap_or_default();
        let meta = ObjectRecord::decode_meta(&v)?;
        charge(&String::from_utf8_lossy(bucket), meta.size);
    }
    let mut upload_bucket: HashMap<String, String> = HashMap::new();
    for (_, v) in db.entries(Cf::Uploads)? {
        let upload: UploadMeta = db::decode_json(&v)?;
        upload_bucket.insert(upload.upload_id, upload.bucket);
    }
    for (k, v) in db.entries(Cf::Parts)? {
        let part: PartRecord = db::decode_json(&v)?;
        let upload_id = String::from_utf8_lossy(&k[..k.len().saturating_sub(4)]).into_owned();
        if let Some(bucket) = upload_bucket.get(&upload_id) {
            charge(bucket, part.meta.size);
        }
    }
    let mut batch = Batch::default();
    for (account, t) in &totals {
        batch.put(Cf::Usage, account.as_bytes(), t.encode());
    }
    batch.put(Cf::Default, COUNTED_KEY, [FORMAT_V1]);
    db.write(batch)?;
    if !totals.is_empty() {
        tracing::info!(
            accounts = totals.len(),
            "counted the usage of every account"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_round_trip_and_add() {
        let t = Totals {
            bytes: -5,
            buckets: 7,
        };
        assert_eq!(Totals::decode(&t.encode()), Some(t));
        assert_eq!(Totals::decode(&[2; VALUE_LEN]), None);
        assert_eq!(Totals::decode(&[FORMAT_V1; 3]), None);
        let sum = t.add(Totals {
            bytes: 10,
            buckets: -7,
        });
        assert_eq!(
            sum.usage(),
            Usage {
                bytes: 5,
                buckets: 0
            }
        );
        assert_eq!(t.usage().bytes, 0, "a negative total reads as nothing");
    }

    #[test]
    fn reservations_respect_quotas_and_undo_when_dropped() {
        let ledger = Ledger::default();
        let quotas = StorageQuotas {
            buckets_per_account: Some(1),
            bytes_per_account: Some(100),
        };
        let delta = |bytes, buckets| Delta {
            account: "a".into(),
            bytes,
            buckets,
        };
        ledger.reserve(delta(60, 1), &quotas).unwrap().keep();
        assert!(matches!(
            ledger.reserve(delta(41, 0), &quotas),
            Err(StoreError::QuotaExceeded)
        ));
        assert!(matches!(
            ledger.reserve(delta(0, 1), &quotas),
            Err(StoreError::TooManyBuckets)
        ));
        {
            let held = ledger.reserve(delta(40, 0), &quotas).unwrap();
            // Reserved, not yet written: counted against the quota.
            assert!(ledger.reserve(delta(1, 0), &quotas).is_err());
            drop(held);
        }
        // Dropped unwritten: undone.
        assert_eq!(ledger.usage("a").bytes, 60);
        // Shrinking is always allowed, even over a lowered quota.
        let lowered = StorageQuotas {
            bytes_per_account: Some(10),
            ..quotas
        };
        ledger.reserve(delta(-20, 0), &lowered).unwrap().keep();
        assert_eq!(
            ledger.usage("a"),
            Usage {
                bytes: 40,
                buckets: 1
            }
        );
        assert_eq!(ledger.usage("b"), Usage::default());
    }
}

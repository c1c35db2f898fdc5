//! ListObjects: one forward scan of the bucket's keys from the later of the prefix and the
//! marker, rolling keys up into common prefixes. When a common prefix is emitted the scan
//! seeks past every key sharing it, so a "directory" of a million keys costs one seek.

use super::db::{self, ObjectRecord};
use super::meta::Cf;
use super::{buckets, internal, Inner, ListPage, ListQuery, StoreError};
use crate::names::{BucketName, ObjectKey};

pub(super) fn objects(
    inner: &Inner,
    bucket: &BucketName,
    q: &ListQuery,
) -> Result<ListPage, StoreError> {
    buckets::require(inner, bucket.as_str())?;
    if q.max_keys == 0 {
        // S3 answers an empty page that is not truncated, whatever the bucket holds.
        return Ok(ListPage::default());
    }
    let base = db::bucket_prefix(bucket.as_str());
    let scan_prefix = db::object_key(bucket.as_str(), &q.prefix);
    let mut it = inner.db.cursor(Cf::Objects, db::prefix_end(&scan_prefix))?;

    // A marker before the prefix changes nothing: every key with the prefix is after it.
    let start_after = q.start_after.as_deref().filter(|s| *s >= q.prefix.as_str());
    match start_after {
        Some(s) => {
            let from = db::object_key(bucket.as_str(), s);
            it.seek(&from);
            if it.key() == Some(&from[..]) {
                it.next();
            }
        }
        None => it.seek(&scan_prefix),
    }

    let delimiter = q.delimiter.as_deref().filter(|d| !d.is_empty());
    let mut page = ListPage::default();
    let mut count = 0usize;
    while let Some(raw) = it.key() {
        let key = std::str::from_utf8(&raw[base.len()..]).map_err(internal)?;
        let rolled = delimiter.and_then(|d| {
            let rest = key.get(q.prefix.len()..)?;
            rest.find(d).map(|i| &key[..q.prefix.len() + i + d.len()])
        });
        if let Some(cp) = rolled {
            // Keys of a common prefix not after the marker were rolled up on an earlier page.
            if start_after.is_none_or(|s| cp > s) {
                if count == q.max_keys {
                    page.is_truncated = true;
                    break;
                }
                page.common_prefixes.push(cp.to_owned());
                page.next_marker = Some(cp.to_owned());
                count += 1;
            }
            // UTF-8 never contains 0xFF: this is past every key starting with `cp`.
            let mut past = db::object_key(bucket.as_str(), cp);
            past.push(0xFF);
            it.seek(&past);
            continue;
        }
        if count == q.max_keys {
            page.is_truncated = true;
            break;
        }
        let meta = ObjectRecord::decode_meta(it.value().unwrap_or_default())?;
        let object_key =
            ObjectKey::parse(key).ok_or_else(|| internal("stored object key is invalid"))?;
        page.next_marker = Some(key.to_owned());
        page.objects.push((object_key, meta));
        count += 1;
        it.next();
    }
    it.status()?;
    Ok(page)
}

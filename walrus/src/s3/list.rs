//! ListObjects (v1), ListObjectsV2 and ListObjectVersions: prefix, delimiter, marker /
//! continuation token / start-after / key-marker, max-keys, `encoding-type=url`,
//! fetch-owner.

use axum::body::Body;
use base64::Engine;
use http::{Response, StatusCode};

use super::access::{authorize, AclCheck, Want};
use super::error::S3Error;
use super::xml::{self, url_encode};
use super::{iso8601, xml_response, Ctx};
use crate::acl::Permission;
use crate::names::BucketName;
use crate::store::{ListPage, ListQuery, ObjectMeta, VersionQuery, VersionRef};

/// Default and largest page size.
pub const MAX_KEYS: usize = 1000;

/// Parses a `max-keys`-style parameter: a non-negative integer, capped at `cap`.
pub fn parse_max(value: Option<&str>, name: &str, cap: usize) -> Result<usize, S3Error> {
    match value {
        None => Ok(cap),
        Some(v) => v
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX).min(cap))
            .ok_or_else(|| {
                S3Error::InvalidArgument(format!(
                    "Provided {name} not an integer or within integer range"
                ))
            }),
    }
}

/// The `encoding-type` parameter: only `url` is defined.
pub fn parse_encoding(value: Option<&str>) -> Result<bool, S3Error> {
    match value {
        None => Ok(false),
        Some(v) if v.eq_ignore_ascii_case("url") => Ok(true),
        Some(_) => Err(S3Error::InvalidArgument(
            "Invalid Encoding Method specified in Request".into(),
        )),
    }
}

/// Continuation tokens are opaque to clients: base64 of the key to start after.
pub fn encode_token(key: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(key.as_bytes())
}

/// Decodes a continuation token.
pub fn decode_token(token: &str) -> Result<String, S3Error> {
    base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| {
            S3Error::InvalidArgument("The continuation token provided is incorrect".into())
        })
}

/// What every listing of a bucket's keys takes from the request (after the caller's right
/// to list it is checked), and writes the same way.
struct Listing {
    prefix: String,
    delimiter: Option<String>,
    max_keys: usize,
    /// `encoding-type=url`.
    url: bool,
}

impl Listing {
    fn parse(ctx: &Ctx, bucket: &BucketName, action: &'static str) -> Result<Listing, S3Error> {
        let meta = ctx.store().bucket(bucket)?;
        authorize(
            ctx,
            &meta,
            Want::bucket(action),
            AclCheck::Permission(&meta.acl, Permission::Read),
        )?;
        Ok(Listing {
            prefix: ctx.query("prefix").unwrap_or("").to_owned(),
            delimiter: ctx
                .query("delimiter")
                .filter(|d| !d.is_empty())
                .map(str::to_owned),
            max_keys: parse_max(ctx.query("max-keys"), "max-keys", MAX_KEYS)?,
            url: parse_encoding(ctx.query("encoding-type"))?,
        })
    }

    /// A key, prefix or marker as the answer carries it.
    fn enc(&self, s: &str) -> String {
        if self.url {
            url_encode(s)
        } else {
            s.to_owned()
        }
    }

    /// One page of the store's keys, after `start_after`.
    fn page(
        &self,
        ctx: &Ctx,
        bucket: &BucketName,
        start_after: Option<String>,
    ) -> Result<ListPage, S3Error> {
        Ok(ctx.store().list_objects(
            bucket,
            &ListQuery {
                prefix: self.prefix.clone(),
                delimiter: self.delimiter.clone(),
                start_after,
                max_keys: self.max_keys,
            },
        )?)
    }

    /// `MaxKeys`, `Delimiter`, `EncodingType` and `IsTruncated`.
    fn settings(&self, w: &mut ::xml::Writer, is_truncated: bool) {
        w.elem("MaxKeys", &self.max_keys.to_string());
        if let Some(d) = &self.delimiter {
            w.elem("Delimiter", &self.enc(d));
        }
        if self.url {
            w.elem("EncodingType", "url");
        }
        w.elem("IsTruncated", if is_truncated { "true" } else { "false" });
    }

    /// What an entry says of its object after its key: date, ETag, size, owner, class.
    fn object(&self, w: &mut ::xml::Writer, ctx: &Ctx, obj: &ObjectMeta, owner: bool) {
        w.elem("LastModified", &iso8601(obj.last_modified));
        w.elem("ETag", &format!("\"{}\"", obj.etag));
        w.elem("Size", &obj.size.to_string());
        if owner {
            self.owner(w, ctx, obj);
        }
        w.elem("StorageClass", "STANDARD");
    }

    /// The `Owner` of an entry.
    fn owner(&self, w: &mut ::xml::Writer, ctx: &Ctx, obj: &ObjectMeta) {
        w.open("Owner");
        w.elem("ID", &obj.acl.owner);
        w.elem("DisplayName", &ctx.display_name(&obj.acl.owner));
        w.close("Owner");
    }

    fn common_prefixes(&self, w: &mut ::xml::Writer, prefixes: &[String]) {
        for p in prefixes {
            w.open("CommonPrefixes");
            w.elem("Prefix", &self.enc(p));
            w.close("CommonPrefixes");
        }
    }
}

/// ListObjects / ListObjectsV2.
pub fn list_objects(ctx: &Ctx, bucket: &BucketName, v2: bool) -> Result<Response<Body>, S3Error> {
    let listing = Listing::parse(ctx, bucket, "s3:ListBucket")?;
    let enc = |s: &str| listing.enc(s);
    let prefix = &listing.prefix;
    let token = match ctx.query("continuation-token").filter(|_| v2) {
        Some(t) => Some(decode_token(t)?),
        None => None,
    };
    let start_after_param = ctx.query("start-after").filter(|_| v2).map(str::to_owned);
    let marker = ctx.query("marker").filter(|_| !v2).map(str::to_owned);
    let start_after = if v2 {
        token.clone().or_else(|| start_after_param.clone())
    } else {
        marker.clone()
    }
    .filter(|s| !s.is_empty());
    let fetch_owner = !v2
        || ctx
            .query("fetch-owner")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));

    let page = listing.page(ctx, bucket, start_after)?;

    let mut w = xml::document();
    w.open_with("ListBucketResult", &xml::S3_ROOT);
    w.elem("Name", bucket.as_str());
    // Botocore decodes a v2 Prefix but never a v1 one: S3 encodes only the former.
    w.elem("Prefix", &if v2 { enc(prefix) } else { prefix.clone() });
    if v2 {
        if let Some(t) = ctx.query("continuation-token") {
            w.elem("ContinuationToken", t);
        }
        if let Some(s) = &start_after_param {
            w.elem("StartAfter", &enc(s));
        }
        w.elem(
            "KeyCount",
            &(page.objects.len() + page.common_prefixes.len()).to_string(),
        );
    } else {
        w.elem("Marker", &enc(marker.as_deref().unwrap_or("")));
    }
    listing.settings(&mut w, page.is_truncated);
    if page.is_truncated {
        if let Some(next) = &page.next_marker {
            if v2 {
                w.elem("NextContinuationToken", &encode_token(next));
            } else {
                w.elem("NextMarker", &enc(next));
            }
        }
    }
    for (key, obj) in &page.objects {
        w.open("Contents");
        w.elem("Key", &enc(key.as_str()));
        listing.object(&mut w, ctx, obj, fetch_owner);
        w.close("Contents");
    }
    listing.common_prefixes(&mut w, &page.common_prefixes);
    w.close("ListBucketResult");
    Ok(xml_response(StatusCode::OK, w.finish()))
}

/// ListObjectVersions: every version and delete marker, by key, newest first within a key,
/// paged by `key-marker` and `version-id-marker`. A never-versioned bucket's objects are
/// each their key's latest and only version, the `null` one.
pub fn list_object_versions(ctx: &Ctx, bucket: &BucketName) -> Result<Response<Body>, S3Error> {
    let listing = Listing::parse(ctx, bucket, "s3:ListBucketVersions")?;
    let enc = |s: &str| listing.enc(s);
    let key_marker = ctx.query("key-marker").unwrap_or("").to_owned();
    let version_marker = ctx.query("version-id-marker").unwrap_or("");
    if !version_marker.is_empty() && key_marker.is_empty() {
        return Err(S3Error::InvalidArgument(
            "A version-id marker cannot be specified without a key marker.".into(),
        ));
    }
    let version_ref = match version_marker {
        "" => None,
        v => Some(
            VersionRef::parse(v)
                .ok_or_else(|| S3Error::InvalidArgument("Invalid version id specified".into()))?,
        ),
    };
    let page = ctx.store().list_versions(
        bucket,
        &VersionQuery {
            prefix: listing.prefix.clone(),
            delimiter: listing.delimiter.clone(),
            key_marker: Some(key_marker.clone()).filter(|k| !k.is_empty()),
            version_marker: version_ref,
            max_keys: listing.max_keys,
        },
    )?;

    let mut w = xml::document();
    w.open_with("ListVersionsResult", &xml::S3_ROOT);
    w.elem("Name", bucket.as_str());
    w.elem("Prefix", &enc(&listing.prefix));
    w.elem("KeyMarker", &enc(&key_marker));
    w.elem("VersionIdMarker", version_marker);
    listing.settings(&mut w, page.is_truncated);
    if let Some((key, version)) = page.next_marker.as_ref().filter(|_| page.is_truncated) {
        w.elem("NextKeyMarker", &enc(key));
        if let Some(v) = version {
            w.elem("NextVersionIdMarker", v);
        }
    }
    for (key, obj, latest) in &page.versions {
        let element = if obj.delete_marker {
            "DeleteMarker"
        } else {
            "Version"
        };
        w.open(element);
        w.elem("Key", &enc(key.as_str()));
        w.elem("VersionId", obj.version_label());
        w.elem("IsLatest", if *latest { "true" } else { "false" });
        if obj.delete_marker {
            w.elem("LastModified", &iso8601(obj.last_modified));
            listing.owner(&mut w, ctx, obj);
        } else {
            listing.object(&mut w, ctx, obj, true);
        }
        w.close(element);
    }
    listing.common_prefixes(&mut w, &page.common_prefixes);
    w.close("ListVersionsResult");
    Ok(xml_response(StatusCode::OK, w.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_keys() {
        assert_eq!(parse_max(None, "max-keys", 1000).expect("ok"), 1000);
        assert_eq!(parse_max(Some("5"), "max-keys", 1000).expect("ok"), 5);
        assert_eq!(parse_max(Some("0"), "max-keys", 1000).expect("ok"), 0);
        assert_eq!(parse_max(Some("5000"), "max-keys", 1000).expect("ok"), 1000);
        assert_eq!(
            parse_max(Some("99999999999999999"), "max-keys", 1000).expect("ok"),
            1000
        );
        for bad in ["-1", "abc", "", "1.5"] {
            assert!(matches!(
                parse_max(Some(bad), "max-keys", 1000),
                Err(S3Error::InvalidArgument(_))
            ));
        }
    }

    #[test]
    fn tokens_round_trip() {
        for key in ["a", "a/b c+d", "été\u{1}"] {
            assert_eq!(decode_token(&encode_token(key)).expect("ok"), key);
        }
        assert!(decode_token("!!!").is_err());
        assert!(parse_encoding(Some("url")).expect("ok"));
        assert!(parse_encoding(Some("xml")).is_err());
    }
}

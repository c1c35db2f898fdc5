//! CopyObject and UploadPartCopy: the source is read through the store and streamed into a
//! new staged body, never touched in place.

use axum::body::Body;
use http::{Response, StatusCode};
use percent_encoding::percent_decode_str;

use super::access::{authorize, new_object_acl, AclCheck, Want};
use super::auth::MAX_OBJECT_SIZE;
use super::error::S3Error;
use super::get::check_conditions;
use super::multipart::{replaced_part_size, upload_for};
use super::put::{add_checksum_header, object_headers, replaced_size, write_condition};
use super::router::{strip_mount, ObjectPath, PartNumber, UploadId};
use super::xml;
use super::{iso8601, versioning, xml_response, Ctx};
use crate::acl::Permission;
use crate::names::{BucketName, ObjectKey, MAX_KEY_LEN};
use crate::store::{BucketMeta, DigestRequest, NewObject, ObjectMeta, VersionRef};

/// Parses `x-amz-copy-source`: `[/]bucket/key[?versionId=...]`, the key URL-encoded.
pub fn parse_copy_source(value: &str) -> Result<ObjectPath, S3Error> {
    let (path, version) = match value.split_once('?') {
        Some((p, q)) => (p, q.strip_prefix("versionId=")),
        None => (value, None),
    };
    let version = version
        .map(|v| {
            VersionRef::parse(v)
                .ok_or_else(|| S3Error::InvalidArgument("Invalid version id specified".into()))
        })
        .transpose()?;
    let path = strip_mount(path);
    let path = path.strip_prefix('/').unwrap_or(path);
    let (b, k) = path.split_once('/').ok_or_else(|| {
        S3Error::InvalidArgument(
            "Copy Source must mention the source bucket and key: sourcebucket/sourcekey".into(),
        )
    })?;
    let bucket = BucketName::parse(b).ok_or(S3Error::InvalidBucketName)?;
    let raw: Vec<u8> = percent_decode_str(k).collect();
    if raw.len() > MAX_KEY_LEN {
        return Err(S3Error::KeyTooLong);
    }
    let key = String::from_utf8(raw)
        .ok()
        .and_then(|k| ObjectKey::parse(&k))
        .ok_or_else(|| {
            S3Error::InvalidArgument(
                "Copy Source must mention the source bucket and key: sourcebucket/sourcekey".into(),
            )
        })?;
    Ok(ObjectPath {
        bucket,
        key,
        version,
    })
}

/// Looks up the copy source (its current version or the one it names), checks the caller
/// may read it and its conditions hold; with the source bucket's record.
fn source(ctx: &Ctx) -> Result<(ObjectPath, BucketMeta, ObjectMeta), S3Error> {
    let value = ctx
        .header("x-amz-copy-source")
        .ok_or_else(|| S3Error::InvalidArgument("Missing x-amz-copy-source.".into()))?;
    let path = parse_copy_source(value)?;
    let bmeta = ctx.store().bucket(&path.bucket)?;
    let meta = match versioning::addressed(ctx, &path) {
        Err(S3Error::DeleteMarkerAsked { .. }) => {
            return Err(S3Error::InvalidRequest(
                "The source of a copy request may not specifically refer to a delete marker by version id.".into(),
            ))
        }
        other => other?,
    };
    authorize(
        ctx,
        &bmeta,
        Want::addressed(("s3:GetObject", "s3:GetObjectVersion"), &path, &meta),
        AclCheck::Permission(&meta.acl, Permission::Read),
    )?;
    check_conditions(
        &ctx.headers,
        "x-amz-copy-source-",
        &meta.etag,
        meta.last_modified,
        true,
    )?;
    Ok((path, bmeta, meta))
}

/// CopyObject, with `x-amz-metadata-directive` COPY (default) or REPLACE.
pub async fn copy_object(ctx: &Ctx, object: &ObjectPath) -> Result<Response<Body>, S3Error> {
    let ObjectPath { bucket, key, .. } = object;
    let bmeta = ctx.store().bucket(bucket)?;
    authorize(
        ctx,
        &bmeta,
        Want::object("s3:PutObject", key, None),
        AclCheck::Permission(&bmeta.acl, Permission::Write),
    )?;
    let condition = write_condition(&ctx.headers);
    let (src_path, src_bmeta, src) = source(ctx)?;
    let (src_bucket, src_key) = (&src_path.bucket, &src_path.key);
    let replace = match ctx.header("x-amz-metadata-directive").map(str::trim) {
        None => false,
        Some(d) if d.eq_ignore_ascii_case("COPY") => false,
        Some(d) if d.eq_ignore_ascii_case("REPLACE") => true,
        Some(_) => {
            return Err(S3Error::InvalidArgument(
                "Unknown metadata directive.".into(),
            ))
        }
    };
    if src_bucket == bucket && src_key == key && src_path.version.is_none() && !replace {
        return Err(S3Error::InvalidRequest(
            "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.".into(),
        ));
    }
    if src.size > MAX_OBJECT_SIZE {
        return Err(S3Error::InvalidRequest(format!(
            "The specified copy source is larger than the maximum allowable size for a copy source: {MAX_OBJECT_SIZE}"
        )));
    }
    let headers = if replace {
        object_headers(&ctx.headers)?
    } else {
        src.headers.clone()
    };
    // Tags follow `x-amz-tagging-directive`: the source's (COPY, default) or the request's.
    let tags = match ctx.header("x-amz-tagging-directive").map(str::trim) {
        None => src.tags.clone(),
        Some(d) if d.eq_ignore_ascii_case("COPY") => src.tags.clone(),
        Some(d) if d.eq_ignore_ascii_case("REPLACE") => {
            super::tagging::from_header(&ctx.headers)?.unwrap_or_default()
        }
        Some(_) => {
            return Err(S3Error::InvalidArgument(
                "Unknown tagging directive.".into(),
            ))
        }
    };
    let owner = ctx
        .account_id()
        .map(str::to_owned)
        .unwrap_or_else(|_| bmeta.acl.owner.clone());
    let acl = ctx.requested_acl(&owner, &bmeta.acl.owner).await?;
    let acl = new_object_acl(&bmeta, acl, ctx.header("x-amz-acl"))?;
    let quotas = ctx.quotas().await;
    ctx.check_room(
        &quotas,
        &bmeta.acl.owner,
        Some(src.size),
        replaced_size(ctx, &bmeta, key),
    )?;
    let alg = src.checksum.as_ref().map(|c| c.0);
    let stream = ctx.store().read(src_bucket, src_key, &src, 0, src.size)?;
    let staged = ctx
        .store()
        .stage(
            stream,
            Some(src.size),
            DigestRequest {
                sha256: false,
                checksum: alg,
            },
        )
        .await?;
    let checksum = staged.digests.checksum.as_ref().map(|(a, raw)| {
        (
            *a,
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, raw),
        )
    });
    let object = NewObject {
        headers,
        checksum: checksum.clone(),
        acl,
        tags,
        condition,
        lock: super::lock::requested(
            ctx,
            &ctx.headers,
            super::lock::Writer {
                principal: ctx.principal.as_ref(),
                bucket: &bmeta,
                key,
            },
        )?,
    };
    let meta = ctx
        .store()
        .commit_object(bucket, key, staged, object, &quotas)
        .await?;
    let mut w = xml::document();
    w.open_with("CopyObjectResult", &xml::S3_ROOT);
    w.elem("LastModified", &iso8601(meta.last_modified));
    w.elem("ETag", &format!("\"{}\"", meta.etag));
    w.close("CopyObjectResult");
    let mut resp = xml_response(StatusCode::OK, w.finish());
    add_checksum_header(&mut resp, &checksum);
    add_copy_source_version(resp.headers_mut(), &src_bmeta, &src);
    versioning::add_written_version(resp.headers_mut(), &meta);
    Ok(resp)
}

/// Adds `x-amz-copy-source-version-id`: the version copied, when its bucket versions.
fn add_copy_source_version(h: &mut http::HeaderMap, bucket: &BucketMeta, src: &ObjectMeta) {
    let mut named = http::HeaderMap::new();
    versioning::add_version_header(&mut named, bucket, src);
    if let Some(v) = named.remove(versioning::VERSION_HEADER) {
        h.insert("x-amz-copy-source-version-id", v);
    }
}

/// Parses `x-amz-copy-source-range: bytes=first-last` against the source size.
pub fn parse_copy_range(value: Option<&str>, size: u64) -> Result<(u64, u64), S3Error> {
    let Some(v) = value else {
        return Ok((0, size));
    };
    let bad = || {
        S3Error::InvalidArgument("The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy".into())
    };
    let spec = v.trim().strip_prefix("bytes=").ok_or_else(bad)?;
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let first: u64 = a.trim().parse().map_err(|_| bad())?;
    let last: u64 = b.trim().parse().map_err(|_| bad())?;
    if last < first {
        return Err(bad());
    }
    if last >= size {
        return Err(S3Error::InvalidArgument(format!(
            "Range specified is not valid for source object of size: {size}"
        )));
    }
    Ok((first, last - first + 1))
}

/// UploadPartCopy: a part filled from (a range of) an existing object.
pub async fn upload_part_copy(
    ctx: &Ctx,
    object: &ObjectPath,
    upload_id: &UploadId,
    part_number: PartNumber,
) -> Result<Response<Body>, S3Error> {
    let (upload, owner) = upload_for(ctx, object, upload_id, "s3:PutObject")?;
    let (src_path, _, src) = source(ctx)?;
    let (offset, len) = parse_copy_range(ctx.header("x-amz-copy-source-range"), src.size)?;
    if len > MAX_OBJECT_SIZE {
        return Err(S3Error::EntityTooLarge);
    }
    let quotas = ctx.quotas().await;
    ctx.check_room(
        &quotas,
        &owner,
        Some(len),
        replaced_part_size(ctx, &upload, part_number)?,
    )?;
    let stream = ctx
        .store()
        .read(&src_path.bucket, &src_path.key, &src, offset, len)?;
    let staged = ctx
        .store()
        .stage(
            stream,
            Some(len),
            DigestRequest {
                sha256: false,
                checksum: upload.checksum_algorithm,
            },
        )
        .await?;
    let checksum =
        staged.digests.checksum.as_ref().map(|(_, raw)| {
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, raw)
        });
    let part = ctx
        .store()
        .commit_part(&upload, part_number.get(), staged, checksum, &quotas)
        .await?;
    let mut w = xml::document();
    w.open_with("CopyPartResult", &xml::S3_ROOT);
    w.elem("LastModified", &iso8601(part.last_modified));
    w.elem("ETag", &format!("\"{}\"", part.etag));
    w.close("CopyPartResult");
    Ok(xml_response(StatusCode::OK, w.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_sources() {
        let p = parse_copy_source("/bkt/a%20b%2Bc").expect("ok");
        assert_eq!((p.bucket.as_str(), p.key.as_str()), ("bkt", "a b+c"));
        assert_eq!(p.version, None);
        let p = parse_copy_source("bkt/dir/x?versionId=null").expect("ok");
        assert_eq!((p.bucket.as_str(), p.key.as_str()), ("bkt", "dir/x"));
        assert_eq!(p.version, Some(VersionRef::Null));
        let id = "000000000000000a00000000000000ff";
        let p = parse_copy_source(&format!("bkt/x?versionId={id}")).expect("ok");
        assert_eq!(p.version, Some(VersionRef::Id(id.into())));
        let p = parse_copy_source("/services/Walrus/bkt/x").expect("ok");
        assert_eq!((p.bucket.as_str(), p.key.as_str()), ("bkt", "x"));
        assert!(parse_copy_source("bkt").is_err());
        assert!(parse_copy_source("bkt/").is_err());
        assert!(parse_copy_source("bkt/x?versionId=abc").is_err());
        assert!(matches!(
            parse_copy_source("Bad_B/x"),
            Err(S3Error::InvalidBucketName)
        ));
    }

    #[test]
    fn copy_ranges() {
        assert_eq!(parse_copy_range(None, 10).expect("ok"), (0, 10));
        assert_eq!(parse_copy_range(Some("bytes=2-5"), 10).expect("ok"), (2, 4));
        assert!(parse_copy_range(Some("bytes=2-10"), 10).is_err());
        assert!(parse_copy_range(Some("bytes=5-2"), 10).is_err());
        assert!(parse_copy_range(Some("bytes=-2"), 10).is_err());
    }
}

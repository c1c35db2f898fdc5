//! Versioning: Get/PutBucketVersioning, and what every object operation shares about
//! versions — the version a request addresses (`versionId`), how a delete marker answers,
//! and the `x-amz-version-id` header.

use axum::body::Body;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use super::auth::read_small_body;
use super::bucket::owned;
use super::error::S3Error;
use super::ident::Payload;
use super::router::ObjectPath;
use super::xml::{self, MAX_XML_BODY};
use super::{xml_response, Ctx};
use crate::names::BucketName;
use crate::store::{BucketMeta, ObjectMeta, StoreError, VersionRef, Versioning};

/// The header naming the version a response is about.
pub const VERSION_HEADER: &str = "x-amz-version-id";
/// The header saying a response is about a delete marker.
pub const DELETE_MARKER_HEADER: &str = "x-amz-delete-marker";

/// GetBucketVersioning (the owner's): an empty configuration while versioning was never
/// turned on, else its status.
pub fn get_bucket_versioning(ctx: &Ctx, bucket: &BucketName) -> Result<Response<Body>, S3Error> {
    let meta = owned(ctx, bucket, "s3:GetBucketVersioning")?;
    let mut w = xml::document();
    match meta.versioning {
        None => {
            w.empty("VersioningConfiguration", &xml::S3_ROOT);
        }
        Some(state) => {
            w.open_with("VersioningConfiguration", &xml::S3_ROOT);
            w.elem("Status", status_name(state));
            w.close("VersioningConfiguration");
        }
    }
    Ok(xml_response(StatusCode::OK, w.finish()))
}

fn status_name(state: Versioning) -> &'static str {
    match state {
        Versioning::Enabled => "Enabled",
        Versioning::Suspended => "Suspended",
    }
}

/// The status a `VersioningConfiguration` document asks for; `None` when it names none
/// (AWS then changes nothing). MFA delete cannot be turned on: Walrus has no MFA devices.
pub fn parse(body: &[u8]) -> Result<Option<Versioning>, S3Error> {
    let root = xml::parse(body)?;
    if root.name != "VersioningConfiguration" {
        return Err(S3Error::MalformedXml);
    }
    if let Some(mfa) = root.child_text("MfaDelete").map(str::trim) {
        match mfa {
            "Disabled" => {}
            "Enabled" => {
                return Err(S3Error::InvalidArgument(
                    "MFA delete cannot be enabled: Walrus has no MFA devices.".into(),
                ))
            }
            _ => return Err(S3Error::MalformedXml),
        }
    }
    match root.child_text("Status").map(str::trim) {
        None => Ok(None),
        Some("Enabled") => Ok(Some(Versioning::Enabled)),
        Some("Suspended") => Ok(Some(Versioning::Suspended)),
        Some(_) => Err(S3Error::MalformedXml),
    }
}

/// PutBucketVersioning (the owner's): Enabled or Suspended. A bucket that never versioned
/// may be "suspended" too: it then writes null versions, as AWS does.
pub async fn put_bucket_versioning(
    ctx: &Ctx,
    bucket: &BucketName,
    body: Body,
    payload: Payload,
) -> Result<Response<Body>, S3Error> {
    owned(ctx, bucket, "s3:PutBucketVersioning")?;
    let body = read_small_body(body, payload, &ctx.headers, MAX_XML_BODY).await?;
    let Some(state) = parse(&body)? else {
        return Ok(super::empty_response(StatusCode::OK));
    };
    // Checked in the update: lock turned on meanwhile is seen.
    ctx.store().update_bucket(bucket, |meta| {
        if meta.object_lock.is_some() && state == Versioning::Suspended {
            return Err(StoreError::InvalidBucketState(
                "An Object Lock configuration is present on this bucket, so the versioning state cannot be changed.",
            ));
        }
        meta.versioning = Some(state);
        Ok(())
    })?;
    Ok(super::empty_response(StatusCode::OK))
}

/// The version `object` addresses: the current one, or `versionId`'s. A delete marker is
/// no object: on top it answers 404 NoSuchKey, asked for by id 405 MethodNotAllowed, both
/// saying what it is in their headers; so does a key with no version at all.
pub fn addressed(ctx: &Ctx, object: &ObjectPath) -> Result<ObjectMeta, S3Error> {
    let meta =
        match ctx
            .store()
            .object_version(&object.bucket, &object.key, object.version.as_ref())
        {
            Err(StoreError::NoSuchKey) => {
                return Err(S3Error::NoCurrentVersion {
                    delete_marker: None,
                })
            }
            other => other?,
        };
    if meta.delete_marker {
        let version_id = meta.version_label().to_owned();
        return Err(match object.version {
            Some(_) => S3Error::DeleteMarkerAsked { version_id },
            None => S3Error::NoCurrentVersion {
                delete_marker: Some(version_id),
            },
        });
    }
    Ok(meta)
}

/// Changes the metadata of the version `authorized` (read, and the caller's rights checked
/// on it, before): by its id, and for a null version only if it is still the one read
/// (`OperationAborted` when another write replaced it meanwhile). The changed record back.
pub fn update_authorized(
    ctx: &Ctx,
    object: &ObjectPath,
    authorized: &ObjectMeta,
    change: impl FnOnce(&mut ObjectMeta) -> Result<(), StoreError>,
) -> Result<ObjectMeta, S3Error> {
    let version = match &authorized.version_id {
        Some(id) => VersionRef::Id(id.clone()),
        None => VersionRef::Null,
    };
    let mut changed = None;
    ctx.store()
        .update_object(&object.bucket, &object.key, Some(&version), |meta| {
            if meta.last_modified != authorized.last_modified || meta.etag != authorized.etag {
                return Err(StoreError::Changed);
            }
            change(meta)?;
            changed = Some(meta.clone());
            Ok(())
        })?;
    changed.ok_or_else(|| S3Error::internal("the object update made no change"))
}

/// The headers of an answer about a delete marker (`Some`), or about a key that has none
/// and no object either (`None`: `x-amz-delete-marker: false`, as RGW says and tools read).
pub fn marker_headers(marker: Option<&str>) -> Vec<(HeaderName, HeaderValue)> {
    let flag = HeaderValue::from_static(if marker.is_some() { "true" } else { "false" });
    let mut headers = vec![(HeaderName::from_static(DELETE_MARKER_HEADER), flag)];
    if let Some(v) = marker.and_then(|m| HeaderValue::from_str(m).ok()) {
        headers.push((HeaderName::from_static(VERSION_HEADER), v));
    }
    headers
}

/// Adds `x-amz-version-id` to an answer about a version of a bucket that versions (or once
/// did): "null" for its null version. A never-versioned bucket's objects have no version
/// to name.
pub fn add_version_header(h: &mut HeaderMap, bucket: &BucketMeta, meta: &ObjectMeta) {
    if bucket.versioning.is_some() || meta.version_id.is_some() {
        if let Ok(v) = HeaderValue::from_str(meta.version_label()) {
            h.insert(VERSION_HEADER, v);
        }
    }
}

/// Adds `x-amz-version-id` to the answer of a write that made a version with an id (a
/// bucket with versioning enabled): S3 names no null version it writes.
pub fn add_written_version(h: &mut HeaderMap, meta: &ObjectMeta) {
    if let Some(v) = meta
        .version_id
        .as_deref()
        .and_then(|id| HeaderValue::from_str(id).ok())
    {
        h.insert(VERSION_HEADER, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configurations() {
        let doc = |inner: &str| {
            format!(
                r#"<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">{inner}</VersioningConfiguration>"#
            )
        };
        assert_eq!(
            parse(doc("<Status>Enabled</Status>").as_bytes()).expect("ok"),
            Some(Versioning::Enabled)
        );
        assert_eq!(
            parse(doc("<Status>Suspended</Status><MfaDelete>Disabled</MfaDelete>").as_bytes())
                .expect("ok"),
            Some(Versioning::Suspended)
        );
        assert_eq!(parse(doc("").as_bytes()).expect("ok"), None);
        assert!(matches!(
            parse(doc("<Status>On</Status>").as_bytes()),
            Err(S3Error::MalformedXml)
        ));
        assert!(matches!(
            parse(doc("<MfaDelete>Enabled</MfaDelete>").as_bytes()),
            Err(S3Error::InvalidArgument(_))
        ));
        assert!(matches!(
            parse(b"<Versioning/>"),
            Err(S3Error::MalformedXml)
        ));
    }
}

//! DeleteObject and DeleteObjects (the `POST ?delete` batch, with Quiet mode and per-key
//! errors).

use axum::body::Body;
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use super::access::{authorize, AclCheck, Want};
use super::auth::read_small_body;
use super::error::S3Error;
use super::ident::Payload;
use super::put::CHECKSUMS;
use super::router::ObjectPath;
use super::versioning::{DELETE_MARKER_HEADER, VERSION_HEADER};
use super::xml::{self, MAX_XML_BODY};
use super::{empty_response, xml_response, Ctx};
use crate::acl::Permission;
use crate::names::{BucketName, ObjectKey, MAX_KEY_LEN};
use crate::store::{BucketMeta, DeleteCondition, Deleted, VersionRef, NULL_VERSION};

/// The most keys one DeleteObjects request may name.
pub const MAX_DELETE_KEYS: usize = 1000;

/// DeleteObject: 204 whether or not the key (or version) existed; in a versioned bucket,
/// without a version, a delete marker. The headers say which version went and whether it
/// was (or is) a delete marker.
pub async fn delete_object(ctx: &Ctx, object: &ObjectPath) -> Result<Response<Body>, S3Error> {
    let bmeta = ctx.store().bucket(&object.bucket)?;
    may_delete(ctx, &bmeta, &object.key, object.version.as_ref())?;
    let get = |name: &str| ctx.header(name).map(str::trim);
    let condition = DeleteCondition {
        etag: get("if-match").map(str::to_owned),
        last_modified: get("x-amz-if-match-last-modified-time")
            .map(|t| http_date_secs(t).ok_or_else(|| invalid_condition("Last-Modified time")))
            .transpose()?,
        size: get("x-amz-if-match-size")
            .map(|s| s.parse::<u64>().map_err(|_| invalid_condition("size")))
            .transpose()?,
    };
    let deleted = delete_one(ctx, &bmeta, &object.key, object.version.as_ref(), condition).await?;
    let mut resp = empty_response(StatusCode::NO_CONTENT);
    let h = resp.headers_mut();
    if deleted.delete_marker {
        h.insert(DELETE_MARKER_HEADER, HeaderValue::from_static("true"));
    }
    if object.version.is_some() || bmeta.versioning.is_some() {
        let label = deleted.version_id.as_deref().unwrap_or(NULL_VERSION);
        if let Ok(v) = HeaderValue::from_str(label) {
            h.insert(VERSION_HEADER, v);
        }
    }
    Ok(resp)
}

/// AccessDenied unless the caller may delete `key` (a version of it) from the bucket.
fn may_delete(
    ctx: &Ctx,
    bmeta: &BucketMeta,
    key: &ObjectKey,
    version: Option<&VersionRef>,
) -> Result<(), S3Error> {
    // Deleting a version for good is the bucket owner's (or its policy's): a bucket's WRITE
    // grant lets others add delete markers, never take versioning's history away.
    let (action, check) = match version {
        Some(_) => ("s3:DeleteObjectVersion", AclCheck::Owner(&bmeta.acl)),
        None => (
            "s3:DeleteObject",
            AclCheck::Permission(&bmeta.acl, Permission::Write),
        ),
    };
    authorize(ctx, bmeta, Want::object(action, key, None), check)
}

fn invalid_condition(what: &str) -> S3Error {
    S3Error::InvalidArgument(format!("The conditional delete's {what} is not valid."))
}

/// Seconds since the epoch of an HTTP date.
fn http_date_secs(s: &str) -> Option<u64> {
    let t = httpdate::parse_http_date(s).ok()?;
    t.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// Seconds since the epoch of an ISO 8601 time (DeleteObjects' `LastModifiedTime`).
fn iso8601_secs(s: &str) -> Option<u64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp()).ok()
}

/// Deletes `key` of the bucket `bmeta` describes, if `condition` holds: version `version`
/// for good, or the current version (a delete marker owned by the caller in a versioned
/// bucket).
async fn delete_one(
    ctx: &Ctx,
    bmeta: &BucketMeta,
    key: &ObjectKey,
    version: Option<&VersionRef>,
    condition: DeleteCondition,
) -> Result<Deleted, S3Error> {
    let bucket = BucketName::parse(&bmeta.name).ok_or(S3Error::NoSuchBucket)?;
    let deleted = match version {
        Some(v) => {
            let bypass = super::lock::bypasses_governance(ctx, bmeta, key);
            ctx.store()
                .delete_version(&bucket, key, v, condition, bypass)
                .await?
        }
        None => {
            let requester = ctx
                .principal
                .as_ref()
                .map_or(bmeta.acl.owner.as_str(), |p| p.account_id.as_str());
            ctx.store()
                .delete_object(&bucket, key, requester, condition)
                .await?
        }
    };
    Ok(deleted)
}

/// One object a `<Delete>` document names: its key and, maybe, a version.
#[derive(Debug, PartialEq, Eq)]
pub struct DeleteEntry {
    /// The key as given (validated on its own: a bad one fails alone).
    pub key: String,
    /// The `VersionId` as given.
    pub version: Option<String>,
    /// What must hold of it (`ETag`, `LastModifiedTime`, `Size`).
    pub condition: DeleteCondition,
}

/// A parsed `<Delete>` document: quiet flag and objects in order.
#[derive(Debug, PartialEq, Eq)]
pub struct DeleteRequest {
    /// Report only errors.
    pub quiet: bool,
    /// Objects as given.
    pub objects: Vec<DeleteEntry>,
}

/// Parses a DeleteObjects body.
pub fn parse_delete(body: &[u8]) -> Result<DeleteRequest, S3Error> {
    let root = xml::parse(body)?;
    if root.name != "Delete" {
        return Err(S3Error::MalformedXml);
    }
    let quiet = match root.child_text("Quiet").map(str::trim) {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(_) => return Err(S3Error::MalformedXml),
    };
    let objects = root
        .children_named("Object")
        .map(|o| {
            let text = |name: &str| o.child_text(name).map(str::trim);
            Ok(DeleteEntry {
                key: o.child_text("Key").ok_or(S3Error::MalformedXml)?.to_owned(),
                version: text("VersionId").map(str::to_owned),
                condition: DeleteCondition {
                    etag: text("ETag").map(str::to_owned),
                    last_modified: text("LastModifiedTime")
                        .map(|t| iso8601_secs(t).ok_or(S3Error::MalformedXml))
                        .transpose()?,
                    size: text("Size")
                        .map(|s| s.parse::<u64>().map_err(|_| S3Error::MalformedXml))
                        .transpose()?,
                },
            })
        })
        .collect::<Result<Vec<_>, S3Error>>()?;
    if objects.is_empty() || objects.len() > MAX_DELETE_KEYS {
        return Err(S3Error::MalformedXml);
    }
    Ok(DeleteRequest { quiet, objects })
}

/// Whether the request carries a digest of its body: Content-MD5, an `x-amz-checksum-*`
/// header, or an `x-amz-checksum-*` trailer. AWS requires one on DeleteObjects.
pub fn has_integrity_header(headers: &HeaderMap) -> bool {
    headers.contains_key("content-md5")
        || CHECKSUMS
            .iter()
            .any(|(_, name, _)| headers.contains_key(*name))
        || headers
            .get_all("x-amz-trailer")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| {
                CHECKSUMS
                    .iter()
                    .any(|(_, name, _)| t.trim().eq_ignore_ascii_case(name))
            })
}

/// DeleteObjects.
pub async fn delete_objects(
    ctx: &Ctx,
    bucket: &BucketName,
    body: Body,
    payload: Payload,
) -> Result<Response<Body>, S3Error> {
    let bmeta = ctx.store().bucket(bucket)?;
    if !has_integrity_header(&ctx.headers) {
        return Err(S3Error::InvalidRequest(
            "Missing required header for this request: Content-MD5".into(),
        ));
    }
    let body = read_small_body(body, payload, &ctx.headers, MAX_XML_BODY).await?;
    let req = parse_delete(&body)?;

    let mut w = xml::document();
    w.open_with("DeleteResult", &xml::S3_ROOT);
    for DeleteEntry {
        key,
        version,
        condition,
    } in &req.objects
    {
        let version_ref = match version.as_deref().map(VersionRef::parse) {
            None => Ok(None),
            Some(Some(v)) => Ok(Some(v)),
            Some(None) => Err(S3Error::NoSuchVersion),
        };
        let outcome = match (ObjectKey::parse(key), version_ref) {
            (None, _) if key.len() > MAX_KEY_LEN => Err(S3Error::KeyTooLong),
            (None, _) => Err(S3Error::InvalidArgument("Invalid key.".into())),
            (Some(_), Err(e)) => Err(e),
            (Some(k), Ok(v)) => match may_delete(ctx, &bmeta, &k, v.as_ref()) {
                Ok(()) => delete_one(ctx, &bmeta, &k, v.as_ref(), condition.clone()).await,
                Err(e) => Err(e),
            },
        };
        match outcome {
            Ok(_) if req.quiet => {}
            Ok(deleted) => {
                w.open("Deleted");
                w.elem("Key", key);
                if let Some(v) = version {
                    w.elem("VersionId", v);
                }
                if deleted.delete_marker {
                    w.elem("DeleteMarker", "true");
                    let marker = deleted.version_id.as_deref().unwrap_or(NULL_VERSION);
                    w.elem("DeleteMarkerVersionId", marker);
                }
                w.close("Deleted");
            }
            Err(e) => {
                if let S3Error::Internal(source) = &e {
                    let error = rpc::error_chain(source.as_ref());
                    tracing::error!(request_id = ctx.request_id, error, "delete failed");
                }
                w.open("Error");
                w.elem("Key", key);
                if let Some(v) = version {
                    w.elem("VersionId", v);
                }
                w.elem("Code", e.code_and_status().0);
                w.elem("Message", &e.to_string());
                w.close("Error");
            }
        }
    }
    w.close("DeleteResult");
    Ok(xml_response(StatusCode::OK, w.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_objects_needs_a_digest() {
        let mut h = HeaderMap::new();
        assert!(!has_integrity_header(&h));
        h.insert("x-amz-sdk-checksum-algorithm", "CRC32".parse().expect("hv"));
        assert!(!has_integrity_header(&h));
        h.insert("x-amz-trailer", "x-amz-checksum-crc32".parse().expect("hv"));
        assert!(has_integrity_header(&h));
        for name in [
            "content-md5",
            "x-amz-checksum-crc32",
            "x-amz-checksum-sha256",
        ] {
            let mut h = HeaderMap::new();
            h.insert(name, "AAAAAA==".parse().expect("hv"));
            assert!(has_integrity_header(&h), "{name}");
        }
    }

    #[test]
    fn parses_delete_documents() {
        let body = br#"<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Quiet>true</Quiet>
            <Object><Key>a b</Key></Object><Object><Key>c&amp;d</Key><VersionId>null</VersionId></Object></Delete>"#;
        let req = parse_delete(body).expect("ok");
        assert!(req.quiet);
        assert_eq!(
            req.objects,
            vec![
                DeleteEntry {
                    key: "a b".into(),
                    version: None,
                    condition: DeleteCondition::default(),
                },
                DeleteEntry {
                    key: "c&d".into(),
                    version: Some("null".into()),
                    condition: DeleteCondition::default(),
                }
            ]
        );
        assert!(matches!(
            parse_delete(b"<Delete></Delete>"),
            Err(S3Error::MalformedXml)
        ));
        assert!(matches!(
            parse_delete(b"<Delete><Object/></Delete>"),
            Err(S3Error::MalformedXml)
        ));
        assert!(matches!(
            parse_delete(b"<Remove><Object><Key>a</Key></Object></Remove>"),
            Err(S3Error::MalformedXml)
        ));
        let many = format!(
            "<Delete>{}</Delete>",
            "<Object><Key>k</Key></Object>".repeat(1001)
        );
        assert!(matches!(
            parse_delete(many.as_bytes()),
            Err(S3Error::MalformedXml)
        ));
        let max = format!(
            "<Delete>{}</Delete>",
            "<Object><Key>k</Key></Object>".repeat(1000)
        );
        assert_eq!(
            parse_delete(max.as_bytes()).expect("ok").objects.len(),
            1000
        );
    }
}

//! DeleteObject and DeleteObjects (the `POST ?delete` batch, with Quiet mode and per-key
//! errors).

use axum::body::Body;
use http::{HeaderMap, Response, StatusCode};

use super::auth::{read_small_body, require};
use super::error::S3Error;
use super::ident::Payload;
use super::put::CHECKSUMS;
use super::router::ObjectPath;
use super::xml::{self, MAX_XML_BODY};
use super::{empty_response, xml_response, Ctx};
use crate::acl::Permission;
use crate::names::{BucketName, ObjectKey, MAX_KEY_LEN};

/// The most keys one DeleteObjects request may name.
pub const MAX_DELETE_KEYS: usize = 1000;

/// DeleteObject: 204 whether or not the key existed.
pub async fn delete_object(ctx: &Ctx, object: &ObjectPath) -> Result<Response<Body>, S3Error> {
    let bmeta = ctx.store().bucket(&object.bucket)?;
    require(&bmeta.acl, ctx.principal.as_ref(), Permission::Write)?;
    ctx.store()
        .delete_object(&object.bucket, &object.key)
        .await?;
    Ok(empty_response(StatusCode::NO_CONTENT))
}

/// A parsed `<Delete>` document: quiet flag and keys in order.
#[derive(Debug, PartialEq, Eq)]
pub struct DeleteRequest {
    /// Report only errors.
    pub quiet: bool,
    /// Keys as given (validated one by one, each failing on its own).
    pub keys: Vec<String>,
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
    let keys = root
        .children_named("Object")
        .map(|o| {
            o.child_text("Key")
                .map(str::to_owned)
                .ok_or(S3Error::MalformedXml)
        })
        .collect::<Result<Vec<_>, _>>()?;
    if keys.is_empty() || keys.len() > MAX_DELETE_KEYS {
        return Err(S3Error::MalformedXml);
    }
    Ok(DeleteRequest { quiet, keys })
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
    let allowed = require(&bmeta.acl, ctx.principal.as_ref(), Permission::Write);

    let mut w = xml::document();
    w.open_with("DeleteResult", &xml::S3_ROOT);
    for key in &req.keys {
        let outcome = match (&allowed, ObjectKey::parse(key)) {
            (Err(_), _) => Err(S3Error::access_denied()),
            (Ok(()), None) if key.len() > MAX_KEY_LEN => Err(S3Error::KeyTooLong),
            (Ok(()), None) => Err(S3Error::InvalidArgument("Invalid key.".into())),
            (Ok(()), Some(k)) => ctx
                .store()
                .delete_object(bucket, &k)
                .await
                .map(|_| ())
                .map_err(S3Error::from),
        };
        match outcome {
            Ok(()) if req.quiet => {}
            Ok(()) => {
                w.open("Deleted");
                w.elem("Key", key);
                w.close("Deleted");
            }
            Err(e) => {
                if let S3Error::Internal(source) = &e {
                    let error = rpc::error_chain(source.as_ref());
                    tracing::error!(request_id = ctx.request_id, error, "delete failed");
                }
                w.open("Error");
                w.elem("Key", key);
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
        assert_eq!(req.keys, vec!["a b", "c&d"]);
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
        assert_eq!(parse_delete(max.as_bytes()).expect("ok").keys.len(), 1000);
    }
}

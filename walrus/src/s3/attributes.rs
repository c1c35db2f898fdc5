//! GetObjectAttributes: what a client wants to know of an object without reading it (its
//! ETag, checksum, parts, storage class and size), chosen by `x-amz-object-attributes`,
//! the parts paged with `x-amz-max-parts` and `x-amz-part-number-marker`.

use axum::body::Body;
use http::{HeaderValue, Response, StatusCode};

use super::access::{authorize, AclCheck, Want};
use super::error::S3Error;
use super::list::parse_max;
use super::put::checksum_name;
use super::router::ObjectPath;
use super::{xml, xml_response, Ctx};
use crate::acl::Permission;
use crate::store::ObjectMeta;

/// The attributes a request may ask for.
const ATTRIBUTES: [&str; 5] = [
    "ETag",
    "Checksum",
    "ObjectParts",
    "StorageClass",
    "ObjectSize",
];
/// The most parts one answer lists (and the default).
const MAX_PARTS: usize = 1000;

/// The attributes named in `x-amz-object-attributes` (comma-separated, at least one), each
/// one of [`ATTRIBUTES`].
fn wanted(ctx: &Ctx) -> Result<Vec<&'static str>, S3Error> {
    let mut out = Vec::new();
    for value in ctx.headers.get_all("x-amz-object-attributes") {
        let text = value.to_str().map_err(|_| invalid_attribute("?"))?;
        for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let known = ATTRIBUTES
                .iter()
                .find(|a| a.eq_ignore_ascii_case(name))
                .ok_or_else(|| invalid_attribute(name))?;
            if !out.contains(known) {
                out.push(*known);
            }
        }
    }
    if out.is_empty() {
        return Err(S3Error::InvalidRequest(
            "The x-amz-object-attributes header specifying the attributes to be retrieved is either missing or empty".into(),
        ));
    }
    Ok(out)
}

fn invalid_attribute(name: &str) -> S3Error {
    S3Error::InvalidArgument(format!("Invalid attribute name specified: {name}"))
}

/// GetObjectAttributes: for whoever may read the object.
pub fn get_object_attributes(ctx: &Ctx, object: &ObjectPath) -> Result<Response<Body>, S3Error> {
    let bmeta = ctx.store().bucket(&object.bucket)?;
    let meta = super::versioning::addressed(ctx, object)?;
    authorize(
        ctx,
        &bmeta,
        Want::addressed(
            ("s3:GetObjectAttributes", "s3:GetObjectVersionAttributes"),
            object,
            &meta,
        ),
        AclCheck::Permission(&meta.acl, Permission::Read),
    )?;
    let wanted = wanted(ctx)?;
    let max_parts = parse_max(ctx.header("x-amz-max-parts"), "max-parts", MAX_PARTS)?;
    let marker = match ctx.header("x-amz-part-number-marker") {
        None => 0,
        Some(v) => v.trim().parse::<u32>().map(|n| n as usize).map_err(|_| {
            S3Error::InvalidArgument("Part number marker must be an integer".into())
        })?,
    };

    let mut w = xml::document();
    w.open_with("GetObjectAttributesResponse", &xml::S3_ROOT);
    for attribute in wanted {
        match attribute {
            "ETag" => {
                w.elem("ETag", &meta.etag);
            }
            "Checksum" => {
                if let Some((alg, value)) = &meta.checksum {
                    w.open("Checksum");
                    w.elem(&format!("Checksum{}", checksum_name(*alg)), value);
                    w.elem(
                        "ChecksumType",
                        if value.contains('-') {
                            "COMPOSITE"
                        } else {
                            "FULL_OBJECT"
                        },
                    );
                    w.close("Checksum");
                }
            }
            "ObjectParts" => parts(&mut w, &meta, marker, max_parts),
            "StorageClass" => {
                w.elem("StorageClass", "STANDARD");
            }
            _ => {
                w.elem("ObjectSize", &meta.size.to_string());
            }
        }
    }
    w.close("GetObjectAttributesResponse");
    let mut resp = xml_response(StatusCode::OK, w.finish());
    if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(meta.last_modified)) {
        resp.headers_mut().insert(http::header::LAST_MODIFIED, v);
    }
    super::versioning::add_version_header(resp.headers_mut(), &bmeta, &meta);
    Ok(resp)
}

/// The `ObjectParts` element: only a multipart object has parts; at most `max` after part
/// number `marker`.
fn parts(w: &mut ::xml::Writer, meta: &ObjectMeta, marker: usize, max: usize) {
    if meta.part_sizes.is_empty() {
        return;
    }
    let count = meta.part_sizes.len();
    let alg = meta.checksum.as_ref().map(|(alg, _)| *alg);
    let shown: Vec<usize> = (marker.saturating_add(1)..=count).take(max).collect();
    let truncated = shown.last().is_some_and(|last| *last < count);
    w.open("ObjectParts");
    w.elem("PartsCount", &count.to_string());
    w.elem("PartNumberMarker", &marker.to_string());
    if let Some(last) = shown.last() {
        w.elem("NextPartNumberMarker", &last.to_string());
    }
    w.elem("MaxParts", &max.to_string());
    w.elem("IsTruncated", if truncated { "true" } else { "false" });
    for n in shown {
        w.open("Part");
        w.elem("PartNumber", &n.to_string());
        w.elem("Size", &meta.part_sizes[n - 1].to_string());
        if let (Some(alg), Some(sum)) = (alg, meta.part_checksums.get(n - 1)) {
            w.elem(&format!("Checksum{}", checksum_name(alg)), sum);
        }
        w.close("Part");
    }
    w.close("ObjectParts");
}

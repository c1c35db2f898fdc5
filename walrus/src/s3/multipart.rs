//! Multipart uploads: CreateMultipartUpload, UploadPart, CompleteMultipartUpload,
//! AbortMultipartUpload, ListParts, ListMultipartUploads (UploadPartCopy is in `copy`).

use axum::body::Body;
use http::{HeaderValue, Response, StatusCode};

use super::access::{authorize, new_object_acl, AclCheck, Want};
use super::auth::read_small_body;
use super::error::S3Error;
use super::ident::Payload;
use super::list::{parse_encoding, parse_max};
use super::put::{
    add_checksum_header, checksum_name, object_headers, parse_checksum_name, receive, Room,
    CHECKSUMS,
};
use super::router::{ObjectPath, PartNumber, UploadId};
use super::xml::{self, url_encode, MAX_XML_BODY};
use super::{empty_response, etag_value, iso8601, xml_response, Ctx};
use crate::acl::Permission;
use crate::names::BucketName;
use crate::store::{ChecksumAlgorithm, ChecksumType, NewUpload, UploadMeta};

/// The upload `upload_id` of `object`, after checking the caller may do `action` (writing
/// the bucket, for its ACL); with the bucket's owner, who is charged for its parts.
pub fn upload_for(
    ctx: &Ctx,
    object: &ObjectPath,
    upload_id: &UploadId,
    action: &'static str,
) -> Result<(UploadMeta, String), S3Error> {
    let bmeta = ctx.store().bucket(&object.bucket)?;
    authorize(
        ctx,
        &bmeta,
        Want::object(action, &object.key, None),
        AclCheck::Permission(&bmeta.acl, Permission::Write),
    )?;
    let upload = ctx
        .store()
        .upload(&object.bucket, &object.key, upload_id.as_str())?;
    Ok((upload, bmeta.acl.owner))
}

/// The size of the part a new part `part_number` replaces (0 when there is none).
pub fn replaced_part_size(
    ctx: &Ctx,
    upload: &UploadMeta,
    part_number: PartNumber,
) -> Result<u64, S3Error> {
    let n = part_number.get();
    let (parts, _) = ctx.store().list_parts(upload, n - 1, 1)?;
    Ok(parts
        .first()
        .filter(|p| p.part_number == n)
        .map_or(0, |p| p.size))
}

/// CreateMultipartUpload.
pub async fn create(ctx: &Ctx, object: &ObjectPath) -> Result<Response<Body>, S3Error> {
    let ObjectPath { bucket, key, .. } = object;
    let bmeta = ctx.store().bucket(bucket)?;
    authorize(
        ctx,
        &bmeta,
        Want::object("s3:PutObject", key, None),
        AclCheck::Permission(&bmeta.acl, Permission::Write),
    )?;
    let owner = ctx
        .account_id()
        .map(str::to_owned)
        .unwrap_or_else(|_| bmeta.acl.owner.clone());
    let acl = ctx.requested_acl(&owner, &bmeta.acl.owner).await?;
    let acl = new_object_acl(&bmeta, acl, ctx.header("x-amz-acl"))?;
    let alg = match ctx.header("x-amz-checksum-algorithm") {
        Some(n) => Some(parse_checksum_name(n)?),
        None => None,
    };
    let checksum = match alg {
        Some(alg) => Some((alg, checksum_type(ctx, alg)?)),
        None => None,
    };
    let upload = ctx.store().create_upload(
        bucket,
        key,
        NewUpload {
            headers: object_headers(&ctx.headers)?,
            checksum,
            acl,
            tags: super::tagging::from_header(&ctx.headers)?.unwrap_or_default(),
            lock: super::lock::requested(
                ctx,
                &ctx.headers,
                super::lock::Writer {
                    principal: ctx.principal.as_ref(),
                    bucket: &bmeta,
                    key,
                },
            )?,
        },
    )?;
    let mut w = xml::document();
    w.open_with("InitiateMultipartUploadResult", &xml::S3_ROOT);
    w.elem("Bucket", bucket.as_str());
    w.elem("Key", key.as_str());
    w.elem("UploadId", &upload.upload_id);
    w.close("InitiateMultipartUploadResult");
    let mut resp = xml_response(StatusCode::OK, w.finish());
    if let Some((a, kind)) = checksum {
        resp.headers_mut().insert(
            "x-amz-checksum-algorithm",
            HeaderValue::from_static(checksum_name(a)),
        );
        resp.headers_mut()
            .insert(CHECKSUM_TYPE, HeaderValue::from_static(type_name(kind)));
    }
    Ok(resp)
}

/// The header naming how a multipart object's checksum is made.
const CHECKSUM_TYPE: &str = "x-amz-checksum-type";

fn type_name(kind: ChecksumType) -> &'static str {
    match kind {
        ChecksumType::Composite => "COMPOSITE",
        ChecksumType::FullObject => "FULL_OBJECT",
    }
}

/// The upload's checksum type: `x-amz-checksum-type`, else S3's default for the algorithm
/// (FULL_OBJECT for CRC-64/NVME, the only kind it has; COMPOSITE for the others). The SHAs
/// cannot be combined into a full-object checksum, nor CRC-64/NVME split into a composite.
fn checksum_type(ctx: &Ctx, alg: ChecksumAlgorithm) -> Result<ChecksumType, S3Error> {
    let kind = match ctx.header(CHECKSUM_TYPE).map(str::trim) {
        None if alg == ChecksumAlgorithm::Crc64Nvme => ChecksumType::FullObject,
        None => ChecksumType::Composite,
        Some(t) if t.eq_ignore_ascii_case("COMPOSITE") => ChecksumType::Composite,
        Some(t) if t.eq_ignore_ascii_case("FULL_OBJECT") => ChecksumType::FullObject,
        Some(t) => {
            return Err(S3Error::InvalidRequest(format!(
                "Value for x-amz-checksum-type header is invalid: {t}"
            )))
        }
    };
    let possible = match kind {
        ChecksumType::Composite => alg != ChecksumAlgorithm::Crc64Nvme,
        ChecksumType::FullObject => {
            !matches!(alg, ChecksumAlgorithm::Sha1 | ChecksumAlgorithm::Sha256)
        }
    };
    if !possible {
        return Err(S3Error::InvalidRequest(format!(
            "The {} checksum type cannot be used with the {} algorithm.",
            type_name(kind),
            checksum_name(alg)
        )));
    }
    Ok(kind)
}

/// UploadPart.
pub async fn upload_part(
    ctx: &Ctx,
    object: &ObjectPath,
    upload_id: &UploadId,
    part_number: PartNumber,
    body: Body,
    payload: Payload,
) -> Result<Response<Body>, S3Error> {
    let (upload, owner) = upload_for(ctx, object, upload_id, "s3:PutObject")?;
    // The parts of an upload that has a checksum algorithm all use it: the object's checksum
    // is made of theirs.
    if let Some(alg) = upload.checksum_algorithm {
        if let Some((_, name, _)) = CHECKSUMS
            .iter()
            .find(|(a, name, _)| *a != alg && ctx.headers.contains_key(*name))
        {
            return Err(S3Error::InvalidRequest(format!(
                "The upload was created with the {} checksum algorithm; this part carries {name}.",
                checksum_name(alg)
            )));
        }
    }
    let quotas = ctx.quotas().await;
    let room = Room {
        quotas: &quotas,
        owner: &owner,
        freed: replaced_part_size(ctx, &upload, part_number)?,
    };
    let received = receive(ctx, body, payload, upload.checksum_algorithm, room).await?;
    let checksum = received.checksum.clone();
    let part = ctx
        .store()
        .commit_part(
            &upload,
            part_number.get(),
            received.staged,
            checksum.as_ref().map(|c| c.1.clone()),
            &quotas,
        )
        .await?;
    let mut resp = empty_response(StatusCode::OK);
    resp.headers_mut()
        .insert(http::header::ETAG, etag_value(&part.etag));
    add_checksum_header(&mut resp, &checksum);
    Ok(resp)
}

/// Parses a CompleteMultipartUpload body into (part number, ETag without quotes), checking
/// the order S3 demands.
pub fn parse_complete(body: &[u8]) -> Result<Vec<(u32, String)>, S3Error> {
    let root = xml::parse(body)?;
    if root.name != "CompleteMultipartUpload" {
        return Err(S3Error::MalformedXml);
    }
    let mut parts = Vec::new();
    for p in root.children_named("Part") {
        let n = p
            .child_text("PartNumber")
            .and_then(|n| n.trim().parse::<u32>().ok())
            .ok_or(S3Error::MalformedXml)?;
        let etag = p.child_text("ETag").ok_or(S3Error::MalformedXml)?;
        let etag = etag.trim().trim_matches('"').to_ascii_lowercase();
        if !(1..=PartNumber::MAX).contains(&n) {
            return Err(S3Error::InvalidPart);
        }
        parts.push((n, etag));
    }
    if parts.is_empty() {
        return Err(S3Error::MalformedXml);
    }
    if parts.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err(S3Error::InvalidPartOrder);
    }
    Ok(parts)
}

/// CompleteMultipartUpload.
pub async fn complete(
    ctx: &Ctx,
    object: &ObjectPath,
    upload_id: &UploadId,
    body: Body,
    payload: Payload,
) -> Result<Response<Body>, S3Error> {
    let (upload, _) = upload_for(ctx, object, upload_id, "s3:PutObject")?;
    let condition = super::put::write_condition(&ctx.headers);
    // An `x-amz-checksum-*` header here is the checksum the client claims for the whole
    // object (as SDKs send it), not its body's: it is compared with the one the parts make.
    let claimed = CHECKSUMS
        .iter()
        .find(|(alg, _, _)| Some(*alg) == upload.checksum_algorithm)
        .and_then(|(_, name, _)| ctx.header(name))
        .map(str::to_owned);
    let mut headers = ctx.headers.clone();
    for (_, name, _) in CHECKSUMS {
        headers.remove(name);
    }
    let body = read_small_body(body, payload, &headers, MAX_XML_BODY).await?;
    let parts = parse_complete(&body)?;
    let meta = ctx
        .store()
        .complete_upload(&upload, &parts, claimed, condition)
        .await?;
    let ObjectPath { bucket, key, .. } = object;
    let mut w = xml::document();
    w.open_with("CompleteMultipartUploadResult", &xml::S3_ROOT);
    w.elem(
        "Location",
        &format!("/{}/{}", bucket, url_encode(key.as_str())),
    );
    w.elem("Bucket", bucket.as_str());
    w.elem("Key", key.as_str());
    w.elem("ETag", &format!("\"{}\"", meta.etag));
    if let Some((alg, value)) = &meta.checksum {
        w.elem(&format!("Checksum{}", checksum_name(*alg)), value);
        w.elem("ChecksumType", type_name(upload.checksum_type));
    }
    w.close("CompleteMultipartUploadResult");
    let mut resp = xml_response(StatusCode::OK, w.finish());
    super::versioning::add_written_version(resp.headers_mut(), &meta);
    Ok(resp)
}

/// AbortMultipartUpload.
pub async fn abort(
    ctx: &Ctx,
    object: &ObjectPath,
    upload_id: &UploadId,
) -> Result<Response<Body>, S3Error> {
    let (upload, _) = upload_for(ctx, object, upload_id, "s3:AbortMultipartUpload")?;
    ctx.store().abort_upload(&upload).await?;
    Ok(empty_response(StatusCode::NO_CONTENT))
}

fn owner_elems(ctx: &Ctx, w: &mut ::xml::Writer, name: &str, id: &str) {
    w.open(name);
    w.elem("ID", id);
    w.elem("DisplayName", &ctx.display_name(id));
    w.close(name);
}

/// ListParts.
pub fn list_parts(
    ctx: &Ctx,
    object: &ObjectPath,
    upload_id: &UploadId,
) -> Result<Response<Body>, S3Error> {
    let bucket = &object.bucket;
    let bmeta = ctx.store().bucket(bucket)?;
    authorize(
        ctx,
        &bmeta,
        Want::object("s3:ListMultipartUploadParts", &object.key, None),
        AclCheck::Permission(&bmeta.acl, Permission::Read),
    )?;
    let upload = ctx
        .store()
        .upload(bucket, &object.key, upload_id.as_str())?;
    let max = parse_max(ctx.query("max-parts"), "max-parts", 1000)?;
    let marker = match ctx.query("part-number-marker") {
        None => 0,
        Some(m) => m.trim().parse::<u32>().map_err(|_| {
            S3Error::InvalidArgument(
                "Provided part-number-marker not an integer or within integer range".into(),
            )
        })?,
    };
    let (parts, truncated) = ctx.store().list_parts(&upload, marker, max)?;
    let mut w = xml::document();
    w.open_with("ListPartsResult", &xml::S3_ROOT);
    w.elem("Bucket", bucket.as_str());
    w.elem("Key", &upload.key);
    w.elem("UploadId", &upload.upload_id);
    owner_elems(ctx, &mut w, "Initiator", &upload.acl.owner);
    owner_elems(ctx, &mut w, "Owner", &upload.acl.owner);
    w.elem("StorageClass", "STANDARD");
    w.elem("PartNumberMarker", &marker.to_string());
    if let Some(last) = parts.last() {
        w.elem("NextPartNumberMarker", &last.part_number.to_string());
    }
    w.elem("MaxParts", &max.to_string());
    w.elem("IsTruncated", if truncated { "true" } else { "false" });
    if let Some(a) = upload.checksum_algorithm {
        w.elem("ChecksumAlgorithm", checksum_name(a));
    }
    for p in &parts {
        w.open("Part");
        w.elem("PartNumber", &p.part_number.to_string());
        w.elem("LastModified", &iso8601(p.last_modified));
        w.elem("ETag", &format!("\"{}\"", p.etag));
        w.elem("Size", &p.size.to_string());
        if let (Some(a), Some(c)) = (upload.checksum_algorithm, &p.checksum) {
            w.elem(&format!("Checksum{}", checksum_name(a)), c);
        }
        w.close("Part");
    }
    w.close("ListPartsResult");
    Ok(xml_response(StatusCode::OK, w.finish()))
}

/// ListMultipartUploads. The store pages by (key, upload id); a delimiter rolls keys up
/// into common prefixes within the page.
pub fn list_uploads(ctx: &Ctx, bucket: &BucketName) -> Result<Response<Body>, S3Error> {
    let bmeta = ctx.store().bucket(bucket)?;
    authorize(
        ctx,
        &bmeta,
        Want::bucket("s3:ListBucketMultipartUploads"),
        AclCheck::Permission(&bmeta.acl, Permission::Read),
    )?;
    let prefix = ctx.query("prefix").unwrap_or("");
    let delimiter = ctx.query("delimiter").filter(|d| !d.is_empty());
    let key_marker = ctx.query("key-marker").filter(|s| !s.is_empty());
    let id_marker = ctx.query("upload-id-marker").filter(|s| !s.is_empty());
    let max = parse_max(ctx.query("max-uploads"), "max-uploads", 1000)?;
    let url = parse_encoding(ctx.query("encoding-type"))?;
    let enc = |s: &str| if url { url_encode(s) } else { s.to_owned() };
    let (uploads, truncated) = ctx
        .store()
        .list_uploads(bucket, prefix, key_marker, id_marker, max)?;

    let mut w = xml::document();
    w.open_with("ListMultipartUploadsResult", &xml::S3_ROOT);
    w.elem("Bucket", bucket.as_str());
    w.elem("KeyMarker", &enc(key_marker.unwrap_or("")));
    w.elem("UploadIdMarker", id_marker.unwrap_or(""));
    if let (true, Some(last)) = (truncated, uploads.last()) {
        w.elem("NextKeyMarker", &enc(&last.key));
        w.elem("NextUploadIdMarker", &last.upload_id);
    }
    w.elem("Prefix", &enc(prefix));
    if let Some(d) = delimiter {
        w.elem("Delimiter", &enc(d));
    }
    w.elem("MaxUploads", &max.to_string());
    if url {
        w.elem("EncodingType", "url");
    }
    w.elem("IsTruncated", if truncated { "true" } else { "false" });
    let mut prefixes: Vec<String> = Vec::new();
    for u in &uploads {
        if let Some(d) = delimiter {
            let rest = u.key.strip_prefix(prefix).unwrap_or(&u.key);
            if let Some(i) = rest.find(d) {
                let p = format!("{prefix}{}", &rest[..i + d.len()]);
                if prefixes.last() != Some(&p) {
                    prefixes.push(p);
                }
                continue;
            }
        }
        w.open("Upload");
        w.elem("Key", &enc(&u.key));
        w.elem("UploadId", &u.upload_id);
        owner_elems(ctx, &mut w, "Initiator", &u.acl.owner);
        owner_elems(ctx, &mut w, "Owner", &u.acl.owner);
        w.elem("StorageClass", "STANDARD");
        w.elem("Initiated", &iso8601(u.initiated));
        w.close("Upload");
    }
    for p in &prefixes {
        w.open("CommonPrefixes");
        w.elem("Prefix", &enc(p));
        w.close("CommonPrefixes");
    }
    w.close("ListMultipartUploadsResult");
    Ok(xml_response(StatusCode::OK, w.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_documents() {
        let body = br#"<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
          <Part><PartNumber>1</PartNumber><ETag>"AAA"</ETag></Part>
          <Part><ETag>bbb</ETag><PartNumber>3</PartNumber><ChecksumCRC32>x</ChecksumCRC32></Part>
        </CompleteMultipartUpload>"#;
        assert_eq!(
            parse_complete(body).expect("ok"),
            vec![(1, "aaa".to_owned()), (3, "bbb".to_owned())]
        );
        let unordered = b"<CompleteMultipartUpload><Part><PartNumber>2</PartNumber><ETag>a</ETag></Part><Part><PartNumber>1</PartNumber><ETag>b</ETag></Part></CompleteMultipartUpload>";
        assert!(matches!(
            parse_complete(unordered),
            Err(S3Error::InvalidPartOrder)
        ));
        let dup = b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>a</ETag></Part><Part><PartNumber>1</PartNumber><ETag>b</ETag></Part></CompleteMultipartUpload>";
        assert!(matches!(
            parse_complete(dup),
            Err(S3Error::InvalidPartOrder)
        ));
        assert!(matches!(
            parse_complete(b"<CompleteMultipartUpload/>"),
            Err(S3Error::MalformedXml)
        ));
        assert!(matches!(
            parse_complete(b"<CompleteMultipartUpload><Part><PartNumber>x</PartNumber><ETag>a</ETag></Part></CompleteMultipartUpload>"),
            Err(S3Error::MalformedXml)
        ));
        assert!(matches!(
            parse_complete(b"<CompleteMultipartUpload><Part><PartNumber>10001</PartNumber><ETag>a</ETag></Part></CompleteMultipartUpload>"),
            Err(S3Error::InvalidPart)
        ));
    }
}

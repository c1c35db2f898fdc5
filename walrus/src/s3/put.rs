//! PutObject, and what every upload shares with UploadPart: reading the stored headers and
//! metadata from the request, staging the body, and checking every digest the client gave
//! (signed SHA-256, Content-MD5, `x-amz-checksum-*` as header or trailer) before commit.

use axum::body::Body;
use base64::Engine;
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use super::access::{authorize, new_object_acl, AclCheck, Want};
use super::auth::{incoming, MAX_OBJECT_SIZE};
use super::error::S3Error;
use super::ident::Payload;
use super::router::ObjectPath;
use super::{empty_response, etag_value, Ctx};
use crate::acl::Permission;
use crate::names::{BucketName, ObjectKey};
use crate::store::{
    BucketMeta, ChecksumAlgorithm, DigestRequest, NewObject, ObjectHeaders, Staged, StorageQuotas,
    Versioning, WriteCondition,
};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Every checksum algorithm with its header name and S3's display name.
pub const CHECKSUMS: [(ChecksumAlgorithm, &str, &str); 5] = [
    (ChecksumAlgorithm::Crc32, "x-amz-checksum-crc32", "CRC32"),
    (ChecksumAlgorithm::Crc32c, "x-amz-checksum-crc32c", "CRC32C"),
    (
        ChecksumAlgorithm::Crc64Nvme,
        "x-amz-checksum-crc64nvme",
        "CRC64NVME",
    ),
    (ChecksumAlgorithm::Sha1, "x-amz-checksum-sha1", "SHA1"),
    (ChecksumAlgorithm::Sha256, "x-amz-checksum-sha256", "SHA256"),
];

/// The header name of an algorithm.
pub fn checksum_header(alg: ChecksumAlgorithm) -> &'static str {
    CHECKSUMS
        .iter()
        .find(|c| c.0 == alg)
        .map(|c| c.1)
        .unwrap_or("x-amz-checksum-crc32")
}

/// S3's name of an algorithm (`CRC32`...).
pub fn checksum_name(alg: ChecksumAlgorithm) -> &'static str {
    CHECKSUMS
        .iter()
        .find(|c| c.0 == alg)
        .map(|c| c.2)
        .unwrap_or("CRC32")
}

/// Parses an algorithm name (`CRC32`, `crc32c`...).
pub fn parse_checksum_name(name: &str) -> Result<ChecksumAlgorithm, S3Error> {
    CHECKSUMS
        .iter()
        .find(|c| c.2.eq_ignore_ascii_case(name.trim()))
        .map(|c| c.0)
        .ok_or_else(|| {
            S3Error::InvalidRequest(format!("Checksum algorithm {name} is not supported."))
        })
}

fn checksum_len(alg: ChecksumAlgorithm) -> usize {
    match alg {
        ChecksumAlgorithm::Crc32 | ChecksumAlgorithm::Crc32c => 4,
        ChecksumAlgorithm::Crc64Nvme => 8,
        ChecksumAlgorithm::Sha1 => 20,
        ChecksumAlgorithm::Sha256 => 32,
    }
}

/// Checks a base64 checksum value has the algorithm's size.
fn valid_checksum_value(alg: ChecksumAlgorithm, value: &str) -> bool {
    B64.decode(value.trim())
        .is_ok_and(|raw| raw.len() == checksum_len(alg))
}

/// The most bytes of user metadata (names after `x-amz-meta-`, plus values) an object may
/// carry, as in AWS.
pub const MAX_USER_METADATA: usize = 2048;

/// The stored headers and user metadata an upload carries; MetadataTooLarge when the
/// `x-amz-meta-*` names and values add up to more than [`MAX_USER_METADATA`] bytes.
pub fn object_headers(headers: &HeaderMap) -> Result<ObjectHeaders, S3Error> {
    let get = |name: &str| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let mut user_metadata: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(name, value)| {
            name.as_str().strip_prefix("x-amz-meta-").map(|n| {
                (
                    n.to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
        })
        .collect();
    user_metadata.sort();
    let size: usize = user_metadata.iter().map(|(n, v)| n.len() + v.len()).sum();
    if size > MAX_USER_METADATA {
        return Err(S3Error::MetadataTooLarge);
    }
    Ok(ObjectHeaders {
        content_type: get("content-type"),
        content_encoding: get("content-encoding")
            .map(|v| strip_aws_chunked(&v))
            .filter(|v| !v.is_empty()),
        content_disposition: get("content-disposition"),
        content_language: get("content-language"),
        cache_control: get("cache-control"),
        expires: get("expires"),
        user_metadata,
    })
}

/// `aws-chunked` is transfer framing, not a content coding of the stored object.
fn strip_aws_chunked(v: &str) -> String {
    v.split(',')
        .map(str::trim)
        .filter(|c| !c.eq_ignore_ascii_case("aws-chunked") && !c.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A staged, verified body and the checksum to store with it.
pub struct Received {
    /// The staged body.
    pub staged: Staged,
    /// Algorithm and base64 value, when the client asked for a checksum.
    pub checksum: Option<(ChecksumAlgorithm, String)>,
}

/// What a body may add to its bucket owner's usage, checked against the body's announced
/// length before any byte of it is received.
pub struct Room<'a> {
    /// The quotas in force.
    pub quotas: &'a StorageQuotas,
    /// The bucket's owner, who is charged.
    pub owner: &'a str,
    /// Bytes the write frees (the object or part it replaces).
    pub freed: u64,
}

/// Stages a request body and verifies it: signed SHA-256, Content-MD5, and the checksum
/// given as header or trailer (or computed for `default_alg`, e.g. announced at
/// CreateMultipartUpload); a body announced larger than the `room` left is refused first.
/// Nothing is visible until the caller commits.
pub async fn receive(
    ctx: &Ctx,
    body: Body,
    payload: Payload,
    default_alg: Option<ChecksumAlgorithm>,
    room: Room<'_>,
) -> Result<Received, S3Error> {
    let content_md5 = match ctx.headers.get("content-md5") {
        None => None,
        Some(v) => {
            let raw = B64
                .decode(v.as_bytes().trim_ascii())
                .map_err(|_| S3Error::InvalidDigest)?;
            let md5: [u8; 16] = raw.try_into().map_err(|_| S3Error::InvalidDigest)?;
            Some(md5)
        }
    };
    let header_checksum = CHECKSUMS
        .iter()
        .find_map(|(alg, name, _)| ctx.header(name).map(|v| (*alg, v.trim().to_owned())));
    if let Some((alg, value)) = &header_checksum {
        if !valid_checksum_value(*alg, value) {
            return Err(S3Error::InvalidRequest(format!(
                "Value for {} header is invalid.",
                checksum_header(*alg)
            )));
        }
    }
    let trailer_alg = match ctx.header("x-amz-trailer") {
        Some(t) => Some(
            CHECKSUMS
                .iter()
                .find(|c| c.1.eq_ignore_ascii_case(t.trim()))
                .map(|c| c.0)
                .ok_or_else(|| {
                    S3Error::InvalidRequest(format!("The trailer {t} is not supported."))
                })?,
        ),
        None => None,
    };
    let sdk_alg = match ctx.header("x-amz-sdk-checksum-algorithm") {
        Some(n) => Some(parse_checksum_name(n)?),
        None => None,
    };
    let alg = header_checksum
        .as_ref()
        .map(|c| c.0)
        .or(trailer_alg)
        .or(sdk_alg)
        .or(default_alg);

    let inc = incoming(body, payload, &ctx.headers, MAX_OBJECT_SIZE, true)?;
    ctx.check_room(room.quotas, room.owner, inc.expected_len, room.freed)?;
    let want = DigestRequest {
        sha256: inc.expect_sha256.is_some(),
        checksum: alg,
    };
    let staged = ctx
        .store()
        .stage(inc.stream, inc.expected_len, want)
        .await?;

    if let Some(expected) = inc.expect_sha256 {
        if staged.digests.sha256 != Some(expected) {
            return Err(S3Error::ContentSha256Mismatch);
        }
    }
    if let Some(md5) = content_md5 {
        if staged.digests.md5 != md5 {
            return Err(S3Error::BadDigest(
                "The Content-MD5 you specified did not match what we received.".into(),
            ));
        }
    }
    let trailers = inc
        .trailers
        .as_ref()
        .and_then(|slot| slot.lock().ok().and_then(|t| t.clone()))
        .unwrap_or_default();
    let expected_checksum = match &header_checksum {
        Some((_, v)) => Some(v.clone()),
        None => match trailer_alg {
            Some(a) => {
                let name = checksum_header(a);
                let value = trailers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.trim().to_owned());
                if let Some(v) = &value {
                    if !valid_checksum_value(a, v) {
                        return Err(S3Error::InvalidRequest(format!(
                            "Value for {name} trailing header is invalid."
                        )));
                    }
                }
                value
            }
            None => None,
        },
    };
    let checksum = match (alg, &staged.digests.checksum) {
        (Some(a), Some((got_alg, raw))) if *got_alg == a => {
            let computed = B64.encode(raw);
            if let Some(expected) = expected_checksum {
                if expected != computed {
                    return Err(S3Error::BadDigest(format!(
                        "The {} you specified did not match the calculated checksum.",
                        checksum_name(a)
                    )));
                }
            }
            Some((a, computed))
        }
        (Some(_), _) if expected_checksum.is_some() => {
            return Err(S3Error::internal(
                "the store did not compute the requested checksum",
            ))
        }
        _ => None,
    };
    Ok(Received { staged, checksum })
}

/// Adds the checksum header to an upload response.
pub fn add_checksum_header(
    resp: &mut Response<Body>,
    checksum: &Option<(ChecksumAlgorithm, String)>,
) {
    if let Some((alg, value)) = checksum {
        if let Ok(v) = HeaderValue::from_str(value) {
            resp.headers_mut().insert(checksum_header(*alg), v);
        }
    }
}

/// PutObject.
pub async fn put_object(
    ctx: &Ctx,
    object: &ObjectPath,
    body: Body,
    payload: Payload,
) -> Result<Response<Body>, S3Error> {
    let ObjectPath { bucket, key, .. } = object;
    let bmeta = ctx.store().bucket(bucket)?;
    authorize(
        ctx,
        &bmeta,
        Want::object("s3:PutObject", key, None),
        AclCheck::Permission(&bmeta.acl, Permission::Write),
    )?;
    let condition = write_condition(&ctx.headers);
    // Anonymous writes (public-read-write buckets) leave the object to the bucket owner.
    let owner = ctx
        .principal
        .as_ref()
        .map(|p| p.account_id.clone())
        .unwrap_or_else(|| bmeta.acl.owner.clone());
    let acl = ctx.requested_acl(&owner, &bmeta.acl.owner).await?;
    let acl = new_object_acl(&bmeta, acl, ctx.header("x-amz-acl"))?;
    let headers = object_headers(&ctx.headers)?;
    let tags = super::tagging::from_header(&ctx.headers)?.unwrap_or_default();
    let quotas = ctx.quotas().await;
    let room = Room {
        quotas: &quotas,
        owner: &bmeta.acl.owner,
        freed: replaced_size(ctx, &bmeta, key),
    };
    let received = receive(ctx, body, payload, None, room).await?;
    let object = NewObject {
        headers,
        checksum: received.checksum.clone(),
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
        .commit_object(bucket, key, received.staged, object, &quotas)
        .await?;
    let mut resp = empty_response(StatusCode::OK);
    resp.headers_mut()
        .insert(http::header::ETAG, etag_value(&meta.etag));
    super::versioning::add_written_version(resp.headers_mut(), &meta);
    add_checksum_header(&mut resp, &received.checksum);
    Ok(resp)
}

/// The size of the object a write to `key` of `bucket` replaces: its null version's, unless
/// versioning keeps it (0 when there is none).
pub fn replaced_size(ctx: &Ctx, bucket: &BucketMeta, key: &ObjectKey) -> u64 {
    if bucket.versioning == Some(Versioning::Enabled) {
        return 0;
    }
    let Some(name) = BucketName::parse(&bucket.name) else {
        return 0;
    };
    ctx.store()
        .object(&name, key)
        .ok()
        .filter(|meta| meta.version_id.is_none())
        .map_or(0, |meta| meta.size)
}

/// The preconditions of a conditional write: `If-None-Match: *` (only if no object is
/// there) or an ETag (only unless the current version has it, as RGW takes it), `If-Match`
/// with an ETag or `*` (only over that version, or any).
pub fn write_condition(headers: &HeaderMap) -> WriteCondition {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_owned())
    };
    WriteCondition {
        if_match: get("if-match"),
        if_none_match: get("if-none-match"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_metadata() {
        let mut h = HeaderMap::new();
        h.insert("content-type", "text/plain".parse().expect("hv"));
        h.insert("content-encoding", "aws-chunked, gzip".parse().expect("hv"));
        h.insert("x-amz-meta-Color", "blue".parse().expect("hv"));
        h.insert("x-amz-meta-a", "1".parse().expect("hv"));
        h.insert(
            "expires",
            "Thu, 01 Dec 1994 16:00:00 GMT".parse().expect("hv"),
        );
        let oh = object_headers(&h).expect("headers");
        assert_eq!(oh.content_type.as_deref(), Some("text/plain"));
        assert_eq!(oh.content_encoding.as_deref(), Some("gzip"));
        assert_eq!(
            oh.user_metadata,
            vec![("a".into(), "1".into()), ("color".into(), "blue".into())]
        );
        let mut h = HeaderMap::new();
        h.insert("content-encoding", "aws-chunked".parse().expect("hv"));
        assert_eq!(object_headers(&h).expect("headers").content_encoding, None);
    }

    #[test]
    fn user_metadata_is_limited_to_2_kb() {
        let mut h = HeaderMap::new();
        h.insert("x-amz-meta-ab", "v".repeat(1000).parse().expect("hv"));
        h.insert("x-amz-meta-cd", "v".repeat(1044).parse().expect("hv"));
        assert_eq!(
            object_headers(&h).expect("2048 bytes").user_metadata.len(),
            2
        );
        h.insert("x-amz-meta-e", "".parse().expect("hv"));
        assert!(matches!(object_headers(&h), Err(S3Error::MetadataTooLarge)));
        // Other headers do not count.
        let mut h = HeaderMap::new();
        h.insert("content-type", "t".repeat(4000).parse().expect("hv"));
        assert!(object_headers(&h).is_ok());
    }

    #[test]
    fn checksum_values() {
        assert!(valid_checksum_value(ChecksumAlgorithm::Crc32, "AAAAAA=="));
        assert!(!valid_checksum_value(ChecksumAlgorithm::Crc32, "AAAAAAAA"));
        assert!(!valid_checksum_value(ChecksumAlgorithm::Sha256, "AAAAAA=="));
        assert_eq!(
            parse_checksum_name("crc64nvme").expect("ok"),
            ChecksumAlgorithm::Crc64Nvme
        );
        assert!(parse_checksum_name("md5").is_err());
    }
}

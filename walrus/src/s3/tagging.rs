//! Tagging: Get/Put/DeleteObjectTagging, Get/Put/DeleteBucketTagging, and the
//! `x-amz-tagging` header that PutObject, CopyObject (with `x-amz-tagging-directive`) and
//! CreateMultipartUpload take. The `Tagging` document both ways, and the limits AWS sets.

use axum::body::Body;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use percent_encoding::percent_decode_str;

use super::access::{authorize, AclCheck, Want};
use super::auth::read_small_body;
use super::bucket::{configure, owned};
use super::error::S3Error;
use super::ident::Payload;
use super::router::ObjectPath;
use super::xml::{self, MAX_XML_BODY};
use super::{empty_response, versioning, xml_response, Ctx};
use crate::acl::Permission;
use crate::names::BucketName;
use crate::store::{BucketMeta, ObjectMeta, Tag};

/// The most tags an object carries.
pub const MAX_OBJECT_TAGS: usize = 10;
/// The most tags a bucket carries.
pub const MAX_BUCKET_TAGS: usize = 50;
/// The longest tag key, in Unicode characters.
const MAX_KEY_CHARS: usize = 128;
/// The longest tag value, in Unicode characters.
const MAX_VALUE_CHARS: usize = 256;

/// The header that carries an object's tags on writes, and its count on reads.
pub const TAGGING_HEADER: &str = "x-amz-tagging";
/// The header GetObject and HeadObject answer with the number of the object's tags.
pub const TAG_COUNT_HEADER: &str = "x-amz-tagging-count";

/// InvalidTag unless `tags` keeps to AWS' limits: at most `max`, keys of 1 to 128
/// characters not starting with `aws:`, values of up to 256, no key twice.
pub fn check(tags: &[Tag], max: usize) -> Result<(), S3Error> {
    if tags.len() > max {
        return Err(S3Error::InvalidTag(format!(
            "Object tags cannot be greater than {max}"
        )));
    }
    for (i, tag) in tags.iter().enumerate() {
        let chars = tag.key.chars().count();
        if chars == 0 || chars > MAX_KEY_CHARS {
            return Err(S3Error::InvalidTag(format!(
                "The TagKey you have provided is invalid: it must have 1 to {MAX_KEY_CHARS} characters"
            )));
        }
        if tag.value.chars().count() > MAX_VALUE_CHARS {
            return Err(S3Error::InvalidTag(format!(
                "The TagValue you have provided is too long, max {MAX_VALUE_CHARS}"
            )));
        }
        if tag.key.starts_with("aws:") {
            return Err(S3Error::InvalidTag(
                "Your TagKey cannot be prefixed with aws:".into(),
            ));
        }
        if tags[..i].iter().any(|t| t.key == tag.key) {
            return Err(S3Error::InvalidTag(
                "Cannot provide multiple Tags with the same key".into(),
            ));
        }
    }
    Ok(())
}

/// The tags of a `Tagging` document (`<Tagging><TagSet><Tag><Key/><Value/></Tag>…`).
pub fn parse(body: &[u8]) -> Result<Vec<Tag>, S3Error> {
    let root = xml::parse(body)?;
    if root.name != "Tagging" {
        return Err(S3Error::MalformedXml);
    }
    let set = root.child("TagSet").ok_or(S3Error::MalformedXml)?;
    set.children_named("Tag")
        .map(|t| {
            Ok(Tag {
                key: t.child_text("Key").ok_or(S3Error::MalformedXml)?.to_owned(),
                value: t.child_text("Value").unwrap_or_default().to_owned(),
            })
        })
        .collect()
}

/// A `Tagging` document.
pub fn render(tags: &[Tag]) -> bytes::Bytes {
    let mut w = xml::document();
    w.open_with("Tagging", &xml::S3_ROOT);
    w.open("TagSet");
    for tag in tags {
        w.open("Tag");
        w.elem("Key", &tag.key);
        w.elem("Value", &tag.value);
        w.close("Tag");
    }
    w.close("TagSet");
    w.close("Tagging");
    w.finish().into()
}

/// The tags of an `x-amz-tagging` header (a URL-encoded query string, `k1=v1&k2=v2`; a key
/// without `=` has an empty value), checked against the object limits. None: no header.
pub fn from_header(headers: &HeaderMap) -> Result<Option<Vec<Tag>>, S3Error> {
    let Some(value) = headers.get(TAGGING_HEADER) else {
        return Ok(None);
    };
    let invalid = || S3Error::InvalidArgument(format!("The {TAGGING_HEADER} header is invalid."));
    let text = value.to_str().map_err(|_| invalid())?;
    let decode = |s: &str| {
        percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| invalid())
    };
    let mut tags = Vec::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        tags.push(Tag {
            key: decode(key)?,
            value: decode(value)?,
        });
    }
    check(&tags, MAX_OBJECT_TAGS)?;
    Ok(Some(in_order(tags)))
}

/// A tag set as it is kept and answered: by key, in byte order (as RGW keeps tags, and the
/// conformance suite expects them back).
fn in_order(mut tags: Vec<Tag>) -> Vec<Tag> {
    tags.sort_by(|a, b| a.key.cmp(&b.key));
    tags
}

/// Adds `x-amz-tagging-count` to a GetObject or HeadObject answer when the object has tags.
pub fn add_count_header(h: &mut HeaderMap, tags: &[Tag]) {
    if !tags.is_empty() {
        h.insert(TAG_COUNT_HEADER, HeaderValue::from(tags.len()));
    }
}

/// The tag set of a Put*Tagging body, checked against `max`.
async fn tags_in_body(
    ctx: &Ctx,
    body: Body,
    payload: Payload,
    max: usize,
) -> Result<Vec<Tag>, S3Error> {
    let body = read_small_body(body, payload, &ctx.headers, MAX_XML_BODY).await?;
    from_document(&body, max)
}

/// The tag set of a `Tagging` document, checked against `max` and put in order: what a
/// Put*Tagging body or a POST form's `tagging` field sets.
pub fn from_document(doc: &[u8], max: usize) -> Result<Vec<Tag>, S3Error> {
    let tags = parse(doc)?;
    check(&tags, max)?;
    Ok(in_order(tags))
}

/// GetObjectTagging: for whoever may read the object.
pub fn get_object_tagging(ctx: &Ctx, object: &ObjectPath) -> Result<Response<Body>, S3Error> {
    let bmeta = ctx.store().bucket(&object.bucket)?;
    let meta = versioning::addressed(ctx, object)?;
    authorize(
        ctx,
        &bmeta,
        Want::addressed(
            ("s3:GetObjectTagging", "s3:GetObjectVersionTagging"),
            object,
            &meta,
        ),
        AclCheck::Permission(&meta.acl, Permission::Read),
    )?;
    let mut resp = xml_response(StatusCode::OK, render(&meta.tags));
    versioning::add_version_header(resp.headers_mut(), &bmeta, &meta);
    Ok(resp)
}

/// AccessDenied unless the caller owns the object or its bucket (Put/DeleteObjectTagging):
/// no ACL grants the right to retag, as in S3, so a bucket anyone may write does not let
/// anyone retag the objects others put there.
/// `actions`: the policy action without a version and with one.
fn may_retag(
    ctx: &Ctx,
    object: &ObjectPath,
    actions: (&'static str, &'static str),
) -> Result<(BucketMeta, ObjectMeta), S3Error> {
    let bmeta = ctx.store().bucket(&object.bucket)?;
    let meta = versioning::addressed(ctx, object)?;
    authorize(
        ctx,
        &bmeta,
        Want::addressed(actions, object, &meta),
        AclCheck::OwnerOfEither(&meta.acl, &bmeta.acl),
    )?;
    Ok((bmeta, meta))
}

/// Replaces the whole tag set of the version the caller was allowed to retag; the answer
/// names that version.
fn set_object_tags(
    ctx: &Ctx,
    object: &ObjectPath,
    allowed: (BucketMeta, ObjectMeta),
    tags: Vec<Tag>,
    status: StatusCode,
) -> Result<Response<Body>, S3Error> {
    let (bmeta, meta) = allowed;
    let tagged = versioning::update_authorized(ctx, object, &meta, |meta| {
        meta.tags = tags;
        Ok(())
    })?;
    let mut resp = empty_response(status);
    versioning::add_version_header(resp.headers_mut(), &bmeta, &tagged);
    Ok(resp)
}

/// PutObjectTagging.
pub async fn put_object_tagging(
    ctx: &Ctx,
    object: &ObjectPath,
    body: Body,
    payload: Payload,
) -> Result<Response<Body>, S3Error> {
    let allowed = may_retag(
        ctx,
        object,
        ("s3:PutObjectTagging", "s3:PutObjectVersionTagging"),
    )?;
    let tags = tags_in_body(ctx, body, payload, MAX_OBJECT_TAGS).await?;
    set_object_tags(ctx, object, allowed, tags, StatusCode::OK)
}

/// DeleteObjectTagging: 204.
pub fn delete_object_tagging(ctx: &Ctx, object: &ObjectPath) -> Result<Response<Body>, S3Error> {
    let allowed = may_retag(
        ctx,
        object,
        ("s3:DeleteObjectTagging", "s3:DeleteObjectVersionTagging"),
    )?;
    set_object_tags(ctx, object, allowed, Vec::new(), StatusCode::NO_CONTENT)
}

/// GetBucketTagging: the owner's; NoSuchTagSet until tags are set.
pub fn get_bucket_tagging(ctx: &Ctx, bucket: &BucketName) -> Result<Response<Body>, S3Error> {
    let tags = owned(ctx, bucket, "s3:GetBucketTagging")?
        .tags
        .ok_or(S3Error::NoSuchTagSet)?;
    Ok(xml_response(StatusCode::OK, render(&tags)))
}

/// PutBucketTagging (the owner's): replaces the whole set.
pub async fn put_bucket_tagging(
    ctx: &Ctx,
    bucket: &BucketName,
    body: Body,
    payload: Payload,
) -> Result<Response<Body>, S3Error> {
    owned(ctx, bucket, "s3:PutBucketTagging")?;
    let tags = tags_in_body(ctx, body, payload, MAX_BUCKET_TAGS).await?;
    configure(ctx, bucket, StatusCode::NO_CONTENT, |meta| {
        meta.tags = Some(tags)
    })
}

/// DeleteBucketTagging (the owner's): 204, also when there were none.
pub fn delete_bucket_tagging(ctx: &Ctx, bucket: &BucketName) -> Result<Response<Body>, S3Error> {
    owned(ctx, bucket, "s3:PutBucketTagging")?;
    configure(ctx, bucket, StatusCode::NO_CONTENT, |meta| meta.tags = None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(key: &str, value: &str) -> Tag {
        Tag {
            key: key.into(),
            value: value.into(),
        }
    }

    #[test]
    fn documents_round_trip() {
        let tags = vec![tag("a&b", "<v>"), tag("empty", ""), tag("ü", "ö ä")];
        assert_eq!(parse(&render(&tags)).expect("parse"), tags);
        assert!(matches!(parse(b"<Tagging/>"), Err(S3Error::MalformedXml)));
        assert!(matches!(
            parse(b"<Tagging><TagSet><Tag><Value>v</Value></Tag></TagSet></Tagging>"),
            Err(S3Error::MalformedXml)
        ));
        assert!(matches!(parse(b"<Nope/>"), Err(S3Error::MalformedXml)));
    }

    #[test]
    fn limits() {
        let many: Vec<Tag> = (0..11).map(|i| tag(&format!("k{i}"), "v")).collect();
        assert!(check(&many[..10], MAX_OBJECT_TAGS).is_ok());
        assert!(matches!(
            check(&many, MAX_OBJECT_TAGS),
            Err(S3Error::InvalidTag(_))
        ));
        assert!(check(&many, MAX_BUCKET_TAGS).is_ok());
        let longest = [tag(&"k".repeat(128), &"v".repeat(256))];
        assert!(check(&longest, MAX_OBJECT_TAGS).is_ok());
        for bad in [
            vec![tag(&"k".repeat(129), "v")],
            vec![tag("k", &"v".repeat(257))],
            vec![tag("", "v")],
            vec![tag("aws:cloudformation", "v")],
            vec![tag("k", "1"), tag("k", "2")],
        ] {
            assert!(
                matches!(check(&bad, MAX_OBJECT_TAGS), Err(S3Error::InvalidTag(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_header_is_a_query_string() {
        let mut h = HeaderMap::new();
        assert_eq!(from_header(&h).expect("none"), None);
        h.insert(TAGGING_HEADER, "a=1&b%20c=x+y&flag".parse().expect("hv"));
        assert_eq!(
            from_header(&h).expect("tags"),
            Some(vec![tag("a", "1"), tag("b c", "x y"), tag("flag", "")])
        );
        h.insert(TAGGING_HEADER, "a=1&a=2".parse().expect("hv"));
        assert!(matches!(from_header(&h), Err(S3Error::InvalidTag(_))));
    }
}

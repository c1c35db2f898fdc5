//! The bucket configurations of who may reach a bucket and own its objects:
//! Get/Put/DeleteBucketPolicy, GetBucketPolicyStatus, Get/Put/DeletePublicAccessBlock and
//! Get/Put/DeleteBucketOwnershipControls. How they decide a request is `access`'s.

use axum::body::Body;
use http::{HeaderValue, Response, StatusCode};

use super::auth::read_small_body;
use super::bucket::{configure, owned};
use super::error::S3Error;
use super::ident::Payload;
use super::xml::{self, MAX_XML_BODY};
use super::{xml_response, Ctx};
use crate::names::BucketName;
use crate::policy::Policy;
use crate::store::{ObjectOwnership, PublicAccessBlock};

/// The largest policy body read (the policy itself is limited to 20 KiB without whitespace).
const MAX_POLICY_BODY: usize = 64 * 1024;

/// GetBucketPolicy: the policy as it was put, byte for byte.
pub fn get_bucket_policy(ctx: &Ctx, bucket: &BucketName) -> Result<Response<Body>, S3Error> {
    let text = owned(ctx, bucket, "s3:GetBucketPolicy")?
        .policy
        .ok_or(S3Error::NoSuchBucketPolicy)?;
    let mut resp = Response::new(Body::from(text));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

/// PutBucketPolicy: a policy S3 would take (MalformedPolicy otherwise), not a public one
/// while the bucket blocks public policies; 204.
pub async fn put_bucket_policy(
    ctx: &Ctx,
    bucket: &BucketName,
    body: Body,
    payload: Payload,
) -> Result<Response<Body>, S3Error> {
    let meta = owned(ctx, bucket, "s3:PutBucketPolicy")?;
    let body = read_small_body(body, payload, &ctx.headers, MAX_POLICY_BODY).await?;
    let text = String::from_utf8(body.to_vec())
        .map_err(|_| S3Error::MalformedPolicy("Policies must be valid UTF-8 JSON".into()))?;
    let policy = Policy::parse(&text).map_err(|e| S3Error::MalformedPolicy(e.0))?;
    let blocks = meta
        .public_access_block
        .is_some_and(|b| b.block_public_policy);
    if blocks && policy.is_public() {
        return Err(S3Error::access_denied());
    }
    configure(ctx, bucket, StatusCode::NO_CONTENT, |meta| {
        meta.policy = Some(text)
    })
}

/// DeleteBucketPolicy: 204, also when there was none.
pub fn delete_bucket_policy(ctx: &Ctx, bucket: &BucketName) -> Result<Response<Body>, S3Error> {
    owned(ctx, bucket, "s3:DeleteBucketPolicy")?;
    configure(ctx, bucket, StatusCode::NO_CONTENT, |meta| {
        meta.policy = None
    })
}

/// GetBucketPolicyStatus: whether the bucket is public, by its policy or its ACL (as RGW
/// and the conformance suites see it; a bucket without a policy answers too).
pub fn get_bucket_policy_status(ctx: &Ctx, bucket: &BucketName) -> Result<Response<Body>, S3Error> {
    let meta = owned(ctx, bucket, "s3:GetBucketPolicyStatus")?;
    let public_policy = meta
        .policy
        .as_deref()
        .and_then(|p| Policy::parse(p).ok())
        .is_some_and(|p| p.is_public());
    let public = public_policy || meta.acl.is_public();
    let mut w = xml::document();
    w.open_with("PolicyStatus", &xml::S3_ROOT);
    w.elem("IsPublic", if public { "true" } else { "false" });
    w.close("PolicyStatus");
    Ok(xml_response(StatusCode::OK, w.finish()))
}

/// The four flags of a public access block, in S3's order, by element name.
fn flags(b: &mut PublicAccessBlock) -> [(&'static str, &mut bool); 4] {
    [
        ("BlockPublicAcls", &mut b.block_public_acls),
        ("IgnorePublicAcls", &mut b.ignore_public_acls),
        ("BlockPublicPolicy", &mut b.block_public_policy),
        ("RestrictPublicBuckets", &mut b.restrict_public_buckets),
    ]
}

/// Parses a `PublicAccessBlockConfiguration` document; a flag left out is false.
pub fn parse_public_access_block(body: &[u8]) -> Result<PublicAccessBlock, S3Error> {
    let root = xml::parse(body)?;
    if root.name != "PublicAccessBlockConfiguration" {
        return Err(S3Error::MalformedXml);
    }
    let mut block = PublicAccessBlock::default();
    for (name, flag) in flags(&mut block) {
        *flag = match root.child_text(name).map(str::trim) {
            None => false,
            Some(v) if v.eq_ignore_ascii_case("true") => true,
            Some(v) if v.eq_ignore_ascii_case("false") => false,
            Some(_) => return Err(S3Error::MalformedXml),
        };
    }
    Ok(block)
}

/// GetPublicAccessBlock: NoSuchPublicAccessBlockConfiguration until one is put.
pub fn get_public_access_block(ctx: &Ctx, bucket: &BucketName) -> Result<Response<Body>, S3Error> {
    let mut block = owned(ctx, bucket, "s3:GetBucketPublicAccessBlock")?
        .public_access_block
        .ok_or(S3Error::NoSuchPublicAccessBlockConfiguration)?;
    let mut w = xml::document();
    w.open_with("PublicAccessBlockConfiguration", &xml::S3_ROOT);
    for (name, flag) in flags(&mut block) {
        w.elem(name, if *flag { "true" } else { "false" });
    }
    w.close("PublicAccessBlockConfiguration");
    Ok(xml_response(StatusCode::OK, w.finish()))
}

/// PutPublicAccessBlock: from now on; ACLs and the policy already there stay, as in S3.
pub async fn put_public_access_block(
    ctx: &Ctx,
    bucket: &BucketName,
    body: Body,
    payload: Payload,
) -> Result<Response<Body>, S3Error> {
    owned(ctx, bucket, "s3:PutBucketPublicAccessBlock")?;
    let body = read_small_body(body, payload, &ctx.headers, MAX_XML_BODY).await?;
    let block = parse_public_access_block(&body)?;
    configure(ctx, bucket, StatusCode::OK, |meta| {
        meta.public_access_block = Some(block)
    })
}

/// DeletePublicAccessBlock: 204, also when there was none.
pub fn delete_public_access_block(
    ctx: &Ctx,
    bucket: &BucketName,
) -> Result<Response<Body>, S3Error> {
    owned(ctx, bucket, "s3:PutBucketPublicAccessBlock")?;
    configure(ctx, bucket, StatusCode::NO_CONTENT, |meta| {
        meta.public_access_block = None
    })
}

const OWNERSHIPS: [(&str, ObjectOwnership); 3] = [
    ("BucketOwnerEnforced", ObjectOwnership::BucketOwnerEnforced),
    (
        "BucketOwnerPreferred",
        ObjectOwnership::BucketOwnerPreferred,
    ),
    ("ObjectWriter", ObjectOwnership::ObjectWriter),
];

/// An ownership as S3 names it (`x-amz-object-ownership`, `ObjectOwnership`).
pub fn parse_ownership(s: &str) -> Option<ObjectOwnership> {
    OWNERSHIPS
        .iter()
        .find(|(name, _)| *name == s.trim())
        .map(|(_, o)| *o)
}

/// The ownership an `OwnershipControls` document asks for (one rule).
pub fn parse_ownership_controls(body: &[u8]) -> Result<ObjectOwnership, S3Error> {
    let root = xml::parse(body)?;
    if root.name != "OwnershipControls" {
        return Err(S3Error::MalformedXml);
    }
    let mut rules = root.children_named("Rule");
    let rule = rules.next().ok_or(S3Error::MalformedXml)?;
    if rules.next().is_some() {
        return Err(S3Error::MalformedXml);
    }
    rule.child_text("ObjectOwnership")
        .and_then(parse_ownership)
        .ok_or(S3Error::MalformedXml)
}

/// GetBucketOwnershipControls: OwnershipControlsNotFoundError until set.
pub fn get_ownership_controls(ctx: &Ctx, bucket: &BucketName) -> Result<Response<Body>, S3Error> {
    let ownership = owned(ctx, bucket, "s3:GetBucketOwnershipControls")?
        .ownership
        .ok_or(S3Error::OwnershipControlsNotFound)?;
    let name = OWNERSHIPS
        .iter()
        .find(|(_, o)| *o == ownership)
        .map_or("ObjectWriter", |(n, _)| n);
    let mut w = xml::document();
    w.open_with("OwnershipControls", &xml::S3_ROOT);
    w.open("Rule");
    w.elem("ObjectOwnership", name);
    w.close("Rule");
    w.close("OwnershipControls");
    Ok(xml_response(StatusCode::OK, w.finish()))
}

/// InvalidBucketAclWithObjectOwnership when ACLs are to be turned off for a bucket whose ACL
/// grants to anyone but its owner (S3 asks for the grants to go first).
pub fn check_ownership(acl: &crate::acl::Acl, ownership: ObjectOwnership) -> Result<(), S3Error> {
    if ownership == ObjectOwnership::BucketOwnerEnforced && !acl.is_owner_only() {
        return Err(S3Error::InvalidBucketAclWithObjectOwnership);
    }
    Ok(())
}

/// PutBucketOwnershipControls (the owner's).
pub async fn put_ownership_controls(
    ctx: &Ctx,
    bucket: &BucketName,
    body: Body,
    payload: Payload,
) -> Result<Response<Body>, S3Error> {
    let meta = owned(ctx, bucket, "s3:PutBucketOwnershipControls")?;
    let body = read_small_body(body, payload, &ctx.headers, MAX_XML_BODY).await?;
    let ownership = parse_ownership_controls(&body)?;
    check_ownership(&meta.acl, ownership)?;
    configure(ctx, bucket, StatusCode::OK, |meta| {
        meta.ownership = Some(ownership)
    })
}

/// DeleteBucketOwnershipControls: 204, also when there were none; writers own again.
pub fn delete_ownership_controls(
    ctx: &Ctx,
    bucket: &BucketName,
) -> Result<Response<Body>, S3Error> {
    owned(ctx, bucket, "s3:PutBucketOwnershipControls")?;
    configure(ctx, bucket, StatusCode::NO_CONTENT, |meta| {
        meta.ownership = None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_access_block_documents() {
        let b = parse_public_access_block(
            br#"<PublicAccessBlockConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
            <BlockPublicAcls>true</BlockPublicAcls><RestrictPublicBuckets>TRUE</RestrictPublicBuckets>
            </PublicAccessBlockConfiguration>"#,
        )
        .expect("ok");
        assert_eq!(
            b,
            PublicAccessBlock {
                block_public_acls: true,
                ignore_public_acls: false,
                block_public_policy: false,
                restrict_public_buckets: true,
            }
        );
        assert!(matches!(
            parse_public_access_block(
                b"<PublicAccessBlockConfiguration><IgnorePublicAcls>yes</IgnorePublicAcls></PublicAccessBlockConfiguration>"
            ),
            Err(S3Error::MalformedXml)
        ));
        assert!(matches!(
            parse_public_access_block(b"<Other/>"),
            Err(S3Error::MalformedXml)
        ));
    }

    #[test]
    fn ownership_documents() {
        let doc = |rules: &str| format!("<OwnershipControls>{rules}</OwnershipControls>");
        let rule = |o: &str| format!("<Rule><ObjectOwnership>{o}</ObjectOwnership></Rule>");
        assert_eq!(
            parse_ownership_controls(doc(&rule("BucketOwnerEnforced")).as_bytes()).expect("ok"),
            ObjectOwnership::BucketOwnerEnforced
        );
        for bad in [
            doc(""),
            doc(&rule("Nobody")),
            doc(&format!("{}{}", rule("ObjectWriter"), rule("ObjectWriter"))),
        ] {
            assert!(matches!(
                parse_ownership_controls(bad.as_bytes()),
                Err(S3Error::MalformedXml)
            ));
        }
    }
}

//! Bucket operations: ListBuckets, CreateBucket, DeleteBucket, HeadBucket,
//! GetBucketLocation.

use axum::body::Body;
use http::{HeaderValue, Response, StatusCode};

use super::access::{authorize, AclCheck, Want};
use super::auth::{read_small_body, require_owner};
use super::error::S3Error;
use super::ident::Payload;
use super::xml::{self, MAX_XML_BODY};
use super::{empty_response, iso8601, xml_response, Ctx};
use crate::acl::Permission;
use crate::names::BucketName;
use crate::store::BucketMeta;

/// ListBuckets: the caller's own buckets.
pub fn list_buckets(ctx: &Ctx) -> Result<Response<Body>, S3Error> {
    let account = ctx.account_id()?;
    let buckets = ctx.store().list_buckets()?;
    let mut w = xml::document();
    w.open_with("ListAllMyBucketsResult", &xml::S3_ROOT);
    w.open("Owner");
    w.elem("ID", account);
    w.elem("DisplayName", &ctx.display_name(account));
    w.close("Owner");
    w.open("Buckets");
    for b in buckets.iter().filter(|b| b.acl.owner == account) {
        w.open("Bucket");
        w.elem("Name", &b.name);
        w.elem("CreationDate", &iso8601(b.created));
        w.close("Bucket");
    }
    w.close("Buckets");
    w.close("ListAllMyBucketsResult");
    Ok(xml_response(StatusCode::OK, w.finish()))
}

/// The LocationConstraint of a CreateBucketConfiguration body (empty body: none).
pub fn parse_location(body: &[u8]) -> Result<Option<String>, S3Error> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(None);
    }
    let root = xml::parse(body)?;
    if root.name != "CreateBucketConfiguration" {
        return Err(S3Error::MalformedXml);
    }
    Ok(root
        .child_text("LocationConstraint")
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty()))
}

/// CreateBucket, with an optional LocationConstraint body (any region name is accepted) and
/// a canned or header-granted ACL.
pub async fn create_bucket(
    ctx: &Ctx,
    bucket: &BucketName,
    body: Body,
    payload: Payload,
) -> Result<Response<Body>, S3Error> {
    let account = ctx.account_id()?.to_owned();
    let acl = ctx.requested_acl(&account, &account).await?;
    let body = read_small_body(body, payload, &ctx.headers, MAX_XML_BODY).await?;
    let location = parse_location(&body)?;
    let ownership = match ctx.header("x-amz-object-ownership") {
        None => None,
        Some(v) => Some(super::policy::parse_ownership(v).ok_or_else(|| {
            S3Error::InvalidArgument(format!("Invalid x-amz-object-ownership header: {v}"))
        })?),
    };
    if let Some(o) = ownership {
        super::policy::check_ownership(&acl, o)?;
    }
    let quotas = ctx.quotas().await;
    use crate::store::StoreError;
    let created = match ctx
        .store()
        .create_bucket(bucket, acl.clone(), location, &quotas)
    {
        Ok(_) => true,
        Err(StoreError::BucketAlreadyOwnedByYou | StoreError::BucketAlreadyExists) => {
            // Creating a bucket one already owns, as it is, succeeds and changes nothing: what
            // S3 answers in us-east-1 (the region tools assume) and RGW too, and what the
            // conformance suites test. Asking for another ACL than it has is a conflict, as
            // RGW says; so is a name another account owns.
            let existing = ctx.store().bucket(bucket)?;
            if existing.acl.owner != account || existing.acl != acl {
                return Err(S3Error::BucketAlreadyExists);
            }
            false
        }
        Err(e) => return Err(e.into()),
    };
    if let (true, Some(o)) = (created, ownership) {
        ctx.store().update_bucket(bucket, |meta| {
            meta.ownership = Some(o);
            Ok(())
        })?;
    }
    let locked = created
        && ctx
            .header(super::lock::LOCK_ENABLED_HEADER)
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    if locked {
        // A bucket with object lock versions from its first write.
        ctx.store().update_bucket(bucket, |meta| {
            meta.versioning = Some(crate::store::Versioning::Enabled);
            meta.object_lock.get_or_insert_with(Default::default);
            Ok(())
        })?;
    }
    let mut resp = empty_response(StatusCode::OK);
    if let Ok(v) = HeaderValue::from_str(&format!("/{bucket}")) {
        resp.headers_mut().insert(http::header::LOCATION, v);
    }
    Ok(resp)
}

/// The record of `bucket` when its owner is calling (and its policy does not deny
/// `action`), else AccessDenied: a bucket's configurations (tags, CORS, versioning, policy)
/// are its owner's to read and change.
pub fn owned(ctx: &Ctx, bucket: &BucketName, action: &'static str) -> Result<BucketMeta, S3Error> {
    let meta = ctx.store().bucket(bucket)?;
    authorize_owner(ctx, &meta, action)?;
    Ok(meta)
}

/// AccessDenied unless the bucket's owner calls and its policy does not deny `action`.
/// A policy cannot hand a bucket's configurations to another account.
pub fn authorize_owner(ctx: &Ctx, meta: &BucketMeta, action: &'static str) -> Result<(), S3Error> {
    require_owner(&meta.acl, ctx.principal.as_ref())?;
    authorize(ctx, meta, Want::bucket(action), AclCheck::Owner(&meta.acl))
}

/// Changes `bucket`'s record and answers `status` without a body: how every Put and Delete
/// of a bucket configuration ends, once [`owned`] has let the caller in.
pub fn configure(
    ctx: &Ctx,
    bucket: &BucketName,
    status: StatusCode,
    change: impl FnOnce(&mut BucketMeta),
) -> Result<Response<Body>, S3Error> {
    ctx.store().update_bucket(bucket, |meta| {
        change(meta);
        Ok(())
    })?;
    Ok(empty_response(status))
}

/// DeleteBucket: the owner only, and only when empty.
pub async fn delete_bucket(ctx: &Ctx, bucket: &BucketName) -> Result<Response<Body>, S3Error> {
    let meta = ctx.store().bucket(bucket)?;
    authorize_owner(ctx, &meta, "s3:DeleteBucket")?;
    // Off the reactor: aborting the uploads left in the bucket writes and unlinks.
    let (store, name) = (ctx.store().clone(), bucket.clone());
    tokio::task::spawn_blocking(move || store.delete_bucket(&name))
        .await
        .map_err(|e| S3Error::internal(format!("the bucket deletion task failed: {e}")))??;
    Ok(empty_response(StatusCode::NO_CONTENT))
}

/// HeadBucket: exists and readable by the caller.
pub fn head_bucket(ctx: &Ctx, bucket: &BucketName) -> Result<Response<Body>, S3Error> {
    let meta = ctx.store().bucket(bucket)?;
    authorize(
        ctx,
        &meta,
        Want::bucket("s3:ListBucket"),
        AclCheck::Permission(&meta.acl, Permission::Read),
    )?;
    let mut resp = empty_response(StatusCode::OK);
    let region = meta.location.as_deref().unwrap_or(&ctx.shared.region);
    if let Ok(v) = HeaderValue::from_str(region) {
        resp.headers_mut().insert("x-amz-bucket-region", v);
    }
    Ok(resp)
}

/// GetBucketLocation: the constraint given at creation (empty for the default region, as
/// AWS answers for us-east-1).
pub fn get_bucket_location(ctx: &Ctx, bucket: &BucketName) -> Result<Response<Body>, S3Error> {
    let meta = ctx.store().bucket(bucket)?;
    authorize(
        ctx,
        &meta,
        Want::bucket("s3:GetBucketLocation"),
        AclCheck::Permission(&meta.acl, Permission::Read),
    )?;
    let mut w = xml::document();
    match meta.location.as_deref().filter(|l| *l != "us-east-1") {
        Some(loc) => {
            w.open_with("LocationConstraint", &xml::S3_ROOT);
            w.text(loc);
            w.close("LocationConstraint");
        }
        None => {
            w.empty("LocationConstraint", &xml::S3_ROOT);
        }
    }
    Ok(xml_response(StatusCode::OK, w.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_bodies() {
        assert_eq!(parse_location(b"").expect("empty"), None);
        assert_eq!(parse_location(b"  \n").expect("ws"), None);
        let body = br#"<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
            <LocationConstraint> eu-west-1 </LocationConstraint></CreateBucketConfiguration>"#;
        assert_eq!(
            parse_location(body).expect("ok").as_deref(),
            Some("eu-west-1")
        );
        assert!(matches!(
            parse_location(b"<CreateBucketConfiguration>"),
            Err(S3Error::MalformedXml)
        ));
        assert!(matches!(
            parse_location(b"<Other/>"),
            Err(S3Error::MalformedXml)
        ));
    }
}

//! Who may do what to a bucket and its objects, decided in one place: the bucket's policy
//! first (an explicit Deny refuses whoever asks, the owner included; an Allow grants, across
//! accounts too), then the ACLs, as S3 evaluates them together. The bucket's public access
//! block narrows both: public grants ignored, public policy statements for the owner's
//! account only.

use http::HeaderMap;
use percent_encoding::percent_decode_str;

use super::error::S3Error;
use super::router::ObjectPath;
use super::Ctx;
use crate::acl::{Acl, CannedAcl, Grantee, Permission};
use crate::names::ObjectKey;
use crate::policy::{self, Caller, Decision, Policy};
use crate::store::{BucketMeta, ObjectMeta, ObjectOwnership};
use identity::Principal;

/// What a request asks to do: the policy action (`s3:GetObject`), on the bucket or one of
/// its objects, and the object as it is before the request (for `s3:ExistingObjectTag`).
#[derive(Clone, Copy)]
pub struct Want<'a> {
    /// The action, as S3 names it in policies.
    pub action: &'static str,
    /// The object asked about; `None` for the bucket itself.
    pub key: Option<&'a ObjectKey>,
    /// The object's current record, when there is one.
    pub object: Option<&'a ObjectMeta>,
}

impl<'a> Want<'a> {
    /// An action on the bucket.
    pub fn bucket(action: &'static str) -> Want<'a> {
        Want {
            action,
            key: None,
            object: None,
        }
    }

    /// An action on the object version `path` addresses: `actions.0` without a `versionId`,
    /// `actions.1` (S3's `...Version...` action) with one; `object` is its record.
    pub fn addressed(
        actions: (&'static str, &'static str),
        path: &'a ObjectPath,
        object: &'a ObjectMeta,
    ) -> Want<'a> {
        let action = match path.version {
            Some(_) => actions.1,
            None => actions.0,
        };
        Want::object(action, &path.key, Some(object))
    }

    /// An action on object `key` (whose record, if it exists, is `object`).
    pub fn object(
        action: &'static str,
        key: &'a ObjectKey,
        object: Option<&'a ObjectMeta>,
    ) -> Want<'a> {
        Want {
            action,
            key: Some(key),
            object,
        }
    }
}

/// What the ACLs must say when the policy says nothing.
#[derive(Clone, Copy)]
pub enum AclCheck<'a> {
    /// This ACL gives the caller this permission.
    Permission(&'a Acl, Permission),
    /// The caller's account owns the resource of this ACL (bucket configurations).
    Owner(&'a Acl),
    /// The caller's account owns the resource of one of these ACLs (an object or its
    /// bucket: retagging).
    OwnerOfEither(&'a Acl, &'a Acl),
}

/// Lets the caller do `want` on `bucket` if its policy and ACLs allow it, else AccessDenied.
pub fn authorize(
    ctx: &Ctx,
    bucket: &BucketMeta,
    want: Want,
    check: AclCheck,
) -> Result<(), S3Error> {
    authorize_as(ctx, ctx.principal.as_ref(), bucket, want, check)
}

/// [`authorize`] for a caller other than the request's signer (a POST form's policy signer).
pub fn authorize_as(
    ctx: &Ctx,
    principal: Option<&Principal>,
    bucket: &BucketMeta,
    want: Want,
    check: AclCheck,
) -> Result<(), S3Error> {
    if let Some(text) = &bucket.policy {
        match decide(ctx, principal, bucket, text, want) {
            Decision::Deny => return Err(S3Error::access_denied()),
            Decision::Allow => return Ok(()),
            Decision::Silent => {}
        }
    }
    let account = principal.map(|p| p.account_id.as_str());
    let requester = super::auth::requester(principal);
    let ignore_public = bucket
        .public_access_block
        .is_some_and(|b| b.ignore_public_acls);
    let allows = |acl: &Acl, permission: Permission| {
        if ignore_public {
            acl.without_public_grants().allows(requester, permission)
        } else {
            acl.allows(requester, permission)
        }
    };
    let owns = |acl: &Acl| account == Some(acl.owner.as_str());
    let ok = if bucket.ownership == Some(ObjectOwnership::BucketOwnerEnforced) {
        // ACLs are off: what the policy did not grant is the bucket owner's alone.
        owns(&bucket.acl)
    } else {
        match check {
            AclCheck::Permission(acl, permission) => allows(acl, permission),
            AclCheck::Owner(acl) => owns(acl),
            AclCheck::OwnerOfEither(a, b) => owns(a) || owns(b),
        }
    };
    if ok {
        Ok(())
    } else {
        Err(S3Error::access_denied())
    }
}

/// What the bucket's policy says of the request. A stored policy that no longer parses
/// (written by another version) decides nothing; the ACLs still do.
fn decide(
    ctx: &Ctx,
    principal: Option<&Principal>,
    bucket: &BucketMeta,
    text: &str,
    want: Want,
) -> Decision {
    let policy = match Policy::parse(text) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(bucket = %bucket.name, error = %e, "stored bucket policy unreadable");
            return Decision::Silent;
        }
    };
    // The owner of the bucket's account may always read, replace and delete its policy: a
    // policy can never lock the bucket away from the account that owns it.
    let owner_account = principal.is_some_and(|p| p.account_id == bucket.acl.owner);
    if owner_account && want.action.ends_with("BucketPolicy") {
        return Decision::Silent;
    }
    let resource = match want.key {
        Some(k) => format!("{}/{}", bucket.name, k.as_str()),
        None => bucket.name.clone(),
    };
    let context = |key: &str| condition_value(ctx, principal, want.object, key);
    let decision = policy.evaluate(&policy::Request {
        caller: principal.map(|p| Caller {
            account: &p.account_id,
            user: &p.user_name,
        }),
        action: want.action,
        resource: &resource,
        context: &context,
    });
    // A public policy of a bucket that restricts public buckets grants to its owner's
    // account only.
    let restricted = bucket
        .public_access_block
        .is_some_and(|b| b.restrict_public_buckets);
    if decision == Decision::Allow && restricted && !owner_account && policy.is_public() {
        return Decision::Silent;
    }
    decision
}

/// The values of condition key `key` (name part lowercased) for this request.
fn condition_value(
    ctx: &Ctx,
    principal: Option<&Principal>,
    object: Option<&ObjectMeta>,
    key: &str,
) -> Option<Vec<String>> {
    let one = |s: &str| Some(vec![s.to_owned()]);
    let header = |h: &HeaderMap, name: &str| {
        let values: Vec<String> = h
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|v| v.trim().to_owned())
            .collect();
        (!values.is_empty()).then_some(values)
    };
    if let Some(tag) = key.strip_prefix("s3:existingobjecttag/") {
        let t = object?.tags.iter().find(|t| t.key == tag)?;
        return one(&t.value);
    }
    if let Some(tag) = key.strip_prefix("s3:requestobjecttag/") {
        let tags = request_tags(ctx)?;
        let t = tags.iter().find(|t| t.key == tag)?;
        return one(&t.value);
    }
    match key {
        "s3:requestobjecttagkeys" => Some(request_tags(ctx)?.into_iter().map(|t| t.key).collect()),
        "s3:x-amz-copy-source" => {
            let raw = ctx.header("x-amz-copy-source")?;
            let path = raw.split('?').next().unwrap_or(raw);
            let path = path.strip_prefix('/').unwrap_or(path);
            one(&percent_decode_str(path).decode_utf8_lossy())
        }
        "s3:prefix" | "s3:delimiter" | "s3:max-keys" => ctx.query(&key[3..]).and_then(one),
        "s3:versionid" => ctx.query("versionId").and_then(one),
        "aws:sourceip" => ctx.source_ip.and_then(|ip| one(&ip.to_string())),
        "aws:securetransport" => ctx.secure_transport.and_then(|s| one(&s.to_string())),
        "aws:principalarn" => principal.and_then(|p| {
            one(&format!(
                "arn:aws:iam::{}:user/{}",
                p.account_id, p.user_name
            ))
        }),
        "aws:referer" => header(&ctx.headers, "referer"),
        "aws:useragent" => header(&ctx.headers, "user-agent"),
        "aws:username" => principal.and_then(|p| one(&p.user_name)),
        "aws:principalaccount" => principal.and_then(|p| one(&p.account_id)),
        "aws:principaltype" => one(if principal.is_some() {
            "User"
        } else {
            "Anonymous"
        }),
        "aws:epochtime" => one(&policy::epoch_now().to_string()),
        "aws:currenttime" => one(&super::iso8601(std::time::SystemTime::now())),
        k if k.starts_with("s3:x-amz-") => header(&ctx.headers, &k[3..]),
        _ => None,
    }
}

/// The tags a write asks for in `x-amz-tagging`, when it is readable.
fn request_tags(ctx: &Ctx) -> Option<Vec<crate::store::Tag>> {
    super::tagging::from_header(&ctx.headers).ok().flatten()
}

/// AccessDenied when `acl` is public and `bucket` blocks public ACLs (from the moment the
/// block is set: ACLs already there stay); AccessControlListNotSupported when the bucket has
/// ACLs off and `acl` grants anything beyond its owner's full control.
pub fn refuse_acl(bucket: &BucketMeta, acl: &Acl) -> Result<(), S3Error> {
    let blocked = bucket
        .public_access_block
        .is_some_and(|b| b.block_public_acls);
    if blocked && acl.is_public() {
        return Err(S3Error::access_denied());
    }
    let enforced = bucket.ownership == Some(ObjectOwnership::BucketOwnerEnforced);
    if enforced && !acl.is_owner_only() {
        return Err(S3Error::AccessControlListNotSupported);
    }
    Ok(())
}

/// The ACL a new object gets in `bucket` from the ACL its write asked for (`canned`, the
/// `x-amz-acl` or form value, if any): refused as [`refuse_acl`] says, and owned by the
/// bucket owner where the bucket's ownership controls say so.
pub fn new_object_acl(
    bucket: &BucketMeta,
    requested: Acl,
    canned: Option<&str>,
) -> Result<Acl, S3Error> {
    let full_control = canned.is_some_and(|c| c.trim() == "bucket-owner-full-control");
    let owner = &bucket.acl.owner;
    match bucket.ownership {
        // Only the bucket owner's full control is an ACL such a bucket takes.
        Some(ObjectOwnership::BucketOwnerEnforced) if canned.is_none_or(|_| full_control) => {
            let to_others = requested.grants.iter().any(|g| {
                !matches!(&g.grantee, Grantee::Account(id) if id == owner || *id == requested.owner)
            });
            if to_others {
                return Err(S3Error::AccessControlListNotSupported);
            }
            Ok(CannedAcl::Private.to_acl(owner, owner))
        }
        Some(ObjectOwnership::BucketOwnerEnforced) => Err(S3Error::AccessControlListNotSupported),
        Some(ObjectOwnership::BucketOwnerPreferred) if full_control => {
            refuse_acl(bucket, &requested)?;
            Ok(CannedAcl::Private.to_acl(owner, owner))
        }
        _ => {
            refuse_acl(bucket, &requested)?;
            Ok(requested)
        }
    }
}

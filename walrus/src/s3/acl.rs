//! ACL operations: Get/Put Bucket ACL and Object ACL, the AccessControlPolicy XML both ways,
//! and the `x-amz-grant-*` headers.

use axum::body::Body;
use http::{HeaderMap, Response, StatusCode};

use super::access::{authorize, refuse_acl, AclCheck, Want};
use super::auth::read_small_body;
use super::error::S3Error;
use super::ident::Payload;
use super::router::ObjectPath;
use super::xml::{self, MAX_XML_BODY};
use super::{empty_response, versioning, xml_response, Ctx};
use crate::acl::{
    Acl, Grant, Grantee, Permission, ALL_USERS_URI, AUTHENTICATED_USERS_URI, CLOUD_SERVICES_URI,
};
use crate::names::BucketName;

/// The XML Schema instance namespace, for the `xsi:type` of a grantee.
const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// The `x-amz-grant-*` headers and the permission each gives.
const GRANT_HEADERS: [(&str, Permission); 5] = [
    ("x-amz-grant-read", Permission::Read),
    ("x-amz-grant-write", Permission::Write),
    ("x-amz-grant-read-acp", Permission::ReadAcp),
    ("x-amz-grant-write-acp", Permission::WriteAcp),
    ("x-amz-grant-full-control", Permission::FullControl),
];

fn group(uri: &str) -> Option<Grantee> {
    match uri {
        ALL_USERS_URI => Some(Grantee::AllUsers),
        AUTHENTICATED_USERS_URI => Some(Grantee::AuthenticatedUsers),
        CLOUD_SERVICES_URI => Some(Grantee::CloudServices),
        _ => None,
    }
}

/// Grants from `x-amz-grant-*` headers: `id="..."` and `uri="..."` items, comma-separated.
/// Grants by e-mail address are UnresolvableGrantByEmailAddress: Walrus knows accounts by
/// id, and no e-mail address names one.
pub fn grant_headers(headers: &HeaderMap) -> Result<Vec<Grant>, S3Error> {
    let mut grants = Vec::new();
    for (name, permission) in GRANT_HEADERS {
        for value in headers.get_all(name) {
            let value = value
                .to_str()
                .map_err(|_| S3Error::InvalidArgument(format!("Invalid {name} header.")))?;
            for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let (kind, v) = item
                    .split_once('=')
                    .ok_or_else(|| S3Error::InvalidArgument(format!("Invalid {name} header.")))?;
                let v = v.trim().trim_matches('"');
                let grantee = match kind.trim().to_ascii_lowercase().as_str() {
                    "id" => Grantee::Account(v.to_owned()),
                    "uri" => group(v).ok_or_else(|| {
                        S3Error::InvalidArgument(format!("Invalid group uri: {v}"))
                    })?,
                    "emailaddress" => return Err(S3Error::UnresolvableGrantByEmailAddress),
                    _ => return Err(S3Error::InvalidArgument(format!("Invalid {name} header."))),
                };
                grants.push(Grant {
                    grantee,
                    permission,
                });
            }
        }
    }
    Ok(grants)
}

/// Renders an AccessControlPolicy document. `name_of` gives display names for account ids.
pub fn render_acl(acl: &Acl, name_of: &dyn Fn(&str) -> String) -> bytes::Bytes {
    let mut w = xml::document();
    w.open_with("AccessControlPolicy", &xml::S3_ROOT);
    w.open("Owner");
    w.elem("ID", &acl.owner);
    w.elem("DisplayName", &name_of(&acl.owner));
    w.close("Owner");
    w.open("AccessControlList");
    // Group grants first, then accounts' (each in the order kept): as RGW answers, which
    // clients comparing grant lists position by position expect.
    let (groups, accounts): (Vec<&Grant>, Vec<&Grant>) = acl
        .grants
        .iter()
        .partition(|g| !matches!(g.grantee, Grantee::Account(_)));
    for g in groups.into_iter().chain(accounts) {
        w.open("Grant");
        match &g.grantee {
            Grantee::Account(id) => {
                w.open_with(
                    "Grantee",
                    &[("xmlns:xsi", XSI), ("xsi:type", "CanonicalUser")],
                );
                w.elem("ID", id);
                w.elem("DisplayName", &name_of(id));
            }
            other => {
                let uri = match other {
                    Grantee::AllUsers => ALL_USERS_URI,
                    Grantee::AuthenticatedUsers => AUTHENTICATED_USERS_URI,
                    _ => CLOUD_SERVICES_URI,
                };
                w.open_with("Grantee", &[("xmlns:xsi", XSI), ("xsi:type", "Group")]);
                w.elem("URI", uri);
            }
        }
        w.close("Grantee");
        w.elem("Permission", g.permission.as_str());
        w.close("Grant");
    }
    w.close("AccessControlList");
    w.close("AccessControlPolicy");
    w.finish().into()
}

/// Parses an AccessControlPolicy body into grants (the owner stays what it is: an ACL
/// cannot give a resource away).
pub fn parse_acl(body: &[u8]) -> Result<Vec<Grant>, S3Error> {
    let root = xml::parse(body)?;
    if root.name != "AccessControlPolicy" {
        return Err(S3Error::MalformedXml);
    }
    let mut grants = Vec::new();
    if let Some(list) = root.child("AccessControlList") {
        for g in list.children_named("Grant") {
            let grantee = g.child("Grantee").ok_or(S3Error::MalformedXml)?;
            let permission = g
                .child_text("Permission")
                .and_then(|p| Permission::parse(p.trim()))
                .ok_or(S3Error::MalformedXml)?;
            let grantee = if let Some(id) = grantee.child_text("ID") {
                Grantee::Account(id.trim().to_owned())
            } else if let Some(uri) = grantee.child_text("URI") {
                group(uri.trim()).ok_or_else(|| {
                    S3Error::InvalidArgument(format!("Invalid group uri: {}", uri.trim()))
                })?
            } else if grantee.child("EmailAddress").is_some() {
                return Err(S3Error::UnresolvableGrantByEmailAddress);
            } else {
                return Err(S3Error::MalformedXml);
            };
            grants.push(Grant {
                grantee,
                permission,
            });
        }
    }
    Ok(grants)
}

/// The new ACL of a PutBucketAcl / PutObjectAcl: from `x-amz-acl`, `x-amz-grant-*`, or the
/// body, keeping the current owner.
async fn new_acl(
    ctx: &Ctx,
    body: Body,
    payload: Payload,
    current: &Acl,
    bucket_owner: &str,
) -> Result<Acl, S3Error> {
    let body = read_small_body(body, payload, &ctx.headers, MAX_XML_BODY).await?;
    let has_headers = ctx.headers.contains_key("x-amz-acl")
        || GRANT_HEADERS
            .iter()
            .any(|(n, _)| ctx.headers.contains_key(*n));
    let has_body = !body.iter().all(|b| b.is_ascii_whitespace());
    match (has_headers, has_body) {
        (true, true) => Err(S3Error::InvalidRequest(
            "Specifying both an ACL document and ACL headers is not allowed".into(),
        )),
        (true, false) => ctx.requested_acl(&current.owner, bucket_owner).await,
        (false, true) => {
            let grants = parse_acl(&body)?;
            ctx.check_grantees(&grants).await?;
            Ok(Acl {
                owner: current.owner.clone(),
                grants,
            })
        }
        (false, false) => Err(S3Error::MalformedXml),
    }
}

/// GetBucketAcl.
pub fn get_bucket_acl(ctx: &Ctx, bucket: &BucketName) -> Result<Response<Body>, S3Error> {
    let meta = ctx.store().bucket(bucket)?;
    authorize(
        ctx,
        &meta,
        Want::bucket("s3:GetBucketAcl"),
        AclCheck::Permission(&meta.acl, Permission::ReadAcp),
    )?;
    Ok(xml_response(
        StatusCode::OK,
        render_acl(&meta.acl, &|id| ctx.display_name(id)),
    ))
}

/// PutBucketAcl.
pub async fn put_bucket_acl(
    ctx: &Ctx,
    bucket: &BucketName,
    body: Body,
    payload: Payload,
) -> Result<Response<Body>, S3Error> {
    let meta = ctx.store().bucket(bucket)?;
    authorize(
        ctx,
        &meta,
        Want::bucket("s3:PutBucketAcl"),
        AclCheck::Permission(&meta.acl, Permission::WriteAcp),
    )?;
    let acl = new_acl(ctx, body, payload, &meta.acl, &meta.acl.owner).await?;
    refuse_acl(&meta, &acl)?;
    ctx.store().update_bucket(bucket, |meta| {
        meta.acl = acl;
        Ok(())
    })?;
    Ok(empty_response(StatusCode::OK))
}

/// GetObjectAcl.
pub fn get_object_acl(ctx: &Ctx, object: &ObjectPath) -> Result<Response<Body>, S3Error> {
    let bmeta = ctx.store().bucket(&object.bucket)?;
    let meta = versioning::addressed(ctx, object)?;
    authorize(
        ctx,
        &bmeta,
        Want::addressed(("s3:GetObjectAcl", "s3:GetObjectVersionAcl"), object, &meta),
        AclCheck::Permission(&meta.acl, Permission::ReadAcp),
    )?;
    let mut resp = xml_response(
        StatusCode::OK,
        render_acl(&meta.acl, &|id| ctx.display_name(id)),
    );
    versioning::add_version_header(resp.headers_mut(), &bmeta, &meta);
    Ok(resp)
}

/// PutObjectAcl.
pub async fn put_object_acl(
    ctx: &Ctx,
    object: &ObjectPath,
    body: Body,
    payload: Payload,
) -> Result<Response<Body>, S3Error> {
    let bmeta = ctx.store().bucket(&object.bucket)?;
    let meta = versioning::addressed(ctx, object)?;
    authorize(
        ctx,
        &bmeta,
        Want::addressed(("s3:PutObjectAcl", "s3:PutObjectVersionAcl"), object, &meta),
        AclCheck::Permission(&meta.acl, Permission::WriteAcp),
    )?;
    let acl = new_acl(ctx, body, payload, &meta.acl, &bmeta.acl.owner).await?;
    refuse_acl(&bmeta, &acl)?;
    let changed = versioning::update_authorized(ctx, object, &meta, |meta| {
        meta.acl = acl;
        Ok(())
    })?;
    let mut resp = empty_response(StatusCode::OK);
    versioning::add_version_header(resp.headers_mut(), &bmeta, &changed);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::CannedAcl;

    #[test]
    fn acl_xml_round_trips() {
        let mut acl = CannedAcl::PublicRead.to_acl("111111111111", "111111111111");
        acl.grants.push(Grant {
            grantee: Grantee::AuthenticatedUsers,
            permission: Permission::ReadAcp,
        });
        acl.grants.push(Grant {
            grantee: Grantee::CloudServices,
            permission: Permission::Read,
        });
        let xml = render_acl(&acl, &|id| format!("name-{id}"));
        let s = String::from_utf8(xml.to_vec()).expect("utf8");
        assert!(s.contains(
            "<Owner><ID>111111111111</ID><DisplayName>name-111111111111</DisplayName></Owner>"
        ));
        assert!(s.contains("xsi:type=\"Group\"><URI>http://acs.amazonaws.com/groups/global/AllUsers</URI></Grantee><Permission>READ</Permission>"));
        // Groups come first; the set of grants is the same.
        let parsed = parse_acl(&xml).expect("parse");
        assert!(matches!(parsed[0].grantee, Grantee::AllUsers));
        assert!(matches!(
            parsed.last().map(|g| &g.grantee),
            Some(Grantee::Account(_))
        ));
        assert_eq!(parsed.len(), acl.grants.len());
        assert!(acl.grants.iter().all(|g| parsed.contains(g)));
    }

    #[test]
    fn acl_parse_errors() {
        assert!(matches!(parse_acl(b"<AccessControlPolicy><AccessControlList><Grant><Grantee><ID>1</ID></Grantee><Permission>ALL</Permission></Grant></AccessControlList></AccessControlPolicy>"), Err(S3Error::MalformedXml)));
        assert!(matches!(parse_acl(b"<Nope/>"), Err(S3Error::MalformedXml)));
        assert!(parse_acl(b"<AccessControlPolicy><AccessControlList><Grant><Grantee><URI>http://x</URI></Grantee><Permission>READ</Permission></Grant></AccessControlList></AccessControlPolicy>").is_err());
    }

    #[test]
    fn grant_header_parsing() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-amz-grant-read",
            "id=\"222222222222\", uri=\"http://acs.amazonaws.com/groups/global/AllUsers\""
                .parse()
                .expect("hv"),
        );
        h.insert(
            "x-amz-grant-full-control",
            "id=333333333333".parse().expect("hv"),
        );
        let g = grant_headers(&h).expect("ok");
        assert_eq!(g.len(), 3);
        assert_eq!(g[0].grantee, Grantee::Account("222222222222".into()));
        assert_eq!(g[1].grantee, Grantee::AllUsers);
        assert_eq!(g[2].permission, Permission::FullControl);
        h.insert(
            "x-amz-grant-write",
            "emailAddress=\"a@b\"".parse().expect("hv"),
        );
        assert!(grant_headers(&h).is_err());
    }
}

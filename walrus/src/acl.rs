//! Access control lists: the owner plus grants, as S3 stores them on buckets and objects.
//! Canned ACLs expand to grants here; the S3 layer renders and parses the XML form.

use serde::{Deserialize, Serialize};

/// Who a grant is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Grantee {
    /// One account, by its 12-digit id (S3's canonical user id in Koala).
    Account(String),
    /// Everyone, signed or not (`http://acs.amazonaws.com/groups/global/AllUsers`).
    AllUsers,
    /// Any signed request from any account (`.../groups/global/AuthenticatedUsers`).
    AuthenticatedUsers,
    /// The cloud's own components (image staging reads bundles marked `aws-exec-read`).
    CloudServices,
}

/// What a grant allows, as S3 names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Permission {
    /// Read objects or list a bucket.
    Read,
    /// Create and delete objects in a bucket.
    Write,
    /// Read the ACL.
    ReadAcp,
    /// Replace the ACL.
    WriteAcp,
    /// All of the above.
    FullControl,
}

/// One grant: a grantee and a permission.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Who is granted.
    pub grantee: Grantee,
    /// What they may do.
    pub permission: Permission,
}

/// An ACL: the owning account and its grants (the owner always has full control implicitly).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acl {
    /// The owning account's id.
    pub owner: String,
    /// The grants, in the order they were given.
    pub grants: Vec<Grant>,
}

/// S3's canned ACLs, named by the `x-amz-acl` header values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CannedAcl {
    /// `private`
    Private,
    /// `public-read`
    PublicRead,
    /// `public-read-write`
    PublicReadWrite,
    /// `authenticated-read`
    AuthenticatedRead,
    /// `aws-exec-read`: the owner, plus the cloud's services may read (bundles).
    AwsExecRead,
    /// `bucket-owner-read`
    BucketOwnerRead,
    /// `bucket-owner-full-control`
    BucketOwnerFullControl,
    /// `ec2-bundle-read`, which euca-upload-bundle offers: same meaning as `aws-exec-read`.
    Ec2BundleRead,
}

impl CannedAcl {
    /// Parses an `x-amz-acl` header value.
    pub fn parse(value: &str) -> Option<CannedAcl> {
        Some(match value {
            "private" => CannedAcl::Private,
            "public-read" => CannedAcl::PublicRead,
            "public-read-write" => CannedAcl::PublicReadWrite,
            "authenticated-read" => CannedAcl::AuthenticatedRead,
            "aws-exec-read" => CannedAcl::AwsExecRead,
            "bucket-owner-read" => CannedAcl::BucketOwnerRead,
            "bucket-owner-full-control" => CannedAcl::BucketOwnerFullControl,
            "ec2-bundle-read" => CannedAcl::Ec2BundleRead,
            _ => return None,
        })
    }

    /// Expands the canned ACL for a resource owned by `owner`; `bucket_owner` matters only
    /// for the `bucket-owner-*` ACLs on objects.
    pub fn to_acl(self, owner: &str, bucket_owner: &str) -> Acl {
        let grant = |grantee, permission| Grant { grantee, permission };
        let mut grants = vec![grant(Grantee::Account(owner.to_owned()), Permission::FullControl)];
        match self {
            CannedAcl::Private => {}
            CannedAcl::PublicRead => grants.push(grant(Grantee::AllUsers, Permission::Read)),
            CannedAcl::PublicReadWrite => {
                grants.push(grant(Grantee::AllUsers, Permission::Read));
                grants.push(grant(Grantee::AllUsers, Permission::Write));
            }
            CannedAcl::AuthenticatedRead => {
                grants.push(grant(Grantee::AuthenticatedUsers, Permission::Read))
            }
            CannedAcl::AwsExecRead | CannedAcl::Ec2BundleRead => {
                grants.push(grant(Grantee::CloudServices, Permission::Read))
            }
            CannedAcl::BucketOwnerRead if bucket_owner != owner => grants.push(grant(
                Grantee::Account(bucket_owner.to_owned()),
                Permission::Read,
            )),
            CannedAcl::BucketOwnerFullControl if bucket_owner != owner => grants.push(grant(
                Grantee::Account(bucket_owner.to_owned()),
                Permission::FullControl,
            )),
            CannedAcl::BucketOwnerRead | CannedAcl::BucketOwnerFullControl => {}
        }
        Acl {
            owner: owner.to_owned(),
            grants,
        }
    }
}

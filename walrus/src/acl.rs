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
        let grant = |grantee, permission| Grant {
            grantee,
            permission,
        };
        let mut grants = vec![grant(
            Grantee::Account(owner.to_owned()),
            Permission::FullControl,
        )];
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

/// The group URI S3 uses for [`Grantee::AllUsers`].
pub const ALL_USERS_URI: &str = "http://acs.amazonaws.com/groups/global/AllUsers";
/// The group URI S3 uses for [`Grantee::AuthenticatedUsers`].
pub const AUTHENTICATED_USERS_URI: &str =
    "http://acs.amazonaws.com/groups/global/AuthenticatedUsers";
/// Koala's group URI for [`Grantee::CloudServices`] (AWS has no such group; the name follows
/// its pattern so ACL tools display it like the others).
pub const CLOUD_SERVICES_URI: &str = "http://acs.amazonaws.com/groups/koala/CloudServices";

/// Who is asking, as far as ACLs care.
#[derive(Clone, Copy, Debug)]
pub enum Requester<'a> {
    /// An unsigned request.
    Anonymous,
    /// A signed request from an account's user.
    Account {
        /// The caller's account id.
        account_id: &'a str,
    },
}

impl Permission {
    /// S3's name for the permission in ACL XML.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "READ",
            Permission::Write => "WRITE",
            Permission::ReadAcp => "READ_ACP",
            Permission::WriteAcp => "WRITE_ACP",
            Permission::FullControl => "FULL_CONTROL",
        }
    }

    /// Parses S3's name for a permission.
    pub fn parse(s: &str) -> Option<Permission> {
        Some(match s {
            "READ" => Permission::Read,
            "WRITE" => Permission::Write,
            "READ_ACP" => Permission::ReadAcp,
            "WRITE_ACP" => Permission::WriteAcp,
            "FULL_CONTROL" => Permission::FullControl,
            _ => return None,
        })
    }

    /// Whether holding `self` gives `wanted`.
    pub fn covers(self, wanted: Permission) -> bool {
        self == Permission::FullControl || self == wanted
    }
}

impl Grantee {
    /// Whether the grantee includes the requester.
    pub fn matches(&self, who: Requester<'_>) -> bool {
        match (self, who) {
            (Grantee::AllUsers, _) => true,
            (_, Requester::Anonymous) => false,
            (Grantee::AuthenticatedUsers, _) => true,
            (Grantee::Account(id), Requester::Account { account_id, .. }) => id == account_id,
            // The image service reads bundles below the ACLs, as Walrus itself; no caller of
            // S3 is it, whatever its account (the cloud administrators' included).
            (Grantee::CloudServices, _) => false,
        }
    }
}

impl Acl {
    /// Whether the requester holds `wanted`: the owner always does (full control), others
    /// only through a grant.
    pub fn allows(&self, who: Requester<'_>, wanted: Permission) -> bool {
        if let Requester::Account { account_id, .. } = who {
            if account_id == self.owner {
                return true;
            }
        }
        self.grants
            .iter()
            .any(|g| g.permission.covers(wanted) && g.grantee.matches(who))
    }

    /// Whether a grant gives something to everyone or to any signed caller (S3's "public"
    /// ACL, which a public access block refuses or ignores).
    pub fn is_public(&self) -> bool {
        self.grants.iter().any(|g| g.grantee.is_public())
    }

    /// Whether the ACL grants nothing to anyone but its owner's account (what a bucket with
    /// ACLs off takes).
    pub fn is_owner_only(&self) -> bool {
        self.grants
            .iter()
            .all(|g| matches!(&g.grantee, Grantee::Account(id) if *id == self.owner))
    }

    /// The ACL without its grants to everyone and to any signed caller: what a bucket that
    /// ignores public ACLs goes by.
    pub fn without_public_grants(&self) -> Acl {
        Acl {
            owner: self.owner.clone(),
            grants: self
                .grants
                .iter()
                .filter(|g| !g.grantee.is_public())
                .cloned()
                .collect(),
        }
    }
}

impl Grantee {
    /// Everyone, or any signed caller.
    fn is_public(&self) -> bool {
        matches!(self, Grantee::AllUsers | Grantee::AuthenticatedUsers)
    }
}

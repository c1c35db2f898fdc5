//! What a principal is to the cloud, recorded with each user rather than read from names: an
//! account's user, a cloud administrator, or one of the cloud's own components. Rights follow
//! the role: a component calls only what its part of the cloud calls, an administrator runs
//! the cloud, a user works in their own account.

use serde::{Deserialize, Serialize};

#[cfg(feature = "store")]
use crate::{ADMIN_ACCOUNT, ADMIN_USER};

/// A principal's role, kept in its user record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// A user of an account, with the rights of that account (its `admin` user manages it).
    User,
    /// A cloud administrator: a user of the `eucalyptus` account made one at its creation
    /// (`admin`) or by another administrator's grant. Manages every account, cluster and
    /// property.
    CloudAdmin,
    /// One of the cloud's components, which calls only what its role calls.
    Component(ComponentKind),
}

/// The kinds of components, each with the internal calls of its role and nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ComponentKind {
    /// The cloud controller (`clc`): calls cluster controllers, reads bundles from Walrus.
    CloudController,
    /// A cluster controller (`cc-ZONE`): calls its nodes, verifies the CLC's calls.
    ClusterController,
    /// A node controller (`nc-HOST`): fetches images from Walrus, verifies its CC's calls.
    NodeController,
    /// A Walrus on a host of its own (`walrus`): verifies its callers with the CLC.
    Walrus,
}

impl ComponentKind {
    /// Every kind, in the order their principals are listed.
    pub const ALL: [ComponentKind; 4] = [
        ComponentKind::CloudController,
        ComponentKind::ClusterController,
        ComponentKind::NodeController,
        ComponentKind::Walrus,
    ];

    /// The principal name of the component of this kind qualified by `qualifier` (the zone of
    /// a CC, the host of an NC; unused for the CLC and Walrus, of which there is one).
    pub fn principal_name(self, qualifier: &str) -> String {
        match self {
            ComponentKind::CloudController => "clc".to_owned(),
            ComponentKind::Walrus => "walrus".to_owned(),
            ComponentKind::ClusterController => format!("cc-{qualifier}"),
            ComponentKind::NodeController => format!("nc-{qualifier}"),
        }
    }

    /// The kind's name on the command line and in the account service (`cluster`, `node`,
    /// `walrus`, `cloud`).
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::CloudController => "cloud",
            ComponentKind::ClusterController => "cluster",
            ComponentKind::NodeController => "node",
            ComponentKind::Walrus => "walrus",
        }
    }

    /// The DNS name every TLS certificate of a component of this kind carries: a caller
    /// checks the certificate of the component it calls against it, whatever address it
    /// reached it by (`cluster.koala.internal`, `node.koala.internal`...).
    pub fn tls_name(self) -> &'static str {
        match self {
            ComponentKind::CloudController => "clc.koala.internal",
            ComponentKind::ClusterController => "cluster.koala.internal",
            ComponentKind::NodeController => "node.koala.internal",
            ComponentKind::Walrus => "walrus.koala.internal",
        }
    }

    /// The kind named by [`ComponentKind::as_str`].
    pub fn parse(name: &str) -> Option<ComponentKind> {
        ComponentKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

impl Role {
    /// The role of a user recorded before roles were: what its name meant then (the
    /// `eucalyptus` account's `admin` administered, its `clc`, `walrus`, `cc-*` and `nc-*`
    /// were the components). Only stored records without a role are read this way; every
    /// principal made since carries its role.
    #[cfg(feature = "store")]
    pub(crate) fn of_legacy_user(account_name: &str, user_name: &str) -> Role {
        if account_name != ADMIN_ACCOUNT {
            return Role::User;
        }
        match user_name {
            ADMIN_USER => Role::CloudAdmin,
            "clc" => Role::Component(ComponentKind::CloudController),
            "walrus" => Role::Component(ComponentKind::Walrus),
            n if n.starts_with("cc-") => Role::Component(ComponentKind::ClusterController),
            n if n.starts_with("nc-") => Role::Component(ComponentKind::NodeController),
            _ => Role::User,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_records_keep_what_their_names_meant() {
        let of = Role::of_legacy_user;
        assert_eq!(of("eucalyptus", "admin"), Role::CloudAdmin);
        assert_eq!(of("alice", "admin"), Role::User);
        assert_eq!(
            of("eucalyptus", "cc-zone1"),
            Role::Component(ComponentKind::ClusterController)
        );
        assert_eq!(
            of("eucalyptus", "nc-host"),
            Role::Component(ComponentKind::NodeController)
        );
        assert_eq!(of("alice", "nc-host"), Role::User);
        assert_eq!(of("eucalyptus", "bob"), Role::User);
    }

    #[test]
    fn kinds_name_their_principals() {
        assert_eq!(
            ComponentKind::ClusterController.principal_name("zone-a"),
            "cc-zone-a"
        );
        assert_eq!(ComponentKind::CloudController.principal_name(""), "clc");
        for kind in ComponentKind::ALL {
            assert_eq!(ComponentKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(ComponentKind::parse("clc"), None);
    }
}

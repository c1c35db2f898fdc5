//! Security groups, with the EC2-Classic semantics Eucalyptus has: CreateSecurityGroup,
//! DeleteSecurityGroup, DescribeSecurityGroups, AuthorizeSecurityGroupIngress and
//! RevokeSecurityGroupIngress.
//!
//! Every account has a group named `default`, made the first time the account's groups are
//! touched; it starts with no rules (nothing may reach an instance until its owner says so)
//! and cannot be deleted. Names are unique per account, ids (`sg-` and 8 hex digits) across
//! the cloud. A rule allows one protocol and port range from one source: a CIDR block or
//! another security group, possibly of another account. Rules are kept one source each and
//! shown grouped by protocol and ports, as EC2 shows them.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::ec2::{apply_filters, is_resource_id, new_id, Call, Cloud};
use crate::query::{QueryRequest, Xml};
use crate::state::{Batch, Record};
use crate::{tags, QueryError, Resource};

/// The group every account has.
const DEFAULT_GROUP: &str = "default";
/// The description of the `default` group, as Eucalyptus writes it.
const DEFAULT_DESCRIPTION: &str = "default group";
/// The longest group name and description (EC2: 255 characters).
const MAX_TEXT_LEN: usize = 255;
/// The whole IPv4 Internet, which euca2ools sends as the source of every rule (see
/// [`permission`]).
const WORLD: &str = "0.0.0.0/0";
/// The parameters of the single-rule form of Authorize and Revoke that the EC2 API had
/// before `IpPermissions` (euca2ools 1.x, boto 2, and boto3's top-level arguments).
const FLAT_PARAMETERS: [&str; 6] = [
    "IpProtocol",
    "FromPort",
    "ToPort",
    "CidrIp",
    "SourceSecurityGroupName",
    "SourceSecurityGroupOwnerId",
];

/// A security group.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct GroupRecord {
    /// `sg-` id, unique in the cloud.
    id: String,
    /// Owning account id.
    owner: String,
    /// The name, unique in the account.
    name: String,
    /// Free text.
    description: String,
    /// The ingress rules, in the order they were authorized.
    rules: Vec<Rule>,
}

impl records::Versioned for GroupRecord {
    const ENVELOPE: records::Envelope = crate::state::ENVELOPE;
    const VERSION: u32 = 1;
}

impl Record for GroupRecord {
    const TABLE: &'static str = "group/";
}

/// One ingress rule: traffic of `protocol` on the ports from `source` may reach the group's
/// instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Rule {
    /// `tcp`, `udp`, `icmp`, `-1` (everything) or another IP protocol's number.
    protocol: String,
    /// First port (tcp, udp) or ICMP type (`-1`: any); none for other protocols.
    from_port: Option<i32>,
    /// Last port (tcp, udp) or ICMP code (`-1`: any); none for other protocols.
    to_port: Option<i32>,
    /// Who may send it.
    source: Source,
}

/// Where allowed traffic may come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Source {
    /// An IPv4 CIDR block, as the caller wrote it.
    Cidr(String),
    /// The instances of a security group, by id, with its owner.
    Group {
        /// The owning account.
        owner: String,
        /// The `sg-` id.
        id: String,
    },
}

impl Rule {
    /// The rule in words, for error messages (as AWS words it).
    fn label(&self) -> String {
        let peer = match &self.source {
            Source::Cidr(cidr) => cidr.clone(),
            Source::Group { owner, id } => format!("{id} of account {owner}"),
        };
        let ports = match (self.from_port, self.to_port) {
            (Some(from), Some(to)) => format!(", from port: {from}, to port: {to}"),
            _ => String::new(),
        };
        format!(
            "peer: {peer}, {}{ports}, ALLOW",
            self.protocol.to_ascii_uppercase()
        )
    }
}

/// The owner of a group id, if it exists (tags ask before tagging).
pub fn owner_of(cloud: &Cloud, id: &str) -> Result<Option<String>, QueryError> {
    Ok(cloud.state.get::<GroupRecord>(id)?.map(|g| g.owner))
}

/// The rules of group `id` as the CC enforces them on its network `to`: a group source is
/// let in by its own network (`network_of`; a group with no network has no instance to let
/// in). Rules of protocols other than tcp, udp, icmp and all are recorded but not enforced.
pub fn grants(
    cloud: &Cloud,
    id: &str,
    to: u32,
    network_of: impl Fn(&str) -> Option<u32>,
) -> Result<Vec<network::Grant>, QueryError> {
    let Some(group) = cloud.state.get::<GroupRecord>(id)? else {
        return Ok(Vec::new());
    };
    let mut grants = Vec::new();
    for rule in &group.rules {
        let protocol = match rule.protocol.as_str() {
            "tcp" => network::Protocol::Tcp,
            "udp" => network::Protocol::Udp,
            "icmp" => network::Protocol::Icmp,
            "-1" => network::Protocol::All,
            _ => continue,
        };
        let source = match &rule.source {
            Source::Cidr(cidr) => {
                // Checked by `cidr` when the rule was authorized.
                let parsed = cidr.split_once('/').and_then(|(ip, prefix)| {
                    network::Ipv4Net::containing(ip.parse().ok()?, prefix.parse().ok()?)
                });
                match parsed {
                    Some(net) => network::Source::Cidr(net),
                    None => continue,
                }
            }
            Source::Group { id, .. } => match network_of(id) {
                Some(index) => network::Source::Network(index),
                None => continue,
            },
        };
        grants.push(network::Grant {
            to,
            protocol,
            from_port: rule.from_port.unwrap_or(-1),
            to_port: rule.to_port.unwrap_or(-1),
            source,
        });
    }
    Ok(grants)
}

/// Every security group of the cloud, read for one action. Groups are few (tens per
/// account), and rules may name the groups of other accounts, so actions read them all.
struct Groups {
    all: Vec<GroupRecord>,
}

impl Groups {
    fn load(cloud: &Cloud) -> Result<Groups, QueryError> {
        Ok(Groups {
            all: cloud
                .state
                .scan::<GroupRecord>("")?
                .into_iter()
                .map(|(_, g)| g)
                .collect(),
        })
    }

    fn by_name(&self, account: &str, name: &str) -> Option<usize> {
        self.all
            .iter()
            .position(|g| g.owner == account && g.name == name)
    }

    fn by_id(&self, id: &str) -> Option<usize> {
        self.all.iter().position(|g| g.id == id)
    }

    /// Makes the `default` group of `account` if it has none yet. Only under the state's
    /// exclusive guard: two first touches must not make two.
    fn ensure_default(&mut self, cloud: &Cloud, account: &str) -> Result<(), QueryError> {
        if self.by_name(account, DEFAULT_GROUP).is_some() {
            return Ok(());
        }
        let record = GroupRecord {
            id: self.fresh_id(),
            owner: account.to_owned(),
            name: DEFAULT_GROUP.to_owned(),
            description: DEFAULT_DESCRIPTION.to_owned(),
            rules: Vec::new(),
        };
        cloud.state.put(&record.id, &record)?;
        tracing::info!(account, group = %record.id, "made the account's default security group");
        self.all.push(record);
        Ok(())
    }

    fn fresh_id(&self) -> String {
        loop {
            let id = new_id("sg");
            if self.by_id(&id).is_none() {
                return id;
            }
        }
    }

    /// The name of a group id, for showing a rule's source.
    fn name_of(&self, id: &str) -> Option<&str> {
        self.by_id(id).map(|i| self.all[i].name.as_str())
    }
}

/// The caller's groups an instance is launched in, as `(id, name)`: those named by
/// `SecurityGroup.N` and `SecurityGroupId.N`, else the account's `default` group (made if
/// the account has none yet).
pub(crate) fn for_launch(call: &Call<'_>) -> Result<Vec<(String, String)>, QueryError> {
    let account = call.account();
    let names = call.params.list("SecurityGroup");
    let ids = call.params.list("SecurityGroupId");
    let _guard = call.cloud.state.exclusive();
    let mut groups = Groups::load(call.cloud)?;
    if names.is_empty() && ids.is_empty() {
        groups.ensure_default(call.cloud, account)?;
    }
    let mut chosen: Vec<(String, String)> = Vec::new();
    let targets = names
        .iter()
        .map(|n| Target::Name(n))
        .chain(ids.iter().map(|i| Target::Id(i)));
    for target in targets {
        if let Target::Id(id) = target {
            if !is_resource_id(id, "sg") {
                return Err(QueryError::Malformed(Resource::Group, id.to_owned()));
            }
        }
        if target == Target::Name(DEFAULT_GROUP) {
            groups.ensure_default(call.cloud, account)?;
        }
        let g = &groups.all[find_target(&groups, account, target)?];
        if !chosen.iter().any(|(id, _)| *id == g.id) {
            chosen.push((g.id.clone(), g.name.clone()));
        }
    }
    if chosen.is_empty() {
        let g = &groups.all[groups
            .by_name(account, DEFAULT_GROUP)
            .ok_or_else(|| QueryError::internal("the default group vanished"))?];
        chosen.push((g.id.clone(), g.name.clone()));
    }
    Ok(chosen)
}

/// How a request names the group it acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target<'a> {
    /// `GroupName`: a group of the caller's account.
    Name(&'a str),
    /// `GroupId`: checked to be the caller's.
    Id(&'a str),
}

/// The `GroupName` or `GroupId` of a request (one of them).
fn target(params: &QueryRequest) -> Result<Target<'_>, QueryError> {
    let name = params.get("GroupName").filter(|n| !n.is_empty());
    let id = params.get("GroupId").filter(|i| !i.is_empty());
    match (name, id) {
        (Some(_), Some(_)) => Err(QueryError::InvalidParameterCombination(
            "Give GroupName or GroupId, not both.".into(),
        )),
        (Some(name), None) => Ok(Target::Name(name)),
        (None, Some(id)) if is_resource_id(id, "sg") => Ok(Target::Id(id)),
        (None, Some(id)) => Err(QueryError::Malformed(Resource::Group, id.to_owned())),
        (None, None) => Err(QueryError::MissingParameter("GroupName".into())),
    }
}

/// The caller's group a request names; another account's id reads as not found.
fn find_target(groups: &Groups, account: &str, target: Target<'_>) -> Result<usize, QueryError> {
    match target {
        Target::Name(name) => groups
            .by_name(account, name)
            .ok_or_else(|| QueryError::NotFound(Resource::Group, name.to_owned())),
        Target::Id(id) => groups
            .by_id(id)
            .filter(|&i| groups.all[i].owner == account)
            .ok_or_else(|| QueryError::NotFound(Resource::Group, id.to_owned())),
    }
}

/// A group name or description: 1 to 255 printable ASCII characters (EC2-Classic's rule).
fn check_text(parameter: &str, value: &str) -> Result<(), QueryError> {
    if value.len() > MAX_TEXT_LEN || !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(QueryError::Validation(format!(
            "Value ({value}) for parameter {parameter} is invalid. It must be at most {MAX_TEXT_LEN} printable ASCII characters."
        )));
    }
    Ok(())
}

/// `CreateSecurityGroup`: `GroupName` and `GroupDescription`; answers the new `groupId`.
pub fn create(call: &Call<'_>) -> Result<String, QueryError> {
    let params = call.params;
    let name = params.required("GroupName")?;
    let description = params.required("GroupDescription")?;
    check_text("GroupName", name)?;
    check_text("GroupDescription", description)?;
    if name.starts_with("sg-") {
        return Err(QueryError::Validation(format!(
            "Value ({name}) for parameter GroupName is invalid. Group names may not start with 'sg-'."
        )));
    }
    if params.get("VpcId").is_some_and(|v| !v.is_empty()) {
        return Err(QueryError::Validation(
            "Koala has EC2-Classic security groups: VpcId is not supported.".into(),
        ));
    }
    if !params.indexes("TagSpecification").is_empty() {
        return Err(QueryError::Validation(
            "TagSpecification is not supported by CreateSecurityGroup: tag the group with CreateTags.".into(),
        ));
    }
    let account = call.account();
    let _guard = call.cloud.state.exclusive();
    let mut groups = Groups::load(call.cloud)?;
    // Made first, so that `default` is taken like any existing name.
    groups.ensure_default(call.cloud, account)?;
    if groups.by_name(account, name).is_some() {
        return Err(QueryError::Duplicate(Resource::Group, name.to_owned()));
    }
    let record = GroupRecord {
        id: groups.fresh_id(),
        owner: account.to_owned(),
        name: name.to_owned(),
        description: description.to_owned(),
        rules: Vec::new(),
    };
    call.cloud.state.put(&record.id, &record)?;
    tracing::info!(account, group = %record.id, name, "created a security group");
    let mut x = Xml::new();
    x.elem("return", "true").elem("groupId", &record.id);
    Ok(x.finish())
}

/// `DeleteSecurityGroup`, by `GroupName` or `GroupId`. The `default` group cannot be
/// deleted, nor a group that is still in use (see [`check_unused`]).
pub fn delete(call: &Call<'_>) -> Result<String, QueryError> {
    let target = target(call.params)?;
    let account = call.account();
    let _guard = call.cloud.state.exclusive();
    let groups = Groups::load(call.cloud)?;
    let reserved = || {
        QueryError::ReservedGroup(format!(
            "The security group '{DEFAULT_GROUP}' is reserved: every account has it, and it cannot be deleted."
        ))
    };
    if target == Target::Name(DEFAULT_GROUP) {
        return Err(reserved());
    }
    let group = &groups.all[find_target(&groups, account, target)?];
    if group.name == DEFAULT_GROUP {
        return Err(reserved());
    }
    check_unused(call.cloud, &groups, group)?;
    let mut batch = Batch::new();
    batch.delete::<GroupRecord>(&group.id);
    crate::networks::forget_group(call.cloud, &mut batch, &group.id)?;
    tags::delete_all(call.cloud, &mut batch, &group.id)?;
    call.cloud.state.commit(batch)?;
    tracing::info!(account, group = %group.id, name = %group.name, "deleted a security group");
    Ok("<return>true</return>".to_owned())
}

/// Adds to `batch` the deletion of every security group of `account`, with their networks
/// and tags (DeleteAccount, once the account runs no instance). Refused while a group of
/// another account names one of them as a rule's source.
pub(crate) fn forget_account(
    cloud: &Cloud,
    batch: &mut Batch,
    account: &str,
) -> Result<(), QueryError> {
    let groups = Groups::load(cloud)?;
    for group in groups.all.iter().filter(|g| g.owner == account) {
        let referrer = groups.all.iter().find(|g| {
            g.owner != account
                && g.rules
                    .iter()
                    .any(|r| matches!(&r.source, Source::Group { id, .. } if *id == group.id))
        });
        if let Some(g) = referrer {
            return Err(QueryError::DeleteConflict(format!(
                "A rule of security group {} of account {} names the account's group '{}' ({}): that rule must be revoked first.",
                g.id, g.owner, group.name, group.id
            )));
        }
        batch.delete::<GroupRecord>(&group.id);
        crate::networks::forget_group(cloud, batch, &group.id)?;
        tags::delete_all(cloud, batch, &group.id)?;
    }
    Ok(())
}

/// Refuses to delete a group that is still in use: named as the source of another group's
/// rule (of any account), or holding an instance that is not terminated.
fn check_unused(cloud: &Cloud, groups: &Groups, group: &GroupRecord) -> Result<(), QueryError> {
    if let Some(instance) = crate::instances::in_group(cloud, &group.id)? {
        return Err(QueryError::InUse(
            Resource::Group,
            format!(
                "There are active instances using security group '{}' ({instance})",
                group.name
            ),
        ));
    }
    let referrer = groups.all.iter().find(|g| {
        g.id != group.id
            && g.rules
                .iter()
                .any(|r| matches!(&r.source, Source::Group { id, .. } if *id == group.id))
    });
    match referrer {
        None => Ok(()),
        Some(g) => {
            let by = if g.owner == group.owner {
                format!("group '{}' ({})", g.name, g.id)
            } else {
                format!("a group of account {}", g.owner)
            };
            Err(QueryError::InUse(
                Resource::Group,
                format!(
                    "The security group '{}' ({}) is in use: a rule of {by} names it. Revoke that rule first.",
                    group.name, group.id
                ),
            ))
        }
    }
}

/// `AuthorizeSecurityGroupIngress`: adds every rule asked for, or none if any exists.
pub fn authorize(call: &Call<'_>) -> Result<String, QueryError> {
    change_rules(call, |group, rules| {
        if let Some(existing) = rules.iter().find(|r| group.rules.contains(r)) {
            return Err(QueryError::Duplicate(
                Resource::Permission,
                existing.label(),
            ));
        }
        group.rules.extend(rules);
        Ok(())
    })
}

/// `RevokeSecurityGroupIngress`: removes every rule asked for, or none if any is missing.
pub fn revoke(call: &Call<'_>) -> Result<String, QueryError> {
    change_rules(call, |group, rules| {
        if let Some(missing) = rules.iter().find(|r| !group.rules.contains(r)) {
            return Err(QueryError::NotFound(Resource::Permission, missing.label()));
        }
        group.rules.retain(|r| !rules.contains(r));
        Ok(())
    })
}

/// Authorize and Revoke: reads the permissions asked for, finds the group and the source
/// groups, applies `change` to the group and stores it.
fn change_rules(
    call: &Call<'_>,
    change: impl FnOnce(&mut GroupRecord, Vec<Rule>) -> Result<(), QueryError>,
) -> Result<String, QueryError> {
    let target = target(call.params)?;
    let asked = asked_permissions(call.params)?;
    let account = call.account();
    let _guard = call.cloud.state.exclusive();
    let mut groups = Groups::load(call.cloud)?;
    groups.ensure_default(call.cloud, account)?;
    let index = find_target(&groups, account, target)?;
    let rules = resolve(call, &mut groups, asked)?;
    // `resolve` only appends (default groups of other accounts), so `index` still holds.
    let group = &mut groups.all[index];
    change(group, rules)?;
    call.cloud.state.put(&group.id, &*group)?;
    Ok("<return>true</return>".to_owned())
}

/// A permission as asked for: validated, its source groups not yet looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Asked {
    protocol: String,
    from_port: Option<i32>,
    to_port: Option<i32>,
    cidrs: Vec<String>,
    groups: Vec<GroupRef>,
}

/// A source group as a request names it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GroupRef {
    name: Option<String>,
    id: Option<String>,
    /// The owning account (id or name); the caller's when absent.
    user: Option<String>,
}

/// The permissions of an Authorize or Revoke: `IpPermissions.N.*`, or the older single-rule
/// parameters (not both).
fn asked_permissions(params: &QueryRequest) -> Result<Vec<Asked>, QueryError> {
    let structured = params.indexes("IpPermissions");
    let flat = FLAT_PARAMETERS.iter().any(|p| params.get(p).is_some());
    match (structured.is_empty(), flat) {
        (false, true) => Err(QueryError::InvalidParameterCombination(
            "Give either IpPermissions or IpProtocol/FromPort/ToPort/CidrIp/SourceSecurityGroupName, not both.".into(),
        )),
        (true, false) => Err(QueryError::MissingParameter("IpPermissions".into())),
        (false, false) => structured
            .into_iter()
            .map(|i| structured_permission(params, i))
            .collect(),
        (true, true) => flat_permissions(params),
    }
}

/// `IpPermissions.N.{IpProtocol, FromPort, ToPort, IpRanges.M.CidrIp,
/// Groups.M.{GroupName, GroupId, UserId}}`.
fn structured_permission(params: &QueryRequest, i: u32) -> Result<Asked, QueryError> {
    let field = |f: &str| format!("IpPermissions.{i}.{f}");
    let protocol = protocol(params.required(&field("IpProtocol"))?)?;
    let (from_port, to_port) = ports(
        &protocol,
        params.integer(&field("FromPort"))?,
        params.integer(&field("ToPort"))?,
    )?;
    for unsupported in ["Ipv6Ranges", "PrefixListIds"] {
        if !params.indexes(&field(unsupported)).is_empty() {
            return Err(QueryError::Validation(format!(
                "{} is not supported: Koala's security groups take IPv4 ranges and groups.",
                field(unsupported)
            )));
        }
    }
    let cidrs = params
        .indexes(&field("IpRanges"))
        .into_iter()
        .map(|m| cidr(params.required(&field(&format!("IpRanges.{m}.CidrIp")))?))
        .collect::<Result<Vec<_>, _>>()?;
    let text = |f: String| params.get(&f).filter(|v| !v.is_empty()).map(str::to_owned);
    let groups = params
        .indexes(&field("Groups"))
        .into_iter()
        .map(|m| GroupRef {
            name: text(field(&format!("Groups.{m}.GroupName"))),
            id: text(field(&format!("Groups.{m}.GroupId"))),
            user: text(field(&format!("Groups.{m}.UserId"))),
        })
        .collect();
    permission(protocol, from_port, to_port, cidrs, groups)
}

/// The single-rule form: `IpProtocol`, `FromPort`, `ToPort`, `CidrIp`,
/// `SourceSecurityGroupName`, `SourceSecurityGroupOwnerId`. A source group without a protocol
/// grants it everything, which EC2-Classic wrote as three rules: all of TCP, all of UDP and
/// all of ICMP.
fn flat_permissions(params: &QueryRequest) -> Result<Vec<Asked>, QueryError> {
    let text = |name: &str| params.get(name).filter(|v| !v.is_empty());
    let user = text("SourceSecurityGroupOwnerId").map(str::to_owned);
    let groups: Vec<GroupRef> = match text("SourceSecurityGroupName") {
        Some(name) => vec![GroupRef {
            name: Some(name.to_owned()),
            id: None,
            user,
        }],
        None if user.is_some() => {
            return Err(QueryError::MissingParameter(
                "SourceSecurityGroupName".into(),
            ))
        }
        None => Vec::new(),
    };
    match text("IpProtocol") {
        Some(protocol_text) => {
            let protocol = protocol(protocol_text)?;
            let (from_port, to_port) = ports(
                &protocol,
                params.integer("FromPort")?,
                params.integer("ToPort")?,
            )?;
            let cidrs = text("CidrIp").map(cidr).transpose()?.into_iter().collect();
            Ok(vec![permission(
                protocol, from_port, to_port, cidrs, groups,
            )?])
        }
        None if groups.is_empty()
            || ["FromPort", "ToPort", "CidrIp"]
                .iter()
                .any(|p| text(p).is_some()) =>
        {
            Err(QueryError::MissingParameter("IpProtocol".into()))
        }
        None => Ok([("tcp", 0, 65535), ("udp", 0, 65535), ("icmp", -1, -1)]
            .into_iter()
            .map(|(protocol, from, to)| Asked {
                protocol: protocol.to_owned(),
                from_port: Some(from),
                to_port: Some(to),
                cidrs: Vec::new(),
                groups: groups.clone(),
            })
            .collect()),
    }
}

/// One permission's sources, checked.
///
/// euca2ools 3 sends `CidrIp=0.0.0.0/0` with every rule, also when `-o GROUP` names a
/// source group (its check for an explicit source looks at the wrong parameter). Honouring
/// both, as AWS would, turns "let group web reach port 5432" into "let the whole Internet
/// reach port 5432", silently. So a `0.0.0.0/0` range that comes with a group grant in the
/// same permission is dropped, on Authorize and Revoke alike (so euca-revoke undoes what
/// euca-authorize did). Any other range is honoured beside a group; whoever wants the world
/// and a group sends them as two permissions.
fn permission(
    protocol: String,
    from_port: Option<i32>,
    to_port: Option<i32>,
    mut cidrs: Vec<String>,
    groups: Vec<GroupRef>,
) -> Result<Asked, QueryError> {
    if !groups.is_empty() {
        cidrs.retain(|c| c != WORLD);
    }
    if cidrs.is_empty() && groups.is_empty() {
        return Err(QueryError::MissingParameter(
            "IpRanges.1.CidrIp or Groups.1.GroupName (the source of the permission)".into(),
        ));
    }
    Ok(Asked {
        protocol,
        from_port,
        to_port,
        cidrs,
        groups,
    })
}

/// An IP protocol by name or number: `tcp`/`6`, `udp`/`17`, `icmp`/`1`, `-1`/`all` for every
/// protocol, or any other protocol number (0–255).
fn protocol(value: &str) -> Result<String, QueryError> {
    let lower = value.trim().to_ascii_lowercase();
    let known = match lower.as_str() {
        "tcp" | "6" => "tcp",
        "udp" | "17" => "udp",
        "icmp" | "1" => "icmp",
        "-1" | "all" => "-1",
        other if !other.is_empty() && other.bytes().all(|b| b.is_ascii_digit()) => {
            return match other.parse::<u8>() {
                Ok(n) => Ok(match n {
                    6 => "tcp".to_owned(),
                    17 => "udp".to_owned(),
                    1 => "icmp".to_owned(),
                    n => n.to_string(),
                }),
                Err(_) => Err(unknown_protocol(value)),
            };
        }
        _ => return Err(unknown_protocol(value)),
    };
    Ok(known.to_owned())
}

fn unknown_protocol(value: &str) -> QueryError {
    QueryError::Validation(format!(
        "Invalid value '{value}' for IP protocol. Unknown protocol: use tcp, udp, icmp, -1 (all) or a protocol number."
    ))
}

/// The ports of a permission: for TCP and UDP a range within 0–65535 (both ends needed); for
/// ICMP a type and a code within -1–255 (-1: any; any type means any code; missing means
/// any); for other protocols none (whatever was sent is ignored, as EC2 does).
fn ports(
    protocol: &str,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<(Option<i32>, Option<i32>), QueryError> {
    let within = |value: i64, what: &str, low: i32, high: i32| {
        i32::try_from(value)
            .ok()
            .filter(|v| (low..=high).contains(v))
            .ok_or_else(|| {
                QueryError::Validation(format!(
                    "Invalid value '{value}' for {what}: it must be from {low} to {high}."
                ))
            })
    };
    match protocol {
        "tcp" | "udp" => {
            let (Some(from), Some(to)) = (from, to) else {
                return Err(QueryError::Validation(format!(
                    "A {protocol} permission needs FromPort and ToPort."
                )));
            };
            let from = within(from, "FromPort", 0, 65535)?;
            let to = within(to, "ToPort", 0, 65535)?;
            if from > to {
                return Err(QueryError::Validation(format!(
                    "Invalid port range {from}-{to}: FromPort is greater than ToPort."
                )));
            }
            Ok((Some(from), Some(to)))
        }
        "icmp" => {
            let kind = within(from.unwrap_or(-1), "the ICMP type (FromPort)", -1, 255)?;
            let code = within(to.unwrap_or(-1), "the ICMP code (ToPort)", -1, 255)?;
            if kind == -1 && code != -1 {
                return Err(QueryError::Validation(format!(
                    "Invalid ICMP code {code} for any ICMP type: any type (-1) takes any code (-1)."
                )));
            }
            Ok((Some(kind), Some(code)))
        }
        _ => Ok((None, None)),
    }
}

/// An IPv4 CIDR block `a.b.c.d/n`, kept as written (EC2 keeps host bits too).
fn cidr(value: &str) -> Result<String, QueryError> {
    let valid = value.split_once('/').is_some_and(|(address, length)| {
        address.parse::<Ipv4Addr>().is_ok()
            && (1..=2).contains(&length.len())
            && length.bytes().all(|b| b.is_ascii_digit())
            && length.parse::<u8>().is_ok_and(|n| n <= 32)
    });
    if valid {
        Ok(value.to_owned())
    } else {
        Err(QueryError::Validation(format!(
            "CIDR block {value} is malformed: expected an IPv4 block such as 10.0.0.0/8."
        )))
    }
}

/// The rules a list of permissions makes, their source groups looked up, each once.
fn resolve(
    call: &Call<'_>,
    groups: &mut Groups,
    asked: Vec<Asked>,
) -> Result<Vec<Rule>, QueryError> {
    let mut rules: Vec<Rule> = Vec::new();
    for permission in asked {
        let mut sources: Vec<Source> = permission.cidrs.into_iter().map(Source::Cidr).collect();
        for group in &permission.groups {
            sources.push(source_group(call, groups, group)?);
        }
        for source in sources {
            let rule = Rule {
                protocol: permission.protocol.clone(),
                from_port: permission.from_port,
                to_port: permission.to_port,
                source,
            };
            if !rules.contains(&rule) {
                rules.push(rule);
            }
        }
    }
    Ok(rules)
}

/// The group a permission names as its source: by id (any account's, checked against
/// `UserId` when given), or by name in the account `UserId` names (the caller's when absent).
fn source_group(
    call: &Call<'_>,
    groups: &mut Groups,
    wanted: &GroupRef,
) -> Result<Source, QueryError> {
    let shown = || {
        wanted
            .id
            .clone()
            .or_else(|| wanted.name.clone())
            .unwrap_or_default()
    };
    let owner = match &wanted.user {
        None => None,
        Some(user) => Some(
            account_of(call, user)?
                .ok_or_else(|| QueryError::NotFound(Resource::Group, shown()))?,
        ),
    };
    if let Some(id) = &wanted.id {
        if !is_resource_id(id, "sg") {
            return Err(QueryError::Malformed(Resource::Group, id.clone()));
        }
        let group = groups
            .by_id(id)
            .map(|i| &groups.all[i])
            .filter(|g| owner.as_ref().is_none_or(|o| *o == g.owner))
            .filter(|g| wanted.name.as_ref().is_none_or(|n| *n == g.name))
            .ok_or_else(|| QueryError::NotFound(Resource::Group, shown()))?;
        return Ok(Source::Group {
            owner: group.owner.clone(),
            id: group.id.clone(),
        });
    }
    let Some(name) = &wanted.name else {
        return Err(QueryError::MissingParameter(
            "Groups.N.GroupName or Groups.N.GroupId".into(),
        ));
    };
    let owner = owner.unwrap_or_else(|| call.account().to_owned());
    if name == DEFAULT_GROUP {
        // Every existing account has a default group, made or not yet.
        groups.ensure_default(call.cloud, &owner)?;
    }
    let group = groups
        .by_name(&owner, name)
        .map(|i| &groups.all[i])
        .ok_or_else(|| QueryError::NotFound(Resource::Group, name.clone()))?;
    Ok(Source::Group {
        owner: group.owner.clone(),
        id: group.id.clone(),
    })
}

/// The account a `UserId` names: an account id (dashes allowed, as Eucalyptus prints them)
/// or, as euca2ools users may write, an account name. `None` when there is no such account.
fn account_of(call: &Call<'_>, user: &str) -> Result<Option<String>, QueryError> {
    let digits: String = user.chars().filter(|&c| c != '-').collect();
    if digits == call.account() {
        return Ok(Some(digits));
    }
    let identity = &call.cloud.identity;
    if digits.len() == 12
        && digits.bytes().all(|b| b.is_ascii_digit())
        && identity.account_exists(&digits)?
    {
        return Ok(Some(digits));
    }
    Ok(identity.account_id(user)?)
}

/// `DescribeSecurityGroups`, with `GroupName.N`, `GroupId.N` and filters; the caller's
/// groups only.
pub fn describe(call: &Call<'_>) -> Result<String, QueryError> {
    let params = call.params;
    let account = call.account();
    let names = params.list("GroupName");
    let ids = params.list("GroupId");
    let filters = params.filters()?;
    if let Some(bad) = ids.iter().find(|id| !is_resource_id(id, "sg")) {
        return Err(QueryError::Malformed(Resource::Group, (*bad).to_owned()));
    }

    let mut groups = Groups::load(call.cloud)?;
    if groups.by_name(account, DEFAULT_GROUP).is_none() {
        let _guard = call.cloud.state.exclusive();
        groups = Groups::load(call.cloud)?;
        groups.ensure_default(call.cloud, account)?;
    }
    let mut own: Vec<&GroupRecord> = groups.all.iter().filter(|g| g.owner == account).collect();
    if let Some(missing) = names.iter().find(|n| !own.iter().any(|g| g.name == **n)) {
        return Err(QueryError::NotFound(Resource::Group, (*missing).to_owned()));
    }
    if let Some(missing) = ids.iter().find(|i| !own.iter().any(|g| g.id == **i)) {
        return Err(QueryError::NotFound(Resource::Group, (*missing).to_owned()));
    }
    if !names.is_empty() || !ids.is_empty() {
        own.retain(|g| names.contains(&g.name.as_str()) || ids.contains(&g.id.as_str()));
    }
    own.sort_by(|a, b| a.name.cmp(&b.name));
    let mut tags_by_id: HashMap<&str, Vec<(String, String)>> = HashMap::new();
    for group in &own {
        tags_by_id.insert(&group.id, tags::tags_of(call, &group.id)?);
    }
    let tags_of = |g: &&GroupRecord| tags_by_id.get(g.id.as_str()).cloned().unwrap_or_default();
    let shown = apply_filters(
        &filters,
        own,
        |g, name| group_field(&groups, g, name),
        tags_of,
    )?;

    let mut x = Xml::new();
    x.list("securityGroupInfo", shown, |x, group| {
        group_item(x, &groups, group, &tags_of(&group));
    });
    Ok(x.finish())
}

/// A group's values for a DescribeSecurityGroups filter name.
fn group_field(groups: &Groups, group: &GroupRecord, name: &str) -> Option<Vec<String>> {
    let of_rules =
        |f: &dyn Fn(&Rule) -> Option<String>| Some(group.rules.iter().filter_map(f).collect());
    let source_group = |r: &Rule| match &r.source {
        Source::Group { owner, id } => Some((owner.clone(), id.clone())),
        Source::Cidr(_) => None,
    };
    match name {
        "group-name" => Some(vec![group.name.clone()]),
        "group-id" => Some(vec![group.id.clone()]),
        "description" => Some(vec![group.description.clone()]),
        "owner-id" => Some(vec![group.owner.clone()]),
        // EC2-Classic groups belong to no VPC (euca-describe-groups offers the filter).
        "vpc-id" => Some(Vec::new()),
        "ip-permission.protocol" => of_rules(&|r| Some(r.protocol.clone())),
        "ip-permission.from-port" => of_rules(&|r| r.from_port.map(|p| p.to_string())),
        "ip-permission.to-port" => of_rules(&|r| r.to_port.map(|p| p.to_string())),
        "ip-permission.cidr" => of_rules(&|r| match &r.source {
            Source::Cidr(c) => Some(c.clone()),
            Source::Group { .. } => None,
        }),
        "ip-permission.group-id" => of_rules(&|r| source_group(r).map(|(_, id)| id)),
        "ip-permission.user-id" => of_rules(&|r| source_group(r).map(|(owner, _)| owner)),
        "ip-permission.group-name" => of_rules(&|r| {
            source_group(r).and_then(|(_, id)| groups.name_of(&id).map(str::to_owned))
        }),
        _ => None,
    }
}

/// One permission as EC2 shows it: the rules of one protocol and port range together.
struct Permission<'a> {
    protocol: &'a str,
    from_port: Option<i32>,
    to_port: Option<i32>,
    sources: Vec<&'a Source>,
}

/// A group's rules grouped by protocol and ports, in the order each first appears.
fn permissions(rules: &[Rule]) -> Vec<Permission<'_>> {
    let mut out: Vec<Permission<'_>> = Vec::new();
    for rule in rules {
        let same = |p: &&mut Permission<'_>| {
            p.protocol == rule.protocol
                && p.from_port == rule.from_port
                && p.to_port == rule.to_port
        };
        match out.iter_mut().find(same) {
            Some(permission) => permission.sources.push(&rule.source),
            None => out.push(Permission {
                protocol: &rule.protocol,
                from_port: rule.from_port,
                to_port: rule.to_port,
                sources: vec![&rule.source],
            }),
        }
    }
    out
}

/// One `securityGroupInfo` item.
fn group_item(x: &mut Xml, groups: &Groups, group: &GroupRecord, tags: &[(String, String)]) {
    x.elem("ownerId", &group.owner)
        .elem("groupId", &group.id)
        .elem("groupName", &group.name)
        .elem("groupDescription", &group.description);
    x.list("ipPermissions", permissions(&group.rules), |x, p| {
        x.elem("ipProtocol", p.protocol)
            .opt("fromPort", p.from_port.map(|v| v.to_string()).as_deref())
            .opt("toPort", p.to_port.map(|v| v.to_string()).as_deref());
        let source_groups = p.sources.iter().filter_map(|s| match s {
            Source::Group { owner, id } => Some((owner, id)),
            Source::Cidr(_) => None,
        });
        x.list("groups", source_groups, |x, (owner, id)| {
            x.elem("userId", owner)
                .elem("groupId", id)
                .opt("groupName", groups.name_of(id));
        });
        let ranges = p.sources.iter().filter_map(|s| match s {
            Source::Cidr(cidr) => Some(cidr),
            Source::Group { .. } => None,
        });
        x.list("ipRanges", ranges, |x, cidr| {
            x.elem("cidrIp", cidr);
        });
    });
    x.list("ipPermissionsEgress", Vec::<()>::new(), |_, ()| {});
    tags::tag_set(x, tags);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(body: &str) -> QueryRequest {
        QueryRequest::form(body)
    }

    fn invalid<T: std::fmt::Debug>(result: Result<T, QueryError>) -> String {
        match result {
            Err(QueryError::Validation(msg)) => msg,
            other => panic!("expected InvalidParameterValue, got {other:?}"),
        }
    }

    #[test]
    fn protocols_by_name_and_number() {
        for (given, kept) in [
            ("tcp", "tcp"),
            ("TCP", "tcp"),
            ("6", "tcp"),
            ("udp", "udp"),
            ("17", "udp"),
            ("icmp", "icmp"),
            ("1", "icmp"),
            ("-1", "-1"),
            ("all", "-1"),
            ("47", "47"),
            ("006", "tcp"),
            ("0", "0"),
            ("255", "255"),
        ] {
            assert_eq!(protocol(given).unwrap(), kept, "{given}");
        }
        for bad in ["", "foo", "256", "-2", "tcp6", "1.5", "+6"] {
            invalid(protocol(bad));
        }
    }

    #[test]
    fn port_ranges() {
        assert_eq!(
            ports("tcp", Some(22), Some(22)).unwrap(),
            (Some(22), Some(22))
        );
        assert_eq!(
            ports("udp", Some(0), Some(65535)).unwrap(),
            (Some(0), Some(65535))
        );
        invalid(ports("tcp", Some(70000), Some(70000)));
        invalid(ports("tcp", Some(-1), Some(22)));
        invalid(ports("tcp", Some(23), Some(22)));
        invalid(ports("tcp", Some(22), None));
        invalid(ports("udp", None, None));
        invalid(ports("tcp", Some(i64::MAX), Some(i64::MAX)));
        assert_eq!(ports("icmp", None, None).unwrap(), (Some(-1), Some(-1)));
        assert_eq!(ports("icmp", Some(8), Some(0)).unwrap(), (Some(8), Some(0)));
        assert_eq!(
            ports("icmp", Some(8), Some(-1)).unwrap(),
            (Some(8), Some(-1))
        );
        invalid(ports("icmp", Some(256), Some(0)));
        invalid(ports("icmp", Some(-2), Some(0)));
        invalid(ports("icmp", Some(-1), Some(3)));
        assert_eq!(ports("-1", Some(1), Some(2)).unwrap(), (None, None));
        assert_eq!(ports("47", None, None).unwrap(), (None, None));
    }

    #[test]
    fn cidr_blocks() {
        for good in ["0.0.0.0/0", "10.0.0.0/8", "192.168.1.7/32", "10.1.2.3/8"] {
            assert_eq!(cidr(good).unwrap(), good);
        }
        for bad in [
            "",
            "10.0.0.0",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0.300/8",
            "10.0.0/8",
            "banana/8",
            "10.0.0.0/8/8",
            "10.0.0.0/+8",
            "10.0.0.0/008",
            "::/0",
            " 10.0.0.0/8",
        ] {
            invalid(cidr(bad));
        }
    }

    #[test]
    fn structured_permissions() {
        let p = params(
            "IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=80&IpPermissions.1.ToPort=81\
&IpPermissions.1.IpRanges.1.CidrIp=10.0.0.0/8&IpPermissions.1.IpRanges.2.CidrIp=192.168.0.0/16\
&IpPermissions.2.IpProtocol=icmp&IpPermissions.2.FromPort=8&IpPermissions.2.ToPort=0\
&IpPermissions.2.Groups.1.GroupName=web&IpPermissions.2.Groups.1.UserId=123456789012",
        );
        let asked = asked_permissions(&p).unwrap();
        assert_eq!(asked.len(), 2);
        assert_eq!(asked[0].protocol, "tcp");
        assert_eq!((asked[0].from_port, asked[0].to_port), (Some(80), Some(81)));
        assert_eq!(asked[0].cidrs, vec!["10.0.0.0/8", "192.168.0.0/16"]);
        assert!(asked[0].groups.is_empty());
        assert_eq!(asked[1].protocol, "icmp");
        assert_eq!(
            asked[1].groups,
            vec![GroupRef {
                name: Some("web".into()),
                id: None,
                user: Some("123456789012".into())
            }]
        );
    }

    #[test]
    fn euca2ools_world_range_beside_a_group_is_dropped() {
        // What `euca-authorize -P tcp -p 5432 -o web -u ACCOUNT db` sends.
        let p = params(
            "GroupName=db&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=5432\
&IpPermissions.1.ToPort=5432&IpPermissions.1.Groups.1.GroupName=web\
&IpPermissions.1.Groups.1.UserId=123456789012&IpPermissions.1.IpRanges.1.CidrIp=0.0.0.0/0",
        );
        let asked = asked_permissions(&p).unwrap();
        assert!(asked[0].cidrs.is_empty());
        assert_eq!(asked[0].groups.len(), 1);
        // Another range beside a group is honoured; the world alone is too.
        let p = params(
            "IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=1&IpPermissions.1.ToPort=2\
&IpPermissions.1.Groups.1.GroupName=web&IpPermissions.1.IpRanges.1.CidrIp=10.0.0.0/8\
&IpPermissions.1.IpRanges.2.CidrIp=0.0.0.0/0",
        );
        assert_eq!(asked_permissions(&p).unwrap()[0].cidrs, vec!["10.0.0.0/8"]);
        let p = params(
            "IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=1&IpPermissions.1.ToPort=2\
&IpPermissions.1.IpRanges.1.CidrIp=0.0.0.0/0",
        );
        assert_eq!(asked_permissions(&p).unwrap()[0].cidrs, vec!["0.0.0.0/0"]);
    }

    #[test]
    fn flat_permissions_of_the_old_api() {
        let p = params("GroupName=g&IpProtocol=tcp&FromPort=22&ToPort=22&CidrIp=10.0.0.0/8");
        let asked = asked_permissions(&p).unwrap();
        assert_eq!(asked.len(), 1);
        assert_eq!(asked[0].cidrs, vec!["10.0.0.0/8"]);
        // A source group alone: all of TCP, UDP and ICMP from it.
        let p = params(
            "GroupName=g&SourceSecurityGroupName=web&SourceSecurityGroupOwnerId=123456789012",
        );
        let asked = asked_permissions(&p).unwrap();
        let shapes: Vec<_> = asked
            .iter()
            .map(|a| (a.protocol.as_str(), a.from_port, a.to_port, a.groups.len()))
            .collect();
        assert_eq!(
            shapes,
            vec![
                ("tcp", Some(0), Some(65535), 1),
                ("udp", Some(0), Some(65535), 1),
                ("icmp", Some(-1), Some(-1), 1)
            ]
        );
        // A source group with a protocol: that protocol only.
        let p = params("IpProtocol=udp&FromPort=53&ToPort=53&SourceSecurityGroupName=web");
        let asked = asked_permissions(&p).unwrap();
        assert_eq!(asked.len(), 1);
        assert_eq!(asked[0].protocol, "udp");
    }

    #[test]
    fn permissions_that_cannot_be_read() {
        let missing = |body: &str| match asked_permissions(&params(body)) {
            Err(QueryError::MissingParameter(p)) => p,
            other => panic!("{body}: {other:?}"),
        };
        missing("GroupName=g");
        missing("GroupName=g&CidrIp=10.0.0.0/8");
        missing("GroupName=g&SourceSecurityGroupOwnerId=123456789012");
        missing(
            "IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=1&IpPermissions.1.ToPort=2",
        );
        missing("IpPermissions.1.FromPort=1&IpPermissions.1.ToPort=2&IpPermissions.1.IpRanges.1.CidrIp=10.0.0.0/8");
        assert!(matches!(
            asked_permissions(&params("IpProtocol=tcp&IpPermissions.1.IpProtocol=tcp")),
            Err(QueryError::InvalidParameterCombination(_))
        ));
        invalid(asked_permissions(&params(
            "IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=1&IpPermissions.1.ToPort=2\
&IpPermissions.1.Ipv6Ranges.1.CidrIpv6=::/0",
        )));
        invalid(asked_permissions(&params(
            "IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=1&IpPermissions.1.ToPort=70000\
&IpPermissions.1.IpRanges.1.CidrIp=10.0.0.0/8",
        )));
        invalid(asked_permissions(&params(
            "IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=1&IpPermissions.1.ToPort=2\
&IpPermissions.1.IpRanges.1.CidrIp=10.0.0.0/99",
        )));
        invalid(asked_permissions(&params(
            "IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=x&IpPermissions.1.ToPort=2\
&IpPermissions.1.IpRanges.1.CidrIp=10.0.0.0/8",
        )));
    }

    #[test]
    fn targets() {
        assert_eq!(
            target(&params("GroupName=web")).unwrap(),
            Target::Name("web")
        );
        assert_eq!(
            target(&params("GroupId=sg-0123abcd")).unwrap(),
            Target::Id("sg-0123abcd")
        );
        assert!(matches!(
            target(&params("GroupId=sg-xyz")),
            Err(QueryError::Malformed(Resource::Group, _))
        ));
        assert!(matches!(
            target(&params("")),
            Err(QueryError::MissingParameter(_))
        ));
        assert!(matches!(
            target(&params("GroupName=a&GroupId=sg-0123abcd")),
            Err(QueryError::InvalidParameterCombination(_))
        ));
    }

    fn rule(protocol: &str, ports: (i32, i32), source: Source) -> Rule {
        Rule {
            protocol: protocol.into(),
            from_port: Some(ports.0),
            to_port: Some(ports.1),
            source,
        }
    }

    #[test]
    fn rules_are_shown_grouped_by_protocol_and_ports() {
        let web = Source::Group {
            owner: "123456789012".into(),
            id: "sg-0000000a".into(),
        };
        let rules = vec![
            rule("tcp", (22, 22), Source::Cidr("10.0.0.0/8".into())),
            rule("tcp", (80, 80), Source::Cidr("0.0.0.0/0".into())),
            rule("tcp", (22, 22), web.clone()),
            rule("tcp", (22, 22), Source::Cidr("192.168.0.0/16".into())),
            rule("udp", (22, 22), web.clone()),
        ];
        let shown: Vec<_> = permissions(&rules)
            .into_iter()
            .map(|p| (p.protocol, p.from_port, p.sources.len()))
            .collect();
        assert_eq!(
            shown,
            vec![
                ("tcp", Some(22), 3),
                ("tcp", Some(80), 1),
                ("udp", Some(22), 1)
            ]
        );
        let groups = Groups {
            all: vec![GroupRecord {
                id: "sg-0000000b".into(),
                owner: "123456789012".into(),
                name: "db".into(),
                description: "d & <b>".into(),
                rules,
            }],
        };
        let mut x = Xml::new();
        group_item(&mut x, &groups, &groups.all[0], &[("k".into(), "v".into())]);
        let xml = x.finish();
        assert!(xml.starts_with("<ownerId>123456789012</ownerId><groupId>sg-0000000b</groupId><groupName>db</groupName><groupDescription>d &amp; &lt;b&gt;</groupDescription><ipPermissions><item><ipProtocol>tcp</ipProtocol><fromPort>22</fromPort><toPort>22</toPort><groups><item><userId>123456789012</userId><groupId>sg-0000000a</groupId></item></groups><ipRanges><item><cidrIp>10.0.0.0/8</cidrIp></item><item><cidrIp>192.168.0.0/16</cidrIp></item></ipRanges></item>"), "{xml}");
        assert!(
            xml.ends_with(
                "<ipPermissionsEgress/><tagSet><item><key>k</key><value>v</value></item></tagSet>"
            ),
            "{xml}"
        );
        assert_eq!(
            group_field(&groups, &groups.all[0], "ip-permission.cidr").unwrap(),
            vec!["10.0.0.0/8", "0.0.0.0/0", "192.168.0.0/16"]
        );
        assert_eq!(
            group_field(&groups, &groups.all[0], "ip-permission.group-id").unwrap(),
            vec!["sg-0000000a", "sg-0000000a"]
        );
        assert!(group_field(&groups, &groups.all[0], "no-such-filter").is_none());
    }

    #[test]
    fn rule_labels() {
        assert_eq!(
            rule("tcp", (22, 22), Source::Cidr("0.0.0.0/0".into())).label(),
            "peer: 0.0.0.0/0, TCP, from port: 22, to port: 22, ALLOW"
        );
        let all = Rule {
            protocol: "-1".into(),
            from_port: None,
            to_port: None,
            source: Source::Group {
                owner: "123456789012".into(),
                id: "sg-0000000a".into(),
            },
        };
        assert_eq!(
            all.label(),
            "peer: sg-0000000a of account 123456789012, -1, ALLOW"
        );
    }
}

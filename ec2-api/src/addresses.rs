//! Elastic IPs, EC2-Classic style as Eucalyptus served them: an account allocates a public
//! address from the cloud's pool (property `cloud.network.public_ips`), may associate it with
//! one of its instances, and releases it back to the pool.
//!
//! One record per allocated address, keyed by the address. Every check-then-write (a free
//! address, an owned address) runs under the state's exclusive lock, so two allocations
//! never get the same address. An account never sees nor touches another's addresses: they
//! answer `InvalidAddress.NotFound`, as addresses that do not exist do (AWS answers
//! `AuthFailure` for another account's address, which tells that it is allocated).

use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::ec2::{apply_filters, is_resource_id, new_id, Call, Cloud};
use crate::instances::InstanceRecord;
use crate::query::Xml;
use crate::state::{Batch, Record};
use crate::{properties, tags, QueryError, Resource};

/// An address allocated to an account.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Address {
    public_ip: Ipv4Addr,
    /// `eipalloc-` id, the address's handle in newer APIs and for tags.
    allocation_id: String,
    /// The owning account's id.
    owner: String,
    /// `standard` (EC2-Classic) or `vpc`, as the allocation asked; both behave the same.
    domain: String,
    /// The instance it is associated with.
    instance_id: Option<String>,
    /// `eipassoc-` id of the current association.
    association_id: Option<String>,
}

impl records::Versioned for Address {
    const ENVELOPE: records::Envelope = crate::state::ENVELOPE;
    const VERSION: u32 = 1;
}

impl Record for Address {
    const TABLE: &'static str = "address/";
}

/// How a request names one address.
enum Named<'a> {
    Ip(Ipv4Addr),
    Allocation(&'a str),
    Association(&'a str),
}

impl Named<'_> {
    fn text(&self) -> String {
        match self {
            Named::Ip(ip) => ip.to_string(),
            Named::Allocation(id) | Named::Association(id) => (*id).to_owned(),
        }
    }
}

fn parse_ip(text: &str) -> Result<Ipv4Addr, QueryError> {
    text.trim().parse().map_err(|_| {
        QueryError::Validation(format!(
            "Invalid value '{text}' for PublicIp: it is not an IPv4 address."
        ))
    })
}

/// The address a request names with `PublicIp` or `other` (`AllocationId`/`AssociationId`).
fn named<'a>(call: &'a Call<'_>, other: &str) -> Result<Named<'a>, QueryError> {
    let ip = call.params.get("PublicIp").filter(|v| !v.is_empty());
    let id = call.params.get(other).filter(|v| !v.is_empty());
    match (ip, id) {
        (Some(_), Some(_)) => Err(QueryError::InvalidParameterCombination(format!(
            "Give either PublicIp or {other}, not both."
        ))),
        (None, None) => Err(QueryError::MissingParameter(format!("PublicIp or {other}"))),
        (Some(ip), None) => Ok(Named::Ip(parse_ip(ip)?)),
        (None, Some(id)) => {
            let (prefix, named) = if other == "AssociationId" {
                ("eipassoc", Named::Association(id))
            } else {
                ("eipalloc", Named::Allocation(id))
            };
            if is_resource_id(id, prefix) {
                Ok(named)
            } else {
                Err(QueryError::Malformed(Resource::Address, id.to_owned()))
            }
        }
    }
}

/// The caller's address named so; another account's is as missing as a free one.
fn own_address(call: &Call<'_>, named: &Named<'_>) -> Result<Address, QueryError> {
    let found = match named {
        Named::Ip(ip) => call.cloud.state.get::<Address>(&ip.to_string())?,
        Named::Allocation(id) => all(call.cloud)?
            .into_iter()
            .find(|a| a.allocation_id == *id),
        Named::Association(id) => all(call.cloud)?
            .into_iter()
            .find(|a| a.association_id.as_deref() == Some(id)),
    };
    found
        .filter(|a| a.owner == call.account())
        .ok_or_else(|| QueryError::NotFound(Resource::Address, named.text()))
}

fn all(cloud: &Cloud) -> Result<Vec<Address>, QueryError> {
    Ok(cloud
        .state
        .scan::<Address>("")?
        .into_iter()
        .map(|(_, a)| a)
        .collect())
}

/// The elastic IPs allocated to `account`: an account is deleted only once it holds none.
pub(crate) fn held_by(cloud: &Cloud, account: &str) -> Result<Vec<String>, QueryError> {
    Ok(all(cloud)?
        .into_iter()
        .filter(|a| a.owner == account)
        .map(|a| a.public_ip.to_string())
        .collect())
}

/// The addresses allocated to accounts, which the pool cannot lend to instances.
pub fn allocated(cloud: &Cloud) -> Result<HashSet<Ipv4Addr>, QueryError> {
    Ok(all(cloud)?.into_iter().map(|a| a.public_ip).collect())
}

/// Disassociates, in `batch`, the addresses associated with an instance `ended` says has
/// ended, as EC2 does when an instance terminates; whether any was.
pub fn detach_ended(
    cloud: &Cloud,
    batch: &mut Batch,
    ended: impl Fn(&str) -> bool,
) -> Result<bool, QueryError> {
    let mut changed = false;
    for mut address in all(cloud)? {
        if address.instance_id.as_deref().is_some_and(&ended) {
            address.instance_id = None;
            address.association_id = None;
            batch.put(&address.public_ip.to_string(), &address);
            changed = true;
        }
    }
    Ok(changed)
}

/// Points the NIC of instance `id` (if it has one) at `public_ip`, an elastic IP, or when
/// `None` at an address lent from the pool as Eucalyptus gave one back, in `batch`. The
/// caller holds the exclusive lock.
fn renat(
    cloud: &Cloud,
    batch: &mut Batch,
    id: &str,
    public_ip: Option<Ipv4Addr>,
) -> Result<(), QueryError> {
    let Some(mut instance) = cloud.state.get::<InstanceRecord>(id)? else {
        return Ok(());
    };
    if instance.state == rpc::InstanceState::Terminated {
        return Ok(());
    }
    let Some(nic) = instance.nic.as_mut() else {
        return Ok(());
    };
    match public_ip {
        Some(ip) => {
            nic.public_ip = Some(ip);
            nic.elastic = true;
        }
        None => {
            nic.public_ip = crate::networks::lend_public(cloud)?;
            nic.elastic = false;
        }
    }
    batch.put(id, &instance);
    Ok(())
}

/// The account owning the address with allocation id `allocation_id`, if allocated (tags).
pub fn owner_of(cloud: &Cloud, allocation_id: &str) -> Result<Option<String>, QueryError> {
    Ok(all(cloud)?
        .into_iter()
        .find(|a| a.allocation_id == allocation_id)
        .map(|a| a.owner))
}

/// `AllocateAddress`: the lowest free address of the pool, for the caller.
/// `AddressLimitExceeded` when the pool is empty or every address is taken.
pub fn allocate(call: &Call<'_>) -> Result<String, QueryError> {
    let domain = match call.params.get("Domain").unwrap_or("") {
        "" | "standard" => "standard",
        "vpc" => "vpc",
        other => {
            return Err(QueryError::Validation(format!(
                "Value ({other}) for parameter Domain is invalid. Expected: 'standard' or 'vpc'."
            )))
        }
    };
    if let Some(layout) = call
        .cloud
        .settings
        .network
        .as_ref()
        .filter(|l| !l.mode().is_managed())
    {
        return Err(QueryError::UnsupportedOperation(format!(
            "Elastic IPs need a MANAGED networking mode; this cloud runs mode = \"{}\", where guests' addresses are the site's.",
            layout.mode().name()
        )));
    }
    let pool = properties::public_ips(call.cloud)?;
    let _guard = call.cloud.state.exclusive();
    let taken = all(call.cloud)?;
    let used_ips = crate::networks::public_taken(call.cloud)?;
    let public_ip = pool
        .into_iter()
        .find(|ip| !used_ips.contains(ip))
        .ok_or(QueryError::AddressLimitExceeded)?;
    let used_ids: HashSet<&str> = taken.iter().map(|a| a.allocation_id.as_str()).collect();
    let allocation_id = loop {
        let id = new_id("eipalloc");
        if !used_ids.contains(id.as_str()) {
            break id;
        }
    };
    let address = Address {
        public_ip,
        allocation_id,
        owner: call.account().to_owned(),
        domain: domain.to_owned(),
        instance_id: None,
        association_id: None,
    };
    call.cloud.state.put(&public_ip.to_string(), &address)?;
    let mut x = Xml::new();
    x.elem("publicIp", &public_ip.to_string())
        .elem("domain", &address.domain)
        .elem("allocationId", &address.allocation_id);
    Ok(x.finish())
}

/// `ReleaseAddress` (`PublicIp` or `AllocationId`): gives the address back to the pool,
/// disassociating it first if needed (as EC2-Classic does), and drops its tags.
pub fn release(call: &Call<'_>) -> Result<String, QueryError> {
    let named = named(call, "AllocationId")?;
    let _guard = call.cloud.state.exclusive();
    let address = own_address(call, &named)?;
    let mut batch = Batch::new();
    if let Some(instance) = &address.instance_id {
        renat(call.cloud, &mut batch, instance, None)?;
    }
    batch.delete::<Address>(&address.public_ip.to_string());
    tags::delete_all(call.cloud, &mut batch, &address.allocation_id)?;
    call.cloud.state.commit(batch)?;
    Ok("<return>true</return>".to_owned())
}

/// `AssociateAddress` (`PublicIp` or `AllocationId`, and `InstanceId`): points the address
/// at one of the caller's instances. An address already associated moves (EC2-Classic
/// reassociates silently), and an instance keeps one address: its previous one is
/// disassociated.
pub fn associate(call: &Call<'_>) -> Result<String, QueryError> {
    let named = named(call, "AllocationId")?;
    if call.params.get("NetworkInterfaceId").is_some() {
        return Err(QueryError::Validation(
            "Koala has no network interfaces: name the instance with InstanceId.".to_owned(),
        ));
    }
    let instance_id = call.params.required("InstanceId")?;
    if !is_resource_id(instance_id, "i") {
        return Err(QueryError::Malformed(
            Resource::Instance,
            instance_id.to_owned(),
        ));
    }
    let _guard = call.cloud.state.exclusive();
    let mut address = own_address(call, &named)?;
    if crate::instances::owner_of(call.cloud, instance_id)?.as_deref() != Some(call.account()) {
        return Err(QueryError::NotFound(
            Resource::Instance,
            instance_id.to_owned(),
        ));
    }
    let mut batch = Batch::new();
    if let Some(moved_from) = address.instance_id.as_deref().filter(|i| *i != instance_id) {
        renat(call.cloud, &mut batch, moved_from, None)?;
    }
    renat(call.cloud, &mut batch, instance_id, Some(address.public_ip))?;
    for mut previous in all(call.cloud)? {
        if previous.owner == call.account()
            && previous.public_ip != address.public_ip
            && previous.instance_id.as_deref() == Some(instance_id)
        {
            previous.instance_id = None;
            previous.association_id = None;
            batch.put(&previous.public_ip.to_string(), &previous);
        }
    }
    let association_id = new_id("eipassoc");
    address.instance_id = Some(instance_id.to_owned());
    address.association_id = Some(association_id.clone());
    batch.put(&address.public_ip.to_string(), &address);
    call.cloud.state.commit(batch)?;
    let mut x = Xml::new();
    x.elem("return", "true")
        .elem("associationId", &association_id);
    Ok(x.finish())
}

/// `DisassociateAddress` (`PublicIp` or `AssociationId`): detaches the address from its
/// instance; the account keeps it. An address not associated is left as it is.
pub fn disassociate(call: &Call<'_>) -> Result<String, QueryError> {
    let named = named(call, "AssociationId")?;
    let _guard = call.cloud.state.exclusive();
    let mut address = own_address(call, &named)?;
    if let Some(instance) = address.instance_id.take() {
        address.association_id = None;
        let mut batch = Batch::new();
        renat(call.cloud, &mut batch, &instance, None)?;
        batch.put(&address.public_ip.to_string(), &address);
        call.cloud.state.commit(batch)?;
    }
    Ok("<return>true</return>".to_owned())
}

/// One line of `DescribeAddresses`.
struct Row {
    public_ip: Ipv4Addr,
    allocation_id: Option<String>,
    domain: String,
    /// What `instanceId` shows: the instance, empty, or for an administrator's `verbose`
    /// listing the owner (`nobody`, `available (ACCOUNT)`, `i-... (ACCOUNT)`).
    instance: String,
    instance_id: Option<String>,
    association_id: Option<String>,
    tags: Vec<(String, String)>,
}

/// `DescribeAddresses`: the caller's addresses, or those named by `PublicIp.N` /
/// `AllocationId.N` (each must be the caller's), narrowed by filters `public-ip`,
/// `allocation-id`, `association-id`, `instance-id` and `domain`. A cloud administrator's
/// `PublicIp.1=verbose` (`euca-describe-addresses verbose`) lists the whole pool with owners,
/// as Eucalyptus did.
pub fn describe(call: &Call<'_>) -> Result<String, QueryError> {
    let mut ips = call.params.list("PublicIp");
    let verbose = ips.contains(&"verbose");
    ips.retain(|ip| *ip != "verbose");
    let verbose = verbose && call.caller.is_cloud_admin();
    let ips = ips
        .into_iter()
        .map(parse_ip)
        .collect::<Result<Vec<_>, _>>()?;
    let allocation_ids = call.params.list("AllocationId");
    let filters = call.params.filters()?;

    let records = all(call.cloud)?;
    let mut rows = Vec::new();
    for a in &records {
        let mine = a.owner == call.account();
        if !mine && !verbose {
            continue;
        }
        let instance = match (&a.instance_id, verbose) {
            (Some(i), true) => format!("{i} ({})", a.owner),
            (None, true) => format!("available ({})", a.owner),
            (Some(i), false) => i.clone(),
            (None, false) => String::new(),
        };
        rows.push(Row {
            public_ip: a.public_ip,
            allocation_id: Some(a.allocation_id.clone()),
            domain: a.domain.clone(),
            instance,
            instance_id: a.instance_id.clone(),
            association_id: a.association_id.clone(),
            tags: if mine {
                tags::tags_of(call, &a.allocation_id)?
            } else {
                Vec::new()
            },
        });
    }
    if verbose {
        let allocated: HashSet<Ipv4Addr> = records.iter().map(|a| a.public_ip).collect();
        for ip in properties::public_ips(call.cloud)? {
            if !allocated.contains(&ip) {
                rows.push(Row {
                    public_ip: ip,
                    allocation_id: None,
                    domain: "standard".to_owned(),
                    instance: "nobody".to_owned(),
                    instance_id: None,
                    association_id: None,
                    tags: Vec::new(),
                });
            }
        }
    }

    if !ips.is_empty() || !allocation_ids.is_empty() {
        for ip in &ips {
            if !rows
                .iter()
                .any(|r| r.public_ip == *ip && r.allocation_id.is_some())
            {
                return Err(QueryError::NotFound(Resource::Address, ip.to_string()));
            }
        }
        for id in &allocation_ids {
            if !rows.iter().any(|r| r.allocation_id.as_deref() == Some(*id)) {
                return Err(QueryError::NotFound(Resource::Address, (*id).to_owned()));
            }
        }
        rows.retain(|r| {
            ips.contains(&r.public_ip)
                || r.allocation_id
                    .as_deref()
                    .is_some_and(|id| allocation_ids.contains(&id))
        });
    }

    let mut rows = apply_filters(
        &filters,
        rows,
        |r, name| {
            let field = match name {
                "public-ip" => Some(r.public_ip.to_string()),
                "allocation-id" => r.allocation_id.clone(),
                "association-id" => r.association_id.clone(),
                "instance-id" => r.instance_id.clone(),
                "domain" => Some(r.domain.clone()),
                _ => return None,
            };
            Some(field.into_iter().collect())
        },
        |r| r.tags.clone(),
    )?;
    rows.sort_by_key(|r| r.public_ip);

    let mut x = Xml::new();
    x.list("addressesSet", rows, |x, r| {
        x.elem("publicIp", &r.public_ip.to_string())
            .opt("allocationId", r.allocation_id.as_deref())
            .elem("domain", &r.domain)
            .elem("instanceId", &r.instance)
            .opt("associationId", r.association_id.as_deref());
        tags::tag_set(x, &r.tags);
    });
    Ok(x.finish())
}

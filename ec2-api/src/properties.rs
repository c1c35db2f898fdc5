//! Cloud properties, Eucalyptus' run-time settings (`euca-describe-properties`,
//! `euca-modify-property`): a fixed catalogue of names, each with a description, a default
//! and a rule for its values. A property's starting value is its default, or what
//! `koala.toml`'s `[properties]` sets; an administrator's `ModifyPropertyValue` overrides it
//! in the cloud state until reset.
//!
//! Other parts of the cloud read properties through [`value`], [`limit`], [`vm_types`],
//! [`public_ips`] and [`service_urls`], never through the store; the web console lists and
//! changes them through [`list`] and [`set`], the operations `DescribeProperties` and
//! `ModifyPropertyValue` are made of.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use identity::{Principal, ServiceUrls};

use crate::ec2::{is_resource_id, Call, Cloud, CloudSettings};
use crate::query::Xml;
use crate::state::{Batch, CloudState, Record, StateError};
use crate::{QueryError, Resource};

/// The property naming the kernel used for images registered without one.
pub const DEFAULT_KERNEL: &str = "cloud.images.default_kernel";
/// The property naming the ramdisk used for images registered without one.
pub const DEFAULT_RAMDISK: &str = "cloud.images.default_ramdisk";
/// The property holding the pool of public (elastic) addresses.
pub const PUBLIC_IPS: &str = "cloud.network.public_ips";
/// The prefix of the VM type properties (`cloud.vmtypes.m1.small`).
const VM_TYPE_PREFIX: &str = "cloud.vmtypes.";
/// How long an instance may take from RunInstances to running before it is terminated with
/// the reason, in seconds.
pub const START_TIMEOUT: &str = "cloud.instances.start_timeout";
/// The starting value of [`START_TIMEOUT`]: a first run of a multi-GiB image is unbundled by
/// Walrus and fetched by the node within it.
const DEFAULT_START_TIMEOUT: &str = "600";
/// How many buckets each account may own in Walrus (S3 `TooManyBuckets`).
pub const BUCKETS_PER_ACCOUNT: &str = "walrus.quota.buckets_per_account";
/// How many bytes each account may store in Walrus: objects and the parts of uploads in
/// progress in its buckets (S3 `QuotaExceeded`).
pub const BYTES_PER_ACCOUNT: &str = "walrus.quota.bytes_per_account";
/// How many images each account may have registered (EC2 `ResourceLimitExceeded`).
pub const IMAGES_PER_ACCOUNT: &str = "cloud.quota.images_per_account";
/// How many instances each account may have that are not terminated (EC2
/// `InstanceLimitExceeded`).
pub const INSTANCES_PER_ACCOUNT: &str = "cloud.quota.instances_per_account";
/// The Walrus URL users' credentials name (`S3_URL`); empty: this cloud's own.
pub const WALRUS_URL: &str = "cloud.walrus_url";
/// The value of a quota property that limits nothing, and the quotas' starting value: a
/// private cloud's administrators set limits when they want them.
pub const UNLIMITED: &str = "unlimited";

/// The most addresses the public pool may hold (a /16): the pool is listed in full when an
/// address is allocated.
const MAX_PUBLIC_IPS: u64 = 65_536;

/// Eucalyptus 3's default VM types: name, virtual CPUs, memory (MiB), disk (GiB).
const VM_TYPES: &[(&str, u32, u32, u32)] = &[
    ("t1.micro", 1, 256, 5),
    ("m1.small", 1, 256, 5),
    ("m1.medium", 1, 512, 10),
    ("c1.medium", 2, 512, 10),
    ("m1.large", 2, 512, 10),
    ("m1.xlarge", 2, 1024, 10),
    ("c1.xlarge", 2, 2048, 10),
    ("m2.xlarge", 2, 2048, 10),
    ("m3.xlarge", 4, 2048, 15),
    ("m2.2xlarge", 2, 4096, 30),
    ("m3.2xlarge", 4, 4096, 30),
    ("cc1.4xlarge", 8, 3072, 60),
    ("m2.4xlarge", 8, 4096, 60),
    ("hi1.4xlarge", 8, 6144, 120),
    ("cc2.8xlarge", 16, 6144, 120),
    ("cg1.4xlarge", 16, 12288, 200),
    ("cr1.8xlarge", 16, 16384, 240),
    ("hs1.8xlarge", 48, 119_808, 24_000),
];

/// A size of instance offered to users (`-t m1.small`), as its property sets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmType {
    /// The name users ask for, e.g. `m1.small`.
    pub name: String,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Disk in GiB, shared by the root disk (the image), the swap and the ephemeral disk.
    pub disk_gib: u32,
}

/// What a property's values must look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// An image id with this prefix (`eki`, `eri`), or empty for none.
    ImageId(&'static str),
    /// Comma-separated IPv4 addresses and `A-B` ranges.
    AddressPool,
    /// `CPUS MEMORY_MIB DISK_GIB`.
    VmType,
    /// A whole number of seconds, 1 to a day.
    Seconds,
    /// A quota: a whole number, or `unlimited`.
    Limit,
    /// An absolute `http://` or `https://` URL, or empty.
    Url,
}

/// One property of the catalogue.
#[derive(Debug, Clone)]
struct Definition {
    name: String,
    description: String,
    default: String,
    kind: Kind,
}

/// Every property the cloud knows, in the order `DescribeProperties` lists them.
fn catalogue() -> Vec<Definition> {
    let fixed = [
        (
            DEFAULT_KERNEL,
            "The kernel image (eki-) given to images registered without one; empty for none.",
            Kind::ImageId("eki"),
        ),
        (
            DEFAULT_RAMDISK,
            "The ramdisk image (eri-) given to images registered without one; empty for none.",
            Kind::ImageId("eri"),
        ),
        (
            PUBLIC_IPS,
            "The public addresses users may allocate: IPv4 addresses and A-B ranges, \
             separated by commas.",
            Kind::AddressPool,
        ),
        (
            START_TIMEOUT,
            "Seconds an instance may take from RunInstances to running; past it the instance \
             is terminated with the reason.",
            Kind::Seconds,
        ),
        (
            BUCKETS_PER_ACCOUNT,
            "The most buckets an account may own in Walrus, or unlimited.",
            Kind::Limit,
        ),
        (
            BYTES_PER_ACCOUNT,
            "The most bytes an account may store in Walrus (its objects and the parts of its \
             uploads in progress), or unlimited.",
            Kind::Limit,
        ),
        (
            IMAGES_PER_ACCOUNT,
            "The most images an account may have registered, or unlimited.",
            Kind::Limit,
        ),
        (
            INSTANCES_PER_ACCOUNT,
            "The most instances an account may have that are not terminated, or unlimited.",
            Kind::Limit,
        ),
        (
            WALRUS_URL,
            "The Walrus (S3) URL users' credentials name; empty for this cloud's own.",
            Kind::Url,
        ),
    ]
    .into_iter()
    .map(|(name, description, kind)| Definition {
        name: name.to_owned(),
        description: description.to_owned(),
        default: match kind {
            Kind::Seconds => DEFAULT_START_TIMEOUT.to_owned(),
            Kind::Limit => UNLIMITED.to_owned(),
            _ => String::new(),
        },
        kind,
    });
    let vm_types = VM_TYPES
        .iter()
        .map(|&(name, cpus, memory, disk)| Definition {
            name: format!("{VM_TYPE_PREFIX}{name}"),
            description: format!(
                "The {name} VM type: virtual CPUs, memory in MiB and disk in GiB (shared by \
                 the root, swap and ephemeral disks)."
            ),
            default: format!("{cpus} {memory} {disk}"),
            kind: Kind::VmType,
        });
    fixed.chain(vm_types).collect()
}

fn definition(name: &str) -> Result<Definition, QueryError> {
    catalogue()
        .into_iter()
        .find(|d| d.name == name)
        .ok_or_else(|| QueryError::NotFound(Resource::Property, name.to_owned()))
}

/// A value an administrator set, overriding the starting value.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Override {
    /// The value, checked and normalised.
    pub(crate) value: String,
}

impl records::Versioned for Override {
    const ENVELOPE: records::Envelope = crate::state::ENVELOPE;
    const VERSION: u32 = 1;
}

impl Record for Override {
    const TABLE: &'static str = "property/";
}

/// The current value of property `name`: an administrator's override, else its starting
/// value. An unknown name is the caller's mistake (`InvalidParameterValue`).
pub fn value(cloud: &Cloud, name: &str) -> Result<String, QueryError> {
    let definition = definition(name)?;
    current(cloud, &definition)
}

fn current(cloud: &Cloud, definition: &Definition) -> Result<String, QueryError> {
    match cloud.state.get::<Override>(&definition.name)? {
        Some(stored) => Ok(stored.value),
        None => Ok(starting_value(&cloud.settings, definition)),
    }
}

/// The overrides of the properties whose names start with `prefix`, by name.
fn overrides(cloud: &Cloud, prefix: &str) -> Result<BTreeMap<String, String>, QueryError> {
    Ok(cloud
        .state
        .scan::<Override>(prefix)?
        .into_iter()
        .map(|(name, stored)| (name, stored.value))
        .collect())
}

/// The current value of `definition`, given the overrides read by [`overrides`].
fn resolve(cloud: &Cloud, overrides: &BTreeMap<String, String>, definition: &Definition) -> String {
    match overrides.get(&definition.name) {
        Some(value) => value.clone(),
        None => starting_value(&cloud.settings, definition),
    }
}

/// The VM types offered, in the catalogue's order, with their current sizes.
pub fn vm_types(cloud: &Cloud) -> Result<Vec<VmType>, QueryError> {
    let overrides = overrides(cloud, VM_TYPE_PREFIX)?;
    catalogue()
        .into_iter()
        .filter(|d| d.kind == Kind::VmType)
        .map(|d| {
            let text = resolve(cloud, &overrides, &d);
            let (cpus, memory_mib, disk_gib) = parse_vm_type(&text).map_err(|why| {
                QueryError::internal(format!("the stored value of {} is invalid: {why}", d.name))
            })?;
            Ok(VmType {
                name: d.name[VM_TYPE_PREFIX.len()..].to_owned(),
                cpus,
                memory_mib,
                disk_gib,
            })
        })
        .collect()
}

/// The public addresses users may allocate, ascending, each once.
pub fn public_ips(cloud: &Cloud) -> Result<Vec<Ipv4Addr>, QueryError> {
    let text = value(cloud, PUBLIC_IPS)?;
    parse_address_pool(&text).map_err(|why| {
        QueryError::internal(format!(
            "the stored value of {PUBLIC_IPS} is invalid: {why}"
        ))
    })
}

/// The public pool in force read straight from the store, for the CLC's start to check it
/// before the cloud is built.
pub(crate) struct PoolInForce {
    /// Its value.
    pub text: String,
    /// Whether an administrator's `ModifyPropertyValue` set it (else koala.toml did, or it
    /// is empty).
    pub overridden: bool,
}

/// The public pool in force: an administrator's override in `state`, else the starting value
/// of `defaults`.
pub(crate) fn public_pool_in(
    state: &CloudState,
    defaults: &StartingValues,
) -> Result<PoolInForce, StateError> {
    Ok(match state.get::<Override>(PUBLIC_IPS)? {
        Some(stored) => PoolInForce {
            text: stored.value,
            overridden: true,
        },
        None => PoolInForce {
            // The pool's catalogue default is empty.
            text: defaults.get(PUBLIC_IPS).unwrap_or_default(),
            overridden: false,
        },
    })
}

/// A property as listed: name, current value, what it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    /// Its name (`cloud.vmtypes.m1.small`).
    pub name: String,
    /// Its current value.
    pub value: String,
    /// What it sets.
    pub description: String,
}

/// The properties whose names start with one of `prefixes` (none: all), by name, with their
/// values. Cloud administrators only.
pub fn list(
    cloud: &Cloud,
    caller: &Principal,
    prefixes: &[&str],
) -> Result<Vec<Property>, QueryError> {
    if !caller.is_cloud_admin() {
        return Err(QueryError::AccessDenied("DescribeProperties".to_owned()));
    }
    let overrides = overrides(cloud, "")?;
    let mut listed: Vec<Property> = catalogue()
        .into_iter()
        .filter(|d| prefixes.is_empty() || prefixes.iter().any(|a| d.name.starts_with(a)))
        .map(|d| Property {
            value: resolve(cloud, &overrides, &d),
            name: d.name,
            description: d.description,
        })
        .collect();
    listed.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(listed)
}

/// `DescribeProperties`: the properties named by `Property.N` (names or name prefixes; none
/// lists all), with values and descriptions. Cloud administrators only.
pub fn describe(call: &Call<'_>) -> Result<String, QueryError> {
    let asked = call.params.list("Property");
    let listed = list(call.cloud, call.caller, &asked)?;
    let mut x = Xml::new();
    x.list("properties", listed, |x, p| {
        x.elem("name", &p.name)
            .elem("value", &p.value)
            .elem("description", &p.description);
    });
    Ok(x.finish())
}

/// Sets property `name` to `value`, or with `None` back to its starting value; the new and
/// the old value. Cloud administrators only.
pub fn set(
    cloud: &Cloud,
    caller: &Principal,
    name: &str,
    value: Option<&str>,
) -> Result<(String, String), QueryError> {
    if !caller.is_cloud_admin() {
        return Err(QueryError::AccessDenied("ModifyPropertyValue".to_owned()));
    }
    let definition = definition(name)?;
    let new = match value {
        None => None,
        Some(text) => Some(check(cloud, name, text)?),
    };
    let _guard = cloud.state.exclusive();
    let old = current(cloud, &definition)?;
    let mut batch = Batch::new();
    let value = match new {
        Some(value) => {
            batch.put(
                name,
                &Override {
                    value: value.clone(),
                },
            );
            value
        }
        None => {
            batch.delete::<Override>(name);
            starting_value(&cloud.settings, &definition)
        }
    };
    cloud.state.commit(batch)?;
    tracing::info!(
        property = name,
        old = %old,
        new = %value,
        by = %caller.account_name,
        "cloud property changed"
    );
    Ok((value, old))
}

/// `text` checked as a value of property `name`, normalised, without setting it (a form
/// shows every mistake at once).
pub fn check(cloud: &Cloud, name: &str, text: &str) -> Result<String, QueryError> {
    let definition = definition(name)?;
    validate(definition.kind, text)
        .and_then(|value| fits_network(&cloud.settings, name, value))
        .map_err(|why| QueryError::Validation(format!("Invalid value for {name}: {why}")))
}

/// `ModifyPropertyValue`: sets property `Name` to `Value`, or with `Reset=true` back to its
/// starting value; answers the new and the old value. Cloud administrators only.
pub fn modify(call: &Call<'_>) -> Result<String, QueryError> {
    if !call.caller.is_cloud_admin() {
        return Err(QueryError::AccessDenied("ModifyPropertyValue".to_owned()));
    }
    let name = call.params.required("Name")?;
    let reset = call.params.boolean("Reset")?.unwrap_or(false);
    let given = call.params.get("Value");
    if reset && given.is_some() {
        return Err(QueryError::InvalidParameterCombination(
            "Give either Value or Reset=true, not both.".to_owned(),
        ));
    }
    if !reset && given.is_none() {
        definition(name)?;
        return Err(QueryError::MissingParameter("Value".to_owned()));
    }
    let (value, old) = set(call.cloud, call.caller, name, given)?;
    let mut x = Xml::new();
    x.elem("name", name)
        .elem("value", &value)
        .elem("oldValue", &old);
    Ok(x.finish())
}

/// The URLs credentials name: `base` (the cloud's own), with the Walrus URL property's
/// value when one is set.
pub fn service_urls(cloud: &Cloud, base: &ServiceUrls) -> Result<ServiceUrls, QueryError> {
    let mut urls = base.clone();
    let walrus = value(cloud, WALRUS_URL)?;
    if !walrus.is_empty() {
        urls.s3_url = walrus;
    }
    Ok(urls)
}

/// A checked value of property `name`, refused when it is a public pool with an address
/// inside the guests' private space (the CC routes that space to the guest networks).
fn fits_network(settings: &CloudSettings, name: &str, value: String) -> Result<String, String> {
    if name != PUBLIC_IPS {
        return Ok(value);
    }
    let pool = parse_address_pool(&value)?;
    match crate::networks::check_public_pool(&pool, settings.network.as_ref()) {
        Ok(()) => Ok(value),
        Err(overlap) => Err(format!("{overlap}.")),
    }
}

/// The starting value of a property: `koala.toml`'s, else the catalogue's default.
fn starting_value(settings: &CloudSettings, definition: &Definition) -> String {
    settings
        .property_defaults
        .get(&definition.name)
        .unwrap_or_else(|| definition.default.clone())
}

/// Starting values of cloud properties (`koala.toml`'s `[properties]`), each checked against
/// the catalogue when the file is read, so that a mistake stops the cloud at start instead of
/// surfacing on first use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartingValues(BTreeMap<String, String>);

/// Why a starting value of a cloud property is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PropertyError {
    /// The name is none of the catalogue's.
    #[error("there is no cloud property {0} (euca-describe-properties lists them)")]
    Unknown(String),
    /// The value is not one the property takes.
    #[error("{name} = {value:?} is refused: {why}")]
    Invalid {
        /// The property.
        name: String,
        /// The value given.
        value: String,
        /// What is wrong, as a sentence.
        why: String,
    },
}

impl StartingValues {
    /// Checks `values` (name, value), keeping each normalised as `ModifyPropertyValue`
    /// would store it; a later value of the same name wins.
    pub fn new(
        values: impl IntoIterator<Item = (String, String)>,
    ) -> Result<StartingValues, PropertyError> {
        let catalogue = catalogue();
        let mut checked = BTreeMap::new();
        for (name, value) in values {
            let Some(definition) = catalogue.iter().find(|d| d.name == name) else {
                return Err(PropertyError::Unknown(name));
            };
            let normalised = match validate(definition.kind, &value) {
                Ok(normalised) => normalised,
                Err(why) => return Err(PropertyError::Invalid { name, value, why }),
            };
            checked.insert(name, normalised);
        }
        Ok(StartingValues(checked))
    }

    /// Refuses a starting public pool with an address inside the guests' private space of
    /// `layout` (koala.toml's `[network]`), so that the file is refused as a whole when it is
    /// read rather than the pool routing addresses to a guest network.
    pub fn check_network(&self, layout: Option<&network::Layout>) -> Result<(), PropertyError> {
        let Some(value) = self.get(PUBLIC_IPS) else {
            return Ok(());
        };
        let invalid = |why| PropertyError::Invalid {
            name: PUBLIC_IPS.to_owned(),
            value: value.clone(),
            why,
        };
        let pool = parse_address_pool(&value).map_err(invalid)?;
        crate::networks::check_public_pool(&pool, layout)
            .map_err(|overlap| invalid(format!("{overlap}.")))
    }

    /// The starting value of property `name`, if one was given.
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }
}

/// Checks a new value for a property of `kind`; the value to store (trimmed, normalised), or
/// a sentence saying what is wrong.
fn validate(kind: Kind, text: &str) -> Result<String, String> {
    let text = text.trim();
    match kind {
        Kind::ImageId(prefix) => {
            if text.is_empty() || is_resource_id(text, prefix) {
                Ok(text.to_owned())
            } else {
                Err(format!(
                    "'{text}' is not an image id of the form {prefix}-XXXXXXXX; give one or an \
                     empty value."
                ))
            }
        }
        Kind::AddressPool => {
            parse_address_pool(text)?;
            Ok(pool_entries(text).join(","))
        }
        Kind::VmType => {
            let (cpus, memory, disk) = parse_vm_type(text)?;
            Ok(format!("{cpus} {memory} {disk}"))
        }
        Kind::Seconds => match text.parse::<u32>() {
            Ok(n) if (1..=86_400).contains(&n) => Ok(n.to_string()),
            _ => Err(format!(
                "'{text}' is not a number of seconds from 1 to 86400."
            )),
        },
        Kind::Limit => parse_limit(text)
            .map(|limit| limit.map_or_else(|| UNLIMITED.to_owned(), |n| n.to_string())),
        Kind::Url => {
            let absolute = text.parse::<http::Uri>().is_ok_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https"))
                    && u.host().is_some_and(|h| !h.is_empty())
            });
            if text.is_empty() || absolute {
                Ok(text.to_owned())
            } else {
                Err(format!(
                    "'{text}' is not an http:// or https:// URL; give one or an empty value."
                ))
            }
        }
    }
}

/// A quota's value: `unlimited` (any case) is `None`, else a whole number.
fn parse_limit(text: &str) -> Result<Option<u64>, String> {
    if text.eq_ignore_ascii_case(UNLIMITED) {
        return Ok(None);
    }
    text.parse::<u64>()
        .map(Some)
        .map_err(|_| format!("'{text}' is neither a whole number nor {UNLIMITED}."))
}

/// The quota property `name` in force: `None` when unlimited.
pub fn limit(cloud: &Cloud, name: &str) -> Result<Option<u64>, QueryError> {
    let text = value(cloud, name)?;
    parse_limit(&text).map_err(|why| {
        QueryError::internal(format!("the stored value of {name} is invalid: {why}"))
    })
}

/// The start timeout in force, in seconds.
pub fn start_timeout(cloud: &Cloud) -> Result<u64, QueryError> {
    let text = value(cloud, START_TIMEOUT)?;
    text.parse().map_err(|_| {
        QueryError::internal(format!(
            "the stored value of {START_TIMEOUT} is invalid: {text}"
        ))
    })
}

/// The entries of a pool value: separated by commas or white space; a range may be written
/// with spaces around its dash (`10.0.0.1 - 10.0.0.9`).
fn pool_entries(text: &str) -> Vec<String> {
    let pieces: Vec<&str> = text.split('-').collect();
    let last = pieces.len().saturating_sub(1);
    let tightened = pieces
        .iter()
        .enumerate()
        .map(|(i, piece)| match (i == 0, i == last) {
            (true, true) => *piece,
            (true, false) => piece.trim_end(),
            (false, true) => piece.trim_start(),
            (false, false) => piece.trim(),
        })
        .collect::<Vec<_>>()
        .join("-");
    tightened
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|e| !e.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The addresses of a pool value (`10.0.0.1, 10.0.0.5-10.0.0.9`), ascending, each once; or
/// a sentence saying what is wrong.
pub(crate) fn parse_address_pool(text: &str) -> Result<Vec<Ipv4Addr>, String> {
    let mut addresses = BTreeSet::new();
    for entry in pool_entries(text) {
        let (first, last) = match entry.split_once('-') {
            Some((a, b)) => (parse_public_ip(a)?, parse_public_ip(b)?),
            None => {
                let one = parse_public_ip(&entry)?;
                (one, one)
            }
        };
        if first > last {
            return Err(format!(
                "the range {entry} ends before it starts; write the lower address first."
            ));
        }
        let span = u64::from(u32::from(last)) - u64::from(u32::from(first)) + 1;
        if addresses.len() as u64 + span > MAX_PUBLIC_IPS {
            return Err(format!(
                "the pool would hold more than {MAX_PUBLIC_IPS} addresses."
            ));
        }
        addresses.extend((u32::from(first)..=u32::from(last)).map(Ipv4Addr::from));
    }
    Ok(addresses.into_iter().collect())
}

fn parse_public_ip(text: &str) -> Result<Ipv4Addr, String> {
    let ip: Ipv4Addr = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not an IPv4 address."))?;
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback() {
        return Err(format!(
            "{ip} cannot be a public address (unspecified, broadcast, multicast or loopback)."
        ));
    }
    Ok(ip)
}

/// `CPUS MEMORY_MIB DISK_GIB`, each a positive integer.
fn parse_vm_type(text: &str) -> Result<(u32, u32, u32), String> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [cpus, memory, disk] = fields[..] else {
        return Err(format!(
            "'{text}' is not three numbers: virtual CPUs, memory in MiB and disk in GiB \
             (e.g. '1 256 5')."
        ));
    };
    let number = |field: &str, what: &str| -> Result<u32, String> {
        match field.parse::<u32>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(format!(
                "the {what} '{field}' is not a positive whole number."
            )),
        }
    };
    Ok((
        number(cpus, "number of virtual CPUs")?,
        number(memory, "memory in MiB")?,
        number(disk, "disk in GiB")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn address_pools() {
        assert_eq!(parse_address_pool("").unwrap(), Vec::<Ipv4Addr>::new());
        assert_eq!(
            parse_address_pool(" 10.0.0.9, 10.0.0.1 - 10.0.0.3 10.0.0.2").unwrap(),
            vec![
                ip("10.0.0.1"),
                ip("10.0.0.2"),
                ip("10.0.0.3"),
                ip("10.0.0.9")
            ]
        );
        assert_eq!(
            parse_address_pool("192.168.0.255-192.168.1.0").unwrap(),
            vec![ip("192.168.0.255"), ip("192.168.1.0")]
        );
        assert_eq!(
            parse_address_pool("10.1.0.0-10.1.255.255").unwrap().len(),
            65_536
        );
        for bad in [
            "10.0.0.3-10.0.0.1",
            "10.0.0",
            "10.0.0.1-",
            "-10.0.0.1",
            "10.0.0.1-10.0.0.2-10.0.0.3",
            "10.0.0.1 - - 10.0.0.2",
            "host.example",
            "0.0.0.0",
            "127.0.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "10.0.0.0-10.1.0.0",
            "10.0.0.0/24",
        ] {
            assert!(parse_address_pool(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pool_values_are_stored_normalised() {
        assert_eq!(
            validate(Kind::AddressPool, " 10.0.0.1-10.0.0.3 ,10.0.0.7  10.0.0.8").unwrap(),
            "10.0.0.1-10.0.0.3,10.0.0.7,10.0.0.8"
        );
        assert_eq!(validate(Kind::AddressPool, "  ").unwrap(), "");
    }

    #[test]
    fn image_id_values() {
        let kernel = Kind::ImageId("eki");
        assert_eq!(validate(kernel, "").unwrap(), "");
        assert_eq!(validate(kernel, " eki-0123abcd ").unwrap(), "eki-0123abcd");
        for bad in ["emi-0123abcd", "eki-0123", "eki-xyzxyzxy", "kernel"] {
            let why = validate(kernel, bad).unwrap_err();
            assert!(why.contains("eki-XXXXXXXX"), "{why}");
        }
        assert!(validate(Kind::ImageId("eri"), "eri-0123abcd").is_ok());
    }

    #[test]
    fn vm_type_values() {
        assert_eq!(validate(Kind::VmType, " 2  1024 10 ").unwrap(), "2 1024 10");
        for bad in [
            "",
            "1 256",
            "1 256 5 6",
            "0 256 5",
            "1 -256 5",
            "1 256 five",
            "1.5 2 3",
        ] {
            assert!(validate(Kind::VmType, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limit_values() {
        assert_eq!(validate(Kind::Limit, " 12 ").unwrap(), "12");
        assert_eq!(validate(Kind::Limit, "0").unwrap(), "0");
        assert_eq!(validate(Kind::Limit, "Unlimited").unwrap(), UNLIMITED);
        for bad in ["", "-1", "1.5", "10GiB", "none"] {
            assert!(validate(Kind::Limit, bad).is_err(), "{bad}");
        }
        assert_eq!(parse_limit(UNLIMITED), Ok(None));
        assert_eq!(parse_limit("7"), Ok(Some(7)));
    }

    #[test]
    fn catalogue_is_consistent() {
        let all = catalogue();
        let names: BTreeSet<&str> = all.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names.len(), all.len(), "names are unique");
        for d in &all {
            assert_eq!(
                validate(d.kind, &d.default).as_deref(),
                Ok(d.default.as_str())
            );
            assert!(d.description.ends_with('.'), "{}", d.name);
        }
        let small = all
            .iter()
            .find(|d| d.name == "cloud.vmtypes.m1.small")
            .unwrap();
        assert_eq!(small.default, "1 256 5");
        assert!(matches!(
            definition("cloud.nothing"),
            Err(QueryError::NotFound(Resource::Property, _))
        ));
    }

    /// A MANAGED-NOVLAN layout whose guests' private space is 10.77.0.0/24.
    fn managed_layout() -> network::Layout {
        serde_json::from_value::<network::NetworkSettings>(serde_json::json!({
            "mode": "managed-novlan",
            "bridge": "br0",
            "private_subnet": "10.77.0.0/24",
        }))
        .unwrap()
        .layout()
        .unwrap()
    }

    /// `ModifyPropertyValue` of `name` to `value` by a cloud administrator.
    fn modify_as_admin(cloud: &Cloud, name: &str, value: &str) -> Result<String, QueryError> {
        let admin = identity::Principal {
            account_id: "000000000001".into(),
            account_name: "eucalyptus".into(),
            user_name: "admin".into(),
            access_key_id: "AKIDADMIN".into(),
            role: identity::Role::CloudAdmin,
        };
        let encode =
            |v| percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC);
        let query = format!("Name={}&Value={}", encode(name), encode(value));
        let params = crate::query::QueryRequest::new(&query, b"", &http::HeaderMap::new());
        modify(&Call {
            cloud,
            caller: &admin,
            params: &params,
        })
    }

    #[tokio::test]
    async fn a_public_pool_inside_the_guests_private_space_is_refused_by_modify() {
        let dir = tempfile::tempdir().unwrap();
        let mut settings = crate::testing::settings();
        settings.network = Some(managed_layout());
        let cloud = crate::testing::cloud_in(dir.path(), settings);
        modify_as_admin(&cloud, PUBLIC_IPS, "10.98.0.1-10.98.0.3").unwrap();
        let err =
            modify_as_admin(&cloud, PUBLIC_IPS, "10.98.0.4, 10.76.255.250-10.77.0.3").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid value for cloud.network.public_ips: 10.77.0.0 is inside the guests' \
             private space 10.77.0.0/24 ([network] private_subnet), where a public address \
             would be routed to a guest network."
        );
        let response = err.render(crate::query::Dialect::Ec2, "rid");
        assert_eq!(response.status(), http::StatusCode::BAD_REQUEST);
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            body.contains("<Code>InvalidParameterValue</Code>"),
            "{body}"
        );
        // Nothing was stored: the pool is the one set before.
        assert_eq!(
            public_ips(&cloud).unwrap(),
            vec![ip("10.98.0.1"), ip("10.98.0.2"), ip("10.98.0.3")]
        );

        // Without a MANAGED network, no address is routed to guests: any pool is taken.
        let dir = tempfile::tempdir().unwrap();
        let cloud = crate::testing::cloud_in(dir.path(), crate::testing::settings());
        modify_as_admin(&cloud, PUBLIC_IPS, "10.77.0.5").unwrap();
    }

    #[test]
    fn a_starting_public_pool_inside_the_guests_private_space_is_refused() {
        let values =
            |pool: &str| StartingValues::new([(PUBLIC_IPS.to_owned(), pool.to_owned())]).unwrap();
        let layout = managed_layout();
        assert_eq!(
            values("10.98.0.1-10.98.0.3").check_network(Some(&layout)),
            Ok(())
        );
        assert_eq!(
            StartingValues::default().check_network(Some(&layout)),
            Ok(())
        );
        let err = values("10.77.0.200 - 10.77.0.201")
            .check_network(Some(&layout))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cloud.network.public_ips = \"10.77.0.200-10.77.0.201\" is refused: 10.77.0.200 is \
             inside the guests' private space 10.77.0.0/24 ([network] private_subnet), where a \
             public address would be routed to a guest network."
        );
        // SYSTEM and STATIC route no public address: the pool is not checked.
        let system = serde_json::from_value::<network::NetworkSettings>(serde_json::json!({
            "mode": "static",
            "bridge": "br0",
            "private_subnet": "10.77.0.0/24",
            "router": "10.77.0.1",
        }))
        .unwrap()
        .layout()
        .unwrap();
        assert_eq!(values("10.77.0.200").check_network(Some(&system)), Ok(()));
        assert_eq!(values("10.77.0.200").check_network(None), Ok(()));
        // The pool's catalogue default, which `public_pool_in` relies on, is empty.
        assert_eq!(definition(PUBLIC_IPS).unwrap().default, "");
    }

    #[test]
    fn starting_values_come_from_koala_toml_and_bad_ones_are_refused() {
        let values = |pairs: &[(&str, &str)]| {
            StartingValues::new(pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())))
        };
        let settings = CloudSettings {
            region: "r".into(),
            ec2_url: String::new(),
            property_defaults: values(&[(PUBLIC_IPS, "10.0.0.1 - 10.0.0.2")]).unwrap(),
            network: None,
            metadata: None,
        };
        let pool = definition(PUBLIC_IPS).unwrap();
        assert_eq!(starting_value(&settings, &pool), "10.0.0.1-10.0.0.2");
        let small = definition("cloud.vmtypes.m1.small").unwrap();
        assert_eq!(starting_value(&settings, &small), "1 256 5");
        let kernel = definition(DEFAULT_KERNEL).unwrap();
        assert_eq!(starting_value(&settings, &kernel), "");
        assert!(matches!(
            values(&[("cloud.vmtypes.m1.small", "one")]),
            Err(PropertyError::Invalid { name, .. }) if name == "cloud.vmtypes.m1.small"
        ));
        assert_eq!(
            values(&[("cloud.unknown", "x")]),
            Err(PropertyError::Unknown("cloud.unknown".into()))
        );
    }
}

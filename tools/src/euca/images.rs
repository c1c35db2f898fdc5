//! Images: `euca-register`, `euca-deregister`, `euca-describe-images` and the image
//! attribute commands (`euca-describe-image-attribute`, `euca-modify-image-attribute`,
//! `euca-reset-image-attribute`).

use std::collections::BTreeMap;

use clap::Parser;

use super::{print_tag, Command, Ec2Args, EucaError, Filters, Params, Table};
use crate::ec2xml::Element;

/// Register a new image.
#[derive(Parser, Debug)]
#[command(version)]
pub struct Register {
    /// Location of the image's manifest in the cloud (BUCKET/PREFIX/NAME.manifest.xml;
    /// required for instance-store images).
    #[arg(value_name = "MANIFEST")]
    manifest: Option<String>,
    /// Name of the new image [default: the image's name in its manifest, as Eucalyptus
    /// named images registered with euca2ools 1.x, which had no such flag].
    #[arg(short = 'n', long = "name")]
    name: Option<String>,
    /// Description of the new image.
    #[arg(short = 'd', long = "description", value_name = "DESCRIPTION")]
    description: Option<String>,
    /// CPU architecture of the new image.
    #[arg(short = 'a', long = "architecture", value_parser = ["i386", "x86_64", "armhf"])]
    architecture: Option<String>,
    /// ID of the kernel to associate with the new image.
    #[arg(long = "kernel", value_name = "KERNEL")]
    kernel: Option<String>,
    /// ID of the ramdisk to associate with the new image.
    #[arg(long = "ramdisk", value_name = "RAMDISK")]
    ramdisk: Option<String>,
    /// Root device name (default for EBS images: /dev/sda1).
    #[arg(long = "root-device-name", value_name = "DEVICE")]
    root_device_name: Option<String>,
    /// Snapshot to use for the root device (EBS images).
    #[arg(short = 's', long = "snapshot", value_name = "SNAPSHOT")]
    snapshot: Option<String>,
    /// A block device mapping for the image, DEVICE=MAPPED, where MAPPED is "none",
    /// "ephemeral(0-3)" or "[SNAP-ID]:[SIZE]:[true|false]:[standard|VOLTYPE[:IOPS]]".
    #[arg(short = 'b', long = "block-device-mapping", value_name = "DEVICE=MAPPED",
          value_parser = Mapping::parse)]
    block_device_mapping: Vec<Mapping>,
    /// Virtualization type for the new image.
    #[arg(long = "virtualization-type", value_parser = ["paravirtual", "hvm"])]
    virtualization_type: Option<String>,
    /// The new image's platform.
    #[arg(long = "platform", value_parser = ["windows"])]
    platform: Option<String>,
    #[command(flatten)]
    ec2: Ec2Args,
}

impl Register {
    /// The `RegisterImage` parameters, with euca2ools' checks and EBS defaults.
    fn params(&self) -> Result<Params, EucaError> {
        let mut params = Params::new();
        let mut mappings = self.block_device_mapping.clone();
        let mut root_device = self.root_device_name.clone();
        match &self.manifest {
            Some(_) if root_device.is_some() => {
                return Err(EucaError::Usage(
                    "argument --root-device-name: not allowed with argument MANIFEST".into(),
                ))
            }
            Some(_) if self.snapshot.is_some() => {
                return Err(EucaError::Usage(
                    "argument --snapshot: not allowed with argument MANIFEST".into(),
                ))
            }
            Some(_) => {}
            None => {
                let root = root_device.get_or_insert_with(|| "/dev/sda1".to_owned());
                match mappings.iter().find(|m| &m.device == root) {
                    Some(m) => {
                        if let Some(snapshot) = &self.snapshot {
                            if m.snapshot() != Some(snapshot.as_str()) {
                                return Err(EucaError::Usage(format!(
                                    "snapshot ID supplied with --snapshot conflicts with block \
                                     device mapping for root device {root}"
                                )));
                            }
                        }
                    }
                    None => match &self.snapshot {
                        Some(snapshot) => mappings.push(Mapping {
                            device: root.clone(),
                            target: Target::Ebs(Ebs {
                                snapshot_id: Some(snapshot.clone()),
                                ..Ebs::default()
                            }),
                        }),
                        None => {
                            return Err(EucaError::Usage(
                                "either a manifest location or a root device snapshot mapping \
                                 must be specified"
                                    .into(),
                            ))
                        }
                    },
                }
            }
        }
        // The location as a bucket path, as euca2ools sends it (no leading slash).
        let location = self.manifest.as_deref().map(|m| m.trim_start_matches('/'));
        params
            .set_opt("ImageLocation", location)
            .set_opt("Name", self.name.as_deref())
            .set_opt("Description", self.description.as_deref())
            .set_opt("Architecture", self.architecture.as_deref())
            .set_opt("KernelId", self.kernel.as_deref())
            .set_opt("RamdiskId", self.ramdisk.as_deref())
            .set_opt("RootDeviceName", root_device.as_deref())
            .set_opt("VirtualizationType", self.virtualization_type.as_deref())
            .set_opt("Platform", self.platform.as_deref());
        for (n, mapping) in mappings.iter().enumerate() {
            mapping.add_to(&mut params, &format!("BlockDeviceMapping.{}", n + 1));
        }
        Ok(params)
    }
}

impl Command for Register {
    /// `-a` and `-s` are this command's own flags, not euca2ools 1.x's credentials.
    fn spellings(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
        args
    }

    fn run(self) -> Result<(), EucaError> {
        let params = self.params()?;
        let response = self.ec2.client()?.call("RegisterImage", &params)?;
        let image_id = response
            .value("imageId")
            .ok_or(EucaError::Missing("imageId"))?;
        self.ec2.table().row(&["IMAGE", image_id])
    }
}

/// A block device mapping given on the command line (`DEVICE=MAPPED`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// The device name (`/dev/sdb`).
    pub device: String,
    /// What the device is.
    pub target: Target,
}

/// What a mapped device is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `none`: suppress a mapping the image has.
    NoDevice,
    /// `ephemeralN`: an instance-store volume.
    Virtual(String),
    /// An EBS volume.
    Ebs(Ebs),
}

/// The EBS part of a mapping, `[SNAP-ID]:[SIZE]:[true|false]:[standard|VOLTYPE[:IOPS]]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ebs {
    /// The snapshot to create the volume from.
    pub snapshot_id: Option<String>,
    /// The volume's size in GiB.
    pub volume_size: Option<u32>,
    /// Whether the volume goes with the instance (`true`/`false`).
    pub delete_on_termination: Option<String>,
    /// The volume type.
    pub volume_type: Option<String>,
    /// Provisioned IOPS.
    pub iops: Option<u32>,
}

impl Mapping {
    /// Parses `DEVICE=MAPPED` as euca2ools does.
    pub fn parse(text: &str) -> Result<Mapping, String> {
        let Some((device, mapped)) = text.split_once('=') else {
            return Err(format!(
                "block device mapping {text:?} must have form DEVICE=MAPPED"
            ));
        };
        let target = if mapped.eq_ignore_ascii_case("none") {
            Target::NoDevice
        } else if mapped.starts_with("ephemeral") {
            Target::Virtual(mapped.to_owned())
        } else if mapped.starts_with("snap-")
            || mapped.starts_with("vol-")
            || mapped.starts_with(':')
        {
            Target::Ebs(Ebs::parse(text, mapped)?)
        } else if mapped.is_empty() {
            return Err(format!(
                "invalid block device mapping {text:?}; use \"{device}=none\" to suppress an \
                 existing mapping"
            ));
        } else {
            return Err(format!("unrecognized block device mapping {text:?}"));
        };
        Ok(Mapping {
            device: device.to_owned(),
            target,
        })
    }

    fn snapshot(&self) -> Option<&str> {
        match &self.target {
            Target::Ebs(ebs) => ebs.snapshot_id.as_deref(),
            _ => None,
        }
    }

    /// Adds `PREFIX.DeviceName` and the rest of the mapping's parameters.
    pub fn add_to(&self, params: &mut Params, prefix: &str) {
        params.set(format!("{prefix}.DeviceName"), &self.device);
        match &self.target {
            Target::NoDevice => {
                params.set(format!("{prefix}.NoDevice"), "true");
            }
            Target::Virtual(name) => {
                params.set(format!("{prefix}.VirtualName"), name);
            }
            Target::Ebs(ebs) => {
                let size = ebs.volume_size.map(|s| s.to_string());
                let iops = ebs.iops.map(|i| i.to_string());
                params
                    .set_opt(
                        &format!("{prefix}.Ebs.SnapshotId"),
                        ebs.snapshot_id.as_deref(),
                    )
                    .set_opt(&format!("{prefix}.Ebs.VolumeSize"), size.as_deref())
                    .set_opt(
                        &format!("{prefix}.Ebs.DeleteOnTermination"),
                        ebs.delete_on_termination.as_deref(),
                    )
                    .set_opt(
                        &format!("{prefix}.Ebs.VolumeType"),
                        ebs.volume_type.as_deref(),
                    )
                    .set_opt(&format!("{prefix}.Ebs.Iops"), iops.as_deref());
            }
        }
    }
}

impl Ebs {
    fn parse(text: &str, mapped: &str) -> Result<Ebs, String> {
        let form = || {
            format!(
                "EBS block device mapping {text:?} must have form \
                 DEVICE=[SNAP-ID]:[GiB]:[true|false]:[standard|TYPE[:IOPS]]"
            )
        };
        let bits: Vec<&str> = mapped.split(':').collect();
        if bits.len() > 5 {
            return Err(form());
        }
        let bit = |n: usize| bits.get(n).copied().filter(|b| !b.is_empty());
        let number = |n: usize| -> Result<Option<u32>, String> {
            bit(n).map(|b| b.parse().map_err(|_| form())).transpose()
        };
        let delete_on_termination = match bit(2).map(str::to_ascii_lowercase) {
            Some(flag) if flag != "true" && flag != "false" => {
                return Err(format!(
                    "in block device mapping {text:?}: DeleteOnTermination must be \"true\" or \
                     \"false\""
                ))
            }
            flag => flag,
        };
        let ebs = Ebs {
            snapshot_id: bit(0).map(str::to_owned),
            volume_size: number(1)?,
            delete_on_termination,
            volume_type: bit(3).map(str::to_owned),
            iops: number(4)?,
        };
        if ebs.iops.is_some() && ebs.volume_type.as_deref() == Some("standard") {
            return Err(format!(
                "in block device mapping {text:?}: IOPS may not be specified for \"standard\" \
                 volumes"
            ));
        }
        if ebs == Ebs::default() {
            return Err(format!(
                "EBS block device mapping {text:?} must specify at least one element; use \
                 \"DEVICE=none\" to suppress an existing mapping"
            ));
        }
        Ok(ebs)
    }
}

/// Deregister an image.
#[derive(Parser, Debug)]
#[command(version)]
pub struct Deregister {
    /// The image to deregister.
    #[arg(value_name = "IMAGE")]
    image_id: String,
    #[command(flatten)]
    ec2: Ec2Args,
}

impl Command for Deregister {
    fn run(self) -> Result<(), EucaError> {
        let mut params = Params::new();
        params.set("ImageId", &self.image_id);
        self.ec2.client()?.call("DeregisterImage", &params)?;
        self.ec2.table().row(&["IMAGE", &self.image_id])
    }
}

/// Show information about images. By default, only images your account owns and images for
/// which your account has explicit launch permissions are shown.
#[derive(Parser, Debug)]
#[command(version)]
pub struct DescribeImages {
    /// Limit results to specific images.
    #[arg(value_name = "IMAGE")]
    image_ids: Vec<String>,
    /// Describe all images.
    #[arg(short = 'a', long = "all")]
    all: bool,
    /// Describe images owned by the specified owner.
    #[arg(short = 'o', long = "owner", value_name = "ACCOUNT")]
    owners: Vec<String>,
    /// Describe images for which the specified account has explicit launch permissions.
    #[arg(short = 'x', long = "executable-by", value_name = "ACCOUNT")]
    executable_by: Vec<String>,
    #[command(flatten)]
    filters: Filters,
    #[command(flatten)]
    ec2: Ec2Args,
}

impl DescribeImages {
    /// The `DescribeImages` calls to make: two (owned, then executable) when nothing narrows
    /// the request, as euca2ools does, else one.
    fn calls(&self) -> Result<Vec<Params>, EucaError> {
        if self.all {
            for (given, what) in [
                (!self.image_ids.is_empty(), "a list of images"),
                (
                    !self.executable_by.is_empty(),
                    "argument -x/--executable-by",
                ),
                (!self.owners.is_empty(), "argument -o/--owner"),
            ] {
                if given {
                    return Err(EucaError::Usage(format!(
                        "argument -a/--all: not allowed with {what}"
                    )));
                }
            }
        }
        let mut base = Params::new();
        base.list("ImageId", &self.image_ids)
            .list("Owner", &self.owners)
            .list("ExecutableBy", &self.executable_by);
        self.filters.add_to(&mut base);
        if self.all
            || !self.image_ids.is_empty()
            || !self.owners.is_empty()
            || !self.executable_by.is_empty()
        {
            return Ok(vec![base]);
        }
        Ok(["Owner.1", "ExecutableBy.1"]
            .iter()
            .map(|who| {
                let mut params = Params::new();
                params.set(*who, "self");
                params.0.extend(base.0.iter().cloned());
                params
            })
            .collect())
    }
}

impl Command for DescribeImages {
    /// `-a` and `-s` are this command's own flags, not euca2ools 1.x's credentials.
    fn spellings(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
        args
    }

    fn run(self) -> Result<(), EucaError> {
        let calls = self.calls()?;
        let client = self.ec2.client()?;
        let responses = calls
            .iter()
            .map(|params| client.call("DescribeImages", params))
            .collect::<Result<Vec<Element>, EucaError>>()?;
        // Merged by ID (the first answer wins) and sorted by it, as euca2ools prints them.
        let mut images: BTreeMap<&str, &Element> = BTreeMap::new();
        for image in responses.iter().flat_map(|r| r.items("imagesSet")) {
            images.entry(image.field("imageId")).or_insert(image);
        }
        let mut table = self.ec2.table();
        for image in images.values() {
            print_image(&mut table, image)?;
        }
        Ok(())
    }
}

/// Prints an `imagesSet` item: the `IMAGE` line, its block device mappings and its tags.
fn print_image(table: &mut Table, image: &Element) -> Result<(), EucaError> {
    let owner_id = image.field("imageOwnerId");
    let name = image.field("name");
    let shown_name = if name.is_empty() {
        image.field("imageLocation").to_owned()
    } else {
        format!("{owner_id}/{name}")
    };
    let owner = match image.field("imageOwnerAlias") {
        "" => owner_id,
        alias => alias,
    };
    let visibility = if image.field("isPublic") == "true" {
        "public"
    } else {
        "private"
    };
    let image_id = image.field("imageId");
    table.row(&[
        "IMAGE",
        image_id,
        &shown_name,
        owner,
        image.field("imageState"),
        visibility,
        image.field("architecture"),
        image.field("imageType"),
        image.field("kernelId"),
        image.field("ramdiskId"),
        image.field("platform"),
        image.field("rootDeviceType"),
        image.field("virtualizationType"),
        image.field("hypervisor"),
    ])?;
    for mapping in image.items("blockDeviceMapping") {
        let device = mapping.field("deviceName");
        match mapping.field("virtualName") {
            "" => table.row(&[
                "BLOCKDEVICEMAPPING",
                "EBS",
                device,
                mapping.field("ebs/snapshotId"),
                mapping.field("ebs/volumeSize"),
                mapping.field("ebs/deleteOnTermination"),
                mapping.field("ebs/volumeType"),
                mapping.field("ebs/iops"),
            ])?,
            virtual_name => {
                table.row(&["BLOCKDEVICEMAPPING", "EPHEMERAL", device, virtual_name])?
            }
        }
    }
    for tag in image.items("tagSet") {
        print_tag(table, image_id, tag.field("key"), tag.field("value"))?;
    }
    Ok(())
}

/// Which attribute `euca-describe-image-attribute` shows (exactly one).
#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false)]
struct AttributeChoice {
    /// Display launch permissions.
    #[arg(short = 'l', long = "launch-permission")]
    launch_permission: bool,
    /// List associated product codes.
    #[arg(short = 'p', long = "product-codes")]
    product_codes: bool,
    /// Describe block device mappings.
    #[arg(short = 'B', long = "block-device-mapping")]
    block_device_mapping: bool,
    /// Show the associated kernel image ID.
    #[arg(long = "kernel")]
    kernel: bool,
    /// Show the associated ramdisk image ID.
    #[arg(long = "ramdisk")]
    ramdisk: bool,
    /// Show the image's description.
    #[arg(long = "description")]
    description: bool,
}

impl AttributeChoice {
    fn name(&self) -> &'static str {
        [
            (self.launch_permission, "launchPermission"),
            (self.product_codes, "productCodes"),
            (self.block_device_mapping, "blockDeviceMapping"),
            (self.kernel, "kernel"),
            (self.ramdisk, "ramdisk"),
            (self.description, "description"),
        ]
        .iter()
        .find(|(chosen, _)| *chosen)
        .map_or("launchPermission", |(_, name)| name)
    }
}

/// Show information about an attribute of an image.
#[derive(Parser, Debug)]
#[command(version)]
pub struct DescribeImageAttribute {
    /// The image to describe.
    #[arg(value_name = "IMAGE")]
    image_id: String,
    #[command(flatten)]
    attribute: AttributeChoice,
    #[command(flatten)]
    ec2: Ec2Args,
}

impl Command for DescribeImageAttribute {
    fn run(self) -> Result<(), EucaError> {
        let mut params = Params::new();
        params
            .set("ImageId", &self.image_id)
            .set("Attribute", self.attribute.name());
        let response = self.ec2.client()?.call("DescribeImageAttribute", &params)?;
        let image_id = response.field("imageId");
        let mut table = self.ec2.table();
        for permission in response.items("launchPermission") {
            for entity in &permission.children {
                table.row(&["launchPermission", image_id, &entity.name, &entity.text])?;
            }
        }
        for code in response.items("productCodes") {
            let shown = match code.value("type") {
                Some(kind) => format!("[{kind}: {}]", code.field("productCode")),
                None => code.field("productCode").to_owned(),
            };
            table.row(&["productCodes", image_id, "productCode", &shown])?;
        }
        for mapping in response.items("blockDeviceMapping") {
            let source = match mapping.field("virtualName") {
                "" => mapping.field("ebs/snapshotId"),
                virtual_name => virtual_name,
            };
            let shown = format!("{}: {source}", mapping.field("deviceName"));
            table.row(&["blockDeviceMapping", image_id, "blockDeviceMap", &shown])?;
        }
        for attribute in ["kernel", "ramdisk", "description"] {
            if let Some(value) = response.value(&format!("{attribute}/value")) {
                table.row(&[attribute, image_id, "", value])?;
            }
        }
        Ok(())
    }
}

/// Modify an attribute of an image.
#[derive(Parser, Debug)]
#[command(version)]
pub struct ModifyImageAttribute {
    /// The image to modify.
    #[arg(value_name = "IMAGE")]
    image_id: String,
    /// Grant/revoke launch permissions with -a/-r.
    #[arg(short = 'l', long = "launch-permission", required_unless_present_any = ["description", "product_code"])]
    launch_permission: bool,
    /// Change the image's description.
    #[arg(long = "description", value_name = "DESC", conflicts_with_all = ["launch_permission", "product_code"])]
    description: Option<String>,
    /// Product code to add to the given instance-store image.
    #[arg(
        short = 'p',
        long = "product-code",
        value_name = "CODE",
        conflicts_with = "launch_permission"
    )]
    product_code: Vec<String>,
    /// Account to grant launch permission, or "all" for all accounts.
    #[arg(
        short = 'a',
        long = "add",
        value_name = "ENTITY",
        requires = "launch_permission"
    )]
    add: Vec<String>,
    /// Account to remove launch permission from, or "all" for all accounts.
    #[arg(
        short = 'r',
        long = "remove",
        value_name = "ENTITY",
        requires = "launch_permission"
    )]
    remove: Vec<String>,
    #[command(flatten)]
    ec2: Ec2Args,
}

impl ModifyImageAttribute {
    fn params(&self) -> Result<Params, EucaError> {
        let mut params = Params::new();
        params.set("ImageId", &self.image_id);
        if self.launch_permission {
            if self.add.is_empty() && self.remove.is_empty() {
                return Err(EucaError::Usage(
                    "at least one entity must be specified with -a/--add or -r/--remove".into(),
                ));
            }
            for (verb, entities) in [("Add", &self.add), ("Remove", &self.remove)] {
                for (n, entity) in entities.iter().enumerate() {
                    let (kind, _) = entity_kind(entity);
                    params.set(format!("LaunchPermission.{verb}.{}.{kind}", n + 1), entity);
                }
            }
        }
        params
            .set_opt("Description.Value", self.description.as_deref())
            .list("ProductCode", &self.product_code);
        Ok(params)
    }
}

/// A launch permission's entity as EC2 names it (`Group` for "all", else `UserId`) and as
/// euca2ools prints it.
fn entity_kind(entity: &str) -> (&'static str, &'static str) {
    if entity == "all" {
        ("Group", "group")
    } else {
        ("UserId", "userId")
    }
}

impl Command for ModifyImageAttribute {
    /// `-a` and `-s` are this command's own flags, not euca2ools 1.x's credentials.
    fn spellings(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
        args
    }

    fn run(self) -> Result<(), EucaError> {
        let params = self.params()?;
        self.ec2.client()?.call("ModifyImageAttribute", &params)?;
        let mut table = self.ec2.table();
        let image_id = self.image_id.as_str();
        if let Some(description) = &self.description {
            table.row(&["description", image_id, "", description])?;
        }
        for code in &self.product_code {
            table.row(&["productcodes", image_id, "productCode", code])?;
        }
        for (verb, entities) in [("ADD", &self.add), ("REMOVE", &self.remove)] {
            for entity in entities {
                let (_, kind) = entity_kind(entity);
                table.row(&["launchPermission", image_id, verb, kind, entity])?;
            }
        }
        Ok(())
    }
}

/// Reset an attribute of an image to its default value.
#[derive(Parser, Debug)]
#[command(version)]
pub struct ResetImageAttribute {
    /// The image whose attribute should be reset.
    #[arg(value_name = "IMAGE")]
    image_id: String,
    /// Reset launch permissions (required).
    #[arg(short = 'l', long = "launch-permission", required = true)]
    launch_permission: bool,
    #[command(flatten)]
    ec2: Ec2Args,
}

impl Command for ResetImageAttribute {
    fn run(self) -> Result<(), EucaError> {
        let mut params = Params::new();
        params
            .set("ImageId", &self.image_id)
            .set("Attribute", "launchPermission");
        self.ec2.client()?.call("ResetImageAttribute", &params)?;
        self.ec2
            .table()
            .row(&["launchPermission", &self.image_id, "RESET"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(params: &Params) -> Vec<(&str, &str)> {
        params
            .pairs()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    #[test]
    fn register_instance_store_image() {
        let cmd = Register::try_parse_from([
            "euca-register",
            "/bkt/pre/disk.img.manifest.xml",
            "-n",
            "disk",
            "-a",
            "x86_64",
            "--kernel",
            "eki-11111111",
            "--ramdisk",
            "eri-22222222",
            "-b",
            "/dev/sdb=ephemeral0",
            "-b",
            "/dev/sdc=none",
        ])
        .unwrap();
        assert_eq!(
            pairs(&cmd.params().unwrap()),
            [
                ("ImageLocation", "bkt/pre/disk.img.manifest.xml"),
                ("Name", "disk"),
                ("Architecture", "x86_64"),
                ("KernelId", "eki-11111111"),
                ("RamdiskId", "eri-22222222"),
                ("BlockDeviceMapping.1.DeviceName", "/dev/sdb"),
                ("BlockDeviceMapping.1.VirtualName", "ephemeral0"),
                ("BlockDeviceMapping.2.DeviceName", "/dev/sdc"),
                ("BlockDeviceMapping.2.NoDevice", "true"),
            ]
        );
        let both =
            Register::try_parse_from(["r", "b/m.manifest.xml", "-n", "x", "-s", "snap-1"]).unwrap();
        assert!(matches!(both.params(), Err(EucaError::Usage(_))));
    }

    #[test]
    fn a_and_s_keep_their_own_meaning_here() {
        // euca2ools 1.x's -a/-s credentials are not read where the command has its own.
        let all = DescribeImages::try_parse_from(DescribeImages::spellings(
            ["euca-describe-images", "-a"]
                .iter()
                .map(std::ffi::OsString::from)
                .collect(),
        ))
        .unwrap();
        assert!(all.all);
    }

    #[test]
    fn register_without_a_name_as_the_15_guides_do() {
        // `euca-register BUCKET/NAME.manifest.xml`: the cloud names the image after its
        // manifest.
        let cmd = Register::try_parse_from(["euca-register", "bkt/disk.img.manifest.xml"]).unwrap();
        assert_eq!(
            pairs(&cmd.params().unwrap()),
            [("ImageLocation", "bkt/disk.img.manifest.xml")]
        );
    }

    #[test]
    fn register_ebs_image_maps_the_snapshot_to_the_root_device() {
        let cmd = Register::try_parse_from(["r", "-n", "ebs", "-s", "snap-12345678"]).unwrap();
        assert_eq!(
            pairs(&cmd.params().unwrap()),
            [
                ("Name", "ebs"),
                ("RootDeviceName", "/dev/sda1"),
                ("BlockDeviceMapping.1.DeviceName", "/dev/sda1"),
                ("BlockDeviceMapping.1.Ebs.SnapshotId", "snap-12345678"),
            ]
        );
        let nothing = Register::try_parse_from(["r", "-n", "x"]).unwrap();
        assert!(matches!(nothing.params(), Err(EucaError::Usage(_))));
        let conflict =
            Register::try_parse_from(["r", "-n", "x", "-s", "snap-1", "-b", "/dev/sda1=snap-2"])
                .unwrap();
        assert!(matches!(conflict.params(), Err(EucaError::Usage(_))));
    }

    #[test]
    fn block_device_mapping_forms() {
        let ebs = Mapping::parse("/dev/sdb=snap-1:20:true:io1:300").unwrap();
        let mut params = Params::new();
        ebs.add_to(&mut params, "B.1");
        assert_eq!(
            pairs(&params),
            [
                ("B.1.DeviceName", "/dev/sdb"),
                ("B.1.Ebs.SnapshotId", "snap-1"),
                ("B.1.Ebs.VolumeSize", "20"),
                ("B.1.Ebs.DeleteOnTermination", "true"),
                ("B.1.Ebs.VolumeType", "io1"),
                ("B.1.Ebs.Iops", "300"),
            ]
        );
        assert_eq!(
            Mapping::parse("/dev/sdc=:10").unwrap().target,
            Target::Ebs(Ebs {
                volume_size: Some(10),
                ..Ebs::default()
            })
        );
        for bad in [
            "/dev/sdb",
            "/dev/sdb=",
            "/dev/sdb=disk",
            "/dev/sdb=:",
            "/dev/sdb=snap-1:x",
            "/dev/sdb=snap-1::maybe",
            "/dev/sdb=snap-1:1:true:standard:100",
            "/dev/sdb=snap-1:1:true:io1:1:extra",
        ] {
            assert!(Mapping::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn describe_images_defaults_to_two_calls() {
        let cmd = DescribeImages::try_parse_from(["d"]).unwrap();
        let calls: Vec<Vec<(String, String)>> = cmd
            .calls()
            .unwrap()
            .iter()
            .map(|p| p.pairs().to_vec())
            .collect();
        assert_eq!(
            calls,
            [
                vec![("Owner.1".to_owned(), "self".to_owned())],
                vec![("ExecutableBy.1".to_owned(), "self".to_owned())]
            ]
        );
        let filtered =
            DescribeImages::try_parse_from(["d", "--filter", "image-type=kernel"]).unwrap();
        let calls = filtered.calls().unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(
            pairs(&calls[1]),
            [
                ("ExecutableBy.1", "self"),
                ("Filter.1.Name", "image-type"),
                ("Filter.1.Value.1", "kernel")
            ]
        );
        let all = DescribeImages::try_parse_from(["d", "-a"]).unwrap();
        assert_eq!(all.calls().unwrap(), vec![Params::new()]);
        let ids =
            DescribeImages::try_parse_from(["d", "emi-1", "-o", "self", "-x", "all"]).unwrap();
        assert_eq!(
            pairs(&ids.calls().unwrap()[0]),
            [
                ("ImageId.1", "emi-1"),
                ("Owner.1", "self"),
                ("ExecutableBy.1", "all")
            ]
        );
        let bad = DescribeImages::try_parse_from(["d", "-a", "-o", "self"]).unwrap();
        assert!(matches!(bad.calls(), Err(EucaError::Usage(_))));
    }

    #[test]
    fn launch_permissions_add_and_remove() {
        let cmd = ModifyImageAttribute::try_parse_from([
            "m",
            "emi-1",
            "-l",
            "-a",
            "all",
            "-a",
            "123456789012",
            "-r",
            "210987654321",
        ])
        .unwrap();
        assert_eq!(
            pairs(&cmd.params().unwrap()),
            [
                ("ImageId", "emi-1"),
                ("LaunchPermission.Add.1.Group", "all"),
                ("LaunchPermission.Add.2.UserId", "123456789012"),
                ("LaunchPermission.Remove.1.UserId", "210987654321"),
            ]
        );
        let none = ModifyImageAttribute::try_parse_from(["m", "emi-1", "-l"]).unwrap();
        assert!(matches!(none.params(), Err(EucaError::Usage(_))));
        assert!(ModifyImageAttribute::try_parse_from(["m", "emi-1", "-a", "all"]).is_err());
        assert!(ModifyImageAttribute::try_parse_from(["m", "emi-1"]).is_err());
        let described =
            ModifyImageAttribute::try_parse_from(["m", "emi-1", "--description", "d"]).unwrap();
        assert_eq!(
            pairs(&described.params().unwrap()),
            [("ImageId", "emi-1"), ("Description.Value", "d")]
        );
    }

    #[test]
    fn image_attribute_flags_are_exclusive() {
        let cmd = DescribeImageAttribute::try_parse_from(["d", "emi-1", "--kernel"]).unwrap();
        assert_eq!(cmd.attribute.name(), "kernel");
        assert!(DescribeImageAttribute::try_parse_from(["d", "emi-1"]).is_err());
        assert!(DescribeImageAttribute::try_parse_from(["d", "emi-1", "-l", "-B"]).is_err());
    }
}

//! Images: RegisterImage from a bundle in Walrus (checked with the bundler library before
//! anything is recorded), DeregisterImage, DescribeImages, and the image attributes
//! (launch permissions, description, kernel, ramdisk, block device mapping).
//!
//! Register checks, in order: the manifest is readable by the caller, parses, claims the
//! caller's account in `<image><user>`, is signed by a certificate of that account, carries a
//! key wrapped for this cloud, and all its parts are there with sizes adding up to
//! `bundled_size`. Part digests are checked when Walrus first unbundles the image, which is
//! the first time their bytes are read.
//!
//! The manifest is pinned at register: the record keeps the SHA-256 of the very bytes that
//! were checked, and every run hands it to the node, whose request to Walrus' feed carries
//! it. A manifest replaced in its bucket afterwards (re-signed, other parts, another key) is
//! never unbundled for this image: the instance ends saying so.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use std::sync::Arc;

use crate::ec2::{
    apply_filters, blocking, is_resource_id, new_id, timestamp_now, BundleAccess, Call, Cloud,
    Request,
};
use crate::query::{QueryRequest, Xml};
use crate::state::{Batch, Record};
use crate::{properties, quotas, tags, QueryError, Resource};
use identity::Principal;

/// Largest manifest read: a 10 GiB image in 10 MB parts makes a ~250 KB manifest.
const MAX_MANIFEST: u64 = 4 << 20;

/// Architectures an image may declare, as EC2 and euca2ools name them.
const ARCHITECTURES: [&str; 4] = ["i386", "x86_64", "armhf", "arm64"];

/// The three kinds of bundled images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageKind {
    /// A root disk image, `emi-`.
    Machine,
    /// A kernel, `eki-`.
    Kernel,
    /// An initial ramdisk, `eri-`.
    Ramdisk,
}

impl ImageKind {
    /// The id prefix Eucalyptus gives the kind.
    pub fn prefix(self) -> &'static str {
        match self {
            ImageKind::Machine => "emi",
            ImageKind::Kernel => "eki",
            ImageKind::Ramdisk => "eri",
        }
    }

    /// EC2's `imageType`.
    pub fn as_str(self) -> &'static str {
        match self {
            ImageKind::Machine => "machine",
            ImageKind::Kernel => "kernel",
            ImageKind::Ramdisk => "ramdisk",
        }
    }

    fn of_id(id: &str) -> Option<ImageKind> {
        [ImageKind::Machine, ImageKind::Kernel, ImageKind::Ramdisk]
            .into_iter()
            .find(|k| is_resource_id(id, k.prefix()))
    }
}

/// One part of a registered bundle: where it is and the SHA-1 the manifest gives it, for
/// the unbundling Walrus does before the first launch.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BundlePart {
    /// Object key in the bundle's bucket.
    pub key: String,
    /// SHA-1 of the part, lowercase hex.
    pub digest: String,
    /// Size in bytes, as found at register.
    pub size: u64,
}

/// A block device mapping of an instance-store image: an ephemeral disk or a suppressed
/// device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceMapping {
    /// The device, e.g. `/dev/sdb` or `sda2`.
    pub device_name: String,
    /// `ephemeralN`, `root`, `ami`, `swap`; none when the device is suppressed.
    pub virtual_name: Option<String>,
    /// The device is suppressed (`NoDevice`).
    pub no_device: bool,
}

/// A registered image.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    /// `emi-`/`eki-`/`eri-` id.
    pub id: String,
    /// Owning account id.
    pub owner: String,
    /// `bucket/key` of the manifest.
    pub location: String,
    /// The image's name, unique in its account.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Machine, kernel or ramdisk.
    pub kind: ImageKind,
    /// `i386`, `x86_64`, ...
    pub architecture: String,
    /// The kernel a machine image boots with.
    pub kernel_id: Option<String>,
    /// The ramdisk a machine image boots with.
    pub ramdisk_id: Option<String>,
    /// `windows` for Windows images, else none.
    pub platform: Option<String>,
    /// `paravirtual` (kernel and ramdisk given) or `hvm`.
    pub virtualization_type: String,
    /// The root device name (`/dev/sda1`).
    pub root_device_name: String,
    /// Ephemeral disks and suppressed devices.
    pub block_devices: Vec<DeviceMapping>,
    /// Anyone may launch it.
    pub public: bool,
    /// Accounts the owner shared it with.
    pub launch_accounts: Vec<String>,
    /// When it was registered (EC2 timestamp).
    pub created: String,
    /// Size of the unbundled image in bytes.
    pub image_size: u64,
    /// SHA-1 of the bundle's tar stream, which Walrus checks when it unbundles.
    pub image_digest: String,
    /// SHA-256 of the manifest's bytes as checked at register: the pin Walrus' feed
    /// compares before it unbundles for this image. None for images registered before
    /// manifests were pinned.
    #[serde(default)]
    pub manifest_sha256: Option<String>,
    /// The parts, in order.
    pub parts: Vec<BundlePart>,
    /// SHA-256 of the plain image once Walrus unbundled it (a node reported it): handed to
    /// nodes with each run, so that a node holding the image needs no call to Walrus.
    #[serde(default)]
    pub plain_sha256: Option<String>,
}

impl records::Versioned for ImageRecord {
    const ENVELOPE: records::Envelope = crate::state::ENVELOPE;
    const VERSION: u32 = 1;
}

impl Record for ImageRecord {
    const TABLE: &'static str = "image/";
}

impl ImageRecord {
    /// Whether `account` may see and launch the image.
    fn launchable_by(&self, account: &str) -> bool {
        self.owner == account || self.public || self.launch_accounts.iter().any(|a| a == account)
    }
}

/// The owner of an image id, if it exists (tags ask before tagging).
pub fn owner_of(cloud: &Cloud, id: &str) -> Result<Option<String>, QueryError> {
    Ok(cloud.state.get::<ImageRecord>(id)?.map(|r| r.owner))
}

/// The ids of the images `account` has registered: an account is deleted only once it has
/// deregistered them (others may be launching them).
pub(crate) fn registered_by(cloud: &Cloud, account: &str) -> Result<Vec<String>, QueryError> {
    Ok(cloud
        .state
        .scan::<ImageRecord>("")?
        .into_iter()
        .filter(|(_, r)| r.owner == account)
        .map(|(_, r)| r.id)
        .collect())
}

/// Records the SHA-256 a node reported for an image's plain bytes (once; the bundle of an
/// image never changes).
pub(crate) fn record_plain_sha256(cloud: &Cloud, id: &str, sha256: &str) -> Result<(), QueryError> {
    let _guard = cloud.state.exclusive();
    if let Some(mut image) = cloud.state.get::<ImageRecord>(id)? {
        if image.plain_sha256.is_none() {
            image.plain_sha256 = Some(sha256.to_owned());
            cloud.state.put(id, &image)?;
        }
    }
    Ok(())
}

/// An image the caller may see (own, shared, public; every image for the cloud admin).
pub(crate) fn visible(call: &Call<'_>, id: &str) -> Result<ImageRecord, QueryError> {
    if ImageKind::of_id(id).is_none() {
        return Err(QueryError::Malformed(Resource::Image, id.to_owned()));
    }
    match call.cloud.state.get::<ImageRecord>(id)? {
        Some(image) if image.launchable_by(call.account()) || call.caller.is_cloud_admin() => {
            Ok(image)
        }
        _ => Err(QueryError::NotFound(Resource::Image, id.to_owned())),
    }
}

/// An image the caller owns (or any, for the cloud admin): what changes need.
fn owned(call: &Call<'_>, id: &str) -> Result<ImageRecord, QueryError> {
    let image = visible(call, id)?;
    if image.owner == call.account() || call.caller.is_cloud_admin() {
        Ok(image)
    } else {
        Err(QueryError::NotAuthorized(format!(
            "Not authorized for image:{id}"
        )))
    }
}

/// `RegisterImage`: the manifest and the parts' sizes are read from Walrus (waited for,
/// holding no thread), the manifest checked and the record made on the blocking pool.
pub async fn register(req: &Arc<Request>) -> Result<String, QueryError> {
    let (bucket, key) = {
        let (bucket, key) = manifest_location(requested_location(&req.params)?)?;
        (bucket.to_owned(), key.to_owned())
    };
    let account = req.caller.account_id.clone();
    let bytes = read_manifest(&req.cloud, &account, &bucket, &key).await?;
    let (b, k, a) = (bucket.clone(), key.clone(), account.clone());
    let (manifest, manifest_sha256) = blocking(req, move |call| {
        authenticate_manifest(call.cloud, &a, &b, &k, &bytes)
    })
    .await?;
    let parts = check_parts(&req.cloud, &account, &bucket, &key, &manifest).await?;
    let record = blocking(req, move |call| {
        new_record(call, &bucket, &key, manifest, manifest_sha256, parts)
    })
    .await?;
    // Walrus is told of the registration before the record is made (it may be on another
    // host); a registration refused below releases it again.
    let sha = record.manifest_sha256.clone().unwrap_or_default();
    req.cloud
        .bundles
        .retain(&record.id, &record.location, &sha)
        .await
        .map_err(walrus_unavailable)?;
    let id = record.id.clone();
    let location = record.location.clone();
    if let Err(e) = blocking(req, move |call| record_new(call.cloud, &record)).await {
        if let Err(why) = req.cloud.bundles.release(&id).await {
            tracing::warn!(image = %id, "cannot release a refused registration in Walrus: {why:?}");
        }
        return Err(e);
    }
    tracing::info!(image = %id, location = %location, "registered an image");
    let mut x = Xml::new();
    x.elem("imageId", &id);
    Ok(x.finish())
}

/// The `ImageLocation` of a RegisterImage (the only kind of registration Koala makes).
fn requested_location(params: &QueryRequest) -> Result<&str, QueryError> {
    let Some(location) = params.get("ImageLocation").filter(|l| !l.is_empty()) else {
        if params.get("RootDeviceName").is_some()
            || !params.indexes("BlockDeviceMapping").is_empty()
        {
            return Err(QueryError::Validation(
                "Koala registers instance-store images from bundles: EBS snapshots are not supported; give ImageLocation.".into(),
            ));
        }
        return Err(QueryError::MissingParameter("ImageLocation".into()));
    };
    Ok(location)
}

/// The record of a new registration of the checked `manifest` at `bucket/key`, with a fresh
/// id; the request's parameters override what the manifest says.
fn new_record(
    call: &Call<'_>,
    bucket: &str,
    key: &str,
    manifest: bundler::Manifest,
    manifest_sha256: String,
    parts: Vec<BundlePart>,
) -> Result<ImageRecord, QueryError> {
    let params = call.params;
    let account = call.account().to_owned();
    let kind = match manifest.image_type {
        bundler::ImageType::Machine => ImageKind::Machine,
        bundler::ImageType::Kernel => ImageKind::Kernel,
        bundler::ImageType::Ramdisk => ImageKind::Ramdisk,
    };
    let architecture = params
        .get("Architecture")
        .filter(|a| !a.is_empty())
        .unwrap_or(&manifest.architecture)
        .to_owned();
    if !ARCHITECTURES.contains(&architecture.as_str()) {
        return Err(QueryError::Validation(format!(
            "Value ({architecture}) for parameter Architecture is invalid. Valid values: {}.",
            ARCHITECTURES.join(", ")
        )));
    }
    let name = params
        .get("Name")
        .filter(|n| !n.is_empty())
        .unwrap_or(&manifest.name)
        .to_owned();
    check_name(&name)?;
    let description = params.get("Description").map(str::to_owned);
    if description.as_ref().is_some_and(|d| d.len() > 255) {
        return Err(QueryError::Validation(
            "The description must be at most 255 characters long.".into(),
        ));
    }
    let (kernel_id, ramdisk_id) = match kind {
        ImageKind::Machine => (
            boot_image(
                call,
                ImageKind::Kernel,
                params.get("KernelId"),
                &manifest.kernel_id,
            )?,
            boot_image(
                call,
                ImageKind::Ramdisk,
                params.get("RamdiskId"),
                &manifest.ramdisk_id,
            )?,
        ),
        _ => {
            if params.get("KernelId").is_some() || params.get("RamdiskId").is_some() {
                return Err(QueryError::InvalidParameterCombination(
                    "KernelId and RamdiskId apply to machine images only.".into(),
                ));
            }
            (None, None)
        }
    };
    let virtualization_type = match params.get("VirtualizationType") {
        Some(v @ ("paravirtual" | "hvm")) => v.to_owned(),
        Some(other) => {
            return Err(QueryError::Validation(format!(
                "Value ({other}) for parameter VirtualizationType is invalid. Valid values: paravirtual, hvm."
            )))
        }
        None if kind == ImageKind::Machine && kernel_id.is_none() => "hvm".to_owned(),
        None => "paravirtual".to_owned(),
    };
    let platform = match params.get("Platform") {
        None | Some("") => None,
        Some("windows") => Some("windows".to_owned()),
        Some(other) => {
            return Err(QueryError::Validation(format!(
                "Value ({other}) for parameter Platform is invalid. Valid values: windows."
            )))
        }
    };
    let root_device_name = params
        .get("RootDeviceName")
        .filter(|d| !d.is_empty())
        .unwrap_or("/dev/sda1")
        .to_owned();
    let block_devices = device_mappings(call, &manifest)?;

    let location = format!("{bucket}/{key}");
    // The id is chosen before the record is made and outside the state's lock: `record_new`
    // checks it is still free.
    let id = loop {
        let id = new_id(kind.prefix());
        if call.cloud.state.get::<ImageRecord>(&id)?.is_none() {
            break id;
        }
    };
    Ok(ImageRecord {
        id,
        owner: account,
        location,
        name,
        description,
        kind,
        architecture,
        kernel_id,
        ramdisk_id,
        platform,
        virtualization_type,
        root_device_name,
        block_devices,
        public: false,
        launch_accounts: Vec::new(),
        created: timestamp_now(),
        image_size: manifest.size,
        image_digest: manifest.digest.clone(),
        manifest_sha256: Some(manifest_sha256),
        parts,
        plain_sha256: None,
    })
}

/// Records a new image, unless its name is taken in its account, the account has as many
/// images as its quota allows (or, by a rare chance, its id was taken since it was chosen).
fn record_new(cloud: &Cloud, record: &ImageRecord) -> Result<(), QueryError> {
    let _guard = cloud.state.exclusive();
    let images = cloud.state.scan::<ImageRecord>("")?;
    if images
        .iter()
        .any(|(_, i)| i.owner == record.owner && i.name == record.name)
    {
        return Err(QueryError::Duplicate(
            Resource::ImageName,
            record.name.clone(),
        ));
    }
    let owned = images.iter().filter(|(_, i)| i.owner == record.owner);
    quotas::check_images(cloud, owned.count())?;
    if images.iter().any(|(existing, _)| *existing == record.id) {
        return Err(QueryError::internal(format!(
            "the new image id {} was taken meanwhile",
            record.id
        )));
    }
    cloud.state.put(&record.id, record)?;
    Ok(())
}

/// Walrus could not record or release a registration: not the caller's fault, and worth
/// retrying.
fn walrus_unavailable(e: BundleAccess) -> QueryError {
    crate::ec2::walrus_unavailable("record the image's use of its bundle", e)
}

/// Splits `bucket/key/of/prefix.manifest.xml` (a leading `/` tolerated).
fn manifest_location(location: &str) -> Result<(&str, &str), QueryError> {
    let trimmed = location.trim_start_matches('/');
    match trimmed.split_once('/') {
        Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => Ok((bucket, key)),
        _ => Err(QueryError::Validation(format!(
            "Invalid manifest location '{location}': expected BUCKET/PATH/NAME.manifest.xml."
        ))),
    }
}

/// The manifest's bytes, read with the rights of `account`.
async fn read_manifest(
    cloud: &Cloud,
    account: &str,
    bucket: &str,
    key: &str,
) -> Result<Vec<u8>, QueryError> {
    match cloud.bundles.read(account, bucket, key, MAX_MANIFEST).await {
        Ok(bytes) => Ok(bytes),
        Err(BundleAccess::NotFound) => Err(QueryError::InvalidManifest(format!(
            "The manifest {bucket}/{key} does not exist."
        ))),
        Err(BundleAccess::Denied) => Err(QueryError::NotAuthorized(format!(
            "Not authorized to read the manifest {bucket}/{key}."
        ))),
        Err(BundleAccess::TooLarge) => Err(QueryError::InvalidManifest(format!(
            "The manifest {bucket}/{key} is larger than {MAX_MANIFEST} bytes."
        ))),
        Err(e @ BundleAccess::Failed(_)) => Err(QueryError::failed(
            format!("cannot read the manifest {bucket}/{key}"),
            e,
        )),
    }
}

/// Parses and authenticates the manifest `bytes`; with the SHA-256 of the bytes checked.
fn authenticate_manifest(
    cloud: &Cloud,
    account: &str,
    bucket: &str,
    key: &str,
    bytes: &[u8],
) -> Result<(bundler::Manifest, String), QueryError> {
    let manifest = bundler::Manifest::parse(bytes).map_err(|e| {
        QueryError::InvalidManifest(format!("The manifest {bucket}/{key} cannot be read: {e}."))
    })?;
    if manifest.user.replace('-', "") != account {
        return Err(QueryError::NotAuthorized(format!(
            "The manifest {bucket}/{key} belongs to account {}, not to the caller's.",
            manifest.user
        )));
    }
    let certificates = cloud.identity.certificates_of_account(account)?;
    let signed = certificates.iter().any(|pem| {
        bundler::read_certificate(pem.as_bytes())
            .map(|key| manifest.verify(&key).is_ok())
            .unwrap_or(false)
    });
    if !signed {
        return Err(QueryError::InvalidManifest(format!(
            "The signature of the manifest {bucket}/{key} does not verify with any certificate of account {account}: it was altered, or signed by another key."
        )));
    }
    let ca = cloud
        .identity
        .cloud_ca()
        .ok_or_else(|| QueryError::internal("the cloud has no CA key"))?;
    cloud.unwraps.take(account).map_err(|wait| {
        QueryError::RequestLimitExceeded(format!(
            "Too many bundles of this account failed to unwrap with this cloud's key in a short time: at most {} in a row, then one every {} s. Try again in {} s.",
            crate::throttle::UNWRAP_BURST,
            crate::throttle::UNWRAP_EVERY.as_secs(),
            wait.as_secs_f64().ceil()
        ))
    })?;
    // One message for every way the unwrap fails: which one is not the caller's business.
    manifest.unwrap_cloud_key(ca.private_key()).map_err(|_| {
        QueryError::InvalidManifest(format!(
            "The bundle {bucket}/{key} was not encrypted for this cloud: bundle it with this cloud's certificate (EUCALYPTUS_CERT)."
        ))
    })?;
    cloud.unwraps.give_back(account);
    Ok((manifest, hex::encode(Sha256::digest(bytes))))
}

/// Checks every part is there, readable by the caller, with sizes adding up.
async fn check_parts(
    cloud: &Cloud,
    account: &str,
    bucket: &str,
    manifest_key: &str,
    manifest: &bundler::Manifest,
) -> Result<Vec<BundlePart>, QueryError> {
    if manifest.parts.is_empty() {
        return Err(QueryError::InvalidManifest(
            "The manifest lists no parts.".into(),
        ));
    }
    let folder = manifest_key.rfind('/').map_or("", |i| &manifest_key[..=i]);
    let mut parts = Vec::with_capacity(manifest.parts.len());
    let mut total = 0u64;
    for part in &manifest.parts {
        if part.filename.contains('/') || part.filename.is_empty() {
            return Err(QueryError::InvalidManifest(format!(
                "The part name '{}' is not a file name.",
                part.filename
            )));
        }
        let key = format!("{folder}{}", part.filename);
        let size = match cloud.bundles.size(account, bucket, &key).await {
            Ok(size) => size,
            Err(BundleAccess::NotFound) => {
                return Err(QueryError::InvalidManifest(format!(
                    "The bundle part {bucket}/{key} is missing."
                )))
            }
            Err(BundleAccess::Denied) => {
                return Err(QueryError::NotAuthorized(format!(
                    "Not authorized to read the bundle part {bucket}/{key}."
                )))
            }
            Err(BundleAccess::TooLarge) => {
                return Err(QueryError::internal("a size query hit a limit"))
            }
            Err(e @ BundleAccess::Failed(_)) => {
                return Err(QueryError::failed(
                    format!("cannot read the size of the bundle part {bucket}/{key}"),
                    e,
                ))
            }
        };
        total += size;
        parts.push(BundlePart {
            key,
            digest: part.digest.clone(),
            size,
        });
    }
    if total != manifest.bundled_size {
        return Err(QueryError::InvalidManifest(format!(
            "The bundle's parts hold {total} bytes but the manifest says {}.",
            manifest.bundled_size
        )));
    }
    Ok(parts)
}

/// EC2's rule for image names: 3 to 128 characters of letters, digits and `( ) [ ] . / - '
/// @ _` and spaces.
fn check_name(name: &str) -> Result<(), QueryError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "()[]./-'@_ ".contains(c);
    if (3..=128).contains(&name.len()) && name.chars().all(allowed) {
        Ok(())
    } else {
        Err(QueryError::Validation(format!(
            "Invalid image name '{name}': 3 to 128 characters of letters, digits, spaces and ()[]./-'@_."
        )))
    }
}

/// The kernel or ramdisk of a machine image: the request's, else the manifest's, else the
/// cloud's default; it must exist, be of the right kind and launchable by the caller.
fn boot_image(
    call: &Call<'_>,
    kind: ImageKind,
    asked: Option<&str>,
    in_manifest: &Option<String>,
) -> Result<Option<String>, QueryError> {
    let property = match kind {
        ImageKind::Kernel => "cloud.images.default_kernel",
        _ => "cloud.images.default_ramdisk",
    };
    let id = match asked.filter(|a| !a.is_empty()) {
        Some(id) => id.to_owned(),
        None => match in_manifest
            .as_deref()
            .filter(|m| !m.is_empty() && *m != "true")
        {
            Some(id) => id.to_owned(),
            None => match properties::value(call.cloud, property)? {
                default if default.is_empty() => return Ok(None),
                default => default,
            },
        },
    };
    let image = visible(call, &id)?;
    if image.kind != kind {
        return Err(QueryError::Validation(format!(
            "{id} is a {} image, not a {}.",
            image.kind.as_str(),
            kind.as_str()
        )));
    }
    Ok(Some(id))
}

/// The block device mappings of the request, else those of the manifest.
fn device_mappings(
    call: &Call<'_>,
    manifest: &bundler::Manifest,
) -> Result<Vec<DeviceMapping>, QueryError> {
    let params = call.params;
    let indexes = params.indexes("BlockDeviceMapping");
    if indexes.is_empty() {
        return Ok(manifest
            .block_device_mapping
            .iter()
            .map(|(virtual_name, device)| DeviceMapping {
                device_name: device.clone(),
                virtual_name: Some(virtual_name.clone()),
                no_device: false,
            })
            .collect());
    }
    indexes
        .into_iter()
        .map(|i| {
            let field = |f: &str| params.get(&format!("BlockDeviceMapping.{i}.{f}"));
            if !params.indexes(&format!("BlockDeviceMapping.{i}.Ebs")).is_empty()
                || field("Ebs.SnapshotId").is_some()
                || field("Ebs.VolumeSize").is_some()
            {
                return Err(QueryError::Validation(
                    "EBS block device mappings are not supported: Koala images are instance-store.".into(),
                ));
            }
            let device_name = params
                .required(&format!("BlockDeviceMapping.{i}.DeviceName"))?
                .to_owned();
            let no_device = field("NoDevice").is_some();
            let virtual_name = field("VirtualName").filter(|v| !v.is_empty()).map(str::to_owned);
            if no_device == virtual_name.is_some() {
                return Err(QueryError::InvalidParameterCombination(format!(
                    "Block device mapping {device_name} needs exactly one of VirtualName and NoDevice."
                )));
            }
            Ok(DeviceMapping {
                device_name,
                virtual_name,
                no_device,
            })
        })
        .collect()
}

/// `DeregisterImage`: the record and its tags go, and Walrus releases the image's use of
/// its bundle (the plain image it unbundled is collected once no registration uses it);
/// the bundle stays in Walrus (the user deletes it with `euca-delete-bundle`).
pub async fn deregister(req: &Arc<Request>) -> Result<String, QueryError> {
    let id = req.params.required("ImageId")?.to_owned();
    // Walrus is told first, outside the state's lock: should the record then stay (a
    // failure below), the plain image is only unbundled again when next needed.
    let asked = id.clone();
    blocking(req, move |call| owned(call, &asked)).await?;
    req.cloud
        .bundles
        .release(&id)
        .await
        .map_err(walrus_unavailable)?;
    blocking(req, move |call| forget(call, &id)).await
}

/// Removes image `id`'s record and tags.
fn forget(call: &Call<'_>, id: &str) -> Result<String, QueryError> {
    let _guard = call.cloud.state.exclusive();
    let image = owned(call, id)?;
    let mut batch = Batch::new();
    batch.delete::<ImageRecord>(&image.id);
    tags::delete_all(call.cloud, &mut batch, &image.id)?;
    call.cloud.state.commit(batch)?;
    tracing::info!(image = %image.id, "deregistered an image");
    Ok("<return>true</return>".to_owned())
}

/// The images `caller` may see: those it may launch (its own, public ones, those shared with
/// its account), every image for a cloud administrator. DescribeImages' rule, which the web
/// console lists by.
pub fn visible_images(cloud: &Cloud, caller: &Principal) -> Result<Vec<ImageRecord>, QueryError> {
    Ok(cloud
        .state
        .scan::<ImageRecord>("")?
        .into_iter()
        .map(|(_, i)| i)
        .filter(|i| i.launchable_by(&caller.account_id) || caller.is_cloud_admin())
        .collect())
}

/// `DescribeImages`, with `ImageId`, `Owner`, `ExecutableBy` and filters.
pub fn describe(call: &Call<'_>) -> Result<String, QueryError> {
    let params = call.params;
    let account = call.account();
    let ids = params.list("ImageId");
    let owners: Vec<String> = params
        .list("Owner")
        .into_iter()
        .map(|o| {
            if o == "self" {
                account.to_owned()
            } else {
                o.to_owned()
            }
        })
        .collect();
    let executable_by = params.list("ExecutableBy");
    let filters = params.filters()?;

    let mut images: Vec<ImageRecord> = if ids.is_empty() {
        visible_images(call.cloud, call.caller)?
    } else {
        ids.iter()
            .map(|id| visible(call, id))
            .collect::<Result<_, _>>()?
    };
    if !owners.is_empty() {
        images.retain(|i| owners.contains(&i.owner));
    }
    if !executable_by.is_empty() {
        images.retain(|i| {
            executable_by.iter().any(|e| match *e {
                "self" => i.launchable_by(account),
                "all" => i.public,
                other => i.launchable_by(other),
            })
        });
    }
    let images = apply_filters(&filters, images, image_field, |i| {
        tags::tags_of(call, &i.id).unwrap_or_default()
    })?;

    let mut x = Xml::new();
    x.list("imagesSet", &images, |x, image| {
        image_item(call, x, image);
    });
    Ok(x.finish())
}

/// An image's values for a DescribeImages filter name.
fn image_field(image: &ImageRecord, name: &str) -> Option<Vec<String>> {
    let one = |v: &str| Some(vec![v.to_owned()]);
    let opt = |v: &Option<String>| Some(v.iter().cloned().collect());
    match name {
        "architecture" => one(&image.architecture),
        "image-id" => one(&image.id),
        "image-type" => one(image.kind.as_str()),
        "is-public" => one(if image.public { "true" } else { "false" }),
        "kernel-id" => opt(&image.kernel_id),
        "ramdisk-id" => opt(&image.ramdisk_id),
        "manifest-location" => one(&image.location),
        "name" => one(&image.name),
        "description" => opt(&image.description),
        "owner-id" => one(&image.owner),
        "platform" => opt(&image.platform),
        "root-device-type" => one("instance-store"),
        "root-device-name" => one(&image.root_device_name),
        "state" => one("available"),
        "virtualization-type" => one(&image.virtualization_type),
        "hypervisor" => one("kvm"),
        "block-device-mapping.device-name" => Some(
            image
                .block_devices
                .iter()
                .map(|d| d.device_name.clone())
                .collect(),
        ),
        _ => None,
    }
}

/// One `imagesSet` item.
fn image_item(call: &Call<'_>, x: &mut Xml, image: &ImageRecord) {
    x.elem("imageId", &image.id)
        .elem("imageLocation", &image.location)
        .elem("imageState", "available")
        .elem("imageOwnerId", &image.owner)
        .elem("creationDate", &image.created)
        .elem("isPublic", if image.public { "true" } else { "false" })
        .elem("architecture", &image.architecture)
        .elem("imageType", image.kind.as_str())
        .opt("kernelId", image.kernel_id.as_deref())
        .opt("ramdiskId", image.ramdisk_id.as_deref())
        .opt("platform", image.platform.as_deref())
        .elem("name", &image.name)
        .opt("description", image.description.as_deref())
        .elem("rootDeviceType", "instance-store")
        .elem("rootDeviceName", &image.root_device_name);
    block_device_list(x, &image.block_devices);
    x.elem("virtualizationType", &image.virtualization_type)
        .elem("hypervisor", "kvm");
    let tags = tags::tags_of(call, &image.id).unwrap_or_default();
    tags::tag_set(x, &tags);
}

fn block_device_list(x: &mut Xml, devices: &[DeviceMapping]) {
    x.list("blockDeviceMapping", devices, |x, d| {
        x.elem("deviceName", &d.device_name)
            .opt("virtualName", d.virtual_name.as_deref());
        if d.no_device {
            x.elem("noDevice", "");
        }
    });
}

/// `DescribeImageAttribute`.
pub fn describe_attribute(call: &Call<'_>) -> Result<String, QueryError> {
    let id = call.params.required("ImageId")?;
    let attribute = call.params.required("Attribute")?;
    let image = visible(call, id)?;
    let mut x = Xml::new();
    x.elem("imageId", &image.id);
    let value = |x: &mut Xml, name: &str, v: Option<&str>| {
        match v {
            Some(v) => x.nest(name, |x| {
                x.elem("value", v);
            }),
            None => x.nest(name, |_| {}),
        };
    };
    match attribute {
        "launchPermission" => {
            if image.owner != call.account() && !call.caller.is_cloud_admin() {
                return Err(QueryError::NotAuthorized(format!(
                    "Not authorized for image:{id}"
                )));
            }
            launch_permission_list(&mut x, &image);
        }
        "description" => value(&mut x, "description", image.description.as_deref()),
        "kernel" => value(&mut x, "kernel", image.kernel_id.as_deref()),
        "ramdisk" => value(&mut x, "ramdisk", image.ramdisk_id.as_deref()),
        "blockDeviceMapping" => block_device_list(&mut x, &image.block_devices),
        "productCodes" => {
            x.list("productCodes", Vec::<()>::new(), |_, ()| {});
        }
        other => {
            return Err(QueryError::Validation(format!(
                "Value ({other}) for parameter Attribute is invalid. Valid values: description, kernel, ramdisk, launchPermission, productCodes, blockDeviceMapping."
            )))
        }
    }
    Ok(x.finish())
}

fn launch_permission_list(x: &mut Xml, image: &ImageRecord) {
    let mut entries: Vec<(&str, &str)> = Vec::new();
    if image.public {
        entries.push(("group", "all"));
    }
    entries.extend(image.launch_accounts.iter().map(|a| ("userId", a.as_str())));
    x.list("launchPermission", entries, |x, (kind, who)| {
        x.elem(kind, who);
    });
}

/// Who a launch permission change is about.
#[derive(Debug, PartialEq, Eq)]
enum Grantee {
    All,
    Account(String),
}

/// `ModifyImageAttribute`: launch permissions (the structured `LaunchPermission.Add.N.*`
/// form and the older `OperationType` + `UserId.N`/`UserGroup.N`) and the description.
pub fn modify_attribute(call: &Call<'_>) -> Result<String, QueryError> {
    let params = call.params;
    let id = params.required("ImageId")?;
    let _guard = call.cloud.state.exclusive();
    let mut image = owned(call, id)?;
    let mut changed = false;

    let mut add = grantees(call, "LaunchPermission.Add")?;
    let mut remove = grantees(call, "LaunchPermission.Remove")?;
    if let Some(op) = params.get("OperationType") {
        let mut listed: Vec<Grantee> = params
            .list("UserGroup")
            .into_iter()
            .map(group_grantee)
            .collect::<Result<_, _>>()?;
        for user in params.list("UserId") {
            listed.push(account_grantee(call, user)?);
        }
        match op {
            "add" => add.extend(listed),
            "remove" => remove.extend(listed),
            other => {
                return Err(QueryError::Validation(format!(
                    "Value ({other}) for parameter OperationType is invalid. Valid values: add, remove."
                )))
            }
        }
    }
    for grantee in add {
        changed = true;
        match grantee {
            Grantee::All => image.public = true,
            Grantee::Account(a) => {
                if !image.launch_accounts.contains(&a) && a != image.owner {
                    image.launch_accounts.push(a);
                }
            }
        }
    }
    for grantee in remove {
        changed = true;
        match grantee {
            Grantee::All => image.public = false,
            Grantee::Account(a) => image.launch_accounts.retain(|x| *x != a),
        }
    }
    let description = params
        .get("Description.Value")
        .or_else(|| match params.get("Attribute") {
            Some("description") => params.get("Value"),
            _ => None,
        })
        .or_else(|| params.get("Description"));
    if let Some(description) = description {
        if description.len() > 255 {
            return Err(QueryError::Validation(
                "The description must be at most 255 characters long.".into(),
            ));
        }
        image.description = Some(description.to_owned()).filter(|d| !d.is_empty());
        changed = true;
    }
    if !changed {
        return Err(QueryError::MissingParameter(
            "LaunchPermission or Description".into(),
        ));
    }
    call.cloud.state.put(&image.id, &image)?;
    Ok("<return>true</return>".to_owned())
}

fn grantees(call: &Call<'_>, prefix: &str) -> Result<Vec<Grantee>, QueryError> {
    call.params
        .indexes(prefix)
        .into_iter()
        .map(|i| {
            let group = call.params.get(&format!("{prefix}.{i}.Group"));
            let user = call.params.get(&format!("{prefix}.{i}.UserId"));
            match (group, user) {
                (Some(g), None) => group_grantee(g),
                (None, Some(u)) => account_grantee(call, u),
                _ => Err(QueryError::InvalidParameterCombination(format!(
                    "{prefix}.{i} needs exactly one of Group and UserId."
                ))),
            }
        })
        .collect()
}

fn group_grantee(group: &str) -> Result<Grantee, QueryError> {
    if group == "all" {
        Ok(Grantee::All)
    } else {
        Err(QueryError::Validation(format!(
            "Value ({group}) for parameter Group is invalid. Valid values: all."
        )))
    }
}

fn account_grantee(call: &Call<'_>, account: &str) -> Result<Grantee, QueryError> {
    let account = account.replace('-', "");
    if account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && call.cloud.identity.account_exists(&account)?
    {
        Ok(Grantee::Account(account))
    } else {
        Err(QueryError::Validation(format!(
            "Value ({account}) for parameter UserId is invalid: no such account."
        )))
    }
}

/// `ResetImageAttribute`: launch permissions back to private.
pub fn reset_attribute(call: &Call<'_>) -> Result<String, QueryError> {
    let id = call.params.required("ImageId")?;
    let attribute = call.params.required("Attribute")?;
    if attribute != "launchPermission" {
        return Err(QueryError::Validation(format!(
            "Value ({attribute}) for parameter Attribute is invalid. Only launchPermission can be reset."
        )));
    }
    let _guard = call.cloud.state.exclusive();
    let mut image = owned(call, id)?;
    image.public = false;
    image.launch_accounts.clear();
    call.cloud.state.put(&image.id, &image)?;
    Ok("<return>true</return>".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_walrus_failure_tells_its_cause_to_the_caller_and_keeps_it_for_the_log() {
        let cause = std::io::Error::other("disk full");
        let err = walrus_unavailable(BundleAccess::Failed(Box::new(cause)));
        assert_eq!(
            err.to_string(),
            "Walrus cannot record the image's use of its bundle now (Walrus failed: disk full); try again."
        );
        let cause = std::io::Error::other("disk full");
        let read = BundleAccess::Failed(Box::new(cause));
        let err = QueryError::failed("cannot read the manifest b/m", read);
        assert_eq!(
            rpc::error_chain(&err),
            "An internal error occurred.: cannot read the manifest b/m: Walrus failed: disk full"
        );
    }

    #[test]
    fn manifest_locations() {
        assert_eq!(
            manifest_location("b/p/x.manifest.xml").unwrap(),
            ("b", "p/x.manifest.xml")
        );
        assert_eq!(
            manifest_location("/b/x.manifest.xml").unwrap(),
            ("b", "x.manifest.xml")
        );
        for bad in ["", "b", "b/", "/x.manifest.xml"] {
            assert!(manifest_location(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn image_names() {
        assert!(check_name("my image (v1.2) [x]/y-z'@_").is_ok());
        assert!(check_name("ab").is_err());
        assert!(check_name(&"a".repeat(129)).is_err());
        assert!(check_name("semi;colon").is_err());
    }

    #[test]
    fn kinds_by_id() {
        assert_eq!(ImageKind::of_id("eki-0123abcd"), Some(ImageKind::Kernel));
        assert_eq!(ImageKind::of_id("emi-0123abcd"), Some(ImageKind::Machine));
        assert_eq!(ImageKind::of_id("ami-0123abcd"), None);
    }
}

//! `euca-bundle-image`: bundles a disk, kernel or ramdisk image for upload, with the flags
//! and environment variables of euca2ools 3.4. A thin wrapper: the format lives in `bundler`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bundler::files::{bundle_file, default_bundle_dir, BundleKeys};
use bundler::progress::ProgressBar;
use bundler::{read_certificate, read_private_key, BundleKey, BundleOptions, ImageType, Manifest};
use clap::Parser;
use euca2ools::euca::ProgressArgs;

const ARCHES: [&str; 6] = ["i386", "x86_64", "armhf", "ppc", "ppc64", "ppc64le"];

/// Bundle an image for use with Eucalyptus.
#[derive(Parser, Debug)]
#[command(name = "euca-bundle-image", version)]
struct Args {
    /// File containing the image to bundle.
    #[arg(short = 'i', long = "image", value_name = "FILE")]
    image: PathBuf,
    /// The file name prefix to give the bundle's files (default: the image's file name).
    #[arg(short = 'p', long = "prefix", value_name = "PREFIX")]
    prefix: Option<String>,
    /// Where to place the bundle's files (default: $TMPDIR, else /tmp, as the Eucalyptus 1.5
    /// guides assume).
    #[arg(short = 'd', long = "destination", value_name = "DIR")]
    destination: Option<PathBuf>,
    /// The image's processor architecture.
    #[arg(short = 'r', long = "arch", value_parser = ARCHES, default_value = "x86_64")]
    arch: String,
    /// File containing your private key, to sign the bundle's manifest with.
    #[arg(
        short = 'k',
        long = "privatekey",
        env = "EC2_PRIVATE_KEY",
        value_name = "FILE"
    )]
    privatekey: Option<PathBuf>,
    /// File containing your X.509 certificate.
    #[arg(short = 'c', long = "cert", env = "EC2_CERT", value_name = "FILE")]
    cert: Option<PathBuf>,
    /// File containing the cloud's X.509 certificate.
    #[arg(long = "ec2cert", env = "EUCALYPTUS_CERT", value_name = "FILE")]
    ec2cert: Option<PathBuf>,
    /// Account ID of the bundle's owner.
    #[arg(
        short = 'u',
        long = "user",
        env = "EC2_USER_ID",
        value_name = "ACCOUNT"
    )]
    user: Option<String>,
    /// ID of the kernel to associate with this machine image, or "true" if this is a kernel.
    #[arg(long = "kernel", value_name = "IMAGE")]
    kernel: Option<String>,
    /// ID of the ramdisk to associate with this machine image, or "true" if this is a ramdisk.
    #[arg(long = "ramdisk", value_name = "IMAGE")]
    ramdisk: Option<String>,
    /// Block device mapping scheme with which to launch instances of this machine image.
    #[arg(
        short = 'B',
        long = "block-device-mappings",
        value_name = "VIRTUAL1=DEVICE1,..."
    )]
    block_device_mappings: Option<String>,
    /// Comma-separated list of product codes.
    #[arg(long = "productcodes", value_name = "CODE1,CODE2,...")]
    productcodes: Option<String>,
    #[command(flatten)]
    progress: ProgressArgs,
    #[arg(long = "image-type", hide = true, value_parser = ["machine", "kernel", "ramdisk"])]
    image_type: Option<String>,
    #[arg(long = "part-size", hide = true, default_value_t = bundler::bundle::DEFAULT_PART_SIZE)]
    part_size: u64,
    #[arg(long = "enc-key", hide = true, value_name = "HEX")]
    enc_key: Option<String>,
    #[arg(long = "enc-iv", hide = true, value_name = "HEX")]
    enc_iv: Option<String>,
}

/// A failure of the command, printed as `euca-bundle-image: error: ...`.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Bundle(#[from] bundler::Error),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|source| CliError::Io {
        context: format!("cannot read {}", path.display()),
        source,
    })
}

fn run(args: Args) -> Result<(), CliError> {
    let usage = |m: &str| Err(CliError::Usage(m.to_string()));
    let Some(ec2cert) = &args.ec2cert else {
        return usage("missing cloud certificate; please supply one with --ec2cert");
    };
    let Some(user) = &args.user else {
        return usage("missing account ID; please supply one with --user");
    };
    let image_type = match (
        &args.image_type,
        args.kernel.as_deref(),
        args.ramdisk.as_deref(),
    ) {
        (Some(t), _, _) => ImageType::parse(t).unwrap_or(ImageType::Machine),
        (None, Some("true"), _) => ImageType::Kernel,
        (None, _, Some("true")) => ImageType::Ramdisk,
        _ => ImageType::Machine,
    };
    if image_type != ImageType::Machine
        && (args.block_device_mappings.is_some() || args.productcodes.is_some())
    {
        return usage("block device mappings and product codes are only for machine images");
    }
    let prefix = match &args.prefix {
        Some(p) => p.clone(),
        None => args
            .image
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    if prefix.is_empty() || prefix.contains('/') {
        return usage("the prefix must be a non-empty file name");
    }
    let mut template = Manifest::new(&args.arch, &prefix, user, image_type);
    template.kernel_id = args.kernel.clone();
    template.ramdisk_id = args.ramdisk.clone();
    if let Some(bdm) = &args.block_device_mappings {
        let mut pairs = Vec::new();
        for item in bdm.split(',').filter(|s| !s.trim().is_empty()) {
            let Some((v, d)) = item.split_once('=') else {
                return usage(&format!(
                    "block device mapping {item:?} must be VIRTUAL=DEVICE"
                ));
            };
            pairs.push((v.trim().to_string(), d.trim().to_string()));
        }
        pairs.sort();
        template.block_device_mapping = pairs;
    }
    if let Some(codes) = &args.productcodes {
        template.product_codes = codes
            .split(',')
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect();
    }

    let key = match (&args.enc_key, &args.enc_iv) {
        (Some(k), Some(iv)) => BundleKey::from_hex(k, iv)?,
        (None, None) => BundleKey::random(),
        (Some(k), None) => BundleKey::from_hex(k, &BundleKey::random().iv_hex())?,
        (None, Some(iv)) => BundleKey::from_hex(&BundleKey::random().key_hex(), iv)?,
    };
    let cloud = read_certificate(&read(ec2cert)?)?;
    let user_cert = match &args.cert {
        Some(p) => Some(read_certificate(&read(p)?)?),
        None => None,
    };
    let signer = match &args.privatekey {
        Some(p) => Some(read_private_key(&String::from_utf8_lossy(&read(p)?))?),
        None => None,
    };

    let size = std::fs::metadata(&args.image)
        .map_err(|source| CliError::Io {
            context: format!("cannot read {}", args.image.display()),
            source,
        })?
        .len();
    let dest = args.destination.clone().unwrap_or_else(default_bundle_dir);
    std::fs::create_dir_all(&dest).map_err(|source| CliError::Io {
        context: format!("cannot create {}", dest.display()),
        source,
    })?;
    let force = args.progress.force();
    let mut bar = ProgressBar::new(&prefix, size, force);
    let options = BundleOptions {
        part_size: args.part_size,
        ..BundleOptions::default()
    };
    let files = bundle_file(
        &args.image,
        &dest,
        template,
        &BundleKeys {
            key: &key,
            cloud: &cloud,
            user: user_cert.as_ref(),
            signer: signer.as_ref(),
        },
        &options,
        &mut |done| bar.update(done),
    );
    bar.finish();
    let files = files?;
    for p in &files.parts {
        println!("Wrote {}", p.display());
    }
    println!("Wrote manifest {}", files.manifest.display());
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("euca-bundle-image: error: {}", rpc::error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

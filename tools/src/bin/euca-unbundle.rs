//! `euca-unbundle`: restores an image from a bundle on disk, with euca2ools 3.4's flags, plus
//! `-c` to refuse a manifest whose signature does not match the signer's certificate.
//! A thin wrapper: the format lives in `bundler`.

use std::path::PathBuf;
use std::process::ExitCode;

use bundler::files::unbundle_dir;
use bundler::progress::ProgressBar;
use bundler::{read_certificate, read_private_key};
use clap::Parser;
use euca2ools::euca::ProgressArgs;

/// Recreate an image from its bundle.
#[derive(Parser, Debug)]
#[command(name = "euca-unbundle", version)]
struct Args {
    /// The bundle's manifest file.
    #[arg(short = 'm', long = "manifest", value_name = "FILE")]
    manifest: PathBuf,
    /// Directory containing the bundle's parts (default: the current directory).
    #[arg(short = 's', long = "source", value_name = "DIR", default_value = ".")]
    source: PathBuf,
    /// Where to write the unbundled image (default: the current directory).
    #[arg(
        short = 'd',
        long = "destination",
        value_name = "DIR",
        default_value = "."
    )]
    destination: PathBuf,
    /// File containing the private key to decrypt the bundle with (the user's or the cloud's).
    #[arg(
        short = 'k',
        long = "privatekey",
        env = "EC2_PRIVATE_KEY",
        value_name = "FILE"
    )]
    privatekey: PathBuf,
    /// Certificate of the bundle's signer: refuse the bundle unless its signature verifies.
    #[arg(short = 'c', long = "cert", value_name = "FILE")]
    cert: Option<PathBuf>,
    #[command(flatten)]
    progress: ProgressArgs,
}

/// A failure of the command, printed as `euca-unbundle: error: ...`.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Bundle(#[from] bundler::Error),
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|source| CliError::Io {
        context: format!("cannot read {}", path.display()),
        source,
    })
}

fn run(args: Args) -> Result<(), CliError> {
    let private = read_private_key(&String::from_utf8_lossy(&read(&args.privatekey)?))?;
    let signer = match &args.cert {
        Some(p) => Some(read_certificate(&read(p)?)?),
        None => None,
    };
    std::fs::create_dir_all(&args.destination).map_err(|source| CliError::Io {
        context: format!("cannot create {}", args.destination.display()),
        source,
    })?;
    let force = args.progress.force();
    let mut bar: Option<ProgressBar> = None;
    let result = unbundle_dir(
        &args.manifest,
        &args.source,
        &args.destination,
        &private,
        signer.as_ref(),
        &mut |done, total| {
            bar.get_or_insert_with(|| ProgressBar::new("unbundling", total, force))
                .update(done)
        },
    );
    if let Some(b) = &mut bar {
        b.finish();
    }
    let (path, _) = result?;
    println!("Wrote {}", path.display());
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("euca-unbundle: error: {}", rpc::error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

//! `euca_conf`: Eucalyptus' cloud administration command. Today it downloads credentials:
//! `euca_conf --get-credentials FILE.zip [--cred-account NAME] [--cred-user NAME]` writes the
//! zip Eucalyptus' "Download credentials" gave (eucarc, euca2ools.ini, the user's certificate
//! and key, the cloud cert). Eucalyptus' euca_conf read the database on the cloud controller's
//! host; Koala's asks the running cloud (Euare `GetCredentials`) with the admin's credentials
//! from the environment, so it works from any host.

use std::path::PathBuf;
use std::process::ExitCode;

use base64::Engine;
use clap::Parser;
use tools::client::{euare_url_from_env, query_call, xml_text, EnvCredentials};

/// Administers a Koala cloud (Eucalyptus' euca_conf).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Downloads a user's credentials into FILE (a zip): a fresh certificate and key, and an
    /// active access key.
    #[arg(long = "get-credentials", value_name = "FILE")]
    get_credentials: PathBuf,
    /// The account whose user's credentials to get.
    #[arg(
        long = "cred-account",
        value_name = "NAME",
        default_value = "eucalyptus"
    )]
    cred_account: String,
    /// The user whose credentials to get.
    #[arg(long = "cred-user", value_name = "NAME", default_value = "admin")]
    cred_user: String,
    /// The account service's URL [default: EUARE_URL, else derived from S3_URL].
    #[arg(long)]
    url: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match get_credentials(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("euca_conf: {message}");
            ExitCode::FAILURE
        }
    }
}

fn get_credentials(cli: &Cli) -> Result<(), String> {
    let creds = EnvCredentials::from_env().map_err(|e| e.to_string())?;
    let url = match &cli.url {
        Some(url) => url.clone(),
        None => euare_url_from_env().map_err(|e| e.to_string())?,
    };
    let body = query_call(
        &url,
        "iam",
        "2010-05-08",
        "GetCredentials",
        &[
            ("AccountName", &cli.cred_account),
            ("UserName", &cli.cred_user),
        ],
        &creds,
    )
    .map_err(|e| e.to_string())?;
    let encoded = xml_text(&body, "Credentials")
        .ok_or_else(|| format!("the response has no <Credentials>: {body}"))?;
    let zip = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| format!("the credentials in the response are not base64: {e}"))?;
    // Readable by its owner only: the zip holds a secret key.
    identity::write_atomic(&cli.get_credentials, &zip, 0o600)
        .map_err(|e| format!("cannot write {}: {e}", cli.get_credentials.display()))?;
    println!(
        "Wrote the credentials of user {} of account {} to {}",
        cli.cred_user,
        cli.cred_account,
        cli.get_credentials.display()
    );
    Ok(())
}

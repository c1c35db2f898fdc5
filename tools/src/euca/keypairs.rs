//! Key pairs: `euca-create-keypair` (and its euca2ools 1.x name `euca-add-keypair`),
//! `euca-import-keypair`, `euca-delete-keypair`, `euca-describe-keypairs`.

use std::path::PathBuf;

use base64::Engine;
use clap::Parser;

use super::{Command, Ec2Args, EucaError, Filters, Params};

/// Create a new SSH key pair for use with instances.
#[derive(Parser, Debug)]
#[command(version)]
pub struct CreateKeyPair {
    /// Name of the new key pair.
    #[arg(value_name = "KEYPAIR")]
    key_name: String,
    /// File to save the private key to (readable by its owner only) instead of printing it.
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    filename: Option<PathBuf>,
    #[command(flatten)]
    ec2: Ec2Args,
}

impl Command for CreateKeyPair {
    fn run(self) -> Result<(), EucaError> {
        let mut params = Params::new();
        params.set("KeyName", &self.key_name);
        let response = self.ec2.client()?.call("CreateKeyPair", &params)?;
        let mandatory = |name: &'static str| response.value(name).ok_or(EucaError::Missing(name));
        let (name, fingerprint, material) = (
            mandatory("keyName")?,
            mandatory("keyFingerprint")?,
            mandatory("keyMaterial")?,
        );
        let mut table = self.ec2.table();
        table.row(&["KEYPAIR", name, fingerprint])?;
        match &self.filename {
            Some(path) => {
                // The private key: never visible half-written, never readable by others.
                let mut pem = material.to_owned();
                pem.push('\n');
                identity::write_atomic(path, pem.as_bytes(), 0o600)
                    .map_err(EucaError::io(format!("cannot write {}", path.display())))
            }
            None => table.line(material),
        }
    }
}

/// Import a public RSA key as a new key pair.
#[derive(Parser, Debug)]
#[command(version)]
pub struct ImportKeyPair {
    /// Name for the new key pair.
    #[arg(value_name = "KEYPAIR")]
    key_name: String,
    /// File containing the public key to import (OpenSSH format).
    #[arg(short = 'f', long = "public-key-file", value_name = "FILE")]
    public_key_file: PathBuf,
    #[command(flatten)]
    ec2: Ec2Args,
}

impl Command for ImportKeyPair {
    fn run(self) -> Result<(), EucaError> {
        let key = std::fs::read(&self.public_key_file).map_err(EucaError::io(format!(
            "cannot read {}",
            self.public_key_file.display()
        )))?;
        let mut params = Params::new();
        params.set("KeyName", &self.key_name).set(
            "PublicKeyMaterial",
            base64::engine::general_purpose::STANDARD.encode(key),
        );
        let response = self.ec2.client()?.call("ImportKeyPair", &params)?;
        self.ec2.table().row(&[
            "KEYPAIR",
            response.field("keyName"),
            response.field("keyFingerprint"),
        ])
    }
}

/// Delete a key pair.
#[derive(Parser, Debug)]
#[command(version)]
pub struct DeleteKeyPair {
    /// Name of the key pair to delete.
    #[arg(value_name = "KEYPAIR")]
    key_name: String,
    #[command(flatten)]
    ec2: Ec2Args,
}

impl Command for DeleteKeyPair {
    fn run(self) -> Result<(), EucaError> {
        let mut params = Params::new();
        params.set("KeyName", &self.key_name);
        self.ec2.client()?.call("DeleteKeyPair", &params)?;
        self.ec2.table().row(&["KEYPAIR", &self.key_name])
    }
}

/// Display information about available key pairs.
#[derive(Parser, Debug)]
#[command(version)]
pub struct DescribeKeyPairs {
    /// Limit results to specific key pairs.
    #[arg(value_name = "KEYPAIR")]
    key_names: Vec<String>,
    #[command(flatten)]
    filters: Filters,
    #[command(flatten)]
    ec2: Ec2Args,
}

impl Command for DescribeKeyPairs {
    fn run(self) -> Result<(), EucaError> {
        let mut params = Params::new();
        params.list("KeyName", &self.key_names);
        self.filters.add_to(&mut params);
        let response = self.ec2.client()?.call("DescribeKeyPairs", &params)?;
        let mut table = self.ec2.table();
        for key in response.items("keySet") {
            table.row(&["KEYPAIR", key.field("keyName"), key.field("keyFingerprint")])?;
        }
        Ok(())
    }
}

//! The TLS keys and certificates of the components a process runs, in
//! `DATA_DIR/keys/tls/`: `NAME-key.pem` (the component's private key, made here, mode 0600,
//! never sent anywhere), `NAME-cert.pem` (its certificate, issued by the cloud CA when the
//! component was registered) and `NAME-names` (the host names it was issued for). The cloud
//! CA's certificate is `DATA_DIR/keys/cloud-cert.pem`.
//!
//! Beside the CLC the CA issues certificates directly; a component on another host sends its
//! public key with its registration (`RegisterComponent`) and keeps what comes back.

use std::path::{Path, PathBuf};

use identity::{ComponentKind, Identity, CLOUD_CERT_FILE};
use rpc::tls::Tls;

use crate::config::{host_name, Config};
use crate::roles::RoleError;

/// The files of component `name`.
struct TlsFiles {
    key: PathBuf,
    cert: PathBuf,
    names: PathBuf,
}

impl TlsFiles {
    fn of(config: &Config, name: &str) -> TlsFiles {
        let dir = config.data_dir.join("keys/tls");
        TlsFiles {
            key: dir.join(format!("{name}-key.pem")),
            cert: dir.join(format!("{name}-cert.pem")),
            names: dir.join(format!("{name}-names")),
        }
    }
}

fn read(path: &Path) -> Result<Option<String>, RoleError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RoleError::read(path)(e)),
    }
}

fn write(path: &Path, contents: &str, mode: u32) -> Result<(), RoleError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(RoleError::create_dir(dir))?;
    }
    identity::write_atomic(path, contents.as_bytes(), mode).map_err(RoleError::write(path))
}

/// The host names and addresses a component on this host is reached by: the configured
/// public URL's host, this host's name, the listen address when it is a specific one, and
/// loopback (roles of one host call each other there).
pub fn host_names(config: &Config) -> Vec<String> {
    let mut names = vec![host_name(), "localhost".to_owned()];
    if let Some(host) = config
        .public_url
        .as_deref()
        .and_then(|u| u.parse::<http::Uri>().ok())
        .and_then(|u| u.host().map(|h| h.trim_matches(['[', ']']).to_owned()))
    {
        names.push(host);
    }
    if !config.listen.ip().is_unspecified() {
        names.push(config.listen.ip().to_string());
    }
    names.extend(["127.0.0.1".to_owned(), "::1".to_owned()]);
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// Component `name`'s private key (made on first use) and its SPKI public key.
fn key_pair(files: &TlsFiles, name: &str) -> Result<(String, Option<String>), RoleError> {
    if let Some(key) = read(&files.key)? {
        return Ok((key, None));
    }
    let (private, public) = identity::new_tls_key().map_err(tls_key(name))?;
    write(&files.key, &private, 0o600)?;
    Ok((private, Some(public)))
}

/// The TLS settings of component `name` (of `kinds`) beside the cloud CA: its certificate is
/// issued here, on first start or when the names it must carry changed.
pub fn local(
    identity: &Identity,
    config: &Config,
    name: &str,
    kinds: &[ComponentKind],
    hosts: &[String],
) -> Result<Tls, RoleError> {
    let ca = identity
        .cloud_ca()
        .ok_or(RoleError::NoCertificateAuthority)?;
    let files = TlsFiles::of(config, name);
    let wanted = names_line(kinds, hosts);
    let (key, fresh_public) = key_pair(&files, name)?;
    let cert = match (read(&files.cert)?, read(&files.names)?) {
        (Some(cert), Some(names)) if fresh_public.is_none() && names == wanted => cert,
        _ => {
            let public = match fresh_public {
                Some(public) => public,
                None => public_of(&key, name)?,
            };
            let cert = ca
                .issue_tls_certificate(&public, name, kinds, hosts)
                .map_err(|source| RoleError::Certify {
                    name: name.to_owned(),
                    source,
                })?;
            write(&files.cert, &cert, 0o644)?;
            write(&files.names, &wanted, 0o644)?;
            cert
        }
    };
    Tls::new(ca.cert_pem(), Some((&cert, &key))).map_err(unusable(name))
}

/// The TLS settings of component `name` running apart, from its files; `None` when it has
/// none yet (it registers on first start).
pub fn remote(config: &Config, name: &str) -> Result<Option<Tls>, RoleError> {
    let files = TlsFiles::of(config, name);
    let ca = read(&config.data_dir.join("keys").join(CLOUD_CERT_FILE))?;
    match (ca, read(&files.cert)?, read(&files.key)?) {
        (Some(ca), Some(cert), Some(key)) => Tls::new(&ca, Some((&cert, &key)))
            .map(Some)
            .map_err(unusable(name)),
        _ => Ok(None),
    }
}

/// What a component running apart sends with its registration: the public key of its TLS key
/// (made now, kept in its files).
pub fn registration_key(config: &Config, name: &str) -> Result<String, RoleError> {
    let files = TlsFiles::of(config, name);
    match key_pair(&files, name)? {
        (_, Some(public)) => Ok(public),
        (key, None) => public_of(&key, name),
    }
}

/// Keeps what a registration answered: the component's certificate and the cloud CA's.
pub fn keep_registration(
    config: &Config,
    name: &str,
    cert_pem: &str,
    ca_pem: &str,
) -> Result<(), RoleError> {
    let files = TlsFiles::of(config, name);
    write(
        &config.data_dir.join("keys").join(CLOUD_CERT_FILE),
        ca_pem,
        0o644,
    )?;
    write(&files.cert, cert_pem, 0o644)
}

/// The public key (SPKI PEM) of component `name`'s private key (PKCS#8 PEM).
fn public_of(private_pem: &str, name: &str) -> Result<String, RoleError> {
    identity::public_tls_key(private_pem).map_err(tls_key(name))
}

/// For `map_err`: component `name`'s TLS key could not be made or read.
fn tls_key(name: &str) -> impl FnOnce(identity::IdentityError) -> RoleError {
    let name = name.to_owned();
    move |source| RoleError::TlsKey { name, source }
}

/// For `map_err`: component `name`'s certificate and key cannot be used.
fn unusable(name: &str) -> impl FnOnce(rpc::tls::TlsError) -> RoleError {
    let name = name.to_owned();
    move |source| RoleError::Tls { name, source }
}

/// The names a certificate carries, as one comparable line.
fn names_line(kinds: &[ComponentKind], hosts: &[String]) -> String {
    kinds
        .iter()
        .map(|k| k.tls_name().to_owned())
        .chain(hosts.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ")
}

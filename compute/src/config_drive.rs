//! The NoCloud config drive: how an instance learns its id, its key pair and its user data.
//!
//! A NoCloud seed is an ISO 9660 image labelled `cidata` holding `meta-data` and `user-data`,
//! read by cloud-init and by Koala's test guest alike. Koala builds it with `genisoimage` (a
//! Debian package; well under 0.1 s); writing ISO 9660 in Rust is a later option. The image is
//! written under a temporary name and renamed into place, so a half-written drive is never
//! attached.

use std::path::Path;
use std::process::Command;

use crate::Error;

/// The program that writes config drives.
const GENISOIMAGE: &str = "genisoimage";

/// Checks that this host can write config drives (`genisoimage` runs), so that a node
/// without it refuses to start rather than failing its first instance's boot.
pub fn check_writer() -> Result<(), Error> {
    check_program(GENISOIMAGE, "genisoimage")
}

/// Checks that `program` (from the Debian package `package`) runs and exits 0 when asked
/// for its version.
fn check_program(program: &'static str, package: &'static str) -> Result<(), Error> {
    let output = Command::new(program)
        .arg("-version")
        .output()
        .map_err(|source| Error::MissingProgram {
            program,
            package,
            source,
        })?;
    if !output.status.success() {
        return Err(Error::Command {
            program,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// What an instance is told at boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDrive {
    /// The instance id, `i-12345678`.
    pub instance_id: String,
    /// The guest's host name.
    pub hostname: String,
    /// The key pairs' (name, OpenSSH public key).
    pub public_keys: Vec<(String, String)>,
    /// The user data, as given to RunInstances (decoded from base64).
    pub user_data: Vec<u8>,
}

impl ConfigDrive {
    /// The `meta-data` file: YAML that cloud-init reads, with `public-keys` as a map from key
    /// name to key, which cloud-init accepts and which carries the key name to the guest.
    pub fn meta_data(&self) -> String {
        let mut out = format!(
            "instance-id: {}\nlocal-hostname: {}\n",
            yaml_scalar(&self.instance_id),
            yaml_scalar(&self.hostname)
        );
        if !self.public_keys.is_empty() {
            out.push_str("public-keys:\n");
            for (name, key) in &self.public_keys {
                out.push_str(&format!("  {}: {}\n", yaml_scalar(name), yaml_scalar(key)));
            }
        }
        out
    }

    /// Writes the config drive image to `path` (through a temporary file beside it).
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        let folder = path.parent().unwrap_or(Path::new("."));
        let seed = tempfile::Builder::new()
            .prefix(".seed")
            .tempdir_in(folder)
            .map_err(Error::io("create a folder in", folder))?;
        let meta_data = seed.path().join("meta-data");
        std::fs::write(&meta_data, self.meta_data()).map_err(Error::io("write", &meta_data))?;
        let user_data = seed.path().join("user-data");
        std::fs::write(&user_data, &self.user_data).map_err(Error::io("write", &user_data))?;
        let image = seed.path().join("seed.iso");
        let output = Command::new(GENISOIMAGE)
            .arg("-quiet")
            .arg("-output")
            .arg(&image)
            .args(["-volid", "cidata", "-joliet", "-rock"])
            .arg(&meta_data)
            .arg(&user_data)
            .output()
            .map_err(Error::io("run genisoimage for", path))?;
        if !output.status.success() {
            return Err(Error::Command {
                program: GENISOIMAGE,
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            });
        }
        std::fs::rename(&image, path).map_err(Error::io("rename the config drive to", path))
    }
}

/// A YAML scalar: plain when it is a safe word, else double-quoted with escapes.
fn yaml_scalar(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | '+' | '@'))
        && value.starts_with(|c: char| c.is_ascii_alphanumeric());
    if plain {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_writer_is_named_with_its_package() {
        let err = check_program("koala-no-such-program", "koala-pkg").unwrap_err();
        assert!(matches!(err, Error::MissingProgram { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "cannot run koala-no-such-program, which the node needs (apt-get install koala-pkg)"
        );
    }

    fn drive() -> ConfigDrive {
        ConfigDrive {
            instance_id: "i-12345678".into(),
            hostname: "i-12345678".into(),
            public_keys: vec![("mykey".into(), "ssh-rsa AAAAB3Nza mykey@host".into())],
            user_data: b"#!/bin/sh\necho hello\n".to_vec(),
        }
    }

    #[test]
    fn meta_data_names_instance_and_keys() {
        assert_eq!(
            drive().meta_data(),
            "instance-id: i-12345678\nlocal-hostname: i-12345678\n\
             public-keys:\n  mykey: \"ssh-rsa AAAAB3Nza mykey@host\"\n"
        );
        let mut odd = drive();
        odd.public_keys = vec![("my key: \"x\"".into(), "k".into())];
        odd.user_data.clear();
        assert!(odd
            .meta_data()
            .ends_with("public-keys:\n  \"my key: \\\"x\\\"\": k\n"));
        odd.public_keys.clear();
        assert!(!odd.meta_data().contains("public-keys"));
    }

    #[test]
    fn writes_an_iso9660_seed() {
        let dir = tempfile::tempdir().unwrap();
        let iso = dir.path().join("config.iso");
        drive().write(&iso).unwrap();
        let bytes = std::fs::read(&iso).unwrap();
        // The primary volume descriptor at sector 16: type 1, "CD001", then the volume id.
        let pvd = &bytes[16 * 2048..17 * 2048];
        assert_eq!(&pvd[1..6], b"CD001");
        assert!(pvd[40..72].starts_with(b"cidata"));
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("instance-id: i-12345678"));
        assert!(text.contains("echo hello"));
        // Only the image is left beside it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}

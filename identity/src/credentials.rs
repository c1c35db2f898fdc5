//! Credential bundles, as Eucalyptus' "Download credentials" gave them: a zip holding the
//! `eucarc`, a `euca2ools.ini`, the user's certificate and private key and the cloud cert, so
//! that after `unzip` anywhere and `. eucarc` every client (euca2ools 1.x and 3.x, the aws
//! CLI, boto3) reaches the cloud and can bundle images.

use crate::ca::CLOUD_CERT_FILE;
use crate::{Credentials, ServiceUrls};
#[cfg(feature = "store")]
use crate::{Identity, IdentityError};

/// The euca2ools configuration file's name inside a bundle.
pub const EUCA2OOLS_INI: &str = "euca2ools.ini";
/// The eucarc's name inside a bundle.
pub const EUCARC: &str = "eucarc";

/// The names, relative to the eucarc's folder, of the files a eucarc points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFiles {
    /// The user's certificate (`EC2_CERT`).
    pub certificate: String,
    /// The user's private key (`EC2_PRIVATE_KEY`).
    pub private_key: String,
    /// The cloud cert (`EUCALYPTUS_CERT`).
    pub cloud_certificate: String,
}

impl KeyFiles {
    /// Eucalyptus' names: `euca2-USER-TAG-cert.pem` and `euca2-USER-TAG-pk.pem`, where TAG
    /// (8 hex digits of the certificate's serial) tells successive downloads apart.
    pub fn for_user(user_name: &str, certificate_id: &str) -> KeyFiles {
        let tag: String = certificate_id
            .chars()
            .take(8)
            .collect::<String>()
            .to_ascii_lowercase();
        KeyFiles {
            certificate: format!("euca2-{user_name}-{tag}-cert.pem"),
            private_key: format!("euca2-{user_name}-{tag}-pk.pem"),
            cloud_certificate: CLOUD_CERT_FILE.to_owned(),
        }
    }
}

/// One file of a bundle.
#[derive(Clone, PartialEq, Eq)]
pub struct BundleFile {
    /// Its name (no folders).
    pub name: String,
    /// Its contents.
    pub contents: Vec<u8>,
    /// Whether it holds a secret (keys): written with mode 0600, else 0644.
    pub private: bool,
}

impl std::fmt::Debug for BundleFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BundleFile")
            .field("name", &self.name)
            .field("len", &self.contents.len())
            .field("private", &self.private)
            .finish()
    }
}

/// A user's credentials as files: what the zip holds, and what `koala up` writes unzipped
/// into `DATA_DIR/credentials/admin/`.
#[derive(Debug, Clone)]
pub struct CredentialBundle {
    /// The files, eucarc first.
    pub files: Vec<BundleFile>,
}

impl CredentialBundle {
    /// The eucarc and euca2ools.ini for `creds`, pointing at files named by `files` (which
    /// must lie beside them). Used alone when those files exist already (a restart).
    pub fn config_files(
        creds: &Credentials,
        urls: &ServiceUrls,
        files: &KeyFiles,
    ) -> Vec<BundleFile> {
        vec![
            BundleFile {
                name: EUCARC.to_owned(),
                contents: creds.eucarc_with_files(urls, files).into_bytes(),
                private: true,
            },
            BundleFile {
                name: EUCA2OOLS_INI.to_owned(),
                contents: euca2ools_ini(creds, urls, files).into_bytes(),
                private: true,
            },
        ]
    }

    /// The bundle as a zip archive (stored entries, Unix modes kept so `unzip` restores 0600
    /// on the secrets).
    pub fn to_zip(&self) -> Vec<u8> {
        zip_stored(&self.files)
    }
}

#[cfg(feature = "store")]
impl Identity {
    /// A fresh credential bundle for a user: an active access key (the existing one, else a
    /// new one) and a newly issued certificate and key. Slow (key generation): call it off the
    /// async reactor.
    pub fn credential_bundle(
        &self,
        account_id: &str,
        user_name: &str,
        urls: &ServiceUrls,
    ) -> Result<CredentialBundle, IdentityError> {
        let ca = self
            .cloud_ca()
            .ok_or(IdentityError::NoCertificateAuthority)?;
        let creds = self.active_access_key(account_id, user_name)?;
        let (cert, key_pem) = self.create_signing_certificate(account_id, user_name)?;
        let names = KeyFiles::for_user(user_name, &cert.certificate_id);
        let mut files = CredentialBundle::config_files(&creds, urls, &names);
        files.push(BundleFile {
            name: names.certificate,
            contents: cert.cert_pem.into_bytes(),
            private: false,
        });
        files.push(BundleFile {
            name: names.private_key,
            contents: key_pem.into_bytes(),
            private: true,
        });
        files.push(BundleFile {
            name: names.cloud_certificate,
            contents: ca.cert_pem().as_bytes().to_vec(),
            private: false,
        });
        Ok(CredentialBundle { files })
    }
}

/// The euca2ools 3 configuration: a region section with the endpoints and the cloud cert, and
/// a user section with the keys, certificate and private key. euca2ools reads file paths as
/// given, relative to the folder it runs in: they are the bare names of the files beside it,
/// so it works when run from the credentials folder or copied to `~/.euca/` with them.
pub fn euca2ools_ini(creds: &Credentials, urls: &ServiceUrls, files: &KeyFiles) -> String {
    let region = &urls.region;
    let user = format!("{}-{}", creds.account_name, creds.user_name);
    let mut out = format!(
        "; Koala credentials for user {} of account {} ({}).\n",
        creds.user_name, creds.account_name, creds.account_id
    );
    out.push_str("; Use with: euca-describe-images --region ");
    out.push_str(&format!("{user}@{region}\n\n[region {region}]\n"));
    if let Some(ec2) = &urls.ec2_url {
        out.push_str(&format!("ec2-url = {ec2}\n"));
    }
    out.push_str(&format!("s3-url = {}\n", urls.s3_url));
    if let Some(iam) = &urls.euare_url {
        out.push_str(&format!("iam-url = {iam}\n"));
    }
    out.push_str(&format!("certificate = {}\n", files.cloud_certificate));
    out.push_str(&format!("user = {user}\n\n[user {user}]\n"));
    out.push_str(&format!("key-id = {}\n", creds.access_key_id));
    out.push_str(&format!("secret-key = {}\n", creds.secret_access_key));
    out.push_str(&format!("account-id = {}\n", creds.account_id));
    out.push_str(&format!("certificate = {}\n", files.certificate));
    out.push_str(&format!("private-key = {}\n", files.private_key));
    out
}

/// A zip archive of `files` as stored (uncompressed) entries: credentials are a few KiB, so
/// compression would only add a dependency. Each entry carries its Unix mode.
fn zip_stored(files: &[BundleFile]) -> Vec<u8> {
    // 1980-01-01 00:00, zip's epoch: the archive does not depend on the clock.
    const DOS_TIME: u16 = 0;
    const DOS_DATE: u16 = (1 << 5) | 1;
    let mut out = Vec::new();
    let mut central = Vec::new();
    for file in files {
        let crc = crc32fast::hash(&file.contents);
        let offset = out.len() as u32;
        let size = file.contents.len() as u32;
        let name = file.name.as_bytes();
        // Local file header.
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&20u16.to_le_bytes()); // version needed: 2.0
        out.extend_from_slice(&0u16.to_le_bytes()); // flags
        out.extend_from_slice(&0u16.to_le_bytes()); // method: stored
        out.extend_from_slice(&DOS_TIME.to_le_bytes());
        out.extend_from_slice(&DOS_DATE.to_le_bytes());
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // extra length
        out.extend_from_slice(name);
        out.extend_from_slice(&file.contents);
        // Central directory record.
        let mode: u32 = if file.private { 0o100600 } else { 0o100644 };
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&((3u16 << 8) | 20).to_le_bytes()); // made by: Unix, 2.0
        central.extend_from_slice(&20u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes());
        central.extend_from_slice(&DOS_TIME.to_le_bytes());
        central.extend_from_slice(&DOS_DATE.to_le_bytes());
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&size.to_le_bytes());
        central.extend_from_slice(&(name.len() as u16).to_le_bytes());
        central.extend_from_slice(&0u16.to_le_bytes()); // extra length
        central.extend_from_slice(&0u16.to_le_bytes()); // comment length
        central.extend_from_slice(&0u16.to_le_bytes()); // disk number
        central.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        central.extend_from_slice(&(mode << 16).to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name);
    }
    let central_offset = out.len() as u32;
    let count = files.len() as u16;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // this disk
    out.extend_from_slice(&0u16.to_le_bytes()); // disk with the central directory
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&central_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes()); // comment length
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn urls() -> ServiceUrls {
        ServiceUrls {
            s3_url: "http://cloud.example:8773/services/Walrus".into(),
            ec2_url: Some("http://cloud.example:8773/services/compute/".into()),
            euare_url: Some("http://cloud.example:8773/services/Euare".into()),
            region: "koala".into(),
        }
    }

    /// Lists a zip with Python's zipfile (an independent reader) and checks every CRC.
    fn python_list(zip: &std::path::Path) -> Option<String> {
        let out = Command::new("python3")
            .arg("-c")
            .arg("import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1])\nassert z.testzip() is None\nfor i in z.infolist(): print(i.filename, oct(i.external_attr >> 16), len(z.read(i)))")
            .arg(zip)
            .output()
            .ok()?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Some(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    #[test]
    fn zips_are_readable_by_others() {
        let bundle = CredentialBundle {
            files: vec![
                BundleFile {
                    name: "eucarc".into(),
                    contents: b"export A=1\n".to_vec(),
                    private: true,
                },
                BundleFile {
                    name: "cloud-cert.pem".into(),
                    contents: vec![b'x'; 3000],
                    private: false,
                },
            ],
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.zip");
        std::fs::write(&path, bundle.to_zip()).unwrap();
        if let Some(listing) = python_list(&path) {
            assert_eq!(
                listing,
                "eucarc 0o100600 11\ncloud-cert.pem 0o100644 3000\n"
            );
        }
    }

    /// The whole bundle from a store with a CA; one test, as key generation is slow.
    #[test]
    fn bundle_holds_working_credentials() {
        let dir = tempfile::tempdir().unwrap();
        let (id, created) =
            Identity::open_with_ca(&dir.path().join("db"), &dir.path().join("keys")).unwrap();
        assert!(created);
        let (admin, _) = id.ensure_admin().unwrap();
        let bundle = id
            .credential_bundle(&admin.account_id, "admin", &urls())
            .unwrap();
        let names: Vec<&str> = bundle.files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names.len(), 5);
        assert_eq!(&names[..2], &["eucarc", "euca2ools.ini"]);
        assert!(names[2].starts_with("euca2-admin-") && names[2].ends_with("-cert.pem"));
        assert_eq!(names[3], names[2].replace("-cert.pem", "-pk.pem"));
        assert_eq!(names[4], "cloud-cert.pem");
        let text = |i: usize| String::from_utf8(bundle.files[i].contents.clone()).unwrap();
        let ini = text(1);
        assert!(ini.contains("[region koala]\n"), "{ini}");
        assert!(ini.contains(&format!("key-id = {}\n", admin.access_key_id)));
        assert!(ini.contains(&format!("certificate = {}\n", names[2])));
        assert!(ini.contains(&format!("private-key = {}\n", names[3])));
        assert!(ini.contains("certificate = cloud-cert.pem\n"));
        assert!(text(3).starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        assert_eq!(text(4), id.cloud_ca().unwrap().cert_pem());

        // The certificate is registered; its key is not kept.
        let certs = id
            .list_signing_certificates(&admin.account_id, "admin")
            .unwrap();
        assert_eq!(certs.len(), 1);
        assert_eq!(certs[0].cert_pem, text(2));
        assert_eq!(
            id.certificates_of_account(&admin.account_id).unwrap(),
            vec![text(2)]
        );
        assert_eq!(
            names[2],
            KeyFiles::for_user("admin", &certs[0].certificate_id).certificate
        );
        assert!(matches!(
            id.certificates_of_account("000000000000"),
            Err(IdentityError::NoSuchAccount(_))
        ));

        // Unzipped elsewhere and sourced from yet another folder, the eucarc's paths resolve.
        let unzipped = dir.path().join("unzipped");
        std::fs::create_dir_all(&unzipped).unwrap();
        for file in &bundle.files {
            std::fs::write(unzipped.join(&file.name), &file.contents).unwrap();
        }
        let out = Command::new("bash")
            .current_dir("/")
            .arg("-c")
            .arg(format!(
                ". '{}/eucarc' && cat \"$EC2_CERT\" \"$EC2_PRIVATE_KEY\" \"$EUCALYPTUS_CERT\" >/dev/null && echo \"$AWS_ACCESS_KEY_ID\"",
                unzipped.display()
            ))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            admin.access_key_id
        );

        // A store without the CA issues nothing.
        let plain = Identity::open(&dir.path().join("other")).unwrap();
        let (other, _) = plain.ensure_admin().unwrap();
        assert!(matches!(
            plain.credential_bundle(&other.account_id, "admin", &urls()),
            Err(IdentityError::NoCertificateAuthority)
        ));
    }
}

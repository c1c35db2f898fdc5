//! The cloud's certificate authority: one RSA-2048 key and its self-signed X.509 certificate
//! (the "cloud cert", `EUCALYPTUS_CERT`), made once on first start and kept in
//! `DATA_DIR/keys/` as Eucalyptus keeps `cloud-pk.pem` and `cloud-cert.pem`. Bundles are
//! encrypted for it, and it signs the users' certificates, whose keys sign bundle manifests.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use rand::rngs::OsRng;
use rand::RngCore;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey, LineEnding};
use rsa::pkcs1v15::{Signature, SigningKey};
use rsa::sha2::Sha256;
use rsa::{RsaPrivateKey, RsaPublicKey};
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::der::{DecodePem, EncodePem};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::Validity;
use x509_cert::Certificate;

use crate::fsutil::write_atomic;
use crate::IdentityError;

/// The CA's private key file in the keys folder (PKCS#1 PEM, mode 0600).
pub const CLOUD_KEY_FILE: &str = "cloud-pk.pem";
/// The CA's certificate file in the keys folder; it is also the cloud cert handed to users.
pub const CLOUD_CERT_FILE: &str = "cloud-cert.pem";

/// RSA modulus size of every key made here: what Eucalyptus and euca2ools use.
const KEY_BITS: usize = 2048;
/// The cloud cert outlives any deployment (Eucalyptus gave it five years; bundles made for
/// it must stay readable).
const CA_VALIDITY: Duration = Duration::from_secs(20 * 365 * 24 * 3600);
/// Users' certificates: five years, as Eucalyptus issued them.
const USER_VALIDITY: Duration = Duration::from_secs(5 * 365 * 24 * 3600);

/// The cloud CA: its key and certificate. Cheap to clone.
#[derive(Clone)]
pub struct CloudCa {
    key: RsaPrivateKey,
    cert: Certificate,
    cert_pem: String,
}

impl std::fmt::Debug for CloudCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudCa")
            .field("subject", &self.cert.tbs_certificate.subject.to_string())
            .finish_non_exhaustive()
    }
}

/// A certificate issued to a user, with the private key that goes with it. The key is handed
/// out once (in credentials) and never stored by the cloud.
#[derive(Clone)]
pub struct IssuedCertificate {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PKCS#1 PEM (`BEGIN RSA PRIVATE KEY`), which every euca2ools reads.
    pub key_pem: String,
    /// The serial number, lowercase hex: unique per certificate, used to name its files.
    pub serial_hex: String,
}

impl std::fmt::Debug for IssuedCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCertificate")
            .field("serial_hex", &self.serial_hex)
            .field("key_pem", &"<redacted>")
            .finish_non_exhaustive()
    }
}

fn pki_error(what: &str, err: impl std::fmt::Display) -> IdentityError {
    IdentityError::Certificate(format!("{what}: {err}"))
}

impl CloudCa {
    /// Loads the CA from `keys_dir`, creating it first if it has no certificate yet. Returns
    /// whether it was created. The key is written before the certificate, each atomically, so
    /// a crash leaves either no certificate (and the CA is made anew) or a complete pair.
    pub fn open_or_create(keys_dir: &Path) -> Result<(CloudCa, bool), IdentityError> {
        let key_path = keys_dir.join(CLOUD_KEY_FILE);
        let cert_path = keys_dir.join(CLOUD_CERT_FILE);
        if cert_path.exists() {
            let read = |path: &Path| {
                std::fs::read_to_string(path).map_err(|e| pki_error(&path.display().to_string(), e))
            };
            let key = RsaPrivateKey::from_pkcs1_pem(&read(&key_path)?)
                .map_err(|e| pki_error(CLOUD_KEY_FILE, e))?;
            let cert_pem = read(&cert_path)?;
            let cert =
                Certificate::from_pem(&cert_pem).map_err(|e| pki_error(CLOUD_CERT_FILE, e))?;
            return Ok((
                CloudCa {
                    key,
                    cert,
                    cert_pem,
                },
                false,
            ));
        }
        let ca = CloudCa::generate("CN=Koala cloud CA,O=Koala")?;
        let key_pem = ca
            .key
            .to_pkcs1_pem(LineEnding::LF)
            .map_err(|e| pki_error("cannot encode the cloud key", e))?;
        let fail = |path: &Path| {
            let what = format!("cannot write {}", path.display());
            move |e: std::io::Error| pki_error(&what, e)
        };
        write_atomic(&key_path, key_pem.as_bytes(), 0o600).map_err(fail(&key_path))?;
        write_atomic(&cert_path, ca.cert_pem.as_bytes(), 0o644).map_err(fail(&cert_path))?;
        Ok((ca, true))
    }

    /// A new CA with a self-signed certificate for `subject`.
    fn generate(subject: &str) -> Result<CloudCa, IdentityError> {
        let key = new_key()?;
        let subject = Name::from_str(subject).map_err(|e| pki_error("bad CA subject", e))?;
        let signer = SigningKey::<Sha256>::new(key.clone());
        let cert = build(
            Profile::Root,
            subject,
            &RsaPublicKey::from(&key),
            CA_VALIDITY,
            &signer,
        )?;
        let cert_pem = cert
            .to_pem(LineEnding::LF)
            .map_err(|e| pki_error("cannot encode the CA certificate", e))?;
        Ok(CloudCa {
            key,
            cert,
            cert_pem,
        })
    }

    /// The cloud cert, PEM: what users encrypt bundles for and verify user certs against.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The cloud's private key, for unwrapping bundle keys encrypted for the cloud.
    pub fn private_key(&self) -> &RsaPrivateKey {
        &self.key
    }

    /// A new RSA-2048 key and a certificate for it signed by the CA, naming the user and
    /// account in its subject. Slow (key generation): call it off the async reactor.
    pub fn issue_user_certificate(
        &self,
        account_id: &str,
        user_name: &str,
    ) -> Result<IssuedCertificate, IdentityError> {
        let key = new_key()?;
        // User and account names are restricted to characters that need no escaping in a DN
        // except `,+=` which IAM allows in user names: escape those.
        let escaped: String = user_name
            .chars()
            .flat_map(|c| {
                let prefix =
                    matches!(c, ',' | '+' | '=' | '"' | '\\' | '<' | '>' | ';').then_some('\\');
                prefix.into_iter().chain(std::iter::once(c))
            })
            .collect();
        let subject = Name::from_str(&format!("CN={escaped},OU={account_id},O=Koala"))
            .map_err(|e| pki_error("bad user subject", e))?;
        let signer = SigningKey::<Sha256>::new(self.key.clone());
        let cert = build(
            Profile::Leaf {
                issuer: self.cert.tbs_certificate.subject.clone(),
                enable_key_agreement: false,
                // The user's key also unwraps the bundle key the user encrypted for itself.
                enable_key_encipherment: true,
            },
            subject,
            &RsaPublicKey::from(&key),
            USER_VALIDITY,
            &signer,
        )?;
        let serial_hex = hex::encode(cert.tbs_certificate.serial_number.as_bytes());
        Ok(IssuedCertificate {
            cert_pem: cert
                .to_pem(LineEnding::LF)
                .map_err(|e| pki_error("cannot encode a user certificate", e))?,
            key_pem: key
                .to_pkcs1_pem(LineEnding::LF)
                .map_err(|e| pki_error("cannot encode a user key", e))?
                .to_string(),
            serial_hex,
        })
    }
}

fn new_key() -> Result<RsaPrivateKey, IdentityError> {
    RsaPrivateKey::new(&mut OsRng, KEY_BITS).map_err(|e| pki_error("RSA key generation failed", e))
}

/// Builds and signs a certificate with a random positive 128-bit serial number.
fn build(
    profile: Profile,
    subject: Name,
    public_key: &RsaPublicKey,
    validity: Duration,
    signer: &SigningKey<Sha256>,
) -> Result<Certificate, IdentityError> {
    let mut serial = [0u8; 16];
    OsRng
        .try_fill_bytes(&mut serial)
        .map_err(|_| IdentityError::Random)?;
    // Positive and without a leading zero byte, as RFC 5280 wants serials.
    serial[0] = (serial[0] & 0x7f) | 0x40;
    let serial = SerialNumber::new(&serial).map_err(|e| pki_error("bad serial", e))?;
    let validity = Validity::from_now(validity).map_err(|e| pki_error("bad validity", e))?;
    let spki = SubjectPublicKeyInfoOwned::from_key(public_key.clone())
        .map_err(|e| pki_error("cannot encode a public key", e))?;
    CertificateBuilder::new(profile, serial, validity, subject, spki, signer)
        .map_err(|e| pki_error("cannot prepare a certificate", e))?
        .build::<Signature>()
        .map_err(|e| pki_error("cannot sign a certificate", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1v15::VerifyingKey;
    use rsa::signature::Verifier;
    use std::os::unix::fs::PermissionsExt;
    use x509_cert::der::Encode;

    /// Checks `cert`'s signature with `issuer`'s public key.
    fn signed_by(cert: &Certificate, issuer: &Certificate) -> bool {
        let spki = issuer
            .tbs_certificate
            .subject_public_key_info
            .to_der()
            .unwrap();
        let public =
            <RsaPublicKey as rsa::pkcs8::DecodePublicKey>::from_public_key_der(&spki).unwrap();
        let tbs = cert.tbs_certificate.to_der().unwrap();
        let sig = Signature::try_from(cert.signature.raw_bytes()).unwrap();
        VerifyingKey::<Sha256>::new(public)
            .verify(&tbs, &sig)
            .is_ok()
    }

    /// One test for the CA's whole life, because RSA key generation is slow.
    #[test]
    fn ca_is_made_once_and_signs_user_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        let (ca, created) = CloudCa::open_or_create(&keys).unwrap();
        assert!(created);
        let mode = |f: &str| {
            std::fs::metadata(keys.join(f))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode(CLOUD_KEY_FILE), 0o600);
        assert_eq!(mode(CLOUD_CERT_FILE), 0o644);
        assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(signed_by(&ca.cert, &ca.cert), "self-signed");

        let (again, created) = CloudCa::open_or_create(&keys).unwrap();
        assert!(!created);
        assert_eq!(again.cert_pem(), ca.cert_pem());
        assert_eq!(again.private_key(), ca.private_key());

        let issued = ca.issue_user_certificate("123456789012", "a,b=c").unwrap();
        assert!(issued
            .key_pem
            .starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        let cert = Certificate::from_pem(&issued.cert_pem).unwrap();
        assert!(signed_by(&cert, &ca.cert));
        assert_eq!(cert.tbs_certificate.issuer, ca.cert.tbs_certificate.subject);
        assert_eq!(issued.serial_hex.len(), 32);
        let subject = cert.tbs_certificate.subject.to_string();
        assert!(subject.contains("123456789012"), "{subject}");
        // The key in the PEM is the certificate's.
        let key = RsaPrivateKey::from_pkcs1_pem(&issued.key_pem).unwrap();
        let spki = SubjectPublicKeyInfoOwned::from_key(RsaPublicKey::from(&key)).unwrap();
        assert_eq!(spki, cert.tbs_certificate.subject_public_key_info);
        assert!(!signed_by(&ca.cert, &cert));
    }
}

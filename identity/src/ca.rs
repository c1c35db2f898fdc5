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
use rsa::pkcs8::{DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use rsa::sha2::Sha256;
use rsa::{RsaPrivateKey, RsaPublicKey};
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::der::asn1::{Ia5String, ObjectIdentifier, OctetString};
use x509_cert::der::{DecodePem, EncodePem};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{ExtendedKeyUsage, SubjectAltName};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::SubjectPublicKeyInfoOwned;
use x509_cert::time::Validity;
use x509_cert::Certificate;

use crate::fsutil::write_atomic;
use crate::{ComponentKind, IdentityError};

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
/// Components' TLS certificates: as long as users' (a component is re-registered to renew).
const TLS_VALIDITY: Duration = USER_VALIDITY;
/// `id-kp-serverAuth` (RFC 5280).
const ID_KP_SERVER_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");
/// `id-kp-clientAuth` (RFC 5280).
const ID_KP_CLIENT_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.2");

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
            |_| Ok(()),
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
        let subject = Name::from_str(&format!(
            "CN={},OU={account_id},O=Koala",
            dn_escape(user_name)
        ))
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
            |_| Ok(()),
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

impl CloudCa {
    /// A TLS certificate for one of the cloud's components: subject `CN=<principal>` (which
    /// the component's peers compare with the signer of its calls), and as names its kind's
    /// name ([`ComponentKind::tls_name`], which callers verify instead of an address that
    /// may change) and `hosts` (DNS names or IP addresses, for clients that reach it by
    /// address, users of Walrus and EC2 among them). Usable as server and as client
    /// certificate; the key it certifies, `public_key_pem` (SPKI PEM), never leaves the
    /// component.
    pub fn issue_tls_certificate(
        &self,
        public_key_pem: &str,
        principal: &str,
        kinds: &[ComponentKind],
        hosts: &[String],
    ) -> Result<String, IdentityError> {
        let public_key = RsaPublicKey::from_public_key_pem(public_key_pem)
            .map_err(|e| pki_error("the public key is not an RSA SPKI PEM", e))?;
        let subject = Name::from_str(&format!("CN={},O=Koala", dn_escape(principal)))
            .map_err(|e| pki_error("bad component subject", e))?;
        let mut names = Vec::new();
        for kind in kinds {
            names.push(dns_name(kind.tls_name())?);
        }
        for host in hosts {
            names.push(match host.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V4(ip)) => ip_name(&ip.octets())?,
                Ok(std::net::IpAddr::V6(ip)) => ip_name(&ip.octets())?,
                Err(_) => dns_name(host)?,
            });
        }
        let signer = SigningKey::<Sha256>::new(self.key.clone());
        let cert = build(
            Profile::Leaf {
                issuer: self.cert.tbs_certificate.subject.clone(),
                enable_key_agreement: false,
                enable_key_encipherment: true,
            },
            subject,
            &public_key,
            TLS_VALIDITY,
            &signer,
            |builder| {
                builder.add_extension(&SubjectAltName(names))?;
                builder.add_extension(&ExtendedKeyUsage(vec![
                    ID_KP_SERVER_AUTH,
                    ID_KP_CLIENT_AUTH,
                ]))
            },
        )?;
        cert.to_pem(LineEnding::LF)
            .map_err(|e| pki_error("cannot encode a TLS certificate", e))
    }
}

/// A TLS key for a component, made where it runs: (private key PKCS#8 PEM, public key SPKI
/// PEM). Slow (key generation): call it off the async reactor.
pub fn new_tls_key() -> Result<(String, String), IdentityError> {
    let key = new_key()?;
    let private = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| pki_error("cannot encode a TLS key", e))?
        .to_string();
    let public = RsaPublicKey::from(&key)
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| pki_error("cannot encode a TLS public key", e))?;
    Ok((private, public))
}

/// The public key (SPKI PEM) of a TLS key made by [`new_tls_key`] (PKCS#8 PEM).
pub fn public_tls_key(private_pem: &str) -> Result<String, IdentityError> {
    use rsa::pkcs8::DecodePrivateKey;
    let key = RsaPrivateKey::from_pkcs8_pem(private_pem)
        .map_err(|e| pki_error("the TLS key is not an RSA PKCS#8 PEM", e))?;
    RsaPublicKey::from(&key)
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| pki_error("cannot encode a TLS public key", e))
}

/// The principal a component's certificate (DER) names in its subject's CN, if it is one of
/// this cloud's TLS certificates (the TLS layer has checked it chains to the cloud CA).
pub fn certificate_principal(der: &[u8]) -> Option<String> {
    use x509_cert::der::Decode;
    let cert = Certificate::from_der(der).ok()?;
    cert.tbs_certificate
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .find(|atv| atv.oid == ObjectIdentifier::new_unwrap("2.5.4.3"))
        .and_then(|atv| {
            x509_cert::der::asn1::Utf8StringRef::try_from(&atv.value)
                .map(|s| s.as_str().to_owned())
                .ok()
        })
}

fn dns_name(name: &str) -> Result<GeneralName, IdentityError> {
    Ia5String::new(name)
        .map(GeneralName::DnsName)
        .map_err(|e| pki_error(&format!("{name:?} is no DNS name"), e))
}

fn ip_name(octets: &[u8]) -> Result<GeneralName, IdentityError> {
    OctetString::new(octets)
        .map(GeneralName::IpAddress)
        .map_err(|e| pki_error("bad IP address", e))
}

/// Escapes the characters a DN value may not hold bare (IAM allows `,+=` in user names).
fn dn_escape(value: &str) -> String {
    value
        .chars()
        .flat_map(|c| {
            let prefix =
                matches!(c, ',' | '+' | '=' | '"' | '\\' | '<' | '>' | ';').then_some('\\');
            prefix.into_iter().chain(std::iter::once(c))
        })
        .collect()
}

fn new_key() -> Result<RsaPrivateKey, IdentityError> {
    RsaPrivateKey::new(&mut OsRng, KEY_BITS).map_err(|e| pki_error("RSA key generation failed", e))
}

/// Builds and signs a certificate with a random positive 128-bit serial number; `extend`
/// adds the extensions the profile does not.
fn build(
    profile: Profile,
    subject: Name,
    public_key: &RsaPublicKey,
    validity: Duration,
    signer: &SigningKey<Sha256>,
    extend: impl FnOnce(
        &mut CertificateBuilder<'_, SigningKey<Sha256>>,
    ) -> Result<(), x509_cert::builder::Error>,
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
    let mut builder = CertificateBuilder::new(profile, serial, validity, subject, spki, signer)
        .map_err(|e| pki_error("cannot prepare a certificate", e))?;
    extend(&mut builder).map_err(|e| pki_error("cannot add an extension", e))?;
    builder
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

#[cfg(test)]
mod tls_tests {
    use super::*;

    #[test]
    fn component_certificates_name_their_principal_and_kind() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _) = CloudCa::open_or_create(dir.path()).unwrap();
        let (_, public) = new_tls_key().unwrap();
        let pem = ca
            .issue_tls_certificate(
                &public,
                "nc-node1",
                &[ComponentKind::NodeController],
                &["127.0.0.1".into(), "node1.example".into()],
            )
            .unwrap();
        let cert = Certificate::from_pem(&pem).unwrap();
        let der = x509_cert::der::Encode::to_der(&cert).unwrap();
        assert_eq!(certificate_principal(&der).as_deref(), Some("nc-node1"));
        let has = |needle: &[u8]| der.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"node.koala.internal") && has(b"node1.example"));
        assert!(has(&[127, 0, 0, 1]));
        assert!(ca.issue_tls_certificate("junk", "nc-x", &[], &[]).is_err());
    }
}

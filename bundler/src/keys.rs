//! Keys of a bundle: the AES key and IV, their RSA wrapping for the user and the cloud, and
//! reading the PEM certificates and private keys that euca2ools users already have.
//!
//! RustCrypto's `rsa` is used because `ring` cannot encrypt with RSA (key wrapping) nor sign
//! with SHA-1, both of which the EC2 bundle format requires.

use rand::RngCore;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::{Pkcs1v15Encrypt, RsaPrivateKey, RsaPublicKey};
use x509_cert::der::{Decode, DecodePem, Encode};
use x509_cert::Certificate;

use crate::error::{Error, Result};

pub use rsa::{RsaPrivateKey as PrivateKey, RsaPublicKey as PublicKey};

/// The AES-128 key and IV that encrypt one bundle.
///
/// Kept as raw bytes; the manifest carries them as 32-character lowercase hex text wrapped
/// with RSA, which is what [`BundleKey::key_hex`] and [`BundleKey::iv_hex`] produce.
#[derive(Clone, PartialEq, Eq)]
pub struct BundleKey {
    /// The AES-128 key.
    pub key: [u8; 16],
    /// The CBC initialisation vector.
    pub iv: [u8; 16],
}

impl std::fmt::Debug for BundleKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material by accident (logs, panics).
        f.write_str("BundleKey(..)")
    }
}

impl BundleKey {
    /// A fresh random key and IV from the OS generator, as euca2ools makes for every bundle.
    pub fn random() -> Self {
        let mut key = [0u8; 16];
        let mut iv = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut key);
        rand::rngs::OsRng.fill_bytes(&mut iv);
        BundleKey { key, iv }
    }

    /// A fixed key and IV from hex (`--enc-key`, `--enc-iv`), for reproducible bundles.
    pub fn from_hex(key: &str, iv: &str) -> Result<Self> {
        Ok(BundleKey {
            key: parse_hex16(key).ok_or(Error::BadHex("AES key"))?,
            iv: parse_hex16(iv).ok_or(Error::BadHex("AES IV"))?,
        })
    }

    /// The key as the 32-character lowercase hex text that the manifest wraps.
    pub fn key_hex(&self) -> String {
        hex::encode(self.key)
    }

    /// The IV as the 32-character lowercase hex text that the manifest wraps.
    pub fn iv_hex(&self) -> String {
        hex::encode(self.iv)
    }
}

/// Parses 32 hex characters (either case) into 16 bytes; anything else is `None`.
pub(crate) fn parse_hex16(text: &str) -> Option<[u8; 16]> {
    let text = text.trim();
    if text.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// Reads the RSA public key of an X.509 certificate (PEM, or DER), as `openssl rsautl
/// -certin` does for euca2ools: the user's cert (`-c`) and the cloud's (`--ec2cert`).
pub fn read_certificate(data: &[u8]) -> Result<RsaPublicKey> {
    let cert = if data.trim_ascii_start().starts_with(b"-----BEGIN") {
        Certificate::from_pem(data).map_err(|_| Error::Certificate)?
    } else {
        Certificate::from_der(data).map_err(|_| Error::Certificate)?
    };
    let spki = &cert.tbs_certificate.subject_public_key_info;
    if spki.algorithm.oid != rsa::pkcs1::ALGORITHM_OID {
        return Err(Error::NotRsa);
    }
    let der = spki.to_der().map_err(|_| Error::Certificate)?;
    RsaPublicKey::from_public_key_der(&der).map_err(|_| Error::NotRsa)
}

/// Reads an RSA private key in PEM, PKCS#8 (`BEGIN PRIVATE KEY`, what euca2ools' credential
/// zips hold) or PKCS#1 (`BEGIN RSA PRIVATE KEY`, what older tools wrote).
pub fn read_private_key(pem: &str) -> Result<RsaPrivateKey> {
    RsaPrivateKey::from_pkcs8_pem(pem)
        .or_else(|_| RsaPrivateKey::from_pkcs1_pem(pem))
        .map_err(|_| Error::PrivateKey)
}

/// Wraps a 32-character hex text (a key or IV) for one recipient: RSA PKCS#1 v1.5 type 2
/// encryption, lowercase hex, as `openssl rsautl -encrypt -pkcs` does. The padding is random,
/// so the result differs on every call.
pub fn wrap(recipient: &RsaPublicKey, hex_text: &str) -> Result<String> {
    let ct = recipient
        .encrypt(&mut rand::rngs::OsRng, Pkcs1v15Encrypt, hex_text.as_bytes())
        .map_err(Error::Rsa)?;
    Ok(hex::encode(ct))
}

/// Unwraps a key or IV wrapped by [`wrap`]: RSA-decrypts and checks that the plaintext is 32
/// hex characters (which is how a wrong private key shows, as in euca-unbundle).
///
/// Note: `rsa` 0.9's PKCS#1 v1.5 decryption is not constant-time (the "Marvin" timing attack,
/// RUSTSEC-2023-0071). Here it is used on manifests at rest, not as an online decryption
/// oracle; revisit if Walrus ever decrypts attacker-chosen ciphertexts on request at scale.
pub fn unwrap(key: &RsaPrivateKey, wrapped_hex: &str) -> Result<[u8; 16]> {
    let ct = hex::decode(wrapped_hex.trim()).map_err(|_| Error::WrongKey)?;
    let pt = key
        .decrypt(Pkcs1v15Encrypt, &ct)
        .map_err(|_| Error::WrongKey)?;
    let text = std::str::from_utf8(&pt).map_err(|_| Error::WrongKey)?;
    parse_hex16(text).ok_or(Error::WrongKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors/bundles/keys")
    }

    #[test]
    fn wrap_then_unwrap_with_golden_keys() {
        let cert =
            read_certificate(&std::fs::read(vectors().join("user-cert.pem")).unwrap()).unwrap();
        let pk = read_private_key(&std::fs::read_to_string(vectors().join("user-pk.pem")).unwrap())
            .unwrap();
        let k = BundleKey::from_hex(
            "0123456789abcdef0123456789abcdef",
            "fedcba9876543210fedcba9876543210",
        )
        .unwrap();
        let w = wrap(&cert, &k.key_hex()).unwrap();
        assert_eq!(w.len(), 512);
        assert_ne!(w, wrap(&cert, &k.key_hex()).unwrap(), "padding is random");
        assert_eq!(unwrap(&pk, &w).unwrap(), k.key);
        let other =
            read_private_key(&std::fs::read_to_string(vectors().join("cloud-pk.pem")).unwrap())
                .unwrap();
        assert!(matches!(unwrap(&other, &w), Err(Error::WrongKey)));
    }

    #[test]
    fn bad_hex_is_refused() {
        assert!(BundleKey::from_hex("0123", "fedcba9876543210fedcba9876543210").is_err());
        assert!(BundleKey::from_hex(
            "0123456789abcdef0123456789abcdeg",
            "fedcba9876543210fedcba9876543210"
        )
        .is_err());
        assert_eq!(format!("{:?}", BundleKey::random()), "BundleKey(..)");
    }

    #[test]
    fn garbage_certificate_is_refused() {
        assert!(matches!(
            read_certificate(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            Err(Error::Certificate)
        ));
        assert!(matches!(read_private_key("nope"), Err(Error::PrivateKey)));
    }
}

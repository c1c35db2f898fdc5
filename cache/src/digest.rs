//! The key of the cache: the SHA-256 of an image's plain bytes.

use std::fmt;
use std::str::FromStr;

use crate::CacheError;

/// The SHA-256 of a plain image, the only name the cache knows images by.
///
/// A dedicated type rather than a `String` so that a digest is parsed (and lower-cased) once
/// at the edge, and every file name built from it inside the cache is known to be 64 hex
/// digits: no path traversal, no two spellings of one image.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest([u8; 32]);

impl Sha256Digest {
    /// Wraps raw digest bytes, as a hasher returns them.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Computes the digest of bytes in memory: for tests and small images, since real images
    /// are hashed while they stream into the cache.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest as _;
        Self(sha2::Sha256::digest(bytes).into())
    }

    /// The raw digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The digest as 64 lower-case hex digits: the file name of the image in the cache.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl FromStr for Sha256Digest {
    type Err = CacheError;

    /// Parses 64 hex digits, in either case (the CLC records the digest Walrus reports).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        if s.len() != 64 || hex::decode_to_slice(s, &mut bytes).is_err() {
            return Err(CacheError::InvalidDigest(s.to_owned()));
        }
        Ok(Self(bytes))
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256Digest({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_either_case_and_prints_lower_case() {
        let empty = "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855";
        let d: Sha256Digest = empty.parse().unwrap();
        assert_eq!(d, Sha256Digest::of(b""));
        assert_eq!(d.to_string(), empty.to_lowercase());
    }

    #[test]
    fn rejects_what_is_not_64_hex_digits() {
        for bad in [
            "",
            "abc",
            &"g".repeat(64),
            &"0".repeat(63),
            &"0".repeat(65),
            "../../etc/passwd",
        ] {
            assert!(
                matches!(bad.parse::<Sha256Digest>(), Err(CacheError::InvalidDigest(s)) if s == bad),
                "{bad:?} was accepted"
            );
        }
    }
}

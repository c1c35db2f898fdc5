//! Validated names: a bucket name and an object key are checked once, at the edge, and carried
//! as their own types so that nothing downstream handles an unchecked string.

use std::fmt;

/// A bucket name that follows S3's rules (3–63 characters of lowercase letters, digits, dots
/// and dashes, starting and ending with a letter or digit, not an IP address) and is not
/// `services`, which Eucalyptus reserves for its service mount points.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BucketName(String);

impl BucketName {
    /// Checks `name` against S3's bucket naming rules; `None` when it breaks one.
    pub fn parse(name: &str) -> Option<BucketName> {
        let bytes = name.as_bytes();
        if !(3..=63).contains(&bytes.len()) || name == "services" {
            return None;
        }
        let edge_ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        if !edge_ok(bytes[0]) || !edge_ok(bytes[bytes.len() - 1]) {
            return None;
        }
        if !bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        {
            return None;
        }
        if name.contains("..") || name.contains(".-") || name.contains("-.") {
            return None;
        }
        if name.parse::<std::net::Ipv4Addr>().is_ok() {
            return None;
        }
        Some(BucketName(name.to_owned()))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BucketName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An object key: any UTF-8 string of 1 to 1024 bytes, stored verbatim. Keys are never used
/// as file paths (`../x`, `a//b` and control characters are all valid keys).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey(String);

/// The longest key S3 accepts, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

impl ObjectKey {
    /// Accepts `key` when it is non-empty and at most [`MAX_KEY_LEN`] bytes.
    pub fn parse(key: &str) -> Option<ObjectKey> {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return None;
        }
        Some(ObjectKey(key.to_owned()))
    }

    /// The key as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names() {
        for ok in ["abc", "my-bucket.1", "a1b", "flowbucket"] {
            assert!(BucketName::parse(ok).is_some(), "{ok}");
        }
        for bad in [
            "ab",
            "services",
            "Abc",
            "-abc",
            "abc-",
            "a..b",
            "192.168.1.1",
            "a_b",
            &"a".repeat(64),
        ] {
            assert!(BucketName::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn object_keys() {
        assert!(ObjectKey::parse("../x").is_some());
        assert!(ObjectKey::parse("").is_none());
        assert!(ObjectKey::parse(&"k".repeat(1024)).is_some());
        assert!(ObjectKey::parse(&"k".repeat(1025)).is_none());
    }
}

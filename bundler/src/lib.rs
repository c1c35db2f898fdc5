//! The EC2 AMI bundle format, as euca2ools 3.4 and ec2-ami-tools write it: the one way images
//! enter a Eucalyptus-style cloud. See `../shared/design/bundle-format.md`.
//!
//! - [`Manifest`]: the manifest model, tolerant parse, exact render, RSA-SHA1 sign/verify
//!   (over the raw bytes as received), key unwrapping.
//! - [`keys`]: the AES key and IV, their RSA wrapping, reading PEM certs and private keys.
//! - [`bundle()`]: the streaming bundle pipeline (tar → SHA-1 → parallel gzip → AES → parts).
//! - [`Unbundler`]: the streaming reverse, fed parts as they arrive, into any writer.
//! - [`files`]: the same on a directory, with atomic publication, for the commands.
//!
//! Crypto is RustCrypto (`rsa`, `aes`, `cbc`, `sha1`): `ring` has no RSA encryption, no
//! SHA-1 signatures and no AES-CBC, all of which the format needs.

pub mod bundle;
pub mod error;
pub mod files;
pub mod gzip;
pub mod keys;
pub mod manifest;
pub mod progress;
pub mod tar;
pub mod unbundle;

pub use bundle::{bundle, part_name, BundleOptions, BundleOutcome, MemoryParts, PartSink};
pub use error::{Error, Result};
pub use keys::{read_certificate, read_private_key, BundleKey, PrivateKey, PublicKey};
pub use manifest::{ImageType, Manifest, PartInfo};
pub use unbundle::{UnbundleSummary, Unbundler};

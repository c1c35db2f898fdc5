//! The one error type of the bundler: every way a bundle can be refused, named so that the
//! operator (or the S3 client, through Walrus) learns which check failed.

use std::io;

/// Why bundling, verifying or unbundling failed.
///
/// Each variant names the check that failed, so a command can print it as is and Walrus can
/// map it to an `InvalidManifest`-style answer without parsing strings.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The manifest is not well-formed XML.
    #[error("the manifest is not well-formed XML")]
    ManifestXml(#[source] xml::Error),
    /// The manifest lacks an element that every reader needs.
    #[error("the manifest has no {0} element")]
    ManifestMissing(&'static str),
    /// A manifest element holds a value that cannot be right.
    #[error("the manifest's {element} element has an invalid value {value:?}")]
    ManifestInvalid {
        /// Path of the element, e.g. `image/size`.
        element: &'static str,
        /// The offending text (possibly shortened).
        value: String,
    },
    /// A certificate was required to check the signature but the manifest is `UNSIGNED`.
    #[error("the manifest is not signed")]
    Unsigned,
    /// The signature does not match the signed bytes under the given certificate.
    #[error("the manifest's signature does not verify with the given certificate")]
    BadSignature,
    /// A certificate could not be decoded.
    #[error("the certificate is not a PEM or DER X.509 certificate")]
    Certificate,
    /// A certificate or key holds something else than an RSA key.
    #[error("the certificate's public key is not an RSA key")]
    NotRsa,
    /// A private key could not be decoded.
    #[error("the private key is not a PEM RSA key (PKCS#8 or PKCS#1)")]
    PrivateKey,
    /// RSA signing or encryption failed (for example a key too small for the data).
    #[error("an RSA operation failed")]
    Rsa(#[source] rsa::Error),
    /// Neither wrapped key of the manifest opens with the given private key.
    #[error("the private key does not unwrap the bundle's key and IV (wrong private key?)")]
    WrongKey,
    /// An AES key or IV given as hex is not 32 hexadecimal characters.
    #[error("the {0} must be 32 hexadecimal characters")]
    BadHex(&'static str),
    /// An option makes no sense (for example a zero part size).
    #[error("invalid bundle option: {0}")]
    InvalidOption(String),
    /// The input image did not have the size announced before bundling.
    #[error("the image changed while it was read: {actual} bytes instead of {expected}")]
    InputSize {
        /// Size announced (from the file's metadata).
        expected: u64,
        /// Bytes actually read.
        actual: u64,
    },
    /// A part arrived out of order or an unknown index was given.
    #[error("part {got} arrived where part {expected} was expected")]
    PartOrder {
        /// The index the unbundler waits for.
        expected: usize,
        /// The index it was given.
        got: usize,
    },
    /// Unbundling ended before every part listed in the manifest arrived.
    #[error("part {0} is missing")]
    MissingPart(usize),
    /// A part's SHA-1 differs from the manifest's.
    #[error("part {index} ({name}) has SHA-1 {actual}, the manifest says {expected}")]
    PartDigest {
        /// Index of the part.
        index: usize,
        /// File name of the part in the manifest.
        name: String,
        /// Digest in the manifest.
        expected: String,
        /// Digest of the bytes received.
        actual: String,
    },
    /// The parts' total length differs from `bundled_size`.
    #[error("the parts hold {actual} bytes, the manifest's bundled_size says {expected}")]
    BundledSize {
        /// `bundled_size` of the manifest.
        expected: u64,
        /// Bytes received.
        actual: u64,
    },
    /// The ciphertext is not a whole number of AES blocks, or its padding is wrong.
    #[error("the encrypted data does not decrypt to valid PKCS#7 padding")]
    Decrypt,
    /// The decrypted data is not a valid gzip stream.
    #[error("the decrypted data is not a valid gzip stream")]
    Gzip(#[source] io::Error),
    /// The tar stream is malformed.
    #[error("the tar stream is malformed: {0}")]
    Tar(&'static str),
    /// The tar stream holds more than one member.
    #[error("the tar stream holds more than one member")]
    MultipleMembers,
    /// The tar member's size differs from the manifest's `image/size`.
    #[error("the tar member is {actual} bytes, the manifest's image size is {expected}")]
    ImageSize {
        /// `image/size` of the manifest.
        expected: u64,
        /// Size in the tar header.
        actual: u64,
    },
    /// The decompressed data runs past the end of the tar stream (a decompression bomb).
    #[error("the decompressed data runs past the end of the tar stream")]
    TrailingData,
    /// The tar stream's SHA-1 differs from the manifest's `image/digest`.
    #[error("the tar stream has SHA-1 {actual}, the manifest says {expected}")]
    ImageDigest {
        /// `image/digest` of the manifest.
        expected: String,
        /// Digest of the decompressed stream.
        actual: String,
    },
    /// Reading or writing a file or a sink failed.
    #[error("{context}")]
    Io {
        /// What was being done, e.g. `writing /tmp/x.part.00`.
        context: String,
        /// The underlying failure.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// Wraps an I/O error with what was being done, for a message that names the file.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result type of the bundler.
pub type Result<T> = std::result::Result<T, Error>;

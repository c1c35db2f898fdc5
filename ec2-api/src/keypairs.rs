//! Key pairs: CreateKeyPair (an RSA key made here, whose private half is handed out once
//! and never kept), ImportKeyPair (an OpenSSH `ssh-rsa` or `ssh-ed25519` public key),
//! DeleteKeyPair and DescribeKeyPairs.
//!
//! Names are unique per account and each account sees only its own key pairs. What is kept
//! is the public key as an OpenSSH `authorized_keys` line, which instances will be given
//! through the metadata service, and the fingerprint AWS would show for the key.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use md5::Md5;
use rand::rngs::OsRng;
use rsa::pkcs1::{EncodeRsaPrivateKey, LineEnding};
use rsa::pkcs8::{DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use rsa::{BigUint, RsaPrivateKey, RsaPublicKey};
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};
use sha2::Sha256;

use crate::ec2::{apply_filters, new_id, timestamp_now, Call, Cloud};
use crate::query::{QueryRequest, Xml};
use crate::state::{Batch, Record};
use crate::{QueryError, Resource};

/// The size of the RSA keys CreateKeyPair makes, as AWS makes them.
const CREATED_KEY_BITS: usize = 2048;
/// The smallest RSA modulus ImportKeyPair accepts (AWS: 1024).
const MIN_IMPORT_BITS: usize = 1024;
/// The largest RSA modulus ImportKeyPair accepts: OpenSSH's own limit.
const MAX_IMPORT_BITS: usize = 16384;
/// The longest key pair name (AWS: 255 ASCII characters).
const MAX_NAME_LEN: usize = 255;

/// The algorithms of the keys kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum KeyType {
    /// `ssh-rsa`.
    Rsa,
    /// `ssh-ed25519`.
    Ed25519,
}

impl KeyType {
    /// EC2's `keyType`.
    fn as_str(self) -> &'static str {
        match self {
            KeyType::Rsa => "rsa",
            KeyType::Ed25519 => "ed25519",
        }
    }
}

/// A key pair of an account: only its public half.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyPairRecord {
    /// `key-` id (newer clients address key pairs by it).
    id: String,
    /// Owning account id.
    owner: String,
    /// The name, unique in the account.
    name: String,
    /// Algorithm of the key.
    key_type: KeyType,
    /// The fingerprint as AWS computes it (see [`created_fingerprint`],
    /// [`imported_fingerprint`]).
    fingerprint: String,
    /// The public key as an OpenSSH line, `ssh-rsa AAAA... NAME`.
    public_key: String,
    /// When it was created or imported (EC2 timestamp).
    created: String,
}

impl records::Versioned for KeyPairRecord {
    const ENVELOPE: records::Envelope = crate::state::ENVELOPE;
    const VERSION: u32 = 1;
}

impl Record for KeyPairRecord {
    const TABLE: &'static str = "keypair/";
}

/// The store key of a key pair: account ids have a fixed length, so `ACCOUNT/` is a prefix
/// of that account's key pairs only, whatever the names hold.
fn store_key(account: &str, name: &str) -> String {
    format!("{account}/{name}")
}

/// Adds to `batch` the deletion of every key pair of `account` (DeleteAccount).
pub(crate) fn forget_account(
    cloud: &Cloud,
    batch: &mut Batch,
    account: &str,
) -> Result<(), QueryError> {
    for (key, _) in cloud.state.scan::<KeyPairRecord>(&store_key(account, ""))? {
        batch.delete::<KeyPairRecord>(&key);
    }
    Ok(())
}

/// The OpenSSH public key of the caller's key pair `name`, for an instance's config drive.
pub(crate) fn public_key(call: &Call<'_>, name: &str) -> Result<String, QueryError> {
    call.cloud
        .state
        .get::<KeyPairRecord>(&store_key(call.account(), name))?
        .map(|k| k.public_key)
        .ok_or_else(|| QueryError::NotFound(Resource::KeyPair, name.to_owned()))
}

/// `CreateKeyPair`: a new RSA-2048 key; the response carries its private half as a PKCS#1
/// PEM, which the cloud does not keep.
pub fn create(call: &Call<'_>) -> Result<String, QueryError> {
    let params = call.params;
    let name = key_name(params)?;
    refuse_tags(params)?;
    match params.get("KeyType") {
        None | Some("rsa") => {}
        Some(other) => {
            return Err(QueryError::Validation(format!(
                "Value ({other}) for parameter KeyType is invalid. Koala creates rsa key pairs; import an ed25519 key with ImportKeyPair."
            )))
        }
    }
    match params.get("KeyFormat") {
        None | Some("pem") => {}
        Some(other) => {
            return Err(QueryError::Validation(format!(
                "Value ({other}) for parameter KeyFormat is invalid. Valid values: pem."
            )))
        }
    }
    let account = call.account();
    // Key generation takes a while: refuse a taken name before it, and again after.
    if call
        .cloud
        .state
        .get::<KeyPairRecord>(&store_key(account, name))?
        .is_some()
    {
        return Err(QueryError::Duplicate(Resource::KeyPair, name.to_owned()));
    }
    let private = RsaPrivateKey::new(&mut OsRng, CREATED_KEY_BITS)
        .map_err(|e| QueryError::failed("RSA key generation failed", e))?;
    let fingerprint = created_fingerprint(&private)?;
    let material = private
        .to_pkcs1_pem(LineEnding::LF)
        .map_err(|e| QueryError::failed("cannot encode a private key", e))?;
    let public = PublicKey::Rsa(private.to_public_key());
    let record = store(call, name, &public, fingerprint)?;
    tracing::info!(account, key_pair = name, "created a key pair");
    let mut x = Xml::new();
    x.elem("keyName", &record.name)
        .elem("keyFingerprint", &record.fingerprint)
        .elem("keyMaterial", &material)
        .elem("keyPairId", &record.id);
    Ok(x.finish())
}

/// `ImportKeyPair`: an OpenSSH public key (base64-encoded in `PublicKeyMaterial`, as the
/// API defines it, or sent as plain text, as some clients do).
pub fn import(call: &Call<'_>) -> Result<String, QueryError> {
    let params = call.params;
    let name = key_name(params)?;
    refuse_tags(params)?;
    let material = params.required("PublicKeyMaterial")?;
    let public = parse_public_key_material(material)?;
    let fingerprint = imported_fingerprint(&public)?;
    let record = store(call, name, &public, fingerprint)?;
    tracing::info!(
        account = call.account(),
        key_pair = name,
        "imported a key pair"
    );
    let mut x = Xml::new();
    x.elem("keyName", &record.name)
        .elem("keyFingerprint", &record.fingerprint)
        .elem("keyPairId", &record.id);
    Ok(x.finish())
}

/// Records a key pair under a name that must still be free.
fn store(
    call: &Call<'_>,
    name: &str,
    public: &PublicKey,
    fingerprint: String,
) -> Result<KeyPairRecord, QueryError> {
    let account = call.account();
    let key = store_key(account, name);
    let _guard = call.cloud.state.exclusive();
    let existing = call
        .cloud
        .state
        .scan::<KeyPairRecord>(&store_key(account, ""))?;
    if existing.iter().any(|(k, _)| *k == key) {
        return Err(QueryError::Duplicate(Resource::KeyPair, name.to_owned()));
    }
    // Ids need only be unique within the account: that is where they are looked up.
    let id = loop {
        let id = new_id("key");
        if !existing.iter().any(|(_, r)| r.id == id) {
            break id;
        }
    };
    let record = KeyPairRecord {
        id,
        owner: account.to_owned(),
        name: name.to_owned(),
        key_type: public.key_type(),
        fingerprint,
        public_key: public.openssh_line(name),
        created: timestamp_now(),
    };
    call.cloud.state.put(&key, &record)?;
    Ok(record)
}

/// `DeleteKeyPair`, by `KeyName` or `KeyPairId`. Like AWS, deleting a key pair that does not
/// exist succeeds: the caller's wish (no such key pair) holds either way.
pub fn delete(call: &Call<'_>) -> Result<String, QueryError> {
    let params = call.params;
    let account = call.account();
    let _guard = call.cloud.state.exclusive();
    let key = match (
        params.get("KeyName").filter(|n| !n.is_empty()),
        params.get("KeyPairId"),
    ) {
        (Some(name), _) => Some(store_key(account, name)),
        (None, Some(id)) if !id.is_empty() => call
            .cloud
            .state
            .scan::<KeyPairRecord>(&store_key(account, ""))?
            .into_iter()
            .find(|(_, r)| r.id == id)
            .map(|(k, _)| k),
        _ => return Err(QueryError::MissingParameter("KeyName".into())),
    };
    if let Some(key) = key {
        if call.cloud.state.get::<KeyPairRecord>(&key)?.is_some() {
            let mut batch = Batch::new();
            batch.delete::<KeyPairRecord>(&key);
            call.cloud.state.commit(batch)?;
            tracing::info!(account, key = %key, "deleted a key pair");
        }
    }
    Ok("<return>true</return>".to_owned())
}

/// `DescribeKeyPairs`, with `KeyName.N`, `KeyPairId.N`, filters and `IncludePublicKey`.
pub fn describe(call: &Call<'_>) -> Result<String, QueryError> {
    let params = call.params;
    let names = params.list("KeyName");
    let ids = params.list("KeyPairId");
    let filters = params.filters()?;
    let include_public_key = params.boolean("IncludePublicKey")?.unwrap_or(false);

    let mut keys: Vec<KeyPairRecord> = call
        .cloud
        .state
        .scan::<KeyPairRecord>(&store_key(call.account(), ""))?
        .into_iter()
        .map(|(_, r)| r)
        .collect();
    if let Some(missing) = names.iter().find(|n| !keys.iter().any(|k| k.name == **n)) {
        return Err(QueryError::NotFound(
            Resource::KeyPair,
            (*missing).to_owned(),
        ));
    }
    if let Some(missing) = ids.iter().find(|i| !keys.iter().any(|k| k.id == **i)) {
        return Err(QueryError::NotFound(
            Resource::KeyPair,
            (*missing).to_owned(),
        ));
    }
    if !names.is_empty() || !ids.is_empty() {
        keys.retain(|k| names.contains(&k.name.as_str()) || ids.contains(&k.id.as_str()));
    }
    // Key pairs carry no tags in Koala: a tag filter matches none.
    let keys = apply_filters(&filters, keys, key_field, |_| Vec::new())?;

    let mut x = Xml::new();
    x.list("keySet", &keys, |x, k| {
        x.elem("keyPairId", &k.id)
            .elem("keyName", &k.name)
            .elem("keyFingerprint", &k.fingerprint)
            .elem("keyType", k.key_type.as_str());
        if include_public_key {
            x.elem("publicKey", &k.public_key);
        }
        x.elem("createTime", &k.created);
    });
    Ok(x.finish())
}

/// A key pair's values for a DescribeKeyPairs filter name.
fn key_field(key: &KeyPairRecord, name: &str) -> Option<Vec<String>> {
    match name {
        "key-name" => Some(vec![key.name.clone()]),
        "fingerprint" => Some(vec![key.fingerprint.clone()]),
        "key-pair-id" => Some(vec![key.id.clone()]),
        "key-type" => Some(vec![key.key_type.as_str().to_owned()]),
        _ => None,
    }
}

/// The `KeyName` of a create or import: present, at most 255 printable ASCII characters
/// (it ends up as the comment of an `authorized_keys` line, where a line break would forge
/// a second key).
fn key_name(params: &QueryRequest) -> Result<&str, QueryError> {
    let name = params.required("KeyName")?;
    if name.len() > MAX_NAME_LEN || !name.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(QueryError::Validation(format!(
            "Value ({name}) for parameter KeyName is invalid. Key pair names are up to {MAX_NAME_LEN} printable ASCII characters."
        )));
    }
    Ok(name)
}

/// Tags on creation (`TagSpecification.N`) are refused rather than dropped: Koala's key
/// pairs cannot carry tags.
fn refuse_tags(params: &QueryRequest) -> Result<(), QueryError> {
    if params.indexes("TagSpecification").is_empty() {
        Ok(())
    } else {
        Err(QueryError::Validation(
            "Key pairs cannot be tagged in Koala: leave out TagSpecification.".into(),
        ))
    }
}

/// A public key of a kind Koala keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PublicKey {
    /// An RSA key.
    Rsa(RsaPublicKey),
    /// The 32 bytes of an Ed25519 key.
    Ed25519([u8; 32]),
}

impl PublicKey {
    fn key_type(&self) -> KeyType {
        match self {
            PublicKey::Rsa(_) => KeyType::Rsa,
            PublicKey::Ed25519(_) => KeyType::Ed25519,
        }
    }

    /// The SSH wire encoding (RFC 4253 section 6.6, RFC 8709).
    fn ssh_blob(&self) -> Vec<u8> {
        let mut blob = Vec::new();
        match self {
            PublicKey::Rsa(key) => {
                put_string(&mut blob, b"ssh-rsa");
                put_mpint(&mut blob, key.e());
                put_mpint(&mut blob, key.n());
            }
            PublicKey::Ed25519(key) => {
                put_string(&mut blob, b"ssh-ed25519");
                put_string(&mut blob, key);
            }
        }
        blob
    }

    /// The `authorized_keys` line: `ssh-rsa AAAA... comment`.
    fn openssh_line(&self, comment: &str) -> String {
        let kind = match self {
            PublicKey::Rsa(_) => "ssh-rsa",
            PublicKey::Ed25519(_) => "ssh-ed25519",
        };
        format!("{kind} {} {comment}", STANDARD.encode(self.ssh_blob()))
    }
}

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    // An SSH string's length is 32 bits; the keys written here are a few hundred bytes.
    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// An SSH `mpint` of a non-negative number: big-endian, a leading zero byte when the top bit
/// is set (so that it does not read as negative), nothing at all for zero.
fn put_mpint(out: &mut Vec<u8>, n: &BigUint) {
    let mut bytes = n.to_bytes_be();
    if bytes == [0] {
        bytes.clear();
    } else if bytes[0] & 0x80 != 0 {
        bytes.insert(0, 0);
    }
    put_string(out, &bytes);
}

/// The fingerprint AWS shows for a key it created: the SHA-1 of the private key's PKCS#8
/// DER encoding, as colon-separated hex pairs.
fn created_fingerprint(key: &RsaPrivateKey) -> Result<String, QueryError> {
    let der = key
        .to_pkcs8_der()
        .map_err(|e| QueryError::failed("cannot encode a private key", e))?;
    Ok(colon_hex(&Sha1::digest(der.as_bytes())))
}

/// The fingerprint AWS shows for an imported key: for RSA the MD5 of the public key's DER
/// SubjectPublicKeyInfo as colon-separated hex pairs; for Ed25519 the base64 SHA-256 of the
/// SSH wire encoding (what `ssh-keygen -l` prints after `SHA256:`, with its padding).
fn imported_fingerprint(key: &PublicKey) -> Result<String, QueryError> {
    match key {
        PublicKey::Rsa(rsa) => {
            let der = rsa
                .to_public_key_der()
                .map_err(|e| QueryError::failed("cannot encode a public key", e))?;
            Ok(colon_hex(&Md5::digest(der.as_bytes())))
        }
        PublicKey::Ed25519(_) => Ok(STANDARD.encode(Sha256::digest(key.ssh_blob()))),
    }
}

fn colon_hex(digest: &[u8]) -> String {
    digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Why a public key could not be imported, as the client is told.
fn bad_key(reason: impl std::fmt::Display) -> QueryError {
    QueryError::InvalidKeyFormat(format!(
        "Key is not in valid OpenSSH public key format: {reason}."
    ))
}

/// The key in `PublicKeyMaterial`. The API defines it as base64 of the key file (botocore
/// and euca2ools send that); plain text is accepted too, as some clients send it. The file
/// may be an OpenSSH public key line, an RFC 4716 `---- BEGIN SSH2 PUBLIC KEY ----` block,
/// or (base64 of) a DER SubjectPublicKeyInfo of an RSA key: the formats AWS imports.
fn parse_public_key_material(material: &str) -> Result<PublicKey, QueryError> {
    let trimmed = material.trim();
    if looks_like_text_key(trimmed) {
        return parse_key_file(trimmed);
    }
    let decoded = decode_base64(trimmed)
        .ok_or_else(|| bad_key("PublicKeyMaterial is neither base64 nor a public key"))?;
    if decoded.first() == Some(&0x30) {
        return parse_der(&decoded);
    }
    let text = std::str::from_utf8(&decoded)
        .map_err(|_| bad_key("the decoded PublicKeyMaterial is not text"))?
        .trim();
    if looks_like_text_key(text) {
        return parse_key_file(text);
    }
    // A file holding base64 of DER arrives base64-encoded once more.
    match decode_base64(text) {
        Some(der) if der.first() == Some(&0x30) => parse_der(&der),
        _ => Err(bad_key("expected a line like 'ssh-rsa AAAA... comment'")),
    }
}

/// Whether a text starts like a public key file rather than like base64 of one (`ssh-` and
/// `ecdsa-` are not what base64 of any key file starts with: `c3No`, `ZWNk`, `LS0t`).
fn looks_like_text_key(text: &str) -> bool {
    ["ssh-", "ecdsa-", "sk-", "---- BEGIN"]
        .iter()
        .any(|p| text.starts_with(p))
}

/// Standard base64, line breaks and spaces ignored.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD.decode(compact).ok().filter(|b| !b.is_empty())
}

/// An OpenSSH public key line or an RFC 4716 block.
fn parse_key_file(text: &str) -> Result<PublicKey, QueryError> {
    if text.starts_with("---- BEGIN SSH2 PUBLIC KEY ----") {
        return parse_rfc4716(text);
    }
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let line = lines.next().unwrap_or("");
    if lines.next().is_some() {
        return Err(bad_key("it holds more than one line"));
    }
    let mut fields = line.split_ascii_whitespace();
    let kind = fields.next().unwrap_or("");
    let blob = fields
        .next()
        .and_then(decode_base64)
        .ok_or_else(|| bad_key("the key data after the key type is not base64"))?;
    let key = parse_ssh_blob(&blob)?;
    let declared = match key {
        PublicKey::Rsa(_) => "ssh-rsa",
        PublicKey::Ed25519(_) => "ssh-ed25519",
    };
    if kind != declared {
        return Err(bad_key(format!(
            "the line says {kind} but the key is {declared}"
        )));
    }
    Ok(key)
}

/// RFC 4716: header lines (`Tag: value`, continued by a trailing `\`) then the base64 key.
fn parse_rfc4716(text: &str) -> Result<PublicKey, QueryError> {
    let mut body = String::new();
    let mut ended = false;
    let mut continued = false;
    for line in text.lines().skip(1).map(str::trim) {
        if line.starts_with("---- END SSH2 PUBLIC KEY ----") {
            ended = true;
            break;
        }
        if continued || line.contains(':') {
            continued = line.ends_with('\\');
            continue;
        }
        body.push_str(line);
    }
    if !ended {
        return Err(bad_key("the SSH2 PUBLIC KEY block has no END line"));
    }
    let blob = decode_base64(&body).ok_or_else(|| bad_key("the SSH2 key data is not base64"))?;
    parse_ssh_blob(&blob)
}

/// A DER SubjectPublicKeyInfo, which must hold an RSA key.
fn parse_der(der: &[u8]) -> Result<PublicKey, QueryError> {
    let key = RsaPublicKey::from_public_key_der(der)
        .map_err(|_| bad_key("the DER data is not an RSA SubjectPublicKeyInfo"))?;
    check_rsa_size(&key)?;
    Ok(PublicKey::Rsa(key))
}

/// The SSH wire encoding of a public key: `string "ssh-rsa", mpint e, mpint n` or
/// `string "ssh-ed25519", string key` (RFC 4253 section 6.6, RFC 8709), nothing after.
fn parse_ssh_blob(blob: &[u8]) -> Result<PublicKey, QueryError> {
    let mut reader = SshReader { rest: blob };
    let kind = reader.string()?;
    let key = match kind {
        b"ssh-rsa" => {
            let e = reader.mpint()?;
            let n = reader.mpint()?;
            let key = RsaPublicKey::new_with_max_size(n, e, MAX_IMPORT_BITS)
                .map_err(|e| bad_key(format!("the RSA key is not valid ({e})")))?;
            check_rsa_size(&key)?;
            PublicKey::Rsa(key)
        }
        b"ssh-ed25519" => {
            let bytes: [u8; 32] = reader
                .string()?
                .try_into()
                .map_err(|_| bad_key("an Ed25519 key is 32 bytes"))?;
            PublicKey::Ed25519(bytes)
        }
        other => {
            return Err(QueryError::InvalidKeyFormat(format!(
                "Key type {} is not supported: import an ssh-rsa or ssh-ed25519 key.",
                String::from_utf8_lossy(other)
            )))
        }
    };
    if !reader.rest.is_empty() {
        return Err(bad_key("bytes follow the key"));
    }
    Ok(key)
}

fn check_rsa_size(key: &RsaPublicKey) -> Result<(), QueryError> {
    let bits = key.n().bits();
    if bits < MIN_IMPORT_BITS {
        return Err(QueryError::InvalidKeyFormat(format!(
            "The RSA key has {bits} bits; keys of at least {MIN_IMPORT_BITS} bits are accepted."
        )));
    }
    Ok(())
}

/// Reads the SSH wire format's strings and mpints.
struct SshReader<'a> {
    rest: &'a [u8],
}

impl<'a> SshReader<'a> {
    fn string(&mut self) -> Result<&'a [u8], QueryError> {
        let Some((len, rest)) = self.rest.split_first_chunk::<4>() else {
            return Err(bad_key("the key data is truncated"));
        };
        let len = usize::try_from(u32::from_be_bytes(*len))
            .map_err(|_| bad_key("the key data is truncated"))?;
        if rest.len() < len {
            return Err(bad_key("the key data is truncated"));
        }
        let (value, rest) = rest.split_at(len);
        self.rest = rest;
        Ok(value)
    }

    /// A positive mpint (the only kind a public key holds).
    fn mpint(&mut self) -> Result<BigUint, QueryError> {
        let bytes = self.string()?;
        match bytes.first() {
            None => Err(bad_key("an RSA parameter is zero")),
            Some(b) if b & 0x80 != 0 => Err(bad_key("an RSA parameter is negative")),
            Some(_) => Ok(BigUint::from_bytes_be(bytes)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1::DecodeRsaPrivateKey;

    /// A 1024-bit test key made with `openssl genrsa -traditional 1024`.
    const TEST_PRIVATE_KEY: &str = "-----BEGIN RSA PRIVATE KEY-----
MIICXAIBAAKBgQDZAxom/fvzy1Cd4KiwiP3dOZ/AmDHITmkcP7zTqcpZ4udlsBTM
BQ7mXIOdEiqgnAJQO7BH/Lwi/1fg8gptI0AgK+S1zI9O2P1AC9dGuAlmHx64ooEV
Kc1mOxEUBif6H6zFgkmPpNbv9wPNk45IfscIEwei9kCCzakbs62fVRy60QIDAQAB
AoGAJ1JTk8sjsxodAm5pwosgDMzbMIejRZtHmnHGIkg6vSzLJvbP3ePwvjb3NifL
h4ydMrKOD40w/dpsrvrMftgLTzOF6FSmu2qChRuvkrLEKCrrEIZNRF5yiYE8ZNZ8
whB/OnnXVwToV8BjF3uFAndcXntmzd7gZ11pjWHr7f2m3p0CQQD2CZS884y56cF4
8vCPUkVtyxXjdgJl4LAZmedV3DVDbZ2A2pA4fhTvk9+JgzbM1fkRt56/ojNKkNY3
rUuJBaMrAkEA4cylOGqKR/6R6CODtByfqsSh9lf/vGGkes26WR/jA6t2tkPijUed
2oOSZ64cnfCAYg7n3yFrpivZtMyytEAL8wJAMzT7R/hIqckFA29Msgele5xxCc5d
4WZKQInPpAcY7te5mD/lFFzpbpOQSsaMeUVveUiGOcxAcJyEeUIQHoyV0QJBALC2
kk+WweYaS2Jb+QUKqcLh5MeAkzqBSFJ7k22Q0P/cPynh8voSpG2RLxFJaEgLIs6b
T8iGxVLlWppu4STEQxUCQFNa0RvwETnFyNI7ZKC8dGt4R1UJ1JzU9dnk16eR3Pp6
Ab10s7DWs4IADtKxGlbcFYUr0BrC3CN4GHa29ubGOic=
-----END RSA PRIVATE KEY-----
";
    /// `openssl pkcs8 -in key.pem -inform PEM -outform DER -topk8 -nocrypt | openssl sha1 -c`
    /// (the command AWS documents for checking a created key's fingerprint).
    const TEST_CREATED_FINGERPRINT: &str =
        "88:ba:83:3c:c9:9d:aa:0c:c5:5f:cb:a9:4c:88:8e:86:14:38:0d:0d";
    /// `ssh-keygen -y -f key.pem`.
    const TEST_PUBLIC_BLOB: &str = "AAAAB3NzaC1yc2EAAAADAQABAAAAgQDZAxom/fvzy1Cd4KiwiP3dOZ/AmDHITmkcP7zTqcpZ4udlsBTMBQ7mXIOdEiqgnAJQO7BH/Lwi/1fg8gptI0AgK+S1zI9O2P1AC9dGuAlmHx64ooEVKc1mOxEUBif6H6zFgkmPpNbv9wPNk45IfscIEwei9kCCzakbs62fVRy60Q==";

    /// `ssh-keygen -t rsa -b 1024 -C test@koala`.
    const RSA_PUB: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQC1W0LVSyRqguu3Yli1HQ+ruoJgIDBMhOsrh0e3szANQiJnwPVrwcP6rz3aICsprNhhK5OLMTY77oXQpg0F6KH2HRDdp2DF7asq4yq9mWAlTiDXdvfBtz6iq1ph7XQG7oMhFz0IRW54NUCtKJNnOFAxR00XWsPQvtWrX7mLJqWPcQ== test@koala";
    /// `ssh-keygen -e -m PKCS8 -f rsa.pub | openssl pkey -pubin -outform DER | openssl md5 -c`.
    const RSA_PUB_FINGERPRINT: &str = "06:0c:a8:74:01:fb:24:85:e9:3e:70:0c:e9:dd:b1:68";
    /// `ssh-keygen -e -f rsa.pub` (RFC 4716) of the same key.
    const RSA_PUB_RFC4716: &str = "---- BEGIN SSH2 PUBLIC KEY ----
Comment: \"1024-bit RSA, converted by root@vm from OpenSSH\"
AAAAB3NzaC1yc2EAAAADAQABAAAAgQC1W0LVSyRqguu3Yli1HQ+ruoJgIDBMhOsrh0e3sz
ANQiJnwPVrwcP6rz3aICsprNhhK5OLMTY77oXQpg0F6KH2HRDdp2DF7asq4yq9mWAlTiDX
dvfBtz6iq1ph7XQG7oMhFz0IRW54NUCtKJNnOFAxR00XWsPQvtWrX7mLJqWPcQ==
---- END SSH2 PUBLIC KEY ----
";
    /// `ssh-keygen -t ed25519 -C ed@koala`.
    const ED_PUB: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEYIezsJFUhKcoR8HP6WtPFS+i/Z1jc7nJdd5nYASjOw ed@koala";
    /// `ssh-keygen -l -E sha256 -f ed.pub` printed `SHA256:1hEn...OoM`; AWS keeps the padding.
    const ED_FINGERPRINT: &str = "1hEn3A48SsjlnV38gAhGUGBOqH+1WoRndpP5o/YtOoM=";
    /// `ssh-keygen -t ecdsa`.
    const ECDSA_PUB: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBJcvocKyFAxh7hLSx6dH9ULIf7VpXN+1pNi1dBMNIB2n3a8KcmDyMSHTR/WwE1Z6vJkkV+MulwL54Eclrh5otr0= root@vm";

    fn test_key() -> RsaPrivateKey {
        RsaPrivateKey::from_pkcs1_pem(TEST_PRIVATE_KEY).unwrap()
    }

    #[test]
    fn created_key_fingerprint_is_sha1_of_pkcs8_as_openssl_computes_it() {
        assert_eq!(
            created_fingerprint(&test_key()).unwrap(),
            TEST_CREATED_FINGERPRINT
        );
    }

    #[test]
    fn created_key_public_line_is_what_ssh_keygen_derives() {
        let public = PublicKey::Rsa(test_key().to_public_key());
        assert_eq!(
            public.openssh_line("mykey"),
            format!("ssh-rsa {TEST_PUBLIC_BLOB} mykey")
        );
    }

    #[test]
    fn a_new_key_has_aws_shapes() {
        let key = RsaPrivateKey::new(&mut OsRng, CREATED_KEY_BITS).unwrap();
        let fingerprint = created_fingerprint(&key).unwrap();
        assert_eq!(fingerprint.len(), 59, "{fingerprint}");
        assert!(fingerprint
            .split(':')
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit())));
        let pem = key.to_pkcs1_pem(LineEnding::LF).unwrap();
        assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----\n"));
        let line = PublicKey::Rsa(key.to_public_key()).openssh_line("k");
        // The line reads back as the same key.
        let again = parse_public_key_material(&line).unwrap();
        assert_eq!(again, PublicKey::Rsa(key.to_public_key()));
    }

    #[test]
    fn imports_rsa_in_every_accepted_form_with_the_aws_fingerprint() {
        let from_line = parse_public_key_material(RSA_PUB).unwrap();
        assert_eq!(
            imported_fingerprint(&from_line).unwrap(),
            RSA_PUB_FINGERPRINT
        );
        let base64_of_file = STANDARD.encode(format!("{RSA_PUB}\n"));
        assert_eq!(
            parse_public_key_material(&base64_of_file).unwrap(),
            from_line
        );
        assert_eq!(
            parse_public_key_material(RSA_PUB_RFC4716).unwrap(),
            from_line
        );
        assert_eq!(
            parse_public_key_material(&STANDARD.encode(RSA_PUB_RFC4716)).unwrap(),
            from_line
        );
        let PublicKey::Rsa(rsa) = &from_line else {
            panic!("not RSA")
        };
        let der = rsa.to_public_key_der().unwrap();
        assert_eq!(
            parse_public_key_material(&STANDARD.encode(der.as_bytes())).unwrap(),
            from_line
        );
        let base64_of_base64_der = STANDARD.encode(STANDARD.encode(der.as_bytes()));
        assert_eq!(
            parse_public_key_material(&base64_of_base64_der).unwrap(),
            from_line
        );
        // Without a comment, and stored with the key name as comment.
        let bare: String = RSA_PUB.rsplit_once(' ').unwrap().0.to_owned();
        assert_eq!(parse_public_key_material(&bare).unwrap(), from_line);
        assert_eq!(from_line.openssh_line("test@koala"), RSA_PUB);
    }

    #[test]
    fn imports_ed25519_with_the_openssh_sha256_fingerprint() {
        let key = parse_public_key_material(&STANDARD.encode(ED_PUB)).unwrap();
        assert_eq!(key.key_type(), KeyType::Ed25519);
        assert_eq!(imported_fingerprint(&key).unwrap(), ED_FINGERPRINT);
        assert_eq!(key.openssh_line("ed@koala"), ED_PUB);
    }

    #[test]
    fn refuses_what_is_not_a_supported_public_key() {
        let refused = |material: &str| match parse_public_key_material(material) {
            Err(QueryError::InvalidKeyFormat(msg)) => msg,
            other => panic!("{material:?} gave {other:?}"),
        };
        refused("");
        refused("hello world");
        refused(&STANDARD.encode("hello world"));
        refused("ssh-rsa !!!notbase64");
        refused(&format!("{RSA_PUB}\n{RSA_PUB}"));
        assert!(refused(ECDSA_PUB).contains("ecdsa-sha2-nistp256"));
        // Type on the line disagreeing with the blob.
        refused(&RSA_PUB.replacen("ssh-rsa", "ssh-ed25519", 1));
        // Truncated blob, and bytes after the key.
        let blob = STANDARD.decode(TEST_PUBLIC_BLOB).unwrap();
        refused(&format!(
            "ssh-rsa {}",
            STANDARD.encode(&blob[..blob.len() - 1])
        ));
        let mut longer = blob.clone();
        longer.push(0);
        refused(&format!("ssh-rsa {}", STANDARD.encode(&longer)));
        // A length field pointing past the end.
        refused(&format!(
            "ssh-rsa {}",
            STANDARD.encode([0xff, 0xff, 0xff, 0xff, b's'])
        ));
        // Negative and zero mpints.
        let mut negative = Vec::new();
        put_string(&mut negative, b"ssh-rsa");
        put_string(&mut negative, &[0x81]);
        put_string(&mut negative, &blob[blob.len() - 129..]);
        refused(&format!("ssh-rsa {}", STANDARD.encode(&negative)));
        let mut zero = Vec::new();
        put_string(&mut zero, b"ssh-rsa");
        put_string(&mut zero, &[]);
        put_string(&mut zero, &[]);
        refused(&format!("ssh-rsa {}", STANDARD.encode(&zero)));
        // A short Ed25519 key and an RSA key that is too small.
        let mut short = Vec::new();
        put_string(&mut short, b"ssh-ed25519");
        put_string(&mut short, &[1; 31]);
        refused(&format!("ssh-ed25519 {}", STANDARD.encode(&short)));
        let small = RsaPrivateKey::new(&mut OsRng, 512).unwrap().to_public_key();
        assert!(refused(&PublicKey::Rsa(small).openssh_line("x")).contains("512 bits"));
    }

    #[test]
    fn mpints_are_minimal_and_positive() {
        let mut out = Vec::new();
        put_mpint(&mut out, &BigUint::from(0x80u32));
        assert_eq!(out, [0, 0, 0, 2, 0, 0x80]);
        out.clear();
        put_mpint(&mut out, &BigUint::from(0x7fu32));
        assert_eq!(out, [0, 0, 0, 1, 0x7f]);
        out.clear();
        put_mpint(&mut out, &BigUint::from(0u32));
        assert_eq!(out, [0, 0, 0, 0]);
    }
}

//! Helpers shared by the integration tests: a fixed credential source, header maps, times,
//! and a small independent SigV4 signer (written from AWS's documentation, not from the
//! crate's code) to make requests the published examples do not cover.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::SystemTime;

use http::{HeaderMap, HeaderName, HeaderValue};
use identity::{Principal, Role, SecretSource};
use ring::{digest, hmac};

/// One key, known to the test.
pub struct StaticCreds {
    pub akid: String,
    pub secret: String,
}

impl StaticCreds {
    pub fn new(akid: &str, secret: &str) -> Self {
        StaticCreds {
            akid: akid.into(),
            secret: secret.into(),
        }
    }
}

impl SecretSource for StaticCreds {
    fn secret(&self, access_key_id: &str) -> Option<(Principal, String)> {
        (access_key_id == self.akid).then(|| {
            (
                Principal {
                    account_id: "123456789012".into(),
                    account_name: "test".into(),
                    user_name: "admin".into(),
                    access_key_id: self.akid.clone(),
                    role: Role::User,
                },
                self.secret.clone(),
            )
        })
    }
}

pub fn header_map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    map
}

/// `YYYYMMDDTHHMMSSZ` as a time.
pub fn at(amz: &str) -> SystemTime {
    let fmt = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::PrimitiveDateTime::parse(amz, &fmt)
        .unwrap()
        .assume_utc()
        .into()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data))
}

fn hmac256(key: &[u8], msg: &str) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), msg.as_bytes())
        .as_ref()
        .to_vec()
}

/// A SigV4 signing context (secret, timestamp, region, service).
pub struct Signer<'a> {
    pub secret: &'a str,
    pub timestamp: &'a str,
    pub region: &'a str,
    pub service: &'a str,
}

impl Signer<'_> {
    pub fn scope(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            &self.timestamp[..8],
            self.region,
            self.service
        )
    }

    pub fn key(&self) -> Vec<u8> {
        let k = hmac256(
            format!("AWS4{}", self.secret).as_bytes(),
            &self.timestamp[..8],
        );
        let k = hmac256(&k, self.region);
        let k = hmac256(&k, self.service);
        hmac256(&k, "aws4_request")
    }

    /// Signs a canonical request given in parts; `headers` are (lowercase name, value), in
    /// signing order.
    pub fn sign(
        &self,
        method: &str,
        uri: &str,
        query: &str,
        headers: &[(&str, &str)],
        payload_hash: &str,
    ) -> String {
        let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
        let signed: Vec<&str> = headers.iter().map(|(k, _)| *k).collect();
        let creq = format!(
            "{method}\n{uri}\n{query}\n{canonical_headers}\n{}\n{payload_hash}",
            signed.join(";")
        );
        let sts = format!(
            "AWS4-HMAC-SHA256\n{}\n{}\n{}",
            self.timestamp,
            self.scope(),
            sha256_hex(creq.as_bytes())
        );
        hex::encode(hmac256(&self.key(), &sts))
    }

    pub fn authorization(&self, akid: &str, headers: &[(&str, &str)], signature: &str) -> String {
        let signed: Vec<&str> = headers.iter().map(|(k, _)| *k).collect();
        format!(
            "AWS4-HMAC-SHA256 Credential={akid}/{}, SignedHeaders={}, Signature={signature}",
            self.scope(),
            signed.join(";")
        )
    }

    pub fn chunk_signature(&self, previous: &str, data: &[u8]) -> String {
        let sts = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{previous}\n{}\n{}",
            self.timestamp,
            self.scope(),
            sha256_hex(b""),
            sha256_hex(data)
        );
        hex::encode(hmac256(&self.key(), &sts))
    }

    pub fn trailer_signature(&self, previous: &str, canonical_trailers: &str) -> String {
        let sts = format!(
            "AWS4-HMAC-SHA256-TRAILER\n{}\n{}\n{previous}\n{}",
            self.timestamp,
            self.scope(),
            sha256_hex(canonical_trailers.as_bytes())
        );
        hex::encode(hmac256(&self.key(), &sts))
    }
}

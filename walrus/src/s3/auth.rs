//! Who the caller is and what they may do: signature verification through `identity`, the
//! request body turned into a verified stream according to what the signature promised
//! (SHA-256 payload hash, aws-chunked framing with chunk signatures and trailers), and who
//! the caller is to ACLs (what they may do is `access`'s).

use std::sync::{Arc, Mutex};

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http::HeaderMap;
use sha2::Digest;

use super::error::S3Error;
use super::ident::{AwsChunkedDecoder, Payload, Principal};
use crate::acl::{Acl, Requester};
use crate::store::BodyStream;

/// The largest single PUT (and copy source) S3 accepts: 5 GiB.
pub const MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * 1024;

/// The requester as ACLs see it.
pub fn requester(principal: Option<&Principal>) -> Requester<'_> {
    match principal {
        None => Requester::Anonymous,
        Some(p) => Requester::Account {
            account_id: &p.account_id,
        },
    }
}

/// Fails with AccessDenied unless the caller owns the resource.
pub fn require_owner(acl: &Acl, principal: Option<&Principal>) -> Result<(), S3Error> {
    match principal {
        Some(p) if p.account_id == acl.owner => Ok(()),
        _ => Err(S3Error::access_denied()),
    }
}

/// Fails with AccessDenied for unsigned requests; returns the principal otherwise.
pub fn require_signed(principal: Option<&Principal>) -> Result<&Principal, S3Error> {
    principal.ok_or_else(S3Error::access_denied)
}

/// Trailers of an aws-chunked body, filled in when the body stream ends cleanly.
pub type TrailerSlot = Arc<Mutex<Option<Vec<(String, String)>>>>;

/// A request body made ready for the store, with what remains to check once it is staged.
pub struct Incoming {
    /// The payload bytes (framing removed, chunk signatures verified as they stream).
    pub stream: BodyStream,
    /// The length the payload must have, when announced.
    pub expected_len: Option<u64>,
    /// The SHA-256 the payload must have (signed `x-amz-content-sha256`).
    pub expect_sha256: Option<[u8; 32]>,
    /// Trailers of an aws-chunked body, available after the stream ended.
    pub trailers: Option<TrailerSlot>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn parse_len(headers: &HeaderMap, name: &str) -> Result<Option<u64>, S3Error> {
    match header(headers, name) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| S3Error::InvalidArgument(format!("Invalid {name} header."))),
    }
}

/// Wraps an S3 error in an `io::Error` so it survives the store's body plumbing; see
/// [`super::error::body_error`].
fn io_err(e: S3Error) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

/// Prepares a body for staging: checks the announced length against `max`, removes
/// aws-chunked framing through the identity decoder, and caps unannounced bodies at `max`.
/// `require_len`: object uploads must announce their length (MissingContentLength otherwise);
/// small documents need not.
pub fn incoming(
    body: Body,
    payload: Payload,
    headers: &HeaderMap,
    max: u64,
    require_len: bool,
) -> Result<Incoming, S3Error> {
    let chunked_transfer = !require_len
        || header(headers, "transfer-encoding")
            .map(|v| v.to_ascii_lowercase().contains("chunked"))
            .unwrap_or(false);
    let content_length = parse_len(headers, "content-length")?;
    let (decoder, expect_sha256) = match payload {
        Payload::Unverified => (None, None),
        Payload::Sha256(h) => (None, Some(h)),
        Payload::Streaming(d) | Payload::UnsignedTrailer(d) => (Some(d), None),
    };
    let expected_len = if decoder.is_some() {
        match parse_len(headers, "x-amz-decoded-content-length")? {
            Some(n) => Some(n),
            None if content_length.is_some() || chunked_transfer => None,
            None => return Err(S3Error::MissingContentLength),
        }
    } else {
        match content_length {
            Some(n) => Some(n),
            None if chunked_transfer => None,
            None => return Err(S3Error::MissingContentLength),
        }
    };
    if expected_len.is_some_and(|n| n > max) {
        return Err(S3Error::EntityTooLarge);
    }
    let raw = body
        .into_data_stream()
        .map(|r| r.map_err(std::io::Error::other));
    let (stream, trailers): (BodyStream, _) = match decoder {
        None => (Box::pin(raw), None),
        Some(dec) => {
            let slot: TrailerSlot = Arc::new(Mutex::new(None));
            (decode_chunked(Box::pin(raw), dec, slot.clone()), Some(slot))
        }
    };
    let stream = if expected_len.is_none() {
        cap(stream, max)
    } else {
        stream
    };
    Ok(Incoming {
        stream,
        expected_len,
        expect_sha256,
        trailers,
    })
}

/// Ends a body with EntityTooLarge once it passes `max` bytes (bodies without a length).
fn cap(stream: BodyStream, max: u64) -> BodyStream {
    let mut seen = 0u64;
    Box::pin(stream.map(move |item| {
        let chunk = item?;
        seen = seen.saturating_add(chunk.len() as u64);
        if seen > max {
            return Err(io_err(S3Error::EntityTooLarge));
        }
        Ok(chunk)
    }))
}

/// Streams the decoded payload of an aws-chunked body; when the raw body ends, checks the
/// final chunk and stores the trailers in `slot`.
fn decode_chunked(raw: BodyStream, dec: AwsChunkedDecoder, slot: TrailerSlot) -> BodyStream {
    struct State {
        raw: BodyStream,
        dec: Option<AwsChunkedDecoder>,
        slot: TrailerSlot,
    }
    let state = State {
        raw,
        dec: Some(dec),
        slot,
    };
    Box::pin(futures_util::stream::unfold(state, |mut st| async move {
        loop {
            st.dec.as_ref()?;
            match st.raw.next().await {
                Some(Ok(chunk)) => {
                    let dec = st.dec.as_mut()?;
                    match dec.push(&chunk) {
                        Ok(out) if out.is_empty() => continue,
                        Ok(out) => return Some((Ok(out), st)),
                        Err(e) => {
                            st.dec = None;
                            return Some((Err(io_err(e.into())), st));
                        }
                    }
                }
                Some(Err(e)) => {
                    st.dec = None;
                    return Some((Err(e), st));
                }
                None => {
                    let dec = st.dec.take()?;
                    match dec.finish() {
                        Ok(trailers) => {
                            if let Ok(mut slot) = st.slot.lock() {
                                *slot = Some(trailers);
                            }
                            return None;
                        }
                        Err(e) => return Some((Err(io_err(e.into())), st)),
                    }
                }
            }
        }
    }))
}

/// Reads a small body (XML documents) whole, at most `limit` bytes, verifying what the
/// signature promised about it.
pub async fn read_small_body(
    body: Body,
    payload: Payload,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Bytes, S3Error> {
    if parse_len(headers, "content-length")?.is_some_and(|n| n > limit as u64) {
        return Err(S3Error::MaxMessageLengthExceeded);
    }
    let inc = incoming(body, payload, headers, limit as u64, false).map_err(|e| match e {
        S3Error::EntityTooLarge => S3Error::MaxMessageLengthExceeded,
        other => other,
    })?;
    let mut stream = inc.stream;
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| match super::error::body_error(e) {
            S3Error::EntityTooLarge => S3Error::MaxMessageLengthExceeded,
            other => other,
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(S3Error::MaxMessageLengthExceeded);
        }
        buf.extend_from_slice(&chunk);
    }
    if let Some(n) = inc.expected_len {
        if n != buf.len() as u64 {
            return Err(S3Error::IncompleteBody);
        }
    }
    if let Some(want) = inc.expect_sha256 {
        let got: [u8; 32] = sha2::Sha256::digest(&buf).into();
        if got != want {
            return Err(S3Error::ContentSha256Mismatch);
        }
    }
    check_small_digests(headers, &buf)?;
    Ok(buf.freeze())
}

/// Checks Content-MD5 and an `x-amz-checksum-*` header on a small body (SDKs send one or
/// the other with DeleteObjects and other XML documents).
fn check_small_digests(headers: &HeaderMap, body: &[u8]) -> Result<(), S3Error> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    if let Some(v) = headers.get("content-md5") {
        let want = b64
            .decode(v.as_bytes().trim_ascii())
            .map_err(|_| S3Error::InvalidDigest)?;
        if want.len() != 16 {
            return Err(S3Error::InvalidDigest);
        }
        if md5::Md5::digest(body).as_slice() != want.as_slice() {
            return Err(S3Error::BadDigest(
                "The Content-MD5 you specified did not match what we received.".into(),
            ));
        }
    }
    for (name, label) in [
        ("x-amz-checksum-crc32", "CRC32"),
        ("x-amz-checksum-crc32c", "CRC32C"),
        ("x-amz-checksum-crc64nvme", "CRC64NVME"),
        ("x-amz-checksum-sha1", "SHA1"),
        ("x-amz-checksum-sha256", "SHA256"),
    ] {
        let Some(v) = header(headers, name) else {
            continue;
        };
        let computed: Vec<u8> = match name {
            "x-amz-checksum-crc32" => crc32fast::hash(body).to_be_bytes().to_vec(),
            "x-amz-checksum-crc32c" => crc32c::crc32c(body).to_be_bytes().to_vec(),
            "x-amz-checksum-crc64nvme" => {
                let mut d = crc64fast_nvme::Digest::new();
                d.write(body);
                d.sum64().to_be_bytes().to_vec()
            }
            "x-amz-checksum-sha1" => sha1::Sha1::digest(body).to_vec(),
            _ => sha2::Sha256::digest(body).to_vec(),
        };
        if b64.encode(&computed) != v.trim() {
            return Err(S3Error::BadDigest(format!(
                "The {label} you specified did not match the calculated checksum."
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acl::{CannedAcl, Grant, Grantee, Permission};

    fn require(acl: &Acl, p: Option<&Principal>, wanted: Permission) -> Result<(), S3Error> {
        if acl.allows(requester(p), wanted) {
            Ok(())
        } else {
            Err(S3Error::access_denied())
        }
    }

    fn principal(account: &str, name: &str) -> Principal {
        Principal {
            account_id: account.into(),
            account_name: name.into(),
            user_name: "admin".into(),
            access_key_id: "AK".into(),
            role: match name {
                identity::ADMIN_ACCOUNT => identity::Role::CloudAdmin,
                _ => identity::Role::User,
            },
        }
    }

    #[test]
    fn acl_checks() {
        let owner = principal("111111111111", "alice");
        let other = principal("222222222222", "bob");
        let admin = principal("333333333333", "eucalyptus");
        let private = CannedAcl::Private.to_acl("111111111111", "111111111111");
        assert!(require(&private, Some(&owner), Permission::WriteAcp).is_ok());
        assert!(require(&private, Some(&other), Permission::Read).is_err());
        assert!(require(&private, None, Permission::Read).is_err());
        assert!(require(&private, Some(&admin), Permission::Read).is_err());

        // aws-exec-read is for the image service, which reads below the ACLs: no S3 caller,
        // not even a cloud administrator, reads through it.
        let exec = CannedAcl::AwsExecRead.to_acl("111111111111", "111111111111");
        assert!(require(&exec, Some(&admin), Permission::Read).is_err());
        assert!(require(&exec, Some(&admin), Permission::Write).is_err());
        assert!(require(&exec, Some(&other), Permission::Read).is_err());

        let public = CannedAcl::PublicRead.to_acl("111111111111", "111111111111");
        assert!(require(&public, None, Permission::Read).is_ok());
        assert!(require(&public, None, Permission::Write).is_err());

        let auth = CannedAcl::AuthenticatedRead.to_acl("111111111111", "111111111111");
        assert!(require(&auth, None, Permission::Read).is_err());
        assert!(require(&auth, Some(&other), Permission::Read).is_ok());

        let mut granted = private.clone();
        granted.grants.push(Grant {
            grantee: Grantee::Account("222222222222".into()),
            permission: Permission::FullControl,
        });
        assert!(require(&granted, Some(&other), Permission::WriteAcp).is_ok());
        assert!(require_owner(&granted, Some(&other)).is_err());
        assert!(require_signed(None).is_err());
    }

    #[tokio::test]
    async fn small_body_checks() {
        let mut h = HeaderMap::new();
        h.insert("content-length", "3".parse().expect("hv"));
        let b = read_small_body(Body::from("abc"), Payload::Unverified, &h, 10)
            .await
            .expect("ok");
        assert_eq!(&b[..], b"abc");
        let sha: [u8; 32] = sha2::Sha256::digest(b"abc").into();
        assert!(
            read_small_body(Body::from("abc"), Payload::Sha256(sha), &h, 10)
                .await
                .is_ok()
        );
        assert!(matches!(
            read_small_body(Body::from("abd"), Payload::Sha256(sha), &h, 10).await,
            Err(S3Error::ContentSha256Mismatch)
        ));
        let mut with_crc = h.clone();
        with_crc.insert("x-amz-checksum-crc32", "NSRBwg==".parse().expect("hv"));
        assert!(
            read_small_body(Body::from("abc"), Payload::Unverified, &with_crc, 10)
                .await
                .is_ok()
        );
        assert!(matches!(
            read_small_body(Body::from("abd"), Payload::Unverified, &with_crc, 10).await,
            Err(S3Error::BadDigest(_))
        ));
        let mut with_md5 = h.clone();
        with_md5.insert(
            "content-md5",
            "kAFQmDzST7DWlj99KOF/cg==".parse().expect("hv"),
        );
        assert!(
            read_small_body(Body::from("abc"), Payload::Unverified, &with_md5, 10)
                .await
                .is_ok()
        );
        assert!(matches!(
            read_small_body(Body::from("abd"), Payload::Unverified, &with_md5, 10).await,
            Err(S3Error::BadDigest(_))
        ));
        assert!(matches!(
            read_small_body(Body::from("abc"), Payload::Unverified, &h, 2).await,
            Err(S3Error::MaxMessageLengthExceeded)
        ));
        let empty = HeaderMap::new();
        assert!(matches!(
            incoming(Body::from("abc"), Payload::Unverified, &empty, 10, true),
            Err(S3Error::MissingContentLength)
        ));
        h.insert("content-length", "11".parse().expect("hv"));
        assert!(matches!(
            incoming(Body::from("abc"), Payload::Unverified, &h, 10, true),
            Err(S3Error::EntityTooLarge)
        ));
    }
}

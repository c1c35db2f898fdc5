//! Requests signed here with the independent test signer (tests/common), for what the
//! published examples do not cover: trailers, unsigned-payload trailers, invented regions,
//! SigV2 Query API requests, malformed input, and the account store as credential source.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

/// Decoded payload and trailers.
type Decoded = (Vec<u8>, Vec<(String, String)>);

use std::time::Duration;

use base64::Engine;
use common::{at, header_map, sha256_hex, Signer, StaticCreds};
use identity::{
    answer, questions_of, verify_query, verify_s3, AccessKeyStatus, Answered, AuthError,
    Authenticated, AwsChunkedDecoder, CredentialSource, Identity, KeyAnswer, KeyQuestion, Payload,
    RequestParts, SigningScope,
};
use ring::hmac;

const AKID: &str = "AKIAKOALATEST0000001";
const SECRET: &str = "koalaTestSecretKey000000000000000000000/";
const TS: &str = "20261125T145736Z";

fn creds() -> StaticCreds {
    StaticCreds::new(AKID, SECRET)
}

fn signer<'a>(region: &'a str, service: &'a str) -> Signer<'a> {
    Signer {
        secret: SECRET,
        timestamp: TS,
        region,
        service,
    }
}

/// A signed aws-chunked PUT; returns the decoder and the seed signature.
fn streaming_put(
    content_sha: &str,
    extra: &[(&str, &str)],
) -> (Result<Authenticated, AuthError>, String) {
    let s = signer("us-east-1", "s3");
    let mut signed: Vec<(&str, &str)> = vec![
        ("content-encoding", "aws-chunked"),
        ("host", "127.0.0.1:8773"),
    ];
    signed.push(("x-amz-content-sha256", content_sha));
    signed.push(("x-amz-date", TS));
    signed.extend_from_slice(extra);
    let seed = s.sign("PUT", "/bucket/key", "", &signed, content_sha);
    let auth = s.authorization(AKID, &signed, &seed);
    let mut all = signed.clone();
    all.push(("authorization", &auth));
    let headers = header_map(&all);
    let req = RequestParts {
        method: "PUT",
        raw_path: "/bucket/key",
        raw_query: "",
        headers: &headers,
    };
    (verify_s3(&req, "/bucket/key", &creds(), at(TS)), seed)
}

fn decoder(r: Result<Authenticated, AuthError>) -> AwsChunkedDecoder {
    match r {
        Ok(Authenticated::Signed {
            payload: Payload::Streaming(d) | Payload::UnsignedTrailer(d),
            ..
        }) => d,
        other => panic!("{other:?}"),
    }
}

fn run(mut d: AwsChunkedDecoder, body: &[u8], slice: usize) -> Result<Decoded, AuthError> {
    let mut out = Vec::new();
    for piece in body.chunks(slice) {
        out.extend_from_slice(&d.push(piece)?);
    }
    Ok((out, d.finish()?))
}

/// A signed-with-trailer body: two chunks, the final chunk, the checksum and its signature.
fn trailer_body(seed: &str, checksum: &str, tamper_trailer: bool) -> Vec<u8> {
    let s = signer("us-east-1", "s3");
    let c1 = vec![b'x'; 8192];
    let c2 = b"tail".to_vec();
    let s1 = s.chunk_signature(seed, &c1);
    let s2 = s.chunk_signature(&s1, &c2);
    let s3 = s.chunk_signature(&s2, b"");
    let trailer_sig = s.trailer_signature(&s3, &format!("x-amz-checksum-crc32:{checksum}\n"));
    let mut body = format!("2000;chunk-signature={s1}\r\n").into_bytes();
    body.extend_from_slice(&c1);
    body.extend_from_slice(format!("\r\n4;chunk-signature={s2}\r\n").as_bytes());
    body.extend_from_slice(&c2);
    body.extend_from_slice(format!("\r\n0;chunk-signature={s3}\r\n").as_bytes());
    let sent = if tamper_trailer { "AAAAAA==" } else { checksum };
    body.extend_from_slice(
        format!("x-amz-checksum-crc32:{sent}\r\nx-amz-trailer-signature:{trailer_sig}\r\n\r\n")
            .as_bytes(),
    );
    body
}

#[test]
fn signed_streaming_with_trailer() {
    let extra = [
        ("x-amz-decoded-content-length", "8196"),
        ("x-amz-trailer", "x-amz-checksum-crc32"),
    ];
    let (r, seed) = streaming_put("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", &extra);
    let d = decoder(r);
    assert!(d.is_signed());
    let body = trailer_body(&seed, "8Qb2Vw==", false);
    for slice in [1, 3, 1000, body.len()] {
        let (_, seed) = streaming_put("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", &extra);
        let (r2, _) = streaming_put("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", &extra);
        let (data, trailers) =
            run(decoder(r2), &trailer_body(&seed, "8Qb2Vw==", false), slice).unwrap();
        assert_eq!(data.len(), 8196);
        assert!(data.ends_with(b"xtail"));
        assert_eq!(
            trailers,
            vec![("x-amz-checksum-crc32".to_owned(), "8Qb2Vw==".to_owned())]
        );
    }
    assert!(run(d, &body, 512).is_ok());
    // A changed checksum breaks the trailer signature.
    let (r, seed) = streaming_put("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", &extra);
    assert_eq!(
        run(decoder(r), &trailer_body(&seed, "8Qb2Vw==", true), 512).unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );
    // Without the trailer signature the body is refused.
    let (r, seed) = streaming_put("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", &extra);
    let body = trailer_body(&seed, "8Qb2Vw==", false);
    let text = String::from_utf8_lossy(&body).into_owned();
    let cut = text.find("x-amz-trailer-signature").unwrap();
    let mut stripped = body[..cut].to_vec();
    stripped.extend_from_slice(b"\r\n");
    assert!(matches!(
        run(decoder(r), &stripped, 512),
        Err(AuthError::InvalidChunk(_))
    ));
    // The decoded length must match what was announced.
    let wrong_len = [
        ("x-amz-decoded-content-length", "9000"),
        ("x-amz-trailer", "x-amz-checksum-crc32"),
    ];
    let (r, seed) = streaming_put("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", &wrong_len);
    assert_eq!(
        run(decoder(r), &trailer_body(&seed, "8Qb2Vw==", false), 512).unwrap_err(),
        AuthError::IncompleteBody
    );
}

#[test]
fn unsigned_payload_trailer_as_current_sdks_send_it() {
    let extra = [
        ("x-amz-decoded-content-length", "11"),
        ("x-amz-trailer", "x-amz-checksum-crc32"),
    ];
    let body = b"b\r\nhello world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n";
    for slice in [1, 2, 5, body.len()] {
        let (r, _) = streaming_put("STREAMING-UNSIGNED-PAYLOAD-TRAILER", &extra);
        let r = match r {
            Ok(Authenticated::Signed {
                payload: Payload::UnsignedTrailer(d),
                ..
            }) => d,
            other => panic!("{other:?}"),
        };
        assert!(!r.is_signed());
        let (data, trailers) = run(r, body, slice).unwrap();
        assert_eq!(data, b"hello world");
        assert_eq!(
            trailers,
            vec![("x-amz-checksum-crc32".to_owned(), "DUoRhQ==".to_owned())]
        );
    }
    // Some SDKs omit the closing blank line.
    let (r, _) = streaming_put("STREAMING-UNSIGNED-PAYLOAD-TRAILER", &extra);
    let (data, trailers) = run(decoder(r), &body[..body.len() - 2], 7).unwrap();
    assert_eq!((data.len(), trailers.len()), (11, 1));
    // A chunk longer than declared is malformed; a short body is incomplete.
    let (r, _) = streaming_put("STREAMING-UNSIGNED-PAYLOAD-TRAILER", &extra);
    assert!(matches!(
        run(decoder(r), b"5\r\nhello world\r\n0\r\n\r\n", 4),
        Err(AuthError::InvalidChunk(_))
    ));
    let (r, _) = streaming_put("STREAMING-UNSIGNED-PAYLOAD-TRAILER", &extra);
    assert_eq!(
        run(decoder(r), b"b\r\nhello world\r\n", 4).unwrap_err(),
        AuthError::IncompleteBody
    );
}

#[test]
fn s3_sigv4_unsigned_payload_any_region_and_encoded_keys() {
    for region in ["us-east-1", "undefined-4242", "koala"] {
        let s = signer(region, "s3");
        let signed = [
            ("host", "127.0.0.1:8773"),
            ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
            ("x-amz-date", TS),
        ];
        // Keys with spaces, plus signs and unicode, encoded once as S3 wants.
        let path = "/bucket/a%20b%2Bc/%C3%A9t%C3%A9.txt";
        let sig = s.sign(
            "GET",
            path,
            "list-type=2&prefix=a%20b",
            &signed,
            "UNSIGNED-PAYLOAD",
        );
        let auth = s.authorization(AKID, &signed, &sig);
        let mut all = signed.to_vec();
        all.push(("authorization", &auth));
        let headers = header_map(&all);
        let req = RequestParts {
            method: "GET",
            raw_path: path,
            raw_query: "prefix=a%20b&list-type=2",
            headers: &headers,
        };
        let r = verify_s3(&req, path, &creds(), at(TS));
        assert!(
            matches!(
                r,
                Ok(Authenticated::Signed {
                    payload: Payload::Unverified,
                    ..
                })
            ),
            "{region}: {r:?}"
        );
        // A client that wrote the space in the query as `+`.
        let req = RequestParts {
            raw_query: "prefix=a+b&list-type=2",
            ..req
        };
        assert!(verify_s3(&req, path, &creds(), at(TS)).is_ok());
        let req = RequestParts {
            raw_query: "prefix=a%20c&list-type=2",
            ..req
        };
        assert_eq!(
            verify_s3(&req, path, &creds(), at(TS)).unwrap_err(),
            AuthError::SignatureDoesNotMatch
        );
    }
}

#[test]
fn ec2_sigv4_at_the_eucalyptus_path_with_an_invented_region() {
    let body = b"Action=DescribeRegions&Version=2015-10-01";
    let hash = sha256_hex(body);
    let s = signer("undefined-31337", "ec2");
    let signed = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("host", "127.0.0.1:8773"),
        ("x-amz-content-sha256", hash.as_str()),
        ("x-amz-date", TS),
    ];
    let sig = s.sign("POST", "/services/compute/", "", &signed, &hash);
    let auth = s.authorization(AKID, &signed, &sig);
    let mut all = signed.to_vec();
    all.push(("authorization", &auth));
    let headers = header_map(&all);
    let req = RequestParts {
        method: "POST",
        raw_path: "/services/compute/",
        raw_query: "",
        headers: &headers,
    };
    assert!(verify_query(&req, body, &creds(), at(TS)).is_ok());
    let moved = RequestParts {
        raw_path: "/services/Eucalyptus/",
        ..req
    };
    assert_eq!(
        verify_query(&moved, body, &creds(), at(TS)).unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );

    // Without x-amz-content-sha256, the body hash is computed here.
    let signed = [("host", "127.0.0.1:8773"), ("x-amz-date", TS)];
    let sig = s.sign("POST", "/services/compute/", "", &signed, &hash);
    let auth = s.authorization(AKID, &signed, &sig);
    let headers = header_map(&[
        ("host", "127.0.0.1:8773"),
        ("x-amz-date", TS),
        ("authorization", &auth),
    ]);
    let req = RequestParts {
        method: "POST",
        raw_path: "/services/compute/",
        raw_query: "",
        headers: &headers,
    };
    assert!(verify_query(&req, body, &creds(), at(TS)).is_ok());
    assert_eq!(
        verify_query(&req, b"Action=DescribeImages", &creds(), at(TS)).unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );

    // An unsigned body would leave the action unauthenticated: refused for Query APIs.
    let signed = [
        ("host", "127.0.0.1:8773"),
        ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
        ("x-amz-date", TS),
    ];
    let sig = s.sign(
        "POST",
        "/services/compute/",
        "",
        &signed,
        "UNSIGNED-PAYLOAD",
    );
    let auth = s.authorization(AKID, &signed, &sig);
    let mut all = signed.to_vec();
    all.push(("authorization", &auth));
    let headers = header_map(&all);
    let req = RequestParts {
        method: "POST",
        raw_path: "/services/compute/",
        raw_query: "",
        headers: &headers,
    };
    assert!(matches!(
        verify_query(&req, body, &creds(), at(TS)),
        Err(AuthError::InvalidArgument(_))
    ));
}

#[test]
fn credentials_debug_hides_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let id = Identity::open(dir.path()).unwrap();
    let (admin, _) = id.ensure_admin().unwrap();
    let shown = format!("{admin:?}");
    assert!(shown.contains(&admin.access_key_id));
    assert!(!shown.contains(&admin.secret_access_key));
}

/// `application/x-www-form-urlencoded` as python-requests writes it (quote_plus).
fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            let enc = |s: &str| {
                percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
                    .to_string()
                    .replace("%20", "+")
            };
            format!("{}={}", enc(k), enc(v))
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn v2_signature(
    algorithm: hmac::Algorithm,
    method: &str,
    host: &str,
    path: &str,
    params: &[(&str, &str)],
) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
            .to_string()
            .replace("%2D", "-")
            .replace("%5F", "_")
            .replace("%2E", ".")
            .replace("%7E", "~")
    };
    let canonical: Vec<String> = sorted
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect();
    let sts = format!("{method}\n{host}\n{path}\n{}", canonical.join("&"));
    let tag = hmac::sign(
        &hmac::Key::new(algorithm, SECRET.as_bytes()),
        sts.as_bytes(),
    );
    base64::engine::general_purpose::STANDARD.encode(tag.as_ref())
}

#[test]
fn query_api_sigv2_in_the_body_and_in_the_query() {
    // euca-install-image's RegisterImage: SigV2, HmacSHA256, parameters in the POST body.
    let params = [
        ("AWSAccessKeyId", AKID),
        ("Action", "RegisterImage"),
        ("ImageLocation", "bucket/my image.manifest.xml"),
        ("Name", "my image"),
        ("SignatureMethod", "HmacSHA256"),
        ("SignatureVersion", "2"),
        ("Timestamp", "2026-11-25T14:57:36Z"),
        ("Version", "2015-10-01"),
    ];
    let sig = v2_signature(
        hmac::HMAC_SHA256,
        "POST",
        "127.0.0.1:8773",
        "/services/compute/",
        &params,
    );
    let mut with_sig = params.to_vec();
    with_sig.push(("Signature", &sig));
    let body = form(&with_sig);
    let headers = header_map(&[
        ("host", "127.0.0.1:8773"),
        ("content-type", "application/x-www-form-urlencoded"),
    ]);
    let req = RequestParts {
        method: "POST",
        raw_path: "/services/compute/",
        raw_query: "",
        headers: &headers,
    };
    let r = verify_query(&req, body.as_bytes(), &creds(), at(TS));
    assert!(
        matches!(
            r,
            Ok(Authenticated::Signed {
                payload: Payload::Unverified,
                ..
            })
        ),
        "{r:?}"
    );
    // Host is case-insensitive.
    let upper = header_map(&[("host", "LOCALHOST:8773")]);
    let sig_l = v2_signature(
        hmac::HMAC_SHA256,
        "POST",
        "localhost:8773",
        "/services/compute/",
        &params,
    );
    let mut l = params.to_vec();
    l.push(("Signature", &sig_l));
    let req_l = RequestParts {
        headers: &upper,
        ..req
    };
    assert!(verify_query(&req_l, form(&l).as_bytes(), &creds(), at(TS)).is_ok());
    // Any parameter change, the path or the host breaks it.
    let tampered = body.replace("Name=my+image", "Name=my+imagf");
    assert_eq!(
        verify_query(&req, tampered.as_bytes(), &creds(), at(TS)).unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );
    let other_path = RequestParts {
        raw_path: "/services/Eucalyptus/",
        ..req
    };
    assert_eq!(
        verify_query(&other_path, body.as_bytes(), &creds(), at(TS)).unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );
    // The timestamp is held to 15 minutes.
    let late = at(TS) + Duration::from_secs(16 * 60);
    assert_eq!(
        verify_query(&req, body.as_bytes(), &creds(), late).unwrap_err(),
        AuthError::RequestTimeTooSkewed
    );
    // Unknown key.
    let other = StaticCreds::new("AKIAOTHER00000000000", SECRET);
    assert_eq!(
        verify_query(&req, body.as_bytes(), &other, at(TS)).unwrap_err(),
        AuthError::InvalidAccessKeyId
    );

    // GET with HmacSHA1 and Expires in the query string.
    let params = [
        ("AWSAccessKeyId", AKID),
        ("Action", "DescribeImages"),
        ("Expires", "2026-11-25T15:00:00Z"),
        ("SignatureMethod", "HmacSHA1"),
        ("SignatureVersion", "2"),
        ("Version", "2015-10-01"),
    ];
    let sig = v2_signature(
        hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        "GET",
        "127.0.0.1:8773",
        "/",
        &params,
    );
    let mut with_sig = params.to_vec();
    with_sig.push(("Signature", &sig));
    let query = form(&with_sig);
    let req = RequestParts {
        method: "GET",
        raw_path: "/",
        raw_query: &query,
        headers: &headers,
    };
    assert!(verify_query(&req, b"", &creds(), at(TS)).is_ok());
    let after = at("20261125T150001Z");
    assert_eq!(
        verify_query(&req, b"", &creds(), after).unwrap_err(),
        AuthError::Expired
    );
    // Signature version 1 is not accepted.
    let v1 = query.replace("SignatureVersion=2", "SignatureVersion=1");
    let req = RequestParts {
        raw_query: &v1,
        ..req
    };
    assert!(matches!(
        verify_query(&req, b"", &creds(), at(TS)),
        Err(AuthError::InvalidArgument(_))
    ));
}

fn s3_with(headers: &[(&str, &str)], query: &str) -> Result<Authenticated, AuthError> {
    let headers = header_map(headers);
    let req = RequestParts {
        method: "GET",
        raw_path: "/bucket",
        raw_query: query,
        headers: &headers,
    };
    verify_s3(&req, "/bucket", &creds(), at(TS))
}

#[test]
fn anonymous_and_malformed_requests() {
    assert!(matches!(
        s3_with(&[("host", "h")], "max-keys=1"),
        Ok(Authenticated::Anonymous)
    ));
    let headers = header_map(&[("host", "h")]);
    let req = RequestParts {
        method: "POST",
        raw_path: "/",
        raw_query: "",
        headers: &headers,
    };
    assert!(matches!(
        verify_query(&req, b"Action=DescribeRegions", &creds(), at(TS)),
        Ok(Authenticated::Anonymous)
    ));

    let e = s3_with(&[("authorization", "Bearer token")], "").unwrap_err();
    assert!(matches!(e, AuthError::InvalidArgument(_)), "{e:?}");
    let e = s3_with(
        &[
            ("authorization", "AWS4-HMAC-SHA256 Credential=abc"),
            ("x-amz-date", TS),
        ],
        "",
    )
    .unwrap_err();
    assert!(
        matches!(e, AuthError::AuthorizationHeaderMalformed(_)),
        "{e:?}"
    );
    assert_eq!(e.s3_code(), "AuthorizationHeaderMalformed");
    let e = s3_with(&[("authorization", "AWS nocolon"), ("x-amz-date", TS)], "").unwrap_err();
    assert!(
        matches!(e, AuthError::AuthorizationHeaderMalformed(_)),
        "{e:?}"
    );

    let auth = format!("AWS4-HMAC-SHA256 Credential={AKID}/20261125/r/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature={}", "0".repeat(64));
    // No date at all.
    assert_eq!(
        s3_with(&[("host", "h"), ("authorization", &auth)], "").unwrap_err(),
        AuthError::MissingDate
    );
    // S3 requires x-amz-content-sha256 with SigV4.
    let e = s3_with(
        &[("host", "h"), ("x-amz-date", TS), ("authorization", &auth)],
        "",
    )
    .unwrap_err();
    assert!(matches!(e, AuthError::InvalidRequest(_)), "{e:?}");
    // A bad payload hash value.
    let e = s3_with(
        &[
            ("host", "h"),
            ("x-amz-date", TS),
            ("x-amz-content-sha256", "nope"),
            ("authorization", &auth),
        ],
        "",
    )
    .unwrap_err();
    assert!(matches!(e, AuthError::InvalidArgument(_)), "{e:?}");
    // The credential's date must be the request's.
    let e = s3_with(
        &[
            ("host", "h"),
            ("x-amz-date", "20261126T000000Z"),
            ("authorization", &auth),
        ],
        "",
    )
    .unwrap_err();
    assert!(
        matches!(e, AuthError::AuthorizationHeaderMalformed(_)),
        "{e:?}"
    );
    // Header and query authentication together.
    let e = s3_with(
        &[("authorization", &auth)],
        "X-Amz-Algorithm=AWS4-HMAC-SHA256",
    )
    .unwrap_err();
    assert!(matches!(e, AuthError::InvalidArgument(_)), "{e:?}");
    // Incomplete presigned parameters.
    let e = s3_with(
        &[("host", "h")],
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20261125T145736Z",
    )
    .unwrap_err();
    assert!(
        matches!(e, AuthError::AuthorizationQueryParametersError(_)),
        "{e:?}"
    );
    // Unknown key.
    let other = format!("AWS4-HMAC-SHA256 Credential=AKIANOBODY/20261125/r/s3/aws4_request, SignedHeaders=host, Signature={}", "0".repeat(64));
    let e = s3_with(
        &[
            ("host", "h"),
            ("x-amz-date", TS),
            ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
            ("authorization", &other),
        ],
        "",
    )
    .unwrap_err();
    assert_eq!(e, AuthError::InvalidAccessKeyId);
    assert_eq!((e.s3_code(), e.http_status()), ("InvalidAccessKeyId", 403));
}

#[test]
fn the_account_store_is_a_credential_source() {
    let dir = tempfile::tempdir().unwrap();
    let id = Identity::open(dir.path()).unwrap();
    let alice = id.create_account("alice").unwrap();
    let sign_with = |secret: &str| {
        let s = Signer {
            secret,
            timestamp: TS,
            region: "us-east-1",
            service: "s3",
        };
        let signed = [
            ("host", "h"),
            ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
            ("x-amz-date", TS),
        ];
        let sig = s.sign("GET", "/bucket", "", &signed, "UNSIGNED-PAYLOAD");
        let auth = s.authorization(&alice.access_key_id, &signed, &sig);
        let mut all = signed.to_vec();
        all.push(("authorization", &auth));
        header_map(&all)
    };
    let headers = sign_with(&alice.secret_access_key);
    let req = RequestParts {
        method: "GET",
        raw_path: "/bucket",
        raw_query: "",
        headers: &headers,
    };
    match verify_s3(&req, "/bucket", &id, at(TS)) {
        Ok(Authenticated::Signed { principal, .. }) => {
            assert_eq!(principal.account_id, alice.account_id);
            assert_eq!(principal.account_name, "alice");
            assert!(!principal.is_cloud_admin());
        }
        other => panic!("{other:?}"),
    }
    let forged = sign_with("x".repeat(40).as_str());
    let req_forged = RequestParts {
        headers: &forged,
        ..req
    };
    assert_eq!(
        verify_s3(&req_forged, "/bucket", &id, at(TS)).unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );
    id.set_access_key_status(
        &alice.account_id,
        "admin",
        &alice.access_key_id,
        AccessKeyStatus::Inactive,
    )
    .unwrap();
    assert_eq!(
        verify_s3(&req, "/bucket", &id, at(TS)).unwrap_err(),
        AuthError::InvalidAccessKeyId
    );
}

/// A presigned Query API request (parameters in the query string) for `host`, signed over
/// `signed_headers` with `payload_hash`.
fn presigned_query(signed_headers: &[(&str, &str)], payload_hash: &str) -> String {
    let s = signer("eucalyptus", "ec2");
    let names: Vec<&str> = signed_headers.iter().map(|(k, _)| *k).collect();
    let credential = format!("{AKID}/{}", s.scope()).replace('/', "%2F");
    let query = format!(
        "Action=DescribeImages&Version=2016-11-15&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={credential}&X-Amz-Date={TS}&X-Amz-Expires=300&X-Amz-SignedHeaders={}",
        names.join("%3B")
    );
    let sig = s.sign(
        "POST",
        "/services/compute/",
        &query,
        signed_headers,
        payload_hash,
    );
    format!("{query}&X-Amz-Signature={sig}")
}

#[test]
fn presigned_query_requests_cover_their_body_or_carry_none() {
    let headers = header_map(&[("host", "127.0.0.1:8773")]);
    let signed = [("host", "127.0.0.1:8773")];
    let empty_hash = sha256_hex(b"");
    let query = presigned_query(&signed, &empty_hash);
    let req = RequestParts {
        method: "POST",
        raw_path: "/services/compute/",
        raw_query: &query,
        headers: &headers,
    };
    assert!(verify_query(&req, b"", &creds(), at(TS)).is_ok());
    // Whoever holds the URL adds a parameter in the body: the signed hash does not match.
    assert_eq!(
        verify_query(&req, b"Owner.1=self", &creds(), at(TS)).unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );

    // Signed as UNSIGNED-PAYLOAD (the header sent beside the URL): only an empty body.
    let headers = header_map(&[
        ("host", "127.0.0.1:8773"),
        ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
    ]);
    let query = presigned_query(&signed, "UNSIGNED-PAYLOAD");
    let req = RequestParts {
        method: "POST",
        raw_path: "/services/compute/",
        raw_query: &query,
        headers: &headers,
    };
    assert!(verify_query(&req, b"", &creds(), at(TS)).is_ok());
    assert!(matches!(
        verify_query(&req, b"Action=RunInstances&ImageId=emi-1", &creds(), at(TS)),
        Err(AuthError::InvalidArgument(_))
    ));
}

#[test]
fn host_must_be_signed() {
    let s = signer("us-east-1", "s3");
    let signed = [
        ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
        ("x-amz-date", TS),
    ];
    let sig = s.sign("GET", "/b/k", "", &signed, "UNSIGNED-PAYLOAD");
    let auth = s.authorization(AKID, &signed, &sig);
    let headers = header_map(&[
        ("host", "127.0.0.1:8773"),
        ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
        ("x-amz-date", TS),
        ("authorization", &auth),
    ]);
    let req = RequestParts {
        method: "GET",
        raw_path: "/b/k",
        raw_query: "",
        headers: &headers,
    };
    assert!(matches!(
        verify_s3(&req, "/b/k", &creds(), at(TS)),
        Err(AuthError::InvalidArgument(m)) if m.contains("host")
    ));
    let query = presigned_query(&[("x-amz-date", TS)], &sha256_hex(b""));
    let req = RequestParts {
        method: "POST",
        raw_path: "/services/compute/",
        raw_query: &query,
        headers: &headers,
    };
    assert!(matches!(
        verify_query(&req, b"", &creds(), at(TS)),
        Err(AuthError::InvalidArgument(m)) if m.contains("host")
    ));
}

/// A verifier that holds no secret: the questions of a dry run, answered by the key store,
/// and a second run with only those answers. Returns what the second run concludes.
fn verify_remotely(
    verify: impl Fn(&dyn CredentialSource) -> Result<Authenticated, AuthError>,
    store: &dyn CredentialSource,
) -> Result<Authenticated, AuthError> {
    let answered = questions_of(&verify)
        .into_iter()
        .fold(Answered::default(), |answered, q| {
            let a = answer(store, &q);
            answered.with(q, a)
        });
    verify(&answered)
}

#[test]
fn a_verifier_without_secrets_agrees_with_the_key_store() {
    // SigV4: the store hands over the scope's signing key, never the secret.
    let s = signer("eucalyptus", "s3");
    let signed = [
        ("host", "127.0.0.1:8773"),
        ("x-amz-content-sha256", "UNSIGNED-PAYLOAD"),
        ("x-amz-date", TS),
    ];
    let sig = s.sign("GET", "/b/k", "", &signed, "UNSIGNED-PAYLOAD");
    let auth = s.authorization(AKID, &signed, &sig);
    let mut all = signed.to_vec();
    all.push(("authorization", &auth));
    let headers = header_map(&all);
    let req = RequestParts {
        method: "GET",
        raw_path: "/b/k",
        raw_query: "",
        headers: &headers,
    };
    let questions = questions_of(|keys| verify_s3(&req, "/b/k", keys, at(TS)));
    assert_eq!(
        questions,
        [KeyQuestion::SigningKey {
            access_key_id: AKID.into(),
            scope: SigningScope {
                date: TS[..8].into(),
                region: "eucalyptus".into(),
                service: "s3".into(),
            },
        }]
    );
    match answer(&creds(), &questions[0]) {
        KeyAnswer::SigningKey { signing_key, .. } => {
            assert_eq!(signing_key, hex::encode(s.key()));
            assert!(!signing_key.contains(&hex::encode(SECRET)));
        }
        other => panic!("{other:?}"),
    }
    let remote = verify_remotely(|keys| verify_s3(&req, "/b/k", keys, at(TS)), &creds());
    assert!(
        matches!(remote, Ok(Authenticated::Signed { .. })),
        "{remote:?}"
    );
    // The signing key of one scope proves nothing of another: an answer for the s3 scope
    // does not verify a request signed for ec2.
    let ec2 = signer("eucalyptus", "ec2");
    let sig = ec2.sign("GET", "/b/k", "", &signed, "UNSIGNED-PAYLOAD");
    let auth = ec2.authorization(AKID, &signed, &sig);
    let mut all = signed.to_vec();
    all.push(("authorization", &auth));
    let ec2_headers = header_map(&all);
    let ec2_req = RequestParts {
        headers: &ec2_headers,
        ..req
    };
    let s3_answers = questions.iter().fold(Answered::default(), |a, q| {
        let answer = answer(&creds(), q);
        a.with(q.clone(), answer)
    });
    assert_eq!(
        verify_s3(&ec2_req, "/b/k", &s3_answers, at(TS)).unwrap_err(),
        AuthError::InvalidAccessKeyId
    );

    // SigV2: the store says whether the signature is the key's.
    let date = "Wed, 25 Nov 2026 14:57:36 GMT";
    let sts = format!("GET\n\n\n{date}\n/b/k");
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, SECRET.as_bytes());
    let good = base64::engine::general_purpose::STANDARD.encode(hmac::sign(&key, sts.as_bytes()));
    for (signature, expected) in [(good.as_str(), true), ("AAAA", false)] {
        let auth = format!("AWS {AKID}:{signature}");
        let headers = header_map(&[
            ("host", "127.0.0.1:8773"),
            ("date", date),
            ("authorization", &auth),
        ]);
        let req = RequestParts {
            method: "GET",
            raw_path: "/b/k",
            raw_query: "",
            headers: &headers,
        };
        let remote = verify_remotely(|keys| verify_s3(&req, "/b/k", keys, at(TS)), &creds());
        assert_eq!(remote.is_ok(), expected, "{remote:?}");
        if !expected {
            assert_eq!(remote.unwrap_err(), AuthError::SignatureDoesNotMatch);
        }
    }
}

//! AWS's published examples, computed by AWS, not by us: the SigV4 test suite (`get-vanilla`
//! and friends), the S3 SigV4 header, presigned and chunked-upload examples, and the S3 SigV2
//! examples ("Authenticating requests (AWS signature version 2)").

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

/// Decoded payload and trailers.
type Decoded = (Vec<u8>, Vec<(String, String)>);

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{at, header_map, StaticCreds};
use identity::{verify_query, verify_s3, AuthError, Authenticated, Payload, RequestParts};

const SUITE_AKID: &str = "AKIDEXAMPLE";
const SUITE_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const S3_AKID: &str = "AKIAIOSFODNN7EXAMPLE";
const S3_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn suite(
    method: &str,
    path: &str,
    query: &str,
    extra: &[(&str, &str)],
    body: &[u8],
    signed: &str,
    sig: &str,
) -> Result<Authenticated, AuthError> {
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={SUITE_AKID}/20150830/us-east-1/service/aws4_request, SignedHeaders={signed}, Signature={sig}"
    );
    let mut pairs = vec![
        ("host", "example.amazonaws.com"),
        ("x-amz-date", "20150830T123600Z"),
    ];
    pairs.extend_from_slice(extra);
    pairs.push(("authorization", &auth));
    let headers = header_map(&pairs);
    let req = RequestParts {
        method,
        raw_path: path,
        raw_query: query,
        headers: &headers,
    };
    verify_query(
        &req,
        body,
        &StaticCreds::new(SUITE_AKID, SUITE_SECRET),
        at("20150830T123600Z"),
    )
}

#[test]
fn sigv4_suite_get_vanilla() {
    let sig = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
    assert!(matches!(
        suite("GET", "/", "", &[], b"", "host;x-amz-date", sig),
        Ok(Authenticated::Signed { .. })
    ));
    assert!(matches!(
        suite("GET", "/x", "", &[], b"", "host;x-amz-date", sig),
        Err(AuthError::SignatureDoesNotMatch)
    ));
    assert!(matches!(
        suite("POST", "/", "", &[], b"", "host;x-amz-date", sig),
        Err(AuthError::SignatureDoesNotMatch)
    ));
}

#[test]
fn sigv4_suite_query_order_and_normalized_paths() {
    // get-vanilla-query-order-key-case: parameters are sorted.
    let sig = "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500";
    assert!(suite(
        "GET",
        "/",
        "Param2=value2&Param1=value1",
        &[],
        b"",
        "host;x-amz-date",
        sig
    )
    .is_ok());
    assert!(matches!(
        suite(
            "GET",
            "/",
            "Param2=value2&Param1=value3",
            &[],
            b"",
            "host;x-amz-date",
            sig
        ),
        Err(AuthError::SignatureDoesNotMatch)
    ));
    // get-slash, get-slash-dot-slash, get-slashes-... normalize to get-vanilla's "/" for
    // services other than S3.
    let vanilla = "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
    for path in ["//", "/./", "/example/.."] {
        assert!(
            suite("GET", path, "", &[], b"", "host;x-amz-date", vanilla).is_ok(),
            "{path}"
        );
    }
}

#[test]
fn sigv4_suite_post_form_body() {
    let sig = "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a";
    let ct = [("content-type", "application/x-www-form-urlencoded")];
    let ok = suite(
        "POST",
        "/",
        "",
        &ct,
        b"Param1=value1",
        "content-type;host;x-amz-date",
        sig,
    );
    match ok {
        Ok(Authenticated::Signed {
            principal,
            payload: Payload::Sha256(h),
        }) => {
            assert_eq!(principal.access_key_id, SUITE_AKID);
            assert_eq!(
                hex::encode(h),
                "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e"
            );
        }
        other => panic!("{other:?}"),
    }
    // The body is covered through its hash.
    assert!(matches!(
        suite(
            "POST",
            "/",
            "",
            &ct,
            b"Param1=value2",
            "content-type;host;x-amz-date",
            sig
        ),
        Err(AuthError::SignatureDoesNotMatch)
    ));
}

fn s3_get(
    path: &str,
    query: &str,
    extra: &[(&str, &str)],
    signed: &str,
    sig: &str,
) -> Result<Authenticated, AuthError> {
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={S3_AKID}/20130524/us-east-1/s3/aws4_request,SignedHeaders={signed},Signature={sig}"
    );
    let mut pairs = vec![
        ("host", "examplebucket.s3.amazonaws.com"),
        ("x-amz-date", "20130524T000000Z"),
    ];
    pairs.extend_from_slice(extra);
    pairs.push(("authorization", &auth));
    let headers = header_map(&pairs);
    let method = if extra.iter().any(|(k, _)| *k == "x-amz-storage-class") {
        "PUT"
    } else {
        "GET"
    };
    let req = RequestParts {
        method,
        raw_path: path,
        raw_query: query,
        headers: &headers,
    };
    verify_s3(
        &req,
        "/examplebucket/unused",
        &StaticCreds::new(S3_AKID, S3_SECRET),
        at("20130524T000000Z"),
    )
}

#[test]
fn s3_sigv4_header_examples() {
    let empty = [("x-amz-content-sha256", EMPTY_SHA256)];
    // GET Object with a Range header.
    let range = [
        ("range", "bytes=0-9"),
        ("x-amz-content-sha256", EMPTY_SHA256),
    ];
    let r = s3_get(
        "/test.txt",
        "",
        &range,
        "host;range;x-amz-content-sha256;x-amz-date",
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
    );
    assert!(
        matches!(
            r,
            Ok(Authenticated::Signed {
                payload: Payload::Sha256(_),
                ..
            })
        ),
        "{r:?}"
    );
    let tampered = [
        ("range", "bytes=0-10"),
        ("x-amz-content-sha256", EMPTY_SHA256),
    ];
    let r = s3_get(
        "/test.txt",
        "",
        &tampered,
        "host;range;x-amz-content-sha256;x-amz-date",
        "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
    );
    assert!(matches!(r, Err(AuthError::SignatureDoesNotMatch)));
    // GET Bucket lifecycle (a valueless sub-resource) and list objects (sorted query).
    let r = s3_get(
        "/",
        "lifecycle",
        &empty,
        "host;x-amz-content-sha256;x-amz-date",
        "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
    );
    assert!(r.is_ok(), "{r:?}");
    let r = s3_get(
        "/",
        "max-keys=2&prefix=J",
        &empty,
        "host;x-amz-content-sha256;x-amz-date",
        "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
    );
    assert!(r.is_ok(), "{r:?}");
    // PUT Object: `$` in the key, a Date header besides x-amz-date.
    let put = [
        ("date", "Fri, 24 May 2013 00:00:00 GMT"),
        ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        (
            "x-amz-content-sha256",
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072",
        ),
    ];
    let signed = "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class";
    let sig = "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd";
    for path in ["/test%24file.text", "/test$file.text"] {
        match s3_get(path, "", &put, signed, sig) {
            Ok(Authenticated::Signed {
                payload: Payload::Sha256(h),
                ..
            }) => {
                assert_eq!(
                    h.as_slice(),
                    ring::digest::digest(&ring::digest::SHA256, b"Welcome to Amazon S3.").as_ref()
                );
            }
            other => panic!("{path}: {other:?}"),
        }
    }
}

fn presigned(now: SystemTime, query_override: Option<&str>) -> Result<Authenticated, AuthError> {
    let query = query_override.unwrap_or(
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404",
    );
    let headers = header_map(&[("host", "examplebucket.s3.amazonaws.com")]);
    let req = RequestParts {
        method: "GET",
        raw_path: "/test.txt",
        raw_query: query,
        headers: &headers,
    };
    verify_s3(
        &req,
        "/examplebucket/test.txt",
        &StaticCreds::new(S3_AKID, S3_SECRET),
        now,
    )
}

#[test]
fn s3_presigned_url_example() {
    let t0 = at("20130524T000000Z");
    let r = presigned(t0 + Duration::from_secs(3600), None);
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
    assert!(presigned(t0 + Duration::from_secs(86400), None).is_ok());
    let expired = presigned(t0 + Duration::from_secs(86401), None).unwrap_err();
    assert_eq!(expired, AuthError::Expired);
    assert_eq!(
        (expired.s3_code(), expired.http_status()),
        ("AccessDenied", 403)
    );
    assert_eq!(expired.to_string(), "Request has expired");
    assert_eq!(
        presigned(t0 - Duration::from_secs(3600), None).unwrap_err(),
        AuthError::NotYetValid
    );
    // Changing any signed parameter breaks it; more than 7 days is refused outright.
    let longer = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86401&X-Amz-SignedHeaders=host&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";
    assert_eq!(
        presigned(t0, Some(longer)).unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );
    let week = longer.replace("86401", "604801");
    assert!(matches!(
        presigned(t0, Some(&week)),
        Err(AuthError::AuthorizationQueryParametersError(_))
    ));
    let extra = format!("{}&x-id=GetObject", longer.replace("86401", "86400"));
    assert_eq!(
        presigned(t0, Some(&extra)).unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );
}

fn chunked_body(sigs: [&str; 3]) -> Vec<u8> {
    let mut body = format!("10000;chunk-signature={}\r\n", sigs[0]).into_bytes();
    body.extend(std::iter::repeat_n(b'a', 65536));
    body.extend_from_slice(format!("\r\n400;chunk-signature={}\r\n", sigs[1]).as_bytes());
    body.extend(std::iter::repeat_n(b'a', 1024));
    body.extend_from_slice(format!("\r\n0;chunk-signature={}\r\n\r\n", sigs[2]).as_bytes());
    body
}

const CHUNK_SIGS: [&str; 3] = [
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
];

fn chunked_decoder() -> identity::AwsChunkedDecoder {
    let headers = header_map(&[
        ("host", "s3.amazonaws.com"),
        ("x-amz-date", "20130524T000000Z"),
        ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
        (
            "authorization",
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;x-amz-storage-class,Signature=4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
        ),
        ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
        ("content-encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", "66560"),
        ("content-length", "66824"),
    ]);
    let req = RequestParts {
        method: "PUT",
        raw_path: "/examplebucket/chunkObject.txt",
        raw_query: "",
        headers: &headers,
    };
    match verify_s3(
        &req,
        "/examplebucket/chunkObject.txt",
        &StaticCreds::new(S3_AKID, S3_SECRET),
        at("20130524T000000Z"),
    ) {
        Ok(Authenticated::Signed {
            payload: Payload::Streaming(d),
            ..
        }) => d,
        other => panic!("{other:?}"),
    }
}

fn decode_in_slices(
    mut d: identity::AwsChunkedDecoder,
    body: &[u8],
    slice: usize,
) -> Result<Decoded, AuthError> {
    let mut out = Vec::new();
    for piece in body.chunks(slice) {
        out.extend_from_slice(&d.push(piece)?);
    }
    Ok((out, d.finish()?))
}

#[test]
fn s3_streaming_chunked_upload_example() {
    let body = chunked_body(CHUNK_SIGS);
    assert_eq!(body.len(), 66824);
    for slice in [1, 7, 100, 8192, 65536, 70000, body.len()] {
        let (data, trailers) = decode_in_slices(chunked_decoder(), &body, slice).unwrap();
        assert_eq!(data.len(), 66560, "slice {slice}");
        assert!(data.iter().all(|b| *b == b'a'));
        assert!(trailers.is_empty());
    }
    // A flipped data byte breaks its chunk's signature.
    let mut flipped = body.clone();
    flipped[200] = b'b';
    assert_eq!(
        decode_in_slices(chunked_decoder(), &flipped, 4096).unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );
    // Reordered or replaced signatures break the chain.
    let swapped = chunked_body([CHUNK_SIGS[1], CHUNK_SIGS[0], CHUNK_SIGS[2]]);
    assert_eq!(
        decode_in_slices(chunked_decoder(), &swapped, 4096).unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );
    let bad_final = chunked_body([CHUNK_SIGS[0], CHUNK_SIGS[1], CHUNK_SIGS[0]]);
    assert_eq!(
        decode_in_slices(chunked_decoder(), &bad_final, 4096).unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );
    // A body cut before the final chunk is incomplete.
    let cut = &body[..body.len() - 90];
    assert_eq!(
        decode_in_slices(chunked_decoder(), cut, 4096).unwrap_err(),
        AuthError::IncompleteBody
    );
    // Data after the final chunk is refused.
    let mut extra = body.clone();
    extra.extend_from_slice(b"5\r\nhello\r\n");
    assert!(matches!(
        decode_in_slices(chunked_decoder(), &extra, 4096),
        Err(AuthError::InvalidChunk(_))
    ));
}

fn v2(
    method: &str,
    path: &str,
    query: &str,
    resource: &str,
    extra: &[(&str, &str)],
    sig: &str,
    now: SystemTime,
) -> Result<Authenticated, AuthError> {
    let auth = format!("AWS {S3_AKID}:{sig}");
    let mut pairs: Vec<(&str, &str)> = extra.to_vec();
    pairs.push(("authorization", &auth));
    let headers = header_map(&pairs);
    let req = RequestParts {
        method,
        raw_path: path,
        raw_query: query,
        headers: &headers,
    };
    verify_s3(&req, resource, &StaticCreds::new(S3_AKID, S3_SECRET), now)
}

fn date(s: &str) -> SystemTime {
    httpdate::parse_http_date(&s.replace("+0000", "GMT")).unwrap()
}

#[test]
fn s3_sigv2_header_examples() {
    let d = "Tue, 27 Mar 2007 19:36:42 +0000";
    let host = ("host", "johnsmith.s3.amazonaws.com");
    let get = v2(
        "GET",
        "/photos/puppy.jpg",
        "",
        "/johnsmith/photos/puppy.jpg",
        &[host, ("date", d)],
        "bWq2s1WEIj+Ydj0vQ697zp+IXMU=",
        date(d),
    );
    assert!(
        matches!(
            get,
            Ok(Authenticated::Signed {
                payload: Payload::Unverified,
                ..
            })
        ),
        "{get:?}"
    );
    let wrong = v2(
        "GET",
        "/photos/puppy.jpg",
        "",
        "/johnsmith/photos/kitten.jpg",
        &[host, ("date", d)],
        "bWq2s1WEIj+Ydj0vQ697zp+IXMU=",
        date(d),
    );
    assert_eq!(wrong.unwrap_err(), AuthError::SignatureDoesNotMatch);

    let d = "Tue, 27 Mar 2007 21:15:45 +0000";
    let put = v2(
        "PUT",
        "/photos/puppy.jpg",
        "",
        "/johnsmith/photos/puppy.jpg",
        &[
            host,
            ("date", d),
            ("content-type", "image/jpeg"),
            ("content-length", "94328"),
        ],
        "MyyxeRY7whkBe+bq8fHCL/2kKUg=",
        date(d),
    );
    assert!(put.is_ok(), "{put:?}");

    // List: prefix, max-keys and marker are not signed.
    let d = "Tue, 27 Mar 2007 19:42:41 +0000";
    let list = v2(
        "GET",
        "/",
        "prefix=photos&max-keys=50&marker=puppy",
        "/johnsmith/",
        &[host, ("date", d), ("user-agent", "Mozilla/5.0")],
        "htDYFYduRNen8P9ZfE/s9SuKy0U=",
        date(d),
    );
    assert!(list.is_ok(), "{list:?}");

    // Fetch the ACL: the `acl` sub-resource is signed.
    let d = "Tue, 27 Mar 2007 19:44:46 +0000";
    let acl = v2(
        "GET",
        "/",
        "acl",
        "/johnsmith/",
        &[host, ("date", d)],
        "c2WLPFtWHVgbEmeEG93a4cG37dM=",
        date(d),
    );
    assert!(acl.is_ok(), "{acl:?}");
    let no_acl = v2(
        "GET",
        "/",
        "",
        "/johnsmith/",
        &[host, ("date", d)],
        "c2WLPFtWHVgbEmeEG93a4cG37dM=",
        date(d),
    );
    assert_eq!(no_acl.unwrap_err(), AuthError::SignatureDoesNotMatch);

    // Upload with repeated x-amz-meta headers, Content-MD5 and a CNAME bucket.
    let d = "Tue, 27 Mar 2007 21:06:08 +0000";
    let upload = [
        ("host", "static.johnsmith.net:8080"),
        ("date", d),
        ("x-amz-acl", "public-read"),
        ("content-type", "application/x-download"),
        ("content-md5", "4gJE4saaMU4BqNR0kLY+lw=="),
        ("x-amz-meta-reviewedby", "joe@johnsmith.net"),
        ("x-amz-meta-reviewedby", "jane@johnsmith.net"),
        ("x-amz-meta-filechecksum", "0x02661779"),
        ("x-amz-meta-checksumalgorithm", "crc32"),
        ("content-disposition", "attachment; filename=database.dat"),
        ("content-encoding", "gzip"),
        ("content-length", "5913339"),
    ];
    let r = v2(
        "PUT",
        "/db-backup.dat.gz",
        "",
        "/static.johnsmith.net/db-backup.dat.gz",
        &upload,
        "ilyl83RwaSoYIEdixDQcA4OnAnc=",
        date(d),
    );
    assert!(r.is_ok(), "{r:?}");
    let mut changed = upload.to_vec();
    changed[4] = ("content-md5", "1B2M2Y8AsgTpgAmY7PhCfg==");
    let r = v2(
        "PUT",
        "/db-backup.dat.gz",
        "",
        "/static.johnsmith.net/db-backup.dat.gz",
        &changed,
        "ilyl83RwaSoYIEdixDQcA4OnAnc=",
        date(d),
    );
    assert_eq!(r.unwrap_err(), AuthError::SignatureDoesNotMatch);

    // Unicode keys: the resource is signed as received, still percent-encoded.
    let d = "Wed, 28 Mar 2007 01:49:49 +0000";
    let path = "/dictionary/fran%C3%A7ais/pr%c3%a9f%c3%a8re";
    let r = v2(
        "GET",
        path,
        "",
        path,
        &[("host", "s3.amazonaws.com"), ("date", d)],
        "DNEZGsoieTZ92F3bUfSPQcbGmlM=",
        date(d),
    );
    assert!(r.is_ok(), "{r:?}");

    // Date skew.
    let d = "Tue, 27 Mar 2007 19:36:42 +0000";
    let late = v2(
        "GET",
        "/photos/puppy.jpg",
        "",
        "/johnsmith/photos/puppy.jpg",
        &[host, ("date", d)],
        "bWq2s1WEIj+Ydj0vQ697zp+IXMU=",
        date(d) + Duration::from_secs(16 * 60),
    );
    assert_eq!(late.unwrap_err(), AuthError::RequestTimeTooSkewed);
}

#[test]
fn s3_sigv2_query_example() {
    let headers = header_map(&[("host", "johnsmith.s3.amazonaws.com")]);
    let run = |query: &str, now: SystemTime| {
        let req = RequestParts {
            method: "GET",
            raw_path: "/photos/puppy.jpg",
            raw_query: query,
            headers: &headers,
        };
        verify_s3(
            &req,
            "/johnsmith/photos/puppy.jpg",
            &StaticCreds::new(S3_AKID, S3_SECRET),
            now,
        )
    };
    let q = "AWSAccessKeyId=AKIAIOSFODNN7EXAMPLE&Expires=1175139620&Signature=NpgCjnDzrM%2BWFzoENXmpNDUsSn8%3D";
    let before = UNIX_EPOCH + Duration::from_secs(1_175_139_000);
    assert!(matches!(run(q, before), Ok(Authenticated::Signed { .. })));
    // A client that leaves `+` unescaped.
    assert!(run(&q.replace("%2B", "+"), before).is_ok());
    assert_eq!(
        run(q, UNIX_EPOCH + Duration::from_secs(1_175_139_621)).unwrap_err(),
        AuthError::Expired
    );
    assert_eq!(
        run(&q.replace("1175139620", "1175139621"), before).unwrap_err(),
        AuthError::SignatureDoesNotMatch
    );
}

//! The 38 requests euca2ools 3.4.1 really sent (S3 with SigV2, EC2 with SigV4): each verifies
//! with the clock at its date, and fails when anything its signature covers changes.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use common::{header_map, StaticCreds};
use http::HeaderMap;
use identity::{verify_query, verify_s3, AuthError, Authenticated, Payload, RequestParts};
use serde_json::Value;

const AKID: &str = "AKIAEUCATEST00000001";
const SECRET: &str = "euca2oolsTestSecretKey0000000000000000000";

struct Captured {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Captured {
    fn is_s3(&self) -> bool {
        self.header("authorization")
            .is_some_and(|a| a.starts_with("AWS "))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The request's own date, as the clock for its verification.
    fn date(&self) -> SystemTime {
        if let Some(d) = self.header("x-amz-date") {
            return common::at(d);
        }
        let d = self.header("date").unwrap().replace("-0000", "GMT");
        httpdate::parse_http_date(&d).unwrap()
    }

    fn header_map(&self) -> HeaderMap {
        let pairs: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        header_map(&pairs)
    }

    fn verify(&self, creds: &StaticCreds, now: SystemTime) -> Result<Authenticated, AuthError> {
        let headers = self.header_map();
        let req = RequestParts {
            method: &self.method,
            raw_path: &self.path,
            raw_query: &self.query,
            headers: &headers,
        };
        if self.is_s3() {
            verify_s3(&req, &self.path, creds, now)
        } else {
            verify_query(&req, self.body.as_deref().unwrap_or_default(), creds, now)
        }
    }
}

fn load() -> Vec<Captured> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/vectors/signatures/euca2ools-3.4-requests.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            let query: Vec<String> = v["query"]
                .as_array()
                .unwrap()
                .iter()
                .map(|pair| {
                    let k = pair[0].as_str().unwrap();
                    let val = pair[1].as_str().unwrap();
                    format!("{}={}", enc(k), enc(val))
                })
                .collect();
            Captured {
                method: v["method"].as_str().unwrap().to_owned(),
                path: v["path"].as_str().unwrap().to_owned(),
                query: query.join("&"),
                headers: v["headers"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, val)| (k.clone(), val.as_str().unwrap().to_owned()))
                    .collect(),
                body: v["body"].as_str().map(|b| b.as_bytes().to_vec()),
            }
        })
        .collect()
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn creds() -> StaticCreds {
    StaticCreds::new(AKID, SECRET)
}

fn assert_rejected(result: Result<Authenticated, AuthError>, what: &str, i: usize) {
    match result {
        Err(AuthError::SignatureDoesNotMatch | AuthError::ContentSha256Mismatch) => {}
        other => panic!("request {i}: changing {what} should break the signature, got {other:?}"),
    }
}

#[test]
fn all_38_requests_verify() {
    let requests = load();
    assert_eq!(requests.len(), 38);
    let (mut s3, mut ec2) = (0, 0);
    for (i, r) in requests.iter().enumerate() {
        match r.verify(&creds(), r.date()) {
            Ok(Authenticated::Signed { principal, payload }) => {
                assert_eq!(principal.access_key_id, AKID);
                if r.is_s3() {
                    s3 += 1;
                    assert!(matches!(payload, Payload::Unverified));
                } else {
                    ec2 += 1;
                    assert!(
                        matches!(payload, Payload::Sha256(_)),
                        "request {i}: {payload:?}"
                    );
                }
            }
            other => panic!("request {i} ({} {}): {other:?}", r.method, r.path),
        }
    }
    assert_eq!((s3, ec2), (11, 27));
}

#[test]
fn a_wrong_secret_or_unknown_key_fails() {
    for (i, r) in load().iter().enumerate() {
        let wrong = StaticCreds::new(AKID, "euca2oolsTestSecretKey0000000000000000001");
        assert_rejected(r.verify(&wrong, r.date()), "the secret", i);
        let other = StaticCreds::new("AKIAOTHER00000000000", SECRET);
        assert!(
            matches!(
                r.verify(&other, r.date()),
                Err(AuthError::InvalidAccessKeyId)
            ),
            "request {i}"
        );
    }
}

#[test]
fn the_clock_allows_15_minutes_of_skew() {
    for (i, r) in load().iter().enumerate() {
        let d = r.date();
        assert!(
            r.verify(&creds(), d + Duration::from_secs(14 * 60)).is_ok(),
            "request {i}"
        );
        assert!(
            r.verify(&creds(), d - Duration::from_secs(14 * 60)).is_ok(),
            "request {i}"
        );
        assert!(matches!(
            r.verify(&creds(), d + Duration::from_secs(16 * 60)),
            Err(AuthError::RequestTimeTooSkewed)
        ));
        assert!(matches!(
            r.verify(&creds(), d - Duration::from_secs(16 * 60)),
            Err(AuthError::RequestTimeTooSkewed)
        ));
    }
}

#[test]
fn changing_the_method_path_or_query_fails() {
    for (i, r) in load().iter().enumerate() {
        let mut m = clone(r);
        m.method = if r.method == "GET" {
            "HEAD".into()
        } else {
            "GET".into()
        };
        assert_rejected(m.verify(&creds(), r.date()), "the method", i);

        let mut m = clone(r);
        m.path = format!("{}x", r.path);
        assert_rejected(m.verify(&creds(), r.date()), "the path", i);

        // A signed sub-resource for S3, any parameter for SigV4.
        let mut m = clone(r);
        m.query = if r.query.is_empty() {
            "acl".into()
        } else {
            format!("{}&acl", r.query)
        };
        assert_rejected(m.verify(&creds(), r.date()), "the query", i);
    }
}

#[test]
fn changing_any_signed_header_fails() {
    for (i, r) in load().iter().enumerate() {
        let covered: Vec<String> = if r.is_s3() {
            // SigV2 covers Content-MD5, Content-Type, Date and x-amz-*.
            r.headers
                .iter()
                .map(|(k, _)| k.to_ascii_lowercase())
                .filter(|k| k == "date" || k.starts_with("x-amz-"))
                .collect()
        } else {
            let auth = r.header("authorization").unwrap();
            let signed = auth
                .split("SignedHeaders=")
                .nth(1)
                .unwrap()
                .split(',')
                .next()
                .unwrap();
            signed.split(';').map(str::to_owned).collect()
        };
        assert!(!covered.is_empty());
        for name in &covered {
            let mut m = clone(r);
            for (k, v) in m.headers.iter_mut() {
                if k.eq_ignore_ascii_case(name) {
                    if name == "date" || name == "x-amz-date" {
                        // Still a valid date, one second later.
                        *v = if name == "date" {
                            bump_http(v)
                        } else {
                            bump(v)
                        };
                    } else if name == "x-amz-content-sha256" {
                        // Still a well-formed hash, of another body.
                        let last = if v.ends_with('0') { '1' } else { '0' };
                        v.pop();
                        v.push(last);
                    } else {
                        v.push('0');
                    }
                }
            }
            assert_rejected(m.verify(&creds(), r.date()), name, i);
        }
        if r.is_s3() {
            for (name, value) in [
                ("content-type", "text/plain"),
                ("content-md5", "1B2M2Y8AsgTpgAmY7PhCfg=="),
                ("x-amz-meta-a", "b"),
            ] {
                let mut m = clone(r);
                m.headers.push((name.into(), value.into()));
                assert_rejected(m.verify(&creds(), r.date()), name, i);
            }
        }
    }
}

#[test]
fn changing_the_ec2_body_fails_and_s3_v2_ignores_what_it_does_not_sign() {
    for (i, r) in load().iter().enumerate() {
        if r.is_s3() {
            // max-keys and unsigned headers are not covered by SigV2.
            let mut m = clone(r);
            m.query = if r.query.is_empty() {
                "max-keys=5".into()
            } else {
                r.query.replace("max-keys=0", "max-keys=1")
            };
            m.headers.push(("user-agent".into(), "other".into()));
            assert!(m.verify(&creds(), r.date()).is_ok(), "request {i}");
        } else {
            let mut m = clone(r);
            let mut body = m.body.take().unwrap();
            body.extend_from_slice(b"&DryRun=true");
            m.body = Some(body);
            assert!(
                matches!(
                    m.verify(&creds(), r.date()),
                    Err(AuthError::ContentSha256Mismatch)
                ),
                "request {i}"
            );
        }
    }
}

/// One second later, in euca2ools' `Wed, 25 Nov 2026 14:57:34 -0000` form.
fn bump_http(date: &str) -> String {
    let t =
        httpdate::parse_http_date(&date.replace("-0000", "GMT")).unwrap() + Duration::from_secs(1);
    httpdate::fmt_http_date(t).replace("GMT", "-0000")
}

/// One second later, in `YYYYMMDDTHHMMSSZ`.
fn bump(amz: &str) -> String {
    let t = common::at(amz) + Duration::from_secs(1);
    let dt = time::OffsetDateTime::from(t);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        dt.year(),
        u8::from(dt.month()),
        dt.day(),
        dt.hour(),
        dt.minute(),
        dt.second()
    )
}

fn clone(r: &Captured) -> Captured {
    Captured {
        method: r.method.clone(),
        path: r.path.clone(),
        query: r.query.clone(),
        headers: r.headers.clone(),
        body: r.body.clone(),
    }
}

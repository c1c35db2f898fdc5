//! What the Walrus test files share: opening a Walrus on a folder, and reading its answers.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;
use identity::Identity;
use walrus::{Walrus, WalrusConfig};

/// Opens a Walrus on `dir` as the `koala` binary does, with virtual hosts under
/// `s3.koala.test`, collecting unused plain images after `grace`.
pub fn open_walrus(dir: &Path, identity: Identity, grace: Duration) -> Walrus {
    Walrus::open(
        WalrusConfig {
            data_dir: dir.to_owned(),
            virtual_host_domain: Some("s3.koala.test".into()),
            region: "us-east-1".into(),
            image_grace: grace,
            object_data: walrus::ObjectData::Files,
        },
        Arc::new(identity),
    )
    .expect("walrus opens")
}

/// An answer, its body read in full.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Resp {
    /// Reads `response` to its end.
    pub async fn read<B>(response: http::Response<B>) -> Resp
    where
        B: http_body::Body,
        B::Error: std::fmt::Debug,
    {
        let (parts, body) = response.into_parts();
        Resp {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.expect("body").to_bytes(),
        }
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The S3 error code of an error answer (`<Code>`), empty if none.
    pub fn code(&self) -> String {
        between(&self.text(), "<Code>", "</Code>").unwrap_or_default()
    }

    /// A header's value, empty if absent.
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default()
    }

    /// Asserts the status, showing the start of the body when it is not.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Resp {
        let shown = &self.body[..self.body.len().min(2000)];
        assert_eq!(
            self.status.as_u16(),
            status,
            "body: {}",
            String::from_utf8_lossy(shown)
        );
        self
    }

    /// Asserts the status and the S3 error code.
    #[track_caller]
    pub fn expect_err(&self, status: u16, code: &str) {
        self.expect(status);
        assert_eq!(self.code(), code, "body: {}", self.text());
    }
}

/// The text between the first `a` and the `b` after it.
pub fn between(s: &str, a: &str, b: &str) -> Option<String> {
    let start = s.find(a)? + a.len();
    let end = s[start..].find(b)? + start;
    Some(s[start..end].to_owned())
}

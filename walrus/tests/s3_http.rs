//! End-to-end tests of the S3 HTTP layer: a real Walrus on a temp dir with a real Identity,
//! served on loopback by axum, driven by requests signed with `aws-sigv4` through `rpc::signer` (a signer
//! written independently of our verifier), sent by hyper's client.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use identity::Credentials;
use md5::Digest;
use rpc::signer::{SignableBody, Signer, Style};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::{between, open_walrus, Resp};

struct Server {
    addr: SocketAddr,
    admin: Credentials,
    other: Credentials,
    client: Client<HttpConnector, Full<Bytes>>,
    _dir: tempfile::TempDir,
}

fn all_between(s: &str, a: &str, b: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find(a) {
        let after = &rest[i + a.len()..];
        let Some(j) = after.find(b) else { break };
        out.push(after[..j].to_owned());
        rest = &after[j + b.len()..];
    }
    out
}

fn md5_hex(data: &[u8]) -> String {
    hex::encode(md5::Md5::digest(data))
}

fn b64(data: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, data)
}

#[derive(Clone, Copy)]
enum Auth<'a> {
    Anonymous,
    /// SigV4 header, payload hash signed.
    V4(&'a Credentials),
    /// SigV4 header with a wrong secret.
    BadSecret(&'a Credentials),
    /// SigV4 header, `UNSIGNED-PAYLOAD`.
    Unsigned(&'a Credentials),
    /// Presigned URL valid for the duration, signed at the given time.
    Presigned(&'a Credentials, Duration, SystemTime),
    /// aws-chunked with chunk signatures (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`); `true`
    /// tampers with one byte of the second chunk after signing.
    Streaming(&'a Credentials, bool),
    /// aws-chunked with a CRC32 trailer (`STREAMING-UNSIGNED-PAYLOAD-TRAILER`).
    Trailer(&'a Credentials, Option<&'a str>),
}

struct Req<'a> {
    server: &'a Server,
    method: Method,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    auth: Auth<'a>,
    host: Option<String>,
}

impl<'a> Req<'a> {
    fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.push((k.to_owned(), v.to_owned()));
        self
    }

    fn body(mut self, b: impl Into<Vec<u8>>) -> Self {
        self.body = b.into();
        self
    }

    fn auth(mut self, a: Auth<'a>) -> Self {
        self.auth = a;
        self
    }

    fn host(mut self, h: &str) -> Self {
        self.host = Some(h.to_owned());
        self
    }

    async fn send(self) -> Resp {
        let host = self
            .host
            .clone()
            .unwrap_or_else(|| self.server.addr.to_string());
        // Connect to the server whatever the Host header says (virtual-host names do not resolve).
        let mut url = format!("http://{}{}", self.server.addr, self.path);
        let mut headers = self.headers.clone();
        headers.push(("host".into(), host.clone()));
        let body_method = self.method == Method::PUT || self.method == Method::POST;
        if body_method
            && self.body.is_empty()
            && !headers.iter().any(|(k, _)| k == "content-length")
        {
            // hyper's client omits `Content-Length: 0`; S3 clients send it.
            headers.push(("content-length".into(), "0".into()));
        }
        let mut body = self.body.clone();
        let (creds, secret_ok, kind, presign) = match self.auth {
            Auth::Anonymous => (None, true, None, None),
            Auth::V4(c) => (Some(c), true, Some(SignableBody::Bytes(&self.body)), None),
            Auth::BadSecret(c) => (Some(c), false, Some(SignableBody::Bytes(&self.body)), None),
            Auth::Unsigned(c) => (Some(c), true, Some(SignableBody::UnsignedPayload), None),
            Auth::Presigned(c, d, t) => (
                Some(c),
                true,
                Some(SignableBody::UnsignedPayload),
                Some((d, t)),
            ),
            Auth::Streaming(c, _) => {
                headers.push(("content-encoding".into(), "aws-chunked".into()));
                headers.push((
                    "x-amz-decoded-content-length".into(),
                    self.body.len().to_string(),
                ));
                let seed = SignableBody::Precomputed("STREAMING-AWS4-HMAC-SHA256-PAYLOAD".into());
                (Some(c), true, Some(seed), None)
            }
            Auth::Trailer(c, checksum) => {
                let crc = checksum
                    .map(str::to_owned)
                    .unwrap_or_else(|| b64(&crc32fast::hash(&self.body).to_be_bytes()));
                let mut framed = Vec::new();
                for chunk in self.body.chunks(8192) {
                    framed.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                    framed.extend_from_slice(chunk);
                    framed.extend_from_slice(b"\r\n");
                }
                framed.extend_from_slice(
                    format!("0\r\nx-amz-checksum-crc32:{crc}\r\n\r\n").as_bytes(),
                );
                body = framed;
                headers.push(("content-encoding".into(), "aws-chunked".into()));
                headers.push((
                    "x-amz-decoded-content-length".into(),
                    self.body.len().to_string(),
                ));
                headers.push(("x-amz-trailer".into(), "x-amz-checksum-crc32".into()));
                (
                    Some(c),
                    true,
                    Some(SignableBody::StreamingUnsignedPayloadTrailer),
                    None,
                )
            }
        };
        if let (Some(c), Some(kind)) = (creds, kind) {
            let secret = if secret_ok {
                c.secret_access_key.clone()
            } else {
                "wrong".repeat(8)
            };
            let signer = Signer::new(&c.access_key_id, &secret, "us-east-1", "s3");
            let (style, time) = match presign {
                Some((d, t)) => (Style::S3Presigned(d), t),
                None => (Style::S3, SystemTime::now()),
            };
            let signed: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let signature = signer
                .sign(style, time, self.method.as_str(), &url, &signed, kind)
                .expect("sign");
            if let Auth::Streaming(_, tamper) = self.auth {
                body = frame_signed(&self.body, &signer, time, &signature.seed, tamper);
            }
            url = signature.presigned_url(&url);
            headers.extend(signature.headers);
        }
        let mut builder = Request::builder().method(self.method.clone()).uri(url);
        for (k, v) in &headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let req = builder.body(Full::new(Bytes::from(body))).expect("request");
        Resp::read(self.server.client.request(req).await.expect("response")).await
    }
}

/// Frames `payload` as aws-chunked with chunk signatures chained from the seed signature.
fn frame_signed(
    payload: &[u8],
    signer: &Signer,
    time: SystemTime,
    seed: &str,
    tamper: bool,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut previous = seed.to_owned();
    let chunks: Vec<&[u8]> = payload
        .chunks(8192)
        .chain(std::iter::once(&[][..]))
        .collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let sig = signer.sign_chunk(time, chunk, &previous).expect("chunk");
        out.extend_from_slice(format!("{:x};chunk-signature={sig}\r\n", chunk.len()).as_bytes());
        let mut data = chunk.to_vec();
        if tamper && i == 1 {
            data[0] ^= 1;
        }
        out.extend_from_slice(&data);
        out.extend_from_slice(b"\r\n");
        previous = sig;
    }
    out
}

impl Server {
    async fn start() -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let identity = identity::Identity::open(&dir.path().join("identity")).expect("identity");
        let (admin, _) = identity.ensure_admin().expect("admin");
        let other = identity.create_account("other").expect("account");
        let walrus = open_walrus(dir.path(), identity, walrus::IMAGE_GRACE);
        let app = axum::Router::new().fallback(move |req: Request<Body>| {
            let w = walrus.clone();
            async move { w.handle(req).await }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let client = Client::builder(TokioExecutor::new()).build_http();
        Server {
            addr,
            admin,
            other,
            client,
            _dir: dir,
        }
    }

    fn req(&self, method: &str, path: &str) -> Req<'_> {
        Req {
            server: self,
            method: Method::from_bytes(method.as_bytes()).expect("method"),
            path: path.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            auth: Auth::V4(&self.admin),
            host: None,
        }
    }

    async fn put(&self, path: &str, body: &[u8]) -> Resp {
        self.req("PUT", path).body(body.to_vec()).send().await
    }

    async fn get(&self, path: &str) -> Resp {
        self.req("GET", path).send().await
    }

    /// Sends raw bytes on a fresh connection and returns the raw response head and body.
    async fn raw(&self, request: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect");
        s.write_all(request.as_bytes()).await.expect("write");
        let mut buf = vec![0u8; 65536];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("timeout")
            .expect("read");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

#[tokio::test]
async fn buckets_lifecycle() {
    let s = Server::start().await;
    s.put("/alpha", b"").await.expect(200);
    let loc = b"<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>koala-1</LocationConstraint></CreateBucketConfiguration>";
    s.put("/beta", loc).await.expect(200);
    // Re-creating one's own bucket succeeds (S3's us-east-1 answer) and changes nothing.
    s.put("/alpha", b"").await.expect(200);
    s.req("PUT", "/alpha")
        .auth(Auth::V4(&s.other))
        .send()
        .await
        .expect_err(409, "BucketAlreadyExists");
    s.put("/gamma", b"<CreateBucketConfiguration><Location")
        .await
        .expect_err(400, "MalformedXML");
    s.put("/Bad_Name", b"")
        .await
        .expect_err(400, "InvalidBucketName");
    s.put("/services", b"")
        .await
        .expect_err(400, "InvalidBucketName");
    s.req("PUT", "/anon-bucket")
        .auth(Auth::Anonymous)
        .send()
        .await
        .expect_err(403, "AccessDenied");

    let list = s.get("/").await;
    list.expect(200);
    assert_eq!(
        all_between(&list.text(), "<Name>", "</Name>"),
        vec!["alpha", "beta"]
    );
    assert!(list
        .text()
        .contains("xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\""));
    assert!(!list.header("x-amz-request-id").is_empty());
    assert_eq!(list.header("server"), "Koala Walrus");
    assert_eq!(list.header("content-length"), list.body.len().to_string());
    let other_list = s.req("GET", "/").auth(Auth::V4(&s.other)).send().await;
    assert!(all_between(&other_list.expect(200).text(), "<Name>", "</Name>").is_empty());

    let l = s.get("/beta?location").await;
    assert_eq!(
        between(&l.expect(200).text(), "\">", "</LocationConstraint>").as_deref(),
        Some("koala-1")
    );
    s.req("HEAD", "/alpha").send().await.expect(200);
    let h = s.req("HEAD", "/nope-bucket").send().await;
    h.expect(404);
    assert!(h.body.is_empty());
    s.req("HEAD", "/alpha")
        .auth(Auth::V4(&s.other))
        .send()
        .await
        .expect(403);

    s.put("/alpha/k", b"x").await.expect(200);
    s.req("DELETE", "/alpha")
        .send()
        .await
        .expect_err(409, "BucketNotEmpty");
    s.req("DELETE", "/alpha")
        .auth(Auth::V4(&s.other))
        .send()
        .await
        .expect_err(403, "AccessDenied");
    s.req("DELETE", "/alpha/k").send().await.expect(204);
    s.req("DELETE", "/alpha").send().await.expect(204);
    s.get("/alpha").await.expect_err(404, "NoSuchBucket");
}

#[tokio::test]
async fn objects_put_get_head() {
    let s = Server::start().await;
    s.put("/data", b"").await.expect(200);
    let body = b"hello walrus".to_vec();
    let put = s
        .req("PUT", "/data/greeting.txt")
        .header("content-type", "text/plain")
        .header("x-amz-meta-color", "blue")
        .header("cache-control", "no-cache")
        .header("content-md5", &b64(&md5::Md5::digest(&body)))
        .body(body.clone())
        .send()
        .await;
    put.expect(200);
    let etag = format!("\"{}\"", md5_hex(&body));
    assert_eq!(put.header("etag"), etag);

    let get = s.get("/data/greeting.txt").await;
    get.expect(200);
    assert_eq!(&get.body[..], &body[..]);
    assert_eq!(get.header("etag"), etag);
    assert_eq!(get.header("content-type"), "text/plain");
    assert_eq!(get.header("x-amz-meta-color"), "blue");
    assert_eq!(get.header("cache-control"), "no-cache");
    assert_eq!(get.header("content-length"), body.len().to_string());
    assert!(!get.header("last-modified").is_empty());

    let head = s.req("HEAD", "/data/greeting.txt").send().await;
    head.expect(200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length"), body.len().to_string());
    assert_eq!(head.header("etag"), etag);

    // Ranges.
    let r = s
        .req("GET", "/data/greeting.txt")
        .header("range", "bytes=0-4")
        .send()
        .await;
    r.expect(206);
    assert_eq!(&r.body[..], b"hello");
    assert_eq!(r.header("content-range"), "bytes 0-4/12");
    let r = s
        .req("GET", "/data/greeting.txt")
        .header("range", "bytes=-6")
        .send()
        .await;
    assert_eq!(&r.body[..], b"walrus");
    let r = s
        .req("GET", "/data/greeting.txt")
        .header("range", "bytes=6-")
        .send()
        .await;
    assert_eq!(&r.body[..], b"walrus");
    let r = s
        .req("GET", "/data/greeting.txt")
        .header("range", "bytes=50-60")
        .send()
        .await;
    r.expect_err(416, "InvalidRange");
    assert_eq!(r.header("content-range"), "bytes */12");

    // Conditionals.
    let r = s
        .req("GET", "/data/greeting.txt")
        .header("if-none-match", &etag)
        .send()
        .await;
    r.expect(304);
    assert_eq!(r.header("etag"), etag);
    assert!(r.body.is_empty());
    s.req("GET", "/data/greeting.txt")
        .header("if-match", "\"nope\"")
        .send()
        .await
        .expect_err(412, "PreconditionFailed");
    s.req("GET", "/data/greeting.txt")
        .header("if-match", &etag)
        .send()
        .await
        .expect(200);
    let future = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3600));
    let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(3600));
    s.req("GET", "/data/greeting.txt")
        .header("if-modified-since", &future)
        .send()
        .await
        .expect(304);
    s.req("GET", "/data/greeting.txt")
        .header("if-unmodified-since", &past)
        .send()
        .await
        .expect(412);

    // response-* overrides: signed only.
    let r = s.get("/data/greeting.txt?response-content-type=application%2Fx-test&response-content-disposition=attachment").await;
    r.expect(200);
    assert_eq!(r.header("content-type"), "application/x-test");
    assert_eq!(r.header("content-disposition"), "attachment");

    // Empty object.
    s.put("/data/empty", b"").await.expect(200);
    let r = s.get("/data/empty").await;
    r.expect(200);
    assert!(r.body.is_empty());
    assert_eq!(r.header("etag"), format!("\"{}\"", md5_hex(b"")));

    let r = s.get("/data/dir/a%20b%26c").await;
    r.expect_err(404, "NoSuchKey");
    assert!(
        r.text().contains("<Key>dir/a b&amp;c</Key>"),
        "{}",
        r.text()
    );
    let r = s.get("/nobucket/missing").await;
    r.expect_err(404, "NoSuchBucket");
    assert!(
        r.text().contains("<BucketName>nobucket</BucketName>"),
        "{}",
        r.text()
    );
    assert!(!r.text().contains("<Key>"), "{}", r.text());
    // Overwrite.
    s.put("/data/greeting.txt", b"v2").await.expect(200);
    assert_eq!(&s.get("/data/greeting.txt").await.body[..], b"v2");
}

#[tokio::test]
async fn keys_round_trip_verbatim() {
    let s = Server::start().await;
    s.put("/keys", b"").await.expect(200);
    let keys = [
        "../x",
        "a//b",
        "été/ünï",
        "a+b",
        "a&b=c",
        "with space",
        "ctl\u{1}\u{7f}",
        "trailing/",
        "q?x#y%",
    ];
    for (i, key) in keys.iter().enumerate() {
        let path = format!("/keys/{}", identity::uri_encode(key.as_bytes(), true));
        s.put(&path, format!("body{i}").as_bytes())
            .await
            .expect(200);
        let r = s.get(&path).await;
        r.expect(200);
        assert_eq!(r.text(), format!("body{i}"), "{key:?}");
    }
    // A literal `+` in the path is a plus, not a space.
    s.put("/keys/p+q", b"plus").await.expect(200);
    assert_eq!(s.get("/keys/p%2Bq").await.text(), "plus");
    let list = s.get("/keys?list-type=2&encoding-type=url").await;
    list.expect(200);
    let mut listed: Vec<String> = all_between(&list.text(), "<Key>", "</Key>")
        .iter()
        .map(|k| {
            percent_encoding::percent_decode_str(k)
                .decode_utf8()
                .expect("utf8")
                .into_owned()
        })
        .collect();
    listed.sort();
    let mut want: Vec<String> = keys
        .iter()
        .map(|k| k.to_string())
        .chain(["p+q".to_owned()])
        .collect();
    want.sort();
    assert_eq!(listed, want);

    let long = "k".repeat(1025);
    s.put(&format!("/keys/{long}"), b"x")
        .await
        .expect_err(400, "KeyTooLongError");
    s.put(&format!("/keys/{}", "k".repeat(1024)), b"x")
        .await
        .expect(200);
    s.put("/keys/bad%FFutf8", b"x")
        .await
        .expect_err(400, "InvalidURI");
}

#[tokio::test]
async fn listing() {
    let s = Server::start().await;
    s.put("/list", b"").await.expect(200);
    for k in ["a/1", "a/2", "b/1", "c", "d"] {
        s.put(&format!("/list/{k}"), b"x").await.expect(200);
    }
    let r = s.get("/list?delimiter=/").await;
    r.expect(200);
    assert_eq!(all_between(&r.text(), "<Key>", "</Key>"), vec!["c", "d"]);
    assert_eq!(
        all_between(&r.text(), "<Prefix>", "</Prefix>"),
        vec!["", "a/", "b/"]
    );
    let r = s.get("/list?prefix=a/&list-type=2").await;
    assert_eq!(
        all_between(&r.text(), "<Key>", "</Key>"),
        vec!["a/1", "a/2"]
    );
    assert_eq!(
        between(&r.text(), "<KeyCount>", "</KeyCount>").as_deref(),
        Some("2")
    );

    // V2 paging with continuation tokens.
    let mut token: Option<String> = None;
    let mut seen = Vec::new();
    loop {
        let q = match &token {
            Some(t) => format!(
                "/list?list-type=2&max-keys=2&continuation-token={}",
                identity::uri_encode(t.as_bytes(), false)
            ),
            None => "/list?list-type=2&max-keys=2".to_owned(),
        };
        let r = s.get(&q).await;
        r.expect(200);
        seen.extend(all_between(&r.text(), "<Key>", "</Key>"));
        token = between(
            &r.text(),
            "<NextContinuationToken>",
            "</NextContinuationToken>",
        );
        if token.is_none() {
            assert!(r.text().contains("<IsTruncated>false</IsTruncated>"));
            break;
        }
    }
    assert_eq!(seen, vec!["a/1", "a/2", "b/1", "c", "d"]);
    // Paging through common prefixes: a rolled-up prefix is never returned twice.
    let mut marker = String::new();
    let mut pages = Vec::new();
    loop {
        let r = s
            .get(&format!(
                "/list?delimiter=/&max-keys=1&marker={}",
                identity::uri_encode(marker.as_bytes(), false)
            ))
            .await;
        r.expect(200);
        let t = r.text();
        let mut items = all_between(&t, "<Key>", "</Key>");
        items.extend(all_between(&t, "<CommonPrefixes><Prefix>", "</Prefix>"));
        pages.extend(items);
        match between(&t, "<NextMarker>", "</NextMarker>") {
            Some(m) if t.contains("<IsTruncated>true</IsTruncated>") => marker = m,
            _ => break,
        }
        assert!(pages.len() < 10, "paging does not end: {pages:?}");
    }
    assert_eq!(pages, vec!["a/", "b/", "c", "d"]);
    // V1 marker, V2 start-after.
    let r = s.get("/list?marker=b/1").await;
    assert_eq!(all_between(&r.text(), "<Key>", "</Key>"), vec!["c", "d"]);
    let r = s
        .get("/list?list-type=2&start-after=c&fetch-owner=true")
        .await;
    assert_eq!(all_between(&r.text(), "<Key>", "</Key>"), vec!["d"]);
    assert!(r.text().contains("<Owner><ID>"));
    s.get("/list?max-keys=abc")
        .await
        .expect_err(400, "InvalidArgument");
    s.get("/list?max-keys=-1")
        .await
        .expect_err(400, "InvalidArgument");
    s.get("/list?list-type=2&continuation-token=%21%21")
        .await
        .expect_err(400, "InvalidArgument");
    s.req("GET", "/list")
        .auth(Auth::V4(&s.other))
        .send()
        .await
        .expect_err(403, "AccessDenied");
}

#[tokio::test]
async fn bad_digests_and_signatures() {
    let s = Server::start().await;
    s.put("/bad", b"").await.expect(200);
    s.req("PUT", "/bad/k")
        .header("content-md5", &b64(&md5::Md5::digest(b"other")))
        .body("data")
        .send()
        .await
        .expect_err(400, "BadDigest");
    s.req("PUT", "/bad/k")
        .header("content-md5", "not-base64!")
        .body("data")
        .send()
        .await
        .expect_err(400, "InvalidDigest");
    s.req("PUT", "/bad/k")
        .header("content-md5", &b64(b"short"))
        .body("data")
        .send()
        .await
        .expect_err(400, "InvalidDigest");
    s.get("/bad/k").await.expect_err(404, "NoSuchKey");

    // x-amz-checksum-* headers.
    let crc = b64(&crc32fast::hash(b"data").to_be_bytes());
    let r = s
        .req("PUT", "/bad/c")
        .header("x-amz-checksum-crc32", &crc)
        .body("data")
        .send()
        .await;
    r.expect(200);
    assert_eq!(r.header("x-amz-checksum-crc32"), crc);
    let r = s
        .req("HEAD", "/bad/c")
        .header("x-amz-checksum-mode", "ENABLED")
        .send()
        .await;
    assert_eq!(r.header("x-amz-checksum-crc32"), crc);
    let r = s
        .req("GET", "/bad/c")
        .header("x-amz-checksum-mode", "ENABLED")
        .header("range", "bytes=0-1")
        .send()
        .await;
    r.expect(206);
    assert_eq!(r.header("x-amz-checksum-crc32"), "");
    let r = s.req("HEAD", "/bad/c").send().await;
    assert_eq!(r.header("x-amz-checksum-crc32"), "");
    s.req("PUT", "/bad/c2")
        .header("x-amz-checksum-crc32", &b64(&[0, 0, 0, 0]))
        .body("data")
        .send()
        .await
        .expect_err(400, "BadDigest");
    let sha = b64(&sha2::Sha256::digest(b"data"));
    s.req("PUT", "/bad/c3")
        .header("x-amz-checksum-sha256", &sha)
        .body("data")
        .send()
        .await
        .expect(200);
    s.req("PUT", "/bad/c4")
        .header("x-amz-checksum-sha256", "AAAA")
        .body("data")
        .send()
        .await
        .expect_err(400, "InvalidRequest");

    // Signatures.
    s.req("GET", "/bad")
        .auth(Auth::BadSecret(&s.admin))
        .send()
        .await
        .expect_err(403, "SignatureDoesNotMatch");
    let bogus = Credentials {
        access_key_id: "AKIDOESNOTEXIST00000".into(),
        ..s.admin.clone()
    };
    s.req("GET", "/bad")
        .auth(Auth::V4(&bogus))
        .send()
        .await
        .expect_err(403, "InvalidAccessKeyId");
    s.req("GET", "/bad")
        .header("authorization", "AWS4-HMAC-SHA256 garbage")
        .auth(Auth::Anonymous)
        .send()
        .await
        .expect(400);
    // Signed payload hash that does not match the body.
    let raw = format!(
        "PUT /bad/sha HTTP/1.1\r\nHost: {}\r\nContent-Length: 4\r\nx-amz-content-sha256: {}\r\n\r\ndata",
        s.addr,
        hex::encode(sha2::Sha256::digest(b"nope"))
    );
    let resp = s.raw(&raw).await;
    // Unsigned here (no Authorization), so the hash is not a promise: anonymous write denied.
    assert!(resp.starts_with("HTTP/1.1 403"), "{resp}");
    // A signed request whose body was swapped after signing.
    let signed_other_body = s.req("PUT", "/bad/sha").body("nope");
    let mut resp = signed_other_body.send().await;
    resp.expect(200);
    resp = s.get("/bad/sha").await;
    assert_eq!(resp.text(), "nope");
}

#[tokio::test]
async fn payload_hash_mismatch_is_refused() {
    let s = Server::start().await;
    s.put("/hash", b"").await.expect(200);
    // Sign for one body, send another of the same length.
    let req = s.req("PUT", "/hash/k").body("abcd");
    let host = s.addr.to_string();
    let url = format!("http://{host}/hash/k");
    let signer = Signer::new(
        &s.admin.access_key_id,
        &s.admin.secret_access_key,
        "us-east-1",
        "s3",
    );
    let headers = [("host", host.as_str())];
    let signature = signer
        .sign(
            Style::S3,
            SystemTime::now(),
            "PUT",
            &url,
            &headers,
            SignableBody::Bytes(b"abcd"),
        )
        .expect("sign");
    let mut b = Request::builder()
        .method("PUT")
        .uri(url)
        .header("host", host.as_str());
    for (name, value) in &signature.headers {
        b = b.header(name.as_str(), value.as_str());
    }
    let resp = s
        .client
        .request(b.body(Full::new(Bytes::from_static(b"wxyz"))).expect("r"))
        .await
        .expect("resp");
    assert_eq!(resp.status(), 400);
    let body = resp.into_body().collect().await.expect("b").to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("XAmzContentSHA256Mismatch"));
    drop(req);
    s.get("/hash/k").await.expect_err(404, "NoSuchKey");
}

#[tokio::test]
async fn streaming_trailer_and_unsigned_payload() {
    let s = Server::start().await;
    s.put("/stream", b"").await.expect(200);
    let body: Vec<u8> = (0..20000u32).map(|i| (i % 251) as u8).collect();
    let r = s
        .req("PUT", "/stream/t")
        .body(body.clone())
        .auth(Auth::Trailer(&s.admin, None))
        .send()
        .await;
    r.expect(200);
    assert_eq!(r.header("etag"), format!("\"{}\"", md5_hex(&body)));
    let g = s.get("/stream/t").await;
    assert_eq!(&g.body[..], &body[..]);
    assert_eq!(g.header("content-encoding"), "");
    s.req("PUT", "/stream/bad")
        .body(body.clone())
        .auth(Auth::Trailer(&s.admin, Some("AAAAAA==")))
        .send()
        .await
        .expect_err(400, "BadDigest");
    s.get("/stream/bad").await.expect_err(404, "NoSuchKey");
    let r = s
        .req("PUT", "/stream/s")
        .body(body.clone())
        .auth(Auth::Streaming(&s.admin, false))
        .send()
        .await;
    r.expect(200);
    assert_eq!(r.header("etag"), format!("\"{}\"", md5_hex(&body)));
    assert_eq!(&s.get("/stream/s").await.body[..], &body[..]);
    s.req("PUT", "/stream/tampered")
        .body(body.clone())
        .auth(Auth::Streaming(&s.admin, true))
        .send()
        .await
        .expect_err(403, "SignatureDoesNotMatch");
    s.get("/stream/tampered").await.expect_err(404, "NoSuchKey");
    s.req("PUT", "/stream/u")
        .body("unsigned")
        .auth(Auth::Unsigned(&s.admin))
        .send()
        .await
        .expect(200);
    assert_eq!(s.get("/stream/u").await.text(), "unsigned");
}

#[tokio::test]
async fn presigned_urls() {
    let s = Server::start().await;
    s.put("/pre", b"").await.expect(200);
    s.put("/pre/k", b"secret").await.expect(200);
    let r = s
        .req("GET", "/pre/k")
        .auth(Auth::Presigned(
            &s.admin,
            Duration::from_secs(300),
            SystemTime::now(),
        ))
        .send()
        .await;
    r.expect(200);
    assert_eq!(r.text(), "secret");
    let old = SystemTime::now() - Duration::from_secs(7200);
    let r = s
        .req("GET", "/pre/k")
        .auth(Auth::Presigned(&s.admin, Duration::from_secs(60), old))
        .send()
        .await;
    r.expect_err(403, "AccessDenied");
    assert!(r.text().contains("Request has expired"), "{}", r.text());
    s.req("GET", "/pre/k")
        .auth(Auth::Anonymous)
        .send()
        .await
        .expect_err(403, "AccessDenied");
}

#[tokio::test]
async fn mount_prefixes_and_virtual_hosts() {
    let s = Server::start().await;
    s.put("/services/Walrus/mounted", b"").await.expect(200);
    s.put("/services/objectstorage/mounted/a%20b", b"one")
        .await
        .expect(200);
    assert_eq!(s.get("/mounted/a%20b").await.text(), "one");
    assert_eq!(s.get("/services/Walrus/mounted/a%20b").await.text(), "one");
    let list = s.get("/services/Walrus/").await;
    assert!(list.expect(200).text().contains("<Name>mounted</Name>"));
    let r = s
        .req("GET", "/a%20b")
        .host("mounted.s3.koala.test")
        .send()
        .await;
    r.expect(200);
    assert_eq!(r.text(), "one");
    // Error documents name the key and bucket however they were addressed.
    let r = s
        .req("GET", "/missing")
        .host("mounted.s3.koala.test")
        .send()
        .await;
    r.expect_err(404, "NoSuchKey");
    assert!(r.text().contains("<Key>missing</Key>"), "{}", r.text());
    let r = s.get("/services/Walrus/mounted/gone").await;
    assert!(r.text().contains("<Key>gone</Key>"), "{}", r.text());
}

#[tokio::test]
async fn not_implemented_and_unknown() {
    let s = Server::start().await;
    s.put("/nim", b"").await.expect(200);
    for path in ["/nim?lifecycle", "/nim?encryption", "/nim?website"] {
        s.get(path).await.expect_err(501, "NotImplemented");
    }
    s.req("PUT", "/nim?lifecycle")
        .body("<LifecycleConfiguration/>")
        .send()
        .await
        .expect_err(501, "NotImplemented");
    // Versioning, tagging and CORS are built: a bucket without them says so as S3 does.
    let r = s.get("/nim?versioning").await;
    r.expect(200);
    assert!(!r.text().contains("<Status>"), "{}", r.text());
    s.req("PUT", "/nim?versioning")
        .body("<VersioningConfiguration><Status>On</Status></VersioningConfiguration>")
        .send()
        .await
        .expect_err(400, "MalformedXML");
    s.get("/nim?tagging").await.expect_err(404, "NoSuchTagSet");
    s.get("/nim?policy")
        .await
        .expect_err(404, "NoSuchBucketPolicy");
    s.get("/nim?publicAccessBlock")
        .await
        .expect_err(404, "NoSuchPublicAccessBlockConfiguration");
    s.get("/nim?cors")
        .await
        .expect_err(404, "NoSuchCORSConfiguration");
    s.req("PATCH", "/nim/k")
        .send()
        .await
        .expect_err(405, "MethodNotAllowed");
    s.req("POST", "/nim/k")
        .send()
        .await
        .expect_err(405, "MethodNotAllowed");
    // PUT without Content-Length or chunked framing.
    let resp = s
        .raw(&format!("PUT /nim/k HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr))
        .await;
    assert!(
        resp.starts_with("HTTP/1.1 411") || resp.starts_with("HTTP/1.1 403"),
        "{resp}"
    );
}

#[tokio::test]
async fn delete_objects_batch() {
    let s = Server::start().await;
    s.put("/del", b"").await.expect(200);
    for k in ["a", "b", "c"] {
        s.put(&format!("/del/{k}"), b"x").await.expect(200);
    }
    let body = "<Delete><Object><Key>a</Key></Object><Object><Key>b</Key></Object><Object><Key>zz</Key></Object></Delete>";
    let r = s
        .req("POST", "/del?delete")
        .header("content-md5", &b64(&md5::Md5::digest(body.as_bytes())))
        .body(body)
        .send()
        .await;
    r.expect(200);
    assert_eq!(
        all_between(&r.text(), "<Key>", "</Key>"),
        vec!["a", "b", "zz"]
    );
    let quiet = "<Delete><Quiet>true</Quiet><Object><Key>c</Key></Object></Delete>";
    // Without Content-MD5 or a checksum AWS refuses the batch, and nothing is deleted.
    let r = s.req("POST", "/del?delete").body(quiet).send().await;
    r.expect_err(400, "InvalidRequest");
    assert!(r
        .text()
        .contains("Missing required header for this request: Content-MD5"));
    assert_eq!(s.get("/del/c").await.expect(200).text(), "x");
    // An x-amz-checksum-* header (what current SDKs send) is enough.
    let r = s
        .req("POST", "/del?delete")
        .header(
            "x-amz-checksum-crc32",
            &b64(&crc32fast::hash(quiet.as_bytes()).to_be_bytes()),
        )
        .body(quiet)
        .send()
        .await;
    r.expect(200);
    assert!(!r.text().contains("<Deleted>"));
    let list = s.get("/del").await;
    assert!(all_between(&list.text(), "<Key>", "</Key>").is_empty());
    s.req("POST", "/del?delete")
        .header("content-md5", &b64(&md5::Md5::digest(b"<Delete><Object>")))
        .body("<Delete><Object>")
        .send()
        .await
        .expect_err(400, "MalformedXML");
    s.req("POST", "/del?delete")
        .header("content-md5", &b64(&[0; 16]))
        .body(body)
        .send()
        .await
        .expect_err(400, "BadDigest");
    let too_many = format!(
        "<Delete>{}</Delete>",
        "<Object><Key>k</Key></Object>".repeat(1001)
    );
    s.req("POST", "/del?delete")
        .header("content-md5", &b64(&md5::Md5::digest(too_many.as_bytes())))
        .body(too_many)
        .send()
        .await
        .expect_err(400, "MalformedXML");
    let r = s
        .req("POST", "/del?delete")
        .header("content-md5", &b64(&md5::Md5::digest(body.as_bytes())))
        .body(body)
        .auth(Auth::V4(&s.other))
        .send()
        .await;
    r.expect(200);
    assert!(r.text().contains("<Code>AccessDenied</Code>"));
}

#[tokio::test]
async fn copy_object() {
    let s = Server::start().await;
    s.put("/src", b"").await.expect(200);
    s.put("/dst", b"").await.expect(200);
    s.req("PUT", "/src/a%20key")
        .header("x-amz-meta-x", "1")
        .header("content-type", "text/x")
        .body("copy me")
        .send()
        .await
        .expect(200);
    let r = s
        .req("PUT", "/dst/copy")
        .header("x-amz-copy-source", "/src/a%20key")
        .send()
        .await;
    r.expect(200);
    assert!(
        r.text()
            .contains(&format!("<ETag>&quot;{}&quot;</ETag>", md5_hex(b"copy me"))),
        "{}",
        r.text()
    );
    let g = s.get("/dst/copy").await;
    assert_eq!(g.text(), "copy me");
    assert_eq!(g.header("x-amz-meta-x"), "1");
    assert_eq!(g.header("content-type"), "text/x");
    let r = s
        .req("PUT", "/dst/replaced")
        .header("x-amz-copy-source", "src/a%20key")
        .header("x-amz-metadata-directive", "REPLACE")
        .header("x-amz-meta-y", "2")
        .send()
        .await;
    r.expect(200);
    let g = s.get("/dst/replaced").await;
    assert_eq!(g.header("x-amz-meta-y"), "2");
    assert_eq!(g.header("x-amz-meta-x"), "");
    s.req("PUT", "/src/a%20key")
        .header("x-amz-copy-source", "/src/a%20key")
        .send()
        .await
        .expect_err(400, "InvalidRequest");
    s.req("PUT", "/src/a%20key")
        .header("x-amz-copy-source", "/src/a%20key")
        .header("x-amz-metadata-directive", "REPLACE")
        .send()
        .await
        .expect(200);
    s.req("PUT", "/dst/x")
        .header("x-amz-copy-source", "/src/a%20key")
        .header("x-amz-copy-source-if-match", "\"nope\"")
        .send()
        .await
        .expect_err(412, "PreconditionFailed");
    s.req("PUT", "/dst/x")
        .header("x-amz-copy-source", "/src/missing")
        .send()
        .await
        .expect_err(404, "NoSuchKey");
    s.req("PUT", "/dst/x")
        .header("x-amz-copy-source", "/src/a%20key")
        .auth(Auth::V4(&s.other))
        .send()
        .await
        .expect_err(403, "AccessDenied");
}

#[tokio::test]
async fn multipart_uploads() {
    let s = Server::start().await;
    s.put("/mpu", b"").await.expect(200);
    s.put("/mpu/src", b"0123456789").await.expect(200);
    let r = s
        .req("POST", "/mpu/big?uploads")
        .header("x-amz-meta-m", "v")
        .send()
        .await;
    r.expect(200);
    let id = between(&r.text(), "<UploadId>", "</UploadId>").expect("upload id");
    let idq = identity::uri_encode(id.as_bytes(), false);
    let part1: Vec<u8> = vec![b'a'; 5 * 1024 * 1024];
    let p1 = s
        .req("PUT", &format!("/mpu/big?partNumber=1&uploadId={idq}"))
        .body(part1.clone())
        .send()
        .await;
    p1.expect(200);
    assert_eq!(p1.header("etag"), format!("\"{}\"", md5_hex(&part1)));
    let p2 = s
        .req("PUT", &format!("/mpu/big?partNumber=2&uploadId={idq}"))
        .header("x-amz-copy-source", "/mpu/src")
        .header("x-amz-copy-source-range", "bytes=2-5")
        .send()
        .await;
    p2.expect(200);
    assert!(p2.text().contains(&md5_hex(b"2345")), "{}", p2.text());
    s.req("PUT", &format!("/mpu/big?partNumber=0&uploadId={idq}"))
        .body("x")
        .send()
        .await
        .expect_err(400, "InvalidArgument");
    s.req("PUT", &format!("/mpu/big?partNumber=10001&uploadId={idq}"))
        .body("x")
        .send()
        .await
        .expect_err(400, "InvalidArgument");
    s.req("PUT", "/mpu/big?partNumber=1&uploadId=nope")
        .body("x")
        .send()
        .await
        .expect_err(404, "NoSuchUpload");

    let parts = s.get(&format!("/mpu/big?uploadId={idq}")).await;
    parts.expect(200);
    assert_eq!(
        all_between(&parts.text(), "<PartNumber>", "</PartNumber>"),
        vec!["1", "2"]
    );
    let uploads = s.get("/mpu?uploads").await;
    assert!(uploads.expect(200).text().contains(&id));

    let e1 = md5_hex(&part1);
    let e2 = md5_hex(b"2345");
    let bad_order = format!("<CompleteMultipartUpload><Part><PartNumber>2</PartNumber><ETag>\"{e2}\"</ETag></Part><Part><PartNumber>1</PartNumber><ETag>\"{e1}\"</ETag></Part></CompleteMultipartUpload>");
    s.req("POST", &format!("/mpu/big?uploadId={idq}"))
        .body(bad_order)
        .send()
        .await
        .expect_err(400, "InvalidPartOrder");
    let missing = format!("<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"{e1}\"</ETag></Part><Part><PartNumber>3</PartNumber><ETag>\"{e2}\"</ETag></Part></CompleteMultipartUpload>");
    s.req("POST", &format!("/mpu/big?uploadId={idq}"))
        .body(missing)
        .send()
        .await
        .expect_err(400, "InvalidPart");
    s.req("POST", &format!("/mpu/big?uploadId={idq}"))
        .body("<Complete")
        .send()
        .await
        .expect_err(400, "MalformedXML");
    let good = format!("<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"{e1}\"</ETag></Part><Part><PartNumber>2</PartNumber><ETag>\"{e2}\"</ETag></Part></CompleteMultipartUpload>");
    let done = s
        .req("POST", &format!("/mpu/big?uploadId={idq}"))
        .body(good)
        .send()
        .await;
    done.expect(200);
    let mut both = md5::Md5::digest(&part1).to_vec();
    both.extend_from_slice(&md5::Md5::digest(b"2345"));
    let want_etag = format!("{}-2", md5_hex(&both));
    assert!(done.text().contains(&want_etag), "{}", done.text());
    let g = s.get("/mpu/big").await;
    g.expect(200);
    assert_eq!(g.body.len(), part1.len() + 4);
    assert_eq!(&g.body[part1.len()..], b"2345");
    assert_eq!(g.header("x-amz-meta-m"), "v");
    let p = s.get("/mpu/big?partNumber=2").await;
    p.expect(206);
    assert_eq!(&p.body[..], b"2345");
    // A part answers with its own ETag and the number of parts.
    let part2_etag = format!("\"{}\"", md5_hex(b"2345"));
    assert_eq!(p.header("etag"), part2_etag);
    assert_eq!(p.header("x-amz-mp-parts-count"), "2");
    s.get("/mpu/big?partNumber=3")
        .await
        .expect_err(400, "InvalidPart");
    s.get(&format!("/mpu/big?uploadId={idq}"))
        .await
        .expect_err(404, "NoSuchUpload");

    // Abort.
    let r = s.req("POST", "/mpu/gone?uploads").send().await;
    let id = between(&r.text(), "<UploadId>", "</UploadId>").expect("upload id");
    let idq = identity::uri_encode(id.as_bytes(), false);
    s.req("PUT", &format!("/mpu/gone?partNumber=1&uploadId={idq}"))
        .body("x")
        .send()
        .await
        .expect(200);
    s.req("DELETE", &format!("/mpu/gone?uploadId={idq}"))
        .send()
        .await
        .expect(204);
    s.req("PUT", &format!("/mpu/gone?partNumber=2&uploadId={idq}"))
        .body("x")
        .send()
        .await
        .expect_err(404, "NoSuchUpload");
    s.get("/mpu/gone").await.expect_err(404, "NoSuchKey");
}

#[tokio::test]
async fn acls_between_accounts() {
    let s = Server::start().await;
    s.put("/acl", b"").await.expect(200);
    s.put("/acl/private", b"p").await.expect(200);
    s.req("GET", "/acl/private")
        .auth(Auth::V4(&s.other))
        .send()
        .await
        .expect_err(403, "AccessDenied");
    s.req("GET", "/acl/private")
        .auth(Auth::Anonymous)
        .send()
        .await
        .expect_err(403, "AccessDenied");
    s.req("PUT", "/acl/x")
        .auth(Auth::V4(&s.other))
        .body("x")
        .send()
        .await
        .expect_err(403, "AccessDenied");

    s.req("PUT", "/acl/public")
        .header("x-amz-acl", "public-read")
        .body("pub")
        .send()
        .await
        .expect(200);
    let r = s
        .req("GET", "/acl/public")
        .auth(Auth::Anonymous)
        .send()
        .await;
    r.expect(200);
    assert_eq!(r.text(), "pub");
    s.req("GET", "/acl/public?response-content-type=x%2Fy")
        .auth(Auth::Anonymous)
        .send()
        .await
        .expect_err(400, "InvalidRequest");
    s.req("PUT", "/acl/k")
        .header("x-amz-acl", "bogus")
        .body("x")
        .send()
        .await
        .expect_err(400, "InvalidArgument");

    let acl = s.get("/acl/public?acl").await;
    acl.expect(200);
    assert!(acl
        .text()
        .contains("http://acs.amazonaws.com/groups/global/AllUsers"));
    assert!(acl.text().contains("<Permission>FULL_CONTROL</Permission>"));

    // Grant the other account READ on the bucket by XML, then it may list.
    let doc = format!(
        "<AccessControlPolicy><Owner><ID>{0}</ID></Owner><AccessControlList><Grant><Grantee xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"CanonicalUser\"><ID>{1}</ID></Grantee><Permission>READ</Permission></Grant></AccessControlList></AccessControlPolicy>",
        s.admin.account_id, s.other.account_id
    );
    s.req("PUT", "/acl?acl")
        .body(doc.clone())
        .auth(Auth::V4(&s.other))
        .send()
        .await
        .expect_err(403, "AccessDenied");
    s.req("PUT", "/acl?acl").body(doc).send().await.expect(200);
    s.req("GET", "/acl")
        .auth(Auth::V4(&s.other))
        .send()
        .await
        .expect(200);
    s.req("PUT", "/acl?acl")
        .body("<AccessControlPolicy><AccessControlList><Grant>")
        .send()
        .await
        .expect_err(400, "MalformedXML");
    // Canned ACL by header on an existing object.
    s.req("PUT", "/acl/private?acl")
        .header("x-amz-acl", "authenticated-read")
        .send()
        .await
        .expect(200);
    s.req("GET", "/acl/private")
        .auth(Auth::V4(&s.other))
        .send()
        .await
        .expect(200);

    // aws-exec-read grants read to the cloud's image service only, which reads bundles below
    // the ACLs: over S3 not even the cloud administrators may read another account's bundle.
    s.req("PUT", "/bundles")
        .auth(Auth::V4(&s.other))
        .send()
        .await
        .expect(200);
    s.req("PUT", "/bundles/img.part.0")
        .header("x-amz-acl", "aws-exec-read")
        .body("bundle")
        .auth(Auth::V4(&s.other))
        .send()
        .await
        .expect(200);
    s.get("/bundles/img.part.0")
        .await
        .expect_err(403, "AccessDenied");
    s.req("PUT", "/bundles/mine")
        .body("m")
        .auth(Auth::V4(&s.other))
        .send()
        .await
        .expect(200);
    s.get("/bundles/mine").await.expect_err(403, "AccessDenied");
}

/// Signs like euca2ools 3.4: S3 SigV2 header, `Date` with a `-0000` zone, resource without
/// the mount prefix.
fn sigv2(
    c: &Credentials,
    method: &str,
    date: &str,
    amz: &[(&str, &str)],
    resource: &str,
) -> String {
    let mut to_sign = format!("{method}\n\n\n{date}\n");
    for (k, v) in amz {
        to_sign.push_str(&format!("{k}:{v}\n"));
    }
    to_sign.push_str(resource);
    let key = ring::hmac::Key::new(
        ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        c.secret_access_key.as_bytes(),
    );
    let sig = b64(ring::hmac::sign(&key, to_sign.as_bytes()).as_ref());
    format!("AWS {}:{sig}", c.access_key_id)
}

fn euca_date() -> String {
    httpdate::fmt_http_date(SystemTime::now()).replace("GMT", "-0000")
}

#[tokio::test]
async fn euca2ools_style_sigv2_under_mount_prefix() {
    let s = Server::start().await;
    let date = euca_date();
    let auth = sigv2(&s.admin, "PUT", &date, &[], "/eucabucket");
    s.req("PUT", "/services/objectstorage/eucabucket")
        .header("date", &date)
        .header("authorization", &auth)
        .auth(Auth::Anonymous)
        .send()
        .await
        .expect(200);
    let part = vec![7u8; 100_000];
    let auth = sigv2(
        &s.admin,
        "PUT",
        &date,
        &[("x-amz-acl", "aws-exec-read")],
        "/eucabucket/image.img.part.00",
    );
    let r = s
        .req(
            "PUT",
            "/services/objectstorage/eucabucket/image.img.part.00",
        )
        .header("date", &date)
        .header("x-amz-acl", "aws-exec-read")
        .header("authorization", &auth)
        .body(part.clone())
        .auth(Auth::Anonymous)
        .send()
        .await;
    r.expect(200);
    assert_eq!(r.header("etag"), format!("\"{}\"", md5_hex(&part)));
    let auth = sigv2(&s.admin, "GET", &date, &[], "/eucabucket/image.img.part.00");
    let r = s
        .req("GET", "/services/Walrus/eucabucket/image.img.part.00")
        .header("date", &date)
        .header("authorization", &auth)
        .auth(Auth::Anonymous)
        .send()
        .await;
    r.expect(200);
    assert_eq!(&r.body[..], &part[..]);
    // Clients that keep the mount prefix in the resource (botocore) are accepted too...
    let auth = sigv2(
        &s.admin,
        "GET",
        &date,
        &[],
        "/services/Walrus/eucabucket/image.img.part.00",
    );
    s.req("GET", "/services/Walrus/eucabucket/image.img.part.00")
        .header("date", &date)
        .header("authorization", &auth)
        .auth(Auth::Anonymous)
        .send()
        .await
        .expect(200);
    // ...but a signature over another resource, or another mount point, is not.
    for resource in [
        "/eucabucket/other",
        "/services/objectstorage/eucabucket/image.img.part.00",
    ] {
        let auth = sigv2(&s.admin, "GET", &date, &[], resource);
        s.req("GET", "/services/Walrus/eucabucket/image.img.part.00")
            .header("date", &date)
            .header("authorization", &auth)
            .auth(Auth::Anonymous)
            .send()
            .await
            .expect_err(403, "SignatureDoesNotMatch");
    }
    // botocore's SigV2 keeps the endpoint's path and signs bucket requests as `/bucket/`.
    let auth = sigv2(&s.admin, "PUT", &date, &[], "/services/Walrus/botobucket/");
    s.req("PUT", "/services/Walrus/botobucket")
        .header("date", &date)
        .header("authorization", &auth)
        .auth(Auth::Anonymous)
        .send()
        .await
        .expect(200);
    // A signed PUT with neither Content-Length nor chunked framing.
    let auth = sigv2(&s.admin, "PUT", &date, &[], "/eucabucket/nolength");
    let resp = s
        .raw(&format!(
            "PUT /eucabucket/nolength HTTP/1.1\r\nHost: {}\r\nDate: {date}\r\nAuthorization: {auth}\r\n\r\n",
            s.addr
        ))
        .await;
    assert!(resp.starts_with("HTTP/1.1 411"), "{resp}");
    assert!(resp.contains("<Code>MissingContentLength</Code>"), "{resp}");
    // A single PUT over 5 GiB is refused from its announced length, before any byte is read.
    let auth = sigv2(&s.admin, "PUT", &date, &[], "/eucabucket/huge");
    let resp = s
        .raw(&format!(
            "PUT /eucabucket/huge HTTP/1.1\r\nHost: {}\r\nDate: {date}\r\nAuthorization: {auth}\r\nContent-Length: 6000000000\r\n\r\n",
            s.addr
        ))
        .await;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(resp.contains("<Code>EntityTooLarge</Code>"), "{resp}");
}

#[tokio::test]
async fn user_metadata_over_2_kb_is_refused() {
    let s = Server::start().await;
    s.put("/meta", b"").await.expect(200);
    // 2048 bytes of names and values is the limit; one more byte is refused.
    let at_limit = "v".repeat(2048 - "big".len());
    s.req("PUT", "/meta/ok")
        .header("x-amz-meta-big", &at_limit)
        .body("x")
        .send()
        .await
        .expect(200);
    let over = format!("{at_limit}v");
    s.req("PUT", "/meta/big")
        .header("x-amz-meta-big", &over)
        .body("x")
        .send()
        .await
        .expect_err(400, "MetadataTooLarge");
    s.req("HEAD", "/meta/big").send().await.expect(404);
    s.req("PUT", "/meta/copy")
        .header("x-amz-copy-source", "/meta/ok")
        .header("x-amz-metadata-directive", "REPLACE")
        .header("x-amz-meta-a", &"v".repeat(1024))
        .header("x-amz-meta-b", &"v".repeat(1024))
        .send()
        .await
        .expect_err(400, "MetadataTooLarge");
    // COPY keeps the source's metadata, which was within the limit.
    s.req("PUT", "/meta/copy")
        .header("x-amz-copy-source", "/meta/ok")
        .send()
        .await
        .expect(200);
    s.req("POST", "/meta/mpu?uploads")
        .header("x-amz-meta-big", &over)
        .send()
        .await
        .expect_err(400, "MetadataTooLarge");
}

#[tokio::test]
async fn grants_to_unknown_accounts_are_refused() {
    let s = Server::start().await;
    s.put("/grants", b"").await.expect(200);
    s.put("/grants/obj", b"o").await.expect(200);
    let nobody = "f".repeat(64);
    let doc = |id: &str| {
        format!(
            "<AccessControlPolicy><Owner><ID>{0}</ID></Owner><AccessControlList><Grant><Grantee xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"CanonicalUser\"><ID>{0}</ID></Grantee><Permission>FULL_CONTROL</Permission></Grant><Grant><Grantee xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xsi:type=\"CanonicalUser\"><ID>{1}</ID></Grantee><Permission>READ</Permission></Grant></AccessControlList></AccessControlPolicy>",
            s.admin.account_id, id
        )
    };
    for path in ["/grants?acl", "/grants/obj?acl"] {
        let r = s.req("PUT", path).body(doc(&nobody)).send().await;
        r.expect_err(400, "InvalidArgument");
        assert!(
            r.text().contains("<Message>Invalid id</Message>"),
            "{}",
            r.text()
        );
        s.req("PUT", path)
            .header("x-amz-grant-read", &format!("id=\"{nobody}\""))
            .send()
            .await
            .expect_err(400, "InvalidArgument");
        // The ACL is unchanged: the other account still may not read.
        let acl = s.get(path).await;
        assert!(!acl.expect(200).text().contains(&nobody));
        // A real account is fine, by body or header.
        s.req("PUT", path)
            .body(doc(&s.other.account_id))
            .send()
            .await
            .expect(200);
        s.req("PUT", path)
            .header(
                "x-amz-grant-read",
                &format!("id=\"{}\"", s.other.account_id),
            )
            .send()
            .await
            .expect(200);
    }
    // Grant headers on a new object are checked too.
    s.req("PUT", "/grants/new")
        .header("x-amz-grant-read", &format!("id=\"{nobody}\""))
        .body("n")
        .send()
        .await
        .expect_err(400, "InvalidArgument");
    s.req("HEAD", "/grants/new").send().await.expect(404);
}

#[tokio::test]
async fn header_section_over_8_kib_is_refused() {
    let s = Server::start().await;
    s.put("/hdrs", b"").await.expect(200);
    // AWS checks the header section before the 2 KB metadata limit.
    s.req("PUT", "/hdrs/big")
        .header("x-amz-meta-big", &"v".repeat(9 * 1024))
        .body("x")
        .send()
        .await
        .expect_err(400, "RequestHeaderSectionTooLarge");
    s.req("GET", "/hdrs")
        .header("x-filler", &"y".repeat(9 * 1024))
        .auth(Auth::Anonymous)
        .send()
        .await
        .expect_err(400, "RequestHeaderSectionTooLarge");
    s.req("HEAD", "/hdrs/big").send().await.expect(404);
}

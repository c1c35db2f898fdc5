//! The Query protocol's plumbing: form parameters, request ids, XML escaping and responses.

use axum::body::Body;
use http::{HeaderMap, Response, StatusCode};
use percent_encoding::percent_decode;

use crate::QueryError;

/// Which service a request is for; it decides the error format and namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// EC2: `<Response><Errors><Error>...`.
    Ec2,
    /// Euare (IAM): `<ErrorResponse><Error>...`.
    Euare,
}

impl Dialect {
    /// The service mounted at `path`, if any (Eucalyptus' `/services/NAME` layout).
    pub fn for_path(path: &str) -> Option<Dialect> {
        let rest = path.strip_prefix("/services/")?;
        let service = rest.split('/').next().unwrap_or("");
        match service {
            "compute" | "Eucalyptus" => Some(Dialect::Ec2),
            "Euare" => Some(Dialect::Euare),
            _ => None,
        }
    }
}

/// Decodes `application/x-www-form-urlencoded` bytes (also a query string) into pairs.
pub fn parse_form(bytes: &[u8]) -> Vec<(String, String)> {
    let decode = |s: &[u8]| {
        let plus_as_space: Vec<u8> = s
            .iter()
            .map(|&b| if b == b'+' { b' ' } else { b })
            .collect();
        percent_decode(&plus_as_space)
            .decode_utf8_lossy()
            .into_owned()
    };
    bytes
        .split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (decode(&pair[..eq]), decode(&pair[eq + 1..])),
            None => (decode(pair), String::new()),
        })
        .collect()
}

/// Whether a request's body is a form (`application/x-www-form-urlencoded`), the way Query
/// API clients post their parameters.
pub fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

/// A Query request's parameters, from the query string and, for form POSTs, the body.
pub struct QueryRequest {
    params: Vec<(String, String)>,
}

impl QueryRequest {
    /// Gathers the parameters of a request.
    pub fn new(raw_query: &str, body: &[u8], headers: &HeaderMap) -> QueryRequest {
        let mut params = parse_form(raw_query.as_bytes());
        if is_form(headers) {
            params.extend(parse_form(body));
        }
        QueryRequest { params }
    }

    /// The value of a parameter, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of a parameter the action cannot do without.
    pub fn required(&self, name: &str) -> Result<&str, QueryError> {
        self.get(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| QueryError::MissingParameter(name.to_owned()))
    }
}

/// A fresh request id, as AWS returns with every response.
pub fn request_id() -> String {
    let bytes: [u8; 16] = rand::random();
    let h = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Escapes text for an XML element or attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// An XML response, sent in one piece with its length.
pub fn xml_response(status: StatusCode, body: String, request_id: &str) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/xml; charset=UTF-8"),
    );
    if let Ok(id) = http::HeaderValue::from_str(request_id) {
        headers.insert("x-amz-request-id", id);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        let pairs = parse_form(b"Action=CreateAccount&AccountName=a%2Bb+c&Flag");
        assert_eq!(
            pairs,
            vec![
                ("Action".into(), "CreateAccount".into()),
                ("AccountName".into(), "a+b c".into()),
                ("Flag".into(), String::new()),
            ]
        );
    }

    #[test]
    fn dialects_by_path() {
        assert_eq!(Dialect::for_path("/services/Euare/"), Some(Dialect::Euare));
        assert_eq!(Dialect::for_path("/services/compute"), Some(Dialect::Ec2));
        assert_eq!(
            Dialect::for_path("/services/Eucalyptus/"),
            Some(Dialect::Ec2)
        );
        assert_eq!(Dialect::for_path("/services/Walrus/b"), None);
        assert_eq!(Dialect::for_path("/bucket"), None);
    }

    #[test]
    fn escaping() {
        assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&apos;");
    }
}

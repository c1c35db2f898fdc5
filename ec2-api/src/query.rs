//! The Query protocol's plumbing: form parameters, request ids, XML documents and responses.

use axum::body::Body;
use http::{HeaderMap, Response, StatusCode};
use percent_encoding::percent_decode;
use xml::{Escaping, Writer};

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
            "compute" | "Eucalyptus" | "Properties" => Some(Dialect::Ec2),
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

    /// The members of a list parameter (`Name.1`, `Name.2`, ...), in index order; a bare
    /// `Name` counts as the first member (older clients send single values that way).
    pub fn list(&self, name: &str) -> Vec<&str> {
        let mut out: Vec<&str> = self.get(name).into_iter().collect();
        out.extend(
            self.indexes(name)
                .into_iter()
                .filter_map(|i| self.get(&format!("{name}.{i}"))),
        );
        out
    }

    /// The indexes `N` used under `Name.N` or `Name.N.Field`, ascending, each once: the
    /// members of a list of structures (`IpPermissions.1.IpProtocol`).
    pub fn indexes(&self, name: &str) -> Vec<u32> {
        let mut found: Vec<u32> = self
            .params
            .iter()
            .filter_map(|(k, _)| {
                let rest = k.strip_prefix(name)?.strip_prefix('.')?;
                rest.split('.').next()?.parse().ok()
            })
            .collect();
        found.sort_unstable();
        found.dedup();
        found
    }

    /// The `Filter.N.Name` / `Filter.N.Value.M` filters of a Describe action.
    pub fn filters(&self) -> Result<Vec<Filter>, QueryError> {
        self.indexes("Filter")
            .into_iter()
            .map(|i| {
                let name = self.required(&format!("Filter.{i}.Name"))?.to_owned();
                let values = self
                    .list(&format!("Filter.{i}.Value"))
                    .into_iter()
                    .map(str::to_owned)
                    .collect();
                Ok(Filter { name, values })
            })
            .collect()
    }

    /// A boolean parameter (`true`/`false`, any case), if given.
    pub fn boolean(&self, name: &str) -> Result<Option<bool>, QueryError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(true)),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(false)),
            Some(v) => Err(QueryError::Validation(format!(
                "Value ({v}) for parameter {name} is invalid. Expected: 'true' or 'false'."
            ))),
        }
    }

    /// An integer parameter, if given.
    pub fn integer(&self, name: &str) -> Result<Option<i64>, QueryError> {
        self.get(name)
            .map(|v| {
                v.trim().parse().map_err(|_| {
                    QueryError::Validation(format!(
                        "Value ({v}) for parameter {name} is invalid. Expected an integer."
                    ))
                })
            })
            .transpose()
    }
}

#[cfg(test)]
impl QueryRequest {
    /// The parameters of a form-encoded POST body (tests build requests this way).
    pub fn form(body: &str) -> QueryRequest {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        QueryRequest::new("", body.as_bytes(), &headers)
    }
}

/// One `Filter.N` of a Describe action: a name and the values any of which may match
/// (`*` and `?` are wildcards, as in AWS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// The filter's name, e.g. `image-type` or `tag:Name`.
    pub name: String,
    /// The accepted values.
    pub values: Vec<String>,
}

impl Filter {
    /// Whether any of `fields` matches any of the filter's values.
    pub fn matches<S: AsRef<str>>(&self, fields: &[S]) -> bool {
        fields
            .iter()
            .any(|f| self.values.iter().any(|v| wildcard(v, f.as_ref())))
    }
}

/// AWS filter matching: `*` any run, `?` any one character, `\\` escapes.
fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with backtracking to the last `*`.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        let (token, escaped, width) = match p.get(pi) {
            Some('\\') if pi + 1 < p.len() => (Some(p[pi + 1]), true, 2),
            Some(&c) => (Some(c), false, 1),
            None => (None, false, 0),
        };
        match token {
            Some('*') if !escaped => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if (c == '?' && !escaped) || c == t[ti] => {
                pi += width;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// EC2's vocabulary over the xml crate's writer: elements with escaped text, `...Set` lists
/// of `<item>`s, optional elements left out.
pub struct Xml {
    w: Writer,
}

impl Default for Xml {
    fn default() -> Self {
        Xml {
            w: Writer::new(Escaping::READABLE),
        }
    }
}

impl Xml {
    /// An empty document fragment.
    pub fn new() -> Xml {
        Xml::default()
    }

    /// `<name>text</name>`.
    pub fn elem(&mut self, name: &str, text: &str) -> &mut Xml {
        self.w.elem(name, text);
        self
    }

    /// `<name>text</name>` when there is a text, nothing otherwise.
    pub fn opt(&mut self, name: &str, text: Option<&str>) -> &mut Xml {
        if let Some(text) = text {
            self.elem(name, text);
        }
        self
    }

    /// `<name>` ... `</name>` around what `inner` writes.
    pub fn nest(&mut self, name: &str, inner: impl FnOnce(&mut Xml)) -> &mut Xml {
        self.w.open(name);
        inner(self);
        self.w.close(name);
        self
    }

    /// `<name><item>...</item>...</name>`, one item per element of `items` (an empty list is
    /// written `<name/>`, which clients read as an empty list).
    pub fn list<T>(
        &mut self,
        name: &str,
        items: impl IntoIterator<Item = T>,
        mut each: impl FnMut(&mut Xml, T),
    ) -> &mut Xml {
        let mut items = items.into_iter().peekable();
        if items.peek().is_none() {
            self.w.empty(name, &[]);
            return self;
        }
        self.nest(name, |x| {
            for item in items {
                x.nest("item", |x| each(x, item));
            }
        })
    }

    /// The text written so far.
    pub fn finish(self) -> String {
        self.w.finish()
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

/// A response document, its XML declaration written: the envelopes around the bodies [`Xml`]
/// writes, and the error documents. Text is escaped as in [`Xml`]: characters XML 1.0 cannot
/// carry (a caller's input may hold them and an error message may echo them) become U+FFFD,
/// so every response stays readable by strict parsers.
pub fn document() -> Writer {
    let mut w = Writer::new(Escaping::READABLE);
    w.raw("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    w
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
    fn lists_and_filters() {
        let body = b"Action=X&ImageId.2=b&ImageId.1=a&ImageId.10=c&Filter.1.Name=image-type\
&Filter.1.Value.1=machine&Filter.1.Value.2=ker*&IpPermissions.2.IpProtocol=udp\
&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.IpRanges.1.CidrIp=10.0.0.0/8";
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        let req = QueryRequest::new("", body, &headers);
        assert_eq!(req.list("ImageId"), vec!["a", "b", "c"]);
        assert_eq!(req.indexes("IpPermissions"), vec![1, 2]);
        assert_eq!(
            req.list("IpPermissions.1.IpRanges.1.CidrIp"),
            vec!["10.0.0.0/8"]
        );
        let filters = req.filters().unwrap();
        assert_eq!(filters.len(), 1);
        assert!(filters[0].matches(&["kernel"]));
        assert!(filters[0].matches(&["machine"]));
        assert!(!filters[0].matches(&["ramdisk"]));
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("*", ""));
        assert!(wildcard("a*c", "abbbc"));
        assert!(wildcard("a?c", "abc"));
        assert!(!wildcard("a?c", "ac"));
        assert!(wildcard("*.manifest.xml", "b/p.manifest.xml"));
        assert!(!wildcard("a\\*", "ab"));
        assert!(wildcard("a\\*", "a*"));
        assert!(!wildcard("abc", "abcd"));
    }

    #[test]
    fn xml_lists() {
        let mut x = Xml::new();
        x.list("groupSet", Vec::<&str>::new(), |x, g| {
            x.elem("groupId", g);
        });
        x.list("keySet", ["a&b"], |x, k| {
            x.elem("keyName", k);
        });
        assert_eq!(
            x.finish(),
            "<groupSet/><keySet><item><keyName>a&amp;b</keyName></item></keySet>"
        );
    }

    #[test]
    fn escaping() {
        let mut x = Xml::new();
        x.elem("a", "a<b>&\"'")
            .elem("b", "a\u{1}b\tc\u{7f}")
            .elem("c", "a\r\nb");
        assert_eq!(
            x.finish(),
            "<a>a&lt;b&gt;&amp;&quot;'</a><b>a\u{fffd}b\tc\u{fffd}</b><c>a&#xD;\nb</c>"
        );
        let mut d = document();
        d.elem("m", "\u{1}");
        assert_eq!(
            d.finish(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<m>\u{fffd}</m>"
        );
    }
}

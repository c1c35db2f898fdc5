//! XML in and out. Request bodies are read into a small element tree with quick-xml
//! (namespaces stripped, size-limited) so each operation's parser is a few lines of tree
//! walking; responses are written by a tiny escaping writer into one buffer, sent in one write.

use bytes::Bytes;
use quick_xml::events::Event;
use quick_xml::Reader;

use super::error::S3Error;

/// The S3 namespace every response document carries.
pub const S3_NS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// Largest XML request body accepted (AWS accepts about this much for DeleteObjects).
pub const MAX_XML_BODY: usize = 1024 * 1024;

/// Deepest element nesting accepted: S3 documents are shallow; this bounds recursion.
const MAX_DEPTH: usize = 16;

/// Builds an XML response in one buffer.
pub struct XmlWriter {
    buf: String,
}

impl Default for XmlWriter {
    fn default() -> Self {
        XmlWriter::new()
    }
}

impl XmlWriter {
    /// A document with the XML declaration written.
    pub fn new() -> XmlWriter {
        let mut buf = String::with_capacity(512);
        buf.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        XmlWriter { buf }
    }

    /// Opens the root element in the S3 namespace.
    pub fn open_root(&mut self, name: &str) {
        self.buf.push('<');
        self.buf.push_str(name);
        self.buf.push_str(" xmlns=\"");
        self.buf.push_str(S3_NS);
        self.buf.push_str("\">");
    }

    /// Opens an element without attributes.
    pub fn open_plain(&mut self, name: &str) {
        self.buf.push('<');
        self.buf.push_str(name);
        self.buf.push('>');
    }

    /// Writes trusted markup verbatim (element starts with attributes built from constants).
    pub fn raw(&mut self, markup: &str) {
        self.buf.push_str(markup);
    }

    /// Closes an element.
    pub fn close(&mut self, name: &str) {
        self.buf.push_str("</");
        self.buf.push_str(name);
        self.buf.push('>');
    }

    /// Writes `<name>text</name>`, escaping the text.
    pub fn elem(&mut self, name: &str, text: &str) {
        self.open_plain(name);
        escape_into(&mut self.buf, text);
        self.close(name);
    }

    /// The finished document.
    pub fn finish(self) -> Bytes {
        Bytes::from(self.buf.into_bytes())
    }
}

/// Escapes text for element content or attribute values. Control characters (valid in S3
/// keys) become character references so the document stays parseable by lenient readers;
/// clients that care use `encoding-type=url`.
pub fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("&#x{:X};", c as u32));
            }
            c => out.push(c),
        }
    }
}

/// Escapes text into a new string.
pub fn escape(text: &str) -> String {
    let mut s = String::with_capacity(text.len());
    escape_into(&mut s, text);
    s
}

/// Percent-encodes a value for `encoding-type=url` listings: everything but unreserved
/// characters and `/`; a space becomes `%20` (which every client's decoder accepts).
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// One element of a parsed request body: local name (namespace prefix dropped), its text
/// (verbatim, whitespace kept: keys may start or end with spaces) and its child elements.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Element {
    /// Local name.
    pub name: String,
    /// Concatenated text content directly inside this element.
    pub text: String,
    /// Child elements in document order.
    pub children: Vec<Element>,
}

impl Element {
    /// The first child with this local name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// All children with this local name.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// Text of the first child with this name.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }
}

/// Parses a request body into its root element. Anything not well-formed is `MalformedXML`;
/// bodies beyond [`MAX_XML_BODY`] are refused before parsing.
pub fn parse(body: &[u8]) -> Result<Element, S3Error> {
    if body.len() > MAX_XML_BODY {
        return Err(S3Error::MaxMessageLengthExceeded);
    }
    let mut reader = Reader::from_reader(body);
    reader.config_mut().check_end_names = true;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let local = |qname: &[u8]| -> Result<String, S3Error> {
        let local = match qname.iter().position(|&b| b == b':') {
            Some(i) => &qname[i + 1..],
            None => qname,
        };
        String::from_utf8(local.to_vec()).map_err(|_| S3Error::MalformedXml)
    };
    loop {
        match reader.read_event().map_err(|_| S3Error::MalformedXml)? {
            Event::Start(e) => {
                if root.is_some() || stack.len() >= MAX_DEPTH {
                    return Err(S3Error::MalformedXml);
                }
                stack.push(Element {
                    name: local(e.name().as_ref())?,
                    ..Element::default()
                });
            }
            Event::Empty(e) => {
                let el = Element {
                    name: local(e.name().as_ref())?,
                    ..Element::default()
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None if root.is_none() => root = Some(el),
                    None => return Err(S3Error::MalformedXml),
                }
            }
            Event::End(_) => {
                let el = stack.pop().ok_or(S3Error::MalformedXml)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(el),
                    None => root = Some(el),
                }
            }
            Event::Text(t) => {
                let text = t.unescape().map_err(|_| S3Error::MalformedXml)?;
                match stack.last_mut() {
                    Some(el) => el.text.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => return Err(S3Error::MalformedXml),
                }
            }
            Event::CData(c) => {
                let text = std::str::from_utf8(&c).map_err(|_| S3Error::MalformedXml)?;
                match stack.last_mut() {
                    Some(el) => el.text.push_str(text),
                    None => return Err(S3Error::MalformedXml),
                }
            }
            Event::DocType(_) => return Err(S3Error::MalformedXml),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(S3Error::MalformedXml);
    }
    root.ok_or(S3Error::MalformedXml)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_namespaces_and_whitespace() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<s3:Delete xmlns:s3="http://s3.amazonaws.com/doc/2006-03-01/">
  <s3:Quiet>true</s3:Quiet>
  <s3:Object><s3:Key> a&amp;b </s3:Key></s3:Object>
  <Object><Key><![CDATA[x<y]]></Key><VersionId/></Object>
</s3:Delete>"#;
        let root = parse(body).expect("parse");
        assert_eq!(root.name, "Delete");
        assert_eq!(root.child_text("Quiet"), Some("true"));
        let keys: Vec<_> = root
            .children_named("Object")
            .filter_map(|o| o.child_text("Key"))
            .collect();
        assert_eq!(keys, vec![" a&b ", "x<y"]);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            &b""[..],
            b"<a>",
            b"<a></b>",
            b"<a/><b/>",
            b"text",
            b"<a>&bogus;</a>",
            b"<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>",
        ] {
            assert!(
                matches!(parse(bad), Err(S3Error::MalformedXml)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert!(parse(deep.as_bytes()).is_err());
        assert!(matches!(
            parse(&vec![b' '; MAX_XML_BODY + 1]),
            Err(S3Error::MaxMessageLengthExceeded)
        ));
    }

    #[test]
    fn writer_escapes() {
        let mut w = XmlWriter::new();
        w.open_root("R");
        w.elem("Key", "a<b>&\"'\u{1}");
        w.close("R");
        let s = String::from_utf8(w.finish().to_vec()).expect("utf8");
        assert!(s.ends_with(
            "<R xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Key>a&lt;b&gt;&amp;&quot;&apos;&#x1;</Key></R>"
        ));
    }

    #[test]
    fn url_encoding() {
        assert_eq!(url_encode("a b+c/d&é"), "a%20b%2Bc/d%26%C3%A9");
    }
}

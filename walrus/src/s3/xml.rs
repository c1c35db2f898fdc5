//! S3's XML: its namespace, its body limit, its documents and its URL encoding, over the xml
//! crate's writer and tree. Request bodies are read into the tree (size-limited) so each
//! operation's parser is a few lines of tree walking; responses are written into one buffer,
//! sent in one write.

pub use ::xml::Element;
use ::xml::{Escaping, Writer};

use super::error::S3Error;

/// The S3 namespace every response document carries.
pub const S3_NS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// Largest XML request body accepted (AWS accepts about this much for DeleteObjects).
pub const MAX_XML_BODY: usize = 1024 * 1024;

/// The attribute of a response's root element: the S3 namespace.
pub const S3_ROOT: [(&str, &str); 1] = [("xmlns", S3_NS)];

/// A response document, its XML declaration written: S3 writes keys exactly, characters XML
/// cannot carry as references, as AWS does.
pub fn document() -> Writer {
    let mut w = Writer::new(Escaping::LOSSLESS);
    w.raw("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    w
}

/// Percent-encodes a value for `encoding-type=url` listings with AWS' `UriEncode`, the one
/// encoder the signers use too: everything but unreserved characters and `/`, as `%XX` in
/// uppercase; a space becomes `%20` (which every client's decoder accepts).
pub fn url_encode(text: &str) -> String {
    identity::uri_encode(text.as_bytes(), true)
}

/// Parses a request body into its root element (namespace prefixes dropped, text verbatim:
/// keys may start or end with spaces). Anything not well-formed is `MalformedXML`; bodies
/// beyond [`MAX_XML_BODY`] are refused before parsing.
pub fn parse(body: &[u8]) -> Result<Element, S3Error> {
    if body.len() > MAX_XML_BODY {
        return Err(S3Error::MaxMessageLengthExceeded);
    }
    Element::parse(body).map_err(|_| S3Error::MalformedXml)
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
        let mut w = document();
        w.open_with("R", &S3_ROOT);
        w.elem("Key", "a<b>&\"'\u{1}");
        w.close("R");
        let s = w.finish();
        assert!(s.ends_with(
            "<R xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Key>a&lt;b&gt;&amp;&quot;'&#x1;</Key></R>"
        ));
    }

    #[test]
    fn url_encoding() {
        assert_eq!(url_encode("a b+c/d&é"), "a%20b%2Bc/d%26%C3%A9");
        assert_eq!(url_encode("Az09-_.~\u{1}\u{7f}%"), "Az09-_.~%01%7F%25");
    }
}

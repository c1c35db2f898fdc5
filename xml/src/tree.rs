//! The one element tree, for every document Koala reads: S3 request bodies, EC2 and Euare
//! responses, bundle manifests. Documents are small (a manifest or a response is a few KiB, a
//! request body at most 1 MiB), so a tree is simpler than streaming and costs nothing.

use std::ops::Range;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

/// Deepest element nesting accepted. Koala's documents nest a dozen levels at most; the bound
/// keeps a hostile request body from building an arbitrarily deep tree.
pub const MAX_DEPTH: usize = 32;

/// Why bytes could not be read as one XML document.
#[derive(Debug)]
pub enum Error {
    /// The bytes are not well-formed XML (or not UTF-8).
    Syntax(quick_xml::Error),
    /// There is no root element, more than one, an element left open or text outside the root.
    Shape,
    /// Elements nest deeper than [`MAX_DEPTH`].
    TooDeep,
    /// The document has a DOCTYPE: none of Koala's documents has one, and entity definitions
    /// are a way to make a parser do unbounded work.
    Doctype,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Error::Syntax(_) => "the document is not well-formed XML",
            Error::Shape => "the document is not one XML element with a single root",
            Error::TooDeep => "the document nests its elements too deep",
            Error::Doctype => "the document has a DOCTYPE, which no Koala document has",
        })
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Syntax(e) => Some(e),
            _ => None,
        }
    }
}

impl From<quick_xml::Error> for Error {
    fn from(e: quick_xml::Error) -> Error {
        Error::Syntax(e)
    }
}

/// One element: its local name (namespace prefix dropped: readers match names, not
/// namespaces), its attributes, its text, its children, and where it lies in the document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    /// The local name (`Key` for `<s3:Key>`).
    pub name: String,
    /// The attributes, by their names as written, values unescaped.
    pub attributes: Vec<(String, String)>,
    /// The element's own text (character data and CDATA), verbatim: an S3 key may begin or
    /// end with spaces.
    pub text: String,
    /// The child elements, in document order.
    pub children: Vec<Element>,
    /// The element's bytes in the document, from `<` of its start tag to `>` of its end tag:
    /// what a bundle manifest's signature covers, taken as received.
    pub span: Range<usize>,
}

impl Element {
    /// Parses a whole document into its root element. Comments, processing instructions and
    /// the XML declaration are skipped; whitespace outside the root is allowed.
    pub fn parse(bytes: &[u8]) -> Result<Element, Error> {
        let mut reader = Reader::from_reader(bytes);
        reader.config_mut().check_end_names = true;
        let mut stack: Vec<Element> = Vec::new();
        let mut root: Option<Element> = None;
        loop {
            let start = position(&reader);
            let event = reader.read_event()?;
            let end = position(&reader);
            match event {
                Event::Start(_) | Event::Empty(_) if root.is_some() && stack.is_empty() => {
                    return Err(Error::Shape);
                }
                Event::Start(e) => {
                    if stack.len() >= MAX_DEPTH {
                        return Err(Error::TooDeep);
                    }
                    stack.push(Element::open(&e, start..end)?);
                }
                Event::Empty(e) => {
                    let element = Element::open(&e, start..end)?;
                    attach(&mut stack, &mut root, element);
                }
                Event::End(_) => {
                    let mut element = stack.pop().ok_or(Error::Shape)?;
                    element.span.end = end;
                    attach(&mut stack, &mut root, element);
                }
                Event::Text(t) => {
                    let text = t.unescape()?;
                    match stack.last_mut() {
                        Some(open) => open.text.push_str(&text),
                        None if text.trim().is_empty() => {}
                        None => return Err(Error::Shape),
                    }
                }
                Event::CData(t) => {
                    let text = std::str::from_utf8(&t)
                        .map_err(|e| quick_xml::Error::Encoding(e.into()))?;
                    stack.last_mut().ok_or(Error::Shape)?.text.push_str(text);
                }
                Event::DocType(_) => return Err(Error::Doctype),
                Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
                Event::Eof => break,
            }
        }
        if !stack.is_empty() {
            return Err(Error::Shape);
        }
        root.ok_or(Error::Shape)
    }

    fn open(e: &BytesStart<'_>, span: Range<usize>) -> Result<Element, Error> {
        let utf8 = |bytes: &[u8]| -> Result<String, Error> {
            std::str::from_utf8(bytes)
                .map(str::to_owned)
                .map_err(|e| quick_xml::Error::Encoding(e.into()).into())
        };
        let mut attributes = Vec::new();
        for a in e.attributes() {
            let a = a.map_err(quick_xml::Error::from)?;
            attributes.push((utf8(a.key.as_ref())?, a.unescape_value()?.into_owned()));
        }
        Ok(Element {
            name: utf8(e.local_name().as_ref())?,
            attributes,
            text: String::new(),
            children: Vec::new(),
            span,
        })
    }

    /// Trims the text of this element and of all below it: for readers of responses, where
    /// whitespace around a value is layout, not data.
    pub fn trim_text(&mut self) {
        let trimmed = self.text.trim();
        if trimmed.len() != self.text.len() {
            self.text = trimmed.to_owned();
        }
        self.children.iter_mut().for_each(Element::trim_text);
    }

    /// The first child called `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// All children called `name`, in document order.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The text of the first child called `name`.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }

    /// The value of the attribute called `name`.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first element called `name` at any depth, this one included, in document order:
    /// for a response whose one interesting value may sit anywhere (`<Code>`, `<Credentials>`).
    pub fn find(&self, name: &str) -> Option<&Element> {
        if self.name == name {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(name))
    }

    /// The element at a `/`-separated path of child names below this one (`""` is itself).
    pub fn get(&self, path: &str) -> Option<&Element> {
        path.split('/')
            .filter(|step| !step.is_empty())
            .try_fold(self, |element, step| element.child(step))
    }

    /// The text at `path`, if that element exists (an empty element gives `""`).
    pub fn value(&self, path: &str) -> Option<&str> {
        self.get(path).map(|e| e.text.as_str())
    }

    /// The text at `path`, or `""` when it is missing: for output columns, where euca2ools
    /// prints a missing field and an empty one alike.
    pub fn field(&self, path: &str) -> &str {
        self.value(path).unwrap_or("")
    }

    /// The entries of the AWS Query list at `path` (its `<item>` children); none when it is
    /// missing or empty, as euca2ools reads `<groupSet/>`.
    pub fn items<'a>(&'a self, path: &str) -> impl Iterator<Item = &'a Element> + 'a {
        self.get(path)
            .into_iter()
            .flat_map(|list| list.children.iter())
            .filter(|c| c.name == "item")
    }
}

/// The reader's offset in the document (documents are in memory, so it fits a `usize`).
fn position(reader: &Reader<&[u8]>) -> usize {
    usize::try_from(reader.buffer_position()).unwrap_or(usize::MAX)
}

/// Attaches a finished element to its parent, or makes it the root.
fn attach(stack: &mut [Element], root: &mut Option<Element>, element: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IMAGES: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<DescribeImagesResponse xmlns="http://ec2.amazonaws.com/doc/2015-10-01/">
  <requestId>r-1</requestId>
  <imagesSet>
    <item>
      <imageId>emi-12345678</imageId>
      <imageLocation>bucket/a &amp; b.manifest.xml</imageLocation>
      <productCodes/>
    </item>
    <item><imageId>eki-00000001</imageId><description><![CDATA[<raw>]]></description></item>
  </imagesSet>
</DescribeImagesResponse>"#;

    #[test]
    fn paths_lists_text_and_search() {
        let mut root = Element::parse(IMAGES.as_bytes()).unwrap();
        root.trim_text();
        assert_eq!(root.name, "DescribeImagesResponse");
        assert_eq!(root.value("requestId"), Some("r-1"));
        let images: Vec<&Element> = root.items("imagesSet").collect();
        assert_eq!(images.len(), 2);
        assert_eq!(
            images[0].field("imageLocation"),
            "bucket/a & b.manifest.xml"
        );
        assert_eq!(images[0].items("productCodes").count(), 0);
        assert_eq!(images[0].value("productCodes"), Some(""));
        assert_eq!(images[1].field("description"), "<raw>");
        assert_eq!(images[1].field("kernelId"), "");
        assert_eq!(
            root.find("imageId").map(|e| e.text.as_str()),
            Some("emi-12345678")
        );
        assert_eq!(root.get(""), Some(&root));
    }

    #[test]
    fn names_attributes_whitespace_and_spans() {
        let body = "<s3:Delete xmlns:s3='urn:s3'>\n  <s3:Object><s3:Key> a&amp;b </s3:Key>\
                    <d algorithm=\"SHA1\">x</d></s3:Object>\n</s3:Delete>\n";
        let root = Element::parse(body.as_bytes()).unwrap();
        assert_eq!(root.name, "Delete");
        let object = root.child("Object").unwrap();
        assert_eq!(object.child_text("Key"), Some(" a&b "));
        let d = object.child("d").unwrap();
        assert_eq!(d.attribute("algorithm"), Some("SHA1"));
        assert_eq!(
            &body[object.span.clone()],
            &body[body.find("<s3:Object>").unwrap()..body.find("\n</s3:Delete>").unwrap()]
        );
        assert_eq!(root.attribute("xmlns:s3"), Some("urn:s3"));
    }

    #[test]
    fn not_one_document_is_refused() {
        for bad in [
            &b""[..],
            b"not xml",
            b"<a></a><b/>",
            b"<a><b></a>",
            b"<a>",
            b"<a></b>",
            b"<a/>text",
            b"<a>&bogus;</a>",
            b"<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>",
        ] {
            assert!(
                Element::parse(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert!(matches!(
            Element::parse(deep.as_bytes()),
            Err(Error::TooDeep)
        ));
        let fine = "<a>".repeat(MAX_DEPTH) + &"</a>".repeat(MAX_DEPTH);
        assert!(Element::parse(fine.as_bytes()).is_ok());
    }
}

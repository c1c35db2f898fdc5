//! A small XML tree for reading EC2 Query API responses the way euca2ools does: one root
//! element whose name does not matter, namespaces ignored, values found by path
//! (`instanceState/name`) and lists (`imagesSet`, `ipPermissions`, ...) read as their `<item>`
//! children. Responses are a few KiB, so a tree is simpler than streaming and costs nothing.

use quick_xml::events::Event;
use quick_xml::Reader;

/// Why a response could not be read as XML.
#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    /// The body is not well-formed XML.
    #[error("the response is not well-formed XML")]
    Syntax(#[from] quick_xml::Error),
    /// The body has no root element, more than one, or an element left open.
    #[error("the response is not one XML document with a single root element")]
    Shape,
}

/// An element: its local name (namespace prefix dropped), its text and its child elements.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    /// The local name (`imagesSet` for `<ec2:imagesSet>`).
    pub name: String,
    /// The element's own text (character data and CDATA), trimmed.
    pub text: String,
    /// The child elements, in document order.
    pub children: Vec<Element>,
}

impl Element {
    /// Parses a whole document into its root element.
    pub fn parse(xml: &str) -> Result<Element, XmlError> {
        let mut reader = Reader::from_str(xml);
        let mut stack: Vec<Element> = Vec::new();
        let mut root: Option<Element> = None;
        loop {
            let event = reader.read_event()?;
            match event {
                Event::Start(_) | Event::Empty(_) if root.is_some() && stack.is_empty() => {
                    return Err(XmlError::Shape);
                }
                Event::Start(e) => stack.push(Element::named(e.local_name().as_ref())),
                Event::Empty(e) => {
                    let element = Element::named(e.local_name().as_ref());
                    close(&mut stack, &mut root, element);
                }
                Event::End(_) => {
                    let mut element = stack.pop().ok_or(XmlError::Shape)?;
                    element.text = element.text.trim().to_owned();
                    close(&mut stack, &mut root, element);
                }
                Event::Text(t) => {
                    if let Some(open) = stack.last_mut() {
                        open.text.push_str(&t.unescape()?);
                    }
                }
                Event::CData(t) => {
                    if let Some(open) = stack.last_mut() {
                        open.text.push_str(&String::from_utf8_lossy(&t));
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
        if !stack.is_empty() {
            return Err(XmlError::Shape);
        }
        root.ok_or(XmlError::Shape)
    }

    fn named(name: &[u8]) -> Element {
        Element {
            name: String::from_utf8_lossy(name).into_owned(),
            ..Element::default()
        }
    }

    /// The first child called `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
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

    /// The entries of the list at `path` (its `<item>` children); none when it is missing or
    /// empty, as euca2ools reads `<groupSet/>`.
    pub fn items<'a>(&'a self, path: &str) -> impl Iterator<Item = &'a Element> + 'a {
        self.get(path)
            .into_iter()
            .flat_map(|list| list.children.iter())
            .filter(|c| c.name == "item")
    }
}

/// Attaches a finished element to its parent, or makes it the root.
fn close(stack: &mut [Element], root: &mut Option<Element>, element: Element) {
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
      <blockDeviceMapping>
        <item><deviceName>/dev/sda2</deviceName><virtualName>ephemeral0</virtualName></item>
      </blockDeviceMapping>
      <productCodes/>
    </item>
    <item><imageId>eki-00000001</imageId><description><![CDATA[<raw>]]></description></item>
  </imagesSet>
</DescribeImagesResponse>"#;

    #[test]
    fn paths_lists_and_text() {
        let root = Element::parse(IMAGES).unwrap();
        assert_eq!(root.name, "DescribeImagesResponse");
        assert_eq!(root.value("requestId"), Some("r-1"));
        let images: Vec<&Element> = root.items("imagesSet").collect();
        assert_eq!(images.len(), 2);
        assert_eq!(images[0].field("imageId"), "emi-12345678");
        assert_eq!(
            images[0].field("imageLocation"),
            "bucket/a & b.manifest.xml"
        );
        let bdm: Vec<&Element> = images[0].items("blockDeviceMapping").collect();
        assert_eq!(bdm[0].field("virtualName"), "ephemeral0");
        assert_eq!(images[0].items("productCodes").count(), 0);
        assert_eq!(images[0].value("productCodes"), Some(""));
        assert_eq!(images[1].field("description"), "<raw>");
        assert_eq!(images[1].value("kernelId"), None);
        assert_eq!(images[1].field("kernelId"), "");
        assert_eq!(root.items("nope/deeper").count(), 0);
        assert_eq!(root.get(""), Some(&root));
    }

    #[test]
    fn namespace_prefixes_are_ignored() {
        let root = Element::parse(
            "<ec2:R xmlns:ec2='urn:x'><ec2:keySet><ec2:item><ec2:keyName>k</ec2:keyName>\
             </ec2:item></ec2:keySet></ec2:R>",
        )
        .unwrap();
        assert_eq!(root.name, "R");
        let keys: Vec<&str> = root.items("keySet").map(|k| k.field("keyName")).collect();
        assert_eq!(keys, ["k"]);
    }

    #[test]
    fn errors_are_found_by_path() {
        let root = Element::parse(
            "<Response><Errors><Error><Code>InvalidAMIID.NotFound</Code>\
             <Message>no</Message></Error></Errors><RequestID>x</RequestID></Response>",
        )
        .unwrap();
        assert_eq!(
            root.value("Errors/Error/Code"),
            Some("InvalidAMIID.NotFound")
        );
    }

    #[test]
    fn not_one_document_is_refused() {
        for bad in ["", "not xml", "<a></a><b/>", "<a><b></a>", "<a>"] {
            assert!(Element::parse(bad).is_err(), "{bad:?}");
        }
    }
}

//! Reading EC2 Query API responses the way euca2ools does, with the xml crate's tree: one root
//! element whose name does not matter, namespaces ignored, values found by path
//! (`instanceState/name`) and lists (`imagesSet`, `ipPermissions`, ...) read as their `<item>`
//! children, text trimmed (whitespace around a value is layout).

pub use xml::{Element, Error as XmlError};

/// Parses a whole response into its root element, every text trimmed.
pub fn parse(body: &str) -> Result<Element, XmlError> {
    let mut root = Element::parse(body.as_bytes())?;
    root.trim_text();
    Ok(root)
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
        let root = parse(IMAGES).unwrap();
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
        let root = parse(
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
        let root = parse(
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
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}

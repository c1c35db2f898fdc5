//! The one writer: elements, attributes and text into one `String`, escaped by the document's
//! [`Escaping`]. Compact by default, as every wire document is; indented for libvirt domains,
//! which people read in logs and `virsh dumpxml`.

use crate::escape::Escaping;

/// Builds one XML document (or fragment) in one buffer.
pub struct Writer {
    out: String,
    escaping: Escaping,
    /// The depth of open elements when indenting, `None` for compact output.
    indent: Option<usize>,
}

impl Writer {
    /// A compact document: no whitespace between elements, as the wire protocols write them
    /// and as the manifest's signed bytes must be.
    pub fn new(escaping: Escaping) -> Writer {
        Writer {
            out: String::with_capacity(512),
            escaping,
            indent: None,
        }
    }

    /// An indented document: each element on its own line, two spaces per level.
    pub fn indented(escaping: Escaping) -> Writer {
        Writer {
            indent: Some(0),
            ..Writer::new(escaping)
        }
    }

    /// Writes trusted markup verbatim: an XML declaration, or an element start built from
    /// constants.
    pub fn raw(&mut self, markup: &str) -> &mut Writer {
        self.out.push_str(markup);
        self
    }

    /// Writes escaped text.
    pub fn text(&mut self, text: &str) -> &mut Writer {
        self.escaping.escape_into(&mut self.out, text);
        self
    }

    /// Opens `<name>`.
    pub fn open(&mut self, name: &str) -> &mut Writer {
        self.open_with(name, &[])
    }

    /// Opens `<name a="v" ...>`, the values escaped.
    pub fn open_with(&mut self, name: &str, attributes: &[(&str, &str)]) -> &mut Writer {
        self.start_tag(name, attributes, ">");
        self.line_end();
        if let Some(depth) = &mut self.indent {
            *depth += 1;
        }
        self
    }

    /// Writes `<name a="v" .../>`.
    pub fn empty(&mut self, name: &str, attributes: &[(&str, &str)]) -> &mut Writer {
        self.start_tag(name, attributes, "/>");
        self.line_end();
        self
    }

    /// Closes `</name>`.
    pub fn close(&mut self, name: &str) -> &mut Writer {
        if let Some(depth) = &mut self.indent {
            *depth = depth.saturating_sub(1);
        }
        self.line_start();
        self.end_tag(name);
        self.line_end();
        self
    }

    /// Writes `<name>text</name>`.
    pub fn elem(&mut self, name: &str, text: &str) -> &mut Writer {
        self.elem_with(name, &[], text)
    }

    /// Writes `<name a="v" ...>text</name>`.
    pub fn elem_with(
        &mut self,
        name: &str,
        attributes: &[(&str, &str)],
        text: &str,
    ) -> &mut Writer {
        self.start_tag(name, attributes, ">");
        self.text(text);
        self.end_tag(name);
        self.line_end();
        self
    }

    /// The document written so far.
    pub fn finish(self) -> String {
        self.out
    }

    fn start_tag(&mut self, name: &str, attributes: &[(&str, &str)], end: &str) {
        self.line_start();
        self.out.push('<');
        self.out.push_str(name);
        for (key, value) in attributes {
            self.out.push(' ');
            self.out.push_str(key);
            self.out.push_str("=\"");
            self.escaping.escape_into(&mut self.out, value);
            self.out.push('"');
        }
        self.out.push_str(end);
    }

    fn end_tag(&mut self, name: &str) {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
    }

    fn line_start(&mut self) {
        if let Some(depth) = self.indent {
            self.out.extend(std::iter::repeat_n("  ", depth));
        }
    }

    fn line_end(&mut self) {
        if self.indent.is_some() {
            self.out.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact() {
        let mut w = Writer::new(Escaping::LOSSLESS);
        w.raw("<?xml version=\"1.0\"?>\n")
            .open_with("R", &[("xmlns", "urn:x")])
            .elem("Key", "a&b")
            .elem_with("d", &[("a", "\"q\"")], "t")
            .empty("e", &[])
            .close("R");
        assert_eq!(
            w.finish(),
            "<?xml version=\"1.0\"?>\n<R xmlns=\"urn:x\"><Key>a&amp;b</Key>\
             <d a=\"&quot;q&quot;\">t</d><e/></R>"
        );
    }

    #[test]
    fn indented() {
        let mut w = Writer::indented(Escaping::LOSSLESS);
        w.open_with("domain", &[("type", "kvm")])
            .elem("name", "i-1")
            .open("os")
            .empty("kernel", &[("path", "/k")])
            .close("os")
            .close("domain");
        assert_eq!(
            w.finish(),
            "<domain type=\"kvm\">\n  <name>i-1</name>\n  <os>\n    <kernel path=\"/k\"/>\n  \
             </os>\n</domain>\n"
        );
    }
}

//! The one escaping rule for text and attribute values.
//!
//! Every document escapes the markup characters the same way (`&amp;` `&lt;` `&gt;` `&quot;`,
//! so one function serves text and the writer's double-quoted attributes; an apostrophe is
//! written as itself, as euca2ools writes it in the signed manifest), keeps tab and line feed,
//! and writes a carriage return as `&#xD;` (a reader turns a literal one into a line feed). Documents differ in two properties only, both about characters a document cannot
//! carry as themselves: those XML 1.0 forbids ([`Unrepresentable`]) and, in a document declared
//! ASCII, those beyond ASCII ([`Charset`]).

use std::fmt::Write as _;

/// What a document does with the characters XML 1.0 cannot carry at all: the C0 controls
/// other than tab, line feed and carriage return, DEL, U+FFFE and U+FFFF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unrepresentable {
    /// As hexadecimal character references (`&#x1;`), as AWS S3 writes object keys: nothing
    /// is lost for the readers that accept them, and clients that care ask for URL encoding.
    Reference,
    /// As U+FFFD, so that strict parsers (Python's expat under boto and euca2ools) read every
    /// response, even an error message echoing a caller's control characters.
    Replace,
}

/// The character set a document is declared in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charset {
    /// UTF-8: every other character is written as itself.
    Utf8,
    /// ASCII (the bundle manifest, as euca2ools declares it): characters beyond ASCII become
    /// decimal character references, as Python's `xmlcharrefreplace` writes them.
    Ascii,
}

/// How one kind of document escapes text: the one rule, with the document's answers to the
/// two questions the rule leaves open.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Escaping {
    /// What becomes of characters XML 1.0 cannot carry.
    pub unrepresentable: Unrepresentable,
    /// The declared character set.
    pub charset: Charset,
}

impl Escaping {
    /// UTF-8, forbidden characters as references: S3 responses and libvirt domains, where a
    /// value must come back exactly as it was or not at all.
    pub const LOSSLESS: Escaping = Escaping {
        unrepresentable: Unrepresentable::Reference,
        charset: Charset::Utf8,
    };

    /// UTF-8, forbidden characters replaced: EC2 and Euare responses, which strict parsers
    /// must always be able to read.
    pub const READABLE: Escaping = Escaping {
        unrepresentable: Unrepresentable::Replace,
        charset: Charset::Utf8,
    };

    /// ASCII, forbidden characters as references: the bundle manifest.
    pub const ASCII: Escaping = Escaping {
        unrepresentable: Unrepresentable::Reference,
        charset: Charset::Ascii,
    };

    /// Appends `text` to `out`, escaped for element content or an attribute value.
    pub fn escape_into(self, out: &mut String, text: &str) {
        for c in text.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' => out.push_str("&gt;"),
                '"' => out.push_str("&quot;"),
                '\t' | '\n' => out.push(c),
                '\r' => out.push_str("&#xD;"),
                c if c < ' ' || matches!(c, '\u{7f}' | '\u{fffe}' | '\u{ffff}') => {
                    match self.unrepresentable {
                        // Writing to a String cannot fail.
                        Unrepresentable::Reference => {
                            let _ = write!(out, "&#x{:X};", u32::from(c));
                        }
                        Unrepresentable::Replace => out.push('\u{fffd}'),
                    }
                }
                c if !c.is_ascii() && self.charset == Charset::Ascii => {
                    let _ = write!(out, "&#{};", u32::from(c));
                }
                c => out.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escape(e: Escaping, text: &str) -> String {
        let mut out = String::new();
        e.escape_into(&mut out, text);
        out
    }

    #[test]
    fn markup_is_escaped_alike_everywhere() {
        for e in [Escaping::LOSSLESS, Escaping::READABLE, Escaping::ASCII] {
            assert_eq!(
                escape(e, "a<b>&\"'\t\n\r"),
                "a&lt;b&gt;&amp;&quot;'\t\n&#xD;"
            );
        }
    }

    #[test]
    fn documents_differ_only_in_what_they_cannot_carry() {
        let text = "k\u{1}\u{7f}é\u{fffe}";
        assert_eq!(escape(Escaping::LOSSLESS, text), "k&#x1;&#x7F;é&#xFFFE;");
        assert_eq!(
            escape(Escaping::READABLE, text),
            "k\u{fffd}\u{fffd}é\u{fffd}"
        );
        assert_eq!(escape(Escaping::ASCII, text), "k&#x1;&#x7F;&#233;&#xFFFE;");
    }
}

//! Koala's XML, in one place: every document Koala writes (S3 and EC2/Euare responses, bundle
//! manifests, libvirt domains) is escaped by one rule ([`Escaping`]) and written by one
//! [`Writer`]; every document it reads (S3 request bodies, EC2 responses, manifests) becomes
//! one [`Element`] tree. The protocols differ only in what they say, never in how a `<` or a
//! control character is written.
//!
//! Reading is quick-xml's; writing is a few lines over a `String`, since every document is
//! small and built in one piece.

mod escape;
mod tree;
mod write;

pub use escape::{Charset, Escaping, Unrepresentable};
pub use tree::{Element, Error, MAX_DEPTH};
pub use write::Writer;

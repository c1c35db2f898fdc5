//! Walrus: Koala's S3-compatible object store.

pub mod acl;
pub mod names;
pub mod store;

//! The euca2ools commands and `euca_conf`: the signed client they share (`client.rs`), the
//! EC2 response reader (`ec2xml.rs`), and the command family (`euca.rs`, `euca/` by area).
//! Depends on the bundle format and the internal protocol only, so a client build needs
//! neither librocksdb nor libvirt.

pub mod client;
pub mod ec2xml;
pub mod euca;

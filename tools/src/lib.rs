//! Shared plumbing for Koala's binaries: configuration, the front door that hands each
//! request to its role, the signed client the admin commands use, and the euca2ools command
//! family built on it.

pub mod certs;
pub mod client;
pub mod config;
pub mod ec2xml;
pub mod euca;
pub mod joined;
pub mod quotas;
pub mod roles;
pub mod serve;
pub mod server;

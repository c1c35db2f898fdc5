//! Shared plumbing for Koala's binaries: configuration, the front door that hands each
//! request to its role, and the signed client the admin commands use.

pub mod client;
pub mod config;
pub mod server;

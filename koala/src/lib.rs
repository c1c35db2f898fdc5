//! The `koala` daemon's composition: its configuration, the front door that hands each
//! request to its role, the roles wired together (one host or apart), the serve loop with its
//! TLS and limits, the key service, and the admin's quotas. The client tools are `euca2ools`.

pub mod bench_console;
pub mod certs;
pub mod config;
pub mod quotas;
pub mod roles;
pub mod serve;
pub mod server;

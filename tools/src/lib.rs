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

/// An error and its chain of causes as one line, the way euca2ools prints failures
/// (`PROG: error: what failed: why`).
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut msg = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        msg.push_str(": ");
        msg.push_str(&cause.to_string());
        source = cause.source();
    }
    msg
}

//! The `koala` daemon's composition: its configuration, the front door that hands each
//! request to its role, the roles wired together (one host or apart), the serve loop with its
//! TLS and limits, the key service, and the admin's quotas. The client tools are `euca2ools`.

/// Prints a line on stdout as `println!` does, except that a closed stdout (a pipe whose
/// reader went away, a closed terminal) drops the line instead of ending the daemon: the
/// roles' banners and notices are for whoever watches, and the cloud must run without them.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

pub mod bench_console;
pub mod certs;
pub mod config;
pub mod quotas;
pub mod roles;
pub mod serve;
pub mod server;

//! `euca-release-address`: releases an elastic IP address, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    euca2ools::euca::main::<euca2ools::euca::addresses::ReleaseAddress>("euca-release-address")
}

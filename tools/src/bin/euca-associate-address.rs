//! `euca-associate-address`: associates an elastic IP address with an instance, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    tools::euca::main::<tools::euca::addresses::AssociateAddress>("euca-associate-address")
}

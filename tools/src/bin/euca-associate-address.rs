//! `euca-associate-address`: associates an elastic IP address with an instance, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    euca2ools::euca::main::<euca2ools::euca::addresses::AssociateAddress>("euca-associate-address")
}

//! `euca-authorize`: adds a rule to a security group, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    euca2ools::euca::main::<euca2ools::euca::groups::Authorize>("euca-authorize")
}

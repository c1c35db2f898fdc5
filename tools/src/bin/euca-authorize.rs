//! `euca-authorize`: adds a rule to a security group, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    tools::euca::main::<tools::euca::groups::Authorize>("euca-authorize")
}

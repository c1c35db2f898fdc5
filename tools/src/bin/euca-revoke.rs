//! `euca-revoke`: removes a rule from a security group, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    tools::euca::main::<tools::euca::groups::Revoke>("euca-revoke")
}

//! `euca-revoke`: removes a rule from a security group, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    euca2ools::euca::main::<euca2ools::euca::groups::Revoke>("euca-revoke")
}

//! `euca-describe-groups`: shows security groups and their rules, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    euca2ools::euca::main::<euca2ools::euca::groups::DescribeGroups>("euca-describe-groups")
}

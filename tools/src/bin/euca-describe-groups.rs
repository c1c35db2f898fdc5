//! `euca-describe-groups`: shows security groups and their rules, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    tools::euca::main::<tools::euca::groups::DescribeGroups>("euca-describe-groups")
}

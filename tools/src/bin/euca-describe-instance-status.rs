//! `euca-describe-instance-status`: shows instances' status checks and scheduled events, with
//! euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    tools::euca::main::<tools::euca::instances::DescribeInstanceStatus>(
        "euca-describe-instance-status",
    )
}

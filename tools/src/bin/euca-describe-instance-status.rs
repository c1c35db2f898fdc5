//! `euca-describe-instance-status`: shows instances' status checks and scheduled events, with
//! euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    euca2ools::euca::main::<euca2ools::euca::instances::DescribeInstanceStatus>(
        "euca-describe-instance-status",
    )
}

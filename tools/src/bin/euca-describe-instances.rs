//! `euca-describe-instances`: shows instances, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    tools::euca::main::<tools::euca::instances::DescribeInstances>("euca-describe-instances")
}

//! `euca-describe-properties`: shows the cloud's properties (cloud admin), with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    euca2ools::euca::main::<euca2ools::euca::properties::DescribeProperties>(
        "euca-describe-properties",
    )
}

//! `euca-describe-availability-zones`: shows availability zones, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    tools::euca::main::<tools::euca::zones::DescribeAvailabilityZones>(
        "euca-describe-availability-zones",
    )
}

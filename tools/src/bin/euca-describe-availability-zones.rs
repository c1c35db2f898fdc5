//! `euca-describe-availability-zones`: shows availability zones, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    euca2ools::euca::main::<euca2ools::euca::zones::DescribeAvailabilityZones>(
        "euca-describe-availability-zones",
    )
}

//! `euca-describe-addresses`: shows elastic IP addresses, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    euca2ools::euca::main::<euca2ools::euca::addresses::DescribeAddresses>(
        "euca-describe-addresses",
    )
}

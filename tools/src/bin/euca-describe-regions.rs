//! `euca-describe-regions`: shows regions, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    euca2ools::euca::main::<euca2ools::euca::zones::DescribeRegions>("euca-describe-regions")
}

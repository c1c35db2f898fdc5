//! `euca-describe-images`: shows images, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    euca2ools::euca::main::<euca2ools::euca::images::DescribeImages>("euca-describe-images")
}

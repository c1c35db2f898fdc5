//! `euca-describe-keypairs`: shows key pairs, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    euca2ools::euca::main::<euca2ools::euca::keypairs::DescribeKeyPairs>("euca-describe-keypairs")
}

//! `euca-describe-keypairs`: shows key pairs, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    tools::euca::main::<tools::euca::keypairs::DescribeKeyPairs>("euca-describe-keypairs")
}

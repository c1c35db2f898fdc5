//! `euca-create-keypair`: creates an SSH key pair, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    euca2ools::euca::main::<euca2ools::euca::keypairs::CreateKeyPair>("euca-create-keypair")
}

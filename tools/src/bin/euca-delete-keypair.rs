//! `euca-delete-keypair`: deletes a key pair, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    euca2ools::euca::main::<euca2ools::euca::keypairs::DeleteKeyPair>("euca-delete-keypair")
}

//! `euca-import-keypair`: imports a public key as a key pair, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    euca2ools::euca::main::<euca2ools::euca::keypairs::ImportKeyPair>("euca-import-keypair")
}

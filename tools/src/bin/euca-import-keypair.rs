//! `euca-import-keypair`: imports a public key as a key pair, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    tools::euca::main::<tools::euca::keypairs::ImportKeyPair>("euca-import-keypair")
}

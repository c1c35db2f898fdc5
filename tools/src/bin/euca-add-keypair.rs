//! `euca-add-keypair`: euca2ools 1.x's name of euca-create-keypair, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    euca2ools::euca::main::<euca2ools::euca::keypairs::CreateKeyPair>("euca-add-keypair")
}

//! `euca-delete-bundle`: deletes an uploaded bundle from Walrus, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    euca2ools::euca::main::<euca2ools::euca::bundles::DeleteBundle>("euca-delete-bundle")
}

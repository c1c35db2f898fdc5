//! `euca-delete-bundle`: deletes an uploaded bundle from Walrus, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    tools::euca::main::<tools::euca::bundles::DeleteBundle>("euca-delete-bundle")
}

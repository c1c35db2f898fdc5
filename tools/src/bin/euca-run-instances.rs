//! `euca-run-instances`: launches instances of an image, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    tools::euca::main::<tools::euca::instances::RunInstances>("euca-run-instances")
}

//! `euca-run-instances`: launches instances of an image, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    euca2ools::euca::main::<euca2ools::euca::instances::RunInstances>("euca-run-instances")
}

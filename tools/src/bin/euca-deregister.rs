//! `euca-deregister`: deregisters an image, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    euca2ools::euca::main::<euca2ools::euca::images::Deregister>("euca-deregister")
}

//! `euca-modify-property`: changes or resets a cloud property (cloud admin), with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    euca2ools::euca::main::<euca2ools::euca::properties::ModifyProperty>("euca-modify-property")
}

//! `euca-modify-property`: changes or resets a cloud property (cloud admin), with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    tools::euca::main::<tools::euca::properties::ModifyProperty>("euca-modify-property")
}

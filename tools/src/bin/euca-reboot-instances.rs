//! `euca-reboot-instances`: reboots instances, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    tools::euca::main::<tools::euca::instances::RebootInstances>("euca-reboot-instances")
}

//! `euca-reboot-instances`: reboots instances, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    euca2ools::euca::main::<euca2ools::euca::instances::RebootInstances>("euca-reboot-instances")
}

//! `euca-disassociate-address`: disassociates an elastic IP address from its instance, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    euca2ools::euca::main::<euca2ools::euca::addresses::DisassociateAddress>(
        "euca-disassociate-address",
    )
}

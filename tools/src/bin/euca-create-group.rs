//! `euca-create-group`: creates a security group, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    tools::euca::main::<tools::euca::groups::CreateGroup>("euca-create-group")
}

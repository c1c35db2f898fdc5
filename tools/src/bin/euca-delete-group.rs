//! `euca-delete-group`: deletes a security group, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    tools::euca::main::<tools::euca::groups::DeleteGroup>("euca-delete-group")
}

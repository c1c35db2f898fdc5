//! `euca-add-group`: euca2ools 1.x's name of euca-create-group, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    tools::euca::main::<tools::euca::groups::CreateGroup>("euca-add-group")
}

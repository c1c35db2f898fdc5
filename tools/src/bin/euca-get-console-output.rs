//! `euca-get-console-output`: shows an instance's console output, with euca2ools 3.4's flags
//! and output.

fn main() -> std::process::ExitCode {
    euca2ools::euca::main::<euca2ools::euca::instances::GetConsoleOutput>("euca-get-console-output")
}

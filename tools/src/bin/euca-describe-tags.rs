//! `euca-describe-tags`: shows tags, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    tools::euca::main::<tools::euca::tags::DescribeTags>("euca-describe-tags")
}

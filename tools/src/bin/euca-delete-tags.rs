//! `euca-delete-tags`: removes tags from resources, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    euca2ools::euca::main::<euca2ools::euca::tags::DeleteTags>("euca-delete-tags")
}

//! `euca-delete-tags`: removes tags from resources, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    tools::euca::main::<tools::euca::tags::DeleteTags>("euca-delete-tags")
}

//! `euca-reset-image-attribute`: resets an image's launch permissions, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    tools::euca::main::<tools::euca::images::ResetImageAttribute>("euca-reset-image-attribute")
}

//! `euca-reset-image-attribute`: resets an image's launch permissions, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    euca2ools::euca::main::<euca2ools::euca::images::ResetImageAttribute>(
        "euca-reset-image-attribute",
    )
}

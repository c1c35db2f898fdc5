//! `euca-modify-image-attribute`: changes an attribute of an image (launch permissions, description), with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    euca2ools::euca::main::<euca2ools::euca::images::ModifyImageAttribute>(
        "euca-modify-image-attribute",
    )
}

//! `euca-describe-image-attribute`: shows an attribute of an image, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    tools::euca::main::<tools::euca::images::DescribeImageAttribute>(
        "euca-describe-image-attribute",
    )
}

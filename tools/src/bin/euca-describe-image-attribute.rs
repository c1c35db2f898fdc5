//! `euca-describe-image-attribute`: shows an attribute of an image, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    euca2ools::euca::main::<euca2ools::euca::images::DescribeImageAttribute>(
        "euca-describe-image-attribute",
    )
}

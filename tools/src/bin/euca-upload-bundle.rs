//! `euca-upload-bundle`: uploads a bundle made by euca-bundle-image to Walrus, with euca2ools 3.4's flags and output.

fn main() -> std::process::ExitCode {
    euca2ools::euca::main::<euca2ools::euca::bundles::UploadBundle>("euca-upload-bundle")
}

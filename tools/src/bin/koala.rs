//! `koala`: runs the cloud's daemon roles.
fn main() {}

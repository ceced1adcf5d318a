//! anju: the command-line client.
fn main() {}

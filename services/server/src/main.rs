//! anju-server: the service binary.
fn main() {}

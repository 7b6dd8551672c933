//! flujo binary
fn main() {}

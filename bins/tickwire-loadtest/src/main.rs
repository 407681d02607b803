//! The `tickwire-loadtest` binary.

fn main() {}

//! `coffee`: the coffee-ordering system's services in one binary.

fn main() {}

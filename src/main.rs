#![deny(unsafe_code)]
// The integrator wires `main`; until then the config layer is only exercised by tests.
#![allow(dead_code)]
mod cli;
mod config;
mod signals;

fn main() {}

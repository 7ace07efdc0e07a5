#![deny(unsafe_code)]
mod config;
mod signals;

fn main() {}

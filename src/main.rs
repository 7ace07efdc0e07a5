//! gsup: a small, correct process supervisor. `main` parses the command line, hands off
//! to the subcommand and maps its outcome to the exit code; nothing else lives here.
//!
//! gsup has no Rust `main`: the C entry point is `os::main`, which does what the Rust
//! runtime did around `main` that gsup needs (stdio, SIGPIPE, a panic's exit 101), then
//! calls [`main`].
//! The runtime's one other step, finding the main thread's stack guard, reads and parses
//! `/proc/self/maps` on glibc: a twentieth of `gsup run -- true` (issue 14). gsup resets
//! SIGSEGV/SIGBUS to the default in `run` anyway, so the "stack overflow" message it
//! would print was never seen.
#![deny(unsafe_code)]
#![cfg_attr(not(test), no_main)]

mod cli;
mod config;
mod ctl;
mod deadline;
mod generate;
mod http;
mod json;
mod listen;
mod logging;
mod metrics;
mod monitor;
mod notify;
mod os;
mod probe;
mod redact;
mod run;
mod shim;
mod shutdown_log;
mod signals;
mod snapshot;
mod supervisor;
mod timefmt;

use std::ffi::OsString;

use clap::{CommandFactory, FromArgMatches};

/// gsup's exit code for the command line `args` (program name first).
fn main(args: Vec<OsString>) -> u8 {
    let mut command = cli::Cli::command();
    let parsed = command
        .try_get_matches_from_mut(args)
        .and_then(|matches| cli::Cli::from_arg_matches(&matches).map_err(|error| error.format(&mut command)));
    // Freed by the exit instead: dropping clap's model of every subcommand cost ~28 k of
    // the ~1.1 M instructions of a `gsup run -- true` (callgrind, issue 14).
    std::mem::forget(command);
    let cli = match parsed {
        Ok(cli) => cli,
        Err(error) => {
            // clap exits 2 on usage errors and 0 for --help/--version.
            let _ = error.print();
            return error.exit_code().clamp(0, 255) as u8;
        }
    };
    let code = run::dispatch(cli);
    code.clamp(0, 255) as u8
}

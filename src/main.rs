//! gsup: a small, correct process supervisor. `main` parses the command line, hands off
//! to the subcommand and maps its outcome to the exit code; nothing else lives here.
#![deny(unsafe_code)]

mod cli;
mod config;
mod ctl;
mod deadline;
mod generate;
mod http;
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

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // clap exits 2 on usage errors and 0 for --help/--version.
            let _ = error.print();
            return ExitCode::from(error.exit_code().clamp(0, 255) as u8);
        }
    };
    let code = run::dispatch(cli);
    ExitCode::from(code.clamp(0, 255) as u8)
}

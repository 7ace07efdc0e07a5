//! Dispatch of the subcommands, and the one place that turns their outcome into gsup's
//! exit code (DESIGN §2).

use std::path::PathBuf;

use crate::cli::{Cli, Command, RunArgs};
use crate::config;
use crate::logging;
use crate::os::InheritedSignals;
use crate::supervisor;

/// gsup's own failures, by the shell's conventions.
const EXIT_USAGE: i32 = 2;

pub fn dispatch(cli: Cli) -> i32 {
    let env = |name: &str| std::env::var(name).ok();
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    match cli.command {
        Command::Run(args) => run(args, &env, cwd),
        Command::Check(args) => config::check_command(&args, &env, &cwd),
        Command::Probe(args) => crate::probe::run(&args, &env, &cwd),
        Command::Ctl(args) => crate::ctl::run(&args, &env, &cwd),
        Command::Generate(args) => crate::generate::run(&args, &env, &cwd),
        Command::Completions(args) => crate::cli::print_completions(args.shell),
        Command::Man => crate::cli::print_man(),
        Command::ExecShim(args) => crate::shim::run(&args.command),
    }
}

fn run(args: RunArgs, env: &dyn Fn(&str) -> Option<String>, cwd: PathBuf) -> i32 {
    // First, before any signal handler exists: the child must start with what gsup
    // inherited, as if gsup were not there.
    let inherited = InheritedSignals::capture();
    let loaded = match config::load(&args.flags, env, &cwd) {
        Ok(loaded) => loaded,
        Err(errors) => {
            for error in &errors.0 {
                eprintln!("gsup: error: {error}");
            }
            return EXIT_USAGE;
        }
    };
    for warning in &loaded.warnings {
        eprintln!("gsup: warning: {warning}");
    }
    logging::init(&loaded.config.log);
    // The command line wins over `[process] command` (DESIGN §2).
    let argv = if args.command.is_empty() {
        loaded.config.process.command.clone().unwrap_or_default()
    } else {
        args.command
    };
    match supervisor::run(loaded, argv, inherited) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("gsup: {error}");
            error.exit_code()
        }
    }
}

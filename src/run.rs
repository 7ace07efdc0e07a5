//! Dispatch of the subcommands, and the one place that turns their outcome into gsup's
//! exit code (DESIGN §2).

use std::io::IsTerminal;
use std::path::PathBuf;

use crate::cli::{Cli, Command, RunArgs};
use crate::config;
use crate::logging;
use crate::os::InheritedSignals;
use crate::supervisor;

/// gsup's own failures, by the shell's conventions.
const EXIT_USAGE: i32 = 2;

pub fn dispatch(cli: Cli) -> i32 {
    // Values as bytes: `config::load` says which variable is not UTF-8 (DESIGN §3).
    let env = |name: &str| std::env::var_os(name);
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

fn run(args: RunArgs, env: &config::Env, cwd: PathBuf) -> i32 {
    // First, before any signal handler exists: the child must start with what gsup
    // inherited, as if gsup were not there.
    let inherited = InheritedSignals::capture();
    // Children get back the limit gsup was started with (DESIGN §4 Resources).
    let (nofile, raised) = crate::os::raise_nofile_limit();
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
    if let Err(error) = raised {
        tracing::warn!(%error, "cannot raise the open-files limit (RLIMIT_NOFILE) to its hard limit");
    }
    if loaded.config.http.token.is_some() {
        // The token must not be readable through /proc/<gsup>/environ (or a core dump)
        // by a child of the same uid (DESIGN §9); gsup's own /proc reads are unaffected.
        if let Err(errno) = nix::sys::prctl::set_dumpable(false) {
            eprintln!("gsup: warning: cannot make gsup non-dumpable (PR_SET_DUMPABLE): {errno}");
        }
    }
    log_start_up(&loaded, args.flags.config.is_some());
    // The command line wins over `[process] command` (DESIGN §2).
    let argv = if args.command.is_empty() {
        loaded.config.process.command.clone().unwrap_or_default()
    } else {
        args.command
    };
    match supervisor::run(loaded, argv, inherited, nofile) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("gsup: {error}");
            error.exit_code()
        }
    }
}

/// The one start-up line (DESIGN §2): the config file loaded, or none, and the HTTP
/// address as configured (`http listening` names the bound one). A file found implicitly
/// (`$GSUP_CONFIG`, `./supervisor.toml`) is a warning on a terminal, whose default level
/// is `warn`, so a forgotten file never acts unseen.
fn log_start_up(loaded: &config::Loaded, named_on_command_line: bool) {
    let http = loaded
        .config
        .http
        .listen
        .map_or_else(|| "off".to_string(), |addr| addr.to_string());
    match &loaded.file {
        None => tracing::info!(config = "no config file: defaults", %http, "gsup starting"),
        Some(file) if !named_on_command_line && std::io::stderr().is_terminal() => {
            tracing::warn!(config = %file.display(), %http, "gsup starting with a config file found implicitly")
        }
        Some(file) => tracing::info!(config = %file.display(), %http, "gsup starting"),
    }
}

//! `gsup __exec-shim -- PROGRAM ARGS`: the tiny step between fork and the program when the
//! child needs its own pid in its environment (`LISTEN_PID`, `WATCHDOG_PID`), which the
//! parent cannot know before `exec` and must not `setenv` after `fork` (DEPS §13). gsup
//! runs itself as this shim; it sets those and execs PROGRAM in place (same pid, process
//! group, mask, dispositions and PDEATHSIG), exiting 127/126 as `run` does when it cannot.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Set by gsup for the shim: which variables to point at the child's own pid.
pub const SET_LISTEN_PID: &str = "GSUP_SHIM_LISTEN_PID";
pub const SET_WATCHDOG_PID: &str = "GSUP_SHIM_WATCHDOG_PID";

pub fn run(argv: &[String]) -> i32 {
    let Some((program, args)) = argv.split_first() else {
        eprintln!("gsup __exec-shim: no program");
        return 2;
    };
    let pid = std::process::id().to_string();
    let mut command = Command::new(program);
    command
        .args(args)
        .env_remove(SET_LISTEN_PID)
        .env_remove(SET_WATCHDOG_PID);
    if std::env::var_os(SET_LISTEN_PID).is_some() {
        command.env("LISTEN_PID", &pid);
    }
    if std::env::var_os(SET_WATCHDOG_PID).is_some() {
        command.env("WATCHDOG_PID", &pid);
    }
    let error = command.exec();
    eprintln!("gsup: cannot start {program}: {error}");
    match error.kind() {
        std::io::ErrorKind::NotFound => 127,
        _ => 126,
    }
}

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
/// The fd of the error pipe: when `exec` fails the shim writes the errno there (4 bytes,
/// native order) and leaves the report to gsup, which tells a failed start from the
/// program's own exit that way (DESIGN §8). A successful `exec` closes it.
pub const ERROR_FD: &str = "GSUP_SHIM_ERROR_FD";

pub fn run(argv: &[String]) -> i32 {
    let Some((program, args)) = argv.split_first() else {
        eprintln!("gsup __exec-shim: no program");
        return 2;
    };
    let pid = std::process::id().to_string();
    let error_pipe = std::env::var(ERROR_FD)
        .ok()
        .and_then(|fd| fd.parse().ok())
        .and_then(crate::os::shim_error_pipe);
    let mut command = Command::new(program);
    command
        .args(args)
        .env_remove(SET_LISTEN_PID)
        .env_remove(SET_WATCHDOG_PID)
        .env_remove(ERROR_FD);
    if std::env::var_os(SET_LISTEN_PID).is_some() {
        command.env("LISTEN_PID", &pid);
    }
    if std::env::var_os(SET_WATCHDOG_PID).is_some() {
        command.env("WATCHDOG_PID", &pid);
    }
    let error = command.exec();
    let errno = error.raw_os_error().unwrap_or(libc::ENOEXEC);
    let reported = error_pipe
        .is_some_and(|pipe| std::io::Write::write_all(&mut std::fs::File::from(pipe), &errno.to_ne_bytes()).is_ok());
    if !reported {
        eprintln!("gsup: cannot start {program}: {error}");
    }
    match error.kind() {
        std::io::ErrorKind::NotFound => 127,
        _ => 126,
    }
}

//! The one reaper: the only code in gsup that calls `waitpid` (DEPS §4).
//!
//! It runs in the event-loop task on every SIGCHLD and on a slow tick (SIGCHLDs coalesce),
//! collecting every child of gsup: the main child, and — as PID 1 or child subreaper —
//! every orphan re-parented to it. `WUNTRACED` reports job-control stops of the child.

use super::state::{ExitStatus, Pid};
use crate::os::{self, WaitEvent};

/// One status change the kernel reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reaped {
    Exited { pid: Pid, status: ExitStatus },
    Stopped { pid: Pid, signal: libc::c_int },
}

/// Collects every pending status change without blocking; also says whether gsup was then
/// left without any child (`ECHILD`).
pub fn reap_all() -> (Vec<Reaped>, bool) {
    let mut reaped = Vec::new();
    loop {
        reaped.push(match os::wait_any() {
            WaitEvent::Exited { pid, code } => Reaped::Exited {
                pid,
                status: ExitStatus::Code(code),
            },
            WaitEvent::Signaled { pid, signal } => Reaped::Exited {
                pid,
                status: ExitStatus::Signal(signal),
            },
            WaitEvent::Stopped { pid, signal } => Reaped::Stopped { pid, signal },
            WaitEvent::Nothing => return (reaped, false),
            WaitEvent::NoChildren => return (reaped, true),
        });
    }
}

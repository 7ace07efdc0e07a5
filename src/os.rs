//! The only module with `unsafe` code: what gsup must ask the kernel directly, with no safe
//! wrapper that fits.
//!
//! - [`InheritedSignals`]: the signal mask and ignored signals gsup was started with, so the
//!   child starts as if gsup were not there (DESIGN §4 Spawning).
//! - [`pre_exec`]: what runs in the child between `fork` and `exec`. Only
//!   async-signal-safe calls there: no allocation, no logging, no `set_var` (std holds
//!   locks across `fork`; `set_var` there deadlocks, DEPS §6).
//! - [`stop_self`]: stop gsup the way the default action of a stop signal would, although
//!   gsup has a handler installed for it (job control, DESIGN §4).
#![allow(unsafe_code)]

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::ptr;

use libc::c_int;

/// The signal state gsup was started with. Captured first thing in `run`, before any
/// handler exists, because installing a handler overwrites `SIG_IGN`.
#[derive(Clone, Copy)]
pub struct InheritedSignals {
    mask: libc::sigset_t,
    ignored: libc::sigset_t,
}

impl InheritedSignals {
    pub fn capture() -> Self {
        // SAFETY: sigemptyset/sigaction/pthread_sigmask only write into the local, properly
        // sized structs passed to them; a NULL new action/set means "query only".
        unsafe {
            let mut ignored = MaybeUninit::<libc::sigset_t>::zeroed().assume_init();
            libc::sigemptyset(&mut ignored);
            for signal in 1..=libc::SIGRTMAX() {
                // The Rust runtime ignores SIGPIPE before `main`, so its record says nothing
                // about what our parent chose; std's spawn resets it to SIG_DFL (DEPS §5).
                if signal == libc::SIGPIPE {
                    continue;
                }
                let mut old = MaybeUninit::<libc::sigaction>::zeroed().assume_init();
                if libc::sigaction(signal, ptr::null(), &mut old) == 0
                    && old.sa_sigaction == libc::SIG_IGN
                {
                    libc::sigaddset(&mut ignored, signal);
                }
            }
            let mut mask = MaybeUninit::<libc::sigset_t>::zeroed().assume_init();
            libc::sigemptyset(&mut mask);
            libc::pthread_sigmask(libc::SIG_BLOCK, ptr::null(), &mut mask);
            InheritedSignals { mask, ignored }
        }
    }
}

/// Unblocks `signals` in gsup itself: a signal blocked by our parent must still reach gsup
/// to be forwarded (the child gets the original mask back in `pre_exec`).
pub fn unblock(signals: &[c_int]) -> io::Result<()> {
    // SAFETY: the set is a local, initialised by sigemptyset before use.
    unsafe {
        let mut set = MaybeUninit::<libc::sigset_t>::zeroed().assume_init();
        libc::sigemptyset(&mut set);
        for &signal in signals {
            libc::sigaddset(&mut set, signal);
        }
        match libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, ptr::null_mut()) {
            0 => Ok(()),
            errno => Err(io::Error::from_raw_os_error(errno)),
        }
    }
}

/// Everything `pre_exec` needs, prepared before `fork` so the child allocates nothing.
#[derive(Clone, Copy)]
pub struct ChildSetup {
    pub inherited: InheritedSignals,
    /// gsup's pid, taken before `fork`: after PDEATHSIG is armed, a different parent
    /// means gsup already died and the signal was missed.
    pub parent_pid: libc::pid_t,
    /// The terminal to hand to the child's process group, when interactive.
    pub foreground_tty: Option<RawFd>,
}

/// Runs in the child between `fork` and `exec` (after std's `setpgid`, so the child leads
/// its own group). Order matters: PDEATHSIG first, so a gsup that dies from here on takes
/// the child with it.
///
/// # Safety
/// Call only from a `CommandExt::pre_exec` closure: it must run in the freshly forked
/// child, where only async-signal-safe functions may be called.
pub unsafe fn pre_exec(setup: &ChildSetup) -> io::Result<()> {
    // SAFETY: every call below is async-signal-safe (prctl, getppid, sigprocmask,
    // tcsetpgrp, getpgrp, signal, _exit) and touches only memory prepared before fork.
    unsafe {
        // PR_SET_PDEATHSIG belongs to the thread that forked: gsup forks only from its
        // main thread, which lives as long as gsup (DEPS §6).
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::getppid() != setup.parent_pid {
            libc::_exit(1);
        }
        if let Some(tty) = setup.foreground_tty {
            // tcsetpgrp from a background group raises SIGTTOU; blocked counts as ignored
            // there. ENOTTY/ENXIO (no controlling terminal after all) are fine.
            let mut ttou = MaybeUninit::<libc::sigset_t>::zeroed().assume_init();
            libc::sigemptyset(&mut ttou);
            libc::sigaddset(&mut ttou, libc::SIGTTOU);
            libc::sigprocmask(libc::SIG_BLOCK, &ttou, ptr::null_mut());
            libc::tcsetpgrp(tty, libc::getpgrp());
        }
        // exec resets caught signals to SIG_DFL by itself; signals that were ignored when
        // gsup started must be ignored again (gsup's handlers replaced SIG_IGN).
        for signal in 1..=libc::SIGRTMAX() {
            if signal != libc::SIGKILL
                && signal != libc::SIGSTOP
                && libc::sigismember(&setup.inherited.ignored, signal) == 1
            {
                libc::signal(signal, libc::SIG_IGN);
            }
        }
        if libc::sigprocmask(libc::SIG_SETMASK, &setup.inherited.mask, ptr::null_mut()) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Stops gsup itself with `signal` (TSTP, TTIN, TTOU or STOP), as the default action
/// would, and returns once gsup is continued. gsup handles those signals to forward them,
/// so raising one would only call the handler: set the default action aside for that
/// moment. Raising the same signal that stopped the child makes the shell report the job
/// the way it would without gsup ("Stopped", not "Stopped (signal)").
pub fn stop_self(signal: c_int) {
    if signal == libc::SIGSTOP {
        // SAFETY: raise has no memory-safety preconditions.
        unsafe { libc::raise(libc::SIGSTOP) };
        return;
    }
    // SAFETY: the sigaction structs are locals; the previous action is put back exactly
    // as it was. raise(2) on an unblocked stop signal with SIG_DFL stops the process
    // before it returns, so the handler is back in place once we are continued.
    unsafe {
        let mut default = MaybeUninit::<libc::sigaction>::zeroed().assume_init();
        default.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut default.sa_mask);
        let mut previous = MaybeUninit::<libc::sigaction>::zeroed().assume_init();
        if libc::sigaction(signal, &default, &mut previous) != 0 {
            libc::raise(libc::SIGSTOP);
            return;
        }
        libc::raise(signal);
        libc::sigaction(signal, &previous, ptr::null_mut());
    }
}

/// Makes `pgid` the foreground process group of `tty`, blocking SIGTTOU around the call
/// (gsup may itself be in a background group then).
pub fn set_foreground(tty: RawFd, pgid: libc::pid_t) -> io::Result<()> {
    // SAFETY: the signal sets are locals; tcsetpgrp takes plain integers.
    unsafe {
        let mut ttou = MaybeUninit::<libc::sigset_t>::zeroed().assume_init();
        libc::sigemptyset(&mut ttou);
        libc::sigaddset(&mut ttou, libc::SIGTTOU);
        let mut old = MaybeUninit::<libc::sigset_t>::zeroed().assume_init();
        libc::pthread_sigmask(libc::SIG_BLOCK, &ttou, &mut old);
        let result = libc::tcsetpgrp(tty, pgid);
        let error = io::Error::last_os_error();
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, ptr::null_mut());
        if result == 0 { Ok(()) } else { Err(error) }
    }
}

/// Arranges for [`pre_exec`] to run in the child of `command`.
pub fn install_pre_exec(command: &mut std::process::Command, setup: ChildSetup) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure only calls `pre_exec`, which is async-signal-safe and uses only
    // the `Copy` data moved into it before fork.
    unsafe {
        command.pre_exec(move || pre_exec(&setup));
    }
}

/// A status change reported by `waitpid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitEvent {
    Exited {
        pid: libc::pid_t,
        code: c_int,
    },
    Signaled {
        pid: libc::pid_t,
        signal: c_int,
    },
    Stopped {
        pid: libc::pid_t,
        signal: c_int,
    },
    /// Nothing more to collect now (no change pending, or no children at all).
    Nothing,
}

/// `waitpid(-1, WNOHANG | WUNTRACED)`, decoded by hand: nix turns a death by a real-time
/// signal into an `EINVAL` *after* the kernel has already reaped the pid, which would lose
/// that exit status for good.
pub fn wait_any() -> WaitEvent {
    loop {
        let mut status: c_int = 0;
        // SAFETY: waitpid writes only into `status`, a local.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG | libc::WUNTRACED) };
        if pid > 0 {
            return if libc::WIFEXITED(status) {
                WaitEvent::Exited {
                    pid,
                    code: libc::WEXITSTATUS(status),
                }
            } else if libc::WIFSIGNALED(status) {
                WaitEvent::Signaled {
                    pid,
                    signal: libc::WTERMSIG(status),
                }
            } else if libc::WIFSTOPPED(status) {
                WaitEvent::Stopped {
                    pid,
                    signal: libc::WSTOPSIG(status),
                }
            } else {
                continue;
            };
        }
        if pid < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
            continue;
        }
        return WaitEvent::Nothing;
    }
}

/// `kill(pid, signal)`; a raw number, since nix's `Signal` has no real-time signals.
pub fn kill(pid: libc::pid_t, signal: c_int) -> io::Result<()> {
    // SAFETY: kill takes plain integers.
    match unsafe { libc::kill(pid, signal) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// `killpg(pgid, signal)`.
pub fn killpg(pgid: libc::pid_t, signal: c_int) -> io::Result<()> {
    // SAFETY: killpg takes plain integers.
    match unsafe { libc::killpg(pgid, signal) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

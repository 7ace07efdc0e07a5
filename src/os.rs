//! The only module with `unsafe` code: what gsup must ask the kernel directly, with no safe
//! wrapper that fits.
//!
//! - [`InheritedSignals`]: the signal mask and ignored signals gsup was started with, so the
//!   child starts as if gsup were not there (DESIGN §4 Spawning).
//! - [`pre_exec`]: what runs in the child between `fork` and `exec`. Only
//!   async-signal-safe calls there: no allocation, no logging, no `set_var` (std holds
//!   locks across `fork`; `set_var` there deadlocks, DEPS §6).
//! - [`SignalReceiver`]: every signal gsup forwards, blocked and read from a `signalfd`
//!   with its sender (as tini does with `sigtimedwait`).
//! - [`stop_self`]: stop gsup the way the default action of a stop signal would, although
//!   gsup keeps those signals blocked (job control, DESIGN §4).
#![allow(unsafe_code)]

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::ptr;

use libc::c_int;

/// The signal state gsup was started with. Captured first thing in `run`, before
/// `SignalReceiver::open` resets dispositions and blocks signals.
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
                if libc::sigaction(signal, ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN {
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

fn sigset(signals: &[c_int]) -> libc::sigset_t {
    // SAFETY: the set is a local, initialised by sigemptyset before use.
    unsafe {
        let mut set = MaybeUninit::<libc::sigset_t>::zeroed().assume_init();
        libc::sigemptyset(&mut set);
        for &signal in signals {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

fn set_blocked(how: c_int, signals: &[c_int]) -> io::Result<()> {
    let set = sigset(signals);
    // SAFETY: pthread_sigmask reads the local set; no old set is asked for.
    match unsafe { libc::pthread_sigmask(how, &set, ptr::null_mut()) } {
        0 => Ok(()),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

/// One signal read from the `signalfd`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    pub signal: c_int,
    /// The sending process, when a process sent it (`kill`, `sigqueue`, a child's exit);
    /// `None` when the kernel raised it (a terminal's Ctrl+C, for one).
    pub sender: Option<libc::pid_t>,
}

/// gsup's signals, blocked in its threads and read from a `signalfd`.
///
/// Blocked signals are never discarded by the kernel, not even for PID 1 with `SIG_DFL`
/// or with `SIG_IGN` (`sig_ignored()` in kernel/signal.c checks the mask first), and never
/// run a default action in gsup, so gsup cannot die of a forwarded signal. Unlike a
/// handler per signal this costs one mask change and one fd at start-up; it also reports
/// the sender. Threads started later inherit the mask, as signalfd(2) requires.
pub struct SignalReceiver {
    fd: std::os::fd::OwnedFd,
}

impl SignalReceiver {
    /// Resets `signals` to `SIG_DFL` (an inherited `SIG_IGN` of SIGCHLD would make the
    /// kernel reap children itself), blocks them, and opens the fd, non-blocking.
    pub fn open(signals: &[c_int]) -> io::Result<Self> {
        for &signal in signals {
            // SAFETY: signal(2) with SIG_DFL installs no code of ours.
            unsafe { libc::signal(signal, libc::SIG_DFL) };
        }
        set_blocked(libc::SIG_BLOCK, signals)?;
        let set = sigset(signals);
        // SAFETY: signalfd reads the local set and returns a new fd or -1.
        let raw = unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh fd that nothing else owns.
        let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
        Ok(SignalReceiver { fd })
    }

    /// The next pending signal, or `None` when there is none right now.
    pub fn read(&self) -> io::Result<Option<Received>> {
        use std::os::fd::AsRawFd;
        // SAFETY: signalfd_siginfo is plain data; read writes at most its size into it.
        let mut info = unsafe { MaybeUninit::<libc::signalfd_siginfo>::zeroed().assume_init() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        loop {
            // SAFETY: the buffer is `info`, `size` bytes long.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    (&mut info as *mut libc::signalfd_siginfo).cast(),
                    size,
                )
            };
            if n == size as isize {
                // si_code <= 0 means a process sent it (SI_USER, SI_QUEUE, SI_TKILL…);
                // SIGCHLD carries the child's pid with CLD_* codes.
                let by_process = info.ssi_code <= 0 || info.ssi_signo == libc::SIGCHLD as u32;
                let sender = by_process.then_some(info.ssi_pid as libc::pid_t);
                return Ok(Some(Received {
                    signal: info.ssi_signo as c_int,
                    sender,
                }));
            }
            let error = io::Error::last_os_error();
            match error.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EAGAIN) => return Ok(None),
                _ => return Err(error),
            }
        }
    }

    /// Registers the fd with the tokio reactor (call inside the runtime).
    pub fn into_async(self) -> io::Result<tokio::io::unix::AsyncFd<SignalReceiver>> {
        // SAFETY: the receiver owns its fd (an `OwnedFd` never handed out or closed
        // elsewhere), and `as_raw_fd` always returns that same fd.
        unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(self, tokio::io::Interest::READABLE)
                .map_err(|error| error.into_parts().1)
        }
    }
}

impl std::os::fd::AsRawFd for SignalReceiver {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
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
    /// Listening sockets to hand over as fds 3.. (the first `listen_count`).
    pub listen_fds: [RawFd; MAX_LISTEN_FDS],
    pub listen_count: usize,
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
        if setup.listen_count > 0 {
            map_listen_fds(&setup.listen_fds[..setup.listen_count.min(MAX_LISTEN_FDS)])?;
        }
    }
    Ok(())
}

/// Stops gsup itself with `signal` (TSTP, TTIN, TTOU or STOP), as the default action
/// would, and returns once gsup is continued. gsup keeps those signals blocked (they reach
/// it through the `SignalReceiver`), so unblock the one for that moment: with its
/// `SIG_DFL` disposition it stops gsup before `raise` returns. Raising the same signal
/// that stopped the child makes the shell report the job the way it would without gsup
/// ("Stopped", not "Stopped (signal)").
pub fn stop_self(signal: c_int) {
    if signal != libc::SIGSTOP && set_blocked(libc::SIG_UNBLOCK, &[signal]).is_ok() {
        // SAFETY: raise has no memory-safety preconditions.
        unsafe { libc::raise(signal) };
        let _ = set_blocked(libc::SIG_BLOCK, &[signal]);
    } else {
        // SAFETY: as above.
        unsafe { libc::raise(libc::SIGSTOP) };
    }
}

/// A real memory fault in gsup (a write to a page mapped without access), for the test
/// that a fault still crashes gsup although the fault signals are blocked for the
/// signalfd: the kernel forces a synchronous fault through (DESIGN §4 Signals). Debug
/// builds only (`GSUP_TEST_FAULT`); release builds have no such trigger.
#[cfg(debug_assertions)]
pub fn fault_for_tests() -> ! {
    // SAFETY: mmap of a fresh anonymous page touches no existing memory. The write is
    // meant to fault; the kernel kills gsup with SIGSEGV before it could return.
    unsafe {
        let page = libc::mmap(
            ptr::null_mut(),
            4096,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if page != libc::MAP_FAILED {
            ptr::write_volatile(page.cast::<u8>(), 1);
        }
    }
    std::process::abort()
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

/// A kernel interval timer (`timerfd`) for the monitor's ticks: one wake-up per tick.
/// tokio's hierarchical timer wheel wakes twice for each 1 s sleep (it cascades the entry
/// to a finer level first), which doubles an idle gsup's wake-ups (bench/README.md).
pub struct Ticker {
    fd: nix::sys::timerfd::TimerFd,
}

impl Ticker {
    /// First tick after `first` (at once for zero), then every `interval`.
    pub fn new(first: std::time::Duration, interval: std::time::Duration) -> io::Result<Self> {
        use nix::sys::timerfd::{ClockId, TimerFd, TimerFlags};
        let fd = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        let ticker = Ticker { fd };
        ticker.set(first, interval)?;
        Ok(ticker)
    }

    pub fn set(&self, first: std::time::Duration, interval: std::time::Duration) -> io::Result<()> {
        use nix::sys::time::TimeSpec;
        use nix::sys::timerfd::{Expiration, TimerSetTimeFlags};
        // A zero first expiry would disarm the timer: one nanosecond means "at once".
        let first = first.max(std::time::Duration::from_nanos(1));
        let expiration = Expiration::IntervalDelayed(TimeSpec::from(first), TimeSpec::from(interval));
        Ok(self.fd.set(expiration, TimerSetTimeFlags::empty())?)
    }

    /// Consumes the expirations counted so far (missed ticks are not made up).
    pub fn acknowledge(&self) {
        let mut count = [0u8; 8];
        let _ = nix::unistd::read(&self.fd, &mut count);
    }

    /// Registers the fd with the tokio reactor (call inside the runtime).
    pub fn into_async(self) -> io::Result<tokio::io::unix::AsyncFd<Ticker>> {
        // SAFETY: the ticker owns its timerfd (never handed out or closed elsewhere), and
        // `as_raw_fd` always returns that same fd.
        unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(self, tokio::io::Interest::READABLE)
                .map_err(|error| error.into_parts().1)
        }
    }
}

impl std::os::fd::AsRawFd for Ticker {
    fn as_raw_fd(&self) -> RawFd {
        use std::os::fd::AsFd;
        self.fd.as_fd().as_raw_fd()
    }
}

/// How many listening sockets a child can be handed (fds 3..3+N).
pub const MAX_LISTEN_FDS: usize = 32;

/// Moves `fds` to 3, 4, … in the child (clearing close-on-exec), as the systemd socket
/// protocol wants. Called from `pre_exec`: async-signal-safe calls only. First every fd
/// is duplicated above the target range, so a source that is itself a target (an fd 3
/// gsup inherited from systemd) is not overwritten before it is moved.
///
/// # Safety
/// Only in the freshly forked child, from `pre_exec`.
unsafe fn map_listen_fds(fds: &[RawFd]) -> io::Result<()> {
    let base = 3 + fds.len() as RawFd;
    let mut moved = [0 as RawFd; MAX_LISTEN_FDS];
    for (slot, &fd) in moved.iter_mut().zip(fds) {
        // SAFETY: fcntl/dup2 take plain integers; the fds are open in the child.
        let high = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, base.max(64)) };
        if high < 0 {
            return Err(io::Error::last_os_error());
        }
        *slot = high;
    }
    for (index, &high) in moved.iter().take(fds.len()).enumerate() {
        let target = 3 + index as RawFd;
        // SAFETY: as above; dup2's result has close-on-exec cleared.
        if unsafe { libc::dup2(high, target) } < 0 {
            return Err(io::Error::last_os_error());
        }
        unsafe { libc::close(high) };
    }
    Ok(())
}

/// Takes ownership of fds systemd handed to gsup (socket activation: fds 3.. with
/// `LISTEN_FDS` and `LISTEN_PID` = gsup's pid), marking them close-on-exec in gsup.
pub fn adopt_inherited_fd(fd: RawFd) -> io::Result<std::os::fd::OwnedFd> {
    // SAFETY: fcntl only reads/sets flags of the integer fd.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    // SAFETY: the socket protocol hands these fds to this process alone; nothing else in
    // gsup owns them (they are adopted once, at start-up).
    Ok(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

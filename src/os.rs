//! The only module with `unsafe` code: what gsup must ask the kernel directly, with no safe
//! wrapper that fits.
//!
//! - [`InheritedSignals`]: the signal mask and ignored signals gsup was started with, so the
//!   child starts as if gsup were not there (DESIGN §4 Spawning).
//! - [`spawn`]: starts a process with `clone(CLONE_VM | CLONE_VFORK)` on a stack of its
//!   own; [`child_exec`] is the child side, raw syscalls only on memory prepared before
//!   `clone` ([`Prepared`]). The safety argument is in docs/DESIGN.md "The spawn path" and
//!   at each step below.
//! - [`SignalReceiver`]: every signal gsup forwards, blocked and read from a `signalfd`
//!   with its sender (as tini does with `sigtimedwait`).
//! - [`stop_self`]: stop gsup the way the default action of a stop signal would, although
//!   gsup keeps those signals blocked (job control, DESIGN §4).
//! - [`main`]: the process's C entry point (the crate is `no_main`, see main.rs).
#![allow(unsafe_code)]

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::ptr;

use libc::c_int;

/// The C `main`: what the Rust runtime does before `main` that gsup relies on, then
/// `crate::main`, then the runtime's one step after it (flush stdout), and `_exit`.
/// - A closed fd 0, 1 or 2 is opened on `/dev/null`, so no socket or file of gsup's is
///   ever given one of those numbers (and written to as stderr).
/// - SIGPIPE is ignored, so a write to a closed connection is an EPIPE error, not death
///   (`run` then blocks it and reads it from its `signalfd`, DESIGN §4).
/// - The arguments come from `argc`/`argv`: musl's std reads them only in its own `main`.
/// - A panic unwinds and exits 101.
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub extern "C" fn main(argc: c_int, argv: *const *const libc::c_char) -> c_int {
    use std::os::unix::ffi::OsStringExt;
    for fd in 0..=2 {
        // SAFETY: fcntl(F_GETFD) only asks whether the fd is open; open(2) with a
        // NUL-terminated literal returns a new fd, the lowest free one (this one).
        // Without a `/dev/null` gsup stops here, as std did: the next file it opened would
        // otherwise take this number and receive its log lines.
        unsafe {
            if libc::fcntl(fd, libc::F_GETFD) == -1
                && io::Error::last_os_error().raw_os_error() == Some(libc::EBADF)
                && libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) == -1
            {
                libc::abort();
            }
        }
    }
    // SAFETY: signal(2) with SIG_IGN installs no code of ours.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let args = (0..usize::try_from(argc).unwrap_or(0))
        .map(|i| {
            // SAFETY: the kernel passes `argc` valid NUL-terminated strings in `argv`, which
            // live as long as the process.
            let arg = unsafe { std::ffi::CStr::from_ptr(*argv.add(i)) };
            std::ffi::OsString::from_vec(arg.to_bytes().to_vec())
        })
        .collect();
    // A panic that reaches here unwinds first (the control socket and the notify
    // directories are removed by their drops) and exits 101, as std's own `main` did: it
    // must never cross this `extern "C"` frame, which would abort gsup.
    let code = std::panic::catch_unwind(|| crate::main(args)).unwrap_or(101);
    let _ = io::Write::flush(&mut io::stdout());
    // SAFETY: _exit(2) ends the process; nothing after it runs. What `exit(3)` would add
    // is not needed: stdout is flushed above, stderr and files are unbuffered, and gsup
    // registers no atexit handler. Skipped are the thread-locals' destructors and the C
    // library's own teardown, which only free memory the kernel frees anyway (issue 14).
    unsafe { libc::_exit(c_int::from(code)) }
}

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

/// Raises gsup's own soft `RLIMIT_NOFILE` to its hard limit (its connections, sockets and
/// `/proc` handles must never starve a restart, DESIGN §4 Resources) and returns the limit
/// gsup was started with, which every child gets back. A failure leaves the limit as it
/// was (and says so).
pub fn raise_nofile_limit() -> (libc::rlimit, io::Result<()>) {
    let mut started = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only into the local struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut started) } != 0 {
        let error = io::Error::last_os_error();
        let unlimited = libc::rlimit {
            rlim_cur: libc::RLIM_INFINITY,
            rlim_max: libc::RLIM_INFINITY,
        };
        return (unlimited, Err(error));
    }
    let raised = libc::rlimit {
        rlim_cur: started.rlim_max,
        rlim_max: started.rlim_max,
    };
    // SAFETY: setrlimit reads only the local struct.
    let result = match unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    };
    (started, result)
}

/// What every child gets from gsup (signals, limits, terminal, sockets), the same for
/// every start; part of [`Prepared`].
#[derive(Clone, Copy)]
pub struct ChildSetup {
    pub inherited: InheritedSignals,
    /// The `RLIMIT_NOFILE` gsup was started with (gsup raised its own soft limit).
    pub nofile: libc::rlimit,
    /// gsup's pid, taken before `fork`: after PDEATHSIG is armed, a different parent
    /// means gsup already died and the signal was missed.
    pub parent_pid: libc::pid_t,
    /// The terminal to hand to the child's process group, when interactive.
    pub foreground_tty: Option<RawFd>,
    /// Listening sockets to hand over as fds 3.. (the first `listen_count`).
    pub listen_fds: [RawFd; MAX_LISTEN_FDS],
    pub listen_count: usize,
    /// The write end of the exec shim's error pipe (close-on-exec in gsup), handed to the
    /// shim as fd [`shim_error_fd`]`(listen_count)`, right after the listening sockets.
    pub shim_error: Option<RawFd>,
}

/// The fd number the exec shim finds its error pipe at: right after the sockets.
pub fn shim_error_fd(listen_count: usize) -> RawFd {
    3 + listen_count as RawFd
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
    /// Nothing more to collect now: children exist, none changed.
    Nothing,
    /// `ECHILD`: gsup has no child at all, of any of its threads (wait(2)), so none of its
    /// descendants is left either: an orphan is re-parented to gsup (PID 1 or subreaper)
    /// before its parent's exit can be collected.
    NoChildren,
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
        if pid < 0 {
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ECHILD) => return WaitEvent::NoChildren,
                _ => {}
            }
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

/// The exec shim's side of its error pipe: `fd` inherited from gsup, marked close-on-exec
/// so a successful `exec` closes it (gsup then reads EOF). Returns the fd to report to.
pub fn shim_error_pipe(fd: RawFd) -> Option<std::os::fd::OwnedFd> {
    // SAFETY: fcntl only reads and sets the flags of the integer fd.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return None;
    }
    // SAFETY: gsup handed this fd to the shim alone (DESIGN §8); nothing else in the shim
    // owns it.
    Some(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) })
}

// ---------------------------------------------------------------------------------------
// Spawning without copying gsup: clone(CLONE_VM | CLONE_VFORK) on a stack of its own.
// ---------------------------------------------------------------------------------------

/// The child's stack. The child side calls nothing but raw syscalls in a handful of
/// frames; 64 KiB is ample (musl's posix_spawn uses about 5 KiB).
const CHILD_STACK: usize = 64 * 1024;

/// What the child side of [`spawn`] reads, all of it built before `clone`: the child
/// shares gsup's memory and must not allocate, lock, or touch anything else.
pub struct Prepared {
    /// Paths to try with `execve`, in order: the program itself when it names a path,
    /// else each `PATH` directory joined with it.
    candidates: Vec<CString>,
    /// Kept alive for `argv_ptrs` and `envp_ptrs`, which point into them.
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    envp_ptrs: Vec<*const libc::c_char>,
    /// For each candidate, the argv that runs it as a shell script when `execve` says
    /// ENOEXEC (no `#!`), as `execvp` does: `/bin/sh CANDIDATE ARGS…` (`argv[0]` is dropped).
    script_argv_ptrs: Vec<Vec<*const libc::c_char>>,
    workdir: Option<CString>,
    uid: Option<libc::uid_t>,
    gid: Option<libc::gid_t>,
    /// fds to put at 0, 1, 2 (`None`: keep gsup's).
    stdio: [Option<RawFd>; 3],
    /// Signals 1..=64 as bits (bit `n - 1` for signal `n`), from `InheritedSignals`.
    ignored_bits: u64,
    mask_bits: u64,
    setup: ChildSetup,
}

// SAFETY: the raw pointers point into the heap buffers of `_argv`, `_envp` and
// `candidates` (or at the static `SHELL`), which the struct owns and never changes after
// `new`; moving the struct to another thread moves
// those owners along, and the buffers do not move.
unsafe impl Send for Prepared {}

use std::ffi::{CStr, CString};

/// The interpreter for an executable without `#!` (POSIX `execvp`, glibc's
/// `maybe_script_execute`).
const SHELL: &CStr = c"/bin/sh";

impl Prepared {
    /// `candidates` are the paths to try; `argv` and `envp` become NULL-terminated arrays.
    pub fn new(
        candidates: Vec<CString>,
        argv: Vec<CString>,
        envp: Vec<CString>,
        workdir: Option<CString>,
        ids: (Option<libc::uid_t>, Option<libc::gid_t>),
        stdio: [Option<RawFd>; 3],
        setup: ChildSetup,
    ) -> Self {
        let terminated = |strings: &[CString]| -> Vec<*const libc::c_char> {
            strings
                .iter()
                .map(|s| s.as_ptr())
                .chain(std::iter::once(ptr::null()))
                .collect()
        };
        let bits = |set: &libc::sigset_t| -> u64 {
            (1..=64).fold(0u64, |bits, signal| {
                // SAFETY: sigismember reads the set; signals above SIGRTMAX give -1.
                if unsafe { libc::sigismember(set, signal) } == 1 {
                    bits | (1 << (signal - 1))
                } else {
                    bits
                }
            })
        };
        let script_argv_ptrs = candidates
            .iter()
            .map(|candidate| {
                [SHELL.as_ptr(), candidate.as_ptr()]
                    .into_iter()
                    .chain(argv.iter().skip(1).map(|arg| arg.as_ptr()))
                    .chain(std::iter::once(ptr::null()))
                    .collect()
            })
            .collect();
        Prepared {
            script_argv_ptrs,
            argv_ptrs: terminated(&argv),
            envp_ptrs: terminated(&envp),
            _argv: argv,
            _envp: envp,
            candidates,
            workdir,
            uid: ids.0,
            gid: ids.1,
            stdio,
            ignored_bits: bits(&setup.inherited.ignored),
            mask_bits: bits(&setup.inherited.mask),
            setup,
        }
    }
}

/// Why [`spawn`] failed: the errno, and the pid of a child that ran but could not exec
/// (it has exited; the caller's reaper must collect it).
#[derive(Debug, Clone, Copy)]
pub struct SpawnFailure {
    pub pid: Option<libc::pid_t>,
    pub errno: c_int,
}

/// What parent and child share: the child writes the errno of its failure here before it
/// exits; with CLONE_VFORK the parent reads it only after the child has exec'd or exited.
struct Shared<'a> {
    prepared: &'a Prepared,
    errno: std::sync::atomic::AtomicI32,
}

/// Starts `prepared` in a new process (DESIGN §4 Spawning; docs/DESIGN.md "The spawn
/// path"). `clone(CLONE_VM | CLONE_VFORK)`: the child runs on its own stack in gsup's
/// memory (no page tables copied, no copy-on-write faults), and the calling thread waits
/// until the child has called `execve` or exited, so the exec result is known on return.
/// Every signal is blocked in the calling thread around it, so no handler of gsup can run
/// in the child on the shared memory.
///
/// PDEATHSIG belongs to the calling thread: call this only from a thread that lives as
/// long as gsup (the main thread, or the spawner thread).
pub fn spawn(prepared: &Prepared) -> Result<libc::pid_t, SpawnFailure> {
    // Not zeroed: the child writes its frames before it reads them, and zeroing 64 KiB was
    // a fifth of a start's instructions (callgrind).
    let mut stack = Box::<[u8]>::new_uninit_slice(CHILD_STACK);
    let shared = Shared {
        prepared,
        errno: std::sync::atomic::AtomicI32::new(0),
    };
    // SAFETY: sigfillset/pthread_sigmask write only the local sets.
    let mut all = unsafe { MaybeUninit::<libc::sigset_t>::zeroed().assume_init() };
    let mut old = all;
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
    }
    // The stack grows down on every Linux target gsup builds for; keep its top 16-aligned.
    let top = (stack.as_mut_ptr() as usize + CHILD_STACK) & !15;
    // SAFETY: `child_main` runs on `stack`, which outlives the child's use of it: with
    // CLONE_VFORK this thread is suspended until the child execs (its memory is then
    // replaced) or exits. `shared` lives on this frame for the same span. The child only
    // makes raw syscalls and writes `shared.errno` (see `child_main`).
    let pid = unsafe {
        libc::clone(
            child_main,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &shared as *const Shared as *mut libc::c_void,
        )
    };
    let clone_error = io::Error::last_os_error();
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, ptr::null_mut()) };
    drop(stack);
    if pid < 0 {
        return Err(SpawnFailure {
            pid: None,
            errno: clone_error.raw_os_error().unwrap_or(libc::EAGAIN),
        });
    }
    match shared.errno.load(std::sync::atomic::Ordering::SeqCst) {
        0 => Ok(pid),
        errno => Err(SpawnFailure { pid: Some(pid), errno }),
    }
}

/// Collects a child that [`spawn`] reported as failed (it has exited or is about to).
/// Call only from the thread that reaps, for a pid the reaper has not collected.
pub fn reap_failed(pid: libc::pid_t) {
    let mut status = 0;
    loop {
        // SAFETY: waitpid writes only into `status`.
        let result = unsafe { libc::waitpid(pid, &mut status, 0) };
        if result >= 0 || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

/// The kernel's `struct sigaction` for `rt_sigaction`, as far as SIG_DFL/SIG_IGN need
/// it: the handler comes first on every architecture and everything after it is zero
/// (no flags, no restorer, empty mask), whichever order the rest has.
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    rest: [u64; 3],
}

/// A raw syscall's result: `Err(errno)` for the kernel's -errno. `libc::syscall` itself
/// takes no lock; the errno it also stores goes to the suspended parent thread's slot.
fn check(result: libc::c_long) -> Result<libc::c_long, c_int> {
    if result == -1 {
        // SAFETY: reads this thread's errno slot, set by the syscall just made.
        Err(unsafe { *libc::__errno_location() })
    } else {
        Ok(result)
    }
}

/// The child side of [`spawn`]: returns only to report a failure (the errno), after
/// which `child_main` exits.
///
/// # Safety
/// Only in the child of `clone(CLONE_VM | CLONE_VFORK)`, with every signal blocked: raw
/// syscalls only, on memory prepared before `clone`; no allocation, no locks, no libc
/// function with global state (glibc's setuid family would signal gsup's other threads).
unsafe fn child_exec(p: &Prepared) -> c_int {
    use libc::{SYS_prctl, syscall};
    let setup = &p.setup;
    // SAFETY (whole block): each call is a raw syscall on integers or on pointers into
    // `p`, which the suspended parent keeps alive and unchanged.
    unsafe {
        // Privileges first: a uid change clears PDEATHSIG (prctl(2)).
        // As std does: a root gsup drops its supplementary groups for the new ids.
        let changes_ids = p.uid.is_some() || p.gid.is_some();
        if changes_ids && syscall(libc::SYS_getuid) == 0 {
            if let Err(errno) = check(syscall(libc::SYS_setgroups, 0usize, ptr::null::<libc::gid_t>())) {
                return errno;
            }
        }
        if let Some(gid) = p.gid {
            if let Err(errno) = check(syscall(libc::SYS_setresgid, gid, gid, gid)) {
                return errno;
            }
        }
        if let Some(uid) = p.uid {
            if let Err(errno) = check(syscall(libc::SYS_setresuid, uid, uid, uid)) {
                return errno;
            }
        }
        if let Err(errno) = check(syscall(
            SYS_prctl,
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )) {
            return errno;
        }
        // gsup died before PDEATHSIG was armed: nobody supervises this child.
        if syscall(libc::SYS_getppid) as libc::pid_t != setup.parent_pid {
            syscall(libc::SYS_exit_group, 1);
        }
        if let Err(errno) = check(syscall(libc::SYS_setpgid, 0, 0)) {
            return errno;
        }
        if let Some(tty) = setup.foreground_tty {
            // SIGTTOU is blocked here (everything is), which tcsetpgrp treats as ignored.
            // ENOTTY/ENXIO (no controlling terminal after all) are fine.
            let pgid = syscall(libc::SYS_getpid) as libc::pid_t;
            let _ = syscall(libc::SYS_ioctl, tty, libc::TIOCSPGRP, &pgid as *const libc::pid_t);
        }
        if let Err(errno) = check(syscall(
            libc::SYS_prlimit64,
            0,
            libc::RLIMIT_NOFILE,
            &setup.nofile as *const libc::rlimit,
            ptr::null_mut::<libc::rlimit>(),
        )) {
            return errno;
        }
        // Dispositions before the mask: a handler of gsup's must never run here. Ignored
        // at gsup's start stays ignored (`nohup`), the rest is the default.
        for signal in 1..=64 {
            if signal == libc::SIGKILL || signal == libc::SIGSTOP {
                continue;
            }
            let ignored = p.ignored_bits & (1 << (signal - 1)) != 0;
            let action = KernelSigaction {
                handler: if ignored { libc::SIG_IGN } else { libc::SIG_DFL },
                rest: [0; 3],
            };
            // EINVAL for numbers the kernel reserves is fine.
            let _ = syscall(
                libc::SYS_rt_sigaction,
                signal,
                &action as *const KernelSigaction,
                ptr::null_mut::<KernelSigaction>(),
                8usize,
            );
        }
        // fds: every source goes above the targets first (a source may be a target).
        let high = |fd: RawFd| check(syscall(libc::SYS_fcntl, fd, libc::F_DUPFD_CLOEXEC, 64)).map(|fd| fd as RawFd);
        let mut stdio = [-1 as RawFd; 3];
        for (slot, source) in stdio.iter_mut().zip(p.stdio) {
            if let Some(fd) = source {
                match high(fd) {
                    Ok(fd) => *slot = fd,
                    Err(errno) => return errno,
                }
            }
        }
        let shim_error = match setup.shim_error {
            Some(fd) => match high(fd) {
                Ok(fd) => fd,
                Err(errno) => return errno,
            },
            None => -1,
        };
        if let Err(errno) = map_listen_fds(&setup.listen_fds[..setup.listen_count.min(MAX_LISTEN_FDS)]) {
            return errno;
        }
        // dup3's copies have close-on-exec cleared.
        for (target, &source) in stdio.iter().enumerate() {
            if source >= 0 {
                if let Err(errno) = check(syscall(libc::SYS_dup3, source, target as RawFd, 0)) {
                    return errno;
                }
                syscall(libc::SYS_close, source);
            }
        }
        if shim_error >= 0 {
            if let Err(errno) = check(syscall(
                libc::SYS_dup3,
                shim_error,
                shim_error_fd(setup.listen_count),
                0,
            )) {
                return errno;
            }
            syscall(libc::SYS_close, shim_error);
        }
        if let Some(dir) = &p.workdir {
            if let Err(errno) = check(syscall(libc::SYS_chdir, dir.as_ptr())) {
                return errno;
            }
        }
        // The mask gsup was started with, last: from here a signal acts as it would on
        // the program (its default or ignored).
        let mask = p.mask_bits;
        if let Err(errno) = check(syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &mask as *const u64,
            ptr::null_mut::<u64>(),
            8usize,
        )) {
            return errno;
        }
        // execvp's rules: go on past ENOENT, ENOTDIR and EACCES (remembered), stop at
        // anything else; a file the kernel cannot run (ENOEXEC: no `#!`) is a shell
        // script. Should `/bin/sh` itself fail (none in the image), the file's own
        // ENOEXEC is the answer (126), not the shell's ENOENT (a "not found" that would
        // send the reader looking for the wrong file).
        let mut failure = libc::ENOENT;
        let mut denied = false;
        for (path, script_argv) in p.candidates.iter().zip(&p.script_argv_ptrs) {
            let errno = match check(syscall(
                libc::SYS_execve,
                path.as_ptr(),
                p.argv_ptrs.as_ptr(),
                p.envp_ptrs.as_ptr(),
            )) {
                Err(errno) => errno,
                Ok(_) => libc::ENOEXEC,
            };
            if errno == libc::ENOEXEC {
                let _ = syscall(
                    libc::SYS_execve,
                    SHELL.as_ptr(),
                    script_argv.as_ptr(),
                    p.envp_ptrs.as_ptr(),
                );
                failure = libc::ENOEXEC;
                break;
            }
            match errno {
                libc::EACCES => denied = true,
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
                other => {
                    failure = other;
                    break;
                }
            }
            failure = errno;
        }
        if denied && matches!(failure, libc::ENOENT | libc::ENOTDIR) {
            libc::EACCES
        } else {
            failure
        }
    }
}

/// Moves `fds` to 3, 4, … in the child (close-on-exec cleared), as the systemd socket
/// protocol wants. First every fd is duplicated above the target range, so a source that
/// is itself a target (an fd 3 gsup inherited from systemd) is not overwritten before it
/// is moved.
///
/// # Safety
/// Only in the child of [`spawn`]: raw syscalls only.
unsafe fn map_listen_fds(fds: &[RawFd]) -> Result<(), c_int> {
    let base = 3 + fds.len() as RawFd;
    let mut moved = [0 as RawFd; MAX_LISTEN_FDS];
    for (slot, &fd) in moved.iter_mut().zip(fds) {
        // SAFETY: raw fcntl on an integer fd.
        *slot = check(unsafe { libc::syscall(libc::SYS_fcntl, fd, libc::F_DUPFD_CLOEXEC, base.max(64)) })? as RawFd;
    }
    for (index, &high) in moved.iter().take(fds.len()).enumerate() {
        // SAFETY: raw dup3/close on integer fds; dup3's copy has close-on-exec cleared.
        unsafe {
            check(libc::syscall(libc::SYS_dup3, high, 3 + index as RawFd, 0))?;
            libc::syscall(libc::SYS_close, high);
        }
    }
    Ok(())
}

/// The function `clone` runs in the child.
extern "C" fn child_main(arg: *mut libc::c_void) -> c_int {
    // SAFETY: `arg` is the `Shared` on the suspended parent's frame (see `spawn`); the
    // child reads it and writes only its atomic `errno`.
    let shared = unsafe { &*(arg as *const Shared) };
    // SAFETY: this is the child of clone(CLONE_VM | CLONE_VFORK), every signal blocked.
    let errno = unsafe { child_exec(shared.prepared) };
    shared.errno.store(errno.max(1), std::sync::atomic::Ordering::SeqCst);
    // SAFETY: ends the child (its own thread group) without running any exit handler
    // of gsup's (they would run on gsup's memory).
    unsafe { libc::syscall(libc::SYS_exit_group, 127) };
    127
}

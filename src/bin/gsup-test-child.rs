//! `gsup-test-child`: **test fixture only, never ship it.**
//!
//! It plays the supervised child in gsup's integration tests and benchmarks. It runs the
//! ACTIONS given as arguments, in order, and prints one line per fact on stdout, flushed at
//! once, so a test can wait for a line with a deadline instead of sleeping:
//!
//! ```text
//! gsup-test-child handle TERM,USR1 echo ready forever
//! ```
//!
//! The whole argument list is parsed before the first action runs: an unknown action prints
//! the usage to stderr and exits 2; a bad or missing argument, or any failure while running
//! (fork, bind, allocation), exits 3 with a message naming the action.
//!
//! Signals are reported by one background thread fed by signal-hook's self-pipe, with the
//! sender's pid (`WithOrigin`). `stamp-on` takes its timestamp inside the signal handler
//! itself, so latency benchmarks measure delivery, not this thread's wake-up.
//!
//! `grandchild` forks and then re-executes this binary: a fresh image has no inherited
//! signal-hook state (its self-pipe is shared with the parent, whose thread would report the
//! grandchild's signals) and no other threads, and `execve` keeps ignored signals, the
//! mask and the pid, exactly what a forked child has.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::FromRawFd;
use std::os::unix::ffi::OsStrExt;
use std::process;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use libc::c_int;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, getpgrp, getpid, getppid, getsid, tcgetpgrp};
use signal_hook::iterator::SignalsInfo;
use signal_hook::iterator::exfiltrator::WithOrigin;

const USAGE: &str = "\
usage: gsup-test-child ACTION...   (test fixture only, never ship it)
actions:
  echo TEXT            print TEXT
  pid                  print `pid <pid> pgid <pgid> ppid <ppid> sid <sid>`
  handle SIGS|all      report each delivery as `got SIGxxx` (SIGS: TERM,SIGUSR1,15,RTMIN+1)
  ignore SIGS|all      set SIG_IGN
  exit-on SIG CODE     on SIG print `got SIGxxx` and exit CODE
  stamp-on SIG         on SIG print `stamp SIGxxx <CLOCK_REALTIME ns>`
  show-origin          from now on print `got SIGxxx from <pid|kernel>`
  dispositions         print `ignored ..`, `blocked ..`, `caught ..` from /proc/self/status
  sleep MS             sleep MS milliseconds
  forever              sleep forever
  exit CODE            exit with CODE
  die SIG              reset SIG to default and raise it
  grandchild ACTION... ;   fork a child running ACTIONs (prints `grandchild <pid>`)
  orphans N            leave N exited children to the nearest subreaper; `orphans N spawned`
  zombies N            fork N children that exit, never reaped; `zombies N`
  ready-file PATH      create or truncate PATH
  alloc MB             allocate and touch MB MiB; `allocated MB`
  burn MS              busy-loop MS ms (0: forever, in a thread); `burning`
  listen ADDR          serve `ok <pid>` over TCP (fd 3 with LISTEN_FDS); `listening <addr>`
  tty                  print `tty fg <true|false>` or `tty none`
  env NAME             print `env NAME=<value>` (empty when unset)
  await-file PATH      wait until PATH exists
  notify TEXT          send TEXT (`\\n` for newlines) to $NOTIFY_SOCKET; `notified`";

// ---------------------------------------------------------------------------------------
// Signal names

// gsup's own signal names and numbers, shared so the fixture and gsup cannot disagree.
#[allow(dead_code)] // gsup's `Sig` and friends are not used here
#[path = "../signals.rs"]
mod signals;

fn rt_min() -> c_int {
    signals::rt_min()
}

/// Parses `15`, `TERM`, `SIGTERM`, `sigterm`, `RTMIN`, `RTMIN+2`, `SIGRTMAX-1`.
fn parse_signal(text: &str) -> Option<c_int> {
    signals::parse(text).ok()
}

/// `SIGTERM`, `SIGRTMIN`, `SIGRTMIN+3`, or `SIG32` for a number with no name.
fn signal_name(signal: c_int) -> String {
    signals::name(signal)
}

/// `all`: every catchable signal except CHLD and the fault signals — exactly what gsup
/// forwards.
fn all_signals() -> Vec<c_int> {
    signals::forwardable()
}

/// A `/proc/self/status` mask (`SigIgn: 0000000000001000`) as `SIGHUP,SIGPIPE`, or `-`.
///
/// Signals 32..SIGRTMIN are left out: they are glibc's own (thread cancellation, setxid),
/// caught once threads exist, and ignored after a glibc `posix_spawn` from a threaded
/// parent (std's `Command` without `pre_exec`). Nobody else can set them, so they would
/// only make assertions depend on how the fixture was started.
fn decode_mask(hex: &str) -> Option<String> {
    let bits = u64::from_str_radix(hex.trim(), 16).ok()?;
    let names: Vec<String> = (1..=64)
        .filter(|n| bits & (1u64 << (n - 1)) != 0 && !(32..rt_min()).contains(n))
        .map(signal_name)
        .collect();
    Some(if names.is_empty() {
        "-".to_string()
    } else {
        names.join(",")
    })
}

// ---------------------------------------------------------------------------------------
// Actions and their parsing

#[derive(Debug, Clone, PartialEq)]
enum Action {
    Echo(String),
    Pid,
    Handle(Vec<c_int>),
    Ignore(Vec<c_int>),
    Dispositions,
    ExitOn(c_int, i32),
    StampOn(c_int),
    ShowOrigin,
    Sleep(u64),
    Forever,
    Exit(i32),
    Die(c_int),
    /// The words between `grandchild` and its `;`, re-executed in the grandchild.
    Grandchild(Vec<String>),
    /// Hidden: the first action of a re-executed grandchild.
    GrandchildBanner,
    Orphans(u32),
    Zombies(u32),
    ReadyFile(String),
    Env(String),
    AwaitFile(String),
    Notify(String),
    Alloc(usize),
    Burn(u64),
    Listen(String),
    Tty,
}

const GRANDCHILD_BANNER: &str = "__grandchild";

#[derive(Debug, PartialEq)]
enum ParseError {
    /// Exit 2 with the usage.
    Unknown(String),
    /// Exit 3: `action`, then what is wrong.
    Bad(String, String),
}

/// Parses the whole command line; `Ok` holds every action, in order.
fn parse_actions(words: &[String]) -> Result<Vec<Action>, ParseError> {
    let (actions, rest) = parse_until(words, false)?;
    debug_assert!(rest.is_empty());
    Ok(actions)
}

/// Parses actions up to the end, or, inside `grandchild`, up to its lone `;` (returned
/// rest starts after it). Nested `grandchild … ;` blocks pair up like parentheses.
fn parse_until(mut words: &[String], inside_grandchild: bool) -> Result<(Vec<Action>, &[String]), ParseError> {
    let mut actions = Vec::new();
    loop {
        let Some((word, rest)) = words.split_first() else {
            if inside_grandchild {
                return Err(ParseError::Bad("grandchild".into(), "missing the closing `;`".into()));
            }
            return Ok((actions, words));
        };
        words = rest;
        let name = word.as_str();
        if name == ";" && inside_grandchild {
            return Ok((actions, words));
        }
        let arity = match name {
            "pid" | "dispositions" | "forever" | "tty" | "show-origin" | GRANDCHILD_BANNER => 0,
            "exit-on" => 2,
            "grandchild" => {
                let (_, after) = parse_until(words, true)?;
                let inner = &words[..words.len() - after.len() - 1];
                actions.push(Action::Grandchild(inner.to_vec()));
                words = after;
                continue;
            }
            "echo" | "handle" | "ignore" | "stamp-on" | "sleep" | "exit" | "die" | "orphans" | "zombies"
            | "ready-file" | "alloc" | "burn" | "listen" | "env" | "await-file" | "notify" => 1,
            _ => return Err(ParseError::Unknown(name.to_string())),
        };
        if words.len() < arity {
            return Err(ParseError::Bad(name.into(), format!("needs {arity} argument(s)")));
        }
        let (args, rest) = words.split_at(arity);
        words = rest;
        actions.push(action_from(name, args)?);
    }
}

fn action_from(name: &str, args: &[String]) -> Result<Action, ParseError> {
    let bad = |what: String| ParseError::Bad(name.to_string(), what);
    let signal = |text: &str| parse_signal(text).ok_or_else(|| bad(format!("unknown signal `{text}`")));
    let signals = |text: &str| -> Result<Vec<c_int>, ParseError> {
        if text.eq_ignore_ascii_case("all") {
            return Ok(all_signals());
        }
        text.split(',').map(signal).collect()
    };
    let code = |text: &str| {
        text.parse::<u8>()
            .map(i32::from)
            .map_err(|_| bad(format!("`{text}` is not an exit code 0-255")))
    };
    fn number<T: std::str::FromStr>(text: &str, bad: impl Fn(String) -> ParseError) -> Result<T, ParseError> {
        text.parse::<T>().map_err(|_| bad(format!("`{text}` is not a number")))
    }
    let arg = |i: usize| args[i].as_str();
    Ok(match name {
        "echo" => Action::Echo(arg(0).to_string()),
        "pid" => Action::Pid,
        "handle" => Action::Handle(signals(arg(0))?),
        "ignore" => Action::Ignore(signals(arg(0))?),
        "dispositions" => Action::Dispositions,
        "exit-on" => Action::ExitOn(signal(arg(0))?, code(arg(1))?),
        "stamp-on" => Action::StampOn(signal(arg(0))?),
        "show-origin" => Action::ShowOrigin,
        "sleep" => Action::Sleep(number(arg(0), bad)?),
        "forever" => Action::Forever,
        "exit" => Action::Exit(code(arg(0))?),
        "die" => Action::Die(signal(arg(0))?),
        GRANDCHILD_BANNER => Action::GrandchildBanner,
        "orphans" => Action::Orphans(number(arg(0), bad)?),
        "zombies" => Action::Zombies(number(arg(0), bad)?),
        "ready-file" => Action::ReadyFile(arg(0).to_string()),
        "env" => Action::Env(arg(0).to_string()),
        "await-file" => Action::AwaitFile(arg(0).to_string()),
        "notify" => Action::Notify(arg(0).replace("\\n", "\n")),
        "alloc" => Action::Alloc(number(arg(0), bad)?),
        "burn" => Action::Burn(number(arg(0), bad)?),
        "listen" => Action::Listen(arg(0).to_string()),
        "tty" => Action::Tty,
        _ => return Err(ParseError::Unknown(name.to_string())),
    })
}

// ---------------------------------------------------------------------------------------
// Output

/// Prints one line and flushes it: tests read lines with deadlines, so nothing may linger
/// in a buffer. A closed stdout is a failure of whatever action was printing.
fn say(line: &str) {
    let mut out = io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        fail("output", "stdout is closed");
    }
}

fn fail(action: &str, what: impl std::fmt::Display) -> ! {
    eprintln!("gsup-test-child: {action}: {what}");
    process::exit(3);
}

/// Poisoning only means another thread panicked; the data is still fine for a fixture.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------------------------------
// Dispositions as they were at exec

/// std changes three dispositions before `main`: SIGPIPE to `SIG_IGN`, and SIGSEGV and
/// SIGBUS to its stack-overflow handler. `dispositions` would then always report them and
/// hide whether gsup restored `SIG_DFL` for its child. This constructor runs before std's
/// runtime init and records which of them were ignored at exec; `main` puts them back.
#[used]
#[unsafe(link_section = ".init_array")]
static RECORD_DISPOSITIONS_AT_EXEC: extern "C" fn() = record_dispositions_at_exec;

/// The signals std changes, and whether each was ignored at exec.
const STD_CHANGES: [c_int; 3] = [libc::SIGPIPE, libc::SIGSEGV, libc::SIGBUS];
static IGNORED_AT_EXEC: [AtomicBool; 3] = [const { AtomicBool::new(false) }; 3];

extern "C" fn record_dispositions_at_exec() {
    for (signal, ignored) in STD_CHANGES.iter().zip(&IGNORED_AT_EXEC) {
        // SAFETY: a query-only sigaction into a zeroed struct we own.
        let was_ignored = unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(*signal, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
        };
        ignored.store(was_ignored, Ordering::Relaxed);
    }
}

/// Puts std's changes back as they were at exec (see `RECORD_DISPOSITIONS_AT_EXEC`).
fn restore_dispositions_at_exec() {
    for (signal, ignored) in STD_CHANGES.iter().zip(&IGNORED_AT_EXEC) {
        let handler = if ignored.load(Ordering::Relaxed) {
            libc::SIG_IGN
        } else {
            libc::SIG_DFL
        };
        set_disposition(*signal, handler);
    }
}

fn set_disposition(signal: c_int, handler: libc::sighandler_t) -> bool {
    // SAFETY: installs SIG_DFL or SIG_IGN only, never a Rust function.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(signal, &action, std::ptr::null_mut()) == 0
    }
}

// ---------------------------------------------------------------------------------------
// Signal reporting

/// What the reporting thread does with one signal; several actions can add to it.
#[derive(Debug, Default, Clone, Copy)]
struct Reaction {
    print: bool,
    stamp: bool,
    exit: Option<i32>,
}

/// Shared between the main thread (which adds reactions) and the reporting thread.
struct Reporter {
    reactions: Mutex<BTreeMap<c_int, Reaction>>,
    /// Signals added to the signal-hook iterator, i.e. with a handler installed.
    registered: Mutex<BTreeSet<c_int>>,
    handle: signal_hook::iterator::Handle,
    show_origin: AtomicBool,
}

/// CLOCK_REALTIME nanoseconds stored by the signal handler itself for `stamp-on`.
static STAMPS: [AtomicU64; 65] = [const { AtomicU64::new(0) }; 65];

fn realtime_ns() -> u64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into our timespec; it is async-signal-safe.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
    (now.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(now.tv_nsec as u64)
}

static REPORTER: OnceLock<Arc<Reporter>> = OnceLock::new();

/// Starts the reporting thread on first use, so a fixture that handles nothing shows
/// nothing caught in `dispositions`.
fn reporter(action: &str) -> Arc<Reporter> {
    if let Some(reporter) = REPORTER.get() {
        return Arc::clone(reporter);
    }
    let mut signals = match SignalsInfo::with_exfiltrator(Vec::<c_int>::new(), WithOrigin::default()) {
        Ok(signals) => signals,
        Err(err) => fail(action, format!("cannot create the signal pipe: {err}")),
    };
    let reporter = Arc::new(Reporter {
        reactions: Mutex::new(BTreeMap::new()),
        registered: Mutex::new(BTreeSet::new()),
        handle: signals.handle(),
        show_origin: AtomicBool::new(false),
    });
    let shared = Arc::clone(&reporter);
    let spawned = thread::Builder::new().name("signals".into()).spawn(move || {
        for origin in signals.forever() {
            report(&shared, &origin);
        }
    });
    if let Err(err) = spawned {
        fail(action, format!("cannot start the signal thread: {err}"));
    }
    // Only the main thread calls this, so nobody raced us to the cell.
    let _ = REPORTER.set(Arc::clone(&reporter));
    reporter
}

fn report(reporter: &Reporter, origin: &signal_hook::low_level::siginfo::Origin) {
    let signal = origin.signal;
    let Some(reaction) = lock(&reporter.reactions).get(&signal).copied() else {
        return;
    };
    let name = signal_name(signal);
    if reaction.stamp {
        // Zero: the handler that stamps ran after ours (see `stamp_on`); use the time now.
        let stamp = match STAMPS[signal as usize].swap(0, Ordering::AcqRel) {
            0 => realtime_ns(),
            stamp => stamp,
        };
        say(&format!("stamp {name} {stamp}"));
    }
    if reaction.print || reaction.exit.is_some() {
        if reporter.show_origin.load(Ordering::Relaxed) {
            let from = origin.process.map_or("kernel".to_string(), |p| p.pid.to_string());
            say(&format!("got {name} from {from}"));
        } else {
            say(&format!("got {name}"));
        }
    }
    if let Some(code) = reaction.exit {
        process::exit(code);
    }
}

/// Adds `change` to each signal's reaction and installs the handler before returning.
fn react(action: &str, signals: &[c_int], change: impl Fn(&mut Reaction)) {
    let reporter = reporter(action);
    for &signal in signals {
        if signal_hook::consts::FORBIDDEN.contains(&signal) {
            fail(action, format!("{} cannot be handled", signal_name(signal)));
        }
        change(lock(&reporter.reactions).entry(signal).or_default());
        if lock(&reporter.registered).insert(signal) {
            if let Err(err) = reporter.handle.add_signal(signal) {
                fail(action, format!("cannot handle {}: {err}", signal_name(signal)));
            }
        }
    }
}

/// Registers a handler that stores the time, then the reporting one. signal-hook runs a
/// signal's actions in registration order, so the stamp is stored before the reporting
/// thread can wake. If the signal was already reported, the thread stamps itself.
fn stamp_on(signal: c_int) {
    let already = REPORTER.get().is_some_and(|r| lock(&r.registered).contains(&signal));
    if !already && !signal_hook::consts::FORBIDDEN.contains(&signal) {
        let slot = &STAMPS[signal as usize];
        // SAFETY: the action only calls clock_gettime and stores an atomic, both
        // async-signal-safe.
        let registered =
            unsafe { signal_hook::low_level::register(signal, move || slot.store(realtime_ns(), Ordering::Release)) };
        if let Err(err) = registered {
            fail("stamp-on", format!("cannot handle {}: {err}", signal_name(signal)));
        }
    }
    react("stamp-on", &[signal], |r| r.stamp = true);
}

// ---------------------------------------------------------------------------------------
// Running the actions

fn run(action: &Action) {
    match action {
        Action::Echo(text) => say(text),
        Action::Pid => {
            let sid = getsid(None).map_or(-1, Pid::as_raw);
            say(&format!(
                "pid {} pgid {} ppid {} sid {sid}",
                getpid(),
                getpgrp(),
                getppid()
            ));
        }
        Action::Handle(signals) => react("handle", signals, |r| r.print = true),
        Action::Ignore(signals) => {
            for &signal in signals {
                if !set_disposition(signal, libc::SIG_IGN) {
                    fail("ignore", format!("cannot ignore {}", signal_name(signal)));
                }
            }
        }
        Action::Dispositions => dispositions(),
        Action::ExitOn(signal, code) => react("exit-on", &[*signal], |r| r.exit = Some(*code)),
        Action::StampOn(signal) => stamp_on(*signal),
        Action::ShowOrigin => reporter("show-origin").show_origin.store(true, Ordering::Relaxed),
        Action::Sleep(ms) => thread::sleep(Duration::from_millis(*ms)),
        Action::Forever => loop {
            thread::sleep(Duration::from_secs(3600));
        },
        Action::Exit(code) => process::exit(*code),
        Action::Die(signal) => die(*signal),
        Action::Grandchild(words) => grandchild(words),
        Action::GrandchildBanner => say(&format!("grandchild {}", getpid())),
        Action::Orphans(n) => orphans(*n),
        Action::Zombies(n) => zombies(*n),
        Action::ReadyFile(path) => {
            if let Err(err) = std::fs::File::create(path) {
                fail("ready-file", format!("{path}: {err}"));
            }
        }
        Action::Env(name) => say(&format!(
            "env {name}={}",
            std::env::var_os(name).unwrap_or_default().to_string_lossy()
        )),
        Action::AwaitFile(path) => {
            while !std::path::Path::new(path).exists() {
                thread::sleep(Duration::from_millis(10));
            }
        }
        Action::Notify(text) => {
            let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
                fail("notify", "no NOTIFY_SOCKET".to_string());
            };
            let sent = std::os::unix::net::UnixDatagram::unbound().and_then(|s| s.send_to(text.as_bytes(), &socket));
            match sent {
                Ok(_) => say("notified"),
                Err(err) => fail("notify", format!("{}: {err}", socket.to_string_lossy())),
            }
        }
        Action::Alloc(mb) => alloc(*mb),
        Action::Burn(ms) => burn(*ms),
        Action::Listen(addr) => listen(addr),
        Action::Tty => match tcgetpgrp(io::stdin()) {
            Ok(foreground) => say(&format!("tty fg {}", foreground == getpgrp())),
            Err(_) => say("tty none"),
        },
    }
}

fn dispositions() {
    let status = match std::fs::read_to_string("/proc/self/status") {
        Ok(status) => status,
        Err(err) => fail("dispositions", format!("/proc/self/status: {err}")),
    };
    for (key, label) in [("SigIgn:", "ignored"), ("SigBlk:", "blocked"), ("SigCgt:", "caught")] {
        let decoded = status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(decode_mask);
        match decoded {
            Some(names) => say(&format!("{label} {names}")),
            None => fail("dispositions", format!("no {key} in /proc/self/status")),
        }
    }
}

fn die(signal: c_int) -> ! {
    // No core file: a fixture dying by SEGV must not fill the disk or wait for a dump.
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
    // KILL and STOP refuse a new disposition; they need none.
    set_disposition(signal, libc::SIG_DFL);
    // SAFETY: plain libc calls on a sigset we own; raise() goes to this (main) thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::raise(signal);
    }
    // Still here: the default action ignores it (CHLD, WINCH, URG, CONT), or it stopped us
    // and someone sent CONT.
    fail("die", format!("{} did not kill the process", signal_name(signal)));
}

/// Forks a child that re-executes this binary with `__grandchild WORDS…` (why: module doc).
/// Not reaped: once it exits it stays a zombie of ours, as a careless parent's would.
fn grandchild(words: &[String]) {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(err) => fail("grandchild", format!("cannot find this binary: {err}")),
    };
    // Everything the child needs is built before fork: after it, only exec and _exit.
    let argv: Result<Vec<CString>, _> = [exe.as_os_str().as_bytes(), GRANDCHILD_BANNER.as_bytes()]
        .into_iter()
        .chain(words.iter().map(|w| w.as_bytes()))
        .map(CString::new)
        .collect();
    let Ok(argv) = argv else {
        fail("grandchild", "an argument contains a NUL byte");
    };
    let mut pointers: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    pointers.push(std::ptr::null());
    // SAFETY: the child calls only execv, write and _exit, all async-signal-safe.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => unsafe {
            libc::execv(pointers[0], pointers.as_ptr());
            let message = b"gsup-test-child: grandchild: exec failed\n";
            libc::write(2, message.as_ptr().cast(), message.len());
            libc::_exit(3);
        },
        Ok(ForkResult::Parent { .. }) => {}
        Err(err) => fail("grandchild", format!("fork: {err}")),
    }
}

/// An intermediate process forks `n` children and exits at once, so they are re-parented
/// to the nearest subreaper (gsup) or PID 1. Some exit before the intermediate does
/// (re-parented as zombies), some just after (re-parented alive).
fn orphans(n: u32) {
    // SAFETY: the intermediate and its children call only fork, nanosleep and _exit.
    let intermediate = match unsafe { fork() } {
        Ok(ForkResult::Child) => unsafe {
            for i in 0..n {
                match fork() {
                    Ok(ForkResult::Child) => {
                        let delay = libc::timespec {
                            tv_sec: 0,
                            tv_nsec: i64::from(i % 4) * 250_000,
                        };
                        libc::nanosleep(&delay, std::ptr::null_mut());
                        libc::_exit(0);
                    }
                    Ok(ForkResult::Parent { .. }) => {}
                    Err(_) => libc::_exit(3),
                }
            }
            libc::_exit(0);
        },
        Ok(ForkResult::Parent { child }) => child,
        Err(err) => fail("orphans", format!("fork: {err}")),
    };
    // Only the intermediate is ours to reap; the orphans belong to the subreaper.
    loop {
        match waitpid(intermediate, None) {
            Ok(WaitStatus::Exited(_, 0)) => break,
            Ok(WaitStatus::Exited(_, _)) => fail("orphans", "fork failed in the intermediate process"),
            Ok(other) => fail("orphans", format!("intermediate process ended as {other:?}")),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(err) => fail("orphans", format!("waitpid: {err}")),
        }
    }
    say(&format!("orphans {n} spawned"));
}

fn zombies(n: u32) {
    for _ in 0..n {
        // SAFETY: the child only calls _exit.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => unsafe { libc::_exit(0) },
            Ok(ForkResult::Parent { .. }) => {}
            Err(err) => fail("zombies", format!("fork: {err}")),
        }
    }
    say(&format!("zombies {n}"));
}

fn alloc(mb: usize) {
    let Some(bytes) = mb.checked_mul(1 << 20) else {
        fail("alloc", format!("{mb} MiB is too large"));
    };
    let mut block: Vec<u8> = Vec::new();
    if let Err(err) = block.try_reserve_exact(bytes) {
        fail("alloc", format!("{mb} MiB: {err}"));
    }
    // Non-zero bytes on every page, so each page really becomes resident.
    block.resize(bytes, 1);
    // Kept for the rest of the process's life: that is the point of `alloc`.
    std::mem::forget(std::hint::black_box(block));
    say(&format!("allocated {mb}"));
}

fn burn(ms: u64) {
    say("burning");
    let spin = move || {
        let until = (ms > 0).then(|| Instant::now() + Duration::from_millis(ms));
        let mut x: u64 = 0;
        while until.is_none_or(|until| Instant::now() < until) {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
            }
        }
    };
    if ms > 0 {
        spin();
    } else if let Err(err) = thread::Builder::new().name("burn".into()).spawn(spin) {
        fail("burn", format!("cannot start a thread: {err}"));
    }
}

/// Takes fd 3 when systemd-style socket passing names this process; binds ADDR otherwise.
fn listen(addr: &str) {
    let mut inherited = None;
    if let Ok(count) = std::env::var("LISTEN_FDS") {
        let pid_ok = std::env::var("LISTEN_PID").ok().and_then(|p| p.parse::<i32>().ok()) == Some(getpid().as_raw());
        say(&format!("listen-fds {count} pid-ok {pid_ok}"));
        if pid_ok && count.parse::<u32>().is_ok_and(|n| n >= 1) {
            // Our own children must not inherit it.
            let _ = nix::fcntl::fcntl(
                // SAFETY: fd 3 is ours by the LISTEN_FDS protocol; only borrowed here.
                unsafe { std::os::fd::BorrowedFd::borrow_raw(3) },
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            );
            // SAFETY: LISTEN_PID names us, so fd 3 is a listening socket we now own.
            inherited = Some(unsafe { TcpListener::from_raw_fd(3) });
        }
    }
    let listener = match inherited {
        Some(listener) => listener,
        None => match TcpListener::bind(addr) {
            Ok(listener) => listener,
            Err(err) => fail("listen", format!("{addr}: {err}")),
        },
    };
    let local = match listener.local_addr() {
        Ok(local) => local,
        Err(err) => fail("listen", format!("local address: {err}")),
    };
    let spawned = thread::Builder::new().name("accept".into()).spawn(move || {
        for stream in listener.incoming() {
            match stream {
                // One thread per connection: tests hold slow and idle connections open.
                Ok(stream) => {
                    let _ = thread::Builder::new().name("conn".into()).spawn(move || serve(stream));
                }
                // EMFILE and friends: back off instead of spinning.
                Err(_) => thread::sleep(Duration::from_millis(10)),
            }
        }
    });
    if let Err(err) = spawned {
        fail("listen", format!("cannot start a thread: {err}"));
    }
    say(&format!("listening {local}"));
}

/// Answers each HTTP request with `200 OK` and `ok <pid>`, and each other line with the
/// bare body. I/O errors just end the connection.
fn serve(stream: TcpStream) {
    let body = format!("ok {}\n", getpid());
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while matches!(reader.read_line(&mut line), Ok(n) if n > 0) {
        let request = std::mem::take(&mut line);
        if !request.contains(" HTTP/1.") {
            if writer.write_all(body.as_bytes()).is_err() {
                return;
            }
            continue;
        }
        let mut close = request.trim_end().ends_with("HTTP/1.0");
        let mut length = 0u64;
        loop {
            let mut header = String::new();
            if !matches!(reader.read_line(&mut header), Ok(n) if n > 0) {
                return;
            }
            let header = header.trim_end().to_ascii_lowercase();
            if header.is_empty() {
                break;
            }
            if let Some(value) = header.strip_prefix("content-length:") {
                length = value.trim().parse().unwrap_or(0);
            }
            if header.starts_with("connection:") {
                close = header.contains("close");
            }
        }
        if io::copy(&mut (&mut reader).take(length), &mut io::sink()).is_err() {
            return;
        }
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{body}",
            body.len(),
            if close { "Connection: close\r\n" } else { "" },
        );
        if writer.write_all(response.as_bytes()).is_err() || close {
            return;
        }
    }
}

fn main() {
    restore_dispositions_at_exec();
    let words: Vec<String> = std::env::args().skip(1).collect();
    let actions = match parse_actions(&words) {
        Ok(actions) => actions,
        Err(ParseError::Unknown(name)) => {
            eprintln!("gsup-test-child: unknown action `{name}`\n{USAGE}");
            process::exit(2);
        }
        Err(ParseError::Bad(action, what)) => fail(&action, what),
    };
    if actions.is_empty() {
        eprintln!("{USAGE}");
        process::exit(2);
    }
    for action in &actions {
        run(action);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(String::from).collect()
    }

    fn parse(line: &str) -> Result<Vec<Action>, ParseError> {
        parse_actions(&words(line))
    }

    #[test]
    fn parses_a_sequence_in_order() {
        assert_eq!(
            parse("handle TERM,SIGUSR1,15 echo ready exit-on INT 7 sleep 10 exit 0"),
            Ok(vec![
                Action::Handle(vec![libc::SIGTERM, libc::SIGUSR1, libc::SIGTERM]),
                Action::Echo("ready".into()),
                Action::ExitOn(libc::SIGINT, 7),
                Action::Sleep(10),
                Action::Exit(0),
            ])
        );
    }

    #[test]
    fn grandchild_takes_words_up_to_its_own_semicolon() {
        assert_eq!(
            parse("grandchild grandchild echo x ; pid ; echo ; forever"),
            Ok(vec![
                Action::Grandchild(words("grandchild echo x ; pid")),
                // `;` outside a grandchild block is just echo's text.
                Action::Echo(";".into()),
                Action::Forever,
            ])
        );
        assert!(matches!(parse("grandchild echo x"), Err(ParseError::Bad(a, _)) if a == "grandchild"));
        assert!(matches!(parse("grandchild bogus ;"), Err(ParseError::Unknown(a)) if a == "bogus"));
    }

    #[test]
    fn unknown_actions_and_bad_arguments_are_told_apart() {
        assert_eq!(parse("frobnicate"), Err(ParseError::Unknown("frobnicate".into())));
        for (line, action) in [
            ("exit", "exit"),
            ("exit 256", "exit"),
            ("sleep soon", "sleep"),
            ("handle TERM,BOGUS", "handle"),
            ("exit-on TERM", "exit-on"),
            ("die RTMIN+99", "die"),
            ("zombies -1", "zombies"),
        ] {
            assert!(
                matches!(parse(line), Err(ParseError::Bad(ref a, _)) if a == action),
                "{line}: {:?}",
                parse(line)
            );
        }
    }

    #[test]
    fn signal_spellings() {
        assert_eq!(parse_signal("term"), Some(libc::SIGTERM));
        assert_eq!(parse_signal("SIGHUP"), Some(libc::SIGHUP));
        assert_eq!(parse_signal("9"), Some(libc::SIGKILL));
        assert_eq!(parse_signal("RTMIN"), Some(rt_min()));
        assert_eq!(parse_signal("SIGRTMIN+1"), Some(rt_min() + 1));
        assert_eq!(parse_signal("RTMAX-1"), Some(signals::rt_max() - 1));
        for bad in ["0", "65", "", "SIG", "RTMIN+", "RTMINX", "TERMINATE"] {
            assert_eq!(parse_signal(bad), None, "{bad:?}");
        }
        assert_eq!(signal_name(rt_min()), "SIGRTMIN");
        assert_eq!(signal_name(rt_min() + 3), "SIGRTMIN+3");
        assert_eq!(signal_name(32), "SIG32");
    }

    #[test]
    fn all_leaves_out_uncatchable_chld_and_faults() {
        let all = all_signals();
        for excluded in [
            libc::SIGKILL,
            libc::SIGSTOP,
            libc::SIGCHLD,
            libc::SIGSEGV,
            libc::SIGSYS,
            32,
            33,
        ] {
            assert!(!all.contains(&excluded), "{}", signal_name(excluded));
        }
        for included in [libc::SIGHUP, libc::SIGPIPE, libc::SIGWINCH, rt_min(), signals::rt_max()] {
            assert!(all.contains(&included), "{}", signal_name(included));
        }
    }

    #[test]
    fn masks_decode_to_names() {
        assert_eq!(decode_mask("0000000000000000").as_deref(), Some("-"));
        assert_eq!(decode_mask("0000000000001001").as_deref(), Some("SIGHUP,SIGPIPE"));
        assert_eq!(
            decode_mask("0000000180000000").as_deref(),
            Some("-"),
            "glibc's 32 and 33"
        );
        assert_eq!(decode_mask("zz"), None);
    }
}
